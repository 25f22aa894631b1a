"""State-machine test of the overseer against the mock exchange as the venue.

Models write random ideal orders; the venue's answers (updates, fills, balances) are delivered in
any order, duplicated and late; requests reach the venue in order but late; the market trades
through our orders.  Throughout: the venue never sees an order it must refuse for balance, no
slot ever has two live orders, the worst-case position stays within limits, balances never go
negative.  Once everything is delivered the overseer's view equals the venue's and every slot
matches its ideal (or is explained by a refusal or consumed by fills).
"""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mantra.spine.messages import (Fill, IdealOrder, L2Flags, L2Update, OrderAction, OrderFlags,
                                   OrderRequest, OrderUpdate, TradeUpdate)
from mantra.trading.accounts import TERMINAL
from mantra.trading.mock_exchange import MockExchange
from mantra.trading.overseer import Overseer

from .harness import INSTRUMENTS, Array, Clock, Port, l2, make

BTC, KR = 1, 2
MAX_POS = {BTC: 1500, KR: 15000}  # 1.5 BTC on each venue (size scales 3 and 4)
MIDS = {BTC: 10000, KR: 1000}  # 100.00 / 100.0
TICK = {BTC: 1, KR: 5}
LOT = {BTC: 1, KR: 100}
LAST = int(L2Flags.LAST)

VENUES_MOCK = {
    "binance": {"maker_bps": 10, "taker_bps": 20, "amend": True, "balances": {"BTC": "1", "USDT": "150"}},
    "kraken": {"maker_bps": 16, "taker_bps": 26, "amend": False, "balances": {"BTC": "1", "USDT": "150"}},
}
VENUES_OV = {"binance": {"fee_bps": 20, "amend": True, "rate": 8, "rate_window_ms": 1000},
             "kraken": {"fee_bps": 26, "amend": False, "rate": 8, "rate_window_ms": 1000}}
LIMITS = {"binance:BTCUSDT": {"max_position": "1.5", "max_notional": "1000"},
          "kraken:XBT/USDT": {"max_position": "1.5", "max_notional": "1000"}}


