"""A synthetic market for paper trading and tests: one asset quoted on several venues.

A common fair value random-walks; each venue's mid follows it with its own mean-reverting offset,
so the venues drift apart by more than their fees now and then.  Each book is a ladder of
``depth`` levels per side whose sizes persist while the price stays and wander a little; trades
hit or lift the touch and shrink the level they trade at.  Deterministic for a given seed, so the
deterministic placement gives identical runs.  Feeds replace it by configuration: the models,
overseer and mock exchange only see ``L2Update`` / ``TradeUpdate`` streams.
"""

from __future__ import annotations

import random

from ..runtime.actor import Actor
from ..spine.messages import L2Flags, L2Update, TradeUpdate
from .common import BPS, load_registry, resolve

_LAST, _SNAP, _CLEAR = int(L2Flags.LAST), int(L2Flags.SNAPSHOT), int(L2Flags.CLEAR)
_FS = 10**12  # fair value scale


class SyntheticMarket(Actor):
    """Params: ``instruments`` (registry), ``symbols`` (refs; default every instrument), ``price``
    (start, decimal text), ``rate`` (exchange messages/s), ``count`` (0 = forever), ``seed``,
    ``depth``, ``spread_bps`` (touch width), ``level_bps`` (ladder spacing; both at least a tick), ``level_size``
    (largest level, decimal text), ``vol_bps`` (fair-value step), ``offset_bps`` (venue offset
    scale), ``trade_prob``."""

    outputs = ("l2", "trades")
    messages = {"l2": L2Update, "trades": TradeUpdate}
    instruments = ()
    symbols = ()
    price = "30000"
    rate = 1000
    count = 0
    seed = 1
    depth = 10
    spread_bps = 2
    level_bps = 1
    level_size = "1"
    vol_bps = 2
    offset_bps = 10
    trade_prob = 0.3

    def on_start(self) -> None:
        reg = load_registry(self.instruments, self.system)
        self.insts = [resolve(reg, s) for s in self.symbols] if self.symbols else list(reg)
        self.rng = random.Random(self.seed)
        whole, _, frac = str(self.price).partition(".")
        self.fair = int(whole) * _FS + (int(frac.ljust(12, "0")[:12]) if frac else 0)
        self.offset = [0] * len(self.insts)  # 1/100 bps
        self.books = [({}, {}) for _ in self.insts]  # bids, asks: price -> size
        self.max_size = [i.size(str(self.level_size)) for i in self.insts]
        self.trade_id = 0
        self.sent = 0
        self.t0 = self.clock.now()
        self.wakeup = self.t0

    def loop(self) -> bool:
        if self.count and self.sent >= self.count:
            self.wakeup = 0
            return False
        now = self.clock.now()
        due = int((now - self.t0) * self.rate // 1_000_000_000) + 1
        n = min(due - self.sent, 256)
        if self.count:
            n = min(n, self.count - self.sent)
        for _ in range(max(n, 0)):
            self.set_origin(now)
            self._step(now)
            self.sent += 1
        done = self.count and self.sent >= self.count
        self.wakeup = 0 if done else self.t0 + (self.sent + 1) * 1_000_000_000 // self.rate
        return n > 0

    def _size(self, k: int) -> int:
        lot = self.insts[k].lot
        return max(self.rng.randint(1, max(self.max_size[k] // lot, 1)), 1) * lot

    def _step(self, now: int) -> None:
        rng = self.rng
        self.fair += self.fair * rng.randint(-self.vol_bps, self.vol_bps) // BPS
        k = rng.randrange(len(self.insts))
        inst, (bids, asks) = self.insts[k], self.books[k]
        off = self.offset[k] = self.offset[k] * 19 // 20 + rng.randint(-self.offset_bps * 25, self.offset_bps * 25)
        mid = self.fair * (BPS * 100 + off) // (BPS * 100) * 10**inst.price_scale // _FS
        tick = inst.tick
        width = max(mid * self.spread_bps // BPS // tick, 1) * tick
        step = max(mid * self.level_bps // BPS // tick, 1) * tick
        bid = mid - mid % tick - width // tick // 2 * tick
        ask = bid + width
        first = not bids and not asks
        traded = None
        if not first and rng.random() < self.trade_prob and bids and asks:
            side = 1 if rng.random() < 0.5 else -1  # aggressor
            book = asks if side > 0 else bids
            p = min(book) if side > 0 else max(book)
            q = min(self._size(k), book[p])
            self.trade_id += 1
            self.trades.send(TradeUpdate(p, q, now, self.trade_id, inst.id, side))
            book[p] -= q
            traded = (-side, p)
        want_b = {bid - j * step for j in range(self.depth)}
        want_a = {ask + j * step for j in range(self.depth)}
        out = []
        for side, book, want in ((1, bids, want_b), (-1, asks, want_a)):
            for p in [p for p in book if p not in want]:
                del book[p]
                out.append((side, p, 0))
            wobble = rng.choice(sorted(want)) if rng.random() < 0.5 else None
            for p in sorted(want):
                old = book.get(p, 0)
                new = self._size(k) if not old or p == wobble else old
                if new != old or first or traded == (side, p):
                    book[p] = new
                    out.append((side, p, new))
        last = len(out) - 1
        for j, (side, p, s) in enumerate(out):
            flags = (_LAST if j == last else 0) | ((_SNAP | (_CLEAR if j == 0 else 0)) if first else 0)
            self.l2.send(L2Update(p, s, now, inst.id, side, flags))
