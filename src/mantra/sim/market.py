"""The simulated markets: what changes, step by step, before any venue formats it.

A source yields ``Step``s, the book changes and trades of one exchange message for one instrument;
the server (``server.py``) applies each to its truth and hands it to the venue module.  Kept apart
from serving so that a source is testable (and deterministic) without sockets:
``SyntheticMarket`` is a seeded random market, ``ReplayMarket`` re-serves what a venue once sent.
``DepthView`` is what a subscriber to the top N levels holds, for the venues with subscribed depths.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, NamedTuple

from ..book import L2Book
from ..fixed import to_fixed
from ..instruments import Instrument, InstrumentRegistry
from ..venues.events import BookState, Level, Status, Trade

BID, ASK = 1, -1


class SimTrade(NamedTuple):
    side: int  # aggressor: +1 buyer lifted the ask, -1 seller hit the bid
    price: int
    size: int
    trade_id: int


class Step(NamedTuple):
    """One exchange message's worth of market change for one instrument."""

    symbol: str
    levels: list  # (side, price, size): the final size of each changed level (0 deletes), in order
    trades: list  # SimTrade, executed on the book as it was before this step
    ts: int = 0  # ns since the epoch; stamped by the simulator when it publishes the step


@dataclass(frozen=True)
class Listing:
    """A synthetic instrument: the venue's symbol, its increments, where its price starts."""

    symbol: str
    base: str
    quote: str
    tick: str  # price increment; its decimals are the price scale
    lot: str  # size increment; its decimals are the size scale
    start: str  # first mid price
    max_size: str  # largest size of a new level
    min_size: str = "0"
    min_notional: str = "0"

    def instrument(self, venue: str, registry: InstrumentRegistry) -> Instrument:
        ps, ss = _decimals(self.tick), _decimals(self.lot)
        return registry.add(
            venue, self.symbol, base=self.base, quote=self.quote, price_scale=ps, size_scale=ss,
            tick=to_fixed(self.tick, ps), lot=to_fixed(self.lot, ss), min_size=to_fixed(self.min_size, ss),
            min_notional=to_fixed(self.min_notional, ps), price_decimals=ps, size_decimals=ss)


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


def collapse(levels) -> list[tuple[int, int, int]]:
    """Keep each level's final size, in first-change order: a venue sends one entry per level."""
    out: dict[tuple[int, int], int] = {}
    for side, price, size in levels:
        out[(side, price)] = size
    return [(s, p, q) for (s, p), q in out.items()]


