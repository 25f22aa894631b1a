"""Coinbase Advanced Trade order entry, sans-IO (``venues/account.py``; ../shared/research/exchanges.md 4.1-4.3).

Connections and paths (Advanced Trade takes orders over REST only; its WebSocket carries no orders):

- REST (``rest_url``, every call with its own JWT from ``auth.py``): the orders themselves,
  ``POST /api/v3/brokerage/orders`` (``limit_limit_gtc``, ``post_only`` for post-only; ``sor_limit_ioc``
  for IOC), ``POST .../orders/edit`` (a resting GTC limit's price and total size, in place: the
  venue order id stays) and ``POST .../orders/batch_cancel`` (by the venue's order id); the
  reconciliation at start, after a user-stream gap and every ``reconcile_s``: ``GET
  .../orders/historical/batch`` (open orders; an order by client id is found in the list of the
  product's recent orders, the venue has no look-up by client id), ``.../orders/historical/{id}``,
  ``.../orders/historical/fills`` and ``.../accounts`` (balances: ``available_balance`` + ``hold``).
- one WebSocket (``ws_url``, conn ``"user"``): the ``user`` channel with a JWT (order status and
  cumulative quantity of each of our orders, a snapshot of the open ones on subscribing) and
  ``heartbeats`` (channels without updates close after a minute or so otherwise).
  ``sequence_num`` counts every message of the connection: a jump re-subscribes and reconciles
  the gap; no message for ``stale_s`` reconnects.

The user channel names no trades: an order update says how much has filled, and that order's fills
(trade id, price, fee, maker or taker) are fetched from ``.../orders/historical/fills`` at once.
The ``OrderUpdate`` with the new filled quantity goes out first, its ``Fill`` records one REST
round trip later; balances are fetched from ``.../accounts`` after fills and order changes (at
most every ``balance_every_s``).

Settings (keyword arguments of the constructor):

``ws_url`` (``wss://advanced-trade-ws-user.coinbase.com``, the user-order endpoint; the market-data
one serves the channel too), ``rest_url`` (``https://api.coinbase.com``), ``jwt_lifetime_s`` (120, the SDK's, at least 3: the venue refuses a token
after its ``exp``, so an order not found once this window passed was never placed; a 401 that comes
back after it is a token expired on the way, not a refused key), ``timeout_s`` (5: a
request unanswered this long is UNKNOWN), ``unknown_orders`` (``"cancel"`` | ``"adopt"``),
``reconcile_s`` (60), ``recent_fills_s`` (3600: fills fetched at start), ``rest_limit_per_s`` (30: the
private REST limit per user, counted locally over the last second; a request that would exceed it
is refused RATE_LIMITED), ``rate_backoff_s`` (1: after a 429 that names no time), ``retry_s`` (2: a
failed reconciliation fetch is retried after this), ``fill_retry_s`` (0.25: fills the venue has not
listed yet are asked for again), ``balance_every_s`` (0.5), ``stale_s`` (5: heartbeats come every
second), ``balance_scale`` (10: decimals of ``BalanceUpdate``).

Idempotency: every NEW carries ``client_order_id = client_id(order_id)`` (any string up to the venue's
length: ours are ``mt`` + base 36, at most 15 characters) and is sent once.  No answer within
``timeout_s``, a transport error or a 5xx make the outcome UNKNOWN: the order is looked up by its
client id among the product's orders since it was sent (by its venue id once that is known) and
that answer, or the user channel, is applied once; not found once the JWT window passed, it was
never placed, and if it shows up later it is cancelled.  Fills are deduplicated by the venue's
trade id.  A CANCEL of an order whose venue id is not known yet (batch_cancel takes venue ids only)
waits for it; an AMEND is refused (UNSUPPORTED).

Rate limits and errors: 429 backs off for ``Retry-After`` (or ``rate_backoff_s``) and refuses the
request RATE_LIMITED (not carried out); 401 (token refused: key, private key, clock), 403
(forbidden: banned, or a key without the permission) and 418 halt.  The venue's failure reasons
(``INSUFFICIENT_FUND``, ``INVALID_LIMIT_PRICE_POST_ONLY``, ``PREVIEW_INVALID_BASE_SIZE_TOO_SMALL``,
``UNKNOWN_CANCEL_ORDER``, ``CANNOT_EDIT_TO_BELOW_FILLED_SIZE``...) map to ``Reject`` codes.

Kill switch: Advanced Trade has no cancel-all and no dead-man switch: ``cancel_all`` batch-cancels
every live order we know (in batches of 100) and every open order the venue lists; an order whose
venue id is not known yet is cancelled as soon as it is.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections import deque
from decimal import ROUND_CEILING, ROUND_FLOOR
from urllib.parse import urlencode, urlsplit

import msgspec

from ...fixed import FixedPointError
from ...redact import redact
from ...runtime.clock import utc
from ...spine.messages import OrderAction, OrderStatus
from ...trading.accounts import Reject
from ..account import (AMEND, CANCEL, IOC as _IOC, NEW, POST_ONLY as _POST_ONLY, Close, Http, Open,
                       OrderProtocol, VenueOrder, VenueRequest, WsSend, fx as _fx, order_id_of)
from . import auth
from .protocol import rfc3339_ns

log = logging.getLogger(__name__)

WS_URL = "wss://advanced-trade-ws-user.coinbase.com"
REST_URL = "https://api.coinbase.com"
API = "/api/v3/brokerage"
CONN = "user"
S = OrderStatus
SNAPSHOT_BATCH = 50  # the user channel's snapshot comes in batches of 50; a shorter one ends it
CANCEL_BATCH = 100  # order ids per batch_cancel
PAGE = 250

# the venue's order status (user channel and REST) -> ours; None: no change to report
STATUS = {"PENDING": S.ACK, "QUEUED": S.ACK, "OPEN": S.OPEN, "FILLED": S.FILLED, "CANCELLED": S.CANCELLED,
          "EXPIRED": S.EXPIRED, "FAILED": S.REJECTED, "CANCEL_QUEUED": None, "UNKNOWN_ORDER_STATUS": None}
LIVE = (S.ACK, S.OPEN, S.PARTIALLY_FILLED)

HALT_ERRORS = ("PERMISSION_DENIED", "UNAUTHENTICATED", "UNAUTHORIZED")
# a cancel or edit of an order the venue no longer has open: ask how it ended
CLOSED_ERRORS = ("UNKNOWN_CANCEL_ORDER", "ORDER_NOT_FOUND", "ONLY_OPEN_ORDERS_CAN_BE_EDITED", "NOT_FOUND")


def trade_key(trade_id) -> int:
    """The venue's trade id (a UUID-like text) as the spine's 63-bit ``trade_id``."""
    return int.from_bytes(hashlib.blake2b(str(trade_id).encode(), digest_size=8).digest(), "little") >> 1


def reject_reason(error: str) -> Reject:
    """Coinbase's failure reason (``error``, ``new_order_failure_reason``, ``preview_failure_reason``,
    ``edit_failure_reason``, ``failure_reason``) -> our Reject code."""
    e = str(error).upper()
    if "INSUFFICIENT_FUND" in e or "INSUFFICIENT_LEDGER" in e or "INSUFFICIENT_BALANCE" in e:
        return Reject.INSUFFICIENT_BALANCE
    if "POST_ONLY" in e:
        return Reject.POST_ONLY
    if "QUOTE_SIZE_TOO_SMALL" in e:
        return Reject.MIN_NOTIONAL
    if "BASE_SIZE_TOO_SMALL" in e:
        return Reject.MIN_SIZE
    if "PRICE_PRECISION" in e or "EDITED_PRICE" in e or "INVALID_LIMIT_PRICE" in e:
        return Reject.TICK
    if "SIZE_PRECISION" in e or "EDITED_SIZE" in e:
        return Reject.LOT
    if "PRODUCT_ID" in e or "INELIGIBLE_PAIR" in e:
        return Reject.UNKNOWN_INSTRUMENT
    if any(c in e for c in CLOSED_ERRORS):
        return Reject.UNKNOWN_ORDER
    if "RATE_LIMIT" in e or "TOO_MANY" in e:
        return Reject.RATE_LIMITED
    if "BELOW_FILLED_SIZE" in e or "INVALID_ARGUMENT" in e or "INVALID_SIDE" in e or "INVALID_REQUEST" in e:
        return Reject.BAD_REQUEST
    if "UNSUPPORTED" in e or "ONLY_LIMIT_ORDER_EDITS" in e:
        return Reject.UNSUPPORTED
    return Reject.VENUE_ERROR


def _error_text(doc, status: int) -> str:
    """The venue's reason from any of its error shapes (create, edit, cancel, a 4xx body)."""
    if isinstance(doc, dict):
        er = doc.get("error_response")
        if isinstance(er, dict):
            for k in ("preview_failure_reason", "new_order_failure_reason", "error"):
                v = er.get(k)
                if v and "UNKNOWN" not in str(v):
                    return str(v)
            return str(er.get("error") or er.get("message") or "UNKNOWN_FAILURE_REASON")
        errs = doc.get("errors")
        if isinstance(errs, list) and errs and isinstance(errs[0], dict):
            e0 = errs[0]
            for k in ("edit_failure_reason", "preview_failure_reason"):
                v = e0.get(k)
                if v and "UNKNOWN" not in str(v):
                    return str(v)
            return str(e0.get("edit_failure_reason") or "UNKNOWN_EDIT_ORDER_FAILURE_REASON")
        for k in ("failure_reason", "error", "message"):
            if doc.get(k):
                return str(doc[k])
    return f"HTTP {status}"


