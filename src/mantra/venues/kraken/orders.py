"""Kraken spot order entry, sans-IO (``venues/account.py``; ../shared/research/exchanges.md 2.5, 2.7-2.9).

Connections and paths (the lowest-latency documented ones):

- one WebSocket v2 on the authenticated endpoint (``ws_url``, conn ``"private"``): ``add_order`` /
  ``amend_order`` / ``cancel_order`` / ``cancel_all`` / ``cancel_after`` and the private channels
  ``executions`` (``snap_orders``, ``snap_trades``, ``ratecounter``; a ``sequence`` per message: a
  gap resubscribes and reconciles) and ``balances``.  Every request carries the token from the
  signed REST ``GetWebSocketsToken`` (fetched afresh for every connection).
- REST (``rest_url``, signed by ``auth.py`` with an always increasing nonce): the token; the
  reconciliation at start, after a stream gap and every ``reconcile_s`` (``OpenOrders``, ``Balance``,
  ``TradesHistory``, ``QueryOrders``); the orders themselves while the WebSocket is not ready
  (``AddOrder``, ``AmendOrder``, ``CancelOrder``, ``CancelAll``, ``CancelAllOrdersAfter``).

Settings (keyword arguments of the constructor):

``ws_url`` (``wss://ws-auth.kraken.com/v2``; the venue has no spot testnet, its beta endpoint is
``wss://beta-ws-auth.kraken.com/v2`` on the production engine), ``rest_url``
(``https://api.kraken.com``), ``timeout_s`` (5: a request unanswered this long is UNKNOWN),
``deadline_ms`` (3000: every add/amend carries Kraken's ``deadline``, the venue's receive window: a
request that reaches the engine later is refused, so an order not found once ``timeout_s`` passed was
never placed; 0 = none), ``unknown_orders`` (``"cancel"`` | ``"adopt"``: open orders found on the
venue that we do not know), ``reconcile_s`` (60), ``recent_fills_s`` (3600: fills fetched at start),
``cancel_after_s`` (60: the dead-man switch's timeout; 0 = off) and ``cancel_after_every_s`` (20),
``rate_threshold`` (60) and ``rate_decay`` (1.0 per s): the trading rate counter per pair (Starter
tier; Intermediate 125 / 2.34, Pro 180 / 3.75), ``rate_backoff_s`` (2: after the venue's own
``Rate limit exceeded``; an HTTP 429 waits its ``Retry-After``), ``retry_s`` (2: a failed token or
reconciliation fetch is retried after this), ``balance_scale`` (10: decimals of ``BalanceUpdate``).

Idempotency: every NEW carries ``cl_ord_id = client_id(order_id)`` and is sent once.  No answer
within ``timeout_s``, a dropped connection, a 5xx or a transport error make the outcome UNKNOWN: the
order is asked for by its client id (REST ``QueryOrders``) and the answer, or a late WebSocket answer,
is applied once.  Fills are deduplicated by the venue's trade id (``exec_id`` = the REST trade txid).

Balances: Kraken reports totals; ``available`` is the total less what our open orders hold.
Foreign orders (a client id not ours) are counted and, per ``unknown_orders``, cancelled or left
alone; their events are never emitted as ours.
"""

from __future__ import annotations

import hashlib
import logging
import time
from decimal import ROUND_CEILING, ROUND_FLOOR

import msgspec

from ...fixed import FixedPointError
from ...redact import redact
from ...spine.messages import OrderAction, OrderStatus
from ...trading.accounts import Reject
from ..account import (AMEND, CANCEL, IOC as _IOC, NEW, POST_ONLY as _POST_ONLY, TERMINAL, Http, Open, OrderProtocol,
                       VenueOrder, VenueRequest, WsSend, fx as _fx, order_id_of)
from . import auth
from .protocol import _rfc3339

log = logging.getLogger(__name__)

WS_URL = "wss://ws-auth.kraken.com/v2"
BETA_WS_URL = "wss://beta-ws-auth.kraken.com/v2"
REST_URL = "https://api.kraken.com"
CONN = "private"
S = OrderStatus

# executions.order_status (WS) and QueryOrders/OpenOrders status (REST) -> ours
WS_STATUS = {"pending_new": S.ACK, "new": S.OPEN, "partially_filled": S.PARTIALLY_FILLED,
             "filled": S.FILLED, "canceled": S.CANCELLED, "expired": S.EXPIRED}
REST_STATUS = {"pending": S.ACK, "open": S.OPEN, "closed": S.FILLED, "canceled": S.CANCELLED,
               "expired": S.EXPIRED}

# Kraken's asset names -> the names instruments use.
ASSET_ALIASES = {"XBT": "BTC", "XXBT": "BTC", "XDG": "DOGE", "XXDG": "DOGE", "ZUSD": "USD", "ZEUR": "EUR",
                 "ZGBP": "GBP", "ZCAD": "CAD", "ZJPY": "JPY", "ZAUD": "AUD", "ZCHF": "CHF",
                 "XETH": "ETH", "XXRP": "XRP", "XLTC": "LTC", "XXLM": "XLM", "XETC": "ETC",
                 "XZEC": "ZEC", "XXMR": "XMR", "XREP": "REP", "XMLN": "MLN"}
_V1 = {"BTC": "XBT", "DOGE": "XDG"}

# Amend and cancel cost by the order's age (exchanges.md 2.9): (age below, s; extra cost)
AMEND_AGE = ((5, 3), (10, 2), (15, 1))
CANCEL_AGE = ((5, 8), (10, 6), (15, 5), (45, 4), (90, 2), (300, 1))

HALT_ERRORS = ("EAPI:Invalid key", "EAPI:Invalid signature", "EGeneral:Temporary lockout",
               "EGeneral:Permission denied")
UNKNOWN_ERRORS = ("EService:", "EGeneral:Internal error")  # the venue may or may not have acted


def venue_asset(name: str) -> str:
    """Kraken's name of an asset (``XXBT``, ``XBT``, ``ZUSD``) -> the usual one (``BTC``, ``USD``)."""
    return ASSET_ALIASES.get(name, name)


