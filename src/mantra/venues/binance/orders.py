"""Binance spot order entry, sans-IO (``venues/account.py``; ../shared/research/exchanges.md 1.4-1.7).

Connections and paths (the lowest-latency documented ones):

- one WebSocket API connection (``ws_url``, conn ``"api"``): ``order.place`` (LIMIT GTC, LIMIT IOC,
  LIMIT_MAKER for post-only), ``order.cancel`` (by ``origClientOrderId``), ``order.amend.keepPriority``
  (the quantity goes down, the price stays: queue priority kept) or ``order.cancelReplace`` (anything
  else: the new order gets a new client id, ``<client_id>_<n>``, mapped back to our order),
  ``openOrders.cancelAll`` per symbol, ``order.status`` by client id for UNKNOWN outcomes, ``ping``.
  Every request is signed by the WS-API rule (``auth.ws_params``).  The user stream is
  ``userDataStream.subscribe.signature`` on the same connection (listenKeys are gone since
  2026-02-20): ``executionReport``, ``outboundAccountPosition``, ``balanceUpdate``,
  ``eventStreamTerminated`` wrapped in ``{"subscriptionId":N,"event":{...}}``.  When ``ws_url``'s path
  is not a WS-API path (``/ws-api/v3``), that path is appended to its host (a simulator's base URL).
- REST (``rest_url``, signed by ``auth.rest_request``, key in ``X-MBX-APIKEY``): reconciliation at start,
  after a user-stream gap and every ``reconcile_s`` (``GET /api/v3/openOrders``, ``/api/v3/account``,
  ``/api/v3/myTrades`` per symbol, ``/api/v3/order`` to map a fill's order), and the orders themselves
  while the WebSocket is down (``POST /api/v3/order``, ``DELETE /api/v3/order``,
  ``PUT /api/v3/order/amend/keepPriority``, ``POST /api/v3/order/cancelReplace``,
  ``DELETE /api/v3/openOrders``, ``GET /api/v3/order``).

Settings (keyword arguments of the constructor):

``ws_url`` (``wss://ws-api.binance.com:443/ws-api/v3``; testnet ``TESTNET_WS_URL`` =
``wss://ws-api.testnet.binance.vision/ws-api/v3``), ``rest_url`` (``https://api.binance.com``; testnet
``TESTNET_REST_URL`` = ``https://testnet.binance.vision``), ``recv_window_ms`` (5000: every signed request
carries it; a request that reaches the venue later is refused, so an order not found once the window
passed was never placed), ``timeout_s`` (5: a request unanswered this long is UNKNOWN),
``unknown_orders`` (``"cancel"`` | ``"adopt"``), ``reconcile_s`` (60), ``recent_fills_s`` (3600: fills
fetched at start), ``keepalive_s`` (30: a WS-API ``ping`` when idle), ``weight_limit`` (6000 per
minute), ``orders_10s`` (50), ``orders_day`` (160000): the documented limits, replaced by the ones the
venue sends in ``rateLimits``; ``rate_backoff_s`` (10: after a 429 that names no time), ``retry_s`` (2:
a failed reconciliation fetch is retried after this), ``balance_scale`` (8: decimals of
``BalanceUpdate``, Binance's own precision).

Idempotency: every NEW carries ``newClientOrderId = client_id(order_id)`` and is sent once.  No answer
within ``timeout_s``, a dropped connection, a 5xx make its outcome UNKNOWN: the order is asked for by
client id (``order.status``, or REST ``GET /api/v3/order``) and that answer, or the late one, is applied
once.  Fills are deduplicated by the venue's trade id per order.

Rate limits: REQUEST_WEIGHT per minute and ORDERS per 10 s and per day, counted locally in the venue's
fixed windows and set from the counts the venue sends (``rateLimits`` in WS-API answers, the
``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-10S`` headers); a request that would exceed them is
refused (RATE_LIMITED) before it is sent; a 429 / -1003 backs off until the venue's ``retryAfter`` /
``Retry-After``; a 418 (banned) or refused credentials (-2014, -2015, -1022, HTTP 401) halt.
"""

from __future__ import annotations

import logging
from decimal import ROUND_CEILING, ROUND_FLOOR
from urllib.parse import urlsplit, urlunsplit

import msgspec

from ...fixed import FixedPointError
from ...redact import redact
from ...spine.messages import OrderStatus
from ...trading.accounts import Reject
from ..account import (AMEND, CANCEL, IOC as _IOC, NEW, POST_ONLY as _POST_ONLY, TERMINAL, Http, Open, OrderProtocol,
                       VenueOrder, VenueRequest, WsSend, fx as _fx, order_id_of)
from . import auth

log = logging.getLogger(__name__)

WS_URL = "wss://ws-api.binance.com:443/ws-api/v3"
TESTNET_WS_URL = "wss://ws-api.testnet.binance.vision/ws-api/v3"
REST_URL = "https://api.binance.com"
TESTNET_REST_URL = "https://testnet.binance.vision"
WS_API_PATH = "/ws-api/v3"
CONN = "api"
S = OrderStatus

STATUS = {"NEW": S.OPEN, "PENDING_NEW": S.ACK, "PARTIALLY_FILLED": S.PARTIALLY_FILLED, "FILLED": S.FILLED,
          "CANCELED": S.CANCELLED, "PENDING_CANCEL": None, "REJECTED": S.REJECTED, "EXPIRED": S.EXPIRED,
          "EXPIRED_IN_MATCH": S.EXPIRED}

# request weights (web-socket-api.md / rest-api.md)
WEIGHT = {"order.place": 1, "order.cancel": 1, "order.cancelReplace": 1, "order.amend.keepPriority": 4,
          "openOrders.cancelAll": 1, "order.status": 4, "userDataStream.subscribe.signature": 2, "ping": 1,
          "openOrders": 80, "account": 20, "myTrades": 20, "order": 4}
HALT_CODES = (-2014, -2015, -1022, -1002)  # key format, key/IP/permissions, signature, unauthorized
UNKNOWN_CODES = (-1000, -1001, -1006, -1007)  # unknown error, disconnected, unexpected response, timeout
NOT_FOUND = -2013  # "Order does not exist."
RATE_CODES = (-1003, -1015)

MINUTE_NS = 60_000_000_000
TEN_S_NS = 10_000_000_000
DAY_NS = 86_400_000_000_000


def trade_key(t) -> int:
    """The venue's trade id (an int, per symbol) as the spine's ``trade_id``."""
    return int(t)


def reject_reason(code: int, msg: str) -> Reject:
    """Binance's error -> our Reject code."""
    m = (msg or "").lower()
    if code in RATE_CODES:
        return Reject.RATE_LIMITED
    if code == -1121:
        return Reject.UNKNOWN_INSTRUMENT
    if code in (-2011, NOT_FOUND) or "unknown order" in m or "does not exist" in m:
        return Reject.UNKNOWN_ORDER
    if "insufficient balance" in m:
        return Reject.INSUFFICIENT_BALANCE
    if "immediately match" in m:
        return Reject.POST_ONLY
    if code == -1013 or "filter failure" in m:
        if "price_filter" in m or "tick" in m:
            return Reject.TICK
        if "notional" in m:
            return Reject.MIN_NOTIONAL
        if "lot_size" in m:
            return Reject.LOT
        return Reject.BAD_REQUEST
    if -1199 <= code <= -1100:
        return Reject.BAD_REQUEST
    return Reject.VENUE_ERROR


