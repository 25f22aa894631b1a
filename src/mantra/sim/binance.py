"""Binance spot simulator: combined/raw streams, SUBSCRIBE & co., ``/api/v3/depth``, ``exchangeInfo``.

Streams are named in the URL (``/stream?streams=btcusdt@depth@100ms/btcusdt@trade`` wraps each
event as ``{"stream","data"}``; ``/ws/<stream>`` sends it raw) or subscribed live.  Every step of a
symbol is one ``depthUpdate`` whose ``U..u`` covers one update id per changed level, so a lost
frame shows as ``U > last u + 1``; the REST snapshot's ``lastUpdateId`` is the id of the book it
shows.  (The real ``@depth@100ms`` batches 100 ms of changes; one event per step is the same rule
at a finer grain.)  Prices and quantities are written with 8 decimals, as Binance does.  WebSocket
pings come from the server every 20 s.  ``reconnect_request`` sends ``serverShutdown``.

Order entry (the section at the end): the WebSocket API on the path ``/ws-api/v3`` of the same port
(``ws_api_url``): ``order.place`` (LIMIT GTC/IOC, LIMIT_MAKER), ``order.cancel``,
``order.amend.keepPriority``, ``order.cancelReplace`` (STOP_ON_FAILURE; a partial success is a 409),
``openOrders.cancelAll``, ``order.status``, ``ping`` and the user stream
``userDataStream.subscribe.signature`` (``executionReport``, ``outboundAccountPosition`` wrapped in
``{"subscriptionId","event"}``); answers carry ``rateLimits``.  The signed REST calls:
``GET /api/v3/openOrders``, ``/api/v3/account``, ``/api/v3/myTrades``, ``/api/v3/order``, and
``POST``/``DELETE /api/v3/order``, ``PUT /api/v3/order/amend/keepPriority``,
``POST /api/v3/order/cancelReplace``, ``DELETE /api/v3/openOrders``, with the
``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-10S`` headers.  Every signed request is checked with the
real signing (``venues/binance/auth.py``): a wrong key (-2015), signature (-1022), or a timestamp
outside its recvWindow (-1021) gets the venue's own error.  The venue's filters and codes: tick,
lot, min notional (-1013 ``Filter failure: ...``), insufficient balance and post-only that would
cross (-2010), unknown order (-2011 on cancel, -2013 on a query), a client id already used (-2010
``Duplicate order sent.``).  One account: the accepted ``credentials`` (``{apiKey: secret}``, default
the documented test-vector key), its ``balances``; matching by ``trading.matching.Matching`` against
the simulator's own book (its changes and trades are applied to the engine, so resting orders fill
as the market trades).  ORDERS per 10 s (``orders_10s``) refused with 429 / -1015 and ``retryAfter``.
Order-entry faults (``faults.py``): ``order_5xx`` (the next order request is carried out, then
answered 503 / -1007 "execution status unknown"), ``order_timeout`` (carried out, never answered;
a 504 on REST), ``order_rate_limit`` (429 / -1015 with ``retryAfter`` 1 s later), ``stream_duplicate``
(the next N user-stream events twice), ``stream_reorder`` (the next event after the one that follows
it), ``stream_disconnect`` (the next fill's events are lost with the WS-API connections holding a
subscription, which are cut), ``ban`` (the next REST request answered 418), ``cancel_filled`` (the next
cancel finds its order filled: rejected -2011 ``Unknown order sent.``); ``rate_limit`` (429 with
``Retry-After``) as for every venue.
"""

from __future__ import annotations

import secrets as _secrets
import time

from ..fixed import FixedPointError, from_fixed, to_fixed
from ..spine.messages import OrderAction, OrderFlags, OrderRequest, OrderStatus
from ..trading.accounts import Reject
from ..venues.binance import auth as binance_auth
from .market import ASK, BID, Listing
from .account import AccountSim
from .server import Reply, Request, RestError, VenueSimulator

LISTINGS = (
    Listing("BTCUSDT", "BTC", "USDT", "0.01", "0.00001", "27000.00", "3", "0.00001", "5"),
    Listing("ETHUSDT", "ETH", "USDT", "0.01", "0.0001", "1800.00", "40", "0.0001", "5"),
    Listing("SOLUSDT", "SOL", "USDT", "0.01", "0.001", "24.50", "500", "0.001", "5"),
)
BAD_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}

