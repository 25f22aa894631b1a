"""Bitstamp simulator: ``bts:subscribe`` to ``diff_order_book_``/``order_book_``/``live_trades_<pair>``,
REST ``/api/v2/order_book/<pair>/``, ``trading-pairs-info`` and ``markets``.

Bitstamp has no sequence numbers: each diff carries a ``microtimestamp`` that grows strictly, and
the REST snapshot's ``microtimestamp`` is the time of the last change it contains, so a client can
drop the buffered diffs it already holds.  A lost diff is invisible on the wire; a client finds it
only by auditing against the REST book.  ``reconnect_request`` sends ``bts:request_reconnect``.

Order entry (the section at the end): the signed HTTP API v2 (every private call a ``POST
/api/v2/...``, checked with the real signing, ``venues/bitstamp/auth.py``: a missing header, an
unknown key, a wrong signature, a nonce seen in the last 150 s or a timestamp more than 150 s off
the venue's clock (``clock_skew_ms`` ahead of ours) get the venue's own ``API00xx`` error, 403) and
signed answers (``X-Server-Auth-Signature``): ``buy/{pair}/``, ``sell/{pair}/`` (limit; ``ioc_order``,
``moc_order``: maker-or-cancel, accepted then cancelled when it would cross), ``cancel_order/`` (by
``id`` or ``client_order_id``), ``cancel_all_orders/[{pair}/]``, ``order_status/`` (with its
``transactions``), ``open_orders/all/`` and ``open_orders/{pair}/``, ``account_balances/``,
``user_transactions/[{pair}/]`` (``since_timestamp``, ``limit``, ``offset``, ``sort``) and
``websockets_token/``; each refused ``API0003`` outside the key's ``permissions`` (read, trade,
websocket).  Refusals carry the venue's ``response_code`` (400.009 insufficient balance, 400.020
below the minimum order value, 400.026 / 400.041 too many decimals, 404.002 order not found); a
client order id seen before is accepted, as the venue does since 2023-11 (counted:
``duplicate_cid``).  The private channels ``private-my_orders_<pair>-<user_id>`` (``order_created``,
``order_changed``, ``order_deleted``) and ``private-my_trades_<pair>-<user_id>`` (``trade``) on the
same WebSocket, subscribed with a token from ``websockets_token/`` (valid ``token_valid_s``).  One
account: the accepted ``credentials`` (``{key: secret}``, default the documentation's example key)
and its ``balances``; matching by ``trading.matching.Matching`` against the simulator's own book.
The documented request limits per key (``rate_per_s`` 400, ``rate_per_10min`` 10000) answer
400.002.  Order-entry faults (``faults.py``): ``order_5xx`` (the next order call is carried out,
then answered 500 / 500.001), ``order_timeout`` (carried out, answered only after
``timeout_answer_s``: past the client's HTTP timeout, never), ``order_rate_limit`` (400.002, not
carried out), ``stream_duplicate`` (the next N private messages twice), ``stream_reorder`` (the next
private message after the one that follows it), ``stream_disconnect`` (the next fill's messages are
lost with the connections holding private channels, which are cut), ``ban`` (the next REST request
answered 418), ``cancel_filled`` (the next cancel finds its order filled: 404.002); ``rate_limit``
(429 with ``Retry-After``) as for every venue.
"""

from __future__ import annotations

import secrets as _secrets
import threading
import time
from email.utils import formatdate

import msgspec

from ..fixed import FixedPointError, from_fixed, to_fixed
from ..spine.messages import OrderAction, OrderFlags, OrderRequest, OrderStatus
from ..trading.accounts import Reject
from ..venues.bitstamp import auth as bitstamp_auth
from ..venues.bitstamp.orders import RateWindows
from .account import AccountSim
from .market import ASK, BID, Listing
from .server import Reply, Request, RestError, VenueSimulator, raw

LISTINGS = (
    Listing("btcusd", "BTC", "USD", "1", "0.00000001", "27000", "3", min_notional="10"),
    Listing("ethusd", "ETH", "USD", "0.1", "0.00000001", "1800.0", "40", min_notional="10"),
    Listing("xrpusd", "XRP", "USD", "0.00001", "0.00000001", "0.51000", "20000", min_notional="10"),
)
CHANNELS = ("diff_order_book_", "order_book_", "live_trades_")


