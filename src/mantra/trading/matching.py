"""The matching engine: our orders against a venue's public book, as one venue would fill them.

One engine for every simulated venue: the mock exchange (paper trading, backtests) drives it from
its actor, and the venue simulators' order entry shares it.  It has no clock, no queues and no
actor: the caller applies the public levels to ``books[iid]`` (C ``Book``s: the runtime does it
for the mock exchange, a simulator calls ``book.apply(side, price, size)``), says when a message's
levels are in (``book_moved``), hands over public trades (``trade``) and requests (``act``), each
with its current time.  Everything the engine has to say goes to one callback given at
construction, ``emit(venue_name, port, message)``: ``port`` is ``"updates"`` (``OrderUpdate``),
``"fills"`` (``Fill``) or ``"balances"`` (``BalanceUpdate``).

Our orders never enter the public books (the market does not react to us).

- A marketable order walks the opposite levels up to its limit (partial fills, taker fee).  What
  we took from a level is remembered until the feed next reports that level, so the same
  liquidity is never taken twice.
- A resting order joins the back of its level: queue ahead = the level's size when it joined.
  Queue model, worst case: the queue ahead shrinks by trades at our price (the front of the
  queue trades first) and is clamped to the level's size when the level shrinks below it; other
  size decreases are assumed to be cancellations behind us.  The order fills with what trades at
  its price beyond the queue ahead, fully when a trade prints through its price, and against the
  opposite side when the book moves through it (maker fee, at our price).
- Rejects as a venue gives them (``accounts.Reject``): bad request, tick, lot, min size, min
  notional, post-only that would cross, insufficient balance; CANCEL/AMEND of an unknown order or
  AMEND on a venue without it answer CANCEL_REJECTED.  CANCEL_ALL cancels every live order of the
  request's instrument's venue, answering each.  A NEW that reuses an order id, or a request for
  an instrument the engine does not serve, is not answered (counted in ``counts`` and logged).
- Money per order is exact: cumulative cost, proceeds and fees are rounded once on the running
  exact sum (so rounding never adds up across partial fills); a sell's fees never exceed its
  proceeds.  A buy locks its worst-case cost at the limit with the larger fee rate.
- Event time (every message's ``exch_ts``): the caller's time, or a ns after the previous event's
  when events share a clock tick, so times strictly increase and a balance at T covers exactly the
  fills at <= T.  Balances that changed are published (at the event's time) after each request,
  after fills from the book or a trade, and on ``flush_balances``.
- Trade ids count up from 1 across venues; venue order ids are ``<first 3 letters of the
  venue>-<n>``, n counting NEW requests per venue.

Venue terms (``Venue``, from a ``venues`` settings table): ``maker_bps``, ``taker_bps``,
``amend`` (whether the venue amends in place), ``balances`` (starting balances, decimal text).
Balances are kept per (venue, asset) at the asset's scale (``common.asset_scales``).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from typing import Callable, NamedTuple

from ..book import Book
from ..fixed import to_fixed
from ..instruments import VENUE_IDS, Instrument
from ..spine.messages import BalanceUpdate, Fill, Liquidity, OrderAction, OrderFlags, OrderRequest
from ..spine.messages import OrderStatus as S
from ..spine.messages import OrderUpdate
from .accounts import Reject
from .common import BPS, asset_scales, load_registry, settings

_POST_ONLY, _IOC = int(OrderFlags.POST_ONLY), int(OrderFlags.IOC)

Emit = Callable[[str, str, object], None]  # (venue name, port, OrderUpdate | Fill | BalanceUpdate)


class Venue:
    """One venue's terms for the engine."""

    __slots__ = ("name", "id", "maker_bps", "taker_bps", "amend", "balances", "seq")
    KEYS = ("maker_bps", "taker_bps", "amend", "balances")

    def __init__(self, name, maker_bps=0, taker_bps=0, amend=True, balances=None):
        if name not in VENUE_IDS:
            raise ValueError(f"unknown venue {name!r} (known: {', '.join(VENUE_IDS)})")
        if not isinstance(balances or {}, dict):
            raise ValueError(f"balances: expected a table of asset = amount, not {balances!r}")
        self.name, self.id = name, VENUE_IDS[name]
        self.maker_bps, self.taker_bps, self.amend = int(maker_bps), int(taker_bps), bool(amend)
        self.balances = dict(balances or {})
        self.seq = 0  # NEW requests so far: venue order ids