class RateWindow:
    """Requests sent in the last second (the venue's per-user limit, counted locally)."""

    def __init__(self, per_s: int):
        self.limit = int(per_s)
        self.times: deque[int] = deque()

    def room(self, now: int) -> int:
        t = self.times
        while t and t[0] <= now - 1_000_000_000:
            t.popleft()
        return self.limit - len(t)

    def add(self, now: int) -> None:
        self.times.append(now)


class _Order(VenueOrder):
    __slots__ = ("vid", "deferred", "kill", "fill_tries")

    def __init__(self, order_id, cid, inst, side, price, size, flags, placed):
        VenueOrder.__init__(self, order_id, cid, inst, side, price, size, flags, placed)
        self.vid = ""  # the venue's order id, once known
        self.deferred: list = []  # CANCELs waiting for the venue id
        self.kill = False  # the kill switch wants it cancelled once its venue id is known
        self.fill_tries = 0

    def venue_ref(self) -> bytes:
        return self.vid.encode()


_Req = VenueRequest


def _side(o) -> str:
    return "BUY" if o.side > 0 else "SELL"


def _rest_fields(d: dict) -> tuple:
    """(vid, cid, product, side, price, size, cumulative, status) of a REST order."""
    conf = d.get("order_configuration") or {}
    inner = next((v for v in conf.values() if isinstance(v, dict)), {}) if isinstance(conf, dict) else {}
    return (str(d.get("order_id") or ""), d.get("client_order_id") or None, d.get("product_id"), d.get("side"),
            inner.get("limit_price"), inner.get("base_size"), d.get("filled_size") or "0", d.get("status"))


def _stream_fields(d: dict, inst) -> tuple:
    """The same from a user-channel order (its size is what filled plus what is left)."""
    cum = d.get("cumulative_quantity") or "0"
    size = None
    if inst is not None and d.get("leaves_quantity") not in (None, ""):
        size = _fx(cum, inst.size_scale) + _fx(d["leaves_quantity"], inst.size_scale)
    return (str(d.get("order_id") or ""), d.get("client_order_id") or None, d.get("product_id"), d.get("order_side"),
            d.get("limit_price") or None, size, cum, d.get("status"))


