"""A cross-venue model: one asset's price gap between two venues, taken on both sides."""

from __future__ import annotations

from math import lcm

from ...fixed import to_fixed
from ...spine.messages import OrderFlags
from ..common import BPS
from ..model import TradeModel

_IOC = int(OrderFlags.IOC)


class CrossVenue(TradeModel):
    """When one venue's best bid exceeds the other's best ask by more than both taker fees plus
    ``min_edge_bps``, buys that ask and sells that bid with IOC orders of one size (taking
    liquidity on both venues), no larger than either touch and within ``max_inventory`` per venue.

    Slots: 0 buy leg, 1 sell leg.  A new pair fires only once no leg is out; then both slots are
    withdrawn (an IOC must not stay in a slot: a restarted overseer would send it again), and so
    are legs the overseer did not place within ``cooldown_ms``.

    Params: ``a``, ``b`` (instruments of one base and quote on two venues), ``size`` and
    ``max_inventory`` (decimal text, base), ``fee_bps_a``, ``fee_bps_b`` (taker), ``min_edge_bps``,
    ``cooldown_ms``.
    """

    a = ""
    b = ""
    size = "0"
    max_inventory = "0"
    fee_bps_a = 0
    fee_bps_b = 0
    min_edge_bps = 0
    cooldown_ms = 1000

    def on_start(self) -> None:
        super().on_start()
        A, B = self.A, self.B = self.follow(self.a), self.follow(self.b)
        if (A.base, A.quote) != (B.base, B.quote) or A.venue == B.venue:
            raise ValueError(f"{self.name}: a and b must be one asset on two venues")
        self.ps = max(A.price_scale, B.price_scale)  # prices compared at the finer scale
        self.ss = max(A.size_scale, B.size_scale)
        self.pm = {A.id: 10**(self.ps - A.price_scale), B.id: 10**(self.ps - B.price_scale)}
        self.sm = {A.id: 10**(self.ss - A.size_scale), B.id: 10**(self.ss - B.size_scale)}
        self.lot = lcm(A.lot * self.sm[A.id], B.lot * self.sm[B.id])
        self.size_c = to_fixed(str(self.size), self.ss)
        self.max_c = to_fixed(str(self.max_inventory), self.ss)
        self.fee = {A.id: int(self.fee_bps_a), B.id: int(self.fee_bps_b)}
        self.fired = 0  # when the last pair was written (0: legs idle)
        self.pairs = 0

    def on_order(self, o) -> None:
        # once no leg is out, withdraw both: a leg the overseer held back must not go out later
        # at a stale price, and an IOC must not stay in a slot
        if not o.live and o.slot in (0, 1) and not (self.busy(0) or self.busy(1)):
            self.withdraw(0)
            self.withdraw(1)
            self.fired = 0

    def on_book(self, iid: int, book, exch_ts: int) -> None:
        if self.busy(0) or self.busy(1):
            return
        now = self.clock.now()
        if self.fired:
            if now - self.fired < int(self.cooldown_ms) * 1_000_000:
                return
            self.withdraw(0)  # legs the overseer never placed: stale now
            self.withdraw(1)
            self.fired = 0
        A, B = self.A, self.B
        for buy, sell in ((A, B), (B, A)):
            if self._try(buy, sell, now):
                return

    def _try(self, buy, sell, now: int) -> bool:
        bk, sk = self.books[buy.id], self.books[sell.id]
        ask, bid = bk.best_ask(), sk.best_bid()
        if ask is None or bid is None:
            return False
        a_c, b_c = ask * self.pm[buy.id], bid * self.pm[sell.id]
        edge = (b_c - a_c) * BPS
        if edge <= a_c * (self.fee[buy.id] + int(self.min_edge_bps)) + b_c * self.fee[sell.id]:
            return False
        room_buy = self.max_c - self.position(buy.id) * self.sm[buy.id]
        room_sell = self.max_c + self.position(sell.id) * self.sm[sell.id]
        q = min(self.size_c, bk.size(-1, ask) * self.sm[buy.id], sk.size(1, bid) * self.sm[sell.id], room_buy,
                room_sell)
        q -= q % self.lot
        qb, qs = q // self.sm[buy.id], q // self.sm[sell.id]
        if q <= 0 or qb < buy.min_size or qs < sell.min_size:
            return False
        self.quote(0, buy.id, 1, ask, qb, _IOC)
        self.quote(1, sell.id, -1, bid, qs, _IOC)
        self.fired = now or 1
        self.pairs += 1
        return True

