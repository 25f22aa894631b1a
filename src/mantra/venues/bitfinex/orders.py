"""Bitfinex order entry, sans-IO (``venues/account.py``; ../shared/research/exchanges.md 3.1, 3.4, 3.5).

Connections and paths (the lowest-latency documented ones):

- one authenticated WebSocket v2 (``ws_url``, conn ``"private"``), logged on with the signed
  ``auth`` event (``auth.py``; ``dms: 4``, the dead-man switch: the venue cancels every order of the
  account when this socket closes).  Orders go on it as inputs ``on`` / ``ou`` / ``oc`` /
  ``oc_multi``, each answered by an ``n`` notification (``on-req``... ``SUCCESS`` / ``ERROR``); the
  account channel (chanId 0) streams ``os`` / ``on`` / ``ou`` / ``oc`` (orders), ``te`` / ``tu`` (our
  trades: ``tu`` carries the fee) and ``ws`` / ``wu`` (wallets).  A reconnection logs on again and
  the venue sends the snapshots afresh: that, and a fetch of the trades since the last one, is the
  gap reconciliation.
- REST v2 (``rest_url``, signed): the reconciliation at start, after a reconnection and every
  ``reconcile_s`` (``auth/r/orders``, ``auth/r/wallets``, ``auth/r/trades/hist``), the questions
  about an order whose outcome is unknown (``auth/r/orders``, then ``auth/r/orders/hist``), and the
  orders themselves while the socket is not logged on (``auth/w/order/submit`` / ``update`` /
  ``cancel`` / ``cancel/multi``).

Client ids (the venue's rules: ``cid`` an integer below 2**45, "unique in the day (UTC), not
enforced", an order found by ``cid`` + ``cid_date``; ``gid`` a group id below 2**31): our
``order_id`` (64 bits) is split between the two, reversibly: ``cid = order_id mod 2**45`` and
``gid = GID_BASE + order_id // 2**45``; the venue echoes both on every order, so each order says
whose it is (a group outside ``GID_BASE .. GID_BASE + 2**19`` is not ours).  Order ids count up
one per order, so two orders of one day share a ``cid`` only 2**45 orders apart.  The
``mt``-prefixed text of ``client_id()`` cannot be used: the venue takes integers only.

Settings (keyword arguments of the constructor):

``ws_url`` (``wss://api.bitfinex.com/ws/2``; the venue has no test network), ``rest_url``
(``https://api.bitfinex.com``), ``timeout_s`` (5: a request unanswered this long is UNKNOWN),
``dead_man`` (True: ``dms: 4`` on log-on), ``unknown_orders`` (``"cancel"`` | ``"adopt"``: open
orders found on the venue that we do not know), ``reconcile_s`` (60), ``recent_fills_s`` (3600:
fills fetched at start), ``orders_per_5min`` (1000: the venue's base limit of new orders per user,
as its maintainers state it; it grows with volume), ``rest_per_min`` (90: REST calls per endpoint
and minute, the top of the documented 10-90; beyond it the venue blocks the endpoint for 10-60 s:
calls over it wait), ``rate_backoff_s`` (10: new orders refused after the venue's own rate-limit
refusal; an HTTP 429 delays REST calls for its ``Retry-After``, else 60 s), ``retry_s`` (2: a failed
reconciliation fetch is retried after this), ``balance_scale`` (10: decimals of ``BalanceUpdate``).

Idempotency: every NEW carries its ``gid``/``cid`` and is sent once.  No answer within
``timeout_s``, a dropped connection, a ``FAILURE`` notification, a 5xx or a transport error make
the outcome UNKNOWN: the order is looked for by its ids among the open orders, then among the
recent closed ones, and the answer (or a late notification, or the order showing up on the
stream) is applied once.  An order not found is declared never placed; if it shows up later it is
cancelled.  Fills are emitted once per venue trade id, from ``tu`` (or REST: ``te`` carries no fee,
it moves the filled size at once).

Amends are ``ou`` with the order's venue ``id`` (so not before the NEW is acknowledged): the new
``price`` and ``delta``, the change of the signed amount (a fill racing the amend cannot make it
larger than asked).  Balances are the ``exchange`` wallets; ``available`` is the venue's when it
says it, else the total less what our open orders hold.  Wallet updates carry no time: when the
stream shows it delivered something late (an older venue time, a new order or trade id below the
highest seen), or REST told an outcome the stream did not, the wallets are asked for again.

One nonce per key serves the socket's log-on and REST: a log-on waits until no REST call is in
flight (one signed before it would reach the venue after it and be refused ``nonce: small``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from decimal import ROUND_CEILING, ROUND_FLOOR

import msgspec

from ...fixed import FixedPointError
from ...redact import redact
from ...spine.messages import OrderAction, OrderStatus
from ...trading.accounts import Reject
from ..account import (AMEND, CANCEL, IOC as _IOC, NEW, POST_ONLY as _POST_ONLY, TERMINAL, Close, Http, Open,
                       OrderProtocol, VenueOrder, VenueRequest, WsSend, fx as _fx)
from . import auth

log = logging.getLogger(__name__)

WS_URL = "wss://api.bitfinex.com/ws/2"
REST_URL = "https://api.bitfinex.com"
CONN = "private"
S = OrderStatus

GID_BASE = 1_000_000_000  # our groups: GID_BASE + order_id // 2**45 (at most 2**19 of them, below 2**31)
CID_BITS = 45
CID_MASK = (1 << CID_BITS) - 1
GID_SPAN = 1 << (64 - CID_BITS)
FLAG_POST_ONLY = 4096
REST_BAN_S = 60  # the documented block of a REST endpoint, when the venue does not say
INFO_RESTART, INFO_MAINTENANCE, INFO_MAINTENANCE_END = 20051, 20060, 20061
NONCE_RETRIES = 3
LATE_WALLETS_NS = 200_000_000  # after a late stream message, the wallets are asked for this much later

P_ORDERS = "/v2/auth/r/orders"
P_HIST = "/v2/auth/r/orders/hist"
P_TRADES = "/v2/auth/r/trades/hist"
P_WALLETS = "/v2/auth/r/wallets"
P_SUBMIT = "/v2/auth/w/order/submit"
P_UPDATE = "/v2/auth/w/order/update"
P_CANCEL = "/v2/auth/w/order/cancel"
P_CANCEL_MULTI = "/v2/auth/w/order/cancel/multi"

# order array positions (docs "Orders"; arrays may grow at the end, never read by length)
O_ID, O_GID, O_CID, O_SYMBOL, O_CREATE, O_UPDATE, O_AMOUNT, O_AMOUNT_ORIG, O_TYPE = range(9)
O_STATUS, O_PRICE = 13, 16
# trade array positions: te / tu / auth/r/trades/hist
T_ID, T_SYMBOL, T_MTS, T_ORDER, T_AMOUNT, T_PRICE, T_TYPE, T_ORDER_PRICE, T_MAKER, T_FEE, T_FEE_CCY, T_CID = range(12)
# wallet array positions: ws / wu / auth/r/wallets
W_TYPE, W_CCY, W_BALANCE, W_UNSETTLED, W_AVAILABLE = range(5)


def bfx_ids(order_id: int) -> tuple[int, int]:
    """``(gid, cid)`` of our ``order_id`` (see the module doc)."""
    if not 0 <= order_id < 1 << 64:
        raise ValueError(f"order id must be a 64-bit unsigned integer, got {order_id}")
    return GID_BASE + (order_id >> CID_BITS), order_id & CID_MASK


def order_id_of(gid, cid) -> int | None:
    """Our ``order_id`` from an order's ``gid`` and ``cid``, or None when it is not one of ours."""
    if type(gid) is not int or type(cid) is not int:
        return None
    hi = gid - GID_BASE
    if not 0 <= hi < GID_SPAN or not 0 <= cid <= CID_MASK:
        return None
    return hi << CID_BITS | cid


