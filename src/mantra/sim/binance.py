"""Binance spot simulator: combined/raw streams, SUBSCRIBE & co., ``/api/v3/depth``, ``exchangeInfo``.

Streams are named in the URL (``/stream?streams=btcusdt@depth@100ms/btcusdt@trade`` wraps each
event as ``{"stream","data"}``; ``/ws/<stream>`` sends it raw) or subscribed live.  Every step of a
symbol is one ``depthUpdate`` whose ``U..u`` covers one update id per changed level, so a lost
frame shows as ``U > last u + 1``; the REST snapshot's ``lastUpdateId`` is the id of the book it
shows.  (The real ``@depth@100ms`` batches 100 ms of changes; one event per step is the same rule
at a finer grain.)  Prices and quantities are written with 8 decimals, as Binance does.  WebSocket
pings come from the server every 20 s.  ``reconnect_request`` sends ``serverShutdown``.
"""

from __future__ import annotations

import time

from ..fixed import from_fixed
from .market import ASK, BID, Listing
from .server import Request, RestError, VenueSimulator

LISTINGS = (
    Listing("BTCUSDT", "BTC", "USDT", "0.01", "0.00001", "27000.00", "3", "0.00001", "5"),
    Listing("ETHUSDT", "ETH", "USDT", "0.01", "0.0001", "1800.00", "40", "0.0001", "5"),
    Listing("SOLUSDT", "SOL", "USDT", "0.01", "0.001", "24.50", "500", "0.001", "5"),
)
BAD_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}