# -- order entry ---------------------------------------------------------------------------------
WS_API = "/ws-api/v3"
# the documentation's HMAC test vector key (exchanges.md 1.7)
DEFAULT_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DEFAULT_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DEFAULT_BALANCES = {"USDT": "1000000", "BTC": "10", "ETH": "100", "SOL": "10000"}
S = OrderStatus
TERMINAL = (S.FILLED, S.CANCELLED, S.EXPIRED, S.REJECTED)
STATUS_TEXT = {S.ACK: "NEW", S.OPEN: "NEW", S.PARTIALLY_FILLED: "PARTIALLY_FILLED", S.FILLED: "FILLED",
               S.CANCELLED: "CANCELED", S.EXPIRED: "EXPIRED", S.REJECTED: "REJECTED"}
REJECT_CODES = {  # the engine's refusal -> the venue's (code, msg)
    Reject.TICK: (-1013, "Filter failure: PRICE_FILTER"), Reject.LOT: (-1013, "Filter failure: LOT_SIZE"),
    Reject.MIN_SIZE: (-1013, "Filter failure: LOT_SIZE"), Reject.MIN_NOTIONAL: (-1013, "Filter failure: NOTIONAL"),
    Reject.POST_ONLY: (-2010, "Order would immediately match and take."),
    Reject.INSUFFICIENT_BALANCE: (-2010, "Account has insufficient balance for requested action."),
    Reject.BAD_REQUEST: (-1013, "Invalid quantity."), Reject.UNKNOWN_ORDER: (-2011, "Unknown order sent."),
}
ORDER_METHODS = frozenset(("order.place", "order.cancel", "order.amend.keepPriority", "order.cancelReplace",
                           "POST /api/v3/order", "DELETE /api/v3/order", "PUT /api/v3/order/amend/keepPriority",
                           "POST /api/v3/order/cancelReplace"))
WS_WEIGHT = {"order.place": 1, "order.cancel": 1, "order.cancelReplace": 1, "order.amend.keepPriority": 4,
             "openOrders.cancelAll": 1, "order.status": 4, "userDataStream.subscribe.signature": 2, "ping": 1}
WS_METHODS = frozenset(WS_WEIGHT) - {"ping"}
REST_WEIGHT = {"GET /api/v3/openOrders": 80, "GET /api/v3/account": 20, "GET /api/v3/myTrades": 20,
               "GET /api/v3/order": 4, "PUT /api/v3/order/amend/keepPriority": 4}
SIGNED = {"GET": ("/api/v3/openOrders", "/api/v3/account", "/api/v3/myTrades", "/api/v3/order"),
          "POST": ("/api/v3/order", "/api/v3/order/cancelReplace"),
          "DELETE": ("/api/v3/order", "/api/v3/openOrders"), "PUT": ("/api/v3/order/amend/keepPriority",)}


class _VenueError(Exception):
    """A request the venue refuses: its code and text, the status it comes with, extra ``data``."""

    def __init__(self, code: int, msg: str, status: int = 400, data=None):
        super().__init__(code, msg)
        self.code, self.msg, self.status, self.data = code, msg, status, data

    def doc(self) -> dict:
        """The error as the venue writes it: ``{"code", "msg"}`` and ``data`` when there is some."""
        d = {"code": self.code, "msg": self.msg}
        if self.data is not None:
            d["data"] = self.data
        return d


# the answer of an order request the backend did not answer in time (the ``order_5xx`` fault)
BACKEND_TIMEOUT = {"code": -1007, "msg": "Timeout waiting for response from backend server. Send status unknown; "
                                         "execution status unknown."}


class _SimOrder:
    __slots__ = ("oid", "cid", "sym", "iid", "created", "cum", "quote", "type", "tif", "announced")

    def __init__(self, oid, cid, sym, iid, created, typ, tif):
        self.oid, self.cid, self.sym, self.iid, self.created = oid, cid, sym, iid, created
        self.cum = self.quote = 0
        self.type, self.tif = typ, tif
        self.announced = False  # its NEW report was sent


def _random_cid() -> str:
    """A client id the venue makes up (``x-`` + 20 characters), as for a cancel without one."""
    return "x-" + _secrets.token_hex(10)


