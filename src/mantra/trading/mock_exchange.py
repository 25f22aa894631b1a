"""The mock exchange: plays every venue in paper trading and backtests.

It keeps its own books from the market-data streams and matches our orders against them; our
orders never enter those public books (the market does not react to us).

- A marketable order walks the opposite levels up to its limit (partial fills, taker fee).  What
  we took from a level is remembered until the feed next reports that level, so the same
  liquidity is never taken twice.
- A resting order joins the back of its level: queue ahead = the level's size when it joined.
  Queue model, worst case: the queue ahead shrinks by trades at our price (the front of the
  queue trades first) and is clamped to the level's size when the level shrinks below it; other
  size decreases are assumed to be cancellations behind us.  The order fills with what trades at
  its price beyond the queue ahead, fully when a trade prints through its price, and against the
  opposite side when the book moves through it (maker fee, at our price).
- Requests take effect ``latency_ns`` after they arrive, answers are published ``response_ns``
  after the fact, both on the actor's clock (so it works under the simulated clock).
- Rejects as a venue gives them (``accounts.Reject``): unknown instrument, bad request, tick,
  lot, min size, min notional, post-only that would cross, insufficient balance; CANCEL/AMEND of
  an unknown order or AMEND on a venue without it answer CANCEL_REJECTED.
- Money per order is exact: cumulative cost, proceeds and fees are rounded once on the running
  exact sum (so rounding never adds up across partial fills); a sell's fees never exceed its
  proceeds.  A buy locks its worst-case cost at the limit with the larger fee rate.

Params: ``instruments`` (registry), ``venues = { binance = { maker_bps = 1, taker_bps = 5,
latency_ns = 0, response_ns = 0, amend = true, balances = { BTC = "1", USDT = "50000" } } }``,
``l2_ports`` / ``trade_ports`` (input ports carrying L2Update / TradeUpdate, default ``l2`` /
``trades``).
"""

from __future__ import annotations

import heapq
from collections import Counter

from ..book import Book
from ..fixed import to_fixed
from ..instruments import VENUE_IDS, Instrument
from ..spine.messages import BalanceUpdate, Fill, Liquidity, OrderAction, OrderFlags, OrderRequest
from ..spine.messages import OrderStatus as S
from ..spine.messages import L2Update, OrderUpdate, TradeUpdate
from .accounts import AccountHandler, Reject
from .common import BPS, asset_scales, bind_ports, settings

_POST_ONLY, _IOC = int(OrderFlags.POST_ONLY), int(OrderFlags.IOC)


class _Venue:
    __slots__ = ("name", "id", "maker_bps", "taker_bps", "latency", "response", "amend", "seq")
    KEYS = ("maker_bps", "taker_bps", "latency_ns", "response_ns", "amend", "balances")

    def __init__(self, name, maker_bps=0, taker_bps=0, latency_ns=0, response_ns=0, amend=True, balances=None):
        if name not in VENUE_IDS:
            raise ValueError(f"unknown venue {name!r} (known: {', '.join(VENUE_IDS)})")
        if not isinstance(balances or {}, dict):
            raise ValueError(f"balances: expected a table of asset = amount, not {balances!r}")
        self.name, self.id = name, VENUE_IDS[name]
        self.maker_bps, self.taker_bps = int(maker_bps), int(taker_bps)
        self.latency, self.response, self.amend = int(latency_ns), int(response_ns), bool(amend)
        self.seq = 0