def ws_api_url(url: str) -> str:
    """``url`` itself when its path is a WS-API path, else ``/ws-api/v3`` on its host."""
    u = urlsplit(url)
    if "ws-api" in u.path:
        return url
    return urlunsplit((u.scheme, u.netloc, WS_API_PATH, "", ""))


def cid_order(cid) -> int | None:
    """Our order id from a client id: ``client_id(order_id)`` or a replacement's ``<client_id>_<n>``."""
    if not cid or type(cid) is not str:
        return None
    base, sep, n = cid.partition("_")
    if sep and not n.isdigit():
        return None
    return order_id_of(base)


class RateLimits:
    """The venue's fixed-window counters: (type, window ns) -> [window start, count, limit]."""

    def __init__(self, weight: int, orders_10s: int, orders_day: int):
        self.w: dict[tuple, list] = {("REQUEST_WEIGHT", MINUTE_NS): [0, 0, weight],
                                     ("ORDERS", TEN_S_NS): [0, 0, orders_10s],
                                     ("ORDERS", DAY_NS): [0, 0, orders_day]}

    def _cur(self, key, now: int) -> list:
        c = self.w[key]
        start = now - now % key[1]
        if c[0] != start:
            c[0], c[1] = start, 0
        return c

    def _due(self, weight: int, orders: int, now: int) -> list:
        """The windows ``weight`` / ``orders`` count in, rolled to ``now``, with what each adds."""
        due = []
        for (kind, span), c in self.w.items():
            n = weight if kind == "REQUEST_WEIGHT" else orders
            if n:
                start = now - now % span
                if c[0] != start:
                    c[0], c[1] = start, 0
                due.append((c, n))
        return due

    def allow(self, weight: int, orders: int, now: int) -> bool:
        for c, n in self._due(weight, orders, now):
            if c[1] + n > c[2]:
                return False
        return True

    def add(self, weight: int, orders: int, now: int) -> None:
        for c, n in self._due(weight, orders, now):
            c[1] += n

    def set(self, kind: str, window_ns: int, count: int, now: int, limit: int | None = None) -> None:
        key = (kind, window_ns)
        if key not in self.w:
            if limit is None:
                return
            self.w[key] = [0, 0, limit]
        c = self._cur(key, now)
        c[1] = max(c[1], int(count))
        if limit:
            c[2] = int(limit)

    def count(self, kind: str, window_ns: int, now: int) -> int:
        return self._cur((kind, window_ns), now)[1]


_INTERVAL = {"SECOND": 1_000_000_000, "MINUTE": MINUTE_NS, "HOUR": 3600_000_000_000, "DAY": DAY_NS}


class _Order(VenueOrder):
    """Ours, over every venue order it has been (a cancelReplace makes a new one, with a new client id)."""

    __slots__ = ("cids", "vid", "cum", "version", "pending")

    def __init__(self, order_id, cid, inst, side, price, size, flags, placed):
        VenueOrder.__init__(self, order_id, cid, inst, side, price, size, flags, placed)
        self.cids = {cid}
        self.vid = 0  # the venue's orderId of the current venue order
        self.cum: dict[str, int] = {}  # client id -> that venue order's cumulative filled (z)
        self.version = 0  # replacements made (cancelReplace)
        self.pending = ""  # the new client id of a cancelReplace in flight
        # filled: cumulative over every venue order this order has been (max seen)

    def venue_ref(self) -> bytes:
        return str(self.vid or "").encode()

    def cum_filled(self) -> int:
        return sum(self.cum.values())


class _Req(VenueRequest):
    __slots__ = ("method", "new_cid", "size")

    def __init__(self, req_id, r, action, sent, via, order, method, new_cid=""):
        VenueRequest.__init__(self, req_id, r, action, sent, via, order)
        self.method, self.new_cid = method, new_cid
        self.size = 0