def trade_key(exec_id) -> int:
    """A venue trade id (``exec_id`` / trade txid, text) as the spine's 63-bit ``trade_id``."""
    if type(exec_id) is int:
        return exec_id
    return int.from_bytes(hashlib.blake2b(str(exec_id).encode(), digest_size=8).digest(), "little") >> 1


def reject_reason(error: str) -> Reject:
    """Kraken's error text -> our Reject code."""
    e = error.lower()
    if "insufficient funds" in e or "margin" in e:
        return Reject.INSUFFICIENT_BALANCE
    if "post only" in e or "post_only" in e:
        return Reject.POST_ONLY
    if "unknown order" in e or "unknown order" in e or "invalid order" in e:
        return Reject.UNKNOWN_ORDER
    if "cost minimum" in e:
        return Reject.MIN_NOTIONAL
    if "order minimum" in e or "volume minimum" in e:
        return Reject.MIN_SIZE
    if "rate limit" in e or "too many" in e:
        return Reject.RATE_LIMITED
    if "unknown asset pair" in e:
        return Reject.UNKNOWN_INSTRUMENT
    if "price" in e and ("invalid" in e or "tick" in e):
        return Reject.TICK
    if "volume" in e or "qty" in e or "lot" in e:
        return Reject.LOT
    if "invalid arguments" in e:
        return Reject.BAD_REQUEST
    return Reject.VENUE_ERROR


_ISO_SECOND = [-1, ""]  # the last whole second formatted: every order's deadline reuses it


def _iso(ns: int) -> str:
    s, frac = divmod(ns, 1_000_000_000)
    if s != _ISO_SECOND[0]:
        _ISO_SECOND[:] = s, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
    return f"{_ISO_SECOND[1]}.{frac // 1_000_000:03d}Z"


class RateCounter:
    """Kraken's trading rate counter per pair: costs add, the counter decays ``decay`` per second,
    the venue refuses past ``threshold``.  Kept locally and set from the venue's ``ratecount``."""

    def __init__(self, threshold: float, decay: float):
        self.threshold, self.decay = float(threshold), float(decay)
        self.value: dict[str, tuple[float, int]] = {}  # symbol -> (count, at ns)

    def level(self, symbol: str, now: int) -> float:
        v, t = self.value.get(symbol, (0.0, now))
        return max(v - self.decay * max(now - t, 0) / 1e9, 0.0)

    def allow(self, symbol: str, cost: float, now: int) -> bool:
        return self.level(symbol, now) + cost <= self.threshold

    def add(self, symbol: str, cost: float, now: int) -> None:
        self.value[symbol] = (self.level(symbol, now) + cost, now)

    def take(self, symbol: str, cost: float, now: int) -> bool:
        """``add`` if ``allow``: True if it was added (one look at the level: the hot path)."""
        v = self.level(symbol, now) + cost
        if v > self.threshold:
            return False
        self.value[symbol] = (v, now)
        return True

    def set(self, symbol: str, count: float, now: int) -> None:
        self.value[symbol] = (float(count), now)

    @staticmethod
    def age_cost(table, age_ns: int) -> int:
        age = age_ns / 1e9
        for below, cost in table:
            if age < below:
                return cost
        return 0


class _Order(VenueOrder):
    __slots__ = ("txid", "foreign")

    def __init__(self, order_id, cid, inst, side, price, size, flags, placed):
        VenueOrder.__init__(self, order_id, cid, inst, side, price, size, flags, placed)
        self.txid = ""
        self.foreign = False

    def venue_ref(self) -> bytes:
        return self.txid.encode()


_Req = VenueRequest


