"""Bitfinex WebSocket v2 simulator: ``conf`` flags, aggregated ``book`` (P0) and ``trades`` channels,
info codes, ``hb``; REST ``conf/pub:info:pair``, ``conf/pub:list:pair:exchange``, ``book/<symbol>/P0``.

Per connection: ``SEQ_ALL`` appends a sequence number (+1 per channel message, so a lost frame is a
gap), ``OB_CHECKSUM`` sends ``[chanId,"cs",crc]`` after the snapshot and after each book message
(signed CRC32 of the top 25 interleaved, computed on what the client holds), ``BULK_UPDATES`` sends
one book message per step instead of one per level, ``TIMESTAMP`` appends a ms time (before the
sequence number).  Numbers are JSON numbers in JavaScript's form.  Only the ``P0`` precision is
served (other ``prec`` values are refused with 10011); ``freq`` F1 is accepted and served in real time.
``reconnect_request`` sends info 20051.

Order entry (the section at the end), on the same socket after the signed ``auth`` event and on
the private REST v2 calls, both checked with the real signing (``venues/bitfinex/auth.py``: an
unknown key, a bad signature or a nonce not above the key's last get the venue's own error; one
nonce per key for both).  Inputs ``on`` / ``ou`` (``price``, ``delta`` or ``amount``) / ``oc`` (by
``id``, or ``cid`` + ``cid_date``) / ``oc_multi`` are answered by ``n`` notifications and the account
channel streams ``os`` / ``on`` / ``ou`` / ``oc``, ``te`` then ``tu`` (with the fee), ``ws`` / ``wu``
(the exchange wallets).  ``dms: 4`` on log-on: the account's orders are cancelled once that socket
has closed.  REST: ``auth/r/wallets``, ``auth/r/orders`` (open; ``id`` filter),
``auth/r/orders/hist`` (closed; ``start``, ``id``), ``auth/r/trades/hist`` (``start``, ``sort``,
``limit``), ``auth/r/permissions``, ``auth/w/order/submit`` / ``update`` / ``cancel`` /
``cancel/multi`` (a notification, errors ``["error", code, text]`` with HTTP 500), each refused
outside the key's ``permissions`` (``{scope: (read, write)}``); ``/v2/platform/status`` with a
``Date`` ``clock_skew_ms`` ahead.  One account: the accepted ``credentials`` (``{key: secret}``) and
its ``balances``; matching by ``trading.matching.Matching`` against the simulator's own book.  New
orders beyond ``orders_per_5min`` are refused (``ratelimit: error``).  Client ids are not checked
for uniqueness (the venue does not enforce it): reuses are counted (``duplicate_cid``).
Order-entry faults (``faults.py``): ``order_5xx`` (the next order input is carried out, then
answered ``FAILURE``; a 503 on REST), ``order_timeout`` (carried out; its notification and its
order's events are lost; a 504 on REST), ``order_rate_limit`` (``ratelimit: error``),
``stream_duplicate`` (the next N account batches twice), ``stream_reorder`` (the next batch after
the one that follows it), ``stream_disconnect`` (the next fill is lost with the authenticated
connections, which are cut), ``ban`` (the next REST request answered 418), ``cancel_filled`` (the
next cancel finds its order filled: ``Order not found.``); ``rate_limit`` (429 with ``Retry-After``)
as for every venue.
"""

from __future__ import annotations

import secrets as _secrets
import time
from collections import deque
from email.utils import formatdate

from ..fixed import FixedPointError, from_fixed, to_fixed
from ..spine.messages import OrderAction, OrderFlags, OrderRequest, OrderStatus
from ..trading.accounts import Reject
from ..venues.bitfinex import auth as bfx_auth
from .account import AccountSim
from .market import ASK, BID, DepthView, Listing
from .oracles import bitfinex_checksum
from .server import Reply, Request, RestError, VenueSimulator, raw

LISTINGS = (
    Listing("tBTCUSD", "BTC", "USD", "1", "0.00001", "27000", "3", "0.00004"),
    Listing("tETHUSD", "ETH", "USD", "0.1", "0.0001", "1800.0", "40", "0.0008"),
    Listing("tXRPUSD", "XRP", "USD", "0.00001", "0.01", "0.51000", "20000", "4"),
)
TIMESTAMP, SEQ_ALL, OB_CHECKSUM, BULK_UPDATES = 32768, 65536, 131072, 536870912
LENGTHS = ("1", "25", "100", "250")

# -- order entry ---------------------------------------------------------------------------------
PRIVATE = "/v2/auth/"
DEFAULT_KEY = "bitfinex-sim-key"  # Bitfinex documents no signing vector: any key, any text secret
DEFAULT_SECRET = "bitfinex-sim-secret-not-for-production"
DEFAULT_BALANCES = {"USD": "1000000", "BTC": "10", "ETH": "100", "XRP": "100000"}
PERMISSIONS = {"account": (1, 0), "orders": (1, 1), "wallets": (1, 0), "history": (1, 0), "funding": (1, 0),
               "positions": (1, 0), "settings": (1, 0), "withdraw": (0, 0)}
