"""A market maker: a bid and an ask around the mid, skewed against inventory."""

from __future__ import annotations

from ...spine.messages import OrderFlags
from ..model import TradeModel

_POST_ONLY = int(OrderFlags.POST_ONLY)


class MarketMaker(TradeModel):
    """Quotes ``bid = mid - spread/2 - skew * position`` and ``ask = mid + spread/2 - skew *
    position`` (rounded away from the mid to the tick, never crossing the touch: post-only), so a
    long position lowers both quotes (sell more readily, buy less).  Sizes shrink so that
    |position| stays within ``max_inventory``; a side with no room is withdrawn.  A quote is only
    moved when its price changes by ``refresh`` or more (keeps its queue place, no churn), or after
    a fill.  Slots: 0 bid, 1 ask.

    Params (decimal text at the instrument's scales): ``instrument``, ``spread`` (full width),
    ``size``, ``skew`` (price per 1.0 of position), ``max_inventory``, ``refresh`` (default: one
    tick).
    """

    instrument = ""
    spread = "0"
    size = "0"
    skew = "0"
    max_inventory = "0"
    refresh = ""

    def on_start(self) -> None:
        super().on_start()
        i = self.inst = self.follow(self.instrument)
        self.spread_i = i.price(str(self.spread))
        self.size_i = i.size(str(self.size))
        self.skew_i = i.price(str(self.skew))
        self.max_inv = i.size(str(self.max_inventory))
        self.refresh_i = i.price(str(self.refresh)) if self.refresh else i.tick
        if self.size_i <= 0 or self.max_inv <= 0 or self.spread_i < 0:
            raise ValueError(f"{self.name}: size and max_inventory must be > 0, spread >= 0")
        self.unit = 10**i.size_scale
        self.tick, self.lot, self.min_size, self.min_notional = i.tick, i.lot, i.min_size, i.min_notional
        self.positions = self.orders.positions

    _seen = None

    def on_book(self, iid: int, book, exch_ts: int) -> None:
        bb, ba = book.best_bid(), book.best_ask()
        pos = self.positions.get(iid, 0)
        w = self.written
        seen = (bb, ba, pos, w[0], w[1])
        if seen == self._seen:
            return  # quotes are a function of exactly these: most messages change none of them
        self._seen = seen
        if bb is None or ba is None:
            self.withdraw(0)
            self.withdraw(1)
            return
        tick, size = self.tick, self.size_i
        shift = _toward_zero(self.skew_i * pos, self.unit) if pos else 0  # symmetric for longs and shorts
        bid = (bb + ba - self.spread_i) // 2 - shift
        ask = -(-(bb + ba + self.spread_i) // 2) - shift
        # (conditionals, not min/max: a builtin call costs ~100 ns here, the whole handler ~1 us)
        bid -= bid % tick
        if bid > ba - tick:
            bid = ba - tick
        ask += -ask % tick
        if ask < bb + tick:
            ask = bb + tick
        bsize = self.max_inv - pos
        if bsize > size:
            bsize = size
        asize = self.max_inv + pos
        if asize > size:
            asize = size
        self._side(0, iid, 1, bid, bsize - bsize % self.lot, ba)
        self._side(1, iid, -1, ask, asize - asize % self.lot, bb)

    def _side(self, slot: int, iid: int, side: int, price: int, size: int, touch: int) -> None:
        if size <= 0 or size < self.min_size or price <= 0 or price * size // self.unit < self.min_notional:
            self.withdraw(slot)
            return
        w = self.written[slot]  # (price, size, instrument, side, flags) or None / stale
        if (type(w) is tuple and w[1] == size and -self.refresh_i < w[0] - price < self.refresh_i
                and (w[0] < touch if side > 0 else w[0] > touch)):
            return  # close enough, still passive: keep the queue place
        self.quote(slot, iid, side, price, size, _POST_ONLY)


def _toward_zero(a: int, b: int) -> int:
    return a // b if a >= 0 else -(-a // b)