class OverseerVsVenue(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.clock = Clock(1_000_000_000)
        self.ex = make(MockExchange, self.clock, name="venue", instruments=INSTRUMENTS, venues=VENUES_MOCK)
        self.arrays = [Array(2), Array(2)]
        self.writers = [Port(self.arrays[0], 11), Port(self.arrays[1], 12)]
        self.ov = make(Overseer, self.clock, actor_id=3, arrays={"m1": self.arrays[0], "m2": self.arrays[1]},
                       models=["m1", "m2"], instruments=INSTRUMENTS, venues=VENUES_OV, limits=LIMITS)
        self.requests: list[OrderRequest] = []  # sent, not yet at the venue (FIFO)
        self.answers: list = []  # venue answers not yet delivered
        self.delivered: list = []
        self.slot_of: dict[int, tuple[int, int]] = {}  # order id -> (model, slot)
        self.start_base = {BTC: 1000, KR: 10000}
        self.trade_id = 0
        self.killed = False
        for iid in (BTC, KR):
            m = MIDS[iid]
            self._book(iid, [(1, m - 3 * TICK[iid], 2000), (-1, m + 3 * TICK[iid], 2000)])
        self._collect()
        while self.answers:  # the starting balances
            self._deliver(self.answers.pop())

    # ------------------------------------------------------------------ plumbing
    def _book(self, iid, levels):
        for j, (side, price, size) in enumerate(levels):
            l2(self.ex, L2Update(price, size, self.clock.now(), iid, side, LAST if j == len(levels) - 1 else 0))

    def _collect(self):
        self.ex.loop()
        self.answers += self.ex.updates.take() + self.ex.fills.take() + self.ex.balances.take()

    def _deliver(self, m):
        if isinstance(m, OrderUpdate):
            self.ov.on_updates(m)
        elif isinstance(m, Fill):
            self.ov.on_fills(m)
        else:
            self.ov.on_balances(m)
        self.delivered.append(m)

    def _pass(self):
        self.ov.loop()
        for r in self.ov.requests.take():
            if self.killed:
                assert r.action == OrderAction.CANCEL, f"{r} sent after the kill switch"
            if r.action == OrderAction.NEW:
                self.slot_of[r.order_id] = (r.model, r.slot)
            self.requests.append(r)

    # ------------------------------------------------------------------ rules
    @rule(model=st.integers(0, 1), slot=st.integers(0, 1), iid=st.sampled_from([BTC, KR]),
          side=st.sampled_from([1, -1]), off=st.integers(-4, 4), lots=st.integers(0, 1200),
          flags=st.sampled_from([0, 0, OrderFlags.POST_ONLY, OrderFlags.IOC]))
    def write_ideal(self, model, slot, iid, side, off, lots, flags):
        size = lots if iid == BTC else lots * 10 // 100 * 100  # up to 1.2 BTC either way
        self.writers[model].write(slot, IdealOrder(MIDS[iid] + off * TICK[iid], size, iid, side, int(flags)))
        self._pass()

    @rule(model=st.integers(0, 1), slot=st.integers(0, 1), off=st.integers(-4, 4), lots=st.integers(1, 1200))
    def reprice(self, model, slot, off, lots):
        """Same instrument and side, new price/size: an AMEND where the venue has it."""
        _, ideal = self.arrays[model].read(slot)
        if ideal is None or not ideal.size:
            return
        iid = ideal.instrument
        size = lots if iid == BTC else lots * 10 // 100 * 100
        self.writers[model].write(slot, ideal._replace(price=MIDS[iid] + off * TICK[iid], size=size))
        self._pass()

    @rule()
    def overseer_pass(self):
        self._pass()

    @rule(n=st.integers(1, 4))
    def venue_acts(self, n):
        todo, self.requests = self.requests[:n], self.requests[n:]
        for r in todo:
            self.ex.on_requests(r)
        self._collect()

    @precondition(lambda self: self.answers)
    @rule(i=st.integers(0, 10**6))
    def deliver_one(self, i):
        self._deliver(self.answers.pop(i % len(self.answers)))
        self._pass()

    @precondition(lambda self: self.answers)
    @rule()
    def deliver_all_reversed(self):
        while self.answers:
            self._deliver(self.answers.pop())
        self._pass()

    @precondition(lambda self: self.delivered)
    @rule(i=st.integers(0, 10**6))
    def duplicate(self, i):
        self._deliver(self.delivered[i % len(self.delivered)])
        self._pass()

    @rule(iid=st.sampled_from([BTC, KR]), side=st.sampled_from([1, -1]), off=st.integers(-4, 4),
          size=st.integers(1, 3000))
    def market_trade(self, iid, side, off, size):
        self.trade_id += 1
        self.ex._on_trade(TradeUpdate(MIDS[iid] + off * TICK[iid], size * LOT[iid], self.clock.now(), self.trade_id,
                                      iid, side))
        self._collect()

    @rule(ms=st.integers(1, 1500))
    def time_passes(self, ms):
        self.clock.t += ms * 1_000_000
        self._pass()

    @precondition(lambda self: not self.killed)
    @rule(dice=st.integers(0, 29))
    def kill(self, dice):
        if dice == 0:
            self.killed = True
            self.ov.kill("test")
            self._pass()

    # ------------------------------------------------------------------ invariants
    def _venue_exposure(self):
        """Worst case per instrument from the venue's truth plus requests still on their way."""
        pos = {BTC: self.ex.bal[("binance", "BTC")][0] - self.start_base[BTC],
               KR: self.ex.bal[("kraken", "BTC")][0] - self.start_base[KR]}
        buys, sells = {BTC: 0, KR: 0}, {BTC: 0, KR: 0}
        live = {o.id: o.size - o.filled for o in self.ex.orders.values()}
        side_of = {o.id: (o.inst.id, o.side) for o in self.ex.orders.values()}
        for r in self.requests:
            if r.action == OrderAction.NEW:
                live[r.order_id], side_of[r.order_id] = r.size, (r.instrument, r.side)
            elif r.action == OrderAction.AMEND and r.ref_id in self.ex.orders:
                o = self.ex.orders[r.ref_id]
                live[r.ref_id] = max(live[r.ref_id], r.size - o.filled)
        for oid, q in live.items():
            iid, side = side_of[oid]
            (buys if side > 0 else sells)[iid] += q
        return pos, buys, sells

    @invariant()
    def within_limits_and_funded(self):
        pos, buys, sells = self._venue_exposure()
        for iid in (BTC, KR):
            assert pos[iid] + buys[iid] <= MAX_POS[iid], ("long", iid, pos, buys)
            assert sells[iid] - pos[iid] <= MAX_POS[iid], ("short", iid, pos, sells)
        for key, (total, locked) in self.ex.bal.items():
            assert total >= 0 and 0 <= locked <= total, key
        refused = {k: v for k, v in self.ex.counts.items() if "INSUFFICIENT_BALANCE" in k}
        assert not refused, f"the overseer sent orders the venue could not fund: {refused}"

    @invariant()
    def exposure_kept_equals_a_walk_over_every_order(self):
        """The overseer keeps what its orders hold and its extreme prices as they change; the
        reference is the walk over every active order that each check or push used to make."""
        ov, opened, held = self.ov, {}, {}
        for o in ov.orders.active.values():
            q = o.lock_qty
            opened[(o.instrument, o.side)] = opened.get((o.instrument, o.side), 0) + q
            t = ov._terms(o.instrument)
            if o.side > 0:
                key, h = t.buy_key, ov._lock(o, t.inst, t.venue.fee_bps) * t.buy_shift
            else:
                key, h = t.sell_key, q * t.sell_shift
            held[key] = held.get(key, 0) + h
        assert {k: v for k, v in ov.exposure.open.items() if v} == {k: v for k, v in opened.items() if v}
        assert {k: v for k, v in ov.exposure.held.items() if v} == {k: v for k, v in held.items() if v}
        # our extreme prices (self-trade), kept as orders change, against the walk they replaced
        bid, ask = {}, {}
        for o in ov.orders.active.values():
            if o.status in TERMINAL:
                continue
            if o.side > 0:
                p = o.price if o.target is None else max(o.price, o.target[0])
                bid[o.instrument] = max(bid.get(o.instrument, p), p)
            else:
                p = o.price if o.target is None else min(o.price, o.target[0])
                ask[o.instrument] = min(ask.get(o.instrument, p), p)
        for iid in (BTC, KR):
            assert (ov.extremes.best(iid, 1), ov.extremes.best(iid, -1)) == (bid.get(iid), ask.get(iid)), iid
        for (venue, asset) in self.ex.bal:  # balances: snapshot + later deltas, kept as a sum
            snap = ov.balances.snap.get((venue, asset))
            later = sum(a for _, a in ov.balances.later.get((venue, asset), ()))
            assert ov.balances.total(venue, asset) == (snap[0] if snap else 0) + later

    @invariant()
    def the_c_check_answers_as_the_reference(self):
        """``_risk.c`` decides on the numbers the overseer pushes; ``_check_py`` defines the answer:
        NEWs and amends of every live order, both sides, prices and sizes around the market."""
        ov, now = self.ov, self.clock.now()
        cases = [(iid, side, MIDS[iid] + k * TICK[iid], q * LOT[iid], None)
                 for iid in (BTC, KR) for side in (1, -1) for k in (-4, -1, 0, 2) for q in (0, 1, 7, 300, 900)]
        for o in ov.orders.live():
            for k in (-2, 0, 3):
                cases.append((o.instrument, o.side, o.price + k * TICK[o.instrument], o.size + LOT[o.instrument], o))
        for iid, side, price, size, amended in cases:
            got, want = ov._check(iid, side, price, size, amended, now), ov._check_py(iid, side, price, size, amended, now)
            assert got == want, (iid, side, price, size, amended, got, want)

    @invariant()
    def one_live_order_per_slot(self):
        seen = {}
        for oid in self.ex.orders:
            key = self.slot_of[oid]
            assert key not in seen, f"slot {key} has live orders {seen[key]} and {oid}"
            seen[key] = oid

    # ------------------------------------------------------------------ settle and compare
    def teardown(self):
        for _ in range(60):
            self.clock.t += 1_100_000_000  # rate windows free up
            self._pass()
            while self.requests:
                self.venue_acts(4)
            while self.answers:
                self._deliver(self.answers.pop(0))
            self._pass()
            if not self.requests and not self.answers:
                break
        assert not self.requests and not self.answers, "did not settle"
        ov, ex = self.ov, self.ex
        # the overseer's view is the venue's
        assert not [o for o in ov.orders.active.values() if o.pending]
        assert {o.order_id for o in ov.orders.live()} == set(ex.orders)
        for o in ov.orders.live():
            v = ex.orders[o.order_id]
            assert (o.price, o.size, o.filled) == (v.price, v.size, v.filled)
        assert ov.orders.positions.get(BTC, 0) == ex.bal[("binance", "BTC")][0] - self.start_base[BTC]
        assert ov.orders.positions.get(KR, 0) == ex.bal[("kraken", "BTC")][0] - self.start_base[KR]
        for (venue, asset), (total, _) in ex.bal.items():
            assert ov.balances.total(venue, asset) == total, (venue, asset)
        # every slot is what its model wants, or explained
        for m, arr in enumerate(self.arrays):
            for i in range(2):
                _, ideal = arr.read(i)
                st_ = ov.slots[m][i]
                live = [oid for oid, key in self.slot_of.items() if key == (11 + m, i) and oid in ex.orders]
                if self.killed or ideal is None or ideal.size == 0:
                    assert not live
                    continue
                if live:
                    v = ex.orders[live[0]]
                    left = v.size - v.filled
                    assert (v.inst.id, v.side, v.price) == (ideal.instrument, ideal.side, ideal.price)
                    assert left == ideal.size or (left < ideal.size and v.filled), "fills consume, never top up"
                else:
                    assert st_.placed == st_.seen or st_.refused is not None, (m, i, ideal, st_.refused)


OverseerVsVenue.TestCase.settings = settings(max_examples=150, stateful_step_count=100, deadline=None)
TestOverseerVsVenue = OverseerVsVenue.TestCase
