"""Bitstamp order entry, sans-IO (``venues/account.py``; ../shared/research/exchanges.md 5.1, 5.4-5.5).

Connections and paths (Bitstamp takes orders over REST only; its WebSocket carries no orders):

- REST (``rest_url``, every call a signed ``POST /api/v2/...``, ``auth.py``; kept-alive connections
  of the runner's HTTP worker): the orders themselves, ``buy/{pair}/`` and ``sell/{pair}/`` (limit;
  ``ioc_order`` for IOC, ``moc_order``, maker-or-cancel, for post-only), ``cancel_order/`` (by the
  venue's id, or by client id while that is not known) and ``cancel_all_orders/``; an order's state
  by client id, ``order_status/`` (its trades included); the reconciliation at start, after every
  (re)subscription of the private channels and every ``reconcile_s``: ``open_orders/all/``,
  ``account_balances/``, ``user_transactions/`` (our trades since the newest one seen); the token of
  the private channels, ``websockets_token/``.
- one WebSocket (``ws_url``, conn ``"private"``): ``private-my_orders_<pair>-<user_id>`` (order
  created / changed / deleted, with the remaining amount) and ``private-my_trades_<pair>-<user_id>``
  (our trades: id, price, amount, fee) for every pair, subscribed with a fresh token for every
  connection (the token is valid ``valid_sec``, 60 s).  The channels carry no sequence numbers: a
  dropped connection is the only gap we can see, and every (re)subscription fetches what it held
  (``user_transactions`` since the newest trade seen, open orders).  ``bts:request_reconnect``
  reconnects; a ``bts:heartbeat`` goes out every ``keepalive_s``.  Bitstamp has no balance channel:
  balances are fetched (``account_balances``) after our orders change, at most every
  ``balance_every_s``.

Settings (keyword arguments of the constructor):

``ws_url`` (``wss://ws.bitstamp.net``), ``rest_url`` (``https://www.bitstamp.net``; the venue has no
public sandbox), ``timeout_s`` (5: a request unanswered this long is UNKNOWN), ``auth_window_s``
(150: the venue refuses a call whose ``X-Auth-Timestamp`` is further off its clock, so an order not
found once this long passed since it was signed was never placed), ``unknown_orders`` (``"cancel"``
| ``"adopt"``), ``reconcile_s`` (60), ``recent_fills_s`` (3600: fills fetched at start),
``rate_per_s`` (400) and ``rate_per_10min`` (10000): the documented request limits, counted locally
over every private call; ``rate_backoff_s`` (2: after the venue's own rate-limit refusal, 400.002;
an HTTP 429 waits its ``Retry-After``), ``retry_s`` (2: a failed fetch is retried after this),
``balance_every_s`` (0.5), ``keepalive_s`` (30), ``balance_scale`` (10: decimals of ``BalanceUpdate``).

Idempotency: every NEW carries ``client_order_id = client_id(order_id)`` and is sent once (since
2023-11 the venue no longer refuses a client id it has seen: sending twice would place twice).  No
answer within ``timeout_s``, a transport error or a 5xx (but the venue's definite 500.0xx refusals)
make the outcome UNKNOWN: the order is asked for by its client id (``order_status``) and that
answer, or the late one, is applied once; an order not found is asked for again every ``retry_s``
until ``auth_window_s`` passed since it was signed, then it was never placed (REJECTED), and if it
shows up later it is cancelled.  Fills are deduplicated by the venue's trade id (the same in
``my_trades``, ``user_transactions`` and ``order_status``).  The channels say nothing of maker or
taker: a fill at the order's own price after the venue reported it resting is a maker fill.

Refusals: the venue's ``response_code`` (400.009 insufficient balance, 400.020 below the minimum
order value, 404.002 order not found...) or its text map to ``Reject`` codes; authentication errors
(API0001-API0003, API0005-API0016: key, IP, permission, signature; API0017/API0018: our clock),
403.00x (the account may not trade), HTTP 418 halt; API0004 (nonce) resends with a fresh nonce
(the venue did nothing).  Rate limits: a request that would exceed either documented window is
refused (RATE_LIMITED) before it is sent; the venue's 400.002 and HTTP 429 back off.  An AMEND is
refused (UNSUPPORTED): the overseer replaces.

Kill switch: ``cancel_all_orders/`` (never held back by the local rate limit, retried until it
succeeds).  Bitstamp has no dead-man switch.
"""

from __future__ import annotations

import calendar
import logging
import time
import uuid
from collections import deque
from decimal import ROUND_CEILING, ROUND_FLOOR
from urllib.parse import urlsplit

import msgspec

from ...fixed import FixedPointError
from ...redact import redact
from ...spine.messages import OrderAction, OrderStatus
from ...trading.accounts import Reject
from ..account import (AMEND, CANCEL, IOC as _IOC, NEW, POST_ONLY as _POST_ONLY, TERMINAL, Close, Http, Open,
                       OrderProtocol, VenueOrder, VenueRequest, WsSend, client_id, fx as _fx, order_id_of)
from . import auth

log = logging.getLogger(__name__)

WS_URL = "wss://ws.bitstamp.net"
REST_URL = "https://www.bitstamp.net"
CONN = "private"
API = "/api/v2/"
S = OrderStatus

# order_status "status" -> ours
STATUS = {"Open": S.OPEN, "In Queue": S.ACK, "Finished": S.FILLED, "Canceled": S.CANCELLED,
          "Cancelled": S.CANCELLED, "Expired": S.EXPIRED}