class BinanceSimulator(AccountSim, VenueSimulator):
    venue = "binance"
    LISTINGS = LISTINGS

    def __init__(self, source=None, *, credentials: dict | None = None, balances: dict | None = None,
                 maker_bps: int = 10, taker_bps: int = 10, orders_10s: int = 50, weight_limit: int = 6000, **kw):
        super().__init__(source, **kw)
        self.update_id = {s: 1_000_000 for s in self.instruments}  # last update id per symbol
        self.uppercase = {s.upper(): s for s in self.instruments}
        self._init_orders(credentials, balances, maker_bps, taker_bps, orders_10s, weight_limit)

    @property
    def ws_api_url(self) -> str:
        return f"ws://{self.address}{WS_API}"

    def _num(self, value: int, scale: int) -> str:
        return from_fixed(value, scale, 8)

    # -- connection ------------------------------------------------------------------------
    def on_open(self, c) -> None:
        c.api = c.path.rstrip("/") == WS_API
        c.sub = None  # the user-stream subscription id (WS API)
        c.held = None
        if c.api:
            return
        c.combined = c.path.startswith("/stream")
        if c.combined:
            names = c.query.get("streams", "")
        else:  # /ws/<stream>[/<stream>...], or bare /ws and SUBSCRIBE later
            names = c.path[len("/ws") :].strip("/")
        c.streams = {_norm(n) for n in names.split("/") if n}

    def on_message(self, c, msg) -> None:
        if c.api:
            self._api(c, msg)
            return
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
        if c.api:
            self.send(c, {"id": None, "status": 400, "error": {"code": -1102, "msg": "Invalid JSON."}})
            return
        self.send(c, {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1", "id": None})

    def reconnect_message(self, c):
        if c.api:
            return {"id": None, "status": 200, "event": {"e": "serverShutdown", "E": self._ms()}}
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
            if c.api:
                continue
            for stream, ev, book in out:
                if stream in c.streams:
                    self.send(c, {"stream": stream, "data": ev} if c.combined else ev, book=book)

    # -- REST ------------------------------------------------------------------------------
    def rest(self, req: Request):
        path, query = req.path, req.query
        if path in SIGNED.get(req.method, ()):
            return self._rest_signed(req)
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


    # -- order entry -----------------------------------------------------------------------
    def _init_orders(self, credentials, balances, maker_bps, taker_bps, orders_10s, weight_limit) -> None:
        self._init_account(credentials, {DEFAULT_KEY: DEFAULT_SECRET}, balances, DEFAULT_BALANCES, maker_bps,
                           taker_bps)
        self.orders_10s, self.weight_limit = int(orders_10s), int(weight_limit)
        self._windows = {"orders": [0, 0], "weight": [0, 0], "day": [0, 0]}  # name -> [window start ns, count]
        self._subs = 0
        # sim_orders: orderId -> _SimOrder; trades: (myTrades record, client id)

    # the truth about the account (and account(), balance(), order_state(), the faults: sim/account.py)
    def open_orders(self) -> dict[str, object]:
        """Client order id -> the engine's state of each open order."""
        with self.lock:
            return {self.sim_orders[st.order_id].cid: st for st in self.engine.open_orders("binance")}

    def fills_of(self, cid: str) -> list[dict]:
        """The myTrades records of the order with client id ``cid`` and of its replacements
        (``order.cancelReplace`` with ``newClientOrderId`` = ``<cid>_<n>``)."""
        with self.lock:
            return [dict(rec) for rec, c in self.trades if c == cid or c.startswith(cid + "_")]

    # engine in and out
    def _apply(self, step) -> None:
        super()._apply(step)
        now = self._feed_engine(step)
        if now is not None:
            self._stream(self._collect(now))

    def idle(self, now: float) -> None:
        for c in self.clients:
            if c.api and c.held is not None and now - c.held[1] > 0.5:  # nothing came after it: send it late
                self.send(c, c.held[0])
                c.held = None

    def _q(self, so, v: int) -> str:
        return self._num(v, self.instruments[so.sym].size_scale)

    def _p(self, so, v: int) -> str:
        return self._num(v, self.instruments[so.sym].price_scale)

    def _collect(self, now: int, amended: int = 0, cancel_cid: str = "") -> list:
        """The engine's messages since the last call -> user-stream events."""
        out, self._engine_out = self._engine_out, []
        events = []
        last_fill = None
        changed: dict[str, tuple] = {}
        for port, m in out:
            if port == "fills":
                so = self.sim_orders[m.order_id]
                st = self.engine.order(m.order_id)
                inst = self.engine.registry[m.instrument]
                so.cum += m.size
                so.quote += m.price * m.size // 10**inst.size_scale
                ms = m.exch_ts // 1_000_000
                status = "FILLED" if st is not None and so.cum >= st.size else "PARTIALLY_FILLED"
                ev = self._report(so, st, "TRADE", status, ms)
                ev.update({"l": self._q(so, m.size), "L": self._p(so, m.price), "n": self._num(m.fee, inst.price_scale),
                           "N": inst.quote, "t": m.trade_id, "m": m.liquidity == 1, "z": self._q(so, so.cum)})
                events.append(ev)
                self.trades.append(({"symbol": so.sym, "id": m.trade_id, "orderId": so.oid, "orderListId": -1,
                                     "price": self._p(so, m.price), "qty": self._q(so, m.size),
                                     "quoteQty": self._num(m.price * m.size // 10**inst.size_scale, inst.price_scale),
                                     "commission": self._num(m.fee, inst.price_scale), "commissionAsset": inst.quote,
                                     "time": ms, "isBuyer": m.side > 0, "isMaker": m.liquidity == 1,
                                     "isBestMatch": True}, so.cid))
                last_fill = m.order_id
            elif port == "updates":
                so = self.sim_orders.get(m.order_id)
                st_ = S(m.status)
                if so is None or st_ in (S.REJECTED, S.CANCEL_REJECTED):
                    continue
                if st_ in (S.PARTIALLY_FILLED, S.FILLED) and last_fill == m.order_id and m.order_id != amended:
                    continue  # the trade report said it
                st = self.engine.order(m.order_id)
                ms = m.exch_ts // 1_000_000
                if st_ == S.ACK or (st_ == S.OPEN and m.order_id != amended):
                    if so.announced:
                        continue
                    so.announced = True
                    events.append(self._report(so, st, "NEW", "NEW", ms))
                elif m.order_id == amended and st_ in (S.OPEN, S.PARTIALLY_FILLED):
                    events.append(self._report(so, st, "REPLACED", STATUS_TEXT[st_], ms))
                    amended = 0
                elif st_ in (S.CANCELLED, S.EXPIRED):
                    ev = self._report(so, st, STATUS_TEXT[st_], STATUS_TEXT[st_], ms)
                    if st_ == S.CANCELLED:
                        ev["c"], ev["C"] = cancel_cid or _random_cid(), so.cid
                    events.append(ev)
            elif port == "balances":
                asset = m.asset.rstrip(b"\0").decode()
                changed[asset] = (m.total, m.available, m.scale, m.exch_ts)
        if changed:
            ts = max(v[3] for v in changed.values()) // 1_000_000
            events.append({"e": "outboundAccountPosition", "E": ts, "u": ts, "B": [
                {"a": a, "f": from_fixed(avail, scale, 8), "l": from_fixed(total - avail, scale, 8)}
                for a, (total, avail, scale, _) in sorted(changed.items())]})
        return events

    def _report(self, so, st, x: str, status: str, ms: int) -> dict:
        return {"e": "executionReport", "E": ms, "s": so.sym, "c": so.cid, "S": "BUY" if st.side > 0 else "SELL",
                "o": so.type, "f": so.tif, "q": self._q(so, st.size), "p": self._p(so, st.price), "P": "0.00000000",
                "F": "0.00000000", "g": -1, "C": "", "x": x, "X": status, "r": "NONE", "i": so.oid,
                "l": "0.00000000", "z": self._q(so, so.cum), "L": "0.00000000", "n": "0", "N": None, "T": ms,
                "t": -1, "v": 0, "I": so.oid, "w": status in ("NEW", "PARTIALLY_FILLED"), "m": False, "M": False,
                "O": so.created // 1_000_000, "Z": self._num(so.quote, self.instruments[so.sym].price_scale),
                "Y": "0.00000000", "Q": "0.00000000", "W": so.created // 1_000_000, "V": "NONE"}

    def _stream(self, events: list) -> None:
        """Send user-stream events to the subscribed WS-API connections; the stream faults apply."""
        if not events:
            return
        if self._cut and any(e.get("x") == "TRADE" for e in events):
            self._cut -= 1
            self.order_counts["stream_cut"] += 1
            for c in list(self.clients):
                if c.open and c.api and c.sub is not None:  # the fills are lost with the connection
                    c.open = False
                    self._close_later(c, 1011, "simulated user stream loss")
            return
        dup = reorder = False
        if self._dup:
            self._dup -= 1
            dup = True
        if self._reorder:
            self._reorder -= 1
            reorder = True
        for c in list(self.clients):
            if not (c.open and c.api and c.sub is not None):
                continue
            frames = [{"subscriptionId": c.sub, "event": e} for e in events]
            for k, f in enumerate(frames):
                if reorder and k == 0 and c.held is None:
                    c.held = (f, time.monotonic())
                    continue
                self.send(c, f)
                if dup:
                    self.send(c, f)
                if c.held is not None and c.held[0] is not f:
                    self.send(c, c.held[0])
                    c.held = None

    # rate limits (the venue's fixed windows)
    def _count(self, name: str, n: int, now: int) -> int:
        w = self._windows[name]
        span = {"orders": 10_000_000_000, "weight": 60_000_000_000, "day": 86_400_000_000_000}[name]
        start = now - now % span
        if w[0] != start:
            w[0], w[1] = start, 0
        w[1] += n
        return w[1]

    def _rate_limits(self, now: int) -> list:
        return [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.weight_limit, "count": self._count("weight", 0, now)},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": self.orders_10s,
                 "count": self._count("orders", 0, now)},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160_000,
                 "count": self._count("day", 0, now)}]

    def _rate_headers(self, now: int) -> dict:
        return {"X-MBX-USED-WEIGHT-1M": str(self._count("weight", 0, now)),
                "X-MBX-ORDER-COUNT-10S": str(self._count("orders", 0, now)),
                "X-MBX-ORDER-COUNT-1D": str(self._count("day", 0, now))}

    def _order_slot(self, now: int) -> None:
        """One more order in the ORDERS windows, or the venue's refusal."""
        if self._count("orders", 0, now) + 1 > self.orders_10s:
            self.order_counts["rate_limited"] += 1
            raise _VenueError(-1015, f"Too many new orders; current limit is {self.orders_10s} orders per 10 "
                                     "SECOND.", 429, {"retryAfter": (now // 10**10 + 1) * 10_000})
        self._count("orders", 1, now)
        self._count("day", 1, now)

    # requests, both paths
    def _oid(self) -> int:
        self._next_oid += 1
        return self._next_oid

    def _symbol_of(self, p: dict) -> str:
        name = p.get("symbol")
        if not name:
            raise _VenueError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        sym = self.uppercase.get(str(name))
        if sym is None:
            raise _VenueError(-1121, "Invalid symbol.")
        return sym

    def _order_of(self, p: dict, cid_key="origClientOrderId", id_key="orderId") -> "_SimOrder":
        sym = self._symbol_of(p)
        so = None
        if p.get(id_key) not in (None, ""):
            try:
                so = self.sim_orders.get(int(p[id_key]))
            except (TypeError, ValueError):
                raise _VenueError(-1100, f"Illegal characters found in parameter '{id_key}'.") from None
        elif p.get(cid_key):
            so = self.by_cid.get(str(p[cid_key]))
        else:
            raise _VenueError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if so is None or so.sym != sym:
            raise _VenueError(-2011, "Unknown order sent.")
        return so

    def _order_doc(self, so) -> dict:
        st = self.engine.order(so.oid)
        return {"symbol": so.sym, "orderId": so.oid, "orderListId": -1, "clientOrderId": so.cid,
                "price": self._p(so, st.price), "origQty": self._q(so, st.size), "executedQty": self._q(so, st.filled),
                "cummulativeQuoteQty": self._num(st.quote, self.instruments[so.sym].price_scale),
                "status": STATUS_TEXT.get(S(st.status), "NEW"), "timeInForce": so.tif, "type": so.type,
                "side": "BUY" if st.side > 0 else "SELL", "stopPrice": "0.00000000", "icebergQty": "0.00000000",
                "time": so.created // 1_000_000, "updateTime": st.updated // 1_000_000,
                "isWorking": S(st.status) in (S.ACK, S.OPEN, S.PARTIALLY_FILLED),
                "workingTime": so.created // 1_000_000,
                "origQuoteOrderQty": "0.00000000", "selfTradePreventionMode": "NONE"}

    def _fx(self, p: dict, name: str, scale: int, filt: str) -> int:
        v = p.get(name)
        if v in (None, ""):
            raise _VenueError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        try:
            x = to_fixed(str(v), scale)
        except FixedPointError:
            try:
                float(str(v))
            except ValueError:
                raise _VenueError(-1100, f"Illegal characters found in parameter '{name}'.") from None
            raise _VenueError(-1013, f"Filter failure: {filt}") from None
        if x <= 0:
            raise _VenueError(-1013, f"Filter failure: {filt}")
        return x

    def _place(self, p: dict, now: int, cid_key: str = "newClientOrderId"):
        sym = self._symbol_of(p)
        inst = self.instruments[sym]
        side = p.get("side")
        if side not in ("BUY", "SELL"):
            raise _VenueError(-1117, "Invalid side.")
        typ = p.get("type")
        if typ not in ("LIMIT", "LIMIT_MAKER"):
            raise _VenueError(-1116, "Invalid orderType.")
        tif = p.get("timeInForce") or ""
        if typ == "LIMIT" and tif not in ("GTC", "IOC"):
            raise _VenueError(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
        size = self._fx(p, "quantity", inst.size_scale, "LOT_SIZE")
        px = self._fx(p, "price", inst.price_scale, "PRICE_FILTER")
        cid = str(p.get(cid_key) or "") or _random_cid()
        if cid in self.by_cid:
            self.order_counts["duplicate_cid"] += 1
            raise _VenueError(-2010, "Duplicate order sent.")
        self._order_slot(now)
        flags = (OrderFlags.POST_ONLY if typ == "LIMIT_MAKER" else 0) | (OrderFlags.IOC if tif == "IOC" else 0)
        oid = self._oid()
        so = _SimOrder(oid, cid, sym, inst.id, now, typ, tif or "GTC")
        self.sim_orders[oid] = so
        self.engine.act(OrderRequest(oid, 0, px, size, inst.id, 0, 0, OrderAction.NEW, 1 if side == "BUY" else -1,
                                     int(flags)), now)
        why = next((Reject(m.reason) for port, m in self._engine_out
                    if port == "updates" and m.order_id == oid and m.status == S.REJECTED), None)
        events = self._collect(now)
        if why is not None:
            del self.sim_orders[oid]
            self._stream(events)
            raise _VenueError(*REJECT_CODES.get(why, (-1013, "Invalid quantity.")))
        self.by_cid[cid] = so
        self.placed[cid] += 1
        self.order_counts["placed"] += 1
        return so, events

    def _cancel(self, so, now: int) -> tuple[dict, list]:
        if self._fill_before_cancel(so, now):
            self._stream(self._collect(now))
        st = self.engine.order(so.oid)
        if st is None or S(st.status) in TERMINAL:
            raise _VenueError(-2011, "Unknown order sent.")
        cancel_cid = _random_cid()
        self.engine.act(OrderRequest(self._oid(), so.oid, 0, 0, so.iid, 0, 0, OrderAction.CANCEL, 1, 0), now)
        events = self._collect(now, cancel_cid=cancel_cid)
        doc = self._order_doc(so)
        doc.update({"origClientOrderId": so.cid, "clientOrderId": cancel_cid, "transactTime": now // 1_000_000})
        return doc, events

    def _amend_keep(self, so, p: dict, now: int) -> tuple[dict, list]:
        st = self.engine.order(so.oid)
        if st is None or S(st.status) in TERMINAL:
            raise _VenueError(-2011, "Unknown order sent.")
        inst = self.instruments[so.sym]
        qty = self._fx(p, "newQty", inst.size_scale, "LOT_SIZE")
        if qty >= st.size or qty <= st.filled:
            raise _VenueError(-2038, "Order amend (quantity increase) rejected.") if qty >= st.size else \
                _VenueError(-1013, "Invalid quantity.")
        new_cid = str(p.get("newClientOrderId") or "") or _random_cid()
        if new_cid != so.cid and new_cid in self.by_cid:
            raise _VenueError(-2010, "Duplicate order sent.")
        self.engine.act(OrderRequest(self._oid(), so.oid, st.price, qty, so.iid, 0, 0, OrderAction.AMEND, st.side, 0),
                        now)
        old = so.cid
        if new_cid != so.cid:
            self.by_cid[new_cid] = so
            so.cid = new_cid
        events = self._collect(now, amended=so.oid)
        for e in events:
            if e.get("x") == "REPLACED":
                e["C"] = old
        doc = self._order_doc(so)
        doc = {"symbol": so.sym, "orderId": so.oid, "orderListId": -1, "origClientOrderId": old,
               "clientOrderId": so.cid, "price": doc["price"], "qty": doc["origQty"], "executedQty": doc["executedQty"],
               "preventedQty": "0.00000000", "quoteOrderQty": "0.00000000",
               "cumulativeQuoteQty": doc["cummulativeQuoteQty"], "status": doc["status"],
               "timeInForce": so.tif, "type": so.type, "side": doc["side"], "workingTime": doc["workingTime"],
               "selfTradePreventionMode": "NONE"}
        return {"transactTime": now // 1_000_000, "executionId": self._oid(), "amendedOrder": doc}, events

    def _cancel_replace(self, p: dict, now: int) -> tuple[dict, list]:
        if p.get("cancelReplaceMode") not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise _VenueError(-1102, "Mandatory parameter 'cancelReplaceMode' was not sent, was empty/null, or "
                                     "malformed.")
        try:
            so = self._order_of(p, "cancelOrigClientOrderId", "cancelOrderId")
            st = self.engine.order(so.oid)
            restrict = p.get("cancelRestrictions")
            if st is not None and ((restrict == "ONLY_NEW" and st.filled)
                                   or (restrict == "ONLY_PARTIALLY_FILLED" and not st.filled)):
                raise _VenueError(-2011, "Order was not canceled due to cancel restrictions.")
            cdoc, events = self._cancel(so, now)
        except _VenueError as e:
            raise _VenueError(-2022, "Order cancel-replace failed.", 400, {
                "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                "cancelResponse": {"code": e.code, "msg": e.msg}, "newOrderResponse": None}) from None
        try:
            nso, more = self._place(p, now)
        except _VenueError as e:
            self._stream(events)
            raise _VenueError(-2021, "Order cancel-replace partially failed.", 409, {
                "cancelResult": "SUCCESS", "newOrderResult": "FAILURE", "cancelResponse": cdoc,
                "newOrderResponse": {"code": e.code, "msg": e.msg}}) from None
        return {"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS", "cancelResponse": cdoc,
                "newOrderResponse": {**self._order_doc(nso), "transactTime": now // 1_000_000}}, events + more

    def _cancel_all(self, p: dict, now: int) -> tuple[list, list]:
        sym = self._symbol_of(p)
        iid = self.instruments[sym].id
        live = [st for st in self.engine.open_orders("binance", iid)]
        if not live:
            raise _VenueError(-2011, "Unknown order sent.")
        docs, events = [], []
        for st in live:
            d, ev = self._cancel(self.sim_orders[st.order_id], now)
            docs.append(d)
            events += ev
        return docs, events

    def _take_fault(self) -> str | None:
        return self._order_faults.popleft() if self._order_faults else None

    def _call(self, method: str, p: dict, now: int):
        """One signed request, either path: (result, user-stream events)."""
        if method in ("order.status", "GET /api/v3/order"):
            so = None
            try:
                so = self._order_of(p)
            except _VenueError as e:
                if e.code != -2011:
                    raise
            if so is None or self.engine.order(so.oid) is None:
                raise _VenueError(-2013, "Order does not exist.")
            return self._order_doc(so), []
        if method == "GET /api/v3/openOrders":
            sym = self._symbol_of(p) if p.get("symbol") else None
            return [self._order_doc(self.sim_orders[st.order_id]) for st in self.engine.open_orders("binance")
                    if sym is None or self.sim_orders[st.order_id].sym == sym], []
        if method == "GET /api/v3/account":
            bals = []
            for (venue, asset), scale in sorted(self.engine.scales.items()):
                total, avail = self.engine.balance(venue, asset)
                if total or p.get("omitZeroBalances") != "true":
                    bals.append({"asset": asset, "free": from_fixed(avail, scale, 8),
                                 "locked": from_fixed(total - avail, scale, 8)})
            return {"makerCommission": 10, "takerCommission": 10, "canTrade": True, "canWithdraw": True,
                    "canDeposit": True, "updateTime": now // 1_000_000, "accountType": "SPOT", "balances": bals,
                    "permissions": ["SPOT"], "uid": 1}, []
        if method == "GET /api/v3/myTrades":
            sym = self._symbol_of(p)
            try:
                start = int(p.get("startTime") or 0)
                from_id = int(p.get("fromId") or 0)
                limit = min(int(p.get("limit") or 500), 1000)
            except ValueError:
                raise _VenueError(-1100, "Illegal characters found in a parameter.") from None
            out = [dict(r) for r, _ in self.trades if r["symbol"] == sym and r["time"] >= start and r["id"] >= from_id]
            return out[:limit], []
        if method in ("openOrders.cancelAll", "DELETE /api/v3/openOrders"):
            return self._cancel_all(p, now)
        if method in ("order.place", "POST /api/v3/order"):
            so, events = self._place(p, now)
            return {**self._order_doc(so), "transactTime": now // 1_000_000}, events
        if method in ("order.cancel", "DELETE /api/v3/order"):
            return self._cancel(self._order_of(p), now)
        if method in ("order.amend.keepPriority", "PUT /api/v3/order/amend/keepPriority"):
            return self._amend_keep(self._order_of(p), p, now)
        if method in ("order.cancelReplace", "POST /api/v3/order/cancelReplace"):
            return self._cancel_replace(p, now)
        raise _VenueError(-1000, f"Unknown method {method}.")  # not reached: the callers check

    # the WebSocket API
    def _api(self, c, msg) -> None:
        if not isinstance(msg, dict) or "method" not in msg:
            self.send(c, {"id": msg.get("id") if isinstance(msg, dict) else None, "status": 400,
                          "error": {"code": -1102, "msg": "Mandatory parameter 'method' was not sent."}})
            return
        rid, method, p = msg.get("id"), msg.get("method"), msg.get("params") or {}
        now = time.time_ns()
        self._count("weight", WS_WEIGHT.get(method, 1), now)
        if method == "ping":
            self.send(c, {"id": rid, "status": 200, "result": {}, "rateLimits": self._rate_limits(now)})
            return
        if method not in WS_METHODS:
            self.send(c, {"id": rid, "status": 400, "error": {"code": -1000, "msg": f"Unknown method {method!r}."}})
            return
        if not isinstance(p, dict):
            self.send(c, {"id": rid, "status": 400, "error": {"code": -1104, "msg": "Not all sent parameters were "
                                                                                   "read."}})
            return
        err = binance_auth.verify_ws(self.credentials, p, now // 1_000_000)
        if err:
            self.order_counts[f"auth_{err[0]}"] += 1
            self.send(c, {"id": rid, "status": 401 if err[0] in (-2014, -2015) else 400,
                          "error": {"code": err[0], "msg": err[1]}, "rateLimits": self._rate_limits(now)})
            return
        if method == "userDataStream.subscribe.signature":
            if c.sub is None:
                c.sub = self._subs
                self._subs += 1
            self.send(c, {"id": rid, "status": 200, "result": {"subscriptionId": c.sub},
                          "rateLimits": self._rate_limits(now)})
            return
        fault = self._take_fault() if method in ORDER_METHODS else None
        if fault == "rate":
            self.order_counts["rate_limited"] += 1
            self.send(c, {"id": rid, "status": 429, "error": {
                "code": -1015, "msg": f"Too many new orders; current limit is {self.orders_10s} orders per 10 SECOND.",
                "data": {"serverTime": now // 1_000_000, "retryAfter": now // 1_000_000 + 1000}},
                "rateLimits": self._rate_limits(now)})
            return
        try:
            result, events = self._call(method, p, now)
        except _VenueError as e:
            self.order_counts["refused"] += 1
            self.send(c, {"id": rid, "status": e.status, "error": e.doc(), "rateLimits": self._rate_limits(now)})
            return
        if fault == "5xx":
            self.order_counts["answered_5xx"] += 1
            self.send(c, {"id": rid, "status": 503, "error": dict(BACKEND_TIMEOUT),
                          "rateLimits": self._rate_limits(now)})
        elif fault == "timeout":
            self.order_counts["not_answered"] += 1
        else:
            self.send(c, {"id": rid, "status": 200, "result": result, "rateLimits": self._rate_limits(now)})
        self._stream(events)

    # the signed REST calls
    def _rest_signed(self, req: Request):
        now = time.time_ns()
        query = req.target.partition("?")[2]
        err, p = binance_auth.verify_rest(self.credentials, dict(req.headers.items()), query, req.body,
                                          now // 1_000_000)
        method = f"{req.method} {req.path}"
        self._count("weight", REST_WEIGHT.get(method, 1), now)
        if err:
            self.order_counts[f"auth_{err[0]}"] += 1
            raise RestError(401 if err[0] in (-2014, -2015) else 400, {"code": err[0], "msg": err[1]},
                            self._rate_headers(now))
        fault = self._take_fault() if method in ORDER_METHODS else None
        if fault == "rate":
            self.order_counts["rate_limited"] += 1
            raise RestError(429, {"code": -1015, "msg": f"Too many new orders; current limit is {self.orders_10s} "
                                                        "orders per 10 SECOND."},
                            {"Retry-After": "1", **self._rate_headers(now)})
        try:
            result, events = self._call(method, p, now)
        except _VenueError as e:
            self.order_counts["refused"] += 1
            headers = self._rate_headers(now)
            if e.status == 429:
                headers["Retry-After"] = "1"
            raise RestError(e.status, e.doc(), headers) from None
        self._stream(events)
        if fault == "5xx":
            self.order_counts["answered_5xx"] += 1
            return Reply(503, dict(BACKEND_TIMEOUT), self._rate_headers(now))
        if fault == "timeout":
            self.order_counts["not_answered"] += 1
            return Reply(504, b"gateway timeout", self._rate_headers(now))
        return Reply(200, result, self._rate_headers(now))


def _norm(stream: str) -> str:
    # Symbols are lowercase in stream names; the rest (``aggTrade``, ``depth@100ms``) is kept.
    sym, at, rest = stream.partition("@")
    return sym.lower() + at + rest