# -- order entry ---------------------------------------------------------------------------------
API = "/api/v2/"
DEFAULT_KEY = "api_key"  # the documentation's authentication example
DEFAULT_SECRET = "api_key_secret"
DEFAULT_USER_ID = 123456  # the documentation's private channel example
DEFAULT_BALANCES = {"USD": "1000000", "BTC": "10", "ETH": "100", "XRP": "100000"}
VID_BASE = 1_700_000_000_000_000  # venue order ids are large integers
NEEDS = {"buy": "trade", "sell": "trade", "cancel_order": "trade", "cancel_all_orders": "trade",
         "order_status": "read", "open_orders": "read", "account_balances": "read", "user_transactions": "read",
         "websockets_token": "websocket"}
ORDER_CALLS = ("buy", "sell", "cancel_order")  # what the order-entry faults act on
_S = OrderStatus
_ENDED = (_S.FILLED, _S.CANCELLED, _S.EXPIRED, _S.REJECTED)
STATUS_TEXT = {_S.ACK: "Open", _S.OPEN: "Open", _S.PARTIALLY_FILLED: "Open", _S.FILLED: "Finished",
               _S.CANCELLED: "Canceled", _S.EXPIRED: "Canceled"}  # an IOC's rest is cancelled


class _Refused(Exception):
    """A call the venue refuses: HTTP status and its error body."""

    def __init__(self, status: int, code: str, reason):
        super().__init__(code)
        self.status, self.doc = status, {"status": "error", "reason": reason, "response_code": code}


NOT_FOUND = (404, "404.002", "Order not found.")


class _SimOrder:
    __slots__ = ("oid", "vid", "cid", "sym", "iid", "side", "price", "size", "created", "announced", "moc_cancelled")

    def __init__(self, oid, vid, cid, sym, iid, side, price, size, created):
        self.oid, self.vid, self.cid, self.sym, self.iid = oid, vid, cid, sym, iid
        self.side, self.price, self.size, self.created = side, price, size, created
        self.announced = False  # order_created sent
        self.moc_cancelled = False  # maker-or-cancel that would have crossed: cancelled at once


def _dt(ns: int) -> str:
    """The venue's datetime text: ``2022-01-31 14:43:15.796000`` (UTC)."""
    s, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s)) + f".{rest // 1000:06d}"


def _true(v) -> bool:
    return str(v).lower() in ("true", "1")


