"""Kraken spot simulator, WebSocket v2 (path ``/v2``: ``ws_url``) and v1 (path ``/``: ``v1_url``).

Both: ``book`` at depths 10/25/100/500/1000 (snapshot, then updates inside the subscribed depth with
no delete for a level pushed out of it), CRC32 of the top 10 after every update (v2: on the
snapshot too), computed on what the client holds; ``trade``; ``status``/``systemStatus`` on
connect; heartbeats after a second of silence; ping/pong.  v2 also serves the ``instrument``
channel (pair precisions).  v2 writes prices and quantities as JSON numbers with the pair's full
precision, v1 as strings; v1 levels that enter the window from below carry the ``"r"`` flag.
v2 symbols are ``BTC/USD``, v1 names ``XBT/USD``: either spelling finds the instrument.  REST:
``/0/public/AssetPairs`` and ``/0/public/Depth``.  Kraken has no reconnect request.
"""

from __future__ import annotations

import time

from ..fixed import from_fixed
from ..runtime.clock import utc
from .market import ASK, BID, DepthView, Listing
from .oracles import kraken_checksum
from .server import Request, RestError, VenueSimulator, raw

LISTINGS = (
    Listing("BTC/USD", "BTC", "USD", "0.1", "0.00000001", "27000.0", "3", "0.0001", "0.5"),
    Listing("ETH/USD", "ETH", "USD", "0.01", "0.00000001", "1800.00", "40", "0.002", "0.5"),
    Listing("XRP/USD", "XRP", "USD", "0.00001", "0.00000001", "0.51000", "20000", "10", "0.5"),
)
DEPTHS = (10, 25, 100, 500, 1000)
_V1_ASSETS = {"BTC": "XBT", "DOGE": "XDG"}
_V2_ASSETS = {v: k for k, v in _V1_ASSETS.items()}


def _rename(symbol: str, table: dict) -> str:
    return "/".join(table.get(a, a) for a in symbol.split("/"))


class _Sub:
    __slots__ = ("name", "chan", "view")

    def __init__(self, name: str, chan: int, view: DepthView | None):
        self.name, self.chan, self.view = name, chan, view  # name: the client's spelling