class _Order:
    """An order resting on (or passing through) the mock venue, with its exact money sums."""

    __slots__ = ("id", "inst", "venue", "side", "price", "size", "flags", "filled", "queue", "lock", "lkey",
                 "lmul", "n_num", "f_num", "charged", "fees", "proceeds", "vid")

    def __init__(self, r: OrderRequest, inst: Instrument, venue: _Venue, scales):
        self.id, self.inst, self.venue = r.order_id, inst, venue
        self.side, self.price, self.size, self.flags = r.side, r.price, r.size, r.flags
        self.filled = self.queue = 0
        self.lock = 0  # what this order holds of the locked asset (quote for a buy, base for a sell)
        self.lkey = (venue.name, inst.quote if r.side > 0 else inst.base)
        self.lmul = 10**(scales[self.lkey] - (inst.price_scale if r.side > 0 else inst.size_scale))
        self.n_num = self.f_num = 0  # exact sums of price*size and price*size*bps
        self.charged = self.fees = self.proceeds = 0  # cumulative, rounded, price scale
        venue.seq += 1
        self.vid = f"{venue.name[:3]}-{venue.seq}".encode()

    def lock_needed(self, price: int, remaining: int) -> int:
        """The lock the rest of the order needs (balance scale).  Buy: the most the remaining size
        can still cost at ``price``, fees at the larger rate; sell: the base still to deliver."""
        if self.side < 0:
            return remaining * self.lmul
        s = 10**self.inst.size_scale
        n = self.n_num + price * remaining
        f = self.f_num + price * remaining * max(self.venue.maker_bps, self.venue.taker_bps)
        return (-(-n // s) + -(-f // (s * BPS)) - self.charged - self.fees) * self.lmul


class MockExchange(AccountHandler):
    loop_after_input = False  # handlers act on what is due themselves; the loop runs at wake-ups
    venues: dict = {}
    l2_ports = ("l2",)
    trade_ports = ("trades",)

    def __init__(self, **params):
        super().__init__(**params)
        self.books: dict[int, Book] = {}  # the runtime applies L2Updates to them in C
        self.book_ports = {p: self.books for p in self.l2_ports}
        self.inputs = ("requests",) + bind_ports(self, self.l2_ports, self._on_l2) + \
            bind_ports(self, self.trade_ports, self._on_trade)
        self.messages = {**self.messages, **{p: L2Update for p in self.l2_ports},
                         **{p: TradeUpdate for p in self.trade_ports}}
        # venue settings checked here, before the system starts, not in a forked process
        self.v = {name: settings(f"venues.{name}", _Venue, cfg, name=name)
                  for name, cfg in dict(self.venues).items()}

    def on_start(self) -> None:
        self._last_due: dict[str, int] = {}
        super().on_start()
        reg = self.registry
        self.scales = asset_scales(reg)
        self.books.update((i, Book()) for i in self.served)  # what we take is remembered there (Book.take)
        self.resting: dict[int, dict[int, _Order]] = {i: {} for i in self.served}
        self.orders: dict[int, _Order] = {}  # live orders by id
        self.seen_ids: set[int] = set()
        self.bal: dict[tuple[str, str], list[int]] = {}  # (venue, asset) -> [total, locked], asset scale
        self.counts: Counter = Counter()
        self.pending: list = []  # (due, seq, origin, request)
        self.outbox: list = []  # (due, seq, origin, port, message)
        self._seq = self._trade_id = self._ts = 0
        self._changed: set[tuple[str, str]] = set()
        for name, cfg in dict(self.venues).items():
            for asset, amount in (cfg or {}).get("balances", {}).items():
                key = (name, asset)
                if key not in self.scales:
                    raise ValueError(f"{self.name}: balance of {asset} on {name}: no instrument uses it")
                self.bal[key] = [to_fixed(str(amount), self.scales[key]), 0]
                self._changed.add(key)
        for key in self.scales:
            self.bal.setdefault(key, [0, 0])
        self._flush_balances(self._stamp(self.clock.now()), 0)
        self._send_due(self.clock.now())

    # ------------------------------------------------------------------ inputs
    def submit(self, r: OrderRequest) -> None:
        inst = self.registry.by_id.get(r.instrument)
        venue = self.v[inst.venue]
        # a venue acts on one connection's requests in the order sent, whatever their stamps
        due = max(self.clock.now() + venue.latency, self._last_due.get(inst.venue, 0))
        self._last_due[inst.venue] = due
        self._seq += 1
        heapq.heappush(self.pending, (due, self._seq, self.origin, r))
        self._set_wakeup()

    def _on_l2(self, m) -> None:
        """The last record of an exchange message: its levels are in the book already.  Requests
        that were due act before it (the runner runs this actor's loop at their due time)."""
        if self.resting[m.instrument]:
            self._origin = self.origin
            self._book_moved(m.instrument, self.books[m.instrument], self.clock.now())

    def _on_trade(self, t: TradeUpdate) -> None:
        rest = self.resting.get(t.instrument)
        if not rest:
            return
        now = self.clock.now()
        self._apply_due(now)
        self._origin = self.origin
        ts = None
        for o in list(rest.values()):
            if o.side > 0:
                through, at = t.price < o.price, t.price == o.price and t.side <= 0
            else:
                through, at = t.price > o.price, t.price == o.price and t.side >= 0
            if through:
                q = o.size - o.filled
            elif at:
                q = min(max(t.size - o.queue, 0), o.size - o.filled)
                o.queue = max(o.queue - t.size, 0)
            else:
                continue
            if q > 0:
                ts = ts or self._stamp(now)
                self._fill(o, o.price, q, Liquidity.MAKER, ts)
        if ts:
            self._flush_balances(ts, self.origin)

    def loop(self) -> bool:
        now = self.clock.now()
        did = self._apply_due(now)
        did |= self._send_due(now)
        self._set_wakeup()
        return did

    # ------------------------------------------------------------------ timing
    def _stamp(self, now: int) -> int:
        """Event time: strictly increasing (a ns ahead of the clock when events share a clock
        tick), so a balance at T covers exactly the fills at <= T."""
        self._now = now
        self._ts = max(now, self._ts + 1)
        return self._ts

    def _apply_due(self, now: int) -> bool:
        pending, did = self.pending, False
        while pending and pending[0][0] <= now:
            _, _, origin, r = heapq.heappop(pending)
            self._origin = origin
            ts = self._stamp(now)
            self._act(r, ts)
            self._flush_balances(ts, origin)
            did = True
        return did

    def _send_due(self, now: int) -> bool:
        out, did = self.outbox, False
        while out and out[0][0] <= now:
            _, _, origin, port, msg = heapq.heappop(out)
            self.set_origin(origin)
            getattr(self, port).send(msg)
            did = True
        return did

    def _set_wakeup(self) -> None:
        w = [q[0][0] for q in (self.pending, self.outbox) if q]
        self.wakeup = min(w) if w else 0

    def _emit(self, venue: _Venue, port: str, msg, ts: int, origin: int) -> None:
        self._seq += 1
        due = self._now + venue.response
        heapq.heappush(self.outbox, (due, self._seq, origin, port, msg))
        if not self.wakeup or due < self.wakeup:
            self.wakeup = due  # handlers answer through the loop: ask for it

    # ------------------------------------------------------------------ requests
    _origin = _now = 0

    def _act(self, r: OrderRequest, ts: int) -> None:
        inst = self.registry.by_id[r.instrument]
        venue = self.v[inst.venue]
        a = r.action
        if a == OrderAction.NEW:
            self._new(r, inst, venue, ts)
        elif a == OrderAction.CANCEL:
            o = self.orders.get(r.ref_id)
            if o is None:
                self._refuse_change(r, inst, venue, Reject.UNKNOWN_ORDER, ts)
            else:
                self._cancel(o, ts)
        elif a == OrderAction.AMEND:
            self._amend(r, inst, venue, ts)
        elif a == OrderAction.CANCEL_ALL:
            for o in [o for o in self.orders.values() if o.venue is venue]:
                self._cancel(o, ts)
        else:
            self._count_bad(r, f"unknown action {a}")

    def _count_bad(self, r, why: str) -> None:
        self.counts[why] += 1
        self.log.warning("%s: request %d ignored: %s", self.name, r.order_id, why)

    def _check(self, inst: Instrument, side: int, price: int, size: int, flags: int) -> Reject:
        if side not in (1, -1) or price <= 0 or size <= 0:
            return Reject.BAD_REQUEST
        if price % inst.tick:
            return Reject.TICK
        if size % inst.lot:
            return Reject.LOT
        if size < inst.min_size:
            return Reject.MIN_SIZE
        if price * size // 10**inst.size_scale < inst.min_notional:
            return Reject.MIN_NOTIONAL
        if flags & _POST_ONLY:
            book = self.books[inst.id]
            best = book.best_ask() if side > 0 else book.best_bid()
            if best is not None and (best <= price if side > 0 else best >= price):
                return Reject.POST_ONLY
        return Reject.NONE

    def _new(self, r: OrderRequest, inst: Instrument, venue: _Venue, ts: int) -> None:
        if r.order_id in self.seen_ids:
            # answering would speak about the live order with that id: count and log instead
            self._count_bad(r, "duplicate order id")
            return
        self.seen_ids.add(r.order_id)
        why = self._check(inst, r.side, r.price, r.size, r.flags)
        o = _Order(r, inst, venue, self.scales)
        if why == Reject.NONE:
            need = o.lock_needed(r.price, r.size)
            if need > self._available(o):
                why = Reject.INSUFFICIENT_BALANCE
        if why != Reject.NONE:
            self.counts[why.name] += 1
            self._update(o, S.REJECTED, ts, why)
            return
        self._lock(o, need)
        self.orders[o.id] = o
        self._update(o, S.ACK, ts)
        self._cross(o, ts)
        if o.filled >= o.size:
            return
        if o.flags & _IOC:
            self._close(o, S.EXPIRED, ts)
            return
        o.queue = self._level(o)
        self.resting[inst.id][o.id] = o
        if not o.filled:
            self._update(o, S.OPEN, ts)

    def _amend(self, r: OrderRequest, inst: Instrument, venue: _Venue, ts: int) -> None:
        o = self.orders.get(r.ref_id)
        if not venue.amend:
            return self._refuse_change(r, inst, venue, Reject.UNSUPPORTED, ts)
        if o is None:
            return self._refuse_change(r, inst, venue, Reject.UNKNOWN_ORDER, ts)
        why = self._check(inst, o.side, r.price, r.size, o.flags) if r.size > o.filled else Reject.BAD_REQUEST
        need = 0
        if why == Reject.NONE:
            need = o.lock_needed(r.price, r.size - o.filled) - o.lock
            if need > self._available(o):
                why = Reject.INSUFFICIENT_BALANCE
        if why != Reject.NONE:
            self.counts[why.name] += 1
            return self._refuse_change(r, inst, venue, why, ts, o)
        self._lock(o, need)
        requeue = r.price != o.price or r.size > o.size  # a smaller order keeps its place
        o.price, o.size = r.price, r.size
        if requeue:
            o.queue = self._level(o)
        self._update(o, S.PARTIALLY_FILLED if o.filled else S.OPEN, ts)
        self._cross(o, ts)

    def _refuse_change(self, r, inst, venue, why: Reject, ts: int, o: _Order | None = None) -> None:
        self.counts[f"cancel_rejected_{why.name}"] += 1
        price, size, filled = (o.price, o.size, o.filled) if o else (r.price, r.size, 0)
        self._emit(venue, "updates", OrderUpdate(r.ref_id, price, size, filled, ts, inst.id, int(S.CANCEL_REJECTED),
                                                 r.side, int(why), o.vid if o else b""), ts, self._origin)

    def _cancel(self, o: _Order, ts: int) -> None:
        self._close(o, S.CANCELLED, ts)

    def _close(self, o: _Order, status: S, ts: int) -> None:
        self.orders.pop(o.id, None)
        self.resting[o.inst.id].pop(o.id, None)
        self._lock(o, -o.lock)
        self._update(o, status, ts)

    def _update(self, o: _Order, status: S, ts: int, why: Reject = Reject.NONE) -> None:
        self._emit(o.venue, "updates", OrderUpdate(o.id, o.price, o.size, o.filled, ts, o.inst.id, int(status),
                                                   o.side, int(why), o.vid), ts, self._origin)

    # ------------------------------------------------------------------ matching
    def _level(self, o: _Order) -> int:
        return self.books[o.inst.id].size(o.side, o.price)

    def _cross(self, o: _Order, ts: int, at: int | None = None) -> None:
        """Take the opposite levels up to the limit.  ``at``: fill at this price as maker (a
        resting order the book moved through) instead of at each level's price as taker."""
        book = self.books[o.inst.id]
        opp = -o.side
        for price, size in book.levels(opp):  # what is left of each level after our earlier takes
            if (price > o.price) if o.side > 0 else (price < o.price):
                break
            left = o.size - o.filled
            if left <= 0:
                break
            q = min(size, left)
            book.take(opp, price, q)
            if at is None:
                self._fill(o, price, q, Liquidity.TAKER, ts)
            else:
                self._fill(o, at, q, Liquidity.MAKER, ts)

    def _book_moved(self, iid: int, book: Book, now: int) -> None:
        """After each exchange message: queues ahead shrink with their levels, and resting orders
        the book moved through fill as makers."""
        ts = None
        bb, ba = book.best_bid(), book.best_ask()
        size = book.size
        for o in list(self.resting[iid].values()):
            if o.queue:
                lvl = size(o.side, o.price)
                if lvl < o.queue:
                    o.queue = lvl
            if (o.side > 0 and ba is not None and ba <= o.price) or (o.side < 0 and bb is not None and bb >= o.price):
                ts = ts or self._stamp(now)
                self._cross(o, ts, at=o.price)
        if ts:
            self._flush_balances(ts, self.origin)

    def _fill(self, o: _Order, price: int, q: int, liq: Liquidity, ts: int) -> None:
        inst, venue = o.inst, o.venue
        bps = venue.taker_bps if liq == Liquidity.TAKER else venue.maker_bps
        s = 10**inst.size_scale
        o.n_num += price * q
        o.f_num += price * q * bps
        fees = -(-o.f_num // (s * BPS))
        base, quote = (venue.name, inst.base), (venue.name, inst.quote)
        mq = 10**(self.scales[quote] - inst.price_scale)
        mb = 10**(self.scales[base] - inst.size_scale)
        bal = self.bal
        if o.side > 0:
            charged = -(-o.n_num // s)
            pay = ((charged - o.charged) + (fees - o.fees)) * mq
            o.charged = charged
            bal[quote][0] -= pay
            bal[base][0] += q * mb
            self._lock(o, -min(pay, o.lock))
        else:
            got = o.n_num // s
            fees = min(fees, got)  # a sell's fees never exceed its proceeds
            bal[quote][0] += ((got - o.proceeds) - (fees - o.fees)) * mq
            bal[base][0] -= q * mb
            o.proceeds = got
            self._lock(o, -min(q * mb, o.lock))
        fee, o.fees = fees - o.fees, fees
        o.filled += q
        self._changed.add(base)
        self._changed.add(quote)
        self._trade_id += 1
        self._emit(venue, "fills", Fill(o.id, self._trade_id, price, q, fee, ts, inst.id, o.side, int(liq),
                                        inst.quote.encode()), ts, self._origin)
        if o.filled >= o.size:
            self._close(o, S.FILLED, ts)
        else:
            self._update(o, S.PARTIALLY_FILLED, ts)

    # ------------------------------------------------------------------ balances
    def _available(self, o: _Order) -> int:
        total, locked = self.bal[o.lkey]
        return total - locked

    def _lock(self, o: _Order, amount: int) -> None:
        """Change the order's lock by ``amount`` (the locked asset, at its balance scale)."""
        o.lock += amount
        self.bal[o.lkey][1] += amount
        self._changed.add(o.lkey)

    def _flush_balances(self, ts: int, origin: int) -> None:
        for key in sorted(self._changed):
            venue = self.v.get(key[0])
            if venue is None:
                continue
            total, locked = self.bal[key]
            self._emit(venue, "balances", BalanceUpdate(total, total - locked, ts, self.scales[key], venue.id,
                                                        key[1].encode()), ts, origin)
        self._changed.clear()
