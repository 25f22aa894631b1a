"""``risk.Extremes`` (our highest buy / lowest sell per instrument, kept as orders change) against
a walk over every order, on random sequences of placements, reprices and ends."""

from hypothesis import given, settings
from hypothesis import strategies as st

from mantra.trading.risk import Extremes

changes = st.lists(st.tuples(st.integers(0, 30), st.integers(1, 3), st.sampled_from([1, -1]),
                             st.none() | st.integers(0, 60)), max_size=300)


@settings(max_examples=300, deadline=None)
@given(changes)
def test_extremes_equal_a_walk(changes):
    xs, orders = Extremes(), {}  # order id -> (instrument, side, price): the brute-force truth
    peak = {}  # (instrument, side) -> most distinct live prices so far
    for oid, iid, side, price in changes:
        if oid in orders and price is not None:  # an order keeps its instrument and side
            iid, side = orders[oid][:2]
        changed = xs.set(oid, iid, side, price)
        before = orders.get(oid)
        if price is None:
            orders.pop(oid, None)
        else:
            orders[oid] = (iid, side, price)
        assert changed == (before != orders.get(oid))
        for i in (1, 2, 3):
            bids = [p for j, s, p in orders.values() if j == i and s == 1]
            asks = [p for j, s, p in orders.values() if j == i and s == -1]
            assert xs.best(i, 1) == (max(bids) if bids else None)
            assert xs.best(i, -1) == (min(asks) if asks else None)
        for k, c in xs.count.items():  # stale entries: bounded by the live prices, not the history
            peak[k] = max(peak.get(k, 0), len(c))
            assert len(xs.heap[k]) <= 2 * peak[k] + 9


def test_a_long_history_leaves_no_heap_behind():
    xs = Extremes()
    for oid in range(10_000):  # a quote replaced 10k times, drifting up (its old prices never reach the top)
        xs.set(oid, 1, 1, 50_000 + oid)
        xs.set(oid - 1, 1, 1, None)
        assert xs.best(1, 1) == 50_000 + oid
    assert len(xs.heap[(1, 1)]) <= 11 and xs.count[(1, 1)] == {59_999: 1} and len(xs.at) == 1