class BitstampSimulator(AccountSim, VenueSimulator):
    venue = "bitstamp"
    LISTINGS = LISTINGS

    def __init__(self, source=None, *, credentials: dict | None = None, balances: dict | None = None,
                 maker_bps: int = 30, taker_bps: int = 40, user_id: int = DEFAULT_USER_ID, clock_skew_ms: int = 0,
                 permissions=("read", "trade", "websocket"), rate_per_s: int = 400, rate_per_10min: int = 10_000,
                 timeout_answer_s: float = 6.0, token_valid_s: int = 60, **kw):
        super().__init__(source, **kw)
        self.micro = 0  # microtimestamp of the last change, strictly increasing
        self.pairs = {s.lower(): s for s in self.instruments}
        self._init_account(credentials, {DEFAULT_KEY: DEFAULT_SECRET}, balances, DEFAULT_BALANCES, maker_bps,
                           taker_bps)
        self.user_id = int(user_id)
        self.clock_skew_ns = int(clock_skew_ms) * 1_000_000  # the venue's clock runs this far ahead of ours
        self.permissions = frozenset(permissions)
        self.rate_per_s, self.rate_per_10min = rate_per_s, rate_per_10min
        self.rates: dict[str, RateWindows] = {}  # key -> its request windows
        self.timeout_answer_s = float(timeout_answer_s)
        self.token_valid_s = int(token_valid_s)
        self.nonces: dict[str, int] = {}  # nonce -> venue ms it was used (reuse refused for 150 s)
        self.ws_tokens: dict[str, int] = {}  # token -> expiry (ns)
        self.by_vid: dict[int, _SimOrder] = {}
        self._tl = threading.local()  # a REST answer to hold back (order_timeout), per server thread

    # Bitstamp writes every price and amount with the pair's decimals: our scales.
    def _p(self, inst, v: int) -> str:
        return from_fixed(v, inst.price_scale, inst.price_scale)

    def _q(self, inst, v: int) -> str:
        return from_fixed(v, inst.size_scale, inst.size_scale)

    def _book(self, sym: str, depth: int = 0) -> dict:
        inst, book = self.instruments[sym], self.books[sym]
        n = depth or len(book)
        return {"timestamp": str(self.micro // 1_000_000), "microtimestamp": str(self.micro),
                "bids": [[self._p(inst, p), self._q(inst, q)] for p, q in book.top(BID, n)],
                "asks": [[self._p(inst, p), self._q(inst, q)] for p, q in book.top(ASK, n)]}

    # -- connection ------------------------------------------------------------------------
    def on_open(self, c) -> None:
        c.channels = set()
        c.held = None  # a private message held back (stream_reorder), with when

    def on_message(self, c, msg) -> None:
        event = msg.get("event") if isinstance(msg, dict) else None
        data = msg.get("data") if isinstance(msg, dict) else None
        channel = str((data if isinstance(data, dict) else {}).get("channel", ""))
        if event in ("bts:subscribe", "bts:unsubscribe") and channel.startswith("private-"):
            self._private_subscribe(c, event, channel, data.get("auth"))
        elif event == "bts:heartbeat":
            self.send(c, {"event": "bts:heartbeat", "channel": "", "data": {"status": "success"}})
        elif event in ("bts:subscribe", "bts:unsubscribe") and self._known(channel):
            if event == "bts:subscribe":
                c.channels.add(channel)
                self.send(c, {"event": "bts:subscription_succeeded", "channel": channel, "data": {}})
            else:
                c.channels.discard(channel)
                self.send(c, {"event": "bts:unsubscription_succeeded", "channel": channel, "data": {}})
        else:
            self.on_bad_message(c, msg)

    def _known(self, channel: str) -> bool:
        return any(channel.startswith(p) and channel[len(p) :] in self.pairs for p in CHANNELS)

    def on_bad_message(self, c, text) -> None:
        self.send(c, {"event": "bts:error", "channel": "", "data": {"code": None, "message": "Bad subscription string."}})

    def reconnect_message(self, c):
        return {"event": "bts:request_reconnect", "channel": "", "data": ""}

    # -- market ----------------------------------------------------------------------------
    def publish(self, step) -> None:
        sym, inst = step.symbol, self.instruments[step.symbol]
        pair = sym.lower()
        self.micro = max(self.micro + 1, step.ts // 1000)
        ts = str(self.micro // 1_000_000)
        out = []
        for t in step.trades:
            p, q = self._p(inst, t.price), self._q(inst, t.size)
            out.append((f"live_trades_{pair}", {"data": {
                "id": t.trade_id, "timestamp": ts, "amount": raw(_trim(q)), "amount_str": q, "price": raw(_trim(p)),
                "price_str": p, "type": 0 if t.side > 0 else 1, "microtimestamp": str(self.micro),
                "buy_order_id": 2 * t.trade_id, "sell_order_id": 2 * t.trade_id + 1},
                "channel": f"live_trades_{pair}", "event": "trade"}, False))
        if step.levels:
            ordered = sorted(step.levels, key=lambda lv: -lv[0] * lv[1])  # bids high->low, then asks low->high
            data = {"timestamp": ts, "microtimestamp": str(self.micro),
                    "bids": [[self._p(inst, p), self._q(inst, q)] for s, p, q in ordered if s == BID],
                    "asks": [[self._p(inst, p), self._q(inst, q)] for s, p, q in ordered if s == ASK]}
            out.append((f"diff_order_book_{pair}", {"data": data, "channel": f"diff_order_book_{pair}",
                                                   "event": "data"}, True))
        top = None
        for c in self.clients:
            for channel, frame, book in out:
                if channel in c.channels:
                    self.send(c, frame, book=book)
            if step.levels and f"order_book_{pair}" in c.channels:  # top-100 snapshot on every change
                top = top or {"data": self._book(sym, 100), "channel": f"order_book_{pair}", "event": "data"}
                self.send(c, top)

    # -- REST ------------------------------------------------------------------------------
    def rest(self, req: Request):
        path, query = req.path, req.query
        if req.method == "POST" and path.startswith(API):
            return self._rest_private(req)
        if req.method == "GET":
            parts = [p for p in path.split("/") if p]
            if parts[:3] == ["api", "v2", "order_book"] and len(parts) == 4:
                sym = self.pairs.get(parts[3])
                if sym is None:
                    raise RestError(404, {"status": "error", "reason": "Not found", "code": "404.001"})
                return self._book(sym)
            if parts in (["api", "v2", "trading-pairs-info"], ["api", "v2", "markets"]):
                markets = parts[2] == "markets"
                return [self._pair_info(self.instruments[s], markets) for s in self.instruments]
        raise RestError(404, {"status": "error", "reason": f"Unknown endpoint {path}", "code": "404.002"})

    def _pair_info(self, inst, markets: bool) -> dict:
        name = f"{inst.base}/{inst.quote}"
        minimum = from_fixed(inst.min_notional, inst.price_scale)
        info = {"name": name, "base_decimals": inst.size_scale, "counter_decimals": inst.price_scale,
                "trading": "Enabled", "instant_and_market_orders": "Enabled", "description": name}
        if markets:
            info.update(market_symbol=inst.symbol.lower(), minimum_order_value=minimum)
        else:
            info.update(url_symbol=inst.symbol.lower(), minimum_order=f"{minimum} {inst.quote}")
        return info

    def rate_limit_body(self, status: int):
        # Newer Bitstamp error bodies carry a response_code; 400.002 is its rate limit.
        return {"status": "error", "reason": "Rate limit exceeded", "response_code": "400.002"}

    def serve_rest(self, req: Request) -> tuple[int, object, dict]:
        out = super().serve_rest(req)
        delay, self._tl.delay = getattr(self._tl, "delay", 0.0), 0.0
        if delay:  # order_timeout: carried out, answered late (past the client's timeout: never)
            self._stop.wait(delay)
        return out

    # -- order entry -----------------------------------------------------------------------
    # the truth about the account (and account(), balance(), order_state(), the faults: sim/account.py)
    def open_orders(self) -> dict[str, object]:
        """Client order id (or venue id) -> the engine's state of each open order."""
        with self.lock:
            out = {}
            for st in self.engine.open_orders("bitstamp"):
                so = self.sim_orders[st.order_id]
                out[so.cid or str(so.vid)] = st
            return out

    def fills_of(self, cid: str) -> list[dict]:
        """The ``my_trades`` items of the order with client id ``cid``."""
        with self.lock:
            return [dict(item) for item, *_ in self.trades if item.get("client_order_id") == cid]

    # engine in and out
    def _apply(self, step) -> None:
        super()._apply(step)
        now = self._feed_engine(step)
        if now is not None:
            self._stream(self._collect(now))

    def _collect(self, now: int) -> list:
        """The engine's messages since the last call -> private messages ``(kind, pair, event, data)``;
        trades recorded for ``user_transactions`` and ``order_status``."""
        out, self._engine_out = self._engine_out, []
        msgs = []
        for port, m in out:
            if port == "balances":  # Bitstamp has no balance channel (account_balances/ reads the engine)
                continue
            so = self.sim_orders.get(m.order_id)
            if so is None:
                continue
            inst = self.instruments[so.sym]
            pair = so.sym.lower()
            if port == "fills":
                b, q = inst.base.lower(), inst.quote.lower()
                price, qty = self._p(inst, m.price), self._q(inst, m.size)
                cost = from_fixed(m.price * m.size // 10**inst.size_scale, inst.price_scale, inst.price_scale)
                fee = from_fixed(m.fee, inst.price_scale, inst.price_scale)
                item = {"id": m.trade_id, "order_id": so.vid, "client_order_id": so.cid, "amount": qty, "price": price,
                        "fee": fee, "side": "buy" if m.side > 0 else "sell", "microtimestamp": str(m.exch_ts // 1000),
                        "trade_account_id": 0}
                sign = "" if m.side > 0 else "-"
                row = {"id": m.trade_id, "datetime": _dt(m.exch_ts), "type": "2", "fee": fee,
                       b: sign + qty, q: ("-" if m.side > 0 else "") + cost, f"{b}_{q}": raw(price), "order_id": so.vid}
                tx = {"tid": m.trade_id, "price": price, b: qty, q: cost, "fee": fee, "datetime": _dt(m.exch_ts),
                      "type": 2}
                self.trades.append((item, row, tx, m.exch_ts, so.oid))
                msgs.append(("my_trades", pair, "trade", item))
            elif port == "updates":
                st = _S(m.status)
                if st in (_S.ACK, _S.REJECTED, _S.CANCEL_REJECTED):
                    continue
                if st in (_S.OPEN, _S.PARTIALLY_FILLED):
                    event = "order_changed" if so.announced else "order_created"
                    so.announced = True
                else:
                    event = "order_deleted"
                msgs.append(("my_orders", pair, event, self._order_event(so, m.size, m.filled, m.exch_ts)))
        return msgs

    def _order_event(self, so: _SimOrder, size: int, filled: int, ts: int) -> dict:
        inst = self.instruments[so.sym]
        left, price = self._q(inst, size - filled), self._p(inst, so.price)
        return {"id": so.vid, "id_str": str(so.vid), "order_type": 0 if so.side > 0 else 1,
                "datetime": str(ts // 1_000_000_000), "microtimestamp": str(ts // 1000), "amount": raw(left),
                "amount_str": left, "amount_traded": self._q(inst, filled), "amount_at_create": self._q(inst, size),
                "price": raw(price), "price_str": price, "trade_account_id": 0, "client_order_id": so.cid}

    def _stream(self, msgs: list) -> None:
        """Send private messages to their subscribers; the stream faults apply."""
        if not msgs:
            return
        if self._cut and any(m[2] == "trade" for m in msgs):
            self._cut -= 1
            self.order_counts["stream_cut"] += 1
            for c in list(self.clients):
                if c.open and any(ch.startswith("private-") for ch in c.channels):  # lost with the connection
                    c.open = False
                    self._close_later(c, 1011, "simulated private stream loss")
            return
        for kind, pair, event, data in msgs:
            ch = f"private-{kind}_{pair}-{self.user_id}"
            dup = reorder = False
            if self._dup:
                self._dup -= 1
                dup = True
            if self._reorder:
                self._reorder -= 1
                reorder = True
            frame = {"data": data, "channel": ch, "event": event}
            for c in list(self.clients):
                if not c.open or ch not in c.channels:
                    continue
                if reorder and c.held is None:
                    c.held = (frame, time.monotonic())
                    continue
                self.send(c, frame)
                if dup:
                    self.send(c, frame)
                if c.held is not None and c.held[0] is not frame:
                    self.send(c, c.held[0])
                    c.held = None

    def idle(self, now: float) -> None:
        for c in self.clients:
            if c.held is not None and now - c.held[1] > 0.5:  # nothing came after it: send it late
                self.send(c, c.held[0])
                c.held = None
        t = time.time_ns()
        for tok in [k for k, exp in self.ws_tokens.items() if exp < t]:
            del self.ws_tokens[tok]

    def _private_subscribe(self, c, event: str, channel: str, token) -> None:
        kind, _, rest = channel[len("private-"):].partition("_")
        rest = channel[len("private-") + len(kind) + 1:] if kind == "my" else ""
        name, _, tail = rest.partition("_")
        pair, _, uid = tail.rpartition("-")
        if f"my_{name}" not in ("my_orders", "my_trades") or pair not in self.pairs or uid != str(self.user_id):
            self.on_bad_message(c, channel)
            return
        if event == "bts:unsubscribe":
            c.channels.discard(channel)
            self.send(c, {"event": "bts:unsubscription_succeeded", "channel": channel, "data": {}})
            return
        exp = self.ws_tokens.get(str(token or ""))
        if exp is None or exp < time.time_ns():
            self.order_counts["bad_token"] += 1
            self.send(c, {"event": "bts:error", "channel": channel,
                          "data": {"code": None, "message": "Invalid token for private channel."}})
            return
        c.channels.add(channel)
        self.send(c, {"event": "bts:subscription_succeeded", "channel": channel, "data": {}})

    # the private REST calls
    def _rest_private(self, req: Request):
        now = time.time_ns()
        vnow_ms = (now + self.clock_skew_ns) // 1_000_000
        for n in [n for n, t in self.nonces.items() if t < vnow_ms - bitstamp_auth.WINDOW_MS]:
            del self.nonces[n]
        host = req.headers.get("Host", "")
        query = req.target.partition("?")[2]
        err, key = bitstamp_auth.verify(self.credentials, req.method, host, req.path, query, dict(req.headers.items()),
                                        req.body, vnow_ms, self.nonces)
        extra = {"Date": formatdate((now + self.clock_skew_ns) / 1e9, usegmt=True)} if self.clock_skew_ns else {}
        if err:
            self.order_counts[f"auth_{err[0]}"] += 1
            return Reply(403, {"status": "error", "reason": err[1], "code": err[0]}, extra)
        h = {k.lower(): v for k, v in req.headers.items()}
        nonce, ts = h["x-auth-nonce"], h["x-auth-timestamp"]
        self.nonces[nonce] = vnow_ms
        secret = self.credentials[key]
        call = req.path[len(API):].strip("/").split("/")

        def answer(status: int, doc) -> Reply:  # signed, as the venue signs its answers
            body = msgspec.json.encode(doc)
            sig = bitstamp_auth.response_signature(secret, nonce, ts, "application/json", body)
            return Reply(status, body, {"Content-Type": "application/json", "X-Server-Auth-Signature": sig, **extra})

        rate = self.rates.get(key)
        if rate is None:
            rate = self.rates[key] = RateWindows(self.rate_per_s, self.rate_per_10min)
        if not rate.take(now):
            self.order_counts["rate_limited"] += 1
            return answer(400, self.rate_limit_body(400))
        need = NEEDS.get(call[0])
        if need is None:
            return answer(404, {"status": "error", "reason": f"Unknown endpoint {req.path}", "response_code": "404.001"})
        if need not in self.permissions:
            return Reply(403, {"status": "error", "reason": bitstamp_auth.NO_PERMISSION[1],
                               "code": bitstamp_auth.NO_PERMISSION[0]}, extra)
        fault = self._order_faults.popleft() if call[0] in ORDER_CALLS and self._order_faults else None
        if fault == "rate":
            return answer(400, self.rate_limit_body(400))
        try:
            doc = self._call(call, req.form(), now)
        except _Refused as e:
            self.order_counts["refused"] += 1
            return answer(e.status, e.doc)
        if fault == "5xx":
            self.order_counts["answered_5xx"] += 1
            return Reply(500, {"status": "error", "reason": "Unknown server error.", "response_code": "500.001"})
        if fault == "timeout":
            self.order_counts["not_answered"] += 1
            self._tl.delay = self.timeout_answer_s
        return answer(200, doc)

    def _call(self, call: list, p: dict, now: int):
        what = call[0]
        if what in ("buy", "sell"):
            if len(call) != 2:  # buy/market/, buy/instant/: not served here
                raise _Refused(404, "404.001", "Unknown not found error.")
            return self._add(1 if what == "buy" else -1, call[1], p, now)
        if what == "cancel_order":
            return self._cancel(self._order_of(p), now)
        if what == "cancel_all_orders":
            sym = self._pair(call[1]) if len(call) > 1 else None
            canceled = []
            for st in self.engine.open_orders("bitstamp"):
                so = self.sim_orders[st.order_id]
                if sym is None or so.sym == sym:
                    doc = self._cancel(so, now)
                    canceled.append({**doc, "currency_pair": doc["market"]})
            return {"canceled": canceled, "success": True}
        if what == "order_status":
            return self._status(self._order_of(p), not _true(p.get("omit_transactions")))
        if what == "open_orders":
            sym = None if len(call) < 2 or call[1] == "all" else self._pair(call[1])
            return [self._open(self.sim_orders[st.order_id], st) for st in self.engine.open_orders("bitstamp")
                    if sym is None or self.sim_orders[st.order_id].sym == sym]
        if what == "account_balances":
            out = []
            for (venue, asset), scale in sorted(self.engine.scales.items()):
                total, avail = self.engine.balance(venue, asset)
                out.append({"currency": asset.lower(), "total": from_fixed(total, scale, scale),
                            "available": from_fixed(avail, scale, scale),
                            "reserved": from_fixed(total - avail, scale, scale)})
            return out
        if what == "user_transactions":
            return self._transactions(self._pair(call[1]) if len(call) > 1 else None, p)
        # websockets_token
        token = _secrets.token_urlsafe(24)
        self.ws_tokens[token] = now + self.token_valid_s * 1_000_000_000
        return {"token": token, "valid_sec": self.token_valid_s, "user_id": self.user_id}

    def _pair(self, name: str) -> str:
        sym = self.pairs.get(name)
        if sym is None:
            raise _Refused(404, "404.003", "Currency pair not found for corresponding request.")
        return sym

    def _num(self, p: dict, name: str, scale: int, code: str) -> int:
        text = p.get(name)
        if text in (None, ""):
            raise _Refused(400, "400.005" if name == "amount" else "400.006",
                           f"POST parameter(s) is missing from request: {name}.")
        try:
            v = to_fixed(text, scale)
        except FixedPointError:
            raise _Refused(400, code, {name: [f"Ensure that there are no more than {scale} decimal places."]}) \
                from None
        if v <= 0:
            raise _Refused(400, code, {name: ["Ensure this value is greater than 0."]})
        return v

    def _add(self, side: int, pair: str, p: dict, now: int) -> dict:
        sym = self._pair(pair)
        inst = self.instruments[sym]
        size = self._num(p, "amount", inst.size_scale, "400.026")
        px = self._num(p, "price", inst.price_scale, "400.041")
        ioc, moc = _true(p.get("ioc_order")), _true(p.get("moc_order"))
        if ioc and moc:
            raise _Refused(400, "400.024", "Only one of optional parameters can be set.")
        cid = str(p.get("client_order_id") or "")
        if len(cid) > 180:
            raise _Refused(400, "400.008", "POST parameter(s) is malformed: client_order_id.")
        if cid and cid in self.by_cid:
            self.order_counts["duplicate_cid"] += 1  # accepted all the same, as the venue does since 2023-11
        flags = (OrderFlags.IOC if ioc else 0) | (OrderFlags.POST_ONLY if moc else 0)
        self._next_oid += 1
        oid = self._next_oid
        so = _SimOrder(oid, VID_BASE + oid, cid, sym, inst.id, side, px, size, now)
        self.sim_orders[oid] = so
        self.engine.act(OrderRequest(oid, 0, px, size, inst.id, 0, 0, OrderAction.NEW, side, int(flags)), now)
        refused = [m.reason for port, m in self._engine_out
                   if port == "updates" and m.order_id == oid and m.status == _S.REJECTED]
        msgs = self._collect(now)
        if refused:
            why = Reject(refused[0])
            if why == Reject.POST_ONLY:  # maker-or-cancel: accepted, then cancelled at once
                so.moc_cancelled = True
                msgs.append(("my_orders", pair, "order_deleted", self._order_event(so, size, 0, now)))
            else:
                del self.sim_orders[oid]
                self._stream(msgs)
                raise self._refusal(why, inst, side)
        if cid:
            self.by_cid[cid] = so
            self.placed[cid] += 1
        self.by_vid[so.vid] = so
        self.order_counts["placed"] += 1
        self._stream(msgs)
        doc = {"id": so.vid, "market": f"{inst.base}/{inst.quote}", "datetime": _dt(now),
               "type": "0" if side > 0 else "1", "price": self._p(inst, px), "amount": self._q(inst, size)}
        if cid:
            doc["client_order_id"] = cid
        return doc

    def _refusal(self, why: Reject, inst, side: int) -> _Refused:
        if why == Reject.INSUFFICIENT_BALANCE:
            asset = inst.quote if side > 0 else inst.base
            total, avail = self.engine.balance("bitstamp", asset)
            have = from_fixed(avail, self.engine.scales[("bitstamp", asset)])
            return _Refused(400, "400.009", {"__all__": [f"You have only {have} {asset} available. Check your "
                                                         "account balance for details."]})
        if why == Reject.MIN_NOTIONAL:
            return _Refused(400, "400.020", {"__all__": [f"Minimum order size is "
                                                         f"{from_fixed(inst.min_notional, inst.price_scale)} "
                                                         f"{inst.quote}."]})
        if why == Reject.MIN_SIZE:
            return _Refused(400, "400.046", "Provided order amount is too low.")
        if why == Reject.TICK:
            return _Refused(400, "400.041", {"price": [f"Ensure that there are no more than {inst.price_scale} "
                                                       "decimal places."]})
        if why == Reject.LOT:
            return _Refused(400, "400.026", {"amount": [f"Ensure that there are no more than {inst.size_scale} "
                                                        "decimal places."]})
        return _Refused(400, "400.001", "Unknown validation error.")

    def _order_of(self, p: dict) -> _SimOrder:
        so = None
        if p.get("id"):
            try:
                so = self.by_vid.get(int(p["id"]))
            except ValueError:
                raise _Refused(400, "400.036", "POST parameter(s) is malformed: id.") from None
        elif p.get("client_order_id"):
            so = self.by_cid.get(p["client_order_id"])
        else:
            raise _Refused(400, "400.035", "POST parameter(s) is missing from request: id.")
        if so is None:
            raise _Refused(*NOT_FOUND)
        return so

    def _cancel(self, so: _SimOrder, now: int) -> dict:
        if self._fill_before_cancel(so, now):
            self._stream(self._collect(now))
        st = self.engine.order(so.oid)
        if so.moc_cancelled or st is None or st.status in _ENDED:
            raise _Refused(*NOT_FOUND)
        self.engine.act(OrderRequest(self._oid(), so.oid, 0, 0, so.iid, 0, 0, OrderAction.CANCEL, 1, 0), now)
        self._stream(self._collect(now))
        inst = self.instruments[so.sym]
        return {"id": so.vid, "amount": self._q(inst, st.size - st.filled), "price": self._p(inst, st.price),
                "type": 0 if so.side > 0 else 1, "market": f"{inst.base}/{inst.quote}", "client_order_id": so.cid}

    def _oid(self) -> int:
        self._next_oid += 1
        return self._next_oid

    def _status(self, so: _SimOrder, transactions: bool) -> dict:
        inst = self.instruments[so.sym]
        st = self.engine.order(so.oid)
        if so.moc_cancelled or st is None:
            status, filled = "Canceled", 0
        else:
            status, filled = STATUS_TEXT.get(_S(st.status), "Open"), st.filled
        doc = {"id": so.vid, "datetime": _dt(so.created), "type": "0" if so.side > 0 else "1", "status": status,
               "market": f"{inst.base}/{inst.quote}", "amount_remaining": self._q(inst, so.size - filled),
               "client_order_id": so.cid, "price": self._p(inst, so.price), "amount": self._q(inst, so.size)}
        if transactions:
            doc["transactions"] = [tx for _, _, tx, _, oid in self.trades if oid == so.oid]
        return doc

    def _open(self, so: _SimOrder, st) -> dict:
        inst = self.instruments[so.sym]
        market = f"{inst.base}/{inst.quote}"
        return {"id": str(so.vid), "datetime": _dt(so.created), "type": "0" if so.side > 0 else "1",
                "price": self._p(inst, st.price), "amount": self._q(inst, st.size - st.filled),
                "amount_at_create": self._q(inst, st.size), "currency_pair": market, "market": market,
                "client_order_id": so.cid}

    def _transactions(self, sym: str | None, p: dict) -> list:
        try:
            since = int(p.get("since_timestamp") or 0) * 1_000_000_000
            until = int(p.get("until_timestamp") or 0) * 1_000_000_000
            offset = int(p.get("offset") or 0)
            limit = min(int(p.get("limit") or 100), 1000)
        except ValueError:
            raise _Refused(400, "400.007", "POST parameter(s) is malformed.") from None
        rows = [(ts, row) for _, row, _, ts, oid in self.trades
                if ts >= since and (not until or ts <= until) and (sym is None or self.sim_orders[oid].sym == sym)]
        rows.sort(key=lambda x: x[0], reverse=p.get("sort", "desc") != "asc")
        return [row for _, row in rows[offset:offset + limit]]


def _trim(text: str) -> str:
    """The JSON number form of a decimal string (``"0.00280000"`` -> ``0.0028``)."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