class KrakenSimulator(VenueSimulator):
    venue = "kraken"
    LISTINGS = LISTINGS

    def __init__(self, source=None, **kw):
        super().__init__(source, **kw)
        for s in self.instruments:
            for name in (_rename(s, _V1_ASSETS), _rename(s, _V2_ASSETS)):
                if name != s:
                    self.aliases[name] = s
        self.next_chan = 100
        self.connection_id = 13834774380200032777  # larger than 2**63, like the venue's

    @property
    def v1_url(self) -> str:
        return f"ws://{self.address}"

    @property
    def ws_url(self) -> str:  # v2, the protocol's default version
        return f"ws://{self.address}/v2"

    def _p(self, sym: str, v: int) -> str:
        i = self.instruments[sym]
        return from_fixed(v, i.price_scale, i.price_decimals if i.price_decimals >= 0 else i.price_scale)

    def _q(self, sym: str, v: int) -> str:
        i = self.instruments[sym]
        return from_fixed(v, i.size_scale, i.size_decimals if i.size_decimals >= 0 else i.size_scale)

    def _checksum(self, sym: str, view: DepthView) -> int:
        i = self.instruments[sym]
        pd = i.price_decimals if i.price_decimals >= 0 else i.price_scale
        qd = i.size_decimals if i.size_decimals >= 0 else i.size_scale
        crc = kraken_checksum(view.book, pd, qd, i.price_scale, i.size_scale)
        return crc ^ 1 if self.corrupt() else crc

    # -- connection ------------------------------------------------------------------------
    def on_open(self, c) -> None:
        c.v2 = c.path.rstrip("/") == "/v2"
        c.books, c.trades = {}, {}  # symbol -> _Sub
        self.connection_id += 1
        if c.v2:
            self.send(c, {"channel": "status", "type": "update", "data": [
                {"api_version": "v2", "connection_id": self.connection_id, "system": "online", "version": "2.0.0"}]})
        else:
            self.send(c, {"connectionID": self.connection_id, "event": "systemStatus", "status": "online",
                          "version": "1.9.0"})

    def on_message(self, c, msg) -> None:
        if not isinstance(msg, dict):
            self.on_bad_message(c, msg)
        elif c.v2:
            self._v2(c, msg)
        else:
            self._v1(c, msg)

    def on_bad_message(self, c, text) -> None:
        if c.v2:
            self.send(c, {"error": "Malformed request", "method": "", "success": False, **self._times()})
        else:
            self.send(c, {"errorMessage": "Malformed request", "event": "error"})

    def _times(self) -> dict:
        now = utc(time.time_ns(), 6)
        return {"time_in": now, "time_out": now}

    # -- v2 --------------------------------------------------------------------------------
    def _v2(self, c, msg: dict) -> None:
        method, params, rid = msg.get("method"), msg.get("params") or {}, msg.get("req_id")
        tail = {**self._times(), **({"req_id": rid} if rid is not None else {})}
        if method == "ping":
            self.send(c, {"method": "pong", **tail})
            return
        channel = params.get("channel")
        if method not in ("subscribe", "unsubscribe") or channel not in ("book", "trade", "instrument"):
            self.send(c, {"error": f"Unsupported {method} {channel}", "method": method, "success": False, **tail})
            return
        if channel == "instrument":
            self.send(c, {"method": method, "result": {"channel": "instrument", "snapshot": True}, "success": True, **tail})
            if method == "subscribe":
                self.send(c, {"channel": "instrument", "type": "snapshot", "data": self._instrument_data()})
            return
        depth = params.get("depth", 10)
        for name in params.get("symbol") or []:
            sym = self.symbol(name)
            subs = c.books if channel == "book" else c.trades
            result = {"channel": channel, "symbol": name}
            if channel == "book":
                result["depth"] = depth
            error = None
            if sym not in self.instruments:
                error = f"Currency pair not supported {name}"
            elif channel == "book" and depth not in DEPTHS:
                error = "Invalid depth"
            elif method == "subscribe" and sym in subs:
                error = "Already subscribed"
            elif method == "unsubscribe" and sym not in subs:
                error = "Subscription Not Found"
            if error:
                self.send(c, {"error": error, "method": method, "success": False, "symbol": name, **tail})
                continue
            if method == "unsubscribe":
                del subs[sym]
                self.send(c, {"method": method, "result": result, "success": True, **tail})
                continue
            snapshot = params.get("snapshot", True)
            self.send(c, {"method": method, "result": {**result, "snapshot": snapshot}, "success": True, **tail})
            sub = subs[sym] = _Sub(name, 0, DepthView(depth, self.books[sym]) if channel == "book" else None)
            if channel == "book" and snapshot:
                book = sub.view.book
                self.send(c, {"channel": "book", "type": "snapshot", "data": [{
                    "symbol": name, "bids": [self._v2_level(sym, p, q) for p, q in book.top(BID, depth)],
                    "asks": [self._v2_level(sym, p, q) for p, q in book.top(ASK, depth)],
                    "checksum": self._checksum(sym, sub.view), "timestamp": utc(time.time_ns(), 6)}]})
            elif channel == "trade" and snapshot:
                self.send(c, {"channel": "trade", "type": "snapshot", "data": [
                    self._v2_trade(sym, name, t, ts) for t, ts in self.recent_trades[sym]]})

    def _v2_level(self, sym: str, price: int, size: int) -> dict:
        return {"price": raw(self._p(sym, price)), "qty": raw(self._q(sym, size))}

    def _v2_trade(self, sym: str, name: str, t, ts: int) -> dict:
        return {"symbol": name, "side": "buy" if t.side > 0 else "sell", "price": raw(self._p(sym, t.price)),
                "qty": raw(self._q(sym, t.size)), "ord_type": "market", "trade_id": t.trade_id,
                "timestamp": utc(ts, 6)}

    def _instrument_data(self) -> dict:
        pairs, assets = [], {}
        for sym, i in self.instruments.items():
            name = _rename(sym, _V2_ASSETS)
            pd = i.price_decimals if i.price_decimals >= 0 else i.price_scale
            qd = i.size_decimals if i.size_decimals >= 0 else i.size_scale
            tick = raw(from_fixed(i.tick, i.price_scale))
            pairs.append({"symbol": name, "base": i.base, "quote": i.quote, "status": "online",
                          "qty_precision": qd, "qty_increment": raw(from_fixed(i.lot, i.size_scale)),
                          "price_precision": pd, "cost_precision": 5, "marginable": False, "has_index": True,
                          "cost_min": raw(from_fixed(i.min_notional, i.price_scale)), "tick_size": tick,
                          "price_increment": tick, "qty_min": raw(from_fixed(i.min_size, i.size_scale))})
            for a in (i.base, i.quote):
                assets[a] = {"id": a, "status": "enabled", "precision": 10, "precision_display": 5,
                             "borrowable": False, "collateral_value": 1.0, "margin_rate": 0.0}
        return {"assets": list(assets.values()), "pairs": pairs}

    # -- v1 --------------------------------------------------------------------------------
    def _v1(self, c, msg: dict) -> None:
        event, rid = msg.get("event"), msg.get("reqid")
        tail = {"reqid": rid} if rid is not None else {}
        if event == "ping":
            self.send(c, {"event": "pong", **tail})
            return
        sub = msg.get("subscription") or {}
        kind, depth = sub.get("name"), sub.get("depth", 10)
        if event not in ("subscribe", "unsubscribe") or kind not in ("book", "trade"):
            self.send(c, {"errorMessage": f"Unsupported event {event} {kind}", "event": "error", **tail})
            return
        channel_name = f"book-{depth}" if kind == "book" else "trade"
        subscription = {"depth": depth, "name": "book"} if kind == "book" else {"name": "trade"}
        subs = c.books if kind == "book" else c.trades
        for pair in msg.get("pair") or []:
            sym = self.symbol(pair)
            status = {"event": "subscriptionStatus", "pair": pair, "subscription": subscription, **tail}
            error = None
            if sym not in self.instruments:
                error = f"Currency pair not supported {pair}"
            elif kind == "book" and depth not in DEPTHS:
                error = "Subscription depth not supported"
            elif event == "subscribe" and sym in subs:
                error = "Already subscribed"
            elif event == "unsubscribe" and sym not in subs:
                error = "Subscription Not Found"
            if error:
                self.send(c, {"errorMessage": error, "status": "error", **status})
                continue
            if event == "unsubscribe":
                chan = subs.pop(sym).chan
                self.send(c, {"channelID": chan, "channelName": channel_name, "status": "unsubscribed", **status})
                continue
            self.next_chan += 1
            s = subs[sym] = _Sub(pair, self.next_chan, DepthView(depth, self.books[sym]) if kind == "book" else None)
            self.send(c, {"channelID": s.chan, "channelName": channel_name, "status": "subscribed", **status})
            if kind == "book":
                ts = _v1_time(time.time_ns())
                book = s.view.book
                self.send(c, [s.chan, {"as": [[self._p(sym, p), self._q(sym, q), ts] for p, q in book.top(ASK, depth)],
                                       "bs": [[self._p(sym, p), self._q(sym, q), ts] for p, q in book.top(BID, depth)]},
                              channel_name, pair])

    # -- market ----------------------------------------------------------------------------
    def publish(self, step) -> None:
        sym = step.symbol
        changed = {(s, p) for s, p, _ in step.levels}
        for c in self.clients:
            t = c.trades.get(sym)
            if t is not None and step.trades:
                if c.v2:
                    self.send(c, {"channel": "trade", "type": "update", "data": [
                        self._v2_trade(sym, t.name, x, step.ts) for x in step.trades]})
                else:
                    ts = _v1_time(step.ts)
                    self.send(c, [t.chan, [[self._p(sym, x.price), self._q(sym, x.size), ts, "b" if x.side > 0 else "s",
                                            "m", ""] for x in step.trades], "trade", t.name])
            b = c.books.get(sym)
            if b is None or not step.levels:
                continue
            levels = b.view.diff(self.books[sym], changed)
            if not levels:
                continue  # nothing changed inside the subscribed depth
            b.view.apply(levels)
            crc = self._checksum(sym, b.view)
            if c.v2:
                self.send(c, {"channel": "book", "type": "update", "data": [{
                    "symbol": b.name,
                    "bids": [self._v2_level(sym, p, q) for s, p, q, _ in levels if s == BID],
                    "asks": [self._v2_level(sym, p, q) for s, p, q, _ in levels if s == ASK],
                    "checksum": crc, "timestamp": utc(step.ts, 6)}]}, book=True)
            else:
                ts = _v1_time(step.ts)
                rows = {s: [[self._p(sym, p), self._q(sym, q), ts] + (["r"] if r else [])
                            for side, p, q, r in levels if side == s] for s in (ASK, BID)}
                parts = [{k: rows[s]} for k, s in (("a", ASK), ("b", BID)) if rows[s]]
                parts[-1]["c"] = str(crc)
                self.send(c, [b.chan, *parts, f"book-{b.view.book.depth}", b.name], book=True)

    def idle(self, now: float) -> None:
        for c in self.clients:
            if (c.books or c.trades) and now - c.last_sent >= 1.0:
                self.send(c, {"channel": "heartbeat"} if c.v2 else {"event": "heartbeat"})

    # -- REST ------------------------------------------------------------------------------
    def rest(self, req: Request):
        path, query = req.path, req.query
        if req.method == "GET":
            if path == "/0/public/AssetPairs":
                return {"error": [], "result": {self._altname(s): self._asset_pair(s) for s in self.instruments}}
            if path == "/0/public/Depth":
                wanted = query.get("pair", "")
                sym = next((s for s in self.instruments if wanted in (s, self._altname(s), _rename(s, _V1_ASSETS))), None)
                if sym is None:
                    raise RestError(200, {"error": ["EQuery:Unknown asset pair"]})  # Kraken: errors in the body
                n = min(int(query.get("count", 100)), 500)
                book, stamp = self.books[sym], time.time_ns() // 1_000_000_000
                return {"error": [], "result": {self._altname(sym): {
                    "asks": [[self._p(sym, p), self._q(sym, q), stamp] for p, q in book.top(ASK, n)],
                    "bids": [[self._p(sym, p), self._q(sym, q), stamp] for p, q in book.top(BID, n)]}}}
        raise RestError(404, {"error": ["EGeneral:Unknown method"]})

    def _altname(self, sym: str) -> str:
        return _rename(sym, _V1_ASSETS).replace("/", "")

    def _asset_pair(self, sym: str) -> dict:
        i = self.instruments[sym]
        return {"altname": self._altname(sym), "wsname": _rename(sym, _V1_ASSETS), "aclass_base": "currency",
                "base": i.base, "aclass_quote": "currency", "quote": i.quote, "cost_decimals": 5,
                "pair_decimals": i.price_decimals if i.price_decimals >= 0 else i.price_scale,
                "lot_decimals": i.size_decimals if i.size_decimals >= 0 else i.size_scale, "lot_multiplier": 1,
                "ordermin": from_fixed(i.min_size, i.size_scale), "costmin": from_fixed(i.min_notional, i.price_scale),
                "tick_size": from_fixed(i.tick, i.price_scale), "status": "online"}

    def rate_limit_body(self, status: int):
        return {"error": ["EGeneral:Too many requests"]}


def _v1_time(ns: int) -> str:
    s, rest = divmod(ns, 1_000_000_000)
    return f"{s}.{rest // 1000:06d}"