NEED = {"r/wallets": ("wallets", 0), "r/orders": ("orders", 0), "r/orders/hist": ("orders", 0),
        "r/trades/hist": ("orders", 0), "r/permissions": None, "w/order/submit": ("orders", 1),
        "w/order/update": ("orders", 1), "w/order/cancel": ("orders", 1), "w/order/cancel/multi": ("orders", 1)}
ORDER_ID_BASE = 50_000_000_000  # venue order ids look like the venue's
TRADE_ID_BASE = 1_400_000_000
FLAG_POST_ONLY = 4096
RATE_TEXT = "ratelimit: error"
NOT_FOUND = "Order not found."
_S = OrderStatus
REJECT_TEXT = {
    Reject.INSUFFICIENT_BALANCE: "Invalid order: not enough exchange balance for {amount} {pair} at {price}",
    Reject.MIN_SIZE: "Invalid order: minimum size for {base}/{quote} is {min}",
    Reject.TICK: "Invalid price.", Reject.LOT: "Invalid order: amount precision",
    Reject.MIN_NOTIONAL: "Invalid order: value too small", Reject.UNKNOWN_ORDER: NOT_FOUND,
    Reject.BAD_REQUEST: "Invalid order",
}


class _VenueError(Exception):
    """A request the venue refuses: its text, and the order array its notification carries."""

    def __init__(self, text: str, arr=None):
        super().__init__(text)
        self.arr = arr


