"""Order and balance tracking from venue answers in any order, duplicated or late."""

from itertools import accumulate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mantra.spine.messages import BalanceUpdate, Fill, OrderAction, OrderRequest, OrderStatus as S, OrderUpdate
from mantra.trading.accounts import Balances, Orders, Reject
from mantra.trading.common import asset_scales, load_registry

from .harness import INSTRUMENTS

REG = load_registry(INSTRUMENTS)


def lifecycle(fills: list[int], end: S, side: int):
    """A venue's answers for one order of size 1000: ACK, OPEN, fills (each with its update), end."""
    r = OrderRequest(7, 0, 10000, 1000, 1, 3, 0, int(OrderAction.NEW), side, 0)
    msgs = [OrderUpdate(7, 10000, 1000, 0, 1, 1, int(S.ACK), side, 0, b""),
            OrderUpdate(7, 10000, 1000, 0, 2, 1, int(S.OPEN), side, 0, b"")]
    done = 0
    for k, q in enumerate(fills):
        done += q
        msgs.append(Fill(7, 100 + k, 10000, q, q // 10, 3 + k, 1, side, 1, b"USDT"))
        status = S.FILLED if done == 1000 else S.PARTIALLY_FILLED
        msgs.append(OrderUpdate(7, 10000, 1000, done, 3 + k, 1, int(status), side, 0, b""))
    if done < 1000:
        msgs.append(OrderUpdate(7, 10000, 1000, done, 50, 1, int(end), side, 0, b""))
    return r, msgs, done


fill_sizes = st.lists(st.integers(1, 400), max_size=5).map(
    lambda xs: [x for x, c in zip(xs, accumulate(xs)) if c <= 1000])


@given(fill_sizes, st.sampled_from([S.CANCELLED, S.EXPIRED]), st.sampled_from([1, -1]), st.data())
def test_any_order_and_duplicates_give_the_in_order_state(fills, end, side, data):
    r, msgs, done = lifecycle(fills, end, side)
    shuffled = data.draw(st.permutations(msgs))
    dups = data.draw(st.lists(st.sampled_from(msgs), max_size=6))
    at = data.draw(st.lists(st.integers(0, len(shuffled)), min_size=len(dups), max_size=len(dups)))
    for m, i in zip(dups, at):
        shuffled.insert(i, m)
    orders = Orders()
    o = orders.sent(r)
    for m in shuffled:
        orders.on_update(m) if isinstance(m, OrderUpdate) else orders.on_fill(m)
        # never a phantom: the position is exactly the fills seen so far, each once
        assert orders.positions.get(1, 0) == side * o.fill_qty
        assert o.fill_qty <= 1000 and o.filled <= 1000
    assert not o.live and o.pending == 0
    assert o.status == (S.FILLED if done == 1000 else end)
    assert (o.filled, o.fill_qty, o.fees) == (done, done, sum(q // 10 for q in fills))
    assert orders.positions.get(1, 0) == side * done
    assert o.order_id not in orders.active  # settled: every fill arrived
    assert orders.counts["duplicate_fill"] == sum(isinstance(m, Fill) for m in dups)


def test_terminal_order_waits_for_its_fills_and_filled_never_goes_back():
    orders = Orders()
    r = OrderRequest(9, 0, 10000, 1000, 1, 3, 0, int(OrderAction.NEW), 1, 0)
    o = orders.sent(r)
    orders.on_update(OrderUpdate(9, 10000, 1000, 600, 5, 1, int(S.CANCELLED), 1, 0, b""))
    assert not o.live and o.lock_qty == 600  # executed, fills still to come: still reserved
    assert 9 in orders.active
    orders.on_update(OrderUpdate(9, 10000, 1000, 200, 4, 1, int(S.PARTIALLY_FILLED), 1, 0, b""))  # late
    assert o.filled == 600 and o.status == S.CANCELLED
    orders.on_fill(Fill(9, 1, 10000, 600, 0, 4, 1, 1, 1, b"USDT"))
    assert o.lock_qty == 0 and 9 not in orders.active and orders.get(9) is o


def test_cancel_reject_clears_the_pending_cancel_and_a_stray_one_is_counted():
    orders = Orders()
    o = orders.sent(OrderRequest(9, 0, 10000, 1000, 1, 3, 0, int(OrderAction.NEW), 1, 0))
    orders.on_update(OrderUpdate(9, 10000, 1000, 0, 5, 1, int(S.OPEN), 1, 0, b""))
    orders.sent(OrderRequest(10, 9, 10000, 1000, 1, 3, 0, int(OrderAction.CANCEL), 1, 0))
    assert o.pending == OrderAction.CANCEL
    rej = OrderUpdate(9, 10000, 1000, 0, 6, 1, int(S.CANCEL_REJECTED), 1, int(Reject.BAD_REQUEST), b"")
    assert orders.on_update(rej) is o and o.pending == 0 and o.live
    assert orders.on_update(rej) is None and orders.counts["stray_cancel_reject"] == 1


@pytest.mark.parametrize("end", [S.FILLED, S.CANCELLED])
def test_an_amend_that_ends_at_once_is_applied_before_its_fills(end):
    """A replacement (Binance cancelReplace) that fills or ends at once reports the amended size in a
    terminal update first: its fills are measured against that size, not counted as an overfill."""
    orders = Orders()
    o = orders.sent(OrderRequest(9, 0, 10000, 100, 1, 3, 0, int(OrderAction.NEW), 1, 0))
    orders.on_update(OrderUpdate(9, 10000, 100, 0, 5, 1, int(S.OPEN), 1, 0, b""))
    orders.sent(OrderRequest(10, 9, 10020, 200, 1, 3, 0, int(OrderAction.AMEND), 1, 0))
    orders.on_update(OrderUpdate(9, 10020, 200, 200 if end == S.FILLED else 150, 6, 1, int(end), 1, 0, b""))
    assert (o.price, o.size, o.status, o.target) == (10020, 200, end, None)
    orders.on_fill(Fill(9, 1, 10020, o.filled, 0, 6, 1, 1, 1, b"USDT"))
    assert orders.counts["overfill"] == 0 and 9 not in orders.active and orders.positions[1] == o.filled


def test_an_amend_still_lands_after_a_cancel_sent_behind_it():
    """Amend, then cancel before the amend is answered: the venue may apply the amend and fill the
    new size before the cancel arrives; that update carries the amend's price and size, so the fills
    are measured against it (no overfill) and the cancel stays pending."""
    orders = Orders()
    o = orders.sent(OrderRequest(9, 0, 10000, 100, 1, 3, 0, int(OrderAction.NEW), 1, 0))
    orders.on_update(OrderUpdate(9, 10000, 100, 0, 5, 1, int(S.OPEN), 1, 0, b""))
    orders.sent(OrderRequest(10, 9, 10020, 200, 1, 3, 0, int(OrderAction.AMEND), 1, 0))
    orders.sent(OrderRequest(11, 9, 10020, 200, 1, 3, 0, int(OrderAction.CANCEL), 1, 0))
    orders.on_update(OrderUpdate(9, 10020, 200, 150, 6, 1, int(S.PARTIALLY_FILLED), 1, 0, b""))
    assert (o.price, o.size, o.target, o.pending) == (10020, 200, None, int(OrderAction.CANCEL))
    orders.on_fill(Fill(9, 1, 10020, 150, 0, 6, 1, 1, 1, b"USDT"))
    assert orders.counts["overfill"] == 0 and o.open_qty == 50


def test_two_amends_in_flight_either_may_land():
    """Two amends sent back to back, the second back to the order's own price and size: the
    venue's ack of the order says nothing about them, a rejection does not say which failed, and
    the first landing and filling is booked against its size (no overfill)."""
    orders = Orders()
    o = orders.sent(OrderRequest(9, 0, 10000, 100, 1, 3, 0, int(OrderAction.NEW), 1, 0))
    orders.sent(OrderRequest(10, 9, 10020, 600, 1, 3, 0, int(OrderAction.AMEND), 1, 0))
    orders.sent(OrderRequest(11, 9, 10000, 100, 1, 3, 0, int(OrderAction.AMEND), 1, 0))
    assert o.lock_qty == 600  # the largest size it may have
    orders.on_update(OrderUpdate(9, 10000, 100, 0, 5, 1, int(S.CANCEL_REJECTED), 1, 0, b""))
    orders.on_update(OrderUpdate(9, 10000, 100, 0, 5, 1, int(S.OPEN), 1, 0, b""))
    assert o.lock_qty == 600 and o.target == (10000, 100)
    orders.on_update(OrderUpdate(9, 10020, 600, 600, 6, 1, int(S.FILLED), 1, 0, b""))
    orders.on_fill(Fill(9, 1, 10020, 600, 0, 6, 1, 1, 1, b"USDT"))
    assert (o.price, o.size) == (10020, 600) and orders.counts["overfill"] == 0 and 9 not in orders.active


@pytest.mark.parametrize("action", [OrderAction.CANCEL, OrderAction.AMEND])
def test_an_order_the_venue_does_not_know_ends(action):
    """A venue that restarted forgot our open order: its "unknown order" answer to a cancel or an
    amend ends the order, or it would stay open (and be asked about) for ever."""
    orders = Orders()
    o = orders.sent(OrderRequest(9, 0, 10000, 1000, 1, 3, 0, int(OrderAction.NEW), 1, 0))
    orders.on_update(OrderUpdate(9, 10000, 1000, 0, 5, 1, int(S.OPEN), 1, 0, b""))
    orders.sent(OrderRequest(10, 9, 10010, 1000, 1, 3, 0, int(action), 1, 0))
    rej = OrderUpdate(9, 10000, 1000, 0, 6, 1, int(S.CANCEL_REJECTED), 1, int(Reject.UNKNOWN_ORDER), b"")
    assert orders.on_update(rej) is o and not o.live and o.pending == 0 and o.target is None
    assert orders.live() == [] and 9 not in orders.active and orders.counts["unknown_to_venue"] == 1
    assert o.open_qty == o.lock_qty == 0  # it holds no balance and no position room any more


def test_unknown_orders_are_counted_not_booked():
    orders = Orders()
    assert orders.on_fill(Fill(99, 1, 10000, 5, 0, 1, 1, 1, 1, b"USDT")) is None
    assert orders.on_update(OrderUpdate(99, 1, 1, 0, 1, 1, int(S.OPEN), 1, 0, b"")) is None
    assert orders.positions == {} and orders.counts["unknown_fill"] == orders.counts["unknown_update"] == 1


@given(st.lists(st.tuples(st.integers(1, 20), st.sampled_from([1, -1]), st.integers(1, 500)), min_size=1, max_size=8),
       st.data())
def test_balance_estimate_equals_the_venue_once_snapshots_arrive_in_any_order(fills, data):
    """The venue publishes a balance after each fill (timestamps ordered); we get both streams
    shuffled.  Whatever arrived, the estimate ends at the last snapshot's figure."""
    inst = REG[1]
    base, quote, ts, msgs = 5000, 1_000_000, 0, []
    for price_off, side, q in fills:
        ts += 1
        price = 10000 + price_off
        msgs.append(Fill(1, ts, price, q, 1, ts, 1, side, 2, b"USDT"))
        base += side * q
        quote += (-(-price * q // 1000) * -1 if side > 0 else price * q // 1000) - 1  # cost up, proceeds down, fee
        msgs.append(BalanceUpdate(base, base, ts, 3, 1, b"BTC"))
        msgs.append(BalanceUpdate(quote, quote, ts, 2, 1, b"USDT"))
    b = Balances(asset_scales(REG))
    b.on_balance(BalanceUpdate(5000, 5000, 0, 3, 1, b"BTC"))
    b.on_balance(BalanceUpdate(1_000_000, 1_000_000, 0, 2, 1, b"USDT"))
    for m in data.draw(st.permutations(msgs)):
        b.on_fill(inst, m) if isinstance(m, Fill) else b.on_balance(m)
    assert b.total("binance", "BTC") == base
    assert b.total("binance", "USDT") == quote


def test_a_request_is_booked_alike_from_its_fields():
    """The overseer books what it sent from the request's fields, not a built OrderRequest."""
    reqs = [OrderRequest(9, 0, 10000, 1000, 1, 3, 0, int(OrderAction.NEW), 1, 0),
            OrderRequest(9, 0, 10000, 1000, 1, 3, 0, int(OrderAction.NEW), 1, 0),  # a duplicate
            OrderRequest(10, 9, 10010, 1200, 1, 3, 0, int(OrderAction.AMEND), 1, 0),
            OrderRequest(11, 9, 10010, 1200, 1, 3, 0, int(OrderAction.CANCEL), 1, 0),
            OrderRequest(12, 8, 10010, 1200, 1, 3, 0, int(OrderAction.CANCEL), 1, 0)]  # unknown order
    a, b = Orders(), Orders()
    for r in reqs:
        x, y = a.sent(r), b.sent(tuple(r))
        assert (x is None) == (y is None)
        if x is not None:
            assert repr(x) == repr(y) and (x.target, x.amends) == (y.target, y.amends)
    assert a.counts == b.counts and a.counts["duplicate_request"] == 1