class SyntheticMarket:
    """A seeded random market: the same seed gives the same steps, however fast they are taken.

    Per instrument, a centre price random-walks; levels are added around it (never crossing the
    other side), resized, deleted (far ones first once a side is long), and trades take liquidity
    at the touch.  One step changes one instrument: a trade (and the level it leaves), or
    1..``max_changes`` level changes.
    """

    def __init__(self, venue: str, listings, *, seed: int = 1, rate: float = 50.0, levels: int = 20,
                 max_changes: int = 3, trade_ratio: float = 0.15):
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.registry = InstrumentRegistry()
        self.instruments = [x.instrument(venue, self.registry) for x in listings]
        self.rate = rate
        self.levels = max(levels, 4)
        self.max_changes = max_changes
        self.trade_ratio = trade_ratio
        self.rng = random.Random(seed)
        self.books = {i.symbol: L2Book() for i in self.instruments}  # the generator's own copy of the truth
        self._center = {x.symbol: to_fixed(x.start, i.price_scale) for x, i in zip(listings, self.instruments)}
        self._max_lots = {i.symbol: max(to_fixed(x.max_size, i.size_scale) // i.lot, 1)
                          for x, i in zip(listings, self.instruments)}
        self._trade_id = {i.symbol: 0 for i in self.instruments}
        self._opening = self._open()

    def initial(self) -> list[Step]:
        """The opening books: ``levels`` per side around the start price."""
        return list(self._opening)

    def _open(self) -> list[Step]:
        out = []
        for inst in self.instruments:
            book, c, tick = self.books[inst.symbol], self._center[inst.symbol], inst.tick
            levels = []
            for side in (BID, ASK):
                price = c - side * tick * self.rng.randint(1, 3)
                for _ in range(self.levels):
                    if price > 0:
                        levels.append((side, price, self._size(inst)))
                    price -= side * tick * self.rng.randint(1, 3)
            for lv in levels:
                book.apply(*lv)
            out.append(Step(inst.symbol, levels, []))
        return out

    def steps(self) -> Iterator[tuple[float, Step]]:
        while True:
            yield 1.0 / self.rate, self.step()

    def step(self) -> Step:
        rng = self.rng
        inst = rng.choice(self.instruments)
        sym = inst.symbol
        book = self.books[sym]
        if rng.random() < 0.2:  # the random walk: new levels gather around the moving centre
            self._center[sym] = max(self._center[sym] + rng.choice((-1, 1)) * inst.tick, inst.tick * 4 * self.levels)
        levels, trades = [], []
        for k in range(rng.randint(1, self.max_changes)):
            self._operate(inst, book, levels, trades, trade=k == 0)
            if trades:
                break  # a trade's step is the trade and its effect on the touch, nothing else
        return Step(sym, collapse(levels), trades)

    def _size(self, inst: Instrument) -> int:
        # Mostly small, sometimes large: a log-uniform number of lots.
        lots = int(self._max_lots[inst.symbol] ** self.rng.random())
        return inst.lot * max(lots, 1)

    def _operate(self, inst: Instrument, book: L2Book, levels: list, trades: list, trade: bool) -> None:
        rng, tick = self.rng, inst.tick
        side = rng.choice((BID, ASK))
        mine = book.bids if side == BID else book.asks
        r = rng.random()
        if len(mine) > 2 * self.levels:  # keep sides bounded: drop the furthest level
            change = (side, book.top(side, len(mine))[-1][0], 0)
        elif r < self.trade_ratio and trade:  # a trade takes (part of) the touch; the aggressor is the other side
            price, size = book.top(side, 1)[0]
            if len(mine) > 2 and rng.random() < 0.4:
                qty = size  # the whole level
            else:
                qty = min(inst.lot * rng.randint(1, max(size // inst.lot - 1, 1)), size)
            if qty == size and len(mine) <= 2:  # never empty a side
                qty -= inst.lot
            if qty <= 0:
                return
            self._trade_id[inst.symbol] += 1
            trades.append(SimTrade(-side, price, qty, self._trade_id[inst.symbol]))
            change = (side, price, size - qty)
        elif r < 0.45 and mine:  # resize a level, mostly near the touch
            top = book.top(side, len(mine))
            price = top[min(int(rng.expovariate(0.25)), len(top) - 1)][0]
            change = (side, price, self._size(inst))
        elif r < 0.75 or len(mine) <= self.levels // 2:  # add a level near the centre, never crossing
            price = self._center[inst.symbol] - side * tick * (1 + int(rng.expovariate(0.15)))
            other = book.best_ask() if side == BID else book.best_bid()
            if other is not None and (price - other) * side >= 0:
                price = other - side * tick * rng.randint(1, 3)
            if price <= 0:
                return
            change = (side, price, self._size(inst))
        else:  # delete a level, further ones more likely
            top = book.top(side, len(mine))
            price = top[len(top) - 1 - min(int(rng.expovariate(0.2)), len(top) - 1)][0]
            change = (side, price, 0)
        book.apply(*change)
        levels.append(change)


class ReplayMarket:
    """Re-serve a recording: its book changes and trades as steps, paced by the recorded times.

    The recording (cryptofeed format: WebSocket frames plus ``*.http.*`` REST bodies) goes through
    ``venues.check.replay``, exactly as ``mantra venues check`` reads it; its sink turns each
    exchange message that changed a book (its ``Level``s up to ``last``) into one step, each trade
    into a step of its own.  Steps up to the first state of every instrument form the opening books;
    the rest follow at the recorded pace divided by ``speed`` (silences capped at ``max_gap_s``).
    The simulator then serves them in its own venue's format with live sequence numbers, so faults
    and resyncs work as with the synthetic market.  ``protocol`` (the first recording's; all in
    ``protocols``) holds the books as read straight from the recording.
    """

    def __init__(self, venue: str, files, symbols: list[str] | None = None, *, speed: float = 1.0,
                 max_gap_s: float = 1.0, **opts):
        from ..venues.check import replay

        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed, self.max_gap_s = speed, max_gap_s
        self.registry = InstrumentRegistry()
        self._decoded: list[tuple[int, Step]] = []
        pending: dict[int, list] = {}

        def sink(events, ts: int) -> None:
            for e in events:
                t = type(e)
                if t is Level:
                    pending.setdefault(e.instrument, []).append((e.side, e.price, e.size))
                    if e.last:
                        sym = self.registry[e.instrument].symbol
                        self._decoded.append((ts, Step(sym, collapse(pending.pop(e.instrument)), [])))
                elif t is Trade:
                    trade = SimTrade(e.side or BID, e.price, e.size, e.trade_id)
                    self._decoded.append((ts, Step(self.registry[e.instrument].symbol, [], [trade])))
                elif t is BookState and e.status == Status.SYNCING:
                    pending.pop(e.instrument, None)

        runs, _ = replay(venue, files, symbols=symbols, sink=sink, registry=self.registry, **opts)
        self.protocols = [r.protocol for r in runs if r.protocol is not None]
        if not self.protocols:
            raise ValueError(f"no {venue} book in the recording: {', '.join(map(str, files))}")
        self._decoded.sort(key=lambda x: x[0])  # several recordings: one market, in time order
        self.protocol = self.protocols[0]
        self.instruments = [self.registry[i] for i in dict.fromkeys(i for p in self.protocols for i in p.books)]
        self.malformed = sum(p.malformed for p in self.protocols)
        self._start = 0

    def initial(self) -> list[Step]:
        waiting = {i.symbol for i in self.instruments}
        n = 0
        while waiting and n < len(self._decoded):
            waiting.discard(self._decoded[n][1].symbol)
            n += 1
        self._start = n
        return [s for _, s in self._decoded[:n]]

    def steps(self) -> Iterator[tuple[float, Step]]:
        prev = self._decoded[self._start - 1][0] if self._start else None
        for ts, step in self._decoded[self._start :]:
            gap = 0.0 if prev is None else min((ts - prev) / 1e9 / self.speed, self.max_gap_s)
            prev = ts
            yield gap, step


# -- depth-limited subscriptions ----------------------------------------------------------------
class DepthView:
    """What a subscriber to the best ``depth`` levels holds.

    Venues with a subscribed depth (Kraken, Bitfinex) send the changes inside that window, a level
    that enters it from below (Kraken marks it "republished"), and no delete for a level pushed out
    by a better one: the client truncates.  ``diff`` computes those changes against the truth; the
    caller applies each message it sends with ``apply``, exactly as the client will, so a checksum
    computed from ``book`` is what the client must find, even for a message the client never got.
    """

    def __init__(self, depth: int, truth: L2Book):
        self.book = L2Book(depth)
        for side in (BID, ASK):
            for price, size in truth.top(side, depth):
                self.book.apply(side, price, size)

    def diff(self, truth: L2Book, changed) -> list[tuple[int, int, int, bool]]:
        """``(side, price, size, republished)``: deletions first, so that a client truncating after
        every single-level message never drops a level that belongs in the window."""
        depth = self.book.depth
        deletes, sets = [], []
        for side in (BID, ASK):
            old = self.book.bids if side == BID else self.book.asks
            have = truth.bids if side == BID else truth.asks
            new = truth.top(side, depth)
            inside = {p for p, _ in new}
            deletes += [(side, p, 0, False) for p in old if p not in inside and p not in have]
            sets += [(side, p, s, (side, p) not in changed) for p, s in new if old.get(p) != s]
        return deletes + sets

    def apply(self, levels) -> None:
        for side, price, size, *_ in levels:
            self.book.apply(side, price, size)
        self.book.truncate()
