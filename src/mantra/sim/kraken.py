"""Kraken spot simulator, WebSocket v2 (path ``/v2``: ``ws_url``) and v1 (path ``/``: ``v1_url``).

Both: ``book`` at depths 10/25/100/500/1000 (snapshot, then updates inside the subscribed depth with
no delete for a level pushed out of it), CRC32 of the top 10 after every update (v2: on the
snapshot too), computed on what the client holds; ``trade``; ``status``/``systemStatus`` on
connect; heartbeats after a second of silence; ping/pong.  v2 also serves the ``instrument``
channel (pair precisions).  v2 writes prices and quantities as JSON numbers with the pair's full
precision, v1 as strings; v1 levels that enter the window from below carry the ``"r"`` flag.
v2 symbols are ``BTC/USD``, v1 names ``XBT/USD``: either spelling finds the instrument.  REST:
``/0/public/AssetPairs`` and ``/0/public/Depth``.  Kraken has no reconnect request.

Order entry (the section at the end): the private WebSocket v2 methods on the same socket
(``add_order``, ``amend_order``, ``cancel_order``, ``cancel_all``, ``cancel_after``; the ``executions``
and ``balances`` channels, each message with a ``sequence``) with the token of the signed REST
``GetWebSocketsToken``, and the private REST calls (``AddOrder``, ``AmendOrder``, ``CancelOrder``,
``CancelAll``, ``CancelAllOrdersAfter``, ``OpenOrders``, ``QueryOrders``, ``Balance``,
``TradesHistory``; ``/0/public/Time`` ahead by ``clock_skew_ms``), each refused ``EGeneral:Permission
denied`` outside the key's ``permissions`` (query, trade, websocket) and checked with the real signing
(``venues/kraken/auth.py``: a wrong key,
signature or a nonce not above the last get the venue's own error).  One account: the accepted
``credentials`` (``{key: secret}``, default the documented test-vector secret under ``DEFAULT_KEY``)
and its ``balances``; matching by ``trading.matching.Matching`` against the simulator's own book (its
changes and trades are applied to the engine, so resting orders fill as the market trades).  The
trading rate counter per pair (``rate_threshold``, ``rate_decay``; add +1, amend and cancel by the
order's age, exchanges.md 2.9) refuses with ``EOrder:Rate limit exceeded`` and is reported as
``ratecount`` on the executions of a subscriber that asked (``ratecounter``).
Order-entry faults (``faults.py``): ``order_5xx`` (the next order request is carried out, then
answered ``EService:Unavailable``, a 500 on REST), ``order_timeout`` (carried out, never answered;
a 504 on REST), ``order_rate_limit`` (``EOrder:Rate limit exceeded``), ``stream_duplicate`` (the
next N executions messages twice), ``stream_reorder`` (the next executions message after the one
that follows it), ``stream_disconnect`` (the next fill is lost with the private connections, which
are cut), ``ban`` (the next REST request answered 418), ``cancel_filled`` (the next cancel finds its
order filled: rejected ``EOrder:Unknown order``); ``rate_limit`` (429 with ``Retry-After``) as for
every venue.
"""

from __future__ import annotations

import secrets as _secrets
import time

from ..fixed import FixedPointError, from_fixed, to_fixed
from ..runtime.clock import utc
from ..spine.messages import OrderAction, OrderFlags, OrderRequest, OrderStatus
from ..trading.accounts import Reject
from ..venues.kraken import auth as kraken_auth
from ..venues.kraken.orders import AMEND_AGE, CANCEL_AGE, RateCounter
from .market import ASK, BID, DepthView, Listing
from .oracles import kraken_checksum
from .account import AccountSim
from .server import Reply, Request, RestError, VenueSimulator, raw

LISTINGS = (
    Listing("BTC/USD", "BTC", "USD", "0.1", "0.00000001", "27000.0", "3", "0.0001", "0.5"),
    Listing("ETH/USD", "ETH", "USD", "0.01", "0.00000001", "1800.00", "40", "0.002", "0.5"),
    Listing("XRP/USD", "XRP", "USD", "0.00001", "0.00000001", "0.51000", "20000", "10", "0.5"),
    Listing("BTC/USDT", "BTC", "USDT", "0.1", "0.00000001", "27000.0", "3", "0.0001", "0.5"),  # = Binance's pair
)
DEPTHS = (10, 25, 100, 500, 1000)
_V1_ASSETS = {"BTC": "XBT", "DOGE": "XDG"}
_V2_ASSETS = {v: k for k, v in _V1_ASSETS.items()}