# The venue's response codes (its API documentation, "Response codes") -> Reject
CODES = {"400.002": Reject.RATE_LIMITED, "400.003": Reject.VENUE_ERROR, "400.005": Reject.BAD_REQUEST,
         "400.006": Reject.BAD_REQUEST, "400.007": Reject.BAD_REQUEST, "400.009": Reject.INSUFFICIENT_BALANCE,
         "400.020": Reject.MIN_NOTIONAL, "400.021": Reject.BAD_REQUEST, "400.026": Reject.LOT,
         "400.037": Reject.BAD_REQUEST, "400.038": Reject.BAD_REQUEST, "400.039": Reject.BAD_REQUEST,
         "400.041": Reject.TICK, "400.046": Reject.MIN_SIZE, "404.002": Reject.UNKNOWN_ORDER,
         "404.003": Reject.UNKNOWN_INSTRUMENT, "404.007": Reject.UNKNOWN_INSTRUMENT}
# 500.0xx that leave the outcome open: unknown server error, an internal service failed, unknown
# error while processing the order, serialising, a timeout of the matching engine
UNKNOWN_CODES = frozenset(("500.001", "500.002", "500.003", "500.007", "500.016"))
HALT_CODES = frozenset(("API0001", "API0002", "API0003", "API0005", "API0006", "API0008", "API0009", "API0010",
                        "API0011", "API0012", "API0013", "API0014", "API0015", "API0016", "API0019", "API0020",
                        "403.001", "403.002", "403.003", "403.004"))
CLOCK_CODES = frozenset(("API0017", "API0018"))
NONCE_CODE = "API0004"
NOT_FOUND = "404.002"
TRADE = "2"  # user_transactions type of a market trade


def venue_error(doc) -> tuple[str, str] | None:
    """``(code, text)`` of an error body (``{"status": "error", "reason": ..., "code" | "response_code":
    ...}``, ``reason`` text or ``{field: [messages]}``; or ``{"error": ...}``), None otherwise."""
    if type(doc) is not dict or (doc.get("status") != "error" and "error" not in doc):
        return None
    code = str(doc.get("response_code") or doc.get("code") or "")
    reason = doc.get("reason", doc.get("error"))
    if isinstance(reason, dict):
        parts = []
        for name, msgs in reason.items():
            for m in msgs if isinstance(msgs, list) else [msgs]:
                if m:
                    parts.append(str(m) if name == "__all__" else f"{name}: {m}")
        reason = "; ".join(parts)
    return code, str(reason or doc.get("response_explanation") or "")


def reject_reason(code: str, text: str) -> Reject:
    """The venue's response code, else its text -> our Reject code."""
    why = CODES.get(code)
    if why is not None:
        return why
    t = text.lower()
    if "rate limit" in t:
        return Reject.RATE_LIMITED
    if "check your account balance" in t or "insufficient" in t:
        return Reject.INSUFFICIENT_BALANCE
    if "minimum order" in t:
        return Reject.MIN_NOTIONAL
    if "not found" in t:
        return Reject.UNKNOWN_ORDER
    if "decimal places" in t:
        return Reject.TICK if t.startswith("price") else Reject.LOT
    if code.startswith("400."):
        return Reject.BAD_REQUEST
    return Reject.VENUE_ERROR