class BinanceOrders(OrderProtocol):
    venue = "binance"
    order_class = _Order

    def __init__(self, creds, instruments, *, ws_url: str = WS_URL, rest_url: str = REST_URL,
                 recv_window_ms: int = 5000, timeout_s: float = 5.0, unknown_orders: str = "cancel",
                 reconcile_s: float = 60.0, recent_fills_s: float = 3600.0, keepalive_s: float = 30.0,
                 weight_limit: int = 6000, orders_10s: int = 50, orders_day: int = 160_000,
                 rate_backoff_s: float = 10.0, retry_s: float = 2.0, balance_scale: int = 8, **settings):
        super().__init__(creds, instruments, **settings)
        self._init_entry(unknown_orders, settings, timeout_s=timeout_s, reconcile_s=reconcile_s,
                         rate_backoff_s=rate_backoff_s, retry_s=retry_s, balance_scale=balance_scale)
        if not 0 < recv_window_ms <= auth.MAX_RECV_WINDOW:
            raise ValueError(f"recv_window_ms must be in (0, {auth.MAX_RECV_WINDOW}]")
        self.ws_url, self.rest_url = ws_api_url(ws_url), rest_url.rstrip("/")
        self.recv_window = int(recv_window_ms)
        self._json_cache: dict[str, str] = {}
        self.recent_fills_ns = int(recent_fills_s * 1e9)
        self.keepalive_ns = int(keepalive_s * 1e9)
        self.rate = RateLimits(weight_limit, orders_10s, orders_day)
        self.by_cid: dict[str, _Order] = {}
        self.by_vid: dict[tuple, _Order] = {}  # (symbol, orderId) -> ours
        self.foreign: dict[tuple, str] = {}  # (symbol, orderId) -> client id of open orders not ours
        self.known_foreign: set[tuple] = set()
        self.aux: dict[int, tuple] = {}  # other WS-API requests in flight: id -> (kind, data)
        self.subscription = None
        self.subscribing = False
        self.last_sent = 0
        self.unmapped: dict[tuple, list] = {}  # (symbol, orderId) -> REST trades waiting for their order
        self.mapping: set[tuple] = set()

    # ------------------------------------------------------------------------------ helpers
    def _ms(self, now: int) -> int:
        return now // 1_000_000

    def _ws(self, method: str, params: dict | None, rid: int, now: int, signed: bool = True) -> None:
        p = params or {}
        if signed:
            p = auth.ws_params(self.creds.key, self.creds.secret, p, self._ms(now), self.recv_window)
        msg = {"id": rid, "method": method, "params": p} if p else {"id": rid, "method": method}
        self.rate.add(WEIGHT.get(method, 1), 0, now)
        self.last_sent = now
        self.events.append(WsSend(CONN, self._enc.encode(msg).decode()))

    def _rest(self, tag: str, method: str, path: str, params, now: int, weight: int = 1) -> None:
        headers, query, body = auth.rest_request(self.creds.key, self.creds.secret, params, self._ms(now),
                                                 self.recv_window)
        self.counts[f"rest_{path.rsplit('/', 1)[-1]}"] += 1
        if tag == "account":
            self.balances_asked = now
        elif tag == "open":
            self.open_asked = now
        self.rate.add(weight, 0, now)
        self.events.append(Http(tag, method, f"{self.rest_url}{path}?{query}", headers, body))

    @property
    def ready(self) -> bool:
        return self.connected

    def _register(self, o: _Order) -> None:
        self.orders[o.order_id] = o
        for c in o.cids:
            self.by_cid[c] = o
        if o.vid:
            self.by_vid[(o.inst.symbol, o.vid)] = o

    def _set_vid(self, o: _Order, vid) -> None:
        try:
            vid = int(vid)
        except (TypeError, ValueError):
            return
        if vid and vid != o.vid:
            o.vid = vid
        if vid:
            self.by_vid[(o.inst.symbol, vid)] = o

    def _find(self, symbol, vid, cid) -> _Order | None:
        o = self.by_cid.get(cid) if cid else None
        if o is None and vid:
            try:
                o = self.by_vid.get((symbol, int(vid)))
            except (TypeError, ValueError):
                o = None
        if o is None and cid:
            oid = cid_order(cid)
            if oid is not None:
                o = self.orders.get(oid)
                if o is not None:
                    o.cids.add(cid)
                    self.by_cid[cid] = o
        return o

    # ------------------------------------------------------------------------------ start / connection
    def start(self, now: int) -> None:
        self.started = True
        self.events.append(Open(CONN, self.ws_url))
        self._reconcile(now, start=True)
        self.next_reconcile = now + self.reconcile_ns

    def _reconcile(self, now: int, start: bool = False, since_ns: int | None = None) -> None:
        """Open orders, balances and the fills since ``since_ns`` (at start: the recent ones)."""
        self.counts["reconciles"] += 1
        self._rest("open", "GET", "/api/v3/openOrders", (), now, WEIGHT["openOrders"])
        self._rest("account", "GET", "/api/v3/account", (("omitZeroBalances", "true"),), now, WEIGHT["account"])
        if since_ns is None:
            since_ns = now - self.recent_fills_ns if start or not self.last_fill_ns else self.last_fill_ns
        self._fetch_trades(since_ns, now)

    def _fetch_trades(self, since_ns: int, now: int) -> None:
        # myTrades needs a symbol; startTime inclusive, one second earlier: duplicates are dropped
        start = max(since_ns // 1_000_000 - 1000, 0)
        for inst in self.by_id.values():
            self._rest(f"trades:{inst.symbol}", "GET", "/api/v3/myTrades",
                       (("symbol", inst.symbol), ("startTime", start), ("limit", 1000)), now, WEIGHT["myTrades"])

    def on_open(self, conn: str, now: int) -> None:
        if conn != CONN:
            return
        self.connected = True
        self.counts["connects"] += 1
        self._subscribe(now)

    def _subscribe(self, now: int) -> None:
        rid = self._next_req()
        self.aux[rid] = ("subscribe", now, now)
        self.subscribing = True
        self._ws("userDataStream.subscribe.signature", {}, rid, now)

    def on_close(self, conn: str, now: int, reason: str) -> None:
        if conn != CONN:
            return
        was = self.subscribed
        self.connected = self.subscribed = self.subscribing = False
        self.subscription = None
        self.counts["disconnects"] += 1
        log.warning("binance: WS-API connection lost (%s)", redact(reason))
        self._connection_lost(now)
        for rid, (kind, data, _) in list(self.aux.items()):
            del self.aux[rid]
            if kind == "status":  # the question was lost with the connection: ask again over REST
                q = self.reqs.get(data[0]) if data[0] else None
                o = self.orders.get(data[1])
                if o is not None:
                    self._query(o, now, q.req_id if q else 0, data[2])
            elif kind == "cancel_all":  # the kill switch must not stop at a dropped connection
                self._rest(f"cancel_all:{data}", "DELETE", "/api/v3/openOrders", (("symbol", data),), now)
        if was:
            self.counts["stream_gaps"] += 1

    # ------------------------------------------------------------------------------ requests
    def new_room(self, inst, now: int) -> bool:
        return self.rate.allow(1, 1, now)

    def submit_change(self, r, inst, o: _Order, now: int) -> None:
        act = r.action
        if act == AMEND:
            if o.pending:  # one replacement at a time
                self.reject(r, Reject.BAD_REQUEST, now)
                return
            keep = r.price == o.price and r.size < o.size
            if not keep and (o.filled or o.fill_qty):
                # a new price means a new venue order, sized ours less what filled; with fills under
                # way that size is a guess: let the overseer cancel and place anew instead
                self.reject(r, Reject.UNSUPPORTED, now)
                return
            w, n = (WEIGHT["order.amend.keepPriority"], 0) if keep else (1, 1)
        else:
            w, n = 1, 0
        if not self.rate.allow(w, n, now):
            self.reject(r, Reject.RATE_LIMITED, now)
            return
        self._send(r, act, o, now)

    def _place_params(self, o: _Order, inst, price: int, qty: int) -> list:
        p = [("symbol", inst.symbol), ("side", "BUY" if o.side > 0 else "SELL")]
        if o.flags & _POST_ONLY:
            p.append(("type", "LIMIT_MAKER"))
        else:
            p += [("type", "LIMIT"), ("timeInForce", "IOC" if o.flags & _IOC else "GTC")]
        p += [("quantity", inst.size_str(qty)), ("price", inst.price_str(price))]
        return p

    def _send(self, r, act, o: _Order, now: int) -> None:
        rid = self._next_req()
        via = "ws" if self.ready else "rest"
        inst = o.inst
        if act == NEW:
            method = "order.place"
            p = None  # written out below: directly on the WebSocket, or the REST parameters
            rest = ("POST", "/api/v3/order")
        elif act == CANCEL:
            method = "order.cancel"
            p = [("symbol", inst.symbol), ("origClientOrderId", o.cid)]
            rest = ("DELETE", "/api/v3/order")
        elif r.price == o.price and r.size < o.size:
            method = "order.amend.keepPriority"
            # newQty is the venue order's new quantity: ours less what earlier venue orders filled
            prior = sum(v for c, v in o.cum.items() if c != o.cid)
            p = [("symbol", inst.symbol), ("origClientOrderId", o.cid), ("newClientOrderId", o.cid),
                 ("newQty", inst.size_str(r.size - prior))]
            rest = ("PUT", "/api/v3/order/amend/keepPriority")
        else:
            method = "order.cancelReplace"
            o.version += 1
            new_cid = f"{o.cid.partition('_')[0]}_{o.version}"
            o.pending = new_cid
            o.cids.add(new_cid)
            self.by_cid[new_cid] = o
            # ONLY_NEW: the venue replaces the order only while nothing of it has filled, so the new
            # order's size is exactly the amend's; a fill first makes the whole request fail
            p = [("cancelReplaceMode", "STOP_ON_FAILURE"), ("cancelOrigClientOrderId", o.cid),
                 ("cancelRestrictions", "ONLY_NEW")]
            p += self._place_params(o, inst, r.price, r.size)
            p += [("newClientOrderId", new_cid), ("newOrderRespType", "RESULT")]
            rest = ("POST", "/api/v3/order/cancelReplace")
            self.rate.add(0, 1, now)
        q = _Req(rid, r, act, now, via, o, method, o.pending if method == "order.cancelReplace" else "")
        q.size = r.size - o.filled
        self.reqs[rid] = q
        if via == "ws" and act == NEW:
            self._place(o, inst, rid, now)
        elif via == "ws":
            self._ws(method, dict(p), rid, now)
        else:
            if p is None:
                self.rate.add(0, 1, now)
                p = self._place_params(o, inst, o.price, o.size) + [("newClientOrderId", o.cid),
                                                                    ("newOrderRespType", "RESULT")]
            self.counts["rest_fallback"] += 1
            self._rest(f"req:{rid}", rest[0], rest[1], p, now, WEIGHT.get(method, 1))

    def _place(self, o: _Order, inst, rid: int, now: int) -> None:
        """``order.place`` on the WebSocket API, written out directly: the hot path of every new
        order.  The same request ``_ws("order.place", ...)`` would build (a test holds them equal):
        the signed payload in the WS-API's sorted order, then the JSON."""
        ts = now // 1_000_000
        side = "BUY" if o.side > 0 else "SELL"
        if o.flags & _POST_ONLY:
            typ, tif = "LIMIT_MAKER", ""
        else:
            typ, tif = "LIMIT", "IOC" if o.flags & _IOC else "GTC"
        qty, px, key, rw, sym, cid = inst.size_str(o.size), inst.price_str(o.price), self.creds.key, \
            self.recv_window, inst.symbol, o.cid
        signed = (f"apiKey={key}&newClientOrderId={cid}&newOrderRespType=RESULT&price={px}&quantity={qty}"
                  f"&recvWindow={rw}&side={side}&symbol={sym}" + (f"&timeInForce={tif}" if tif else "")
                  + f"&timestamp={ts}&type={typ}")
        sig = auth.sign(self.creds.secret, signed)
        tif_json = f',"timeInForce":"{tif}"' if tif else ""
        self.rate.add(WEIGHT["order.place"], 1, now)  # its weight and the order it places
        self.last_sent = now
        self.events.append(WsSend(CONN, (
            f'{{"id":{rid},"method":"order.place","params":{{"symbol":{self._json(sym)},"side":"{side}",'
            f'"type":"{typ}"{tif_json},"quantity":"{qty}","price":"{px}","newClientOrderId":"{cid}",'
            f'"newOrderRespType":"RESULT","apiKey":{self._json(key)},"recvWindow":{rw},"timestamp":{ts},'
            f'"signature":"{sig}"}}}}')))

    def _json(self, text: str) -> str:
        """A string as JSON (keys and symbols are plain ASCII; escaped anyway), cached."""
        j = self._json_cache.get(text)
        if j is None:
            j = self._json_cache[text] = self._enc.encode(text).decode()
        return j

    def cancel_all(self, now: int) -> None:
        """The kill switch: every open order, by the venue's cancel-all on every symbol."""
        self.counts["cancel_all"] += 1
        for inst in self.by_id.values():
            if self.ready:
                rid = self._next_req()
                self.aux[rid] = ("cancel_all", inst.symbol, now)
                self._ws("openOrders.cancelAll", {"symbol": inst.symbol}, rid, now)
            else:
                self._rest(f"cancel_all:{inst.symbol}", "DELETE", "/api/v3/openOrders", (("symbol", inst.symbol),),
                           now)

    # ------------------------------------------------------------------------------ outcomes
    def _ask(self, q: _Req, now: int) -> None:
        self._query(q.order, now, q.req_id, q.new_cid or q.order.cid)

    def _query(self, o: _Order, now: int, rid: int = 0, cid: str = "") -> None:
        cid = cid or o.cid
        if self.ready:
            qid = self._next_req()
            self.aux[qid] = ("status", (rid, o.order_id, cid), now)
            self._ws("order.status", {"symbol": o.inst.symbol, "origClientOrderId": cid}, qid, now)
        else:
            self._rest(f"query:{rid}:{o.order_id}:{cid}", "GET", "/api/v3/order",
                       (("symbol", o.inst.symbol), ("origClientOrderId", cid)), now, WEIGHT["order"])

    def _ok(self, q: _Req, result, now: int) -> None:
        """The venue accepted ``q`` (a WS or REST answer)."""
        o = q.order
        if q.state == "done":  # a late or duplicate answer
            self.counts["late_answers"] += 1
            if q.action == NEW and o.lost and o.cid not in self.late_cancelled:
                self.late_cancelled.add(o.cid)  # we said it was never placed, and it was: it must not stay
                self.counts["late_accept_cancelled"] += 1
                self._cancel_unknown(o.inst.symbol, 0, o.cid, now)
            return
        self._answered(q)
        if not isinstance(result, dict):
            result = {}
        if q.action == NEW:
            if o.lost:
                self.late_cancelled.add(o.cid)
                self.counts["late_accept_cancelled"] += 1
                self._cancel_unknown(o.inst.symbol, 0, o.cid, now)
                return
            self._apply_order(o, result, now, answer=True, fetch=False)
        elif q.method == "order.amend.keepPriority":
            d = result.get("amendedOrder") or {}
            o.size = q.r.size
            self._apply_order(o, {**d, "clientOrderId": o.cid}, now, fetch=False)
            self._update(o, now, about=q.r.ref_id)
        elif q.method == "order.cancelReplace":
            self._replaced(q, result.get("cancelResponse") or {}, result.get("newOrderResponse") or {}, now)
        elif q.action == CANCEL:
            self._apply_order(o, {**result, "clientOrderId": o.cid, "status": "CANCELED"}, now, answer=True)

    def _replaced(self, q: _Req, cancel: dict, new: dict, now: int) -> None:
        o, r = q.order, q.r
        old = o.cid
        if cancel.get("executedQty") is not None:
            o.cum[old] = max(o.cum.get(old, 0), _fx(cancel["executedQty"], o.inst.size_scale))
        o.cid, o.pending = q.new_cid, ""
        o.price, o.size = r.price, r.size
        o.vid = 0
        self._apply_order(o, new, now, fetch=False)
        self._update(o, now, about=r.ref_id)

    def _err(self, q: _Req, code: int, msg: str, now: int, data=None) -> None:
        o, r = q.order, q.r
        self._venue_error(f"{q.method} {o.order_id}", f"{code} {msg}")
        if code in UNKNOWN_CODES:
            self._unknown(q, now, f"{code} {msg}")
            return
        if q.state == "done":
            self.counts["late_answers"] += 1
            return
        self._answered(q)
        why = reject_reason(code, msg)
        if code in HALT_CODES:
            self.halt(f"binance refused the credentials: {code} {msg}")
        if code == -1021:
            self.counts["clock_skew"] += 1
        if q.action == NEW:
            self._new_refused(o, why, now)
            return
        if q.method == "order.cancelReplace":
            o.pending = ""
            d = data if isinstance(data, dict) else {}
            if d.get("cancelResult") == "SUCCESS":  # a partial success (409): the old order is gone
                self.counts["replace_partial"] += 1
                cr = d.get("cancelResponse") or {}
                if cr.get("executedQty") is not None:
                    o.cum[o.cid] = max(o.cum.get(o.cid, 0), _fx(cr["executedQty"], o.inst.size_scale))
                    o.filled = max(o.filled, o.cum_filled())
                nr = d.get("newOrderResponse") or {}
                why = reject_reason(int(nr.get("code", 0) or 0), str(nr.get("msg", ""))) if nr else why
                if self._set_status(o, S.CANCELLED):
                    self._update(o, now, reason=why)
                return
            cr = d.get("cancelResponse") if d.get("cancelResult") == "FAILURE" else None
            if isinstance(cr, dict):  # the cancel failed: nothing changed; why it failed
                why = reject_reason(int(cr.get("code", 0) or 0), str(cr.get("msg", "")))
                if "restriction" in str(cr.get("msg", "")).lower():  # it filled meanwhile: it stands as it is
                    why = Reject.UNSUPPORTED
        if why == Reject.UNKNOWN_ORDER and q.action in (CANCEL, AMEND):
            # the venue no longer has it open (filled, cancelled): find out how it ended
            self.counts["cancel_on_closed"] += 1
            self._reopen(q)
            self._query(o, now, q.req_id, o.cid)
            return
        self._update(o, now, status=S.CANCEL_REJECTED, reason=why, about=r.ref_id)

    def _apply_order(self, o: _Order, d: dict, now: int, answer: bool = False, reconcile: bool = False,
                     fetch: bool = True) -> bool:
        """An order as the venue describes it (an answer, ``order.status``, ``openOrders``); emits an
        update when something changed (always for an answer).  True if it changed."""
        inst = o.inst
        changed = False
        cid = d.get("clientOrderId") or d.get("origClientOrderId") or o.cid
        if d.get("orderId") is not None and cid == o.cid:
            self._set_vid(o, d["orderId"])
        if cid != o.cid and cid == o.pending:
            return False  # a replacement's answer comes through its own request
        if d.get("price") not in (None, "") and cid == o.cid:
            p = _fx(d["price"], inst.price_scale)
            if p and p != o.price:
                o.price, changed = p, True
        if d.get("executedQty") not in (None, ""):
            z = _fx(d["executedQty"], inst.size_scale)
            if z > o.cum.get(cid, 0):
                o.cum[cid] = z
            tot = o.cum_filled()
            if tot > o.filled:
                o.filled, changed = tot, True
            if fetch and tot > o.fill_qty:  # fills not seen yet: fetch them
                self._fetch_trades_for(o, now)
        if d.get("origQty") not in (None, "") and cid == o.cid:
            prior = sum(v for c, v in o.cum.items() if c != o.cid)
            s = _fx(d["origQty"], inst.size_scale) + prior
            if s != o.size:
                o.size, changed = s, True
        st = STATUS.get(d.get("status")) if cid == o.cid else None
        if self._set_status(o, st):
            changed = True
        if reconcile and changed:
            self.counts["drift_corrected"] += 1
        if changed or answer:
            self._update(o, now)
        return changed

    def _fetch_trades_for(self, o: _Order, now: int) -> None:
        key = f"trades:{o.inst.symbol}"
        if key in self.retry_at:
            return
        start = max(min(o.placed, self.last_fill_ns or o.placed) // 1_000_000 - 60_000, 0)
        self._rest(key, "GET", "/api/v3/myTrades",
                   (("symbol", o.inst.symbol), ("startTime", start), ("limit", 1000)), now, WEIGHT["myTrades"])

    def _cancel_unknown(self, symbol: str, vid, cid, now: int) -> None:
        p = {"symbol": symbol}
        if cid:
            p["origClientOrderId"] = cid
        else:
            p["orderId"] = int(vid)
        if self.ready:
            rid = self._next_req()
            self.aux[rid] = ("cancel_unknown", symbol, now)
            self._ws("order.cancel", p, rid, now)
        else:
            self._rest("cancel_unknown", "DELETE", "/api/v3/order", list(p.items()), now)

    # ------------------------------------------------------------------------------ rate limits
    def _rate_fields(self, limits, now: int) -> None:
        for lim in limits or ():
            try:
                kind = lim["rateLimitType"]
                window = _INTERVAL[lim["interval"]] * int(lim.get("intervalNum", 1))
                self.rate.set(kind, window, int(lim["count"]), now, int(lim["limit"]) if lim.get("limit") else None)
            except (KeyError, TypeError, ValueError):
                self.counts["malformed_rate_limits"] += 1

    def _rate_headers(self, headers: dict, now: int) -> None:
        for name, kind, window in (("x-mbx-used-weight-1m", "REQUEST_WEIGHT", MINUTE_NS),
                                   ("x-mbx-order-count-10s", "ORDERS", TEN_S_NS),
                                   ("x-mbx-order-count-1d", "ORDERS", DAY_NS)):
            v = headers.get(name)
            if v is not None:
                try:
                    self.rate.set(kind, window, int(v), now)
                except ValueError:
                    self.counts["malformed_rate_limits"] += 1

    def _back_off(self, until_ns: int, now: int, why: str) -> None:
        self.backoff_until = max(self.backoff_until, until_ns)
        self.counts["rate_limited_by_venue"] += 1
        log.warning("binance: rate limited (%s): backing off %.1f s", redact(why), (self.backoff_until - now) / 1e9)

    def _retry_after(self, data, now: int) -> int:
        """The venue's ``retryAfter`` (ms since the epoch) or the default back-off."""
        try:
            ra = int((data or {}).get("retryAfter"))
            return max(ra * 1_000_000, now)
        except (TypeError, ValueError, AttributeError):
            return now + self.rate_backoff_ns

    # ------------------------------------------------------------------------------ frames
    def on_frame(self, conn: str, text: str, now: int) -> None:
        try:
            msg = self._dec.decode(text)
            if type(msg) is not dict:
                raise ValueError("not an object")
            if "event" in msg:
                self._on_event(msg, now)
            elif "id" in msg and "status" in msg:
                self._on_answer(msg, now)
            else:
                self.counts["ignored_frames"] += 1
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, FixedPointError,
                msgspec.DecodeError) as e:
            self._bad("frame", text, e)

    def _on_answer(self, msg: dict, now: int) -> None:
        rid = msg.get("id")
        status = msg.get("status")
        if msg.get("rateLimits"):
            self._rate_fields(msg["rateLimits"], now)
        err = msg.get("error") if status != 200 else None
        code = int(err.get("code", 0) or 0) if isinstance(err, dict) else 0
        emsg = str(err.get("msg", "")) if isinstance(err, dict) else ""
        data = err.get("data") if isinstance(err, dict) else None
        if status == 418:
            self._venue_error("ban", f"{code} {emsg}")
            self.halt(f"binance answered 418: banned ({code})")
            return
        if status == 429 or code in RATE_CODES:
            self._back_off(self._retry_after(data, now), now, f"{code} {emsg}")
        if status is not None and status >= 500:
            q = self.reqs.get(rid) if type(rid) is int else None
            self.counts["http_5xx"] += 1
            if q is not None:
                self._unknown(q, now, f"status {status}")
                return
        if type(rid) is int and rid in self.aux:
            kind, d, _ = self.aux.pop(rid)
            getattr(self, f"_aux_{kind}")(d, status, msg.get("result"), code, emsg, data, now)
            return
        q = (self.reqs.get(rid) or self.done_reqs.get(rid)) if type(rid) is int else None
        if q is None:
            self.counts["unmatched_answers"] += 1
            return
        if status == 200:
            self._ok(q, msg.get("result"), now)
        elif status == 429 and q.state == "sent":  # refused before it was looked at: not placed
            self._err(q, -1003, emsg or "rate limited", now)
        else:
            self._err(q, code, emsg, now, data)

    def _aux_subscribe(self, d, status, result, code, emsg, data, now) -> None:
        self.subscribing = False
        if status != 200:
            self._venue_error("userDataStream.subscribe.signature", f"{code} {emsg}")
            if code in HALT_CODES:
                self.halt(f"binance refused the credentials: {code} {emsg}")
            else:
                self.retry_at["subscribe"] = now + self.retry_ns
            return
        self.subscribed = True
        self.subscription = (result or {}).get("subscriptionId")
        self.counts["subscribed"] += 1
        if self.counts["subscribed"] > 1:  # a re-subscription: what the gap held
            self._reconcile(now, since_ns=self.last_fill_ns or now - self.recent_fills_ns)

    def _aux_ping(self, d, status, result, code, emsg, data, now) -> None:
        pass

    def _aux_cancel_unknown(self, d, status, result, code, emsg, data, now) -> None:
        if status != 200:
            self._venue_error("order.cancel (unknown order)", f"{code} {emsg}")

    def _aux_cancel_all(self, symbol, status, result, code, emsg, data, now) -> None:
        if status != 200:
            if code != -2011:  # nothing open on that symbol
                self._venue_error("openOrders.cancelAll", f"{code} {emsg}")
                self._rest(f"cancel_all:{symbol}", "DELETE", "/api/v3/openOrders", (("symbol", symbol),), now)
            return
        self._cancelled_list(symbol, result, now)

    def _cancelled_list(self, symbol, result, now) -> None:
        for d in result if isinstance(result, list) else ():
            if not isinstance(d, dict):
                continue
            o = self._find(symbol, d.get("orderId"), d.get("origClientOrderId"))
            if o is not None:
                self._apply_order(o, {**d, "clientOrderId": d.get("origClientOrderId")}, now)

    def _aux_status(self, d, status, result, code, emsg, data, now) -> None:
        rid, oid, cid = d
        self._status_answer(rid, oid, cid, status, result, code, emsg, now)

    def _status_answer(self, rid, oid, cid, status, result, code, emsg, now) -> None:
        """The venue's answer about one order asked for by client id (``order.status`` / GET order)."""
        q = self.reqs.get(rid) if rid else None
        o = self.orders.get(oid)
        if status != 200 and code != NOT_FOUND:
            self._venue_error("order.status", f"{code} {emsg}")
            self.retry_at[f"query:{rid}:{oid}:{cid}"] = now + self.retry_ns
            return
        if oid in self.asking:  # an order we did not know (``_ask_unknown``)
            if q is not None:
                d = result if isinstance(result, dict) else {}
                self._answer_unknown(q, None if status != 200 else
                                     lambda o: self._apply_order(o, d, now, answer=True), now)
            return
        if o is None:
            return
        if status != 200:  # the venue does not know it
            if q is None:
                if o.live and not o.vid and cid == o.cid:
                    o.status = S.REJECTED
                    self._update(o, now, reason=Reject.VENUE_ERROR)
                return
            if q.method == "order.cancelReplace" and cid == q.new_cid:
                self._query(o, now, rid, o.cid)  # the new order is not there: how is the old one?
                return
            if q.action == NEW:
                if now - q.sent <= self.recv_window * 1_000_000:
                    # the venue may still take it within its recvWindow: ask again then
                    self.retry_at[f"query:{rid}:{oid}:{cid}"] = q.sent + self.recv_window * 1_000_000 + 1
                    return
                self._answered(q)
                self._lost(o, now)
                return
            self._answered(q)
            if q.method == "order.cancelReplace":
                o.pending = ""
            self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.UNKNOWN_ORDER, about=q.r.ref_id)
            return
        d = result if isinstance(result, dict) else {}
        if q is None:
            self._apply_order(o, d, now)
            return
        self._answered(q)
        r = q.r
        if q.action == NEW:
            if o.lost:
                return
            self._apply_order(o, d, now, answer=True)
            return
        if q.method == "order.cancelReplace":
            if cid == q.new_cid:  # the replacement exists: the amend happened
                self._replaced(q, {}, d, now)
                return
            o.pending = ""
            self._apply_order(o, d, now)
            if o.live:
                self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.VENUE_ERROR, about=r.ref_id)
            return
        if q.method == "order.amend.keepPriority":
            self._apply_order(o, d, now)
            if o.size != r.size and o.live:
                self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.VENUE_ERROR, about=r.ref_id)
            elif o.live:
                self._update(o, now, about=r.ref_id)
            return
        self._apply_order(o, d, now)
        if o.live:  # still open: the cancel did not happen; the overseer may ask again
            self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.VENUE_ERROR, about=r.ref_id)

    # -- the user stream
    def _on_event(self, msg: dict, now: int) -> None:
        e = msg.get("event")
        if type(e) is not dict:
            raise ValueError("event is not an object")
        if self.subscription is not None and msg.get("subscriptionId") not in (None, self.subscription):
            self.counts["other_subscription"] += 1
        kind = e.get("e")
        if kind == "executionReport":
            self._on_exec(e, now)
        elif kind == "outboundAccountPosition":
            ts = int(e.get("u") or e.get("E") or 0) * 1_000_000 or now
            for b in e.get("B") or ():
                try:
                    self._balance(b["a"], b["f"], b["l"], ts, now)
                except (KeyError, TypeError, ValueError, FixedPointError) as x:
                    self._bad("balance", b, x)
        elif kind == "balanceUpdate":
            self.counts["balance_deltas"] += 1  # an outboundAccountPosition follows with the totals
        elif kind == "eventStreamTerminated":
            self.counts["stream_terminated"] += 1
            self.subscribed = False
            self.subscription = None
            if self.ready and not self.halted:
                self._subscribe(now)
        else:
            self.counts["ignored_events"] += 1

    def _on_exec(self, e: dict, now: int) -> None:
        sym = e.get("s")
        x = e.get("x")
        cid = e.get("C") if x == "CANCELED" and e.get("C") else e.get("c")
        vid = e.get("i")
        o = self._find(sym, vid, cid)
        if o is None:
            self._unknown_order(e, sym, vid, cid, now)
            return
        inst = o.inst
        ts = int(e.get("T") or e.get("E") or 0) * 1_000_000 or now
        o.exch_ts = max(o.exch_ts, ts)
        if cid == o.pending:  # the replacement is live before its answer came: it happened
            self.counts["replaced_by_stream"] += 1
            q = next((q for q in self.reqs.values() if q.order is o and q.new_cid == cid), None)
            if q is not None:
                self._answered(q)
                self._replaced(q, {}, {}, now)
        current = cid == o.cid
        if current and vid is not None:
            self._set_vid(o, vid)
        elif vid is not None:
            self.by_vid[(inst.symbol, int(vid))] = o
        changed = False
        if x == "TRADE":
            self._fill(o, e.get("t"), e["L"], e["l"], e.get("n"), e.get("N"), e.get("m"), ts)
        if e.get("z") is not None:
            z = _fx(e["z"], inst.size_scale)
            if z > o.cum.get(cid, 0):
                o.cum[cid] = z
            tot = o.cum_filled()
            if tot > o.filled:
                o.filled, changed = tot, True
        if current:
            if x in ("AMENDMENT", "REPLACED") or (x == "NEW" and o.status == 0):
                if e.get("q") is not None:
                    prior = sum(v for c, v in o.cum.items() if c != o.cid)
                    s = _fx(e["q"], inst.size_scale) + prior
                    if s != o.size:
                        o.size, changed = s, True
            st = STATUS.get(e.get("X"))
            if self._set_status(o, st):
                changed = True
        if changed:
            self._update(o, now)

    def _fill(self, o: _Order, tid, price, qty, fee, fee_asset, maker, ts: int) -> None:
        if tid is None or int(tid) < 0:
            raise ValueError("trade without a trade id")
        t = trade_key(tid)
        if self._fill_seen(o, t):
            return
        inst = o.inst
        self._add_fill(o, t, _fx(price, inst.price_scale), _fx(qty, inst.size_scale),
                       _fx(fee if fee not in (None, "") else "0", inst.price_scale, ROUND_CEILING), ts,
                       maker in (True, "true"), fee_asset, qty)

    def _unknown_order(self, e: dict, sym, vid, cid, now: int) -> None:
        """An event about an order we do not track: ours from before (adopt or cancel) or foreign."""
        oid = cid_order(cid)
        st = STATUS.get(e.get("X"))
        inst = self.by_symbol.get(sym)
        if oid is None:
            self.counts["foreign_events"] += 1
            key = (sym, int(vid or 0))
            if vid and st in (S.OPEN, S.PARTIALLY_FILLED, S.ACK) and key not in self.foreign:
                self.foreign[key] = cid or ""
                self.counts["foreign_open"] += 1
                if self.unknown_orders == "cancel" and inst is not None:
                    self._cancel_unknown(sym, vid, None, now)
            return
        if inst is None or st is None or st in TERMINAL:
            self.counts["unknown_events"] += 1
            return
        self._adopt_or_cancel(oid, cid, vid, inst, e.get("S"), e.get("p"), e.get("q"), e.get("z"), st, now)

    def _adopt_or_cancel(self, oid, cid, vid, inst, side, price, qty, cum, st, now) -> None:
        if self.unknown_orders == "cancel":
            self.counts["unknown_cancelled"] += 1
            self._cancel_unknown(inst.symbol, vid, cid, now)
            return
        self.counts["adopted"] += 1
        o = _Order(oid, cid, inst, 1 if side == "BUY" else -1, _fx(price or 0, inst.price_scale),
                   _fx(qty or 0, inst.size_scale), 0, now)
        o.status = st
        o.cum[cid] = o.filled = _fx(cum or 0, inst.size_scale)
        o.fill_qty = o.filled  # fills before adoption are history, not news
        self._set_vid(o, vid)
        self._register(o)
        self._update(o, now)

    # -- balances
    def _balance(self, asset: str, free, locked, ts: int, now: int, check: bool = False) -> None:
        asset = str(asset)
        if self._other_asset(asset):
            return
        f = _fx(free, self.balance_scale, ROUND_FLOOR)
        self._put_balance(asset, f + _fx(locked, self.balance_scale, ROUND_FLOOR), f, ts, check, now)

    # ------------------------------------------------------------------------------ REST answers
    def on_http(self, tag: str, status: int, headers: dict, body: bytes, now: int) -> None:
        kind, _, rest = tag.partition(":")
        what = tag if kind in ("query", "trades", "cancel_all") else kind
        if headers:
            self._rate_headers(headers, now)
        if status == 418:
            self.halt("binance answered 418: banned")
            return
        if status == 401:
            self.halt("binance refused the credentials (HTTP 401)")
            return
        doc = None
        if body:
            try:
                doc = self._dec.decode(body)
            except (ValueError, msgspec.DecodeError) as e:
                if status == 200:
                    self._bad(f"REST {kind}", body, e)
                    status = 0
        if status == 429:
            until = now + self._backoff_ns(headers)
            self._back_off(until, now, "HTTP 429")
            self.counts["http_429"] += 1
            if kind == "req":
                q = self.reqs.get(int(rest))
                if q is not None and q.state == "sent":
                    self._err(q, -1003, "rate limited (429)", now)
            else:
                self.retry_at[what] = until
            return
        if status == 0 or status >= 500:
            self._no_answer(kind, rest, what, status, body, now, retry=kind != "cancel_unknown")
            return
        code = int(doc.get("code", 0) or 0) if isinstance(doc, dict) and status != 200 else 0
        emsg = str(doc.get("msg", "")) if isinstance(doc, dict) and status != 200 else ""
        if code in HALT_CODES:
            self._venue_error(f"REST {kind}", f"{code} {emsg}")
            self.halt(f"binance refused the credentials: {code} {emsg}")
            return
        try:
            getattr(self, f"_http_{kind}")(rest, status, doc, code, emsg, now)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, FixedPointError) as e:
            self._bad(f"REST {kind}", body, e)

    def _http_req(self, rest, status, doc, code, emsg, now) -> None:
        rid = int(rest)
        q = self.reqs.get(rid) or self.done_reqs.get(rid)
        if q is None:
            self.counts["unmatched_answers"] += 1
            return
        if status == 200:
            self._ok(q, doc, now)
        else:
            data = doc.get("data") if isinstance(doc, dict) else None
            self._err(q, code, emsg, now, data)

    def _http_cancel_all(self, symbol, status, doc, code, emsg, now) -> None:
        if status != 200:
            if code != -2011:
                self._venue_error("DELETE openOrders", f"{code} {emsg}")
                self.retry_at[f"cancel_all:{symbol}"] = now + self.retry_ns
            return
        self._cancelled_list(symbol, doc, now)

    def _http_cancel_unknown(self, rest, status, doc, code, emsg, now) -> None:
        if status != 200:
            self._venue_error("DELETE order (unknown order)", f"{code} {emsg}")

    def _http_query(self, rest, status, doc, code, emsg, now) -> None:
        rid, oid, cid = rest.split(":", 2)
        self._status_answer(int(rid), int(oid), cid, status, doc, code, emsg, now)

    def _http_open(self, rest, status, doc, code, emsg, now) -> None:
        if status != 200 or not isinstance(doc, list):
            self._venue_error("GET openOrders", f"{status} {code} {emsg}")
            self.retry_at["open"] = now + self.retry_ns
            return
        seen = set()
        for d in doc:
            try:
                self._rest_open(d, now, seen)
            except (ValueError, KeyError, TypeError, AttributeError, FixedPointError) as e:
                self._bad("open order", d, e)
        for o in list(self.orders.values()):
            if o.live and o.order_id not in seen and now - o.placed > self.timeout_ns \
                    and not o.pending and not any(q.order is o for q in self.reqs.values()):
                self.counts["drift_orders"] += 1
                log.warning("binance: order %d is live for us but not open on the venue: asking", o.order_id)
                self._query(o, now)
        for key in list(self.foreign):
            if key not in self.known_foreign and key not in {(d.get("symbol"), d.get("orderId")) for d in doc}:
                del self.foreign[key]

    def _rest_open(self, d: dict, now: int, seen: set) -> None:
        sym, vid, cid = d.get("symbol"), d.get("orderId"), d.get("clientOrderId")
        o = self._find(sym, vid, cid)
        if o is None:
            oid = cid_order(cid)
            inst = self.by_symbol.get(sym)
            st = STATUS.get(d.get("status"))
            if oid is None:
                key = (sym, int(vid))
                if key not in self.foreign:
                    self.foreign[key] = cid or ""
                    self.counts["foreign_open"] += 1
                    if self.unknown_orders == "cancel" and inst is not None:
                        self._cancel_unknown(sym, vid, None, now)
                return
            if inst is None or st is None or st in TERMINAL:
                self.counts["unknown_events"] += 1
                return
            self._adopt_or_cancel(oid, cid, vid, inst, d.get("side"), d.get("price"), d.get("origQty"),
                                  d.get("executedQty"), st, now)
            return
        seen.add(o.order_id)
        if not self._open_older(o):
            self._apply_order(o, d, now, reconcile=True)

    def _http_account(self, rest, status, doc, code, emsg, now) -> None:
        if status != 200 or not isinstance(doc, dict):
            self._venue_error("GET account", f"{status} {code} {emsg}")
            self.retry_at["account"] = now + self.retry_ns
            return
        ts = int(doc.get("updateTime") or 0) * 1_000_000 or now
        for b in doc.get("balances") or ():
            if b.get("asset") in self.assets:
                self._balance(b["asset"], b["free"], b["locked"], ts, now, check=True)

    def _http_trades(self, symbol, status, doc, code, emsg, now) -> None:
        if status != 200 or not isinstance(doc, list):
            self._venue_error("GET myTrades", f"{status} {code} {emsg}")
            self.retry_at[f"trades:{symbol}"] = now + self.retry_ns
            return
        for t in sorted(doc, key=lambda t: (t.get("time") or 0, t.get("id") or 0)):
            try:
                self._rest_trade(symbol, t, now)
            except (ValueError, KeyError, TypeError, AttributeError, FixedPointError) as e:
                self._bad("trade", t, e)
        for key in [k for k in self.unmapped if k not in self.mapping]:
            if key in self.known_foreign:
                self.counts["foreign_fills"] += len(self.unmapped.pop(key))
                continue
            self.mapping.add(key)
            self._rest(f"map:{key[0]}:{key[1]}", "GET", "/api/v3/order", (("symbol", key[0]), ("orderId", key[1])),
                       now, WEIGHT["order"])

    def _rest_trade(self, symbol: str, t: dict, now: int) -> None:
        key = (t.get("symbol") or symbol, int(t["orderId"]))
        o = self.by_vid.get(key)
        if o is None:
            if key in self.known_foreign:
                self.counts["foreign_fills"] += 1
                return
            self.unmapped.setdefault(key, []).append(t)
            return
        ts = int(t.get("time") or 0) * 1_000_000 or now
        self._fill(o, t["id"], t["price"], t["qty"], t.get("commission"), t.get("commissionAsset"),
                   t.get("isMaker"), ts)

    def _http_map(self, rest, status, doc, code, emsg, now) -> None:
        """GET order by orderId for fills whose order we did not know: ours or foreign."""
        symbol, _, vid_text = rest.rpartition(":")
        key = (symbol, int(vid_text))
        self.mapping.discard(key)
        trades = self.unmapped.pop(key, [])
        if status != 200 or not isinstance(doc, dict):
            self._venue_error("GET order", f"{status} {code} {emsg}")
            self.known_foreign.add(key)
            self.counts["foreign_fills"] += len(trades)
            return
        cid = doc.get("clientOrderId")
        oid = cid_order(cid)
        o = self._find(symbol, key[1], cid)
        inst = self.by_symbol.get(symbol)
        learnt = False  # an order of ours this handler learns from its fills (and reports, once)
        if o is None and oid is not None and inst is not None:
            st = STATUS.get(doc.get("status")) or S.OPEN
            self.counts["known_from_fills"] += 1
            if st not in TERMINAL and self.unknown_orders == "adopt":
                self._adopt_or_cancel(oid, cid, key[1], inst, doc.get("side"), doc.get("price"), doc.get("origQty"),
                                      "0", st, now)
                o = self.orders.get(oid)
                if o is not None:
                    o.fill_qty = 0  # its fills follow and are emitted
            else:
                learnt = True
                o = _Order(oid, cid, inst, 1 if doc.get("side") == "BUY" else -1,
                           _fx(doc.get("price") or 0, inst.price_scale), _fx(doc.get("origQty") or 0, inst.size_scale),
                           0, now)
                o.status = st
                self._set_vid(o, key[1])
                if o.live:
                    self.counts["unknown_cancelled"] += 1
                    self._cancel_unknown(symbol, key[1], cid, now)
                self._register(o)
        if o is None:
            self.known_foreign.add(key)
            self.counts["foreign_fills"] += len(trades)
            return
        if cid == o.cid:
            self._set_vid(o, key[1])
        else:
            self.by_vid[key] = o
        for t in trades:
            self._rest_trade(symbol, t, now)
        self._apply_order(o, doc, now)
        if learnt:  # the overseer may still wait for this order's answer: how it ended
            self._update(o, now)

    # ------------------------------------------------------------------------------ timer
    def on_timer(self, now: int) -> None:
        self._time_out(now)
        for rid, (kind, d, sent) in list(self.aux.items()):
            if now - sent > self.timeout_ns and kind in ("status", "subscribe"):
                del self.aux[rid]
                self.counts["timeouts"] += 1
                if kind == "status":  # ask again, over REST
                    o = self.orders.get(d[1]) or self.asking.get(d[1])
                    if o is not None:
                        self._rest(f"query:{d[0]}:{d[1]}:{d[2]}", "GET", "/api/v3/order",
                                   (("symbol", o.inst.symbol), ("origClientOrderId", d[2])), now, WEIGHT["order"])
                else:
                    self.subscribing = False
                    self.retry_at["subscribe"] = now
        if self.halted:
            return
        for what, at in list(self.retry_at.items()):
            if now >= at and now >= self.backoff_until:
                del self.retry_at[what]
                self._redo(what, now)
        if self.started and now >= self.next_reconcile:
            self.next_reconcile = now + self.reconcile_ns
            self._reconcile(now)
        if self.ready and self.keepalive_ns and now - self.last_sent >= self.keepalive_ns:
            rid = self._next_req()
            self.aux[rid] = ("ping", None, now)
            self._ws("ping", None, rid, now, signed=False)

    def _redo(self, what: str, now: int) -> None:
        kind, _, rest = what.partition(":")
        if kind == "open":
            self._rest("open", "GET", "/api/v3/openOrders", (), now, WEIGHT["openOrders"])
        elif kind == "account":
            self._rest("account", "GET", "/api/v3/account", (("omitZeroBalances", "true"),), now, WEIGHT["account"])
        elif kind == "trades":
            start = max((self.last_fill_ns or now - self.recent_fills_ns) // 1_000_000 - 1000, 0)
            self._rest(what, "GET", "/api/v3/myTrades", (("symbol", rest), ("startTime", start), ("limit", 1000)),
                       now, WEIGHT["myTrades"])
        elif kind == "cancel_all":
            self._rest(what, "DELETE", "/api/v3/openOrders", (("symbol", rest),), now)
        elif kind == "subscribe":
            if self.ready and not self.subscribed and not self.subscribing:
                self._subscribe(now)
        elif kind == "query":
            rid, oid, cid = rest.split(":", 2)
            o = self.orders.get(int(oid)) or self.asking.get(int(oid))
            if o is not None:
                self._query(o, now, int(rid), cid)