class BinanceSimulator(VenueSimulator):
    venue = "binance"
    LISTINGS = LISTINGS

    def __init__(self, source=None, **kw):
        super().__init__(source, **kw)
        self.update_id = {s: 1_000_000 for s in self.instruments}  # last update id per symbol
        self.uppercase = {s.upper(): s for s in self.instruments}

    def _num(self, value: int, scale: int) -> str:
        return from_fixed(value, scale, 8)

    # -- connection ------------------------------------------------------------------------
    def on_open(self, c) -> None:
        c.combined = c.path.startswith("/stream")
        if c.combined:
            names = c.query.get("streams", "")
        else:  # /ws/<stream>[/<stream>...], or bare /ws and SUBSCRIBE later
            names = c.path[len("/ws") :].strip("/")
        c.streams = {_norm(n) for n in names.split("/") if n}

    def on_message(self, c, msg) -> None:
        if not isinstance(msg, dict) or "method" not in msg:
            self.send(c, {"code": 2, "msg": "Invalid request: missing field 'method'", "id": None})
            return
        method, rid, params = msg["method"], msg.get("id"), msg.get("params") or []
        if method == "SUBSCRIBE":
            c.streams |= {_norm(p) for p in params}
            result = None
        elif method == "UNSUBSCRIBE":
            c.streams -= {_norm(p) for p in params}
            result = None
        elif method == "LIST_SUBSCRIPTIONS":
            result = sorted(c.streams)
        elif method == "SET_PROPERTY" and params[:1] == ["combined"]:
            c.combined = bool(params[1])
            result = None
        elif method == "GET_PROPERTY" and params[:1] == ["combined"]:
            result = c.combined
        else:
            self.send(c, {"code": 2, "msg": f"Invalid request: unknown method {method!r}", "id": rid})
            return
        self.send(c, {"result": result, "id": rid})

    def on_bad_message(self, c, text) -> None:
        self.send(c, {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1", "id": None})

    def reconnect_message(self, c):
        event = {"e": "serverShutdown", "E": self._ms()}
        return {"stream": "!serverShutdown", "data": event} if c.combined else event

    def _ms(self) -> int:
        return time.time_ns() // 1_000_000

    # -- market ----------------------------------------------------------------------------
    def publish(self, step) -> None:
        sym = step.symbol
        low = sym.lower()
        inst = self.instruments[sym]
        ps, ss = inst.price_scale, inst.size_scale
        ms = step.ts // 1_000_000
        out = []  # (stream, event, is a book update)
        for t in step.trades:
            p, q = self._num(t.price, ps), self._num(t.size, ss)
            # m: the buyer is the maker, i.e. the seller was the aggressor
            out.append((f"{low}@trade", {"e": "trade", "E": ms, "s": sym, "t": t.trade_id, "p": p, "q": q,
                                         "T": ms, "m": t.side < 0, "M": True}, False))
            out.append((f"{low}@aggTrade", {"e": "aggTrade", "E": ms, "s": sym, "a": t.trade_id, "p": p, "q": q,
                                            "f": t.trade_id, "l": t.trade_id, "T": ms, "m": t.side < 0, "M": True},
                        False))
        if step.levels:
            first = self.update_id[sym] + 1
            self.update_id[sym] += len(step.levels)
            ev = {"e": "depthUpdate", "E": ms, "s": sym, "U": first, "u": self.update_id[sym],
                  "b": [[self._num(p, ps), self._num(q, ss)] for s, p, q in step.levels if s == BID],
                  "a": [[self._num(p, ps), self._num(q, ss)] for s, p, q in step.levels if s == ASK]}
            out += [(f"{low}@depth@100ms", ev, True), (f"{low}@depth", ev, True)]
        for c in self.clients:
            for stream, ev, book in out:
                if stream in c.streams:
                    self.send(c, {"stream": stream, "data": ev} if c.combined else ev, book=book)

    # -- REST ------------------------------------------------------------------------------
    def rest(self, req: Request):
        path, query = req.path, req.query
        if req.method == "GET":
            if path == "/api/v3/depth":
                sym = self.uppercase.get(query.get("symbol", ""))
                if sym is None:
                    raise RestError(400, BAD_SYMBOL)
                try:
                    limit = min(int(query.get("limit", 100)), 5000)
                except ValueError:
                    raise RestError(400, {"code": -1100,
                                          "msg": "Illegal characters found in parameter 'limit'."}) from None
                inst, book = self.instruments[sym], self.books[sym]
                ps, ss = inst.price_scale, inst.size_scale
                return {"lastUpdateId": self.update_id[sym],
                        "bids": [[self._num(p, ps), self._num(q, ss)] for p, q in book.top(BID, limit)],
                        "asks": [[self._num(p, ps), self._num(q, ss)] for p, q in book.top(ASK, limit)]}
            if path == "/api/v3/exchangeInfo":
                wanted = query.get("symbol")
                if wanted is not None and wanted not in self.uppercase:
                    raise RestError(400, BAD_SYMBOL)
                syms = [self.uppercase[wanted]] if wanted else list(self.instruments)
                return {"timezone": "UTC", "serverTime": self._ms(), "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
                    "exchangeFilters": [], "symbols": [self._symbol_info(self.instruments[s]) for s in syms]}
            if path == "/api/v3/ping":
                return {}
            if path == "/api/v3/time":
                return {"serverTime": self._ms()}
        raise RestError(404, {"code": -1000, "msg": f"Unknown endpoint {path}."})

    def _symbol_info(self, inst) -> dict:
        ps, ss = inst.price_scale, inst.size_scale
        return {
            "symbol": inst.symbol, "status": "TRADING", "baseAsset": inst.base, "baseAssetPrecision": 8,
            "quoteAsset": inst.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"], "isSpotTradingAllowed": True,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": self._num(inst.tick, ps), "maxPrice": "1000000.00000000",
                 "tickSize": self._num(inst.tick, ps)},
                {"filterType": "LOT_SIZE", "minQty": self._num(max(inst.min_size, inst.lot), ss),
                 "maxQty": "9000.00000000", "stepSize": self._num(inst.lot, ss)},
                {"filterType": "NOTIONAL", "minNotional": self._num(inst.min_notional, ps),
                 "applyMinToMarket": True, "maxNotional": "9000000.00000000", "applyMaxToMarket": False},
            ],
        }

    def rate_limit_body(self, status: int):
        if status == 418:
            return {"code": -1003, "msg": f"Way too many requests; IP(127.0.0.1) banned until {self._ms() + 120_000}. "
                                          "Please use the websocket for live updates to avoid bans."}
        return {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per "
                                      "minute. Please use the websocket for live updates to avoid polling the API."}


def _norm(stream: str) -> str:
    # Symbols are lowercase in stream names; the rest (``aggTrade``, ``depth@100ms``) is kept.
    sym, at, rest = stream.partition("@")
    return sym.lower() + at + rest