class CoinbaseOrders(OrderProtocol):
    venue = "coinbase"
    order_class = _Order

    def __init__(self, creds, instruments, *, ws_url: str = WS_URL, rest_url: str = REST_URL,
                 jwt_lifetime_s: int = auth.LIFETIME_S, timeout_s: float = 5.0, unknown_orders: str = "cancel",
                 reconcile_s: float = 60.0, recent_fills_s: float = 3600.0, rest_limit_per_s: int = 30,
                 rate_backoff_s: float = 1.0, retry_s: float = 2.0, fill_retry_s: float = 0.25,
                 balance_every_s: float = 0.5, stale_s: float = 5.0, balance_scale: int = 10, **settings):
        super().__init__(creds, instruments, **settings)
        self._init_entry(unknown_orders, settings, timeout_s=timeout_s, reconcile_s=reconcile_s,
                         rate_backoff_s=rate_backoff_s, retry_s=retry_s, balance_scale=balance_scale)
        auth.load_key(creds.secret)  # a secret that is no key: a clear error now, not at the first order
        if not 3 <= int(jwt_lifetime_s) <= auth.LIFETIME_S:  # nbf is whole seconds: a token lives 1 s less
            raise ValueError(f"jwt_lifetime_s must be in [3, {auth.LIFETIME_S}]")
        self.ws_url, self.rest_url = ws_url, rest_url.rstrip("/")
        self.host = urlsplit(self.rest_url).netloc
        self.jwt_lifetime_s = int(jwt_lifetime_s)
        # a NEW not found after this long never reached the engine: its token had expired
        self.window_ns = (self.jwt_lifetime_s + 1) * 1_000_000_000
        self.recent_fills_ns = int(recent_fills_s * 1e9)
        self.fill_retry_ns = int(fill_retry_s * 1e9)
        self.balance_every_ns = int(balance_every_s * 1e9)
        self.stale_ns = int(stale_s * 1e9)
        self.rate = RateWindow(rest_limit_per_s)
        self.symbols = sorted(self.by_symbol)
        self.by_vid: dict[str, _Order] = {}
        self.foreign: dict[str, str] = {}  # venue id -> product of open orders not ours
        self.known_foreign: set[str] = set()
        self.unmapped: dict[str, list] = {}  # venue id -> fills waiting for their order
        self.inflight: set[str] = set()  # background fetches under way (coalesced)
        self.sent_at: dict[str, int] = {}  # tag -> when its request (and its token) was made
        self.open_seen: set[str] = set()
        self.killed: set[str] = set()  # venue ids the kill switch already cancelled
        self.seq: int | None = None
        self.snap: set | None = None  # venue ids of the user snapshot being received
        self.last_frame = 0
        self.bal_dirty = False
        self.next_balance = 0

    # ------------------------------------------------------------------------------ helpers
    def _nonce(self) -> str:
        return secrets.token_hex()

    def _rest(self, tag: str, method: str, path: str, now: int, body=None, query=()) -> None:
        headers = auth.rest_headers(self.creds.key, self.creds.secret, method, self.host, path,
                                    now // 1_000_000_000, self._nonce(), self.jwt_lifetime_s)
        url = self.rest_url + path + ("?" + urlencode(list(query)) if query else "")
        self.rate.add(now)
        self.inflight.add(tag.partition("|")[0])
        self.sent_at[tag] = now
        self.counts["rest_" + (path.rsplit("/", 1)[-1] if "historical/" not in path or path.endswith(("batch", "fills"))
                               else "order")] += 1
        self.events.append(Http(tag, method, url, headers, self._enc.encode(body) if body is not None else b""))

    def _ws(self, msg: dict) -> None:
        self.events.append(WsSend(CONN, self._enc.encode(msg).decode()))

    def _register(self, o: _Order) -> None:
        self.orders[o.order_id] = o
        if o.vid:
            self.by_vid[o.vid] = o

    def _set_vid(self, o: _Order, vid: str, now: int) -> None:
        if vid and not o.vid:
            o.vid = vid
            self.by_vid[vid] = o
            if o.filled > o.fill_qty:
                self._want_fills(o, now)
            self._after(o, now)

    def _find(self, vid: str, cid) -> _Order | None:
        o = self.by_vid.get(vid) if vid else None
        if o is None and cid:
            oid = order_id_of(cid)
            o = self.orders.get(oid) if oid is not None else None
            if o is not None and o.cid != cid:
                o = None
        return o

    @property
    def ready(self) -> bool:
        return self.connected

    # ------------------------------------------------------------------------------ start / connection
    def start(self, now: int) -> None:
        self.started = True
        self.events.append(Open(CONN, self.ws_url))
        self._reconcile(now, since_ns=now - self.recent_fills_ns)
        self.next_reconcile = now + self.reconcile_ns

    def _reconcile(self, now: int, since_ns: int | None = None) -> None:
        """Open orders, balances and the fills since ``since_ns`` (the newest fill seen, by default)."""
        self.counts["reconciles"] += 1
        self._fetch_open(now)
        self._fetch_accounts(now)
        self._fetch_fills(self.last_fill_ns or now - self.recent_fills_ns if since_ns is None else since_ns, now)

    def _fetch_open(self, now: int, cursor: str = "", tag: str = "open") -> None:
        q = [("order_status", "OPEN"), ("limit", PAGE)] + [("product_ids", s) for s in self.symbols]
        if cursor:
            q.append(("cursor", cursor))
        elif tag == "open":
            self.open_asked = now  # the snapshot's first page: later pages are no older
        self._rest(f"{tag}|{cursor}" if cursor else tag, "GET", API + "/orders/historical/batch", now, query=q)

    def _fetch_accounts(self, now: int, cursor: str = "") -> None:
        self.bal_dirty = False
        self.next_balance = now + self.balance_every_ns
        q = [("limit", PAGE)] + ([("cursor", cursor)] if cursor else [])
        self._rest("accounts" + (f"|{cursor}" if cursor else ""), "GET", API + "/accounts", now, query=q)

    def _fetch_fills(self, since_ns: int, now: int, cursor: str = "") -> None:
        # a minute earlier than the newest fill seen: fills already emitted are dropped by trade id
        start = utc(max(since_ns - 60_000_000_000, 0), 6)
        q = [("start_sequence_timestamp", start), ("limit", PAGE)] + [("product_ids", s) for s in self.symbols]
        if cursor:
            q.append(("cursor", cursor))
        self._rest("fills" + (f"|{cursor}" if cursor else ""), "GET", API + "/orders/historical/fills", now, query=q)

    def _want_fills(self, o: _Order, now: int, cursor: str = "") -> None:
        """The fills of ``o`` (the user channel says more has filled than the fills we have)."""
        if not o.vid:
            return
        what = f"ofills:{o.vid}"
        if what in self.inflight and not cursor:
            return
        self.retry_at.pop(what, None)
        q = [("order_ids", o.vid), ("limit", PAGE)] + ([("cursor", cursor)] if cursor else [])
        self._rest(what + (f"|{cursor}" if cursor else ""), "GET", API + "/orders/historical/fills", now, query=q)

    def on_open(self, conn: str, now: int) -> None:
        if conn != CONN:
            return
        self.connected = True
        self.counts["connects"] += 1
        self.seq = None
        self.last_frame = now
        self._subscribe(now)

    def _subscribe(self, now: int) -> None:
        s = now // 1_000_000_000
        self.snap = set()
        self._ws(auth.ws_subscribe("user", self.creds.key, self.creds.secret, s, self._nonce(), self.symbols,
                                   self.jwt_lifetime_s))
        self._ws(auth.ws_subscribe("heartbeats", self.creds.key, self.creds.secret, s, self._nonce(), None,
                                   self.jwt_lifetime_s))

    def on_close(self, conn: str, now: int, reason: str) -> None:
        if conn != CONN:
            return
        was = self.subscribed
        self.connected = self.subscribed = False
        self.seq = self.snap = None
        self.counts["disconnects"] += 1
        log.warning("coinbase: user channel connection lost (%s)", redact(reason))
        self._connection_lost(now)  # (orders go over REST: nothing is in flight on the socket)
        if was:
            self.counts["stream_gaps"] += 1

    # ------------------------------------------------------------------------------ requests
    def new_room(self, inst, now: int) -> bool:
        return self.rate.room(now) > 0

    def submit_change(self, r, inst, o: _Order, now: int) -> None:
        act = r.action
        if act == AMEND and (o.flags & _IOC or not o.vid):
            # an IOC never rests; without its venue id there is nothing to name in an edit
            self.counts["amend_refused"] += 1
            self.reject(r, Reject.UNSUPPORTED, now)
            return
        if not o.vid:  # batch_cancel takes venue ids: the CANCEL waits for the NEW's answer
            q = _Req(self._next_req(), r, CANCEL, now, "rest", o)
            q.state = "deferred"
            self.reqs[q.req_id] = q
            o.deferred.append(q)
            self.counts["deferred_cancels"] += 1
            return
        if self.rate.room(now) <= 0:
            self.reject(r, Reject.RATE_LIMITED, now)
            return
        self._send(r, act, o, now)

    def _send(self, r, act, o: _Order, now: int) -> None:
        rid = self._next_req()
        self.reqs[rid] = _Req(rid, r, act, now, "rest", o)
        inst = o.inst
        tag = f"req:{rid}"
        if act == NEW:
            qty, px = inst.size_str(o.size), inst.price_str(o.price)
            conf = {"sor_limit_ioc": {"base_size": qty, "limit_price": px}} if o.flags & _IOC else \
                {"limit_limit_gtc": {"base_size": qty, "limit_price": px, "post_only": bool(o.flags & _POST_ONLY)}}
            self._rest(tag, "POST", API + "/orders", now, {"client_order_id": o.cid, "product_id": inst.symbol,
                                                            "side": _side(o), "order_configuration": conf})
        elif act == AMEND:
            self._rest(tag, "POST", API + "/orders/edit", now,
                       {"order_id": o.vid, "price": inst.price_str(r.price), "size": inst.size_str(r.size)})
        else:
            self._rest(tag, "POST", API + "/orders/batch_cancel", now, {"order_ids": [o.vid]})

    def cancel_all(self, now: int) -> None:
        """The kill switch: every live order we know, by batch_cancel, and every open order the venue
        lists; ours without a venue id yet as soon as they have one."""
        self.counts["cancel_all"] += 1
        vids = []
        for o in self.orders.values():
            if o.live:
                if o.vid:
                    vids.append(o.vid)
                else:
                    o.kill = True
        self._cancel_ids(vids, "cancel_all", now)
        self._fetch_open(now, tag="killopen")

    def _cancel_ids(self, vids, tag: str, now: int) -> None:
        vids = [v for v in vids if v not in self.killed] if tag == "cancel_all" else list(vids)
        if tag == "cancel_all":
            self.killed.update(vids)
        for i in range(0, len(vids), CANCEL_BATCH):
            self._rest(tag, "POST", API + "/orders/batch_cancel", now, {"order_ids": vids[i:i + CANCEL_BATCH]})

    def _after(self, o: _Order, now: int) -> None:
        """What waited for ``o``'s venue id or its end: deferred CANCELs, the kill switch."""
        if not (o.deferred or o.kill):
            return
        if o.live and o.vid:
            if o.kill:
                o.kill = False
                self._cancel_ids([o.vid], "cancel_all", now)
            waiting, o.deferred = o.deferred, []
            for q in waiting:
                self.reqs.pop(q.req_id, None)
                self._send(q.r, CANCEL, o, now)
        elif not o.live:
            o.kill = False
            waiting, o.deferred = o.deferred, []
            for q in waiting:  # it ended: say how, as for any request on an ended order
                self._answered(q)
                self._update(o, now)

    # ------------------------------------------------------------------------------ outcomes
    def _query(self, o: _Order, now: int, rid: int = 0) -> None:
        if o.vid:
            self._rest(f"query:{rid}:{o.order_id}", "GET", f"{API}/orders/historical/{o.vid}", now)
        else:
            self._find_by_cid(o, now, rid)

    def _find_by_cid(self, o: _Order, now: int, rid: int, cursor: str = "") -> None:
        """The product's orders since just before ``o`` was sent: the one with our client id."""
        # one asked about (``_ask_unknown``) was sent by a predecessor, when we cannot tell: the recent ones
        since = o.placed - (self.recent_fills_ns if o.order_id in self.asking else 60_000_000_000)
        q = [("product_ids", o.inst.symbol), ("start_date", utc(max(since, 0), 6)),
             ("limit", PAGE)] + ([("cursor", cursor)] if cursor else [])
        what = f"find:{rid}:{o.order_id}"
        self._rest(what + (f"|{cursor}" if cursor else ""), "GET", API + "/orders/historical/batch", now, query=q)

    def _ok(self, q: _Req, data: dict, now: int) -> None:
        """The venue accepted the request ``q``."""
        o = q.order
        if q.state == "done":  # a late or repeated answer
            self.counts["late_answers"] += 1
            if q.action == NEW:
                self._set_vid(o, str(data.get("order_id") or ""), now)
                self._late_accept(o, now)
            return
        self._answered(q)
        self.bal_dirty = True
        if q.action == NEW:
            self._set_vid(o, str(data.get("order_id") or ""), now)
            if o.lost:
                self._late_accept(o, now)
                return
            if self._set_status(o, S.ACK):
                self._update(o, now)
            self._after(o, now)
        elif q.action == AMEND:
            r = q.r
            o.price, o.size = r.price, r.size
            self._update(o, now, about=r.ref_id)
        elif self._set_status(o, S.CANCELLED):
            self._update(o, now)

    def _late_accept(self, o: _Order, now: int) -> None:
        """We said ``o`` was never placed, and the venue has it: it must not stay."""
        if o.lost and o.vid and o.vid not in self.late_cancelled:
            self.late_cancelled.add(o.vid)
            self.counts["late_accept_cancelled"] += 1
            self._cancel_ids([o.vid], "cancel_unknown", now)

    def _err(self, q: _Req, error: str, now: int) -> None:
        o, r = q.order, q.r
        self._venue_error(f"{OrderAction(q.action).name} {o.order_id}", error)
        if q.state == "done":
            self.counts["late_answers"] += 1
            return
        self._answered(q)
        why = reject_reason(error)
        if str(error).upper().startswith(HALT_ERRORS):
            self.halt(f"coinbase refused the credentials: {error}")
        if why == Reject.RATE_LIMITED:
            self.backoff_until = max(self.backoff_until, now + self.rate_backoff_ns)
            self.counts["rate_limited_by_venue"] += 1
        if q.action == NEW:
            self._new_refused(o, why, now)
            self._after(o, now)
            return
        if why == Reject.UNKNOWN_ORDER and o.vid:
            # the venue no longer has it open (filled, cancelled): find out how it ended
            self.counts["cancel_on_closed"] += 1
            self._reopen(q)
            self._query(o, now, q.req_id)
            return
        self._update(o, now, status=S.CANCEL_REJECTED, reason=why, about=r.ref_id)

    def _resolve(self, rid: int, oid: int, d: dict | None, now: int, what: str) -> None:
        """The venue's word about the order ``oid`` that request ``rid`` (0: none) asked for; ``d``
        None: the venue does not have it."""
        q = self.reqs.get(rid) if rid else None
        if oid in self.asking:  # an order we did not know (``_ask_unknown``)
            if q is not None:
                self._answer_unknown(q, None if d is None else lambda o: self._apply_rest(o, d, now, answer=True), now)
            return
        o = self.orders.get(oid)
        if o is None:
            return
        if d is None:
            if q is None:
                if o.live and not o.vid:
                    o.status = S.REJECTED
                    self._update(o, now, reason=Reject.VENUE_ERROR)
                return
            if q.action == NEW:
                if now - q.sent < self.window_ns:
                    # its token is still valid: the venue may yet take it; ask again once it is not
                    self.retry_at[what] = q.sent + self.window_ns + 1
                    return
                self._answered(q)
                self._lost(o, now)
                self._after(o, now)
                return
            self._answered(q)
            self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.UNKNOWN_ORDER, about=q.r.ref_id)
            return
        if q is not None:
            self._answered(q)
        if o.lost:
            self._set_vid(o, str(d.get("order_id") or ""), now)
            if STATUS.get(d.get("status")) in LIVE:
                self._late_accept(o, now)
            return
        changed = self._apply_rest(o, d, now, answer=q is not None and q.action == NEW)
        if q is not None and q.action != NEW and o.live:
            r = q.r
            if q.action == AMEND and (o.price, o.size) == (r.price, r.size):
                if not changed:
                    self._update(o, now, about=r.ref_id)
            else:  # still open as it was: the request did not happen; the overseer may ask again
                self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.VENUE_ERROR, about=r.ref_id)
        self._after(o, now)

    def _apply_rest(self, o: _Order, d: dict, now: int, answer: bool = False, reconcile: bool = False) -> bool:
        """An order as REST describes it; emits an update when something changed (always for an
        answer).  True if it changed."""
        vid, _, _, _, price, size, cum, status = _rest_fields(d)
        self._set_vid(o, vid, now)
        inst = o.inst
        changed = False
        if price not in (None, ""):
            p = _fx(price, inst.price_scale)
            changed |= p != o.price
            o.price = p
        if size not in (None, ""):
            s = _fx(size, inst.size_scale)
            changed |= s != o.size
            o.size = s
        c = _fx(cum, inst.size_scale)
        if c > o.filled:
            o.filled, changed = c, True
        if c > o.fill_qty:
            self._want_fills(o, now)
        st = STATUS.get(status)
        if st == S.OPEN and c:
            st = S.PARTIALLY_FILLED
        if self._set_status(o, st):
            changed = True
        if changed:
            self.bal_dirty = True
            if reconcile:
                self.counts["drift_corrected"] += 1
        if changed or answer:
            self._update(o, now)
        return changed

    # ------------------------------------------------------------------------------ frames
    def on_frame(self, conn: str, text: str, now: int) -> None:
        self.last_frame = now
        try:
            msg = self._dec.decode(text)
            if type(msg) is not dict:
                raise ValueError("not an object")
            if msg.get("type") == "error":
                self._venue_error("user channel", msg.get("message") or msg)
                if not self.subscribed:  # a refused subscription (its token): once more, later
                    self.retry_at["subscribe"] = now + self.retry_ns
                return
            old = self._check_seq(msg.get("sequence_num"), now)
            ch = msg.get("channel")
            if ch == "user":
                self._on_user(msg, now, old)
            elif ch == "subscriptions":
                self._on_subscriptions(msg, now)
            elif ch != "heartbeats":
                self.counts["ignored_frames"] += 1
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, FixedPointError,
                msgspec.DecodeError) as e:
            self._bad("frame", text, e)

    def _check_seq(self, seq, now: int) -> bool:
        """True if the message is late or repeated (its order states are applied, not its sizes)."""
        if type(seq) is not int:
            return False
        last = self.seq
        if last is None:
            self.seq = seq
            return False
        if seq <= last:
            self.counts["user_seq_old"] += 1
            return True
        self.seq = seq
        if seq > last + 1:
            self.counts["user_seq_gap"] += 1
            log.warning("coinbase: sequence gap %d -> %d: re-subscribing and reconciling", last, seq)
            self._resync(now)
        return False

    def _resync(self, now: int) -> None:
        if not self.connected:
            return
        self.subscribed = False
        self._ws(auth.ws_subscribe("user", self.creds.key, self.creds.secret, now // 1_000_000_000, self._nonce(),
                                   self.symbols, self.jwt_lifetime_s, kind="unsubscribe"))
        self._ws(auth.ws_subscribe("user", self.creds.key, self.creds.secret, now // 1_000_000_000, self._nonce(),
                                   self.symbols, self.jwt_lifetime_s))
        self.snap = set()

    def _on_subscriptions(self, msg: dict, now: int) -> None:
        subs = {}
        for ev in msg.get("events") or ():
            subs.update(ev.get("subscriptions") or {})
        if "user" not in subs or self.subscribed:
            return
        self.subscribed = True
        self.counts["subscribed"] += 1
        if self.counts["subscribed"] > 1:  # a re-subscription: what the gap held
            self._reconcile(now)

    def _on_user(self, msg: dict, now: int, old: bool) -> None:
        try:
            ts = rfc3339_ns(msg.get("timestamp") or "") or now
        except ValueError:
            ts = now
        n = 0
        for ev in msg.get("events") or ():
            for d in ev.get("orders") or ():
                n += 1
                try:
                    vid = self._on_order(d, ts, now, old)
                    if self.snap is not None and vid:
                        self.snap.add(vid)
                except (ValueError, KeyError, TypeError, AttributeError, FixedPointError) as e:
                    self._bad("user order", d, e)
        if self.snap is not None and n < SNAPSHOT_BATCH:
            seen, self.snap = self.snap, None
            # ours that the venue no longer lists as open ended while we were not looking (one just
            # placed may only be missing from a snapshot taken before it: asking costs a request)
            for o in list(self.orders.values()):
                if o.live and o.vid and o.vid not in seen and not any(q.order is o for q in self.reqs.values()):
                    self.counts["closed_in_gap"] += 1
                    self._query(o, now)

    def _on_order(self, d: dict, ts: int, now: int, old: bool) -> str:
        vid, cid, sym, side, price, size, cum, status = _stream_fields(d, self.by_symbol.get(d.get("product_id")))
        o = self._find(vid, cid)
        if o is None:
            self._unknown_order(vid, cid, sym, side, price, size, cum, status, now)
            return vid
        st = STATUS.get(status)
        if o.lost:
            self._set_vid(o, vid, now)
            if st in LIVE:
                self._late_accept(o, now)
            return vid
        self._set_vid(o, vid, now)
        o.exch_ts = max(o.exch_ts, ts)
        changed = False
        c = _fx(cum, o.inst.size_scale)
        if c > o.filled:
            o.filled, changed = c, True
        if c > o.fill_qty:
            self._want_fills(o, now)
        if st == S.OPEN and c:
            st = S.PARTIALLY_FILLED
        if self._set_status(o, st):
            changed = True
        if changed:
            self.bal_dirty = True
            self._update(o, now)
        self._after(o, now)
        return vid

    def _unknown_order(self, vid, cid, sym, side, price, size, cum, status, now: int) -> None:
        """An order we do not track: ours from before a restart (adopt or cancel) or foreign."""
        oid = order_id_of(cid) if cid else None
        st = STATUS.get(status)
        inst = self.by_symbol.get(sym) if sym else None
        if oid is None:
            self.counts["foreign_events"] += 1
            if vid and st in LIVE and vid not in self.foreign:
                self.foreign[vid] = sym or ""
                self.counts["foreign_open"] += 1
                if self.unknown_orders == "cancel":
                    self._cancel_ids([vid], "cancel_unknown", now)
            return
        if inst is None or st is None or st not in LIVE or not vid:
            self.counts["unknown_events"] += 1
            return
        if self.unknown_orders == "cancel":
            self.counts["unknown_cancelled"] += 1
            self._cancel_ids([vid], "cancel_unknown", now)
            return
        self.counts["adopted"] += 1
        o = _Order(oid, cid, inst, 1 if side == "BUY" else -1, _fx(price or 0, inst.price_scale),
                   size if type(size) is int else _fx(size or 0, inst.size_scale), 0, now)
        o.vid, o.status = vid, st
        o.filled = _fx(cum or 0, inst.size_scale)
        if o.filled and st == S.OPEN:
            o.status = S.PARTIALLY_FILLED
        self._register(o)
        self._update(o, now)
        if o.filled:  # its fills: the overseer's handler drops those it published before
            self._want_fills(o, now)

    # ------------------------------------------------------------------------------ fills and balances
    def _fill(self, f: dict, now: int) -> None:
        vid = str(f.get("order_id") or "")
        o = self.by_vid.get(vid)
        if o is None:
            if vid in self.known_foreign:
                self.counts["foreign_fills"] += 1
            else:
                self.unmapped.setdefault(vid, []).append(f)
            return
        tid = f.get("trade_id")
        if not tid:
            raise ValueError("fill without trade_id")
        t = trade_key(tid)
        if self._fill_seen(o, t):
            return
        if f.get("size_in_quote") in (True, "true"):
            raise ValueError("a fill sized in the quote currency (not an order of ours)")
        inst = o.inst
        try:
            ts = rfc3339_ns(f.get("trade_time") or f.get("sequence_timestamp") or "") or now
        except ValueError:
            ts = now
        was = o.filled
        self._add_fill(o, t, _fx(f["price"], inst.price_scale), _fx(f["size"], inst.size_scale),
                       _fx(f.get("commission") or "0", inst.price_scale, ROUND_CEILING), ts,
                       f.get("liquidity_indicator") == "MAKER", inst.quote, f["size"])
        self.bal_dirty = True
        if o.live and o.fill_qty >= o.size:  # filled whole: whatever the user channel said or lost
            o.status = S.FILLED
            self._update(o, now)
        elif o.filled > was and o.live:  # the fills know more than the user channel said
            self._update(o, now)

    def _map_unmapped(self, now: int) -> None:
        for vid in list(self.unmapped):
            if vid in self.known_foreign:
                self.counts["foreign_fills"] += len(self.unmapped.pop(vid))
            elif f"map:{vid}" not in self.inflight:
                self._rest(f"map:{vid}", "GET", f"{API}/orders/historical/{vid}", now)

    def _balance(self, a: dict, now: int) -> None:
        asset = str(a.get("currency") or "")
        if not asset or self._other_asset(asset):
            return
        avail = (a.get("available_balance") or {}).get("value") or "0"
        hold = (a.get("hold") or {}).get("value") or "0"
        free = _fx(avail, self.balance_scale, ROUND_FLOOR)
        self._put_balance(asset, free + _fx(hold, self.balance_scale, ROUND_FLOOR), free, now, False, now)

    # ------------------------------------------------------------------------------ REST answers
    def on_http(self, tag: str, status: int, headers: dict, body: bytes, now: int) -> None:
        what, _, cursor = tag.partition("|")
        kind, _, rest = what.partition(":")
        self.inflight.discard(what)
        sent = self.sent_at.pop(tag, now)
        if status == 401 and now - sent >= self.window_ns - 2_000_000_000:
            # its token may have expired on the way (a slow answer): refused, not carried out, and
            # no sign that the key is wrong
            self.counts["token_expired_in_flight"] += 1
            q = self.reqs.get(int(rest)) if kind == "req" else None
            if q is not None and q.state == "sent":
                self._err(q, "TOKEN_EXPIRED_IN_FLIGHT (HTTP 401 after the token's lifetime)", now)
            elif kind not in ("req", "cancel_unknown"):
                self.retry_at[what] = now + self.retry_ns
            return
        if status in (401, 403, 418):
            why = {401: "credentials refused (the key name, its private key, or the clock)",
                   403: "forbidden (banned, or the key lacks the permission)", 418: "banned"}[status]
            self._venue_error(f"REST {kind}", f"HTTP {status} {bytes(body[:200]).decode('utf-8', 'replace')}")
            self.halt(f"coinbase answered {status}: {why}")
            q = self.reqs.get(int(rest)) if kind == "req" else None
            if q is not None and q.state == "sent":  # refused before it was looked at: not carried out
                self._answered(q)
                if q.action == NEW:
                    self._new_refused(q.order, Reject.HALTED, now)
                else:
                    self._update(q.order, now, status=S.CANCEL_REJECTED, reason=Reject.HALTED, about=q.r.ref_id)
            return
        if status == 429:
            self._rest_rate_limited(kind, rest, what, headers, now, lambda q: self._err(q, "RATE_LIMIT_EXCEEDED", now),
                                    retry=kind != "cancel_unknown")
            return
        doc = None
        if body:
            try:
                doc = self._dec.decode(body)
            except (ValueError, msgspec.DecodeError) as e:
                if status == 200:
                    self._bad(f"REST {kind}", body, e)
                    status = 0  # unusable: as if unanswered
        if status == 0 or status >= 500:
            self._no_answer(kind, rest, what, status, body, now, retry=kind != "cancel_unknown")
            return
        try:
            getattr(self, f"_http_{kind}")(rest, cursor, status, doc, now)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, FixedPointError) as e:
            self._bad(f"REST {kind}", body, e)
            if kind != "req":
                self.retry_at[what] = now + self.retry_ns

    def _refused(self, what: str, status: int, doc, now: int) -> None:
        self._venue_error(what, f"HTTP {status} {_error_text(doc, status)}")
        self.retry_at[what] = now + self.retry_ns

    def _http_req(self, rest, cursor, status, doc, now) -> None:
        rid = int(rest)
        q = self.reqs.get(rid) or self.done_reqs.get(rid)
        if q is None:
            self.counts["unmatched_answers"] += 1
            return
        if status != 200 or not isinstance(doc, dict):
            self._err(q, _error_text(doc, status), now)
        elif q.action == NEW:
            if doc.get("success"):
                self._ok(q, doc.get("success_response") or {"order_id": doc.get("order_id")}, now)
            else:
                self._err(q, _error_text(doc, status), now)
        elif q.action == AMEND:
            if doc.get("success"):
                self._ok(q, {}, now)
            else:
                self._err(q, _error_text(doc, status), now)
        else:
            res = next((x for x in doc.get("results") or () if x.get("order_id") == q.order.vid), None)
            if res is None:
                raise ValueError("batch_cancel answered without our order")
            if res.get("success"):
                self._ok(q, res, now)
            else:
                self._err(q, _error_text(res, status), now)

    def _http_query(self, rest, cursor, status, doc, now) -> None:
        rid, _, oid = rest.partition(":")
        what = f"query:{rest}"
        if status == 404:
            self._resolve(int(rid), int(oid), None, now, what)
        elif status != 200 or not isinstance(doc, dict) or not isinstance(doc.get("order"), dict):
            self._refused(what, status, doc, now)
        else:
            self._resolve(int(rid), int(oid), doc["order"], now, what)

    def _http_find(self, rest, cursor, status, doc, now) -> None:
        rid, _, oid = rest.partition(":")
        what = f"find:{rest}"
        if status != 200 or not isinstance(doc, dict):
            self._refused(what, status, doc, now)
            return
        o = self.orders.get(int(oid)) or self.asking.get(int(oid))
        if o is None:
            return
        found = next((d for d in doc.get("orders") or () if d.get("client_order_id") == o.cid), None)
        if found is None and doc.get("has_next") and doc.get("cursor"):
            self._find_by_cid(o, now, int(rid), str(doc["cursor"]))
            return
        self._resolve(int(rid), int(oid), found, now, what)

    def _http_open(self, rest, cursor, status, doc, now) -> None:
        if status != 200 or not isinstance(doc, dict):
            self._refused("open", status, doc, now)
            return
        for d in doc.get("orders") or ():
            try:
                vid, cid, sym, side, price, size, cum, st = _rest_fields(d)
                self.open_seen.add(vid)
                o = self._find(vid, cid)
                if o is None:
                    self._unknown_order(vid, cid, sym, side, price, size, cum, st, now)
                elif o.lost:
                    self._set_vid(o, vid, now)
                    self._late_accept(o, now)
                elif not self._open_older(o):
                    self._apply_rest(o, d, now, reconcile=True)
            except (ValueError, KeyError, TypeError, AttributeError, FixedPointError) as e:
                self._bad("open order", d, e)
        if doc.get("has_next") and doc.get("cursor"):
            self._fetch_open(now, str(doc["cursor"]))
            return
        seen, self.open_seen = self.open_seen, set()
        for o in list(self.orders.values()):
            if o.live and o.vid and o.vid not in seen and now - o.placed > self.timeout_ns \
                    and not any(q.order is o for q in self.reqs.values()):
                self.counts["drift_orders"] += 1
                log.warning("coinbase: order %d (%s) is live for us but not open on the venue: asking", o.order_id,
                            o.vid)
                self._query(o, now)
        for vid in [v for v in self.foreign if v not in seen]:
            del self.foreign[vid]

    def _http_killopen(self, rest, cursor, status, doc, now) -> None:
        if status != 200 or not isinstance(doc, dict):
            self._refused("killopen", status, doc, now)  # the kill switch must not stop at an error
            return
        self._cancel_ids([str(d.get("order_id")) for d in doc.get("orders") or () if d.get("order_id")],
                         "cancel_all", now)
        if doc.get("has_next") and doc.get("cursor"):
            self._fetch_open(now, str(doc["cursor"]), tag="killopen")

    def _http_cancel_all(self, rest, cursor, status, doc, now) -> None:
        if status != 200 or not isinstance(doc, dict):
            self._refused("killopen", status, doc, now)
            return
        for res in doc.get("results") or ():
            o = self.by_vid.get(str(res.get("order_id")))
            if res.get("success"):
                if o is not None and self._set_status(o, S.CANCELLED):
                    self.bal_dirty = True
                    self._update(o, now)
            elif o is not None and o.live:
                if reject_reason(_error_text(res, status)) == Reject.UNKNOWN_ORDER:
                    self._query(o, now)  # it ended before the cancel: how?
                else:
                    self._venue_error("batch_cancel (kill switch)", _error_text(res, status))
                    self.killed.discard(o.vid)
                    self.retry_at["killopen"] = now + self.retry_ns

    def _http_cancel_unknown(self, rest, cursor, status, doc, now) -> None:
        for res in (doc or {}).get("results") or ():
            if not res.get("success"):
                self._venue_error("batch_cancel (unknown order)", _error_text(res, status))

    def _http_accounts(self, rest, cursor, status, doc, now) -> None:
        if status != 200 or not isinstance(doc, dict):
            self._refused("accounts", status, doc, now)
            return
        for a in doc.get("accounts") or ():
            try:
                self._balance(a, now)
            except (ValueError, KeyError, TypeError, AttributeError, FixedPointError) as e:
                self._bad("account", a, e)
        if doc.get("has_next") and doc.get("cursor"):
            self._rest(f"accounts|{doc['cursor']}", "GET", API + "/accounts", now,
                       query=[("limit", PAGE), ("cursor", str(doc["cursor"]))])

    def _fills_page(self, doc, now) -> bool:
        """Apply a page of fills (oldest first); True if another page follows."""
        fills = doc.get("fills") or ()
        for f in sorted(fills, key=lambda f: str(f.get("sequence_timestamp") or f.get("trade_time") or "")):
            try:
                self._fill(f, now)
            except (ValueError, KeyError, TypeError, AttributeError, FixedPointError) as e:
                self._bad("fill", f, e)
        return bool(doc.get("cursor")) and len(fills) >= PAGE

    def _http_fills(self, rest, cursor, status, doc, now) -> None:
        if status != 200 or not isinstance(doc, dict):
            self._refused("fills", status, doc, now)
            return
        if self._fills_page(doc, now):
            self._fetch_fills(self.last_fill_ns or now - self.recent_fills_ns, now, str(doc["cursor"]))
        else:
            self._map_unmapped(now)

    def _http_ofills(self, vid, cursor, status, doc, now) -> None:
        what = f"ofills:{vid}"
        if status != 200 or not isinstance(doc, dict):
            self._refused(what, status, doc, now)
            return
        o = self.by_vid.get(vid)
        more = self._fills_page(doc, now)
        if o is None:
            return
        if more:
            self._want_fills(o, now, str(doc["cursor"]))
        elif o.fill_qty < o.filled:  # the venue has not listed them all yet: ask again shortly
            o.fill_tries += 1
            if o.fill_tries <= 40:
                self.retry_at[what] = now + self.fill_retry_ns
            else:
                self.counts["fills_missing"] += 1  # the periodic reconciliation asks again
                o.fill_tries = 0
        else:
            o.fill_tries = 0

    def _http_map(self, vid, cursor, status, doc, now) -> None:
        """The order of fills we could not place: ours (from before a restart) or foreign."""
        trades = self.unmapped.pop(vid, [])
        d = doc.get("order") if status == 200 and isinstance(doc, dict) else None
        if not isinstance(d, dict):
            if status != 404:
                self._venue_error("GET order", f"HTTP {status} {_error_text(doc, status)}")
            self.known_foreign.add(vid)
            self.counts["foreign_fills"] += len(trades)
            return
        _, cid, sym, side, price, size, cum, status_text = _rest_fields(d)
        o = self._find(vid, cid)
        oid = order_id_of(cid) if cid else None
        inst = self.by_symbol.get(sym)
        learnt = False  # an order of ours this handler learns from its fills (and reports, once)
        if o is None and oid is not None and inst is not None:
            st = STATUS.get(status_text) or S.OPEN
            self.counts["known_from_fills"] += 1
            if st in LIVE and self.unknown_orders == "adopt":
                self._unknown_order(vid, cid, sym, side, price, size, cum, status_text, now)
                o = self.orders.get(oid)
            else:  # ended, or to be cancelled: kept so that its fills are ours
                learnt = True
                o = _Order(oid, cid, inst, 1 if side == "BUY" else -1, _fx(price or 0, inst.price_scale),
                           _fx(size or 0, inst.size_scale), 0, now)
                o.vid, o.status = vid, st
                if o.live:
                    self.counts["unknown_cancelled"] += 1
                    self._cancel_ids([vid], "cancel_unknown", now)
                self._register(o)
        if o is None:
            self.known_foreign.add(vid)
            self.counts["foreign_fills"] += len(trades)
            return
        self.by_vid.setdefault(vid, o)
        for f in trades:
            try:
                self._fill(f, now)
            except (ValueError, KeyError, TypeError, AttributeError, FixedPointError) as e:
                self._bad("fill", f, e)
        self._apply_rest(o, d, now)
        if learnt:  # the overseer may still wait for this order's answer: how it ended
            self._update(o, now)

    # ------------------------------------------------------------------------------ timer
    def on_timer(self, now: int) -> None:
        self._time_out(now)
        if self.halted:
            return
        if self.connected and self.stale_ns and now - self.last_frame > self.stale_ns:
            self.counts["stale_reconnects"] += 1
            log.warning("coinbase: no message on the user channel for %.1f s: reconnecting",
                        (now - self.last_frame) / 1e9)
            self.last_frame = now
            self.events += [Close(CONN, "stale"), Open(CONN, self.ws_url)]
        for what, at in list(self.retry_at.items()):
            if now >= at and now >= self.backoff_until:
                del self.retry_at[what]
                self._redo(what, now)
        if self.started and now >= self.next_reconcile:
            self.next_reconcile = now + self.reconcile_ns
            self._reconcile(now)
        if self.bal_dirty and now >= self.next_balance and "accounts" not in self.inflight \
                and now >= self.backoff_until:
            self._fetch_accounts(now)

    def _redo(self, what: str, now: int) -> None:
        kind, _, rest = what.partition(":")
        if kind == "open":
            self._fetch_open(now)
        elif kind == "killopen":
            self._fetch_open(now, tag="killopen")
        elif kind == "accounts":
            self._fetch_accounts(now)
        elif kind == "fills":
            self._fetch_fills(self.last_fill_ns or now - self.recent_fills_ns, now)
        elif kind == "ofills":
            o = self.by_vid.get(rest)
            if o is not None:
                self._want_fills(o, now)
        elif kind == "map":
            if rest in self.unmapped:
                self._rest(what, "GET", f"{API}/orders/historical/{rest}", now)
        elif kind in ("query", "find"):
            rid, _, oid = rest.partition(":")
            o = self.orders.get(int(oid)) or self.asking.get(int(oid))
            if o is not None:
                self._query(o, now, int(rid))
        elif kind == "subscribe":
            if self.connected and not self.subscribed:
                self._subscribe(now)