def venue_time(text, now: int) -> int:
    """``"2022-01-31 14:43:15.796000"`` (UTC) -> ns; ``now`` when missing or unreadable."""
    if not text:
        return now
    try:
        whole, _, frac = str(text).partition(".")
        s = calendar.timegm(time.strptime(whole, "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return now
    return s * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def micro_ns(text, now: int) -> int:
    """A ``microtimestamp`` (µs since the epoch, text) -> ns."""
    try:
        return int(text) * 1000
    except (TypeError, ValueError):
        return now


class RateWindows:
    """The documented limits: requests per second and per 10 minutes, in fixed one-second windows."""

    def __init__(self, per_s: int, per_10min: int):
        self.per_s, self.per_10min = int(per_s), int(per_10min)
        self.sec, self.n = -1, 0  # the current second and its count
        self.past: deque = deque()  # (second, count) of the last 600 s before it
        self.total = 0  # sum of ``past``

    def _roll(self, now: int) -> None:
        sec = now // 1_000_000_000
        if sec != self.sec:
            if self.n:
                self.past.append((self.sec, self.n))
                self.total += self.n
            self.sec, self.n = sec, 0
            while self.past and self.past[0][0] <= sec - 600:
                self.total -= self.past.popleft()[1]

    def take(self, now: int, force: bool = False) -> bool:
        """Count one request if both windows allow it (``force``: count it anyway); True if counted."""
        self._roll(now)
        if not force and (self.n >= self.per_s or self.total + self.n >= self.per_10min):
            return False
        self.n += 1
        return True


class _Order(VenueOrder):
    __slots__ = ("vid", "known_at", "foreign", "rested", "cancelling")

    def __init__(self, order_id, cid, inst, side, price, size, flags, placed):
        VenueOrder.__init__(self, order_id, cid, inst, side, price, size, flags, placed)
        self.vid = ""  # the venue's order id (text)
        self.known_at = 0  # when we learnt it (the venue held the order then)
        self.foreign = False
        self.rested = False  # the venue said it rests on the book: fills at its price are maker fills
        self.cancelling = False  # we asked for a cancel (a post-only order cancelled otherwise crossed)

    def venue_ref(self) -> bytes:
        return self.vid.encode()


_Req = VenueRequest


class BitstampOrders(OrderProtocol):
    venue = "bitstamp"
    order_class = _Order

    def __init__(self, creds, instruments, *, ws_url: str = WS_URL, rest_url: str = REST_URL, timeout_s: float = 5.0,
                 auth_window_s: float = 150.0, unknown_orders: str = "cancel", reconcile_s: float = 60.0,
                 recent_fills_s: float = 3600.0, rate_per_s: int = 400, rate_per_10min: int = 10_000,
                 rate_backoff_s: float = 2.0, retry_s: float = 2.0, balance_every_s: float = 0.5,
                 keepalive_s: float = 30.0, balance_scale: int = 10, **settings):
        super().__init__(creds, instruments, **settings)
        self._init_entry(unknown_orders, settings, timeout_s=timeout_s, reconcile_s=reconcile_s,
                         rate_backoff_s=rate_backoff_s, retry_s=retry_s, balance_scale=balance_scale)
        self.ws_url, self.rest_url = ws_url, rest_url.rstrip("/")
        self.host = urlsplit(self.rest_url).netloc  # what the signature names (www.bitstamp.net)
        self.auth_window_ns = int(auth_window_s * 1e9)
        self.recent_fills_s = recent_fills_s
        self.rate = RateWindows(rate_per_s, rate_per_10min)
        self.balance_every_ns = int(balance_every_s * 1e9)
        self.keepalive_ns = int(keepalive_s * 1e9)
        self.pair: dict[int, str] = {}  # instrument id -> "btcusd"
        self.by_name: dict[str, object] = {}  # "btcusd", "BTC/USD" -> instrument
        for i in self.by_id.values():
            # the venue's pair; an instrument a feed registered bare (no base, no quote) is its symbol
            p = (f"{i.base}{i.quote}" if i.base and i.quote else i.symbol.replace("/", "")).lower()
            self.pair[i.id] = p
            for name in (p, i.symbol, i.symbol.lower(), f"{i.base}/{i.quote}".upper()):
                self.by_name.setdefault(name, i)
        self.tokens: list[str] = []
        self.token = ""
        self.token_at = 0
        self.token_valid_ns = 0
        self.token_wanted = False
        self.user_id = ""
        self.pending_subs: set[str] = set()
        # tag -> (path, params, nonce, timestamp) of each call in flight with it, oldest first (the
        # runner's HTTP worker answers in order)
        self.calls: dict[str, deque] = {}
        self.by_vid: dict[str, _Order] = {}
        self.foreign: dict[str, str] = {}  # open orders not ours: venue id -> market
        self.unmapped: dict[str, list] = {}  # venue order id -> trades waiting for its client id
        self.known_foreign: set[str] = set()
        self.balance_due = 0  # fetch balances at this time (0: nothing changed)
        self.next_balance = 0  # not before
        self.next_heartbeat = 0
        self.now = 0  # the time of the input being handled
        self.asked_at = 0  # when the call being answered was signed (ns)

    # ------------------------------------------------------------------------------ helpers
    def _rest(self, tag: str, path: str, params, now: int, force: bool = False) -> bool:
        """A signed private call; the answer comes to ``on_http(tag, ...)``.  False (nothing sent)
        when the local rate windows are full, unless ``force``."""
        if not self.rate.take(now, force):
            self.counts["rate_deferred"] += 1
            return False
        nonce = str(uuid.uuid4())
        ts = now // 1_000_000
        headers, body = auth.rest_request(self.creds.key, self.creds.secret, "POST", self.host, path, nonce, ts,
                                          params)
        self.calls.setdefault(tag, deque()).append((path, params, nonce, ts))
        self.counts[f"rest_{path[len(API):].split('/', 1)[0]}"] += 1
        if tag.startswith("balance"):
            self.balances_asked = now
        self.events.append(Http(tag, "POST", self.rest_url + path, headers, body))
        return True

    def _fetch(self, what: str, now: int) -> None:
        """A background fetch (``open``, ``balance``, ``balance:check``, ``trades``, ``token``): sent, or
        retried soon when the rate windows are full."""
        kind, _, arg = what.partition(":")
        if kind == "open":
            ok = self._rest(what, API + "open_orders/all/", (), now)
        elif kind == "balance":
            ok = self._rest(what, API + "account_balances/", (), now)
        elif kind == "trades":
            since = int(arg) if arg else (self.last_fill_ns or now - int(self.recent_fills_s * 1e9))
            # since_timestamp is in whole seconds: one earlier, duplicates are dropped
            ok = self._rest(what, API + "user_transactions/", (("since_timestamp", str(max(since // 10**9 - 1, 0))),
                                                                ("limit", "1000"), ("sort", "asc")), now)
        elif kind == "token":
            self.token_wanted = True
            ok = self._rest(what, API + "websockets_token/", (), now)
        elif kind == "cancel_all":
            ok = self._rest(what, API + "cancel_all_orders/", (), now, force=True)
        else:
            return
        if not ok:
            self._retry(what, now, 1_000_000_000)

    def _register(self, o: _Order) -> None:
        self.orders[o.order_id] = o
        if o.vid:
            self.by_vid[o.vid] = o

    def _set_vid(self, o: _Order, vid) -> None:
        vid = str(vid or "")
        if vid and not o.vid:
            o.vid = vid
            o.known_at = self.now
            self.by_vid[vid] = o

    def _find(self, vid: str, cid) -> _Order | None:
        o = self.by_vid.get(vid) if vid else None
        if o is None and cid:
            oid = order_id_of(str(cid))
            if oid is not None:
                o = self.orders.get(oid)
                if o is not None and o.cid == cid:
                    self._set_vid(o, vid)
                else:
                    o = None
        return o

    def _want_balance(self, now: int) -> None:
        if not self.balance_due:
            self.balance_due = max(now, self.next_balance)

    # ------------------------------------------------------------------------------ start / connection
    def start(self, now: int) -> None:
        self.started = True
        self.events.append(Open(CONN, self.ws_url))
        self._fetch("token", now)
        self._reconcile(now, start=True)
        self.next_reconcile = now + self.reconcile_ns

    def _reconcile(self, now: int, start: bool = False, check: bool = True) -> None:
        """Open orders, balances and our trades since the newest one seen (at start: the recent ones)."""
        self.counts["reconciles"] += 1
        self._fetch("open", now)
        self._fetch("balance:check" if check and not start else "balance", now)
        since = now - int(self.recent_fills_s * 1e9) if start else (self.last_fill_ns or
                                                                      now - int(self.recent_fills_s * 1e9))
        self._fetch(f"trades:{since}", now)

    def on_open(self, conn: str, now: int) -> None:
        if conn != CONN:
            return
        self.connected = True
        self.counts["connects"] += 1
        self.next_heartbeat = now + self.keepalive_ns
        # a token is valid for valid_sec from its issue: one for every connection
        if self.token and now - self.token_at < self.token_valid_ns // 2:
            self._subscribe(now)
        elif not self.token_wanted:
            self._fetch("token", now)

    def _channels(self) -> list[str]:
        return [f"private-{kind}_{p}-{self.user_id}" for p in sorted(set(self.pair.values()))
                for kind in ("my_orders", "my_trades")]

    def _subscribe(self, now: int) -> None:
        self.pending_subs = set(self._channels())
        for ch in sorted(self.pending_subs):
            self._ws({"event": "bts:subscribe", "data": {"channel": ch, "auth": self.token}})
        self.token = ""  # used: the next connection gets a fresh one

    def _ws(self, msg: dict) -> None:
        self.events.append(WsSend(CONN, self._enc.encode(msg).decode()))

    def on_close(self, conn: str, now: int, reason: str) -> None:
        if conn != CONN:
            return
        was = self.subscribed
        self.connected = self.subscribed = False
        self.pending_subs = set()
        self.counts["disconnects"] += 1
        log.warning("bitstamp: private stream lost (%s)", redact(reason))
        if was:
            self.counts["stream_gaps"] += 1  # fetched once the channels are back

    # ------------------------------------------------------------------------------ requests
    def submit(self, r, now: int) -> None:
        inst = self.check_request(r, now)
        if inst is None:
            return
        act = r.action
        if act == NEW:
            if not self.check_new(r, inst, now):
                return
            o = _Order(r.order_id, client_id(r.order_id), inst, r.side, r.price, r.size, r.flags, now)
            p = [("amount", inst.size_str(r.size)), ("price", inst.price_str(r.price)), ("client_order_id", o.cid)]
            if r.flags & _IOC:
                p.append(("ioc_order", "True"))
            elif r.flags & _POST_ONLY:
                p.append(("moc_order", "True"))
            rid = self._next_req()
            path = f"{API}{'buy' if r.side > 0 else 'sell'}/{self.pair[inst.id]}/"
            if not self._rest(f"req:{rid}", path, p, now):
                self.reject(r, Reject.RATE_LIMITED, now)
                return
            self._register(o)
            self.reqs[rid] = _Req(rid, r, NEW, now, "rest", o)
            return
        if act == AMEND:  # Bitstamp's replace_order makes a new order: the overseer cancels and places
            self.reject(r, Reject.UNSUPPORTED, now)
            return
        o = self.check_change(r, inst, now)
        if o is None:
            return
        rid = self._next_req()
        if not self._rest(f"req:{rid}", API + "cancel_order/", self._cancel_params(o), now):
            self.reject(r, Reject.RATE_LIMITED, now)
            return
        o.cancelling = True
        self.reqs[rid] = _Req(rid, r, CANCEL, now, "rest", o)

    @staticmethod
    def _cancel_params(o: _Order) -> tuple:
        # by the venue's id once known; before that by client id (the NEW went out first: FIFO)
        return (("id", o.vid),) if o.vid else (("client_order_id", o.cid),)

    def cancel_all(self, now: int) -> None:
        """The kill switch: every open order, by the venue's cancel-all (also with a halt)."""
        self.counts["cancel_all"] += 1
        for o in self.orders.values():
            if o.live:
                o.cancelling = True
        self._fetch("cancel_all", now)

    # ------------------------------------------------------------------------------ outcomes
    def _query(self, o: _Order, now: int, rid: int = 0) -> None:
        # by client id: it finds an order whose answer we never got
        params = (("client_order_id", o.cid),) if o.cid else (("id", o.vid),)
        if not self._rest(f"query:{rid}:{o.order_id}", API + "order_status/", params, now):
            self._retry(f"query:{rid}:{o.order_id}", now, 1_000_000_000)

    def _ok(self, q: _Req, doc: dict, now: int) -> None:
        """The venue accepted the request ``q``."""
        o = q.order
        if q.action == NEW:
            self._set_vid(o, doc.get("id"))
            if q.state == "done":  # a late or duplicate answer
                self.counts["late_answers"] += 1
                if o.lost and o.vid and o.vid not in self.late_cancelled:
                    self._late_accept(o, now)
                return
            self._answered(q)
            if o.lost:  # we said it was never placed, and it was: it must not stay
                if o.vid and o.vid not in self.late_cancelled:
                    self._late_accept(o, now)
                return
            if self._set_status(o, S.ACK):
                self._update(o, now)
            return
        if q.state == "done":
            self.counts["late_answers"] += 1
            return
        self._answered(q)
        if self._set_status(o, S.CANCELLED):  # CANCEL
            self._update(o, now)
            self._want_balance(now)

    def _late_accept(self, o: _Order, now: int) -> None:
        self.late_cancelled.add(o.vid)
        self.counts["late_accept_cancelled"] += 1
        self._cancel_unknown(o.vid, now)

    def _err(self, q: _Req, code: str, text: str, now: int) -> None:
        o, r = q.order, q.r
        self._venue_error(f"{OrderAction(q.action).name} {o.order_id}", f"{code} {text}")
        if code in UNKNOWN_CODES:
            self._unknown(q, now, f"{code} {text}")
            return
        if q.state == "done":
            self.counts["late_answers"] += 1
            return
        self._answered(q)
        why = reject_reason(code, text)
        if why == Reject.RATE_LIMITED:
            self.backoff_until = max(self.backoff_until, now + self.rate_backoff_ns)
            self.counts["rate_limited_by_venue"] += 1
        if q.action == NEW:
            self._new_refused(o, why, now)
            return
        o.cancelling = False
        if why == Reject.UNKNOWN_ORDER:
            # nothing open to cancel: it ended (filled, cancelled) or never was; find out which
            self.counts["cancel_on_closed"] += 1
            self._reopen(q)
            self._query(o, now, q.req_id)
            return
        self._update(o, now, status=S.CANCEL_REJECTED, reason=why, about=r.ref_id)

    def _cancel_unknown(self, vid: str, now: int) -> None:
        """Cancel a venue order without a request of ours (late accept, unknown orders)."""
        if not self._rest(f"cancel_unknown:{vid}", API + "cancel_order/", (("id", vid),), now):
            self._retry(f"cancel_unknown:{vid}", now, 1_000_000_000)

    # ------------------------------------------------------------------------------ frames
    def on_frame(self, conn: str, text: str, now: int) -> None:
        self.now = now
        try:
            msg = self._dec.decode(text)
            if type(msg) is not dict:
                raise ValueError("not an object")
            ev = msg.get("event")
            ch = str(msg.get("channel") or "")
            if ev in ("order_created", "order_changed", "order_deleted") and ch.startswith("private-my_orders_"):
                self._on_order(ev, msg["data"], now)
            elif ev == "trade" and ch.startswith("private-my_trades_"):
                self._on_trade(msg["data"], now)
            elif ev == "bts:subscription_succeeded":
                self._subscribed(ch, now)
            elif ev == "bts:heartbeat" or ev == "bts:unsubscription_succeeded":
                pass
            elif ev == "bts:request_reconnect":
                self.counts["reconnect_requests"] += 1
                self.events.append(Close(CONN, "the venue asked to reconnect"))
                self.events.append(Open(CONN, self.ws_url))
            elif ev == "bts:error":
                self._venue_error("stream", msg.get("data"))
                if not self.subscribed and self.pending_subs and not self.token_wanted:
                    # a subscription refused (a stale token): a fresh token, then subscribe again
                    self.pending_subs = set()
                    self._fetch("token", now)
            else:
                self.counts["ignored_frames"] += 1
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, FixedPointError,
                msgspec.DecodeError) as e:
            self._bad("frame", text, e)

    def _subscribed(self, ch: str, now: int) -> None:
        if ch not in self.pending_subs:
            return
        self.pending_subs.discard(ch)
        if self.pending_subs or self.subscribed:
            return
        self.subscribed = True
        self.counts["subscribed"] += 1
        # what the channels carried while they were not subscribed (before the first time too:
        # orders may have gone out before): trades since the newest seen, open orders
        self._fetch("open", now)
        self._fetch(f"trades:{self.last_fill_ns or now - int(self.recent_fills_s * 1e9)}", now)

    def _on_order(self, ev: str, d: dict, now: int) -> None:
        vid = str(d.get("id_str") or d.get("id") or "")
        cid = d.get("client_order_id") or None
        o = self._find(vid, cid)
        if o is None:
            self._unknown_order(ev, d, vid, cid, now)
            return
        inst = o.inst
        o.exch_ts = max(o.exch_ts, micro_ns(d.get("microtimestamp"), now))
        left = _fx(d.get("amount_str") or d["amount"], inst.size_scale)
        created = d.get("amount_at_create")
        size = _fx(created, inst.size_scale) if created not in (None, "") else o.size
        cum = max(size - left, 0)
        changed = False
        if cum > o.filled:
            o.filled, changed = cum, True
        if ev == "order_deleted":
            st = S.FILLED if left == 0 else S.CANCELLED
        else:
            o.rested = True
            st = S.PARTIALLY_FILLED if cum > 0 else S.OPEN
        reason = 0
        if st == S.CANCELLED and o.flags & _POST_ONLY and not o.cancelling and not o.filled:
            reason = Reject.POST_ONLY  # maker-or-cancel: it would have crossed
        if self._set_status(o, st):
            changed = True
        if changed:
            self._update(o, now, reason=reason)
            self._want_balance(now)

    def _on_trade(self, d: dict, now: int) -> None:
        vid = str(d.get("order_id") or "")
        cid = d.get("client_order_id") or None
        o = self._find(vid, cid)
        if o is None:
            if vid in self.known_foreign:
                self.counts["foreign_fills"] += 1
                return
            if cid and order_id_of(str(cid)) is None:
                self.counts["foreign_fills"] += 1
                self.known_foreign.add(vid)
                return
            self._unmapped(vid, ("ws", d), now)
            return
        self._fill(o, d.get("id"), d.get("price"), d.get("amount"), d.get("fee"), micro_ns(d.get("microtimestamp"), now))
        self._want_balance(now)

    def _fill(self, o: _Order, tid, price, qty, fee, ts: int) -> None:
        if tid in (None, ""):
            raise ValueError("trade without id")
        tid = int(tid)
        if self._fill_seen(o, tid):
            return
        inst = o.inst
        px = _fx(price, inst.price_scale)
        size = _fx(str(qty).lstrip("-"), inst.size_scale)
        fee_ = _fx(fee or "0", inst.price_scale, ROUND_CEILING)
        self._add_fill(o, tid, px, size, fee_, ts, o.rested and px == o.price, inst.quote, qty)
        o.exch_ts = max(o.exch_ts, ts)

    def _unmapped(self, vid: str, trade, now: int) -> None:
        """A trade of an order we do not know by that id: ask the venue whose it is."""
        if not vid:
            self.counts["unknown_events"] += 1
            return
        first = vid not in self.unmapped
        self.unmapped.setdefault(vid, []).append(trade)
        if first:
            self._map(vid, now)

    def _map(self, vid: str, now: int) -> None:
        if not self._rest(f"map:{vid}", API + "order_status/", (("id", vid),), now):
            self._retry(f"map:{vid}", now, 1_000_000_000)

    def _unknown_order(self, ev: str, d: dict, vid: str, cid, now: int) -> None:
        """An event about an order we do not track: ours from before (adopt or cancel) or foreign."""
        oid = order_id_of(str(cid)) if cid else None
        if oid is None:
            self.counts["foreign_events"] += 1
            if ev != "order_deleted" and vid and vid not in self.foreign:
                self.foreign[vid] = ""
                self.counts["foreign_open"] += 1
                if self.unknown_orders == "cancel":
                    self._cancel_unknown(vid, now)
            return
        if ev == "order_deleted":
            self.counts["unknown_events"] += 1
            return
        self._map(vid, now)  # ours from before: its state (and side, price, size) from order_status

    def _adopt_or_cancel(self, oid: int, cid: str, vid: str, inst, side: int, price: int, size: int, filled: int,
                         st, now: int) -> _Order:
        o = _Order(oid, cid, inst, side, price, size, 0, now)
        o.vid, o.status, o.filled, o.rested = vid, st, filled, True
        if st not in TERMINAL and self.unknown_orders == "cancel":
            self.counts["unknown_cancelled"] += 1
            o.cancelling = True
            self._cancel_unknown(vid, now)
        elif st not in TERMINAL:
            self.counts["adopted"] += 1
            self._register(o)
            self._update(o, now)
            return o
        self._register(o)  # ended, or being cancelled: kept so that its fills are ours
        return o

    # ------------------------------------------------------------------------------ REST answers
    def on_http(self, tag: str, status: int, headers: dict, body: bytes, now: int) -> None:
        self.now = now
        kind, _, rest = tag.partition(":")
        what = tag if kind in ("query", "map", "trades", "cancel_unknown") else \
            "balance:check" if tag == "balance:check" else kind  # what a retry redoes
        waiting = self.calls.get(tag)
        call = waiting.popleft() if waiting else None
        if waiting is not None and not waiting:
            del self.calls[tag]
        self.asked_at = call[3] * 1_000_000 if call is not None else now
        if status == 418:
            self.halt("bitstamp answered 418: banned")
            return
        if status == 429:
            self._rest_rate_limited(kind, rest, what, headers, now,
                                    lambda q: self._err(q, "400.002", "HTTP 429 Too Many Requests", now))
            return
        doc = None
        if status:
            try:
                doc = self._dec.decode(body) if body else None
            except (ValueError, msgspec.DecodeError) as e:
                if status < 500 and status not in (401, 403):
                    self._bad(f"REST {kind}", body, e)
                    status = 0  # unusable: as if unanswered
            if status == 200 and call is not None and doc is not None:
                good = auth.check_response(self.creds.secret, call[2], call[3], headers, body)
                if good is False:  # not the venue's answer to this call: as if unanswered
                    self.counts["bad_server_signature"] += 1
                    status = 0
        err = venue_error(doc) if status else None
        if err is None and status >= 400:
            err = ("", f"HTTP {status}")
        if status == 0 or (status >= 500 and (err is None or not err[0].startswith("500.")
                                              or err[0] in UNKNOWN_CODES)):
            # no answer (timeout, transport, unusable), or a 5xx: the outcome is unknown
            self._no_answer(kind, rest, what, status, body, now)
            return
        if err is not None:
            code, text = err
            if code in HALT_CODES or code in CLOCK_CODES or (status in (401, 403) and not code.startswith(("4", "5"))
                                                               and code != NONCE_CODE):
                self._venue_error(kind, f"{code} {text}")
                if code in CLOCK_CODES:
                    self.halt(f"bitstamp refused our timestamp ({code} {text}): our clock is more than 150 s "
                              "off the venue's; synchronise it (see `mantra venues doctor bitstamp`)")
                else:
                    self.halt(f"bitstamp refused the credentials: {code} {text}")
                return
            if code == NONCE_CODE:
                # not carried out: the same call again with a fresh nonce (safe, the venue did nothing)
                self.counts["invalid_nonce"] += 1
                self._venue_error(kind, f"{code} {text}")
                if call is not None:
                    self._rest(tag, call[0], call[1], now, force=True)
                return
            if code == "400.002" and kind != "req":
                self.rest_backoff_until = now + self.rate_backoff_ns
                self._venue_error(kind, f"{code} {text}")
                self._retry(what, now, self.rate_backoff_ns)
                return
        try:
            getattr(self, f"_http_{kind}")(rest, err, doc, now)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, FixedPointError) as e:
            self._bad(f"REST {kind}", body, e)
            if kind not in ("req", "cancel_unknown"):
                self._retry(what, now)

    def _http_token(self, rest, err, doc, now) -> None:
        self.token_wanted = False
        if err:
            self._venue_error("websockets_token", f"{err[0]} {err[1]}")
            self._retry("token", now)
            return
        self.token = str(doc["token"])
        self.user_id = str(doc["user_id"])
        self.tokens = (self.tokens + [self.token])[-8:]  # masked in logs, old ones too
        self.token_at = now
        self.token_valid_ns = int(float(doc.get("valid_sec") or 60) * 1e9)
        if self.connected and not self.subscribed and not self.pending_subs:
            self._subscribe(now)

    def _http_req(self, rest, err, doc, now) -> None:
        rid = int(rest)
        q = self.reqs.get(rid) or self.done_reqs.get(rid)
        if q is None:
            self.counts["unmatched_answers"] += 1
            return
        if err:
            self._err(q, err[0], err[1], now)
        else:
            self._ok(q, doc, now)

    def _http_cancel_all(self, rest, err, doc, now) -> None:
        if err:
            self._venue_error("cancel_all_orders", f"{err[0]} {err[1]}")
            self._retry("cancel_all", now)  # the kill switch must not stop at an error
            return
        for c in doc.get("canceled") or ():
            o = self._find(str(c.get("id") or ""), c.get("client_order_id"))
            if o is not None and self._set_status(o, S.CANCELLED):
                self._update(o, now)
        self._want_balance(now)

    def _http_cancel_unknown(self, rest, err, doc, now) -> None:
        if err and err[0] != NOT_FOUND:
            self._venue_error("cancel_order", f"{err[0]} {err[1]}")

    def _http_open(self, rest, err, doc, now) -> None:
        if err:
            self._venue_error("open_orders", f"{err[0]} {err[1]}")
            self._retry("open", now)
            return
        seen = set()
        for d in doc:
            try:
                vid = str(d.get("id") or "")
                seen.add(vid)
                self._open_order(vid, d, now)
            except (ValueError, KeyError, TypeError, AttributeError, FixedPointError) as e:
                self._bad("open order", d, e)
        busy = {q.order.order_id for q in self.reqs.values()}
        for o in list(self.orders.values()):
            # not listed, though the venue held it before we asked (or long ago): it ended unseen
            if o.live and o.vid not in seen and o.order_id not in busy and \
                    ((o.vid and o.known_at < self.asked_at) or now - o.placed > self.timeout_ns):
                self.counts["drift_orders"] += 1
                log.warning("bitstamp: order %d (%s) is live for us but not open on the venue: asking", o.order_id,
                            o.vid or o.cid)
                self._query(o, now)
        for vid in list(self.foreign):
            if vid not in seen:
                del self.foreign[vid]

    def _open_order(self, vid: str, d: dict, now: int) -> None:
        """One order as ``open_orders`` lists it: ``amount`` is what is left, ``amount_at_create`` its size."""
        cid = d.get("client_order_id") or None
        inst = self.by_name.get(str(d.get("market") or d.get("currency_pair") or ""))
        o = self._find(vid, cid)
        if o is None:
            if inst is None:
                self.counts["unknown_events"] += 1
                return
            oid = order_id_of(str(cid)) if cid else None
            if oid is None:
                if vid not in self.foreign:
                    self.foreign[vid] = inst.symbol
                    self.counts["foreign_open"] += 1
                    if self.unknown_orders == "cancel":
                        self._cancel_unknown(vid, now)
                return
            size = _fx(d.get("amount_at_create") or d["amount"], inst.size_scale)
            filled = size - _fx(d["amount"], inst.size_scale)
            self._adopt_or_cancel(oid, str(cid), vid, inst, -1 if str(d.get("type")) == "1" else 1,
                                  _fx(d["price"], inst.price_scale), size, filled,
                                  S.PARTIALLY_FILLED if filled > 0 else S.OPEN, now)
            return
        inst = o.inst
        o.rested = True
        changed = False
        px = _fx(d["price"], inst.price_scale)
        if px != o.price:
            o.price, changed = px, True
        left = _fx(d["amount"], inst.size_scale)
        cum = max(o.size - left, 0)
        if cum > o.filled:
            o.filled, changed = cum, True
        if cum > o.fill_qty:  # trades we have not seen yet
            self._fetch(f"trades:{min(o.placed, self.last_fill_ns or o.placed)}", now)
        if self._set_status(o, S.PARTIALLY_FILLED if cum > 0 else S.OPEN):
            changed = True
        if changed:
            self.counts["drift_corrected"] += 1
            self._update(o, now)

    def _http_query(self, rest, err, doc, now) -> None:
        rid_text, _, oid_text = rest.partition(":")
        rid, oid = int(rid_text), int(oid_text)
        q = self.reqs.get(rid) if rid else None
        o = self.orders.get(oid)
        if err and reject_reason(*err) != Reject.UNKNOWN_ORDER:
            self._venue_error("order_status", f"{err[0]} {err[1]}")
            self._retry(f"query:{rest}", now)
            return
        if oid in self.asking:  # an order we did not know (``_ask_unknown``)
            if q is not None:
                self._answer_unknown(q, None if err else lambda o: self._status_asked(o, doc, now), now)
            return
        if o is None:
            return
        if err:  # not found
            if q is not None:
                if q.action == NEW:
                    if now - q.sent < self.auth_window_ns + self.timeout_ns:
                        # the venue may still take it while its signature is valid: ask again
                        self._retry(f"query:{rest}", now)
                        return
                    self._answered(q)
                    self._lost(o, now)
                else:
                    self._answered(q)
                    o.cancelling = False
                    self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.UNKNOWN_ORDER, about=q.r.ref_id)
            elif o.live and not o.vid and now - o.placed > self.auth_window_ns:
                self._lost(o, now)
            return
        self._status_order(o, doc, now)
        if q is None:
            return
        self._answered(q)
        if q.action == NEW:
            if o.lost:
                if o.vid and o.vid not in self.late_cancelled:
                    self._late_accept(o, now)
            elif o.status == 0:
                o.status = S.ACK
                self._update(o, now)
        elif q.action == CANCEL and o.live:  # still open: the cancel did not happen; the overseer may ask again
            o.cancelling = False
            self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.VENUE_ERROR, about=q.r.ref_id)

    def _status_asked(self, o: _Order, d: dict, now: int) -> None:
        """``o``, an order asked about (``_ask_unknown``), as ``order_status`` describes it: its price and
        size first (what filled is the size less ``amount_remaining``)."""
        inst = o.inst
        if d.get("price") not in (None, ""):
            o.price = _fx(d["price"], inst.price_scale)
        if d.get("amount") not in (None, ""):
            o.size = _fx(d["amount"], inst.size_scale)
        self._status_order(o, d, now)

    def _status_order(self, o: _Order, d: dict, now: int) -> None:
        """Apply an ``order_status`` answer to ``o``: its trades, filled amount and status."""
        self._set_vid(o, d.get("id"))
        inst = o.inst
        for t in d.get("transactions") or ():
            base = t.get(inst.base.lower())
            if base is None:
                raise ValueError(f"trade without {inst.base.lower()} amount")
            self._fill(o, t.get("tid"), t.get("price"), base, t.get("fee"), venue_time(t.get("datetime"), now))
        changed = False
        left = d.get("amount_remaining")
        st = STATUS.get(str(d.get("status")))
        if st in (S.OPEN, S.ACK):
            o.rested = o.rested or st == S.OPEN
        if left not in (None, ""):
            cum = max(o.size - _fx(left, inst.size_scale), 0)
            if st == S.OPEN and cum > 0:
                st = S.PARTIALLY_FILLED
            if cum > o.filled:
                o.filled, changed = cum, True
        if st == S.FILLED and o.filled < o.size:
            st = S.CANCELLED  # "Finished" with something left (an IOC's rest)
        if self._set_status(o, st):
            changed = True
        if changed:
            self._update(o, now)
            self._want_balance(now)

    def _http_map(self, rest, err, doc, now) -> None:
        """order_status by venue id, for trades whose order we did not know: ours or foreign."""
        vid = rest
        trades = self.unmapped.pop(vid, [])
        if err:
            if reject_reason(*err) != Reject.UNKNOWN_ORDER:
                self.unmapped[vid] = trades + self.unmapped.get(vid, [])
                self._venue_error("order_status", f"{err[0]} {err[1]}")
                self._retry(f"map:{vid}", now)
            else:
                self.counts["unknown_events"] += len(trades)
            return
        cid = doc.get("client_order_id") or None
        o = self._find(vid, cid)
        learnt = False  # an order of ours this handler learns from its fills (and reports, once)
        if o is None:
            oid = order_id_of(str(cid)) if cid else None
            inst = self.by_name.get(str(doc.get("market") or ""))
            if oid is None or inst is None:
                self.known_foreign.add(vid)
                self.counts["foreign_fills"] += len(trades)
                return
            self.counts["known_from_fills"] += 1
            size_text = doc.get("amount") or "0"
            left = doc.get("amount_remaining") or "0"
            size = _fx(size_text, inst.size_scale)
            st = STATUS.get(str(doc.get("status")), S.OPEN)
            learnt = st in TERMINAL or self.unknown_orders != "adopt"  # (an adopted one is reported there)
            o = self._adopt_or_cancel(oid, str(cid), vid, inst, -1 if str(doc.get("type")) == "1" else 1,
                                      _fx(doc.get("price") or 0, inst.price_scale), size,
                                      max(size - _fx(left, inst.size_scale), 0), st, now)
        for src, t in trades:
            if src == "ws":
                self._fill(o, t.get("id"), t.get("price"), t.get("amount"), t.get("fee"),
                           micro_ns(t.get("microtimestamp"), now))
            else:
                self._tx_fill(o, t, now)
        self._status_order(o, doc, now)
        if learnt:  # the overseer may still wait for this order's answer: how it ended
            self._update(o, now)

    def _http_balance(self, rest, err, doc, now) -> None:
        self.balance_due = 0
        if err:
            self._venue_error("account_balances", f"{err[0]} {err[1]}")
            self._retry("balance:check" if rest == "check" else "balance", now)
            return
        for b in doc:
            try:
                asset = str(b["currency"]).upper()
                if self._other_asset(asset):
                    continue
                total = _fx(b["total"], self.balance_scale, ROUND_FLOOR)
                free = _fx(b.get("available", b["total"]), self.balance_scale, ROUND_FLOOR)
                self._put_balance(asset, total, free, now, rest == "check", now)
            except (ValueError, KeyError, TypeError, AttributeError, FixedPointError) as e:
                self._bad("balance", b, e)

    def _http_trades(self, rest, err, doc, now) -> None:
        if err:
            self._venue_error("user_transactions", f"{err[0]} {err[1]}")
            self._retry(f"trades:{rest}", now)
            return
        rows = [t for t in doc if str(t.get("type")) == TRADE]
        for t in sorted(rows, key=lambda t: (str(t.get("datetime") or ""), int(t.get("id") or 0))):
            try:
                vid = str(t.get("order_id") or "")
                o = self.by_vid.get(vid)
                if o is None:
                    if vid in self.known_foreign:
                        self.counts["foreign_fills"] += 1
                    else:
                        self._unmapped(vid, ("rest", t), now)
                    continue
                self._tx_fill(o, t, now)
            except (ValueError, KeyError, TypeError, AttributeError, FixedPointError) as e:
                self._bad("user transaction", t, e)
        if len(doc) >= 1000 and rows:  # a full page: the next one
            self._fetch(f"trades:{venue_time(rows[-1].get('datetime'), now)}", now)

    def _tx_fill(self, o: _Order, t: dict, now: int) -> None:
        """A ``user_transactions`` trade: signed amounts per asset, the price under ``<base>_<quote>``."""
        inst = o.inst
        b, q = inst.base.lower(), inst.quote.lower()
        self._fill(o, t.get("id"), t[f"{b}_{q}"], t[b], t.get("fee"), venue_time(t.get("datetime"), now))
        self._want_balance(now)

    # ------------------------------------------------------------------------------ timer
    def on_timer(self, now: int) -> None:
        self._time_out(now)
        if self.halted:
            return
        for what, at in list(self.retry_at.items()):
            if now >= at and (now >= self.rest_backoff_until or what == "cancel_all"):
                del self.retry_at[what]
                self._redo(what, now)
        if self.started and now >= self.next_reconcile:
            self.next_reconcile = now + self.reconcile_ns
            self._reconcile(now)
        if self.balance_due and now >= self.balance_due and now >= self.rest_backoff_until:
            self.balance_due = 0
            self.next_balance = now + self.balance_every_ns
            self._fetch("balance", now)
        if self.connected and self.keepalive_ns and now >= self.next_heartbeat:
            self.next_heartbeat = now + self.keepalive_ns
            self._ws({"event": "bts:heartbeat"})

    def _redo(self, what: str, now: int) -> None:
        kind, _, rest = what.partition(":")
        if kind == "query":
            rid_text, _, oid_text = rest.partition(":")
            o = self.orders.get(int(oid_text)) or self.asking.get(int(oid_text))
            if o is not None:
                self._query(o, now, int(rid_text))
        elif kind == "map":
            self._map(rest, now)
        elif kind == "cancel_unknown":
            self._cancel_unknown(rest, now)
        elif kind == "token":
            if not self.token and self.connected and not self.subscribed:
                self._fetch("token", now)
        else:
            self._fetch(what, now)