class KrakenOrders(OrderProtocol):
    venue = "kraken"
    order_class = _Order

    def __init__(self, creds, instruments, *, ws_url: str = WS_URL, rest_url: str = REST_URL,
                 timeout_s: float = 5.0, deadline_ms: int = 3000, unknown_orders: str = "cancel",
                 reconcile_s: float = 60.0, recent_fills_s: float = 3600.0, cancel_after_s: int = 60,
                 cancel_after_every_s: float = 20.0, rate_threshold: float = 60, rate_decay: float = 1.0,
                 rate_backoff_s: float = 2.0, retry_s: float = 2.0, balance_scale: int = 10, **settings):
        super().__init__(creds, instruments, **settings)
        self._init_entry(unknown_orders, settings, timeout_s=timeout_s, reconcile_s=reconcile_s,
                         rate_backoff_s=rate_backoff_s, retry_s=retry_s, balance_scale=balance_scale)
        self.ws_url, self.rest_url = ws_url, rest_url.rstrip("/")
        self.deadline_ns = int(deadline_ms) * 1_000_000
        self.recent_fills_s = recent_fills_s
        self.cancel_after_s = int(cancel_after_s)
        self.cancel_after_every_ns = int(cancel_after_every_s * 1e9)
        self.rate = RateCounter(rate_threshold, rate_decay)
        # instruments by every spelling the venue uses: v2 "BTC/USD", v1 "XBT/USD", REST "XBTUSD", "XXBTZUSD"
        self.ws_symbol: dict[int, str] = {}
        self.rest_pair: dict[int, str] = {}
        self.by_name: dict[str, object] = {}
        for i in self.by_id.values():
            b, _, q = i.symbol.partition("/")
            b2, q2 = venue_asset(b), venue_asset(q)
            b1, q1 = _V1.get(b2, b2), _V1.get(q2, q2)
            self.ws_symbol[i.id] = f"{b2}/{q2}"
            self.rest_pair[i.id] = f"{b1}{q1}"
            for name in (i.symbol, f"{b2}/{q2}", f"{b1}/{q1}", f"{b1}{q1}", f"{b2}{q2}", f"X{b1}Z{q1}"):
                self.by_name.setdefault(name, i)
        self.by_txid: dict[str, _Order] = {}
        self.foreign: dict[str, str] = {}  # txid -> symbol of open orders that are not ours
        self.nonce = 0
        self.token = ""
        self.tokens: list[str] = []
        self.token_at = 0
        self.token_wanted = False
        self.seq: dict[str, int] = {}  # channel -> last sequence seen
        self.next_cancel_after = 0
        self.unmapped_trades: dict[str, list] = {}  # ordertxid -> trades waiting for its client id
        self.querying: set[str] = set()  # txids asked about
        self.snapshot_orders: set[str] | None = None
        self.known_foreign: set[str] = set()  # txids of orders not ours (their fills are not asked about again)

    # ------------------------------------------------------------------------------ helpers
    def _rest(self, tag: str, method: str, params, now: int) -> None:
        """A signed private REST call; the answer comes to ``on_http(tag, ...)``."""
        self.nonce = auth.next_nonce(self.nonce, now)
        path = f"/0/private/{method}"
        headers, body = auth.rest_request(self.creds.key, self.creds.secret, path, self.nonce, params)
        self.counts[f"rest_{method}"] += 1
        if tag == "balance":
            self.balances_asked = now
        elif tag == "open":
            self.open_asked = now
        self.events.append(Http(tag, "POST", self.rest_url + path, headers, body))

    def _ws(self, method: str, params: dict, req_id: int) -> None:
        params["token"] = self.token  # every caller's params are its own, made for this request
        msg = {"method": method, "params": params, "req_id": req_id}
        self.events.append(WsSend(CONN, self._enc.encode(msg).decode()))

    @property
    def ready(self) -> bool:
        """The WebSocket path is usable (connected, with a token)."""
        return self.connected and bool(self.token)

    def _register(self, o: _Order) -> None:
        self.orders[o.order_id] = o
        if o.txid:
            self.by_txid[o.txid] = o

    # ------------------------------------------------------------------------------ start / connection
    def start(self, now: int) -> None:
        self.started = True
        self.events.append(Open(CONN, self.ws_url))
        self._fetch_token(now)
        self._reconcile(now, start=True)
        self.next_reconcile = now + self.reconcile_ns

    def _fetch_token(self, now: int) -> None:
        self.token_wanted = True
        self._rest("token", "GetWebSocketsToken", (), now)

    def _reconcile(self, now: int, start: bool = False, trades_since_ns: int | None = None) -> None:
        """Open orders, balances and the fills since ``trades_since_ns`` (at start: the recent ones)."""
        self.counts["reconciles"] += 1
        self._rest("open", "OpenOrders", (("trades", "false"),), now)
        self._rest("balance", "Balance", (), now)
        if start:
            since = now - int(self.recent_fills_s * 1e9)
        elif trades_since_ns is not None:
            since = trades_since_ns
        else:
            since = self.last_fill_ns or now - int(self.recent_fills_s * 1e9)
        self._fetch_trades(since, now)

    def _fetch_trades(self, since_ns: int, now: int) -> None:
        # TradesHistory's start is a unix time (s), exclusive: one second earlier, duplicates are dropped
        self._rest("trades", "TradesHistory", (("start", str(max(since_ns // 1_000_000_000 - 1, 0))),), now)

    def on_open(self, conn: str, now: int) -> None:
        if conn != CONN:
            return
        self.connected = True
        self.counts["connects"] += 1
        if self.token and not self.token_wanted:
            self._subscribe(now)
        elif not self.token_wanted:
            self._fetch_token(now)

    def _subscribe(self, now: int) -> None:
        self.seq.clear()
        self.snapshot_orders = None
        self._ws("subscribe", {"channel": "executions", "snap_orders": True, "snap_trades": True,
                               "ratecounter": True}, self._next_req())
        self._ws("subscribe", {"channel": "balances", "snapshot": True}, self._next_req())
        self._arm_dead_man(now)

    def _arm_dead_man(self, now: int) -> None:
        if self.cancel_after_s <= 0 or self.halted:
            return
        self.next_cancel_after = now + self.cancel_after_every_ns
        if self.ready:
            self._ws("cancel_after", {"timeout": self.cancel_after_s}, self._next_req())
        else:
            self._rest("cancel_after", "CancelAllOrdersAfter", (("timeout", str(self.cancel_after_s)),), now)
        self.counts["cancel_after"] += 1

    def on_close(self, conn: str, now: int, reason: str) -> None:
        if conn != CONN:
            return
        was = self.subscribed
        self.connected = self.subscribed = False
        self.token = ""  # a fresh token for the next connection (docs: one per connection)
        self.counts["disconnects"] += 1
        log.warning("kraken: private stream lost (%s)", redact(reason))
        self._connection_lost(now)  # requests sent on the socket have an unknown outcome now
        if was:
            self.counts["stream_gaps"] += 1

    # ------------------------------------------------------------------------------ requests
    def new_room(self, inst, now: int) -> bool:
        return self.rate.take(self.ws_symbol[inst.id], 1, now)

    def submit_change(self, r, inst, o: _Order, now: int) -> None:
        act, sym = r.action, self.ws_symbol[inst.id]
        if act == AMEND:
            cost = 1 + RateCounter.age_cost(AMEND_AGE, now - o.placed)
        else:
            cost = RateCounter.age_cost(CANCEL_AGE, now - o.placed)
        if not self.rate.take(sym, cost, now):
            self.reject(r, Reject.RATE_LIMITED, now)
            return
        self._send(r, act, o, now)

    def _send(self, r, act, o: _Order, now: int) -> None:
        rid = self._next_req()
        via = "ws" if self.ready else "rest"
        q = _Req(rid, r, act, now, via, o)
        self.reqs[rid] = q
        inst = o.inst
        if via == "ws":
            if act == NEW:
                p = {"order_type": "limit", "side": "buy" if o.side > 0 else "sell",
                     "order_qty": msgspec.Raw(inst.size_str(o.size).encode()), "symbol": self.ws_symbol[inst.id],
                     "limit_price": msgspec.Raw(inst.price_str(o.price).encode()), "cl_ord_id": o.cid}
                if o.flags & _IOC:
                    p["time_in_force"] = "ioc"
                if o.flags & _POST_ONLY:
                    p["post_only"] = True
                if self.deadline_ns:
                    p["deadline"] = _iso(now + self.deadline_ns)
                self._ws("add_order", p, rid)
            elif act == AMEND:
                p = {"cl_ord_id": o.cid, "order_qty": msgspec.Raw(inst.size_str(r.size).encode()),
                     "limit_price": msgspec.Raw(inst.price_str(r.price).encode())}
                if o.flags & _POST_ONLY:
                    p["post_only"] = True
                if self.deadline_ns:
                    p["deadline"] = _iso(now + self.deadline_ns)
                self._ws("amend_order", p, rid)
            else:
                self._ws("cancel_order", {"cl_ord_id": [o.cid]} if not o.foreign else {"order_id": [o.txid]}, rid)
        else:
            self.counts["rest_fallback"] += 1
            tag = f"req:{rid}"
            if act == NEW:
                p = [("ordertype", "limit"), ("type", "buy" if o.side > 0 else "sell"),
                     ("volume", inst.size_str(o.size)), ("pair", self.rest_pair[inst.id]),
                     ("price", inst.price_str(o.price)), ("cl_ord_id", o.cid)]
                if o.flags & _POST_ONLY:
                    p.append(("oflags", "post"))
                if o.flags & _IOC:
                    p.append(("timeinforce", "IOC"))
                if self.deadline_ns:
                    p.append(("deadline", _iso(now + self.deadline_ns)))
                self._rest(tag, "AddOrder", p, now)
            elif act == AMEND:
                self._rest(tag, "AmendOrder", [("cl_ord_id", o.cid), ("order_qty", inst.size_str(r.size)),
                                               ("limit_price", inst.price_str(r.price))], now)
            else:
                self._rest(tag, "CancelOrder", [("cl_ord_id", o.cid)] if not o.foreign else [("txid", o.txid)], now)

    def cancel_all(self, now: int) -> None:
        """The kill switch: every open order, by the venue's cancel-all (also with a halt)."""
        self.counts["cancel_all"] += 1
        if self.ready:
            self._ws("cancel_all", {}, self._next_req())
        else:
            self._rest("cancel_all", "CancelAll", (), now)

    # ------------------------------------------------------------------------------ outcomes
    def _query(self, o: _Order, now: int, rid: int = 0) -> None:
        # by client id when we have one: it finds an order whose answer we never got
        params = [("cl_ord_id", o.cid)] if o.cid else [("txid", o.txid)]
        self._rest(f"query:{rid}:{o.order_id}", "QueryOrders", params, now)

    def _ok(self, q: _Req, result: dict, now: int) -> None:
        """The venue accepted the request ``q`` (a WS or REST answer)."""
        o = q.order
        if q.state == "done":  # a late or duplicate answer
            self.counts["late_answers"] += 1
            if q.action == NEW:
                txid = str(result.get("order_id") or (result.get("txid") or [""])[0])
                if txid and not o.txid:
                    o.txid = txid
                    self.by_txid[txid] = o
                if o.lost and txid and txid not in self.late_cancelled:
                    # we said it was never placed, and it was: it must not stay
                    self.late_cancelled.add(txid)
                    self.counts["late_accept_cancelled"] += 1
                    self._send_cancel_foreign(o, now)
            return
        self._answered(q)
        if q.action == NEW:
            txid = result.get("order_id") or (result.get("txid") or [""])[0]
            if txid and not o.txid:
                o.txid = str(txid)
                self.by_txid[o.txid] = o
            if o.lost:  # we said it was never placed, and it was: it must not stay
                self.late_cancelled.add(o.txid)
                self.counts["late_accept_cancelled"] += 1
                self._send_cancel_foreign(o, now)
                return
            if self._set_status(o, S.ACK):
                self._update(o, now)
        elif q.action == AMEND:
            r = q.r
            o.price, o.size = r.price, r.size
            self._update(o, now, about=r.ref_id)
        elif q.action == CANCEL:
            if self._set_status(o, S.CANCELLED):
                self._update(o, now)

    def _err(self, q: _Req, error: str, now: int) -> None:
        o, r = q.order, q.r
        self._venue_error(f"{OrderAction(q.action).name} {o.order_id}", error)
        if error.startswith(UNKNOWN_ERRORS):
            self._unknown(q, now, error)
            return
        if q.state == "done":
            self.counts["late_answers"] += 1
            return
        self._answered(q)
        why = reject_reason(error)
        if why == Reject.RATE_LIMITED:
            self.backoff_until = max(self.backoff_until, now + self.rate_backoff_ns)
            self.rate.set(self.ws_symbol[o.inst.id], self.rate.threshold, now)
            self.counts["rate_limited_by_venue"] += 1
        if any(error.startswith(h) for h in HALT_ERRORS):
            self.halt(f"kraken refused the credentials: {error}")
        if q.action == NEW:
            self._new_refused(o, why, now)
            return
        if why == Reject.UNKNOWN_ORDER and o.txid:
            # the venue knows the order but it is closed (filled, cancelled): find out how it ended
            self.counts["cancel_on_closed"] += 1
            self._reopen(q)
            self._query(o, now, q.req_id)
            return
        self._update(o, now, status=S.CANCEL_REJECTED, reason=why, about=r.ref_id)

    def _send_cancel_foreign(self, o: _Order, now: int) -> None:
        """Cancel an order without a request of ours (late accept, unknown orders)."""
        if self.ready:
            p = {"cl_ord_id": [o.cid]} if o.cid else {"order_id": [o.txid]}
            self._ws("cancel_order", p, self._next_req())
        else:
            self._rest("cancel_unknown", "CancelOrder", [("cl_ord_id", o.cid)] if o.cid else [("txid", o.txid)], now)

    # ------------------------------------------------------------------------------ frames
    def on_frame(self, conn: str, text: str, now: int) -> None:
        try:
            msg = self._dec.decode(text)
            if type(msg) is not dict:
                raise ValueError("not an object")
            ch = msg.get("channel")
            if ch == "executions":
                self._on_executions(msg, now)
            elif ch == "balances":
                self._on_balances(msg, now)
            elif ch in ("heartbeat", "status"):
                if ch == "status":
                    for d in msg.get("data") or ():
                        if d.get("system") not in (None, "online"):
                            self.counts["venue_not_online"] += 1
                            log.warning("kraken: system status %s", redact(str(d.get("system"))))
            elif "method" in msg:
                self._on_answer(msg, now)
            elif "Error" in msg or "error" in msg:  # {"Error":"Exceeded msg rate"}
                err = str(msg.get("Error") or msg.get("error"))
                self._venue_error("stream", err)
                if "rate" in err.lower():
                    self.backoff_until = max(self.backoff_until, now + self.rate_backoff_ns)
            else:
                self.counts["ignored_frames"] += 1
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, msgspec.DecodeError) as e:
            self._bad("frame", text, e)

    def _on_answer(self, msg: dict, now: int) -> None:
        method = msg.get("method")
        rid = msg.get("req_id")
        ok = msg.get("success")
        if method in ("pong", "cancel_after"):
            if method == "cancel_after" and not ok:
                self._venue_error("cancel_after", msg.get("error"))
            return
        if method == "subscribe":
            if ok:
                if (msg.get("result") or {}).get("channel") == "executions":
                    if self.subscribed:
                        return
                    self.subscribed = True
                    self.counts["subscribed"] += 1
                    if self.counts["subscribed"] > 1:  # a re-subscription: fetch what the gap held
                        self._fetch_trades(self.last_fill_ns or now - int(self.recent_fills_s * 1e9), now)
            else:
                err = str(msg.get("error"))
                self._venue_error("subscribe", err)
                if "token" in err.lower():  # a stale token: a fresh one, then subscribe again
                    self.token = ""
                    self._fetch_token(now)
            return
        if method == "unsubscribe":
            return
        if method == "cancel_all":
            if not ok:
                self._venue_error("cancel_all", msg.get("error"))
                self._rest("cancel_all", "CancelAll", (), now)  # the kill switch must not stop at an error
            return
        if method in ("add_order", "amend_order", "cancel_order"):
            q = self.reqs.get(rid) if type(rid) is int else None
            if q is None:
                q = self.done_reqs.get(rid) if type(rid) is int else None
            if q is None:
                self.counts["unmatched_answers"] += 1
                if method == "cancel_order":  # our own unknown-order cancels carry no request
                    return
                return
            if ok:
                self._ok(q, msg.get("result") or {}, now)
            else:
                self._err(q, str(msg.get("error") or "unknown error"), now)
            return
        self.counts["ignored_frames"] += 1

    # -- executions
    def _check_seq(self, channel: str, msg: dict, now: int) -> None:
        seq = msg.get("sequence")
        if type(seq) is not int:
            return
        last = self.seq.get(channel)
        if msg.get("type") == "snapshot" or last is None:
            self.seq[channel] = seq
            return
        if seq <= last:
            self.counts[f"{channel}_seq_old"] += 1  # duplicated or out of order: applied idempotently
            return
        if seq > last + 1:
            self.counts[f"{channel}_seq_gap"] += 1
            log.warning("kraken: %s sequence gap %d -> %d: resubscribing and reconciling", channel, last, seq)
            self.seq[channel] = seq
            self._resync(channel, now)
            return
        self.seq[channel] = seq

    def _resync(self, channel: str, now: int) -> None:
        if not self.ready:
            return
        self._ws("unsubscribe", {"channel": channel}, self._next_req())
        if channel == "executions":
            self.subscribed = False
            self.seq.pop(channel, None)
            self.snapshot_orders = None
            self._ws("subscribe", {"channel": "executions", "snap_orders": True, "snap_trades": True,
                                   "ratecounter": True}, self._next_req())
            self._fetch_trades(self.last_fill_ns or now - int(self.recent_fills_s * 1e9), now)
        else:
            self.seq.pop(channel, None)
            self._ws("subscribe", {"channel": "balances", "snapshot": True}, self._next_req())

    def _on_executions(self, msg: dict, now: int) -> None:
        self._check_seq("executions", msg, now)
        snap = msg.get("type") == "snapshot"
        seen: set[str] = set()
        for item in msg.get("data") or ():
            try:
                txid = self._on_exec(item, now, snap)
                if txid and snap and item.get("exec_type") != "trade":
                    seen.add(txid)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                self._bad("execution", item, e)
        if snap:
            # ours that the venue no longer lists as open ended while we were not looking
            for o in list(self.orders.values()):
                if o.live and o.txid and o.txid not in seen and now - o.placed > self.timeout_ns:
                    self.counts["closed_in_gap"] += 1
                    self._query(o, now)

    def _find(self, txid: str, cid) -> _Order | None:
        o = self.by_txid.get(txid) if txid else None
        if o is None and cid:
            oid = order_id_of(cid)
            if oid is not None:
                o = self.orders.get(oid)
                if o is not None and txid and not o.txid:
                    o.txid = txid
                    self.by_txid[txid] = o
        return o

    def _on_exec(self, e: dict, now: int, snap: bool) -> str:
        txid = str(e.get("order_id") or "")
        cid = e.get("cl_ord_id")
        sym = e.get("symbol")
        if "ratecount" in e and sym in self.by_name:
            self.rate.set(self.ws_symbol[self.by_name[sym].id], float(e["ratecount"]), now)
        o = self._find(txid, cid)
        if o is None:
            self._unknown_order(e, txid, cid, now)
            return txid
        ts = _rfc3339(e["timestamp"]) if e.get("timestamp") else now
        o.exch_ts = max(o.exch_ts, ts)
        et = e.get("exec_type")
        changed = False
        if et == "trade":
            self._fill(o, e.get("exec_id"), e["last_price"], e["last_qty"], e.get("fees"), e.get("liquidity_ind"),
                       ts, now)
        if et in ("amended", "restated") or (snap and et != "trade"):
            inst = o.inst
            if e.get("limit_price") is not None:
                p = _fx(e["limit_price"], inst.price_scale)
                changed |= p != o.price
                o.price = p
            if e.get("order_qty") is not None:
                s = _fx(e["order_qty"], inst.size_scale)
                changed |= s != o.size
                o.size = s
        if e.get("cum_qty") is not None:
            cum = _fx(e["cum_qty"], o.inst.size_scale)
            if cum > o.filled:
                o.filled, changed = cum, True
        st = WS_STATUS.get(e.get("order_status"))
        if st is not None and self._set_status(o, st):
            changed = True
        if changed:
            self._update(o, now)
        return txid

    def _fill(self, o: _Order, exec_id, price, qty, fees, liq, ts: int, now: int, fee_asset: str = "") -> None:
        if not exec_id:
            raise ValueError("trade without exec_id")
        tid = trade_key(str(exec_id))
        if self._fill_seen(o, tid):
            return
        inst = o.inst
        size = _fx(qty, inst.size_scale)
        px = _fx(price, inst.price_scale)
        fee = 0
        if isinstance(fees, list):
            for f in fees:
                fee += _fx(f.get("qty", 0), inst.price_scale, ROUND_CEILING)
                fee_asset = fee_asset or venue_asset(str(f.get("asset") or ""))
        elif fees is not None:
            fee = _fx(fees, inst.price_scale, ROUND_CEILING)
        self._add_fill(o, tid, px, size, fee, ts, liq in ("m", "maker", True), fee_asset, qty)

    def _unknown_order(self, e: dict, txid: str, cid, now: int) -> None:
        """An event about an order we do not track: ours from before (adopt or cancel) or foreign."""
        oid = order_id_of(cid) if cid else None
        st = WS_STATUS.get(e.get("order_status"))
        sym = e.get("symbol")
        inst = self.by_name.get(sym) if sym else None
        if oid is None:
            self.counts["foreign_events"] += 1
            if txid and st in (S.OPEN, S.PARTIALLY_FILLED, S.ACK) and txid not in self.foreign:
                self.foreign[txid] = sym or ""
                self.counts["foreign_open"] += 1
                if self.unknown_orders == "cancel":
                    self._cancel_unknown(txid, None, now)
            return
        if inst is None or st is None or st in TERMINAL or e.get("exec_type") == "trade":
            self.counts["unknown_events"] += 1
            return
        self._adopt_or_cancel(oid, cid, txid, inst, e.get("side"), e.get("limit_price"), e.get("order_qty"),
                              e.get("cum_qty"), st, now)

    def _adopt_or_cancel(self, oid, cid, txid, inst, side, price, qty, cum, st, now) -> None:
        if self.unknown_orders == "cancel":
            self.counts["unknown_cancelled"] += 1
            self._cancel_unknown(txid, cid, now)
            return
        self.counts["adopted"] += 1
        o = _Order(oid, cid, inst, 1 if side == "buy" else -1, _fx(price or 0, inst.price_scale),
                   _fx(qty or 0, inst.size_scale), 0, now)
        o.txid, o.status = txid, st
        o.filled = _fx(cum or 0, inst.size_scale)
        self._register(o)
        self._update(o, now)

    def _cancel_unknown(self, txid: str, cid, now: int) -> None:
        if self.ready:
            self._ws("cancel_order", {"cl_ord_id": [cid]} if cid else {"order_id": [txid]}, self._next_req())
        else:
            self._rest("cancel_unknown", "CancelOrder", [("cl_ord_id", cid)] if cid else [("txid", txid)], now)

    # -- balances
    def _balance(self, asset_name: str, total_text, ts: int, now: int, check: bool = False) -> None:
        asset = venue_asset(str(asset_name))
        if self._other_asset(asset):
            return
        try:
            total = _fx(total_text, self.balance_scale, ROUND_FLOOR)
        except FixedPointError as e:
            self._bad("balance", total_text, e)
            return
        self._put_balance(asset, total, max(total - self._hold(asset), 0), ts, check, now)

    def _on_balances(self, msg: dict, now: int) -> None:
        self._check_seq("balances", msg, now)
        for item in msg.get("data") or ():
            try:
                if item.get("balance") is None or not item.get("asset"):
                    continue
                ts = _rfc3339(item["timestamp"]) if item.get("timestamp") else now
                self._balance(item["asset"], item["balance"], ts, now)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                self._bad("balance", item, e)

    # ------------------------------------------------------------------------------ REST answers
    def on_http(self, tag: str, status: int, headers: dict, body: bytes, now: int) -> None:
        kind, _, rest = tag.partition(":")
        what = tag if kind == "query" else kind  # what a retry redoes
        if status == 418:
            self.halt("kraken answered 418: banned")
            return
        if status in (401, 403):
            self.halt(f"kraken refused the credentials (HTTP {status})")
            return
        if status == 429:
            self._rest_rate_limited(kind, rest, what, headers, now,
                                    lambda q: self._err(q, "EAPI:Rate limit exceeded", now))
            return
        err: list = []
        result: dict = {}
        if status == 200:
            try:
                doc = self._dec.decode(body)
                err = [str(x) for x in doc.get("error") or ()]
                result = doc.get("result") or {}
                if type(result) is not dict:
                    raise ValueError("result is not an object")
            except (ValueError, AttributeError, msgspec.DecodeError) as e:
                self._bad(f"REST {kind}", body, e)
                status = 0  # unusable: as if unanswered
        if status != 200:  # 0 (timeout, transport), 5xx, other: the outcome is unknown
            self._no_answer(kind, rest, what, status, body, now)
            return
        for e in err:
            if e.startswith(HALT_ERRORS):
                self._venue_error(kind, e)
                self.halt(f"kraken refused the credentials: {e}")
                return
        if err and err[0].startswith("EAPI:Invalid nonce"):
            # not processed: the same call again with a fresh nonce (safe, the venue did nothing)
            self.counts["invalid_nonce"] += 1
            self._venue_error(kind, err[0])
            self.nonce = max(self.nonce, now // 1_000_000)
            if kind == "req":
                q = self.reqs.get(int(rest))
                if q is not None and q.state == "sent":
                    q.via = "ws" if self.ready else "rest"
                    self.reqs.pop(q.req_id)
                    self._send(q.r, q.action, q.order, now)
                    return
            self._retry(what, now, 0)
            return
        if err and "Rate limit" in err[0] and kind != "req":
            self.rest_backoff_until = now + self.rate_backoff_ns
            self._venue_error(kind, err[0])
            self._retry(what, now, self.rate_backoff_ns)
            return
        try:
            getattr(self, f"_http_{kind}")(rest, err, result, now)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            self._bad(f"REST {kind}", body, e)

    def _http_token(self, rest, err, result, now) -> None:
        self.token_wanted = False
        if err:
            self._venue_error("token", err[0])
            self._retry("token", now)
            return
        self.token = str(result["token"])
        self.tokens = (self.tokens + [self.token])[-8:]  # masked in logs, old ones too
        self.token_at = now
        if self.connected:
            self._subscribe(now)

    def _http_req(self, rest, err, result, now) -> None:
        rid = int(rest)
        q = self.reqs.get(rid) or self.done_reqs.get(rid)
        if q is None:
            self.counts["unmatched_answers"] += 1
            return
        if err:
            self._err(q, err[0], now)
        else:
            self._ok(q, result, now)

    def _http_cancel_all(self, rest, err, result, now) -> None:
        if err:
            self._venue_error("CancelAll", err[0])
            self._retry("cancel_all", now)

    def _http_cancel_after(self, rest, err, result, now) -> None:
        if err:
            self._venue_error("CancelAllOrdersAfter", err[0])

    def _http_cancel_unknown(self, rest, err, result, now) -> None:
        if err:
            self._venue_error("CancelOrder", err[0])

    def _http_open(self, rest, err, result, now) -> None:
        if err:
            self._venue_error("OpenOrders", err[0])
            self._retry("open", now)
            return
        open_ = result.get("open") or {}
        seen = set()
        for txid, d in open_.items():
            seen.add(txid)
            self._rest_order(txid, d, now, reconcile=True)
        for o in list(self.orders.values()):
            if o.live and o.txid and o.txid not in seen and now - o.placed > self.timeout_ns \
                    and not any(q.order is o for q in self.reqs.values()):
                self.counts["drift_orders"] += 1
                log.warning("kraken: order %d (%s) is live for us but not open on the venue: asking",
                            o.order_id, o.txid)
                self._query(o, now)
        for txid in list(self.foreign):
            if txid not in seen:
                del self.foreign[txid]

    def _rest_order(self, txid: str, d: dict, now: int, reconcile: bool = False, q: _Req | None = None) -> None:
        """One order as ``OpenOrders`` / ``QueryOrders`` describe it."""
        cid = d.get("cl_ord_id") or None
        descr = d.get("descr") or {}
        inst = self.by_name.get(descr.get("pair", ""))
        st = REST_STATUS.get(d.get("status"))
        o = self._find(txid, cid)
        if o is None:
            if inst is None or st is None:
                self.counts["unknown_events"] += 1
                return
            oid = order_id_of(cid) if cid else None
            if st in TERMINAL:
                self.counts["unknown_events"] += 1
                return
            if oid is None:
                if txid not in self.foreign:
                    self.foreign[txid] = descr.get("pair", "")
                    self.counts["foreign_open"] += 1
                    if self.unknown_orders == "cancel":
                        self._cancel_unknown(txid, None, now)
                return
            self._adopt_or_cancel(oid, cid, txid, inst, descr.get("type"), descr.get("price"), d.get("vol"),
                                  d.get("vol_exec"), st, now)
            return
        if reconcile and self._open_older(o):
            return
        changed = False
        if not o.txid:
            o.txid = txid
            self.by_txid[txid] = o
        inst = o.inst
        if descr.get("price") not in (None, ""):
            p = _fx(descr["price"], inst.price_scale)
            changed |= p != o.price
            o.price = p
        if d.get("vol") not in (None, ""):
            s = _fx(d["vol"], inst.size_scale)
            changed |= s != o.size
            o.size = s
        cum = _fx(d.get("vol_exec") or 0, inst.size_scale)
        if cum > o.filled:
            o.filled, changed = cum, True
        if cum > o.fill_qty:  # fills we have not seen yet: fetch them
            self._fetch_trades(min(o.placed, self.last_fill_ns or o.placed) - 60_000_000_000, now)
        if st == S.FILLED and cum < o.size:  # "closed" with less than its size (an IOC's rest): ended
            st = S.CANCELLED
        if st is not None and self._set_status(o, st):
            changed = True
        if reconcile and changed:
            self.counts["drift_corrected"] += 1
        if changed or q is not None:
            self._update(o, now)

    def _http_query(self, rest, err, result, now) -> None:
        rid_text, _, oid_text = rest.partition(":")
        rid, oid = int(rid_text), int(oid_text)
        q = self.reqs.get(rid) if rid else None
        o = self.orders.get(oid)
        if err and not err[0].startswith("EOrder:Invalid order"):
            self._venue_error("QueryOrders", err[0])
            self._retry(f"query:{rest}", now)
            return
        found = {k: v for k, v in result.items() if isinstance(v, dict)} if not err else {}
        if oid in self.asking:  # an order we did not know (``_ask_unknown``)
            if q is not None:
                txid, d = next(iter(found.items())) if found else ("", {})
                self._answer_unknown(q, None if not found else lambda o: self._rest_order(txid, d, now, q=q), now)
            return
        if o is None:
            return
        if not found:
            # the venue does not know it: a NEW never placed (its deadline passed), or a forgotten order
            if q is not None:
                self._answered(q)
                if q.action == NEW:
                    if now - q.sent < self.deadline_ns and self.deadline_ns:
                        # the venue may still take it until its deadline: ask again then
                        self._reopen(q)
                        self._retry(f"query:{rest}", now, q.sent + self.deadline_ns - now + 1)
                        return
                    self._lost(o, now)
                else:
                    self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.UNKNOWN_ORDER, about=q.r.ref_id)
            elif o.live and not o.txid:
                o.status = S.REJECTED
                self._update(o, now, reason=Reject.VENUE_ERROR)
            return
        txid, d = next(iter(found.items()))
        if q is not None:
            self._answered(q)
            if q.action == NEW and o.lost:
                return
            if q.action == AMEND:
                r = q.r
                inst = o.inst
                vp = (d.get("descr") or {}).get("price")
                vs = d.get("vol")
                amended = (vp is not None and _fx(vp, inst.price_scale) == r.price
                           and vs is not None and _fx(vs, inst.size_scale) == r.size)
                self._rest_order(txid, d, now, q=q)
                if not amended and o.live:
                    self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.VENUE_ERROR, about=r.ref_id)
                return
            if q.action == CANCEL:
                self._rest_order(txid, d, now, q=q)
                if o.live:  # still open: the cancel did not happen; the overseer may ask again
                    self._update(o, now, status=S.CANCEL_REJECTED, reason=Reject.VENUE_ERROR, about=q.r.ref_id)
                return
        self._rest_order(txid, d, now, q=q)

    def _http_balance(self, rest, err, result, now) -> None:
        if err:
            self._venue_error("Balance", err[0])
            self._retry("balance", now)
            return
        for name, total in result.items():
            asset = venue_asset(name)
            if asset in self.assets:
                self._balance(asset, total, now, now, check=True)

    def _http_trades(self, rest, err, result, now) -> None:
        if err:
            self._venue_error("TradesHistory", err[0])
            self._retry("trades", now)
            return
        trades = result.get("trades") or {}
        for ttxid, t in sorted(trades.items(), key=lambda kv: str(kv[1].get("time", ""))):
            try:
                self._rest_trade(ttxid, t, now)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                self._bad("trade", t, e)
        for t in [t for t in self.unmapped_trades if t in self.known_foreign]:
            self.counts["foreign_fills"] += len(self.unmapped_trades.pop(t))
        if self.unmapped_trades:
            txids = [t for t in self.unmapped_trades if t not in self.querying]
            if txids:
                self.querying.update(txids)
                self._rest("map", "QueryOrders", (("txid", ",".join(txids[:50])),), now)

    def _rest_trade(self, ttxid: str, t: dict, now: int) -> None:
        otx = str(t.get("ordertxid") or "")
        o = self.by_txid.get(otx)
        if o is None:
            self.unmapped_trades.setdefault(otx, []).append((ttxid, t))
            return
        ts = _rest_time(t.get("time"), now)
        fee_asset = o.inst.quote
        self._fill(o, ttxid, t["price"], t["vol"], t.get("fee", "0"), "m" if t.get("maker") else "t", ts, now,
                   fee_asset)
        if o.filled > 0 and o.live:
            self._update(o, now)

    def _http_map(self, rest, err, result, now) -> None:
        """QueryOrders by txid for fills whose order we did not know: ours or foreign."""
        if err:
            self._venue_error("QueryOrders", err[0])
            return
        for txid, d in result.items():
            self.querying.discard(txid)
            trades = self.unmapped_trades.pop(txid, [])
            cid = d.get("cl_ord_id") or None
            oid = order_id_of(cid) if cid else None
            o = self._find(txid, cid)
            learnt = False
            if o is None and oid is not None:
                descr = d.get("descr") or {}
                inst = self.by_name.get(descr.get("pair", ""))
                if inst is None:
                    continue
                st = REST_STATUS.get(d.get("status"), S.OPEN)
                self.counts["known_from_fills"] += 1
                learnt = st in TERMINAL or self.unknown_orders != "adopt"  # reported below, once
                if st not in TERMINAL and self.unknown_orders == "adopt":
                    self._adopt_or_cancel(oid, cid, txid, inst, descr.get("type"), descr.get("price"), d.get("vol"),
                                          d.get("vol_exec"), st, now)
                    o = self.orders.get(oid)
                else:  # ended, or to be cancelled: kept so that its fills are ours
                    o = _Order(oid, cid, inst, 1 if descr.get("type") == "buy" else -1,
                               _fx(descr.get("price") or 0, inst.price_scale), _fx(d.get("vol") or 0, inst.size_scale),
                               0, now)
                    o.txid, o.status = txid, st
                    if o.live:
                        self.counts["unknown_cancelled"] += 1
                        self._cancel_unknown(txid, cid, now)
                    self._register(o)
            if o is None:
                self.known_foreign.add(txid)
                self.counts["foreign_fills"] += len(trades)
                continue
            for ttxid, t in trades:
                self._rest_trade(ttxid, t, now)
            self._rest_order(txid, d, now)
            if learnt:  # an order of ours learnt from its fills: the overseer may still wait for it
                self._update(o, now)

    # ------------------------------------------------------------------------------ timer
    def on_timer(self, now: int) -> None:
        self._time_out(now)
        if self.halted:
            return
        for what, at in list(self.retry_at.items()):
            if now >= at and now >= self.rest_backoff_until:
                del self.retry_at[what]
                self._redo(what, now)
        if self.started and now >= self.next_reconcile:
            self.next_reconcile = now + self.reconcile_ns
            self._reconcile(now)
        if self.cancel_after_s > 0 and self.ready and self.next_cancel_after and now >= self.next_cancel_after:
            self._arm_dead_man(now)

    def _redo(self, what: str, now: int) -> None:
        kind, _, rest = what.partition(":")
        if kind == "token":
            if not self.token:
                self._fetch_token(now)
        elif kind == "open":
            self._rest("open", "OpenOrders", (("trades", "false"),), now)
        elif kind == "balance":
            self._rest("balance", "Balance", (), now)
        elif kind == "trades":
            self._fetch_trades(self.last_fill_ns or now - int(self.recent_fills_s * 1e9), now)
        elif kind == "cancel_all":
            self._rest("cancel_all", "CancelAll", (), now)
        elif kind == "query":
            rid_text, _, oid_text = rest.partition(":")
            o = self.orders.get(int(oid_text)) or self.asking.get(int(oid_text))
            if o is not None:
                self._query(o, now, int(rid_text))


def _rest_time(v, now: int) -> int:
    """REST times are unix seconds with decimals (``1688667796.8802``), exactly."""
    if v is None:
        return now
    text = v if type(v) is str else str(v)
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
