"""What a sans-IO order protocol takes and emits: a venue's account side (orders, fills, balances).

Same shape as the market-data protocols (``base.py``, ``events.py``): a venue's ``orders.py`` holds
an ``OrderProtocol`` subclass that never touches a socket or a clock.  The one blocking runner
(``execution/runner.py``) feeds it and carries out what it appends to ``events``:

- ``Open(conn, url)`` — open the WebSocket named ``conn`` ("trade", "user", ...) and keep it up:
  the runner calls ``on_open(conn, now)`` once it is connected and ``on_close(conn, now, reason)``
  when it drops, then reconnects by itself (with back-off) and calls ``on_open`` again, where the
  protocol logs on / re-subscribes.  ``Open`` with another url moves the connection; ``Close(conn,
  reason)`` drops it for good (until the next ``Open``).
- ``WsSend(conn, text)`` — send a text frame on that connection.
- ``Http(tag, method, url, headers, body)`` — make an HTTP request; the answer comes back as
  ``on_http(tag, status, headers, body, now)`` (headers lower-cased; status 0 = no answer: timeout or
  transport error, the outcome is unknown).
- ``OrderUpdate`` / ``Fill`` / ``BalanceUpdate`` (the spine's message types) — publish as they are.
- ``Halt(reason)`` — order entry on this venue must stop (banned, credentials refused): the runner
  refuses every later request and the overseer's kill switch trips.

Signing lives in the venue's ``auth.py`` (pure functions: credentials, request, clock/nonce in;
exactly what goes on the wire out).  ``now`` is ns since the epoch, given by the caller everywhere.

Request contract (``trading/accounts.py``): a NEW is answered about its ``order_id``; CANCEL and
AMEND about ``ref_id``.  Every NEW carries ``client_id(order_id)`` so that an answer lost to a
timeout, a dropped connection or a 5xx can be found again by asking the venue: the request's outcome
is UNKNOWN until then, and it is never sent twice.
"""

from __future__ import annotations

import logging
from collections import Counter
from decimal import Decimal, InvalidOperation
from typing import Iterable, NamedTuple

import msgspec

from ..fixed import FixedPointError, to_fixed
from ..instruments import VENUE_IDS, Instrument
from ..redact import redact
from ..spine.messages import (BalanceUpdate, Fill, Liquidity, OrderAction, OrderFlags, OrderRequest, OrderStatus,
                              OrderUpdate)
from ..trading.accounts import Reject

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
CLIENT_PREFIX = "mt"  # ours: every venue accepts [0-9a-z] ids of this length (Kraken: at most 18)


def client_id(order_id: int) -> str:
    """The client order id a request carries: ``mt`` + base-36 ``order_id`` (at most 15 chars)."""
    if order_id < 0:
        raise ValueError(f"order id must be >= 0, got {order_id}")
    digits = ""
    while True:
        order_id, r = divmod(order_id, 36)
        digits = _B36[r] + digits
        if not order_id:
            return CLIENT_PREFIX + digits


def order_id_of(cid: str | None) -> int | None:
    """Our ``order_id`` from a client order id, or None when it is not one of ours."""
    if not cid or not cid.startswith(CLIENT_PREFIX) or len(cid) > 15:
        return None
    try:
        v = int(cid[len(CLIENT_PREFIX):], 36)
    except ValueError:
        return None
    return v if cid == client_id(v) else None


class Credentials(NamedTuple):
    """An API key.  ``repr`` never shows the secret (exceptions and logs print reprs)."""

    key: str
    secret: str
    passphrase: str = ""

    def __repr__(self) -> str:
        return f"Credentials(key={self.key[:4]}…, secret=<hidden>)"

    __str__ = __repr__


class Open(NamedTuple):
    conn: str
    url: str


class Close(NamedTuple):
    conn: str
    reason: str


class WsSend(NamedTuple):
    conn: str
    text: str


class Http(NamedTuple):
    tag: str  # the protocol's own name for the answer it waits for
    method: str
    url: str
    headers: tuple  # ((name, value), ...)
    body: bytes = b""


