"""The hello-world system: a synthetic L2 source, a book keeper that quotes the touch into a
seqlock array and republishes its top of book, and a sink that checks and digests what it gets.

Deterministic for a given seed, so the deterministic placement can prove bit-identical runs.
"""

from __future__ import annotations

import hashlib
import random

from ..book import L2Book
from ..runtime.actor import Actor
from ..spine.messages import IdealOrder, L2Flags, L2Update


class Ticker(Actor):
    """Emits a random-walk book at ``rate`` exchange messages/s (1-3 levels each), ``count`` in all
    (0 = forever).  Each message's levels share one origin, stamped when it is generated."""

    outputs = ("out",)
    rate = 10_000
    count = 0
    stop_when_done = False  # with `count`: stop the system after the last message
    seed = 1
    instrument = 1

    def on_start(self) -> None:
        self.rng = random.Random(self.seed)
        self.book = L2Book()
        self.t0 = self.clock.now()
        self.sent = 0
        self.mid = 6_000_000
        self.wakeup = self.t0

    def loop(self) -> bool:
        if self.count and self.sent >= self.count:
            self.wakeup = 0
            if self.stop_when_done:
                self.stop_system()
            return False
        now = self.clock.now()
        due = int((now - self.t0) * self.rate / 1e9) + 1
        n = min(due - self.sent, 256)
        if self.count:
            n = min(n, self.count - self.sent)
        rng, inst, book = self.rng, self.instrument, self.book
        for _ in range(max(n, 0)):
            self.set_origin(self.clock.now())
            self.mid += rng.choice((-1, 0, 0, 1))
            levels = []
            for _ in range(rng.randint(1, 3)):
                side = 1 if rng.random() < 0.5 else -1
                price = self.mid - side * rng.randint(1, 20)
                size = 0 if rng.random() < 0.25 else rng.randint(1, 5000)
                # keep the book uncrossed: a new level removes opposite levels it would cross
                other = book.asks if side == 1 else book.bids
                for p in [p for p in other if (p <= price if side == 1 else p >= price)]:
                    levels.append((-side, p, 0))
                    book.apply(-side, p, 0)
                levels.append((side, price, size))
                book.apply(side, price, size)
            last = len(levels) - 1
            for j, (side, price, size) in enumerate(levels):
                self.out.send(L2Update(price, size, now, inst, side, int(L2Flags.LAST) if j == last else 0))
            self.sent += 1
        self.wakeup = self.t0 + int((self.sent + 1) * 1e9 / self.rate) if not self.count or self.sent < self.count else 0
        return n > 0


class BookKeeper(Actor):
    """Keeps the book; on each complete message republishes the touch (best bid and ask as two
    L2Updates) and writes quotes one tick inside it into the ``quotes`` array."""

    inputs = ("l2",)
    outputs = ("top",)
    arrays = ("quotes",)

    def on_start(self) -> None:
        self.book = L2Book()
        self.touch = (None, None)

    def on_l2(self, m: L2Update) -> None:
        book = self.book
        book.apply(m.side, m.price, m.size)
        if not m.flags & L2Flags.LAST:
            return
        bb, ba = book.best_bid(), book.best_ask()
        if (bb, ba) == self.touch or bb is None or ba is None:
            return
        self.touch = (bb, ba)
        self.top.send(L2Update(bb, book.bids[bb], m.exch_ts, m.instrument, 1, 0))
        self.top.send(L2Update(ba, book.asks[ba], m.exch_ts, m.instrument, -1, int(L2Flags.LAST)))
        if ba - bb > 2:
            self.quotes.write(0, IdealOrder(bb + 1, 1000, m.instrument, 1, 1))
            self.quotes.write(1, IdealOrder(ba - 1, 1000, m.instrument, -1, 1))


class Sink(Actor):
    """Counts, checks that every touch it receives is uncrossed, and digests everything."""

    inputs = ("top",)

    def on_start(self) -> None:
        self.received = 0
        self.crossed = 0
        self.digest = hashlib.blake2b(digest_size=16)
        self.bid = None

    def on_top(self, m: L2Update) -> None:
        self.received += 1
        self.digest.update(repr((m, self.origin)).encode())
        if m.side == 1:
            self.bid = m.price
        elif self.bid is not None and self.bid >= m.price:
            self.crossed += 1