# -- order entry ---------------------------------------------------------------------------------
PRIVATE = "/0/private/"
DEFAULT_KEY = "kraken-doc-vector-key"  # the documentation's vector has a secret and no key: any name
DEFAULT_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
DEFAULT_BALANCES = {"USD": "1000000", "USDT": "1000000", "BTC": "10", "ETH": "100", "XRP": "100000"}
REST_ASSET = {"BTC": "XXBT", "USD": "ZUSD", "ETH": "XETH", "XRP": "XXRP", "EUR": "ZEUR", "DOGE": "XXDG"}
_S = OrderStatus
REJECT_TEXT = {
    Reject.INSUFFICIENT_BALANCE: "EOrder:Insufficient funds", Reject.TICK: "EOrder:Invalid price",
    Reject.LOT: "EGeneral:Invalid arguments:volume", Reject.MIN_SIZE: "EOrder:Order minimum not met",
    Reject.MIN_NOTIONAL: "EOrder:Cost minimum not met", Reject.POST_ONLY: "EOrder:Post only order",
    Reject.UNKNOWN_ORDER: "EOrder:Unknown order", Reject.BAD_REQUEST: "EGeneral:Invalid arguments",
}
WS_STATUS_TEXT = {_S.ACK: "pending_new", _S.OPEN: "new", _S.PARTIALLY_FILLED: "partially_filled",
                  _S.FILLED: "filled", _S.CANCELLED: "canceled", _S.EXPIRED: "expired"}
REST_STATUS_TEXT = {_S.ACK: "pending", _S.OPEN: "open", _S.PARTIALLY_FILLED: "open", _S.FILLED: "closed",
                    _S.CANCELLED: "canceled", _S.EXPIRED: "expired"}


class _VenueError(Exception):
    """A request the venue refuses, with its error text."""


class _Unanswered(Exception):
    """A request carried out whose answer is a fault (5xx, a gateway timeout)."""

    def __init__(self, reply):
        super().__init__(reply.status)
        self.reply = reply


class _SimOrder:
    __slots__ = ("oid", "txid", "cid", "sym", "iid", "created", "cum", "oflags")

    def __init__(self, oid, txid, cid, sym, iid, created, oflags):
        self.oid, self.txid, self.cid, self.sym, self.iid = oid, txid, cid, sym, iid
        self.created, self.cum, self.oflags = created, 0, oflags


def _kr_id(prefix: str, n: int) -> str:
    """Kraken-shaped ids: ``OABCDE-FGHIJ-KLMNOP``."""
    x = f"{n:016X}"
    return f"{prefix}{x[:5]}-{x[5:10]}-{x[10:]}SM"


def _num(v, scale: int, what: str) -> int:
    """A number from a request (a JSON number decoded as float, or text) at ``scale``, exactly."""
    if isinstance(v, bool) or v is None:
        raise _VenueError(f"EGeneral:Invalid arguments:{what}")
    text = v if isinstance(v, str) else repr(v)
    try:
        return to_fixed(text, scale)
    except FixedPointError:
        raise _VenueError("EOrder:Invalid price" if what == "price" else f"EGeneral:Invalid arguments:{what}") \
            from None


def _rename(symbol: str, table: dict) -> str:
    return "/".join(table.get(a, a) for a in symbol.split("/"))


class _Sub:
    __slots__ = ("name", "chan", "view")

    def __init__(self, name: str, chan: int, view: DepthView | None):
        self.name, self.chan, self.view = name, chan, view  # name: the client's spelling