class Halt(NamedTuple):
    reason: str


S = OrderStatus
NEW, CANCEL, AMEND, CANCEL_ALL = (OrderAction.NEW, OrderAction.CANCEL, OrderAction.AMEND,
                                  OrderAction.CANCEL_ALL)
TERMINAL = frozenset((S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED))
_RANK = {0: 0, S.ACK: 1, S.OPEN: 2, S.PARTIALLY_FILLED: 3}
IOC, POST_ONLY = int(OrderFlags.IOC), int(OrderFlags.POST_ONLY)  # plain ints: the hot path


def fx(v, scale: int, rounding=None) -> int:
    """A venue number (text or int) at ``scale``: exact, or rounded as asked (fees up, balances
    down) when it carries more decimals than the scale."""
    text = v if type(v) is str else str(v)
    try:
        return to_fixed(text, scale)
    except FixedPointError:
        if rounding is None:
            raise
        try:
            return int(Decimal(text).scaleb(scale).to_integral_value(rounding))
        except InvalidOperation:
            raise FixedPointError(f"{text!r} is not a decimal number") from None


class VenueOrder:
    """One order of ours as a venue's order protocol tracks it; a venue adds its own ids."""

    __slots__ = ("order_id", "cid", "inst", "side", "price", "size", "flags", "filled", "fill_qty", "status",
                 "placed", "trades", "lost", "exch_ts", "changed_at")

    def __init__(self, order_id, cid, inst, side, price, size, flags, placed):
        self.order_id, self.cid, self.inst = order_id, cid, inst
        self.side, self.price, self.size, self.flags = side, price, size, flags
        self.filled = 0  # cumulative, as the venue said (max seen)
        self.fill_qty = 0  # sum of the fills emitted
        self.status = 0
        self.placed = placed
        self.trades: set[int] = set()
        self.lost = False  # declared REJECTED: not found on the venue after an UNKNOWN outcome
        self.exch_ts = 0
        self.changed_at = 0  # when we last heard of it (an update emitted, a stream message): ``_open_older``

    @property
    def live(self) -> bool:
        return self.status not in TERMINAL

    def venue_ref(self) -> bytes:
        """The venue's id of the order, as ``OrderUpdate`` carries it."""
        return b""


class VenueRequest:
    """One request of ours in flight (or answered: late answers are matched to it)."""

    __slots__ = ("req_id", "r", "action", "sent", "via", "state", "order")

    def __init__(self, req_id, r, action, sent, via, order):
        self.req_id, self.r, self.action, self.sent, self.via = req_id, r, action, sent, via
        self.state = "sent"  # sent -> unknown (asked the venue) -> done
        self.order = order


