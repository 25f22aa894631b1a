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
    _pos = None

    def on_book(self, iid: int, book, exch_ts: int) -> None:
        bb, ba = book.best_bid(), book.best_ask()
        pos = self.positions.get(iid, 0)
        w = self.written
        w0, w1 = w[0], w[1]
        seen = (bb, ba, pos, w0, w1)
        if seen == self._seen:
            return  # quotes are a function of exactly these: most messages change none of them
        self._seen = seen
        if bb is None or ba is None:
            self.withdraw(0)
            self.withdraw(1)
            return
        if pos != self._pos:
            self._sizes(pos)
        tick, r = self.tick, self.refresh_i
        shift = self._shift
        # (conditionals, not min/max: a builtin call costs ~100 ns here, the whole handler ~1 us)
        bid = (bb + ba - self.spread_i) // 2 - shift
        bid -= bid % tick
        if bid > ba - tick:
            bid = ba - tick
        if bid >= self._bid_min:
            size = self._bid_size  # moved only by ``refresh`` or more, or while no longer passive
            if not (type(w0) is tuple and w0[1] == size and -r < w0[0] - bid < r and w0[0] < ba):
                self.quote(0, iid, 1, bid, size, _POST_ONLY)
        else:
            self.withdraw(0)
        ask = -(-(bb + ba + self.spread_i) // 2) - shift
        ask += -ask % tick
        if ask < bb + tick:
            ask = bb + tick
        if ask >= self._ask_min:
            size = self._ask_size
            if not (type(w1) is tuple and w1[1] == size and -r < w1[0] - ask < r and w1[0] > bb):
                self.quote(1, iid, -1, ask, size, _POST_ONLY)
        else:
            self.withdraw(1)

    def _sizes(self, pos: int) -> None:
        """What depends on the position alone: the skew's shift, each side's size (room left under
        ``max_inventory``, in lots) and the lowest price at which that size is a valid order
        (``min_size``, ``min_notional``; no valid price: withdrawn)."""
        self._pos = pos
        self._shift = _toward_zero(self.skew_i * pos, self.unit) if pos else 0  # symmetric for longs and shorts
        b = min(self.max_inv - pos, self.size_i)
        a = min(self.max_inv + pos, self.size_i)
        self._bid_size, self._ask_size = b - b % self.lot, a - a % self.lot
        self._bid_min, self._ask_min = self._min_price(self._bid_size), self._min_price(self._ask_size)

    def _min_price(self, size: int):
        """The lowest price at which an order of ``size`` is valid: price * size // unit >=
        min_notional, i.e. price >= ceil(min_notional * unit / size); inf if no price is."""
        if size <= 0 or size < self.min_size:
            return float("inf")
        return max(1, -(-self.min_notional * self.unit // size))


def _toward_zero(a: int, b: int) -> int:
    return a // b if a >= 0 else -(-a // b)