class _SimOrder:
    __slots__ = ("oid", "gid", "cid", "cid_date", "sym", "iid", "side", "type", "flags", "created", "announced")

    def __init__(self, oid, gid, cid, sym, iid, side, kind, flags, created):
        self.oid, self.gid, self.cid, self.sym, self.iid = oid, gid, cid, sym, iid
        self.side, self.type, self.flags, self.created = side, kind, flags, created
        self.cid_date = time.strftime("%Y-%m-%d", time.gmtime(created // 1_000_000_000))
        self.announced = False  # "on" sent: later changes are "ou"


def _ms(ns: int) -> int:
    return ns // 1_000_000


def js_number(value: int, scale: int) -> str:
    """A fixed-point value as JavaScript writes the number: trimmed, exponent form below 1e-6."""
    a = abs(value)
    if scale > 6 and 0 < a < 10 ** (scale - 6):
        digits = str(a)
        exp = len(digits) - 1 - scale
        d = digits.rstrip("0")
        out = f"{d[0]}.{d[1:]}e{exp}" if len(d) > 1 else f"{d}e{exp}"
    else:
        out = from_fixed(a, scale)
    return "-" + out if value < 0 else out


class _Chan:
    __slots__ = ("kind", "symbol", "view", "last")

    def __init__(self, kind: str, symbol: str, view: DepthView | None):
        self.kind, self.symbol, self.view = kind, symbol, view
        self.last = time.monotonic()  # last message on the channel, for "hb"


class BitfinexSimulator(AccountSim, VenueSimulator):
    venue = "bitfinex"
    LISTINGS = LISTINGS
    hb_s = 15.0  # an idle channel sends "hb" after this long

    def __init__(self, source=None, *, credentials: dict | None = None, balances: dict | None = None,
                 maker_bps: int = 10, taker_bps: int = 20, permissions: dict | None = None,
                 orders_per_5min: int = 1000, clock_skew_ms: int = 0, **kw):
        super().__init__(source, **kw)
        self.next_chan = 17_000
        self._init_orders(credentials, balances, maker_bps, taker_bps, permissions, orders_per_5min, clock_skew_ms)

    # -- numbers ---------------------------------------------------------------------------
    def _entry(self, sym: str, side: int, price: int, size: int) -> list:
        inst = self.instruments[sym]
        p = raw(js_number(price, inst.price_scale))
        if not size:
            return [p, 0, side]  # COUNT 0 deletes: AMOUNT 1 from the bids, -1 from the asks
        count = 1 + (size // max(inst.lot, 1)) % 4  # orders at the level: any positive number
        return [p, count, raw(js_number(side * size, inst.size_scale))]

    def _checksum(self, sym: str, view: DepthView) -> int:
        inst = self.instruments[sym]
        ps, ss = inst.price_scale, inst.size_scale
        # Prices in fixed notation, amounts as sent, asks negative (the venue's reference code).
        frags = [[f"{from_fixed(p, ps)}:{js_number(side * q, ss)}" for p, q in view.book.top(side, 25)]
                 for side in (BID, ASK)]
        crc = bitfinex_checksum(*frags)
        return crc ^ 1 if self.corrupt() else crc

    def _send(self, c, chan_id: int, *body, book: bool = False) -> None:
        msg = [chan_id, *body]
        if c.flags & TIMESTAMP:
            msg.append(time.time_ns() // 1_000_000)
        if c.flags & SEQ_ALL:
            c.seq += 1  # used up even if the frame is then lost
            msg.append(c.seq)
        c.chans[chan_id].last = time.monotonic()
        self.send(c, msg, book=book)

    # -- connection ------------------------------------------------------------------------
    def on_open(self, c) -> None:
        c.flags, c.seq = 0, 0
        c.chans = {}  # chanId -> _Chan
        c.authed, c.dms, c.held = False, False, None  # order entry: logged on, dead-man switch, a held batch
        self.send(c, {"event": "info", "version": 2, "serverId": f"sim-{self.port}", "platform": {"status": 1}})

    def on_message(self, c, msg) -> None:
        if isinstance(msg, list):
            self._input(c, msg)
            return
        ev = msg.get("event") if isinstance(msg, dict) else None
        if ev == "auth":
            self._auth(c, msg)
        elif ev == "conf":
            c.flags = int(msg.get("flags", 0))
            self.send(c, {"event": "conf", "status": "OK", "flags": c.flags})
        elif ev == "ping":
            self.send(c, {"event": "pong", "ts": time.time_ns() // 1_000_000, "cid": msg.get("cid")})
        elif ev == "subscribe":
            self._subscribe(c, msg)
        elif ev == "unsubscribe":
            chan = msg.get("chanId")
            if c.chans.pop(chan, None) is None:
                self.send(c, {"event": "error", "msg": "unsubscribe: invalid", "code": 10400})
            else:
                self.send(c, {"event": "unsubscribed", "status": "OK", "chanId": chan})
        else:
            self.send(c, {"event": "error", "msg": "unknown event", "code": 10000})

    def on_bad_message(self, c, text) -> None:
        self.send(c, {"event": "error", "msg": "unknown event", "code": 10000})

    def _subscribe(self, c, msg: dict) -> None:
        kind, sym = msg.get("channel"), msg.get("symbol", "")
        if sym not in self.instruments and "t" + sym in self.instruments:
            sym = "t" + sym
        fail = None
        if kind not in ("book", "trades"):
            fail = (10300, "subscribe: failed (channel not served by the simulator)")
        elif sym not in self.instruments:
            fail = (10300, "subscribe: failed (symbol: invalid)")
        elif kind == "book" and msg.get("prec", "P0") != "P0":
            fail = (10011, "subscribe: invalid prec (the simulator serves P0)")
        elif kind == "book" and str(msg.get("len", "25")) not in LENGTHS:
            fail = (10012, "subscribe: invalid len")
        elif any(ch.kind == kind and ch.symbol == sym for ch in c.chans.values()):
            fail = (10301, "subscribe: dup")
        if fail:
            self.send(c, {"event": "error", "msg": fail[1], "code": fail[0], "channel": kind, "symbol": sym})
            return
        self.next_chan += 1
        chan_id = self.next_chan
        ack = {"event": "subscribed", "channel": kind, "chanId": chan_id, "symbol": sym}
        if kind == "book":
            depth = str(msg.get("len", "25"))
            ack.update(prec="P0", freq=msg.get("freq", "F0"), len=depth)
            view = DepthView(int(depth), self.books[sym])
        else:
            view = None
        ack["pair"] = sym[1:]
        if "subId" in msg:
            ack["subId"] = msg["subId"]
        c.chans[chan_id] = _Chan(kind, sym, view)
        self.send(c, ack)
        if view is not None:
            rows = [self._entry(sym, side, p, q) for side in (BID, ASK) for p, q in view.book.top(side, view.book.depth)]
            self._send(c, chan_id, rows)
            if c.flags & OB_CHECKSUM:
                self._send(c, chan_id, "cs", self._checksum(sym, view))
        else:
            self._send(c, chan_id, [self._trade(sym, t, ts) for t, ts in reversed(self.recent_trades[sym])])

    def _trade(self, sym: str, t, ts: int) -> list:
        inst = self.instruments[sym]
        return [t.trade_id, ts // 1_000_000, raw(js_number(t.side * t.size, inst.size_scale)),
                raw(js_number(t.price, inst.price_scale))]

    def reconnect_message(self, c):
        return {"event": "info", "code": 20051, "msg": "Stop/Restart Websocket Server (please reconnect)"}

    # -- market ----------------------------------------------------------------------------
    def publish(self, step) -> None:
        sym = step.symbol
        changed = {(s, p) for s, p, _ in step.levels}
        trades = [self._trade(sym, t, step.ts) for t in step.trades]
        for c in self.clients:
            for chan_id, ch in list(c.chans.items()):
                if ch.symbol != sym:
                    continue
                if ch.kind == "trades":
                    for t in trades:
                        self._send(c, chan_id, "te", t)
                        self._send(c, chan_id, "tu", t)
                elif step.levels:
                    self._book_update(c, chan_id, ch, changed)

    def _book_update(self, c, chan_id: int, ch: _Chan, changed: set) -> None:
        levels = ch.view.diff(self.books[ch.symbol], changed)
        if not levels:
            return  # nothing changed inside the subscribed length
        entries = [self._entry(ch.symbol, s, p, q) for s, p, q, _ in levels]
        batches = [(entries, levels)] if c.flags & BULK_UPDATES else [([e], [lv]) for e, lv in zip(entries, levels)]
        for body, lvs in batches:
            self._send(c, chan_id, body if len(body) > 1 else body[0], book=True)
            ch.view.apply(lvs)  # as the client applies (and truncates) this message
            if c.flags & OB_CHECKSUM:
                self._send(c, chan_id, "cs", self._checksum(ch.symbol, ch.view))

    def idle(self, now: float) -> None:
        self._orders_idle(now)
        for c in self.clients:
            for chan_id, ch in c.chans.items():
                if now - ch.last >= self.hb_s:
                    self._send(c, chan_id, "hb")
            if c.authed and now - c.last_sent >= self.hb_s:
                self.send(c, [0, "hb"])

    # -- REST ------------------------------------------------------------------------------
    def rest(self, req: Request):
        path, query = req.path, req.query
        if req.method == "POST" and path.startswith(PRIVATE):
            return self._rest_private(req)
        if req.method == "GET":
            if path == "/v2/platform/status":
                if self.clock_skew_ns:  # after the server's own Date: the one a client reads
                    return Reply(200, [1], {"Date": formatdate((time.time_ns() + self.clock_skew_ns) / 1e9,
                                                               usegmt=True)})
                return [1]
            if path == "/v2/conf/pub:info:pair":
                rows = []
                for inst in self.instruments.values():
                    info = [None] * 12
                    info[3] = js_number(max(inst.min_size, inst.lot), inst.size_scale)
                    info[4] = "2000.0"
                    rows.append([inst.symbol[1:], info])
                return [rows]
            if path == "/v2/conf/pub:list:pair:exchange":
                return [[s[1:] for s in self.instruments]]
            parts = [p for p in path.split("/") if p]
            if parts[:2] == ["v2", "book"] and len(parts) == 4:
                sym, prec = parts[2], parts[3]
                if sym not in self.instruments or prec != "P0":
                    raise RestError(500, ["error", 10020, "symbol: invalid" if prec == "P0" else "prec: invalid"])
                n = int(query.get("len", 25))
                book = self.books[sym]
                return [self._entry(sym, side, p, q) for side in (BID, ASK) for p, q in book.top(side, n)]
        raise RestError(404, ["error", 10020, f"unknown endpoint {path}"])

    def rate_limit_body(self, status: int):
        return ["error", 11010, "ratelimit: error"]

    # -- order entry -----------------------------------------------------------------------
    def _init_orders(self, credentials, balances, maker_bps, taker_bps, permissions, orders_per_5min,
                     clock_skew_ms) -> None:
        self._init_account(credentials, {DEFAULT_KEY: DEFAULT_SECRET}, balances, DEFAULT_BALANCES, maker_bps,
                           taker_bps)
        self.permissions = {k: (bool(r), bool(w)) for k, (r, w) in (permissions or PERMISSIONS).items()}
        self.orders_per_5min = int(orders_per_5min)
        self.clock_skew_ns = int(clock_skew_ms) * 1_000_000
        self.nonces: dict[str, int] = {}  # key -> the last nonce it used (WebSocket and REST alike)
        self.new_times: deque[int] = deque()
        self._next_oid = ORDER_ID_BASE
        self._bal_sent: dict[str, tuple] = {}
        self._dms: list = []  # logged-on connections that asked for the dead-man switch
        # trades: (tu / REST trade array, ns, cid)

    # the truth about the account (and account(), balance(), order_state(), the faults: sim/account.py)
    def open_orders(self) -> dict:
        """Client id -> the engine's state of each open order."""
        with self.lock:
            return {self.sim_orders[st.order_id].cid: st for st in self.engine.open_orders(self.venue)}

    def fills_of(self, cid: int) -> list:
        with self.lock:
            return [list(t) for t, _, c in self.trades if c == cid]

    # engine in and out
    def _apply(self, step) -> None:
        super()._apply(step)
        now = self._feed_engine(step)
        if now is not None:
            self._stream(self._collect(now)[1])

    def _collect(self, now: int) -> tuple[list, list]:
        """The engine's messages since the last call -> (updates, account-channel messages)."""
        out, self._engine_out = self._engine_out, []
        ups, msgs = [], []
        for port, m in out:
            if port == "fills":
                so = self.sim_orders[m.order_id]
                inst = self.instruments[so.sym]
                st = self.engine.order(so.oid)
                head = [TRADE_ID_BASE + m.trade_id, so.sym, _ms(m.exch_ts), so.oid,
                        raw(js_number(m.side * m.size, inst.size_scale)), raw(js_number(m.price, inst.price_scale)),
                        so.type, raw(js_number(st.price if st else m.price, inst.price_scale)),
                        1 if m.liquidity == 1 else -1]
                tu = head + [raw(js_number(-m.fee, inst.price_scale)), inst.quote, so.cid]
                self.trades.append((tu, m.exch_ts, so.cid))
                msgs += [[0, "te", head + [None, None, so.cid]], [0, "tu", tu]]
            elif port == "updates":
                ups.append(m)
                so = self.sim_orders.get(m.order_id)
                st = _S(m.status)
                if so is None or st in (_S.ACK, _S.CANCEL_REJECTED):
                    continue
                if st == _S.REJECTED:  # a post-only that would cross is taken, then cancelled; else: the n says it
                    if m.reason == Reject.POST_ONLY:
                        msgs.append([0, "oc", self._order_arr(so, m, "POSTONLY CANCELED")])
                    continue
                if st in (_S.OPEN, _S.PARTIALLY_FILLED):
                    kind, so.announced = ("ou" if so.announced else "on"), True
                else:
                    kind = "oc"
                msgs.append([0, kind, self._order_arr(so, m)])
            elif port == "balances":
                asset = m.asset.rstrip(b"\0").decode()
                if self._bal_sent.get(asset) == (m.total, m.available):
                    continue
                self._bal_sent[asset] = (m.total, m.available)
                msgs.append([0, "wu", self._wallet(asset, m.total, m.available, m.scale)])
        return ups, msgs

    def _wallet(self, asset: str, total: int, avail: int, scale: int) -> list:
        return ["exchange", asset, raw(js_number(total, scale)), 0, raw(js_number(avail, scale)), None, None]

    def _status_text(self, so, status, filled: int, avg: str) -> str:
        inst = self.instruments[so.sym]
        done = f"@ {avg}({js_number(so.side * filled, inst.size_scale)})"
        if status == _S.OPEN or status == _S.ACK:
            return "ACTIVE"
        if status == _S.PARTIALLY_FILLED:
            return f"PARTIALLY FILLED {done}"
        if status == _S.FILLED:
            return f"EXECUTED {done}"
        if status == _S.EXPIRED:
            return "IOC CANCELED"
        return f"CANCELED was: PARTIALLY FILLED {done}" if filled else "CANCELED"

    def _order_arr(self, so, m=None, status_text: str | None = None) -> list:
        """The venue's order array of ``so``: as of the engine's update ``m`` (else its state now)."""
        st = self.engine.order(so.oid)
        inst = self.instruments[so.sym]
        src = m if m is not None else st
        price, size, filled = src.price, src.size, src.filled
        status = _S(src.status) if src.status else _S.ACK
        avg = js_number(st.quote * 10**inst.size_scale // st.filled, inst.price_scale) if st and st.filled else "0"
        text = status_text or self._status_text(so, status, filled, avg)
        updated = (m.exch_ts if m is not None else st.updated) or so.created
        return [so.oid, so.gid, so.cid, so.sym, _ms(so.created), _ms(updated),
                raw(js_number(so.side * (size - filled), inst.size_scale)),
                raw(js_number(so.side * size, inst.size_scale)),
                so.type, None, None, None, so.flags, text, None, None, raw(js_number(price, inst.price_scale)),
                raw(avg), 0, 0, None, None, None, 0, 0, None, None, None, "API>BFX", None, None, {}]

    def _stream(self, msgs: list) -> None:
        """Send account-channel messages to the logged-on connections; the stream faults apply."""
        if not msgs:
            return
        if self._cut and any(m[1] == "te" for m in msgs):
            self._cut -= 1
            self.order_counts["stream_cut"] += 1
            for c in list(self.clients):
                if c.open and c.authed:  # the fill is lost with the connection
                    c.open = False
                    self._close_later(c, 1011, "simulated private stream loss")
            return
        dup = reorder = False
        if self._dup:
            self._dup -= 1
            dup = True
        if self._reorder:
            self._reorder -= 1
            reorder = True
        for c in list(self.clients):
            if not (c.open and c.authed):
                continue
            if reorder and c.held is None:
                c.held = (msgs, time.monotonic())
                continue
            for m in msgs * (2 if dup else 1):
                self.send(c, m)
            if c.held is not None and c.held[0] is not msgs:
                for m in c.held[0]:
                    self.send(c, m)
                c.held = None

    def _notify(self, c, kind: str, arr, status: str, text: str) -> None:
        self.send(c, [0, "n", [_ms(time.time_ns()), kind, None, None, arr, None, status, text]])

    def _orders_idle(self, now: float) -> None:
        for c in self.clients:
            if c.held is not None and now - c.held[1] > 0.5:  # nothing came after it: send it late
                for m in c.held[0]:
                    self.send(c, m)
                c.held = None
        gone = [c for c in self._dms if not c.open or c not in self.clients]
        if gone:  # the dead-man switch: a closed socket that asked for it cancels every order
            self._dms = [c for c in self._dms if c not in gone]
            self.order_counts["dead_man_fired"] += 1
            self._cancel_all(time.time_ns())

    # log-on
    def _auth(self, c, msg: dict) -> None:
        if c.authed:
            self.send(c, {"event": "auth", "status": "FAILED", "chanId": 0, "code": 10101, "msg": "auth: dup"})
            return
        key = msg.get("apiKey")
        error, nonce = bfx_auth.verify_ws(self.credentials, msg, self.nonces.get(key))
        if error:
            self.order_counts[f"auth_{error[1]}"] += 1
            self.send(c, {"event": "auth", "status": "FAILED", "chanId": 0, "code": error[0], "msg": error[1]})
            return
        self.nonces[key] = nonce
        c.authed, c.dms = True, msg.get("dms") == bfx_auth.DMS_CANCEL_ALL
        if c.dms:
            self._dms.append(c)
        caps = {k: {"read": int(r), "write": int(w)} for k, (r, w) in self.permissions.items()}
        self.send(c, {"event": "auth", "status": "OK", "chanId": 0, "userId": 1, "auth_id": _secrets.token_hex(8),
                      "caps": caps})
        self.send(c, [0, "ps", []])
        self.send(c, [0, "ws", self._wallets()])
        self.send(c, [0, "os", [self._order_arr(self.sim_orders[st.order_id])
                                for st in self.engine.open_orders(self.venue)]])

    def _wallets(self) -> list:
        out = []
        for (venue, asset), scale in sorted(self.engine.scales.items()):
            total, avail = self.engine.balance(venue, asset)
            out.append(self._wallet(asset, total, avail, scale))
        return out

    # inputs on the socket
    def _input(self, c, msg: list) -> None:
        kind = msg[1] if len(msg) > 1 else None
        params = msg[3] if len(msg) > 3 and isinstance(msg[3], dict) else {}
        if msg[:1] != [0] or kind not in ("on", "ou", "oc", "oc_multi"):
            self.send(c, {"event": "error", "msg": "unknown event", "code": 10000})
            return
        if not c.authed:
            self.send(c, {"event": "error", "msg": "auth: not authenticated", "code": 10100})
            return
        now = time.time_ns()
        n = f"{kind}-req"
        fault = self._order_faults.popleft() if self._order_faults and kind != "oc_multi" else None
        if fault == "rate":
            self._notify(c, n, self._echo(params), "ERROR", RATE_TEXT)
            return
        try:
            so, arr, text, msgs = self._act(kind, params, now)
        except _VenueError as e:
            self.order_counts["refused"] += 1
            self._notify(c, n, e.arr if e.arr is not None else self._echo(params), "ERROR", str(e))
            self._stream(self._collect(now)[1])
            return
        if fault == "timeout":  # carried out; the answer and the order's own events are lost
            self.order_counts["not_answered"] += 1
            msgs = [m for m in msgs if not (m[1] in ("on", "ou", "oc") and m[2][0] == so.oid)]
        elif fault == "5xx":
            self.order_counts["answered_5xx"] += 1
            self._notify(c, n, arr, "FAILURE", "Internal error")
        else:
            self._notify(c, n, arr, "SUCCESS", text)
        self._stream(msgs)

    def _echo(self, params: dict) -> list:
        """The order array of a refused request: what it asked, no venue id."""
        arr = [params.get("id"), params.get("gid"), params.get("cid"), params.get("symbol")] + [None] * 28
        arr[6] = arr[7] = params.get("amount")
        arr[8], arr[16] = params.get("type"), params.get("price")
        return arr

    def _act(self, kind: str, params: dict, now: int):
        """Carry out an input (both paths): (order, notification's order array, its text, stream messages)."""
        if kind == "on":
            so, msgs = self._new(params, now)
            inst = self.instruments[so.sym]
            st = self.engine.order(so.oid)
            side = "buy" if so.side > 0 else "sell"
            text = f"Submitting {so.type.lower()} {side} order for {js_number(st.size, inst.size_scale)} {inst.base}."
            return so, self._order_arr(so), text, msgs
        if kind == "oc_multi":
            if params.get("all"):
                self._cancel_all(now)
            else:
                for oid in params.get("id") or ():
                    so = self.sim_orders.get(oid)
                    if so is not None:
                        self._cancel(so, now)
            return None, [], "Submitting multiple cancel orders", []
        so = self._order_of(params)
        if kind == "ou":
            msgs = self._update(so, params, now)
            return so, self._order_arr(so), f"Submitting update to {so.type.lower()} order.", msgs
        arr = self._order_arr(so)  # the order as it stood when its cancel was taken
        msgs = self._cancel(so, now)
        return so, arr, f"Submitted for cancellation; waiting for confirmation (ID: {so.oid}).", msgs

    def _order_of(self, params: dict) -> _SimOrder:
        so = None
        if params.get("id") is not None:
            so = self.sim_orders.get(params["id"])
        elif params.get("cid") is not None:
            so = self.by_cid.get(params["cid"])
            if so is not None and so.cid_date != params.get("cid_date"):
                so = None  # a client id is found with the day its order was made
        st = self.engine.order(so.oid) if so is not None else None
        if st is None or st.status in (_S.FILLED, _S.CANCELLED, _S.EXPIRED, _S.REJECTED):
            raise _VenueError(NOT_FOUND, self._echo(params))
        return so

    def _num(self, v, scale: int, what: str, arr) -> int:
        if isinstance(v, bool) or v is None:
            raise _VenueError(f"Invalid order: {what}", arr)
        try:
            return to_fixed(v if isinstance(v, str) else repr(v), scale)
        except FixedPointError:
            raise _VenueError(f"Invalid order: {what} precision", arr) from None

    def _new(self, p: dict, now: int) -> tuple[_SimOrder, list]:
        arr = self._echo(p)
        inst = self.instruments.get(str(p.get("symbol")))
        if inst is None:
            raise _VenueError("Invalid order: symbol", arr)
        kind = p.get("type")
        if kind not in ("EXCHANGE LIMIT", "EXCHANGE IOC"):
            raise _VenueError("Invalid order: type not served by the simulator", arr)
        gid, cid, flags = p.get("gid"), p.get("cid"), p.get("flags") or 0
        if not (gid is None or type(gid) is int and 0 <= gid < 1 << 31) or type(cid) is not int \
                or not 0 <= cid < 1 << 45 or type(flags) is not int:
            raise _VenueError("Invalid order: gid, cid or flags", arr)
        amount = self._num(p.get("amount"), inst.size_scale, "amount", arr)
        price = self._num(p.get("price"), inst.price_scale, "price", arr)
        win = self.new_times
        while win and win[0] <= now - 300_000_000_000:
            win.popleft()
        if len(win) >= self.orders_per_5min:
            self.order_counts["rate_limited"] += 1
            raise _VenueError(RATE_TEXT, arr)
        win.append(now)
        side = 1 if amount > 0 else -1
        oid = self._oid()
        so = _SimOrder(oid, gid, cid, inst.symbol, inst.id, side, kind, flags & FLAG_POST_ONLY, now)
        self.sim_orders[oid] = so
        oflags = (OrderFlags.POST_ONLY if flags & FLAG_POST_ONLY else 0) | (OrderFlags.IOC if kind == "EXCHANGE IOC"
                                                                            else 0)
        self.engine.act(OrderRequest(oid, 0, price, abs(amount), inst.id, 0, 0, OrderAction.NEW, side, int(oflags)),
                        now)
        ups, msgs = self._collect(now)
        mine = [u for u in ups if u.order_id == oid]
        if mine and mine[0].status == _S.REJECTED and mine[0].reason != Reject.POST_ONLY:
            del self.sim_orders[oid]
            self._stream(msgs)
            text = REJECT_TEXT.get(Reject(mine[0].reason), "Invalid order")
            raise _VenueError(text.format(amount=p.get("amount"), pair=inst.symbol[1:], price=p.get("price"),
                                          base=inst.base, quote=inst.quote,
                                          min=from_fixed(inst.min_size, inst.size_scale)), arr)
        if cid in self.by_cid and self.by_cid[cid].cid_date == so.cid_date:
            self.order_counts["duplicate_cid"] += 1  # the venue does not enforce it: counted here
        self.by_cid[cid] = so
        self.placed[cid] += 1
        self.order_counts["placed"] += 1
        return so, msgs

    def _update(self, so: _SimOrder, p: dict, now: int) -> list:
        st = self.engine.order(so.oid)
        inst = self.instruments[so.sym]
        arr = self._order_arr(so)
        price = self._num(p["price"], inst.price_scale, "price", arr) if p.get("price") is not None else st.price
        rest = so.side * (st.size - st.filled)  # the signed amount left
        if p.get("amount") is not None:
            rest = self._num(p["amount"], inst.size_scale, "amount", arr)
        elif p.get("delta") is not None:
            rest += self._num(p["delta"], inst.size_scale, "delta", arr)
        if rest * so.side <= 0:
            raise _VenueError("Invalid order: amount", arr)
        self.engine.act(OrderRequest(self._oid(), so.oid, price, st.filled + abs(rest), so.iid, 0, 0,
                                     OrderAction.AMEND, so.side, 0), now)
        ups, msgs = self._collect(now)
        for u in ups:
            if u.order_id == so.oid and u.status == _S.CANCEL_REJECTED:
                self._stream(msgs)
                raise _VenueError(REJECT_TEXT.get(Reject(u.reason), "Invalid order").format(
                    amount=js_number(rest, inst.size_scale), pair=inst.symbol[1:],
                    price=from_fixed(price, inst.price_scale), base=inst.base, quote=inst.quote,
                    min=from_fixed(inst.min_size, inst.size_scale)), arr)
        return msgs

    def _cancel(self, so: _SimOrder, now: int) -> list:
        if self._fill_before_cancel(so, now):
            self._stream(self._collect(now)[1])
            raise _VenueError(NOT_FOUND, self._order_arr(so))
        self.engine.act(OrderRequest(self._oid(), so.oid, 0, 0, so.iid, 0, 0, OrderAction.CANCEL, so.side, 0), now)
        ups, msgs = self._collect(now)
        for u in ups:
            if u.order_id == so.oid and u.status == _S.CANCEL_REJECTED:
                self._stream(msgs)
                raise _VenueError(NOT_FOUND, self._order_arr(so))
        return msgs

    def _cancel_all(self, now: int) -> int:
        live = self.engine.open_orders(self.venue)
        if not live:
            return 0
        self.engine.act(OrderRequest(self._oid(), 0, 0, 0, live[0].instrument, 0, 0, OrderAction.CANCEL_ALL, 1, 0),
                        now)
        ups, msgs = self._collect(now)
        self._stream(msgs)
        return sum(1 for u in ups if u.status == _S.CANCELLED)

    def _oid(self) -> int:
        self._next_oid += 1
        return self._next_oid

    # the private REST calls
    def _rest_private(self, req: Request):
        headers = {k: v for k, v in req.headers.items()}
        key = next((v for k, v in headers.items() if k.lower() == "bfx-apikey"), "")
        error, nonce = bfx_auth.verify_rest(self.credentials, req.path, headers, req.body, self.nonces.get(key))
        if error:
            self.order_counts[f"auth_{error[1]}"] += 1
            raise RestError(500, ["error", *error])
        self.nonces[key] = nonce
        name = req.path[len(PRIVATE):]
        if name not in NEED:
            raise RestError(404, ["error", 10020, f"unknown endpoint {req.path}"])
        need = NEED[name]
        if need is not None and not self.permissions.get(need[0], (False, False))[need[1]]:
            raise RestError(500, ["error", *bfx_auth.NO_PERMISSION])
        p = req.json() or {}
        if not isinstance(p, dict):
            raise RestError(500, ["error", 10020, "body: invalid"])
        now = time.time_ns()
        if name == "r/permissions":
            return [[k, int(r), int(w)] for k, (r, w) in self.permissions.items()]
        if name == "r/wallets":
            return self._wallets()
        ids = set(p.get("id") or ())
        if name == "r/orders":
            return [self._order_arr(self.sim_orders[st.order_id]) for st in self.engine.open_orders(self.venue)
                    if not ids or st.order_id in ids]
        if name == "r/orders/hist":
            start = int(p.get("start") or 0) * 1_000_000
            out = []
            for so in reversed(self.sim_orders.values()):  # newest first
                st = self.engine.order(so.oid)
                if st is not None and st.status in (_S.FILLED, _S.CANCELLED, _S.EXPIRED, _S.REJECTED) \
                        and so.created >= start and (not ids or so.oid in ids):
                    out.append(self._order_arr(so))
            return out[:int(p.get("limit") or 100)]
        if name == "r/trades/hist":
            start = int(p.get("start") or 0) * 1_000_000
            rows = [t for t, ts, _ in self.trades if ts >= start]
            rows = rows if p.get("sort") == 1 else rows[::-1]
            return rows[:int(p.get("limit") or 25)]
        kind = {"w/order/submit": "on", "w/order/update": "ou", "w/order/cancel": "oc",
                "w/order/cancel/multi": "oc_multi"}[name]
        fault = self._order_faults.popleft() if self._order_faults and kind != "oc_multi" else None
        if fault == "rate":
            raise RestError(500, ["error", 10001, RATE_TEXT])
        try:
            so, arr, text, msgs = self._act(kind, p, now)
        except _VenueError as e:
            self.order_counts["refused"] += 1
            self._stream(self._collect(now)[1])
            raise RestError(500, ["error", 10001, str(e)]) from None
        self._stream(msgs)
        if fault == "5xx":
            self.order_counts["answered_5xx"] += 1
            return Reply(503, b"503 Service Temporarily Unavailable", {"Content-Type": "text/plain"})
        if fault == "timeout":
            self.order_counts["not_answered"] += 1
            return Reply(504, b"504 Gateway Time-out", {"Content-Type": "text/plain"})
        return [_ms(now), f"{kind}-req", None, None, [arr] if kind == "on" else arr, None, "SUCCESS", text]