class OrderProtocol:
    """Base of the venues' order protocols: instruments by id and symbol, counters, the rules
    every venue shares.  Subclasses implement ``start``, ``on_open``, ``on_close``, ``on_frame``,
    ``on_http``, ``on_timer``, ``submit_change``, ``cancel_all`` and ``_send``, and name their
    order record (``order_class``) and their limit on new orders (``new_room``).

    The order-entry state both venues keep (``_init_entry``) and what they do alike with it: the
    checks of a request before it is sent (``check_request``, ``check_new``, ``check_change``),
    order updates, status progress, UNKNOWN outcomes, fill deduplication, balances."""

    venue = ""
    tokens: tuple | list = ()  # secrets of the session besides the key (masked in logs)
    order_class = VenueOrder  # the venue's own order record (``new_order`` makes one)

    def __init__(self, creds: Credentials, instruments: Iterable[Instrument], **settings):
        self.creds = creds
        self.by_id = {i.id: i for i in instruments if i.venue == self.venue}
        self.by_symbol = {i.symbol: i for i in self.by_id.values()}
        self.venue_id = VENUE_IDS[self.venue]
        self.events: list = []
        self.counts: Counter = Counter()
        self.halted = ""
        self.settings = settings
        self.log = logging.getLogger(type(self).__module__)

    def _init_entry(self, unknown_orders: str, settings: dict, *, timeout_s: float, reconcile_s: float,
                    rate_backoff_s: float, retry_s: float, balance_scale: int) -> None:
        """The settings and state every venue's order entry has."""
        if unknown_orders not in ("cancel", "adopt"):
            raise ValueError(f"unknown_orders must be 'cancel' or 'adopt', not {unknown_orders!r}")
        if settings:
            raise TypeError(f"{type(self).__name__}: unknown settings {', '.join(sorted(settings))}")
        self.timeout_ns = int(timeout_s * 1e9)
        self.unknown_orders = unknown_orders
        self.reconcile_ns = int(reconcile_s * 1e9)
        self.rate_backoff_ns = int(rate_backoff_s * 1e9)
        self.retry_ns = int(retry_s * 1e9)
        self.balance_scale = balance_scale
        self.assets: set[str] = set()
        for i in self.by_id.values():
            self.assets.update((i.base, i.quote))
        self._dec = msgspec.json.Decoder(float_hook=str)
        self._enc = msgspec.json.Encoder()
        self.orders: dict = {}  # ours, by order_id
        self.reqs: dict = {}  # in flight, by request id
        self.done_reqs: dict = {}  # answered or resolved: late answers are matched here
        self.req_id = 0
        self.connected = False
        self.subscribed = False
        self.backoff_until = 0  # refuse with RATE_LIMITED until then (ns)
        self.rest_backoff_until = 0  # REST fetches wait until then (a 429 on REST)
        self.next_reconcile = 0
        self.retry_at: dict[str, int] = {}  # REST fetch kind -> when to retry it
        self.last_fill_ns = 0  # venue time of the newest fill seen (the gap fetch starts there)
        self.balances: dict[str, int] = {}  # asset -> total last emitted (at balance_scale)
        # when the last REST balance / open-orders request went out (each venue's ``_rest`` sets
        # them): ``_put_balance`` and ``_open_older`` tell an answer older than the stream by them
        self.balances_asked = self.open_asked = 0
        self.balance_heard: dict[str, int] = {}  # asset -> when a figure other than a check's came
        self.late_cancelled: set[str] = set()
        self.asking: dict = {}  # order id -> an order we did not know, asked about (``_ask_unknown``)
        self.started = False

    # -- what subclasses call
    def reject(self, r: OrderRequest, why: Reject, now: int) -> None:
        """Answer a request the venue will never see (bad instrument, rate limit, halted)."""
        self.counts[f"refused_{Reject(why).name.lower()}"] += 1
        if r.action == 1:  # NEW: the order is refused
            oid, st = r.order_id, OrderStatus.REJECTED
        else:  # CANCEL / AMEND: the order stands as it was
            oid, st = r.ref_id, OrderStatus.CANCEL_REJECTED
        self.events.append(OrderUpdate(oid, r.price, r.size, 0, now, r.instrument, st, r.side, int(why), b""))

    def halt(self, reason: str) -> None:
        if not self.halted:
            self.halted = reason
            self.events.append(Halt(reason))

    # -- requests: the checks every venue makes before anything is sent
    def check_request(self, r: OrderRequest, now: int):
        """The instrument of ``r`` if it may go on (else it is answered here): not halted, not a
        CANCEL_ALL (done here), a known instrument, not backing off."""
        if self.halted:
            self.reject(r, Reject.HALTED, now)
            return None
        if r.action == CANCEL_ALL:
            self.cancel_all(now)
            return None
        inst = self.by_id.get(r.instrument)
        if inst is None:
            self.reject(r, Reject.UNKNOWN_INSTRUMENT, now)
            return None
        if now < self.backoff_until:
            self.reject(r, Reject.RATE_LIMITED, now)
            return None
        return inst

    def check_new(self, r: OrderRequest, inst, now: int) -> bool:
        """True if the NEW ``r`` may be sent: not a duplicate (never sent twice), a price, a size and a
        side, on the tick and the lot."""
        if r.order_id in self.orders:
            self.counts["duplicate_new"] += 1  # never sent twice
            return False
        if r.price <= 0 or r.size <= 0 or r.side not in (1, -1):
            self.reject(r, Reject.BAD_REQUEST, now)
            return False
        if r.price % inst.tick:
            self.reject(r, Reject.TICK, now)
            return False
        if r.size % inst.lot:
            self.reject(r, Reject.LOT, now)
            return False
        return True

    def submit(self, r: OrderRequest, now: int) -> None:
        """A request of the overseer's: the checks every venue makes (``check_request``), then a NEW's
        shared path (``submit_new``) or, for a live order of ours (``check_change``), the venue's own
        CANCEL or AMEND (``submit_change``)."""
        inst = self.check_request(r, now)
        if inst is None:
            return
        if r.action == NEW:
            self.submit_new(r, inst, now)
            return
        o = self.check_change(r, inst, now)
        if o is not None:
            self.submit_change(r, inst, o, now)

    def submit_new(self, r: OrderRequest, inst, now: int) -> None:
        """A NEW past ``check_request``: ``check_new``, then the venue's own limit (``new_room``),
        then the order (``new_order``, its client id derived from ours) registered (``_register``)
        and sent once (``_send``)."""
        if not self.check_new(r, inst, now):
            return
        if not self.new_room(inst, now):
            self.reject(r, Reject.RATE_LIMITED, now)
            return
        o = self.new_order(r, inst, now)
        self._register(o)
        self._send(r, NEW, o, now)

    def new_room(self, inst, now: int) -> bool:
        """True if the venue's limits let one more new order through (and count it)."""
        return True

    def new_order(self, r: OrderRequest, inst, now: int):
        return self.order_class(r.order_id, client_id(r.order_id), inst, r.side, r.price, r.size, r.flags, now)

    def asked_order(self, r: OrderRequest, inst, now: int):
        """The order ``_ask_unknown`` asks the venue about (``r.ref_id``), as the request describes it
        until the venue says; a venue that names orders otherwise gives it its own ids."""
        return self.order_class(r.ref_id, client_id(r.ref_id), inst, r.side, r.price, r.size, r.flags, now)

    def submit_change(self, r: OrderRequest, inst, o, now: int) -> None:
        """The venue's CANCEL or AMEND of ``o``, a live order of ours."""
        raise NotImplementedError

    def check_change(self, r: OrderRequest, inst, now: int):
        """The order a CANCEL / AMEND ``r`` is about if it may be sent: a live order of ours, a valid
        amend (above what is filled); an order that ended is reported as it ended; one we do not know
        is asked about (``_ask_unknown``)."""
        o = self.orders.get(r.ref_id)
        if o is None:
            if r.action in (CANCEL, AMEND):
                self._ask_unknown(r, inst, now)  # a predecessor's, maybe: the venue is asked first
            else:
                self.reject(r, Reject.UNKNOWN_ORDER, now)
            return None
        if not o.live:  # it ended: say how (FILLED, CANCELLED...) rather than refuse
            self.counts["request_on_ended_order"] += 1
            self._update(o, now)
            return None
        act = r.action
        if act == AMEND:
            if r.price <= 0 or r.size <= 0 or r.price % inst.tick or r.size % inst.lot or r.size <= o.filled:
                self.reject(r, Reject.BAD_REQUEST, now)
                return None
        elif act != CANCEL:
            self.reject(r, Reject.UNSUPPORTED, now)
            return None
        return o

    # -- order state
    def _next_req(self) -> int:
        self.req_id += 1
        return self.req_id

    def _update(self, o: VenueOrder, now: int, status=None, reason: int = 0, about: int | None = None,
                price=None, size=None) -> None:
        st = o.status if status is None else status
        o.changed_at = now
        self.events.append(OrderUpdate(o.order_id if about is None else about,
                                       o.price if price is None else price, o.size if size is None else size,
                                       o.filled, o.exch_ts or now, o.inst.id, st, o.side, int(reason),
                                       o.venue_ref()[:24]))

    def _set_status(self, o: VenueOrder, st) -> bool:
        """Move ``o`` to ``st`` if that is progress (terminal stays terminal); True if it moved."""
        if st is None or not o.live or st == o.status:
            return False
        if st in TERMINAL or _RANK.get(st, 0) > _RANK.get(o.status, 0):
            o.status = st
            return True
        return False

    def _mask(self, text) -> str:
        """Venue text for a log: redacted, and our own secrets masked wherever they appear bare."""
        s = redact(text if isinstance(text, str) else repr(text))
        for secret in (*self.tokens, self.creds.secret, self.creds.key):
            if secret and len(secret) >= 8:
                s = s.replace(secret, "***")
        return s

    def _venue_error(self, where: str, text) -> None:
        self.counts["venue_errors"] += 1
        self.log.warning("%s %s: %s", self.venue, where, self._mask(str(text)))

    def _bad(self, where: str, data, e) -> None:
        self.counts["malformed"] += 1
        self.log.warning("%s: malformed %s (%s: %s): %s", self.venue, where, type(e).__name__, self._mask(str(e)),
                         self._mask(repr(data)[:300]))

    # -- outcomes
    def _answered(self, q: VenueRequest) -> None:
        self.reqs.pop(q.req_id, None)
        q.state = "done"
        self.done_reqs[q.req_id] = q
        if len(self.done_reqs) > 10_000:
            self.done_reqs.pop(next(iter(self.done_reqs)))

    def _reopen(self, q: VenueRequest) -> None:
        """``q``, answered, has an unknown outcome again: in flight until the venue is asked."""
        q.state = "unknown"
        self.reqs[q.req_id] = q
        self.done_reqs.pop(q.req_id, None)

    def _unknown(self, q: VenueRequest, now: int, why: str) -> None:
        """No answer, a dropped connection, a 5xx: ask the venue about the order by its client id."""
        if q.state != "sent":
            return
        q.state = "unknown"
        self.counts["unknown_outcomes"] += 1
        self.log.warning("%s: %s of order %d: outcome unknown (%s); asking the venue", self.venue,
                         OrderAction(q.action).name, q.order.order_id, redact(why))
        self._ask(q, now)

    def _ask(self, q: VenueRequest, now: int) -> None:
        """Ask the venue how the request ``q`` ended (its order, by client id)."""
        self._query(q.order, now, q.req_id)

    def _query(self, o: VenueOrder, now: int, rid: int = 0) -> None:
        raise NotImplementedError

    def _ask_unknown(self, r: OrderRequest, inst, now: int) -> None:
        """A CANCEL / AMEND about an order this handler does not know.  A predecessor killed before the
        NEW's answer may have placed it (filled, even) while the overseer still waits: UNKNOWN_ORDER
        would end it there as never placed.  Its client id follows from its order id, so the venue is
        asked first (``_query``, as for a NEW whose outcome is unknown) and ``_answer_unknown`` answers.
        Until then the order stands as the request describes it (the overseer's carries its side,
        price, size and flags), under a request of an unknown outcome (never timed out)."""
        if r.ref_id < 0:
            self.reject(r, Reject.UNKNOWN_ORDER, now)
            return
        if r.ref_id in self.asking:  # asked already: the overseer may ask again once the venue said
            self.reject(r, Reject.VENUE_ERROR, now)
            return
        o = self.asked_order(r, inst, now)
        q = VenueRequest(self._next_req(), r, r.action, now, "rest", o)
        q.state = "unknown"
        self.reqs[q.req_id] = q
        self.asking[r.ref_id] = o
        self.counts["asked_unknown_order"] += 1
        self._query(o, now, q.req_id)

    def _answer_unknown(self, q: VenueRequest, describe, now: int) -> None:
        """The venue's word about the order of ``_ask_unknown``'s request ``q``: ``describe(o)`` gives
        ``o`` the venue's description and reports it (its fills fetched), None when the venue does not
        know it either (UNKNOWN_ORDER, then).  The order is ours from here on; if it is live, a CANCEL
        goes on and an AMEND is refused (VENUE_ERROR: the overseer may ask again, now it is known)."""
        o = self.asking.pop(q.order.order_id)
        self._answered(q)
        r = q.r
        if describe is None:
            self.reject(r, Reject.UNKNOWN_ORDER, now)
            return
        known = self.orders.get(o.order_id)
        if known is None:
            self._register(o)
            self.counts["known_from_question"] += 1
        else:  # learnt meanwhile (from its fills, the open orders): that one is ours
            o = known
        describe(o)
        if o.live:
            if r.action == CANCEL:
                self.submit(r, now)
            else:
                self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.VENUE_ERROR, about=r.ref_id)

    def _time_out(self, now: int) -> None:
        """Requests unanswered for ``timeout_ns``: their outcome is unknown."""
        for q in list(self.reqs.values()):
            if q.state == "sent" and now - q.sent > self.timeout_ns:
                self.counts["timeouts"] += 1
                self._unknown(q, now, f"no answer in {self.timeout_ns / 1e9:g} s")

    def _connection_lost(self, now: int) -> None:
        """Requests sent on the socket that dropped have an unknown outcome now."""
        for q in list(self.reqs.values()):
            if q.via == "ws" and q.state == "sent":
                self._unknown(q, now, "connection lost")

    def _lost(self, o: VenueOrder, now: int) -> None:
        """A NEW the venue does not know once its window passed: never placed, REJECTED."""
        o.lost = True
        self.counts["lost_new"] += 1
        if o.live:
            o.status = S.REJECTED
            self._update(o, now, reason=Reject.VENUE_ERROR)

    def _new_refused(self, o: VenueOrder, why, now: int) -> None:
        if o.status == 0 or o.status == S.ACK:
            o.status = S.REJECTED
            self._update(o, now, reason=why)

    def _retry(self, what: str, now: int, after: int | None = None) -> None:
        """Fetch ``what`` again ``after`` ns from now (default ``retry_ns``)."""
        self.retry_at[what] = now + (self.retry_ns if after is None else after)

    def _no_answer(self, kind: str, rest: str, what: str, status: int, body: bytes, now: int,
                   retry: bool = True) -> None:
        """A REST call without a usable answer (none: status 0; a 5xx; an unreadable body): a request's
        outcome is UNKNOWN (``_unknown``: the venue is asked about it, it is never sent again); a fetch
        is tried again (``_retry``) unless ``retry`` is False."""
        self.counts["http_failed"] += 1
        self.log.warning("%s: REST %s: HTTP %d %s", self.venue, kind, status,
                         self._mask(bytes(body[:200]).decode("utf-8", "replace")))
        if kind == "req":
            q = self.reqs.get(int(rest))
            if q is not None:
                self._unknown(q, now, f"HTTP {status}")
        elif retry:
            self._retry(what, now)

    def _rest_rate_limited(self, kind: str, rest: str, what: str, headers: dict, now: int, refuse,
                           retry: bool = True) -> None:
        """HTTP 429 on REST: requests and REST fetches wait ``Retry-After`` (or ``rate_backoff_s``); a
        request the venue refused before looking at it was not carried out (``refuse(q)`` answers it
        with the venue's own refusal); a fetch is tried again once the wait is over (unless ``retry``
        is False)."""
        wait_ns = self._backoff_ns(headers)
        self.backoff_until = max(self.backoff_until, now + wait_ns)
        self.rest_backoff_until = max(self.rest_backoff_until, now + wait_ns)
        self.counts["http_429"] += 1
        self.log.warning("%s: 429 on %s: backing off %.1f s", self.venue, kind, wait_ns / 1e9)
        if kind == "req":
            q = self.reqs.get(int(rest))
            if q is not None and q.state == "sent":
                refuse(q)
        elif retry:
            self._retry(what, now, wait_ns)

    def _backoff_ns(self, headers: dict) -> int:
        """How long an HTTP 429 says to wait (``Retry-After``), else ``rate_backoff_ns``."""
        wait = headers.get("retry-after")
        try:
            return int(float(wait) * 1e9) if wait is not None else self.rate_backoff_ns
        except ValueError:
            return self.rate_backoff_ns

    # -- fills and balances
    def _fill_seen(self, o: VenueOrder, tid: int) -> bool:
        """True if the trade ``tid`` was already emitted for ``o`` (the venue says it again)."""
        if tid in o.trades:
            self.counts["duplicate_fills"] += 1
            return True
        return False

    def _add_fill(self, o: VenueOrder, tid: int, px: int, size: int, fee: int, ts: int, maker: bool,
                  fee_asset, qty_text) -> None:
        """Emit the fill ``tid`` of ``o`` (once: ``_fill_seen`` first)."""
        if size <= 0:
            raise ValueError(f"fill of size {qty_text!r}")
        inst = o.inst
        o.trades.add(tid)
        o.fill_qty += size
        if o.fill_qty > o.filled:
            o.filled = o.fill_qty
        if o.fill_qty > o.size:
            self.counts["overfill"] += 1
        self.last_fill_ns = max(self.last_fill_ns, ts)
        self.counts["fills"] += 1
        liq = Liquidity.MAKER if maker else Liquidity.TAKER
        self.events.append(Fill(o.order_id, tid, px, size, fee, ts, inst.id, o.side, int(liq),
                                str(fee_asset or inst.quote).encode()[:8]))

    def _hold(self, asset: str) -> int:
        """What our open orders hold of ``asset``, at balance_scale (rounded up)."""
        h = 0
        bs = self.balance_scale
        for o in self.orders.values():
            if not o.live:
                continue
            inst = o.inst
            rest = max(o.size - o.filled, 0)
            if o.side > 0 and inst.quote == asset:
                num, den_scale = o.price * rest, inst.price_scale + inst.size_scale
            elif o.side < 0 and inst.base == asset:
                num, den_scale = rest, inst.size_scale
            else:
                continue
            d = den_scale - bs
            h += num * 10**-d if d <= 0 else -(-num // 10**d)
        return h

    def _other_asset(self, asset: str) -> bool:
        """True (and counted) if no instrument of ours trades ``asset``."""
        if self.assets and asset not in self.assets:
            self.counts["other_assets"] += 1
            return True
        return False

    def _open_older(self, o: VenueOrder) -> bool:
        """True (and counted) if a REST open-orders answer must not be applied to ``o``: we told of
        a change to it after the request went out (a stream message, an answer), so the snapshot may
        predate it — an amend's price and size would go back until the next reconcile."""
        if o.changed_at > self.open_asked:
            self.counts["rest_order_older"] += 1
            return True
        return False

    def _put_balance(self, asset: str, total: int, free: int, ts: int, check: bool, now: int) -> None:
        """Emit ``asset``'s balance.  ``check``: a periodic REST answer, which says which figure is
        true unless the stream (or another answer) spoke of the asset since the request went out: it
        may have been computed before that figure, and nothing would correct it until the next check."""
        if check:
            if self.balance_heard.get(asset, -1) > self.balances_asked:
                self.counts["rest_balance_older"] += 1
                return
        else:
            self.balance_heard[asset] = now
        old = self.balances.get(asset)
        if check and old is not None and old != total:  # the stream had another figure
            self.counts["drift_balances"] += 1
            self.log.warning("%s: %s balance drift: %d from the stream, %d from REST (scale %d)", self.venue, asset,
                             old, total, self.balance_scale)
        self.balances[asset] = total
        self.events.append(BalanceUpdate(total, free, ts, self.balance_scale, self.venue_id, asset.encode()[:8]))

    # -- the interface the runner drives
    def start(self, now: int) -> None:
        raise NotImplementedError

    def on_open(self, conn: str, now: int) -> None:
        raise NotImplementedError

    def on_close(self, conn: str, now: int, reason: str) -> None:
        raise NotImplementedError

    def on_frame(self, conn: str, text: str, now: int) -> None:
        raise NotImplementedError

    def on_http(self, tag: str, status: int, headers: dict, body: bytes, now: int) -> None:
        raise NotImplementedError

    def on_timer(self, now: int) -> None:
        raise NotImplementedError

    def cancel_all(self, now: int) -> None:
        raise NotImplementedError
