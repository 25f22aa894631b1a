"""Order entry on each venue as a hypothesis state machine: random requests (new orders near the touch so
that some fill, amends, cancels) interleaved with a random schedule of the simulator's order-entry
faults, all through the real protocol and runner over loopback.  Afterwards: every order has a
known outcome, none was placed twice, every fill the venue made arrived once, and our balances and
positions equal the simulator's truth."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from accountkit import BinanceHarness, KrakenHarness
from mantra.sim.binance import BinanceSimulator
from mantra.sim.kraken import KrakenSimulator
from mantra.spine.messages import OrderAction, OrderFlags

FAULTS = ("order_5xx", "order_timeout", "order_rate_limit", "stream_duplicate", "stream_reorder",
          "stream_disconnect", "cancel_filled", "rate_limit")


class Account(RuleBasedStateMachine):
    """One venue's simulator and handler; subclasses name the venue.  Venue rate limits are lifted:
    refusals are tested elsewhere, here every request should reach the venue."""

    def make(self):
        raise NotImplementedError

    def __init__(self):
        super().__init__()
        self.sim, self.h, self.unit = self.make()
        self.sent: dict = {}

    # Which order a cancel or amend names is drawn from the NEWs this run sent (known here, whatever
    # the venue did with them), never from what the venue answered so far: that depends on timing,
    # and hypothesis needs the choices it draws to depend on its data alone.
    @rule(side=st.sampled_from((1, -1)), ticks=st.integers(-3, 6), lots=st.integers(1, 5),
          flags=st.sampled_from((0, int(OrderFlags.POST_ONLY), int(OrderFlags.IOC))))
    def new(self, side, ticks, lots, flags):
        b = self.h.btc
        book = self.h.book()
        touch = book.best_ask() if side > 0 else book.best_bid()
        if touch is None:
            return
        price = touch + side * (ticks - 3) * b.tick  # from 3 ticks inside the spread to 6 through the touch
        r = self.h.new(price, lots * self.unit, side=side, flags=flags)
        self.sent[r.order_id] = r

    def _pick(self, i):
        ids = list(self.sent)
        return self.sent[ids[i % len(ids)]] if ids else None

    @rule(i=st.integers(0, 100))
    def cancel(self, i):
        r = self._pick(i)
        if r is not None:
            self.h.request(OrderAction.CANCEL, ref=r.order_id)

    @rule(i=st.integers(0, 100), lots=st.integers(1, 6), ticks=st.integers(-2, 2))
    def amend(self, i, lots, ticks):
        r = self._pick(i)
        if r is not None:  # the venue refuses what no longer fits (ended, below the filled size): an outcome too
            self.h.request(OrderAction.AMEND, ref=r.order_id, price=r.price + ticks * self.h.btc.tick,
                           size=lots * self.unit)

    @rule(name=st.sampled_from(FAULTS))
    def fault(self, name):
        self.sim.inject(name, 2 if name in ("stream_duplicate", "rate_limit") else None)

    @rule(ms=st.integers(10, 300))
    def wait(self, ms):
        self.h.pump(lambda: False, ms / 1000)

    @invariant()
    def never_placed_twice(self):
        assert all(n == 1 for n in self.sim.placed.values()), self.sim.placed

    def teardown(self):
        try:
            # let every request find its outcome (timeouts, queries, reconnects), then compare
            assert self.h.pump(lambda: not self.h.proto.reqs and all(o.status for o in self.h.orders.active.values()),
                               20.0), (self.h.proto.reqs, self.h.orders.active)
            self.h.check_invariants()
        finally:
            self.h.close()
            self.sim.stop()


class KrakenAccount(Account):
    def make(self):
        sim = KrakenSimulator(seed=11, rate=60, lifetime_s=120, rate_threshold=1e9).start()
        h = KrakenHarness(sim, timeout_s=1.0, deadline_ms=800, rate_threshold=1e9).start()
        return sim, h, 10_000 * h.btc.lot  # 0.0001 BTC


class BinanceAccount(Account):
    def make(self):
        sim = BinanceSimulator(seed=11, rate=60, lifetime_s=120, orders_10s=10**9, weight_limit=10**9).start()
        h = BinanceHarness(sim, timeout_s=1.0, recv_window_ms=800, orders_10s=10**9, orders_day=10**9,
                            weight_limit=10**9).start()
        return sim, h, 100 * h.btc.lot  # 0.001 BTC: above the 5 USDT minimum notional


RUNS = settings(max_examples=6, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck))
TestKrakenAccount = KrakenAccount.TestCase
TestKrakenAccount.settings = RUNS
TestBinanceAccount = BinanceAccount.TestCase
TestBinanceAccount.settings = RUNS