class KrakenSimulator(AccountSim, VenueSimulator):
    venue = "kraken"
    LISTINGS = LISTINGS

    def __init__(self, source=None, *, credentials: dict | None = None, balances: dict | None = None,
                 maker_bps: int = 16, taker_bps: int = 26, rate_threshold: float = 60, rate_decay: float = 1.0,
                 clock_skew_ms: int = 0, permissions=("query", "trade", "websocket"), **kw):
        super().__init__(source, **kw)
        self.clock_skew_ns = int(clock_skew_ms) * 1_000_000  # the venue's clock runs this far ahead of ours
        self.permissions = frozenset(permissions)  # what the key may do (the venue's key settings)
        self.trading_rate = RateCounter(rate_threshold, rate_decay)  # the trading rate counter per pair (Starter tier)
        self._init_orders(credentials, balances, maker_bps, taker_bps)
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
        c.execs = c.bals = False  # private channels subscribed (order entry)
        c.exec_seq = c.bal_seq = 0
        c.held = None
        c.ratecounter = False
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
        if self._private(c, method, params, tail):
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
        self._orders_idle(now)
        for c in self.clients:
            if (c.books or c.trades) and now - c.last_sent >= 1.0:
                self.send(c, {"channel": "heartbeat"} if c.v2 else {"event": "heartbeat"})

    # -- REST ------------------------------------------------------------------------------
    def rest(self, req: Request):
        path, query = req.path, req.query
        if req.method == "POST" and path.startswith(PRIVATE):
            return self._rest_private(req)
        if req.method == "GET":
            if path == "/0/public/Time":
                now = time.time_ns() + self.clock_skew_ns
                return {"error": [], "result": {"unixtime": now // 1_000_000_000, "rfc1123": utc(now, 0)}}
            if path == "/0/public/AssetPairs":
                return {"error": [], "result": {self._altname(s): self._asset_pair(s) for s in self.instruments}}
            if path == "/0/public/Depth":
                wanted = query.get("pair", "")
                sym = next((s for s in self.instruments
                            if wanted in (s, self._altname(s), _rename(s, _V1_ASSETS))), None)
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

    # -- order entry -----------------------------------------------------------------------
    def _init_orders(self, credentials, balances, maker_bps, taker_bps) -> None:
        self._init_account(credentials, {DEFAULT_KEY: DEFAULT_SECRET}, balances, DEFAULT_BALANCES, maker_bps,
                           taker_bps)
        self.nonces: dict[str, int] = {}  # key -> the last nonce it used
        self.tokens: set[str] = set()
        self.by_pair = {}
        for sym in self.instruments:
            for name in (sym, self._altname(sym), _rename(sym, _V1_ASSETS)):
                self.by_pair[name] = sym
        self.by_txid: dict[str, _SimOrder] = {}  # sim_orders: engine order id -> _SimOrder
        # trades: (exec item, REST record, ns)
        self._bal_sent: dict[str, int] = {}
        self.dead_man_at = 0  # ns; 0 = off

    # the truth about the account (and account(), balance(), order_state(), the faults: sim/account.py)
    def open_orders(self) -> dict[str, object]:
        """Client order id (or txid) -> the engine's state of each open order."""
        with self.lock:
            out = {}
            for st in self.engine.open_orders("kraken"):
                so = self.sim_orders[st.order_id]
                out[so.cid or so.txid] = st
            return out

    def fills_of(self, cid: str) -> list[dict]:
        with self.lock:
            return [dict(item) for item, _, _ in self.trades if item.get("cl_ord_id") == cid]

    # engine in and out
    def _apply(self, step) -> None:
        super()._apply(step)
        now = self._feed_engine(step)
        if now is not None:
            self._stream(*self._collect(now))

    def _collect(self, now: int, amended: int = 0) -> tuple[list, list, list]:
        """The engine's messages since the last call -> (updates, executions items, balance items)."""
        out, self._engine_out = self._engine_out, []
        ups, execs, bals = [], [], []
        last_fill = None
        for port, m in out:
            if port == "fills":
                so = self.sim_orders[m.order_id]
                st = self.engine.order(m.order_id)
                inst = self.engine.registry[m.instrument]
                so.cum += m.size
                status = "filled" if st is not None and so.cum >= st.size else "partially_filled"
                exec_id = _kr_id("T", m.trade_id)
                ts = utc(m.exch_ts, 6)
                item = {"order_id": so.txid, "cl_ord_id": so.cid, "symbol": _rename(so.sym, _V2_ASSETS),
                        "exec_type": "trade", "exec_id": exec_id, "trade_id": m.trade_id,
                        "side": "buy" if m.side > 0 else "sell", "order_type": "limit",
                        "last_qty": raw(self._q(so.sym, m.size)), "last_price": raw(self._p(so.sym, m.price)),
                        "cum_qty": raw(self._q(so.sym, so.cum)), "order_status": status,
                        "liquidity_ind": "m" if m.liquidity == 1 else "t",
                        "fees": [{"asset": inst.quote, "qty": raw(from_fixed(m.fee, inst.price_scale))}],
                        "timestamp": ts}
                s, frac = divmod(m.exch_ts, 1_000_000_000)
                rec = {"ordertxid": so.txid, "postxid": "", "pair": self._altname(so.sym),
                       "time": raw(f"{s}.{frac // 1000:06d}"), "type": item["side"], "ordertype": "limit",
                       "price": self._p(so.sym, m.price), "vol": self._q(so.sym, m.size),
                       "cost": from_fixed(m.price * m.size // 10**inst.size_scale, inst.price_scale),
                       "fee": from_fixed(m.fee, inst.price_scale), "margin": "0", "misc": "",
                       "maker": m.liquidity == 1, "trade_id": m.trade_id}
                self.trades.append((item, rec, m.exch_ts))
                execs.append(item)
                last_fill = m.order_id
            elif port == "updates":
                ups.append(m)
                so = self.sim_orders.get(m.order_id)
                st = _S(m.status)
                if so is None or st in (_S.REJECTED, _S.CANCEL_REJECTED):
                    continue
                if st in (_S.PARTIALLY_FILLED, _S.FILLED) and last_fill == m.order_id and m.order_id != amended:
                    continue  # the trade item said it
                item = {"order_id": so.txid, "cl_ord_id": so.cid, "symbol": _rename(so.sym, _V2_ASSETS),
                        "exec_type": "amended" if m.order_id == amended and st in (_S.OPEN, _S.PARTIALLY_FILLED)
                        else WS_STATUS_TEXT[st].replace("partially_filled", "new"),
                        "order_status": WS_STATUS_TEXT[st], "side": "buy" if m.side > 0 else "sell",
                        "order_type": "limit", "order_qty": raw(self._q(so.sym, m.size)),
                        "limit_price": raw(self._p(so.sym, m.price)), "cum_qty": raw(self._q(so.sym, m.filled)),
                        "timestamp": utc(m.exch_ts, 6)}
                if item["exec_type"] == "amended":
                    amended = 0
                item["ratecount"] = round(self.trading_rate.level(so.sym, now))
                execs.append(item)
            elif port == "balances":
                asset = m.asset.rstrip(b"\0").decode()
                if self._bal_sent.get(asset) == m.total:
                    continue  # only a lock moved: the venue's ledger did not change
                self._bal_sent[asset] = m.total
                bals.append({"asset": asset, "asset_class": "currency", "balance": raw(from_fixed(m.total, m.scale)),
                             "type": "trade", "wallet_type": "spot", "wallet_id": "main",
                             "ledger_id": _kr_id("L", m.exch_ts), "timestamp": utc(m.exch_ts, 6)})
        return ups, execs, bals

    def _stream(self, ups, execs: list, bals: list) -> None:
        """Send executions and balance items to the private subscribers; the stream faults apply."""
        if execs:
            if self._cut and any(i["exec_type"] == "trade" for i in execs):
                self._cut -= 1
                self.order_counts["stream_cut"] += 1
                for c in list(self.clients):
                    if c.open and (c.execs or c.bals):  # the fill is lost with the connection
                        c.open = False
                        self._close_later(c, 1011, "simulated private stream loss")
                execs = []
            dup = reorder = False
            if self._dup:
                self._dup -= 1
                dup = True
            if self._reorder:
                self._reorder -= 1
                reorder = True
        for c in list(self.clients):
            if not c.open:
                continue
            if execs and c.execs:
                c.exec_seq += 1
                data = execs if c.ratecounter else [{k: v for k, v in i.items() if k != "ratecount"} for i in execs]
                msg = {"channel": "executions", "type": "update", "data": data, "sequence": c.exec_seq}
                if reorder and c.held is None:
                    c.held = (msg, time.monotonic())
                else:
                    self.send(c, msg)
                    if dup:
                        self.send(c, msg)
                    if c.held is not None and c.held[0] is not msg:
                        self.send(c, c.held[0])
                        c.held = None
            if bals and c.bals:
                c.bal_seq += 1
                self.send(c, {"channel": "balances", "type": "update", "data": bals, "sequence": c.bal_seq})

    def _orders_idle(self, now: float) -> None:
        for c in self.clients:
            if c.held is not None and now - c.held[1] > 0.5:  # nothing came after it: send it late
                self.send(c, c.held[0])
                c.held = None
        if self.dead_man_at and time.time_ns() >= self.dead_man_at:
            self.dead_man_at = 0
            self.order_counts["dead_man_fired"] += 1
            self._cancel_all(time.time_ns())

    # requests, both paths
    def _oid(self) -> int:
        self._next_oid += 1
        return self._next_oid

    def _order_of(self, cid=None, txid=None) -> _SimOrder:
        so = self.by_cid.get(str(cid)) if cid else self.by_txid.get(str(txid)) if txid else None
        if so is None:
            raise _VenueError("EOrder:Unknown order")
        return so

    def _charge(self, sym: str, cost: int, now: int) -> None:
        """The trading rate counter of the pair: refused past the threshold, as the venue does."""
        if not self.trading_rate.allow(sym, cost, now):
            self.order_counts["rate_limited"] += 1
            raise _VenueError("EOrder:Rate limit exceeded")
        self.trading_rate.add(sym, cost, now)

    def _take_fault(self) -> str | None:
        return self._order_faults.popleft() if self._order_faults else None

    def _add(self, sym_name, side, qty, price, cid, post_only, tif, deadline, now) -> tuple[_SimOrder, list]:
        sym = self.by_pair.get(str(sym_name)) or self.symbol(str(sym_name))
        inst = self.instruments.get(sym)
        if inst is None:
            raise _VenueError("EQuery:Unknown asset pair")
        if side not in ("buy", "sell"):
            raise _VenueError("EGeneral:Invalid arguments:type")
        size = _num(qty, inst.size_scale, "volume")
        px = _num(price, inst.price_scale, "price")
        if deadline and str(deadline) < utc(now, 6)[:len(str(deadline))]:
            raise _VenueError("EOrder:Deadline elapsed")  # the receive window of the request has passed
        if cid:
            if len(str(cid)) > 18:
                raise _VenueError("EGeneral:Invalid arguments:cl_ord_id")
            if str(cid) in self.by_cid:
                self.order_counts["duplicate_cid"] += 1
                raise _VenueError("EOrder:Duplicate order")
        flags = (OrderFlags.POST_ONLY if post_only else 0) | (OrderFlags.IOC if str(tif).lower() == "ioc" else 0)
        self._charge(sym, 1, now)
        oid = self._oid()
        so = _SimOrder(oid, _kr_id("O", oid), str(cid) if cid else "", sym, inst.id, now,
                       "post" if post_only else "")
        self.sim_orders[oid] = so
        self.engine.act(OrderRequest(oid, 0, px, size, inst.id, 0, 0, OrderAction.NEW, 1 if side == "buy" else -1,
                                     int(flags)), now)
        ups, execs, bals = self._collect(now)
        mine = [u for u in ups if u.order_id == oid]
        if mine and mine[0].status == _S.REJECTED:
            del self.sim_orders[oid]
            self._stream(ups, execs, bals)
            raise _VenueError(REJECT_TEXT.get(Reject(mine[0].reason), "EGeneral:Invalid arguments"))
        self.by_txid[so.txid] = so
        if so.cid:
            self.by_cid[so.cid] = so
            self.placed[so.cid] += 1
        self.order_counts["placed"] += 1
        return so, (ups, execs, bals)

    def _amend(self, so: _SimOrder, qty, price, now) -> tuple:
        st = self.engine.order(so.oid)
        inst = self.instruments[so.sym]
        size = _num(qty, inst.size_scale, "order_qty") if qty is not None else st.size
        px = _num(price, inst.price_scale, "price") if price is not None else st.price
        self._charge(so.sym, 1 + RateCounter.age_cost(AMEND_AGE, now - so.created), now)
        self.engine.act(OrderRequest(self._oid(), so.oid, px, size, so.iid, 0, 0, OrderAction.AMEND, st.side, 0), now)
        ups, execs, bals = self._collect(now, amended=so.oid)
        for u in ups:
            if u.order_id == so.oid and u.status == _S.CANCEL_REJECTED:
                self._stream(ups, execs, bals)
                raise _VenueError(REJECT_TEXT.get(Reject(u.reason), "EGeneral:Invalid arguments"))
        return ups, execs, bals

    def _cancel(self, so: _SimOrder, now: int) -> tuple:
        st = self.engine.order(so.oid)
        if st is not None and st.status not in (_S.FILLED, _S.CANCELLED, _S.EXPIRED, _S.REJECTED):
            self._charge(so.sym, RateCounter.age_cost(CANCEL_AGE, now - so.created), now)
        if self._fill_before_cancel(so, now):
            self._stream(*self._collect(now))
        self.engine.act(OrderRequest(self._oid(), so.oid, 0, 0, so.iid, 0, 0, OrderAction.CANCEL, 1, 0), now)
        ups, execs, bals = self._collect(now)
        for u in ups:
            if u.order_id == so.oid and u.status == _S.CANCEL_REJECTED:
                self._stream(ups, execs, bals)
                raise _VenueError(REJECT_TEXT.get(Reject(u.reason), "EOrder:Unknown order"))
        return ups, execs, bals

    def _cancel_all(self, now: int) -> int:
        live = self.engine.open_orders("kraken")
        if not live:
            return 0
        self.engine.act(OrderRequest(self._oid(), 0, 0, 0, live[0].instrument, 0, 0, OrderAction.CANCEL_ALL, 1, 0),
                        now)
        ups, execs, bals = self._collect(now)
        self._stream(ups, execs, bals)
        return sum(1 for u in ups if u.status == _S.CANCELLED)

    def _cancel_after(self, timeout, now: int) -> dict:
        try:
            t = int(timeout)
        except (TypeError, ValueError):
            raise _VenueError("EGeneral:Invalid arguments:timeout") from None
        self.dead_man_at = now + t * 1_000_000_000 if t > 0 else 0
        return {"currentTime": utc(now, 0), "triggerTime": utc(self.dead_man_at, 0) if t > 0 else "0"}

    # the WebSocket v2 private methods
    def _private(self, c, method, params: dict, tail: dict) -> bool:
        channel = params.get("channel")
        if method in ("subscribe", "unsubscribe") and channel in ("executions", "balances"):
            pass
        elif method not in ("add_order", "amend_order", "cancel_order", "cancel_all", "cancel_after"):
            return False
        if params.get("token") not in self.tokens:
            self.order_counts["bad_token"] += 1
            self.send(c, {"error": "EAPI:Invalid token", "method": method, "success": False, **tail})
            return True
        now = time.time_ns()
        if method in ("subscribe", "unsubscribe"):
            self._ws_subscribe(c, method, channel, params, tail)
            return True
        fault = self._take_fault() if method in ("add_order", "amend_order", "cancel_order") else None
        if fault == "rate":
            self.send(c, {"error": "EOrder:Rate limit exceeded", "method": method, "success": False, **tail})
            return True
        streams = ([], [], [])
        try:
            if method == "add_order":
                if params.get("order_type", "limit") != "limit":
                    raise _VenueError("EGeneral:Invalid arguments:order_type")
                so, streams = self._add(params.get("symbol"), params.get("side"), params.get("order_qty"),
                                        params.get("limit_price"), params.get("cl_ord_id"), params.get("post_only"),
                                        params.get("time_in_force"), params.get("deadline"), now)
                result = {"order_id": so.txid, **({"cl_ord_id": so.cid} if so.cid else {})}
            elif method == "amend_order":
                so = self._order_of(params.get("cl_ord_id"), params.get("order_id"))
                streams = self._amend(so, params.get("order_qty"), params.get("limit_price"), now)
                result = {"amend_id": _kr_id("A", self._oid()),
                          **({"cl_ord_id": so.cid} if params.get("cl_ord_id") else {"order_id": so.txid})}
            elif method == "cancel_order":
                ids = [("cid", x) for x in params.get("cl_ord_id") or ()] + \
                      [("txid", x) for x in params.get("order_id") or ()]
                if not ids:
                    raise _VenueError("EGeneral:Invalid arguments:order_id")
                acc = ([], [], [])
                for kind, x in ids:
                    so = self._order_of(x if kind == "cid" else None, x if kind == "txid" else None)
                    part = self._cancel(so, now)
                    for a, b in zip(acc, part):
                        a.extend(b)
                streams = acc
                result = {"cl_ord_id": ids[0][1]} if ids[0][0] == "cid" else {"order_id": ids[0][1]}
            elif method == "cancel_all":
                result = {"count": self._cancel_all(now)}
            else:
                result = self._cancel_after(params.get("timeout"), now)
        except _VenueError as e:
            self.order_counts["refused"] += 1
            self.send(c, {"error": str(e), "method": method, "success": False, **tail})
            return True
        if fault == "5xx":
            self.order_counts["answered_5xx"] += 1
            self.send(c, {"error": "EService:Unavailable", "method": method, "success": False, **tail})
        elif fault == "timeout":
            self.order_counts["not_answered"] += 1
        else:
            self.send(c, {"method": method, "result": result, "success": True, **tail})
        self._stream(*streams)
        return True

    def _ws_subscribe(self, c, method: str, channel: str, params: dict, tail: dict) -> None:
        on = method == "subscribe"
        was = c.execs if channel == "executions" else c.bals
        if on == was:
            self.send(c, {"error": "Already subscribed" if on else "Subscription Not Found", "method": method,
                          "success": False, **tail})
            return
        if channel == "executions":
            c.execs = on
            c.ratecounter = bool(params.get("ratecounter", False))
        else:
            c.bals = on
        self.send(c, {"method": method, "result": {"channel": channel, **({"snapshot": True} if on else {})},
                      "success": True, **tail})
        if not on:
            return
        if channel == "executions":
            data = []
            if params.get("snap_orders", True):
                for st in self.engine.open_orders("kraken"):
                    so = self.sim_orders[st.order_id]
                    data.append({"order_id": so.txid, "cl_ord_id": so.cid, "symbol": _rename(so.sym, _V2_ASSETS),
                                 "exec_type": "new", "order_status": WS_STATUS_TEXT[_S(st.status)]
                                 if st.status != _S.ACK else "new", "side": "buy" if st.side > 0 else "sell",
                                 "order_type": "limit", "order_qty": raw(self._q(so.sym, st.size)),
                                 "limit_price": raw(self._p(so.sym, st.price)),
                                 "cum_qty": raw(self._q(so.sym, st.filled)), "timestamp": utc(st.updated, 6)})
            if params.get("snap_trades", False):
                data += [item for item, _, _ in list(self.trades)[-50:]]
            c.exec_seq += 1
            self.send(c, {"channel": "executions", "type": "snapshot", "data": data, "sequence": c.exec_seq})
        else:
            data = []
            for (venue, asset), scale in sorted(self.engine.scales.items()):
                total, _ = self.engine.balance(venue, asset)
                text = raw(from_fixed(total, scale))
                data.append({"asset": asset, "asset_class": "currency", "balance": text,
                             "wallets": [{"type": "spot", "id": "main", "balance": text}]})
            c.bal_seq += 1
            self.send(c, {"channel": "balances", "type": "snapshot", "data": data, "sequence": c.bal_seq})

    # the private REST calls
    def _rest_private(self, req: Request):
        method = req.path[len(PRIVATE):]
        headers = {k: v for k, v in req.headers.items()}
        key = next((v for k, v in headers.items() if k.lower() == "api-key"), "")
        error, nonce = kraken_auth.verify(self.credentials, req.path, headers, req.body, self.nonces.get(key))
        if error:
            self.order_counts[f"auth_{error}"] += 1
            return {"error": [error], "result": {}}
        self.nonces[key] = nonce
        p = req.form()
        now = time.time_ns()
        try:
            return {"error": [], "result": self._rest_call(method, p, now)}
        except _VenueError as e:
            self.order_counts["refused"] += 1
            return {"error": [str(e)]}
        except _Unanswered as e:
            return e.reply

    def _rest_call(self, method: str, p: dict, now: int):
        need = "websocket" if method == "GetWebSocketsToken" else \
            "query" if method in ("Balance", "OpenOrders", "QueryOrders", "TradesHistory") else "trade"
        if need not in self.permissions:
            raise _VenueError("EGeneral:Permission denied")
        if method == "GetWebSocketsToken":
            token = _secrets.token_urlsafe(30)
            self.tokens.add(token)
            return {"token": token, "expires": 900}
        if method == "Balance":
            out = {}
            for (venue, asset), scale in sorted(self.engine.scales.items()):
                out[REST_ASSET.get(asset, asset)] = from_fixed(self.engine.balance(venue, asset)[0], scale, scale)
            return out
        if method == "OpenOrders":
            return {"open": {so.txid: self._rest_order(so) for so in
                             (self.sim_orders[st.order_id] for st in self.engine.open_orders("kraken"))
                             if not p.get("cl_ord_id") or so.cid == p["cl_ord_id"]}}
        if method == "QueryOrders":
            found = []
            if p.get("cl_ord_id"):
                so = self.by_cid.get(p["cl_ord_id"])
                found = [so] if so is not None else []
            else:
                for t in (p.get("txid") or "").split(","):
                    so = self.by_txid.get(t)
                    if so is None:
                        raise _VenueError("EOrder:Invalid order")
                    found.append(so)
            return {so.txid: self._rest_order(so) for so in found if self.engine.order(so.oid) is not None}
        if method == "TradesHistory":
            start = p.get("start")
            since = int(float(start) * 1e9) if start else 0
            trades = {item["exec_id"]: rec for item, rec, ts in self.trades if ts > since}
            return {"trades": trades, "count": len(trades)}
        if method == "CancelAll":
            return {"count": self._cancel_all(now)}
        if method == "CancelAllOrdersAfter":
            return self._cancel_after(p.get("timeout"), now)
        if method not in ("AddOrder", "AmendOrder", "CancelOrder"):
            raise _VenueError("EGeneral:Unknown method")
        fault = self._take_fault()
        if fault == "rate":
            raise _VenueError("EOrder:Rate limit exceeded")
        if method == "AddOrder":
            if p.get("ordertype", "limit") != "limit":
                raise _VenueError("EGeneral:Invalid arguments:ordertype")
            so, streams = self._add(p.get("pair"), p.get("type"), p.get("volume"), p.get("price"), p.get("cl_ord_id"),
                                    "post" in (p.get("oflags") or ""), p.get("timeinforce"), p.get("deadline"), now)
            inst = self.instruments[so.sym]
            st = self.engine.order(so.oid)
            result = {"descr": {"order": f"{p.get('type')} {self._q(so.sym, st.size)} {self._altname(so.sym)} @ limit "
                                         f"{self._p(so.sym, st.price)}"}, "txid": [so.txid]}
            del inst
        elif method == "AmendOrder":
            so = self._order_of(p.get("cl_ord_id"), p.get("txid"))
            streams = self._amend(so, p.get("order_qty"), p.get("limit_price"), now)
            result = {"amend_id": _kr_id("A", self._oid())}
        else:
            so = self._order_of(p.get("cl_ord_id"), p.get("txid"))
            streams = self._cancel(so, now)
            result = {"count": 1, "pending": False}
        self._stream(*streams)
        if fault == "5xx":
            self.order_counts["answered_5xx"] += 1
            raise _Unanswered(Reply(500, {"error": ["EService:Unavailable"]}))
        if fault == "timeout":
            self.order_counts["not_answered"] += 1
            raise _Unanswered(Reply(504, b"gateway timeout"))
        return result

    def _rest_order(self, so: _SimOrder) -> dict:
        st = self.engine.order(so.oid)
        inst = self.instruments[so.sym]
        side = "buy" if st.side > 0 else "sell"
        avg = from_fixed(st.quote * 10**inst.size_scale // st.filled, inst.price_scale) if st.filled else "0"
        return {"refid": None, "userref": 0, "cl_ord_id": so.cid or None, "status": REST_STATUS_TEXT.get(_S(st.status),
                                                                                                     "pending"),
                "opentm": so.created / 1e9, "starttm": 0, "expiretm": 0,
                "descr": {"pair": self._altname(so.sym), "type": side, "ordertype": "limit",
                          "price": self._p(so.sym, st.price), "price2": "0", "leverage": "none",
                          "order": f"{side} {self._q(so.sym, st.size)} {self._altname(so.sym)} @ limit "
                                   f"{self._p(so.sym, st.price)}", "close": ""},
                "vol": self._q(so.sym, st.size), "vol_exec": self._q(so.sym, st.filled),
                "cost": from_fixed(st.quote, inst.price_scale), "fee": from_fixed(st.fees, inst.price_scale),
                "price": avg, "stopprice": "0", "limitprice": "0", "misc": "", "oflags": so.oflags}


def _v1_time(ns: int) -> str:
    s, rest = divmod(ns, 1_000_000_000)
    return f"{s}.{rest // 1000:06d}"