def utc_date(ns: int) -> str:
    """``cid_date``: the UTC day of ``ns``."""
    return time.strftime("%Y-%m-%d", time.gmtime(ns // 1_000_000_000))


def order_status(text) -> tuple[OrderStatus | None, bool]:
    """The venue's ``ORDER_STATUS`` text (``"EXECUTED @ 107.6(-0.2)"``, ``"CANCELED was: PARTIALLY
    FILLED @ ..."``, ``"POSTONLY CANCELED"``) -> (our status, whether a post-only order was refused)."""
    if type(text) is not str:
        return None, False
    t = text.upper()
    if t.startswith("ACTIVE"):
        return S.OPEN, False
    if t.startswith("EXECUTED"):
        return S.FILLED, False
    if t.startswith("PARTIALLY FILLED"):
        return S.PARTIALLY_FILLED, False
    if t.startswith("POSTONLY CANCELED"):
        return S.CANCELLED, True
    if t.startswith(("IOC CANCELED", "FOK CANCELED")):
        return S.EXPIRED, False
    if "CANCELED" in t or t.startswith(("INSUFFICIENT", "RSN_")):
        return S.CANCELLED, False
    return None, False


def reject_reason(text: str) -> Reject:
    """A notification's or REST error's text -> our Reject code (the venue sends no finer code)."""
    e = str(text).lower()
    if "balance" in e and ("not enough" in e or "insufficient" in e):
        return Reject.INSUFFICIENT_BALANCE
    if "minimum size" in e or "min size" in e or "amount is too small" in e:
        return Reject.MIN_SIZE
    if "post-only" in e or "postonly" in e or "post only" in e:
        return Reject.POST_ONLY
    if "not found" in e:
        return Reject.UNKNOWN_ORDER
    if "ratelimit" in e or "rate limit" in e or "maximum number of orders" in e:
        return Reject.RATE_LIMITED
    if "symbol" in e or "pair" in e:
        return Reject.UNKNOWN_INSTRUMENT
    if "price" in e:
        return Reject.TICK
    if "amount" in e:
        return Reject.LOT
    if "invalid" in e:
        return Reject.BAD_REQUEST
    return Reject.VENUE_ERROR


_UNKNOWN_TEXTS = ("internal", "timeout", "unavailable", "busy", "err_unk")


def outcome_unknown(status, text) -> bool:
    """A notification that does not say whether the venue acted: ``FAILURE``, or an internal error."""
    return status == "FAILURE" or any(w in str(text).lower() for w in _UNKNOWN_TEXTS)


def _neg(text) -> str:
    t = text if type(text) is str else str(text)
    return t[1:] if t.startswith("-") else "-" + t


def _abs(text) -> str:
    t = text if type(text) is str else str(text)
    return t[1:] if t.startswith("-") else t


def _ns(mts, now: int) -> int:
    return mts * 1_000_000 if type(mts) is int and mts > 0 else now


class _Order(VenueOrder):
    __slots__ = ("oid", "gid", "cid_date", "te", "mts")

    def __init__(self, order_id, inst, side, price, size, flags, placed, gid=0, cid=0):
        VenueOrder.__init__(self, order_id, cid, inst, side, price, size, flags, placed)
        self.gid = gid
        self.oid = 0  # the venue's order id, once known
        self.cid_date = utc_date(placed)
        self.te: dict[int, int] = {}  # trade id -> size, executions seen on ``te`` whose ``tu`` is awaited
        self.mts = 0  # the venue's MTS_UPDATE of the newest stream message about it

    def venue_ref(self) -> bytes:
        return str(self.oid).encode() if self.oid else b""


_Req = VenueRequest


class BitfinexOrders(OrderProtocol):
    venue = "bitfinex"

    def __init__(self, creds, instruments, *, ws_url: str = WS_URL, rest_url: str = REST_URL,
                 timeout_s: float = 5.0, dead_man: bool = True, unknown_orders: str = "cancel",
                 reconcile_s: float = 60.0, recent_fills_s: float = 3600.0, orders_per_5min: int = 1000,
                 rest_per_min: int = 90, rate_backoff_s: float = 10.0, retry_s: float = 2.0,
                 balance_scale: int = 10, **settings):
        super().__init__(creds, instruments, **settings)
        self._init_entry(unknown_orders, settings, timeout_s=timeout_s, reconcile_s=reconcile_s,
                         rate_backoff_s=rate_backoff_s, retry_s=retry_s, balance_scale=balance_scale)
        self.ws_url, self.rest_url = ws_url, rest_url.rstrip("/")
        self.dead_man = bool(dead_man)
        self.recent_fills_s = recent_fills_s
        self.orders_per_5min, self.rest_per_min = int(orders_per_5min), int(rest_per_min)
        self.new_times: deque[int] = deque()  # when our recent NEWs went out (the 5-minute window)
        self.rest_times: dict[str, deque] = {}  # path -> when its recent calls went out (1-minute window)
        self.nonce = 0
        self.authed = False
        self.auth_sent = 0
        self.nonce_refusals = 0
        self.maintenance = False
        self.by_oid: dict[int, _Order] = {}
        self.foreign: dict[int, str] = {}  # venue id -> symbol of open orders that are not ours
        self.known_foreign: set[int] = set()  # venue ids of orders not ours (their fills are not asked about)
        self.unmapped: dict[int, list] = {}  # venue order id -> trades waiting for their order
        self.mapping: set[int] = set()  # venue order ids asked about
        self.te_fetch_at = 0
        self.max_tid = 0  # the highest trade id of ours seen on the stream
        self.max_vid = 0  # ... order id
        self.stream_mts = 0  # ... venue time (ms)
        self.rest_nonce_refusals = 0
        self.rest_inflight = 0  # REST calls signed and not yet answered
        self.auth_wanted = False  # the log-on waits for them: it must not overtake their nonces

    # ------------------------------------------------------------------------------ helpers
    @property
    def ready(self) -> bool:
        """The WebSocket path is usable (connected and logged on)."""
        return self.connected and self.authed

    def _rest(self, what: str, path: str, params, now: int) -> bool:
        """A signed private REST call, answered to ``on_http(what, ...)``; over the endpoint's rate
        (or while the venue blocks us, or a log-on waits) it waits: ``what`` is redone later."""
        if self.auth_wanted and not what.startswith("req:"):
            self._retry(what, now, 50_000_000)
            return False
        if now < self.rest_backoff_until:
            self._retry(what, now, self.rest_backoff_until - now)
            return False
        win = self.rest_times.get(path)
        if win is None:
            win = self.rest_times[path] = deque()
        while win and win[0] <= now - 60_000_000_000:
            win.popleft()
        if len(win) >= self.rest_per_min:
            self.counts["rest_deferred"] += 1
            self._retry(what, now, win[0] + 60_000_000_000 - now)
            return False
        win.append(now)
        if what == "wallets":
            self.balances_asked = now
        elif what == "open":
            self.open_asked = now
        self.rest_inflight += 1
        self.nonce = auth.next_nonce(self.nonce, now)
        headers, body = auth.rest_request(self.creds.key, self.creds.secret, path, self.nonce, params)
        self.counts[f"rest_{path.rsplit('/v2/', 1)[-1]}"] += 1
        self.events.append(Http(what, "POST", self.rest_url + path, headers, body))
        return True

    def _retry(self, what: str, now: int, after: int | None = None) -> None:
        at = now + (self.retry_ns if after is None else max(after, 0))
        self.retry_at[what] = min(self.retry_at.get(what, at), at)

    def _ws(self, text: str) -> None:
        self.events.append(WsSend(CONN, text))

    def new_room(self, inst, now: int) -> bool:
        """One more new order within ``orders_per_5min`` (counted if so)."""
        win = self.new_times
        while win and win[0] <= now - 300_000_000_000:
            win.popleft()
        if len(win) >= self.orders_per_5min:
            return False
        win.append(now)
        return True

    def new_order(self, r, inst, now: int) -> _Order:
        gid, cid = bfx_ids(r.order_id)  # Bitfinex names our orders by integers
        return _Order(r.order_id, inst, r.side, r.price, r.size, r.flags, now, gid, cid)

    def asked_order(self, r, inst, now: int) -> _Order:
        gid, cid = bfx_ids(r.ref_id)  # what the venue is asked for it by
        return _Order(r.ref_id, inst, r.side, r.price, r.size, r.flags, now, gid, cid)

    def _register(self, o: _Order) -> None:
        self.orders[o.order_id] = o
        if o.oid:
            self.by_oid[o.oid] = o

    def _set_oid(self, o: _Order, vid) -> None:
        if type(vid) is int and vid > 0 and not o.oid:
            o.oid = vid
            self.by_oid[vid] = o

    def _find(self, vid, gid, cid) -> _Order | None:
        o = self.by_oid.get(vid) if type(vid) is int else None
        if o is None:
            oid = order_id_of(gid, cid)
            o = self.orders.get(oid) if oid is not None else None
            if o is not None:
                self._set_oid(o, vid)
        return o

    def _pending(self, o: _Order, action: int, done: bool = False) -> _Req | None:
        """The request of ``action`` about ``o`` in flight (with ``done``: or answered, the latest)."""
        for q in self.reqs.values():
            if q.order is o and q.action == action:
                return q
        if done:
            for q in reversed(self.done_reqs.values()):
                if q.order is o and q.action == action:
                    return q
        return None

    # ------------------------------------------------------------------------------ start / connection
    def start(self, now: int) -> None:
        self.started = True
        self.events.append(Open(CONN, self.ws_url))
        self._reconcile(now, start=True)
        self.next_reconcile = now + self.reconcile_ns

    def _reconcile(self, now: int, start: bool = False) -> None:
        """Open orders, balances and the fills since the last one (at start: the recent ones)."""
        self.counts["reconciles"] += 1
        self._rest("open", P_ORDERS, None, now)
        self._rest("wallets", P_WALLETS, None, now)
        self._fetch_trades(now, now - int(self.recent_fills_s * 1e9) if start else None)

    def _fetch_trades(self, now: int, since_ns: int | None = None) -> None:
        if since_ns is None:
            since_ns = self.last_fill_ns - 1_000_000_000 if self.last_fill_ns else now - int(self.recent_fills_s * 1e9)
        # oldest first; the venue's start is inclusive, ms: what was already seen is dropped by trade id
        self._rest("trades", P_TRADES, {"start": max(since_ns // 1_000_000, 0), "limit": 2500, "sort": 1}, now)

    def on_open(self, conn: str, now: int) -> None:
        if conn != CONN:
            return
        self.connected = True
        self.authed = False
        self.counts["connects"] += 1
        self._auth(now)

    def _auth(self, now: int) -> None:
        # One nonce per key for the socket and REST: a REST call signed before the log-on but still on
        # its way would reach the venue after it, with a smaller nonce, and be refused.  So the log-on
        # waits until none is in flight (and holds back new ones but orders meanwhile).
        if self.rest_inflight:
            self.auth_wanted = True
            self.counts["auth_waits_for_rest"] += 1
            return
        self.auth_wanted = False
        self.nonce = auth.next_nonce(self.nonce, now)
        self.auth_sent = now
        self._ws(auth.ws_auth_text(self.creds.key, self.creds.secret, self.nonce, self.dead_man))

    def on_close(self, conn: str, now: int, reason: str) -> None:
        if conn != CONN:
            return
        was = self.authed
        self.connected = self.authed = self.subscribed = self.auth_wanted = False
        self.auth_sent = 0
        self.counts["disconnects"] += 1
        log.warning("bitfinex: private stream lost (%s)", redact(reason))
        self._connection_lost(now)  # requests sent on the socket have an unknown outcome now
        if was:
            self.counts["stream_gaps"] += 1

    def _reconnect(self, now: int, why: str) -> None:
        self.counts["reconnects_asked"] += 1
        log.warning("bitfinex: reconnecting the private stream: %s", why)
        self.events.append(Close(CONN, why))
        self.events.append(Open(CONN, self.ws_url))

    # ------------------------------------------------------------------------------ requests
    def check_request(self, r, now: int):
        inst = super().check_request(r, now)
        if inst is not None and self.maintenance:  # the platform refuses orders until it ends
            self.reject(r, Reject.VENUE_ERROR, now)
            return None
        return inst

    def submit_change(self, r, inst, o: _Order, now: int) -> None:
        act = r.action
        if act == AMEND and not o.oid:  # ``ou`` names the order by its venue id only
            self.counts["amend_before_ack"] += 1
            self.reject(r, Reject.VENUE_ERROR, now)
            return
        self._send(r, act, o, now)

    def _send(self, r, act, o: _Order, now: int) -> None:
        rid = self._next_req()
        via = "ws" if self.ready else "rest"
        q = _Req(rid, r, act, now, via, o)
        self.reqs[rid] = q
        inst = o.inst
        if act == NEW:
            amount = inst.size_str(o.size) if o.side > 0 else "-" + inst.size_str(o.size)
            kind = "EXCHANGE IOC" if o.flags & _IOC else "EXCHANGE LIMIT"
            flags = FLAG_POST_ONLY if o.flags & _POST_ONLY else 0
            if via == "ws":  # the hot path: written out directly (held equal to the dict by a test)
                self._ws(f'[0,"on",null,{{"gid":{o.gid},"cid":{o.cid},"type":"{kind}","symbol":"{inst.symbol}",'
                         f'"amount":"{amount}","price":"{inst.price_str(o.price)}","flags":{flags}}}]')
                return
            params = {"gid": o.gid, "cid": o.cid, "type": kind, "symbol": inst.symbol, "amount": amount,
                      "price": inst.price_str(o.price), "flags": flags}
            path = P_SUBMIT
        elif act == AMEND:
            d = r.size - o.size
            delta = inst.size_str(abs(d))
            params = {"id": o.oid, "price": inst.price_str(r.price)}
            if d:
                params["delta"] = delta if d * o.side > 0 else "-" + delta
            path = P_UPDATE
        else:
            params = {"id": o.oid} if o.oid else {"cid": o.cid, "cid_date": o.cid_date}
            path = P_CANCEL
        if via == "ws":
            self._ws(self._enc.encode([0, "ou" if act == AMEND else "oc", None, params]).decode())
            return
        self.counts["rest_fallback"] += 1
        if not self._rest(f"req:{rid}", path, params, now):
            self.retry_at.pop(f"req:{rid}", None)  # an order is never sent late: refused now
            self.reqs.pop(rid, None)
            self.counts["rest_rate_refused"] += 1
            if act == NEW:
                self._new_refused(o, Reject.RATE_LIMITED, now)
            else:
                self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.RATE_LIMITED, about=r.ref_id)

    def _describe_asked(self, o: _Order, a, now: int) -> None:
        """``o``, an order asked about (``_ask_unknown``), as the venue's array ``a`` has it: side, price
        and size too (the request's are the overseer's view); reported, its fills fetched."""
        v = self._from_array(o.order_id, a, o.inst, now)
        o.side, o.price, o.size, o.cid_date = v.side, v.price, v.size, v.cid_date
        o.filled = max(o.filled, v.filled)
        self._set_oid(o, v.oid)
        st, post_only = order_status(a[O_STATUS])
        self._set_status(o, S.REJECTED if post_only and not o.filled else st or S.OPEN)
        self._update(o, now, reason=Reject.POST_ONLY if o.status == S.REJECTED else 0)
        self._fetch_trades(now, o.placed - 60_000_000_000)

    def cancel_all(self, now: int) -> None:
        """The kill switch: every open order, by the venue's cancel-all (also with a halt)."""
        self.counts["cancel_all"] += 1
        if self.ready:
            self._ws('[0,"oc_multi",null,{"all":1}]')
        else:
            self._rest("cancel_all", P_CANCEL_MULTI, {"all": 1}, now)

    def _cancel_unknown(self, vid: int, now: int) -> None:
        """Cancel an order without a request of ours (late accept, unknown orders)."""
        if self.ready:
            self._ws(f'[0,"oc",null,{{"id":{vid}}}]')
        else:
            self._rest(f"cancel_unknown:{vid}", P_CANCEL, {"id": vid}, now)

    # ------------------------------------------------------------------------------ outcomes
    def _query(self, o: _Order, now: int, rid: int = 0) -> None:
        # by our ids: among the open orders first, then among the recent closed ones
        self._rest(f"qa:{rid}:{o.order_id}", P_ORDERS, None, now)

    def _query_hist(self, o: _Order, now: int, rid: int) -> None:
        start = max(o.placed // 1_000_000 - 60_000, 0)
        self._rest(f"qh:{rid}:{o.order_id}", P_HIST, {"start": start, "limit": 2500}, now)

    def _ok(self, q: _Req, arr, now: int) -> None:
        """The venue accepted the request ``q`` (a notification, by WebSocket or REST)."""
        o = q.order
        vid = arr[O_ID] if arr else None
        if q.state == "done":  # a late or duplicate answer
            self.counts["late_answers"] += 1
            if q.action == NEW:
                self._set_oid(o, vid)
                if o.lost:
                    self._late_accept(o, now)
            return
        self._answered(q)
        if q.action == NEW:
            self._set_oid(o, vid)
            if arr and type(arr[O_CREATE]) is int:
                o.cid_date = utc_date(arr[O_CREATE] * 1_000_000)
            if o.lost:
                self._late_accept(o, now)
                return
            if self._set_status(o, S.ACK):
                self._update(o, now)
        elif q.action == AMEND:
            r = q.r
            if o.live:
                o.price, o.size = r.price, r.size
                self._update(o, now, about=r.ref_id)
        # CANCEL: accepted for cancellation; the ``oc`` that follows says how the order ended

    def _err(self, q: _Req, text: str, now: int) -> None:
        o, r = q.order, q.r
        self._venue_error(f"{OrderAction(q.action).name} {o.order_id}", text)
        if q.state == "done":
            self.counts["late_answers"] += 1
            return
        self._answered(q)
        why = reject_reason(text)
        if why == Reject.RATE_LIMITED:
            self.backoff_until = max(self.backoff_until, now + self.rate_backoff_ns)
            self.counts["rate_limited_by_venue"] += 1
        if q.action == NEW:
            self._new_refused(o, why, now)
            return
        if why == Reject.UNKNOWN_ORDER:
            # gone from the venue's open orders (filled, cancelled): find out how it ended
            self.counts["change_on_closed"] += 1
            self._reopen(q)
            self._query(o, now, q.req_id)
            return
        self._update(o, now, status=S.CANCEL_REJECTED, reason=why, about=r.ref_id)

    def _late(self, now: int) -> None:
        """The stream delivered something late (or not at all: REST told us): the wallets it sent
        around it may be older than what we hold, and they carry no time to tell.  Ask REST once the
        stream has had its say."""
        self.counts["stream_late"] += 1
        self._retry("wallets", now, LATE_WALLETS_NS)

    def _late_accept(self, o: _Order, now: int) -> None:
        """We said ``o`` was never placed, and the venue has it: it must not stay."""
        if o.oid and o.oid not in self.late_cancelled:
            self.late_cancelled.add(o.oid)
            self.counts["late_accept_cancelled"] += 1
            self._cancel_unknown(o.oid, now)

    # ------------------------------------------------------------------------------ frames
    def on_frame(self, conn: str, text: str, now: int) -> None:
        try:
            msg = self._dec.decode(text)
            if type(msg) is list:
                if not msg or msg[0] != 0:
                    self.counts["ignored_frames"] += 1
                    return
                if len(msg) < 3:
                    if len(msg) == 2 and msg[1] == "hb":
                        return
                    raise ValueError("account message without data")
                self._on_account(msg[1], msg[2], now)
            elif type(msg) is dict:
                self._on_event(msg, now)
            else:
                raise ValueError("neither an array nor an object")
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, FixedPointError,
                msgspec.DecodeError) as e:
            self._bad("frame", text, e)

    def _on_event(self, msg: dict, now: int) -> None:
        ev = msg.get("event")
        if ev == "auth":
            self._on_auth(msg, now)
        elif ev == "info":
            code = msg.get("code")
            if code == INFO_RESTART:
                self._reconnect(now, "the venue restarts its WebSocket server (20051)")
            elif code == INFO_MAINTENANCE or (msg.get("platform") or {}).get("status") == 0:
                self.maintenance = True
                self.counts["maintenance"] += 1
                log.warning("bitfinex: maintenance: new orders are refused until it ends")
            elif code == INFO_MAINTENANCE_END or (msg.get("platform") or {}).get("status") == 1:
                if self.maintenance:
                    self.maintenance = False
                    self._reconcile(now)
        elif ev == "error":
            self._venue_error("stream", f"{msg.get('code')} {msg.get('msg')}")
        elif ev not in ("pong", "conf"):
            self.counts["ignored_frames"] += 1

    def _on_auth(self, msg: dict, now: int) -> None:
        if msg.get("status") != "OK":
            code, text = msg.get("code"), str(msg.get("msg"))
            self._venue_error("auth", f"{code} {text}")
            if code == auth.NONCE_SMALL[0] and self.nonce_refusals < NONCE_RETRIES:
                # not logged on, nothing else happened: again with a fresh, larger nonce
                self.nonce_refusals += 1
                self.counts["invalid_nonce"] += 1
                self.nonce = max(self.nonce, now // 1000) + 1_000_000 * self.nonce_refusals
                self._auth(now)
                return
            self.halt(f"bitfinex refused the credentials: {code} {text}"
                      + (" (another client uses this key with larger nonces: give it a key of its own)"
                         if code == auth.NONCE_SMALL[0] else ""))
            return
        caps = msg.get("caps") or {}
        orders = caps.get("orders") if isinstance(caps, dict) else None
        if isinstance(orders, dict) and not orders.get("write"):
            self.halt("bitfinex: the key may not write orders: enable 'Orders: create and cancel' on it")
            return
        self.nonce_refusals = 0
        self.authed = self.subscribed = True
        self.auth_sent = 0
        self.counts["subscribed"] += 1
        if self.counts["subscribed"] > 1:  # logged on again: fetch what the gap held (the snapshots follow)
            self._fetch_trades(now)

    def _on_account(self, kind, data, now: int) -> None:
        if kind in ("on", "ou", "oc"):
            self._order_array(data, now, stream=True)
        elif kind == "te" or kind == "tu":
            self._trade(data, now, kind)
            if self.unmapped:
                self._map(now)
        elif kind == "wu":
            self._wallet(data, now, stream=True)
        elif kind == "n":
            self._on_notify(data, now, None)
        elif kind == "os":
            self._snapshot(data, now)
        elif kind == "ws":
            for w in data:
                try:
                    self._wallet(w, now, stream=True)
                except (ValueError, TypeError, IndexError, FixedPointError) as e:
                    self._bad("wallet", w, e)
        else:  # positions, funding, balance info, margin: not ours to follow
            self.counts["ignored_frames"] += 1

    def _snapshot(self, data, now: int) -> None:
        seen = set()
        for a in data:
            try:
                self._order_array(a, now, stream=True)
                seen.add(a[O_ID])
            except (ValueError, KeyError, TypeError, IndexError, FixedPointError) as e:
                self._bad("order", a, e)
        # ours the venue no longer lists as open ended while we were not looking (the dead-man
        # switch cancels them all when the socket closes)
        for o in list(self.orders.values()):
            if o.live and o.oid and o.oid not in seen and self._pending(o, NEW) is None:
                self.counts["closed_in_gap"] += 1
                self._query(o, now)
        for vid in [v for v in self.foreign if v not in seen]:
            del self.foreign[vid]

    # -- notifications
    def _on_notify(self, n, now: int, q: _Req | None) -> None:
        """``[MTS, TYPE, MSG_ID, null, INFO, CODE, STATUS, TEXT]``; ``q`` when a REST call answered it."""
        if type(n) is not list or len(n) < 8:
            raise ValueError("notification of an unexpected shape")
        typ, info, status, text = n[1], n[4], n[6], n[7]
        if typ == "oc_multi-req":
            if status != "SUCCESS":  # the kill switch must not stop at an error
                self._venue_error("cancel all", text)
                self._rest("cancel_all", P_CANCEL_MULTI, {"all": 1}, now)
            return
        act = {"on-req": NEW, "ou-req": AMEND, "oc-req": CANCEL}.get(typ)
        if act is None:
            self.counts["ignored_notifications"] += 1
            return
        arr = info[0] if type(info) is list and info and type(info[0]) is list else info  # REST submit: [order]
        if type(arr) is not list or len(arr) <= O_CID:
            arr = None
        if q is None:
            o = self._find(arr[O_ID], arr[O_GID], arr[O_CID]) if arr else None
            q = self._pending(o, act, done=True) if o is not None else None
            if q is None and act != NEW:  # a refusal that names no order: the oldest such request in flight
                q = next((x for x in self.reqs.values() if x.action == act and x.via == "ws" and x.state == "sent"),
                         None)
            if q is None:
                self.counts["unmatched_answers"] += 1
                return
        if status == "SUCCESS":
            self._ok(q, arr, now)
        elif outcome_unknown(status, text):
            self._venue_error(f"{typ} {q.order.order_id}", f"{status} {text}")
            if q.state == "sent":
                self._unknown(q, now, f"{status} {text}")
        else:
            self._err(q, str(text), now)

    # -- orders
    def _order_array(self, a, now: int, q: _Req | None = None, reconcile: bool = False,
                     stream: bool = False) -> _Order | None:
        """One order as the stream (``stream``) or REST describes it; returns ours, or None.  ``q``: the
        request this answers (already resolved); ``reconcile``: a change is drift, and counted."""
        if type(a) is not list or len(a) <= O_PRICE or type(a[O_ID]) is not int:
            raise ValueError("order array of an unexpected shape")
        vid = a[O_ID]
        o = self._find(vid, a[O_GID], a[O_CID])
        if o is None:
            self._unknown_order(a, now)
            return None
        if type(a[O_CREATE]) is int:
            o.cid_date = utc_date(a[O_CREATE] * 1_000_000)
        o.exch_ts = max(o.exch_ts, _ns(a[O_UPDATE], now))
        if stream:
            o.changed_at = now  # the stream spoke of it: a REST answer asked before is older
        nq = self._pending(o, NEW)
        if nq is not None and nq is not q:  # the order exists: that answers its NEW
            self.counts["answered_by_stream"] += 1
            self._answered(nq)
        st, post_only = order_status(a[O_STATUS])
        if o.lost:
            if st is not None and st not in TERMINAL:
                self._late_accept(o, now)
            return o
        # A stream message older than one already applied (the venue's time, or a state the order has
        # left) came late: it says nothing new, and the balances that came with it are suspect.
        mts = a[O_UPDATE] if type(a[O_UPDATE]) is int else 0
        stale = stream and (mts < o.mts or (st is not None and st not in TERMINAL and not o.live)
                            or (st == S.OPEN and o.status == S.PARTIALLY_FILLED))
        if stream:
            # late for the account (an older time, or a new order below the highest order id seen)
            if stale or mts < self.stream_mts or (not o.mts and vid < self.max_vid):
                self._late(now)
            if not stale:
                o.mts = max(o.mts, mts)
            self.stream_mts, self.max_vid = max(self.stream_mts, mts), max(self.max_vid, vid)
        inst = o.inst
        changed = False
        if not stale and self._pending(o, AMEND) is None:  # else the amend's answer says what the order is
            if a[O_PRICE] is not None:
                p = _fx(a[O_PRICE], inst.price_scale)
                changed |= p != o.price
                o.price = p
            if a[O_AMOUNT_ORIG] is not None:  # its size as the venue has it (an amend's delta moves it)
                s = _fx(_abs(a[O_AMOUNT_ORIG]), inst.size_scale)
                changed |= s != o.size
                o.size = s
            if a[O_AMOUNT] is not None:
                done = o.size - _fx(_abs(a[O_AMOUNT]), inst.size_scale)  # what left the order executed
                if done > o.filled:
                    o.filled, changed = done, True
        reason = 0
        if post_only and o.filled == 0:
            st, reason = S.REJECTED, Reject.POST_ONLY  # accepted, then cancelled: it would have crossed
        if st is not None and self._set_status(o, st):
            changed = True
        if reconcile and changed:
            self.counts["drift_corrected"] += 1
        if changed or (nq is not None and nq is not q):
            self._update(o, now, reason=reason)
        if changed and o.filled > o.fill_qty + sum(o.te.values()):
            # it says more executed than its trades we hold (they went to a predecessor's socket, say)
            self.counts["fills_behind_order"] += 1
            self._fetch_trades(now, o.placed - 60_000_000_000)
        return o

    def _unknown_order(self, a, now: int) -> None:
        """An event about an order we do not track: ours from before (adopt or cancel) or foreign."""
        vid, sym = a[O_ID], a[O_SYMBOL]
        st, _ = order_status(a[O_STATUS])
        oid = order_id_of(a[O_GID], a[O_CID])
        if oid is None:
            self.counts["foreign_events"] += 1
            if st is not None and st not in TERMINAL and vid not in self.foreign:
                self.foreign[vid] = str(sym)
                self.known_foreign.add(vid)
                self.counts["foreign_open"] += 1
                if self.unknown_orders == "cancel":
                    self._cancel_unknown(vid, now)
            return
        inst = self.by_symbol.get(sym)
        if inst is None or st is None or st in TERMINAL:
            self.counts["unknown_events"] += 1
            return
        if self.unknown_orders == "cancel":
            self.counts["unknown_cancelled"] += 1
            self._cancel_unknown(vid, now)
            return
        self.counts["adopted"] += 1
        o = self._from_array(oid, a, inst, now)
        o.status = st
        self._register(o)
        self._update(o, now)

    def _from_array(self, oid: int, a, inst, now: int) -> _Order:
        """Our order as the venue describes it, for one we did not know (adopted, or found by its fills)."""
        amount = a[O_AMOUNT] if a[O_AMOUNT] is not None else a[O_AMOUNT_ORIG]
        orig = a[O_AMOUNT_ORIG] if a[O_AMOUNT_ORIG] is not None else amount
        side = -1 if str(orig).startswith("-") else 1
        remaining = _fx(_abs(amount), inst.size_scale)
        size = max(_fx(_abs(orig), inst.size_scale), remaining)
        o = _Order(oid, inst, side, _fx(a[O_PRICE] or 0, inst.price_scale), size, 0, now, a[O_GID], a[O_CID])
        o.oid = a[O_ID]
        o.filled = size - remaining
        if type(a[O_CREATE]) is int:
            o.cid_date = utc_date(a[O_CREATE] * 1_000_000)
        return o

    # -- trades
    def _trade(self, t, now: int, kind: str) -> None:
        """One of our trades: ``te`` (no fee yet: moves the filled size), ``tu`` or REST (emitted once)."""
        if type(t) is not list or len(t) <= T_FEE_CCY or type(t[T_ID]) is not int or type(t[T_ORDER]) is not int:
            raise ValueError("trade array of an unexpected shape")
        tid, vid = t[T_ID], t[T_ORDER]
        o = self.by_oid.get(vid)
        if o is None:
            cid = t[T_CID] if len(t) > T_CID else None
            for x in self.orders.values():  # ours whose id the venue has not told us yet: by cid
                if not x.oid and x.cid == cid and type(cid) is int and x.inst.symbol == t[T_SYMBOL]:
                    self._set_oid(x, vid)
                    o = x
                    break
        if o is None:
            if vid in self.known_foreign:
                self.counts["foreign_fills"] += 1
            elif kind != "te":
                self.unmapped.setdefault(vid, []).append(t)  # asked about by the caller, in one go
            return
        if kind != "rest":  # trade ids and times grow: a new one below the highest seen came late
            mts = t[T_MTS] if type(t[T_MTS]) is int else 0
            if tid < self.max_tid and tid not in o.trades and tid not in o.te or mts < self.stream_mts:
                self._late(now)
            self.max_tid, self.stream_mts = max(self.max_tid, tid), max(self.stream_mts, mts)
        inst = o.inst
        qty = _fx(_abs(t[T_AMOUNT]), inst.size_scale)
        if kind == "te" and t[T_FEE] is None:
            if tid in o.trades or tid in o.te:
                self.counts["duplicate_te"] += 1
                return
            o.te[tid] = qty
            if not self.te_fetch_at:
                self.te_fetch_at = now + self.timeout_ns  # its tu should follow at once: else REST
            seen = o.fill_qty + sum(o.te.values())
            if seen > o.filled:  # the status comes with the order's own update
                o.filled = seen
                if seen < o.size:
                    self._set_status(o, S.PARTIALLY_FILLED)
                self._update(o, now)
            return
        if self._fill_seen(o, tid):
            return
        o.te.pop(tid, None)
        fee = _fx(_neg(t[T_FEE]), inst.price_scale, ROUND_CEILING) if t[T_FEE] is not None else 0
        self._add_fill(o, tid, _fx(t[T_PRICE], inst.price_scale), qty, fee, _ns(t[T_MTS], now), t[T_MAKER] == 1,
                       t[T_FEE_CCY] or inst.quote, t[T_AMOUNT])
        if o.filled > 0 and o.live:
            self._update(o, now)

    def _map(self, now: int) -> None:
        """Ask which orders the trades we cannot place belong to (ours from before, or foreign)."""
        vids = [v for v in self.unmapped if v not in self.mapping][:100]
        if vids:
            self.mapping.update(vids)
            self._rest("map", P_ORDERS, {"id": vids}, now)

    # -- balances
    def _wallet(self, w, now: int, stream: bool = False) -> None:
        if type(w) is not list or len(w) <= W_AVAILABLE:
            raise ValueError("wallet array of an unexpected shape")
        if w[W_TYPE] != "exchange":  # margin and funding wallets are not the spot account
            self.counts["other_wallets"] += 1
            return
        asset = str(w[W_CCY])
        if self._other_asset(asset) or w[W_BALANCE] is None:
            return
        total = _fx(w[W_BALANCE], self.balance_scale, ROUND_FLOOR)
        if w[W_AVAILABLE] is not None:
            free = _fx(w[W_AVAILABLE], self.balance_scale, ROUND_FLOOR)
        else:  # the venue computes it only when asked: ours
            free = max(total - self._hold(asset), 0)
        self._put_balance(asset, total, free, now, not stream, now)

    # ------------------------------------------------------------------------------ REST answers
    def on_http(self, tag: str, status: int, headers: dict, body: bytes, now: int) -> None:
        self.rest_inflight = max(self.rest_inflight - 1, 0)
        if self.auth_wanted and not self.rest_inflight and self.connected:
            self._auth(now)
        kind, _, rest = tag.partition(":")
        if status == 418:
            self.halt("bitfinex answered 418: banned")
            return
        if status in (401, 403):
            self.halt(f"bitfinex refused the credentials (HTTP {status})")
            return
        if status == 429:
            self._rest_limited(kind, rest, tag, headers, now)
            return
        doc = None
        if body:
            try:
                doc = self._dec.decode(body)
            except msgspec.DecodeError:
                doc = None
        err = doc if type(doc) is list and len(doc) >= 3 and doc[0] == "error" else None
        if err is None and type(doc) is dict and doc.get("error") == "ERR_RATE_LIMIT":  # the v1 form
            self._rest_limited(kind, rest, tag, headers, now)
            return
        if status == 200 and err is None and doc is not None:
            self.rest_nonce_refusals = 0
            try:
                getattr(self, f"_http_{kind}")(rest, doc, now)
            except (ValueError, KeyError, TypeError, AttributeError, IndexError, FixedPointError) as e:
                self._bad(f"REST {kind}", bytes(body[:300]), e)
            return
        q = self.reqs.get(int(rest)) if kind == "req" else None
        if err is not None:
            code, text = err[1], str(err[2])
            if code in auth.AUTH_CODES:
                self._venue_error(kind, f"{code} {text}")
                self.halt(f"bitfinex refused the credentials: {code} {text}")
                return
            if code == auth.NONCE_SMALL[0]:
                # not processed: the same call again with a fresh nonce (safe, the venue did nothing).
                # The socket's log-on shares the key's nonce: a call in flight meanwhile meets this.
                self.counts["invalid_nonce"] += 1
                self.rest_nonce_refusals += 1
                if self.rest_nonce_refusals > NONCE_RETRIES:
                    self.halt(f"bitfinex refuses our nonces ({text}): another client uses this key with larger "
                              "nonces: give it a key of its own")
                    return
                log.info("bitfinex: REST %s: %s: again with a fresh nonce", kind, text)
                self.nonce = max(self.nonce, now // 1000)
                if kind == "req":
                    if q is not None and q.state == "sent":
                        self.reqs.pop(q.req_id)
                        self._send(q.r, q.action, q.order, now)
                else:
                    self._retry(tag, now, 0)
                return
            if code == 11010:
                self._rest_limited(kind, rest, tag, headers, now)
                return
            if kind == "req":
                if q is not None:
                    if code == 10000:  # the venue's unknown error: it may have acted
                        self._unknown(q, now, text)
                    else:
                        self._err(q, text, now)
                return
            self._venue_error(f"REST {kind}", f"{code} {text}")
            self._retry(tag, now)
            return
        # 5xx without the venue's answer, no answer at all (0), or an unreadable body: unknown
        self._no_answer(kind, rest, tag, status, body, now)

    def _rest_limited(self, kind: str, rest: str, tag: str, headers: dict, now: int) -> None:
        """HTTP 429 / ``ERR_RATE_LIMIT``: the venue blocks the endpoint; REST waits (its orders too)."""
        wait = headers.get("retry-after")
        try:
            wait_ns = int(float(wait) * 1e9) if wait is not None else REST_BAN_S * 1_000_000_000
        except ValueError:
            wait_ns = REST_BAN_S * 1_000_000_000
        self.rest_backoff_until = max(self.rest_backoff_until, now + wait_ns)
        self.counts["http_429"] += 1
        log.warning("bitfinex: REST rate limit on %s: waiting %.1f s", kind, wait_ns / 1e9)
        if kind == "req":
            q = self.reqs.get(int(rest))
            if q is not None and q.state == "sent":  # refused before it was looked at: not placed
                self._err(q, "ratelimit: error", now)
        else:
            self._retry(tag, now, wait_ns)

    def _http_req(self, rest, doc, now) -> None:
        rid = int(rest)
        q = self.reqs.get(rid) or self.done_reqs.get(rid)
        if q is None:
            self.counts["unmatched_answers"] += 1
            return
        self._on_notify(doc, now, q)

    def _http_cancel_all(self, rest, doc, now) -> None:
        if type(doc) is list and len(doc) > 6 and doc[6] != "SUCCESS":
            self._venue_error("cancel all", doc[7] if len(doc) > 7 else doc)
            self._retry("cancel_all", now)

    def _http_cancel_unknown(self, rest, doc, now) -> None:
        if type(doc) is list and len(doc) > 6 and doc[6] != "SUCCESS":
            self._venue_error("cancel", doc[7] if len(doc) > 7 else doc)

    def _http_open(self, rest, doc, now) -> None:
        asked = self.open_asked
        seen = set()
        for a in doc:
            try:
                seen.add(a[O_ID])
                o = self.by_oid.get(a[O_ID])
                if o is not None and self._open_older(o):
                    continue
                self._order_array(a, now, reconcile=True)
            except (ValueError, KeyError, TypeError, IndexError, FixedPointError) as e:
                self._bad("order", a, e)
        for o in list(self.orders.values()):
            if o.live and o.oid and o.oid not in seen and o.placed < asked and o.changed_at <= asked \
                    and not any(q.order is o for q in self.reqs.values()):
                self.counts["drift_orders"] += 1
                log.warning("bitfinex: order %d (%d) is live for us but not open on the venue: asking",
                            o.order_id, o.oid)
                self._query(o, now)
        for vid in [v for v in self.foreign if v not in seen]:
            del self.foreign[vid]

    def _http_qa(self, rest, doc, now) -> None:
        self._http_query(rest, doc, now, hist=False)

    def _http_qh(self, rest, doc, now) -> None:
        self._http_query(rest, doc, now, hist=True)

    def _http_query(self, rest, doc, now, hist: bool) -> None:
        rid_text, _, oid_text = rest.partition(":")
        rid, oid = int(rid_text), int(oid_text)
        q = self.reqs.get(rid) if rid else None
        o = self.orders.get(oid) or self.asking.get(oid)
        if o is None:
            return
        found = None
        for a in doc:
            if type(a) is list and len(a) > O_PRICE and (a[O_ID] == o.oid and o.oid
                                                         or order_id_of(a[O_GID], a[O_CID]) == oid):
                found = a
                break
        if found is None and not hist:
            self._query_hist(o, now, rid)  # not open: closed, or never placed
            return
        # what we learn here the stream did not say (in time): the wallets it sent around it are suspect
        self._late(now)
        if oid in self.asking:  # an order we did not know (``_ask_unknown``)
            if q is not None:
                self._answer_unknown(q, None if found is None else lambda o: self._describe_asked(o, found, now), now)
            return
        if found is None:
            if q is None:
                if o.live and not o.oid:
                    o.status = S.REJECTED
                    self._update(o, now, reason=Reject.VENUE_ERROR)
                return
            if q.action == NEW:
                if now - q.sent < 2 * self.timeout_ns:
                    # the venue may not have got to it yet (an answer lost with the connection): once more
                    self._retry(f"qa:{rid}:{oid}", now, self.timeout_ns)
                    return
                self._answered(q)
                self._lost(o, now)
            else:
                self._answered(q)
                self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.UNKNOWN_ORDER, about=q.r.ref_id)
            return
        if q is None or q.state == "done":
            self._order_array(found, now)
            return
        r = q.r
        if q.action == AMEND:
            inst = o.inst
            # did it take effect?  The venue's order at the new price and total (AMOUNT_ORIG)
            amended = (found[O_PRICE] is not None and _fx(found[O_PRICE], inst.price_scale) == r.price
                       and found[O_AMOUNT_ORIG] is not None
                       and _fx(_abs(found[O_AMOUNT_ORIG]), inst.size_scale) == r.size)
            self._answered(q)
            if amended:
                o.price, o.size = r.price, r.size
            self._order_array(found, now, q)
            if amended:
                self._update(o, now, about=r.ref_id)
            elif o.live:
                self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.VENUE_ERROR, about=r.ref_id)
            return
        self._answered(q)
        if q.action == NEW:
            if o.lost:
                self._order_array(found, now, q)
                return
            if self._set_status(o, S.ACK):
                self._update(o, now)
            self._order_array(found, now, q)
            return
        self._order_array(found, now, q)
        if o.live:  # still open: the cancel did not happen; the overseer may ask again
            self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.VENUE_ERROR, about=r.ref_id)

    def _http_wallets(self, rest, doc, now) -> None:
        for w in doc:
            try:
                self._wallet(w, now)
            except (ValueError, TypeError, IndexError, FixedPointError) as e:
                self._bad("wallet", w, e)

    def _http_trades(self, rest, doc, now) -> None:
        for t in doc:
            try:
                self._trade(t, now, "rest")
            except (ValueError, TypeError, IndexError, FixedPointError) as e:
                self._bad("trade", t, e)
        self._map(now)

    def _http_map(self, rest, doc, now) -> None:
        self._http_mapping(doc, now, hist=False)

    def _http_maph(self, rest, doc, now) -> None:
        self._http_mapping(doc, now, hist=True)

    def _http_mapping(self, doc, now, hist: bool) -> None:
        """The orders of trades we could not place: ours (kept, so that their fills are ours) or foreign."""
        for a in doc:
            if type(a) is not list or len(a) <= O_PRICE or a[O_ID] not in self.unmapped:
                continue
            vid = a[O_ID]
            trades = self.unmapped.pop(vid)
            self.mapping.discard(vid)
            oid = order_id_of(a[O_GID], a[O_CID])
            o = self._find(vid, a[O_GID], a[O_CID])
            inst = self.by_symbol.get(a[O_SYMBOL])
            if o is None and (oid is None or inst is None):
                self.known_foreign.add(vid)
                self.counts["foreign_fills"] += len(trades)
                continue
            learnt = False  # an order of ours this handler learns from its fills (and reports, once)
            if o is None:
                self.counts["known_from_fills"] += 1
                st, _ = order_status(a[O_STATUS])
                if st is not None and st not in TERMINAL and self.unknown_orders == "adopt":
                    self._unknown_order(a, now)  # (reported there)
                    o = self.orders.get(oid)
                else:  # ended, or to be cancelled: kept so that its fills are ours
                    learnt = True
                    o = self._from_array(oid, a, inst, now)
                    o.status = st or S.CANCELLED
                    if o.live:
                        self.counts["unknown_cancelled"] += 1
                        self._cancel_unknown(vid, now)
                    self._register(o)
            for t in trades:
                self._trade(t, now, "rest")
            self._order_array(a, now)
            if learnt:  # the overseer may still wait for this order's answer: how it ended
                self._update(o, now)
        left = [v for v in self.mapping if v in self.unmapped]
        if not left:
            return
        if not hist:  # not open: among the closed ones
            self._rest("maph", P_HIST, {"id": left[:100]}, now)
            return
        for vid in left:  # the venue does not know them as ours
            self.mapping.discard(vid)
            self.known_foreign.add(vid)
            self.counts["foreign_fills"] += len(self.unmapped.pop(vid))

    # ------------------------------------------------------------------------------ timer
    def on_timer(self, now: int) -> None:
        self._time_out(now)
        if self.halted:
            return
        for what, at in list(self.retry_at.items()):
            if now >= at:
                del self.retry_at[what]
                self._redo(what, now)
        if self.started and now >= self.next_reconcile:
            self.next_reconcile = now + self.reconcile_ns
            self._reconcile(now)
        if self.connected and not self.authed and self.auth_sent and now - self.auth_sent > self.timeout_ns:
            self.counts["auth_timeouts"] += 1
            self.auth_sent = 0
            self._reconnect(now, "no answer to the log-on")
        if self.te_fetch_at and now >= self.te_fetch_at:
            self.te_fetch_at = 0
            if any(o.te for o in self.orders.values()):  # executions whose fee never came: ask REST
                self.counts["te_without_tu"] += 1
                self._fetch_trades(now)

    def _redo(self, what: str, now: int) -> None:
        kind, _, rest = what.partition(":")
        if kind == "open":
            self._rest("open", P_ORDERS, None, now)
        elif kind == "wallets":
            self._rest("wallets", P_WALLETS, None, now)
        elif kind == "trades":
            self._fetch_trades(now)
        elif kind == "cancel_all":
            self._rest("cancel_all", P_CANCEL_MULTI, {"all": 1}, now)
        elif kind in ("qa", "qh"):
            rid_text, _, oid_text = rest.partition(":")
            o = self.orders.get(int(oid_text))
            if o is not None:
                (self._query if kind == "qa" else self._query_hist)(o, now, int(rid_text))
        elif kind in ("map", "maph"):
            self.mapping.difference_update(self.unmapped)
            self._map(now)
        elif kind == "cancel_unknown":
            self._cancel_unknown(int(rest), now)