class OrderState(NamedTuple):
    """What the venue knows of one order (``Matching.order``).  Money at the instrument's price
    scale: ``quote`` is what the fills cost (buy, rounded up) or brought (sell, rounded down) so
    far, ``fees`` the fees charged so far; ``created`` / ``updated``: event times."""

    order_id: int
    instrument: int
    venue: str
    side: int
    price: int
    size: int
    filled: int
    status: S
    flags: int
    venue_id: str
    quote: int
    fees: int
    created: int
    updated: int


class _Order:
    """An order resting on (or passing through) the venue, with its exact money sums."""

    __slots__ = ("id", "inst", "venue", "side", "price", "size", "flags", "filled", "queue", "lock", "lkey",
                 "lmul", "n_num", "f_num", "charged", "fees", "proceeds", "vid", "status", "created", "updated")

    def __init__(self, r: OrderRequest, inst: Instrument, venue: Venue, scales):
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
        self.status = 0
        self.created = self.updated = 0

    def lock_needed(self, price: int, remaining: int) -> int:
        """The lock the rest of the order needs (balance scale).  Buy: the most the remaining size
        can still cost at ``price``, fees at the larger rate; sell: the base still to deliver."""
        if self.side < 0:
            return remaining * self.lmul
        s = 10**self.inst.size_scale
        n = self.n_num + price * remaining
        f = self.f_num + price * remaining * max(self.venue.maker_bps, self.venue.taker_bps)
        return (-(-n // s) + -(-f // (s * BPS)) - self.charged - self.fees) * self.lmul

    def state(self) -> OrderState:
        return OrderState(self.id, self.inst.id, self.venue.name, self.side, self.price, self.size, self.filled,
                          S(self.status) if self.status else S.ACK, self.flags, self.vid.decode(),
                          self.charged if self.side > 0 else self.proceeds, self.fees, self.created, self.updated)


class Matching:
    """The engine for a set of venues.

    ``registry``: the instruments (an ``InstrumentRegistry`` or what ``common.load_registry``
    takes); the engine serves those of its venues.  ``venues``: ``{name: Venue}`` or
    ``{name: settings table}`` (keys ``Venue.KEYS``, checked).  ``emit(venue_name, port,
    message)``: where every answer goes, synchronously, in order.  ``books``: a dict to hold the
    books in (the caller's, when something else fills it by reference), default a new one.

    State the caller may read: ``books`` (iid -> Book), ``resting`` (iid -> {order_id: order},
    the orders that can fill from that book), ``counts`` (refusals and ignored requests by
    reason), ``bal`` ((venue, asset) -> [total, locked]), ``scales`` ((venue, asset) -> scale),
    ``orders`` (live orders by id).  Change them only through the methods.
    """

    def __init__(self, registry, venues: dict, emit: Emit, *, books: dict | None = None, name: str = "matching",
                 log: logging.Logger | None = None, retain: int = 10_000):
        self.registry = reg = load_registry(registry)
        self.v: dict[str, Venue] = {n: cfg if isinstance(cfg, Venue) else settings(f"venues.{n}", Venue, cfg, name=n)
                                    for n, cfg in dict(venues).items()}
        self.emit, self.name = emit, name
        self.log = log or logging.getLogger("mantra.matching")
        self.served = {i.id for i in reg if i.venue in self.v}
        self.scales = asset_scales(reg)
        self.books: dict[int, Book] = {} if books is None else books
        self.books.update((i, Book()) for i in self.served)  # what we take is remembered there (Book.take)
        self.resting: dict[int, dict[int, _Order]] = {i: {} for i in self.served}
        for i in self.served:
            self._watch(i)
        self.orders: dict[int, _Order] = {}  # live orders by id
        self.done: OrderedDict[int, _Order] = OrderedDict()  # the last ``retain`` finished ones
        self.retain = retain
        self.by_vid: dict[bytes, int] = {}  # venue order id -> order id, live and retained
        self.seen_ids: set[int] = set()
        self.bal: dict[tuple[str, str], list[int]] = {}  # (venue, asset) -> [total, locked], asset scale
        self.counts: Counter = Counter()
        self._trade_id = self._ts = 0
        self._changed: set[tuple[str, str]] = set()
        for vname, venue in self.v.items():
            for asset, amount in venue.balances.items():
                key = (vname, asset)
                if key not in self.scales:
                    raise ValueError(f"{name}: balance of {asset} on {vname}: no instrument uses it")
                self.bal[key] = [to_fixed(str(amount), self.scales[key]), 0]
                self._changed.add(key)
        for key in self.scales:
            self.bal.setdefault(key, [0, 0])

    # ------------------------------------------------------------------ inputs
    def stamp(self, now: int) -> int:
        """Event time: strictly increasing (a ns ahead of ``now`` when events share a clock
        tick), so a balance at T covers exactly the fills at <= T."""
        self._ts = max(now, self._ts + 1)
        return self._ts

    def act(self, r: OrderRequest, now: int) -> int:
        """Carry out a request (NEW / CANCEL / AMEND / CANCEL_ALL), answer it, publish the
        balances it changed; returns the event time."""
        ts = self.stamp(now)
        self._act(r, ts)
        self._flush(ts)
        return ts

    def book_moved(self, iid: int, now: int) -> None:
        """After a message's levels were applied to ``books[iid]``: queues ahead shrink with their
        levels, and resting orders the book moved through fill as makers."""
        rest = self.resting.get(iid)
        if not rest:
            return
        book = self.books[iid]
        ts = None
        bb, ba = book.best_bid(), book.best_ask()
        size = book.size
        for o in list(rest.values()):
            if o.queue:
                lvl = size(o.side, o.price)
                if lvl < o.queue:
                    o.queue = lvl
            if (o.side > 0 and ba is not None and ba <= o.price) or (o.side < 0 and bb is not None and bb >= o.price):
                ts = ts or self.stamp(now)
                self._cross(o, ts, at=o.price)
        self._watch(iid)  # queues ahead only shrank: fewer wake-ups
        if ts:
            self._flush(ts)

    def trade(self, iid: int, side: int, price: int, size: int, now: int) -> None:
        """A public trade (``side``: the aggressor's, 1 buy / -1 sell, 0 unknown): resting orders
        at its price fill beyond their queue ahead, those it printed through fill fully."""
        rest = self.resting.get(iid)
        if not rest:
            return
        ts = None
        for o in list(rest.values()):
            if o.side > 0:
                through, at = price < o.price, price == o.price and side <= 0
            else:
                through, at = price > o.price, price == o.price and side >= 0
            if through:
                q = o.size - o.filled
            elif at:
                q = min(max(size - o.queue, 0), o.size - o.filled)
                o.queue = max(o.queue - size, 0)
            else:
                continue
            if q > 0:
                ts = ts or self.stamp(now)
                self._fill(o, o.price, q, Liquidity.MAKER, ts)
        if ts:
            self._flush(ts)

    def flush_balances(self, now: int) -> int:
        """Publish the balances changed and not yet published (the starting balances, deposits);
        returns the event time used."""
        ts = self.stamp(now)
        self._flush(ts)
        return ts

    # ------------------------------------------------------------------ views and funding
    def order(self, order_id: int) -> OrderState | None:
        """A live order, or one of the last ``retain`` finished ones (rejected NEWs included)."""
        o = self.orders.get(order_id) or self.done.get(order_id)
        return o.state() if o is not None else None

    def order_id_of(self, venue_id: str | bytes) -> int | None:
        """Our order id for a venue order id (live and retained orders)."""
        return self.by_vid.get(venue_id.encode() if isinstance(venue_id, str) else venue_id)

    def open_orders(self, venue: str, instrument: int | None = None) -> list[OrderState]:
        """The venue's live orders (of one instrument if given), oldest first."""
        return [o.state() for o in self.orders.values()
                if o.venue.name == venue and (instrument is None or o.inst.id == instrument)]

    def balance(self, venue: str, asset: str) -> tuple[int, int]:
        """(total, available) at the asset's scale (``scales[(venue, asset)]``)."""
        total, locked = self._bal_of(venue, asset)
        return total, total - locked

    def deposit(self, venue: str, asset: str, amount: int | str) -> None:
        """Add ``amount`` (the asset's scale, or decimal text) to a balance; negative withdraws,
        never below what open orders lock.  Published at the next event or ``flush_balances``."""
        b = self._bal_of(venue, asset)
        self.set_balance(venue, asset, b[0] + self._amount(venue, asset, amount))

    def set_balance(self, venue: str, asset: str, total: int | str) -> None:
        """Set a balance's total (the asset's scale, or decimal text); not below what open orders
        lock.  Published at the next event or ``flush_balances``."""
        b = self._bal_of(venue, asset)
        total = self._amount(venue, asset, total)
        if total < b[1]:
            raise ValueError(f"{venue} {asset}: total {total} below the {b[1]} open orders lock")
        b[0] = total
        self._changed.add((venue, asset))

    def _bal_of(self, venue: str, asset: str) -> list[int]:
        b = self.bal.get((venue, asset))
        if b is None or venue not in self.v:
            raise KeyError(f"no balance of {asset} on {venue}: no instrument of the engine's venues uses it")
        return b

    def _amount(self, venue: str, asset: str, amount: int | str) -> int:
        if isinstance(amount, int):
            return amount
        return to_fixed(str(amount), self.scales[(venue, asset)])

    # ------------------------------------------------------------------ requests
    def _act(self, r: OrderRequest, ts: int) -> None:
        if r.instrument not in self.served:
            self._count_bad(r, "unknown instrument")
            return
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

    def _new(self, r: OrderRequest, inst: Instrument, venue: Venue, ts: int) -> None:
        if r.order_id in self.seen_ids:
            # answering would speak about the live order with that id: count and log instead
            self._count_bad(r, "duplicate order id")
            return
        self.seen_ids.add(r.order_id)
        why = self._check(inst, r.side, r.price, r.size, r.flags)
        o = _Order(r, inst, venue, self.scales)
        o.created = ts
        if why == Reject.NONE:
            need = o.lock_needed(r.price, r.size)
            if need > self._available(o):
                why = Reject.INSUFFICIENT_BALANCE
        if why != Reject.NONE:
            self.counts[why.name] += 1
            self._update(o, S.REJECTED, ts, why)
            self._retire(o)
            return
        self._lock(o, need)
        self.orders[o.id] = o
        self.by_vid[o.vid] = o.id
        self._update(o, S.ACK, ts)
        self._cross(o, ts)
        if o.filled >= o.size:
            return
        if o.flags & _IOC:
            self._close(o, S.EXPIRED, ts)
            return
        o.queue = self._level(o)
        self.resting[inst.id][o.id] = o
        self._watch(inst.id)
        if not o.filled:
            self._update(o, S.OPEN, ts)

    def _amend(self, r: OrderRequest, inst: Instrument, venue: Venue, ts: int) -> None:
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
        self._watch(inst.id)
        self._update(o, S.PARTIALLY_FILLED if o.filled else S.OPEN, ts)
        self._cross(o, ts)

    def _refuse_change(self, r, inst, venue, why: Reject, ts: int, o: _Order | None = None) -> None:
        self.counts[f"cancel_rejected_{why.name}"] += 1
        price, size, filled = (o.price, o.size, o.filled) if o else (r.price, r.size, 0)
        self.emit(venue.name, "updates", OrderUpdate(r.ref_id, price, size, filled, ts, inst.id,
                                                     int(S.CANCEL_REJECTED), r.side, int(why), o.vid if o else b""))

    def _cancel(self, o: _Order, ts: int) -> None:
        self._close(o, S.CANCELLED, ts)

    def _close(self, o: _Order, status: S, ts: int) -> None:
        self.orders.pop(o.id, None)
        if self.resting[o.inst.id].pop(o.id, None) is not None:
            self._watch(o.inst.id)
        self._lock(o, -o.lock)
        self._update(o, status, ts)
        self._retire(o)

    def _retire(self, o: _Order) -> None:
        """A finished order: kept for ``order`` among the last ``retain``."""
        self.done[o.id] = o
        self.by_vid[o.vid] = o.id
        if len(self.done) > self.retain:
            old = self.done.popitem(last=False)[1]
            self.by_vid.pop(old.vid, None)

    def _update(self, o: _Order, status: S, ts: int, why: Reject = Reject.NONE) -> None:
        o.status, o.updated = status, ts
        self.emit(o.venue.name, "updates", OrderUpdate(o.id, o.price, o.size, o.filled, ts, o.inst.id, int(status),
                                                       o.side, int(why), o.vid))

    # ------------------------------------------------------------------ matching
    def _watch(self, iid: int) -> None:
        """Tell the book what can make ``book_moved`` act (``Book.watch``), so that a caller fed by an
        input port in book mode (the mock exchange) is woken only for those messages.  Called
        wherever an order joins, moves or leaves ``resting``; a queue ahead only shrinks between."""
        self.books[iid].watch([(o.side, o.price, o.queue) for o in self.resting[iid].values()])

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
        self.emit(venue.name, "fills", Fill(o.id, self._trade_id, price, q, fee, ts, inst.id, o.side, int(liq),
                                            inst.quote.encode()))
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

    def _flush(self, ts: int) -> None:
        """Publish the balances changed since the last flush, at event time ``ts``."""
        for key in sorted(self._changed):
            venue = self.v.get(key[0])
            if venue is None:
                continue
            total, locked = self.bal[key]
            self.emit(venue.name, "balances", BalanceUpdate(total, total - locked, ts, self.scales[key], venue.id,
                                                            key[1].encode()))
        self._changed.clear()
