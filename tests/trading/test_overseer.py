"""Overseer: ideal vs orders (place once, amend or cancel-then-new, withdraw), every refusal reason
counted and explained, rate limits with retry, kill switch."""

import logging

import pytest

from mantra.spine.messages import (BalanceUpdate, Fill, IdealOrder, OrderAction as A, OrderFlags, OrderStatus as S,
                                   OrderUpdate)
from mantra.trading.accounts import Reject
from mantra.trading.overseer import Overseer

from .harness import INSTRUMENTS, Array, Clock, Port, make

BTC, KR = 1, 2
MODEL = 11


class Rig:
    def __init__(self, **over):
        params = dict(models=["m"], instruments=INSTRUMENTS,
                      venues={"binance": {"fee_bps": 20, "amend": True, "rate": 100},
                              "kraken": {"fee_bps": 26, "amend": False, "rate": 100}},
                      limits={"binance:BTCUSDT": {"max_position": "2", "max_notional": "1000"},
                              "kraken:XBT/USDT": {"max_position": "2", "max_notional": "1000"}})
        params.update(over)
        self.clock = Clock()
        self.arr = Array(4)
        self.model = Port(self.arr, MODEL)
        self.ov = make(Overseer, self.clock, actor_id=3, arrays={"m": self.arr}, **params)
        self.answer(BalanceUpdate(5000, 5000, 1, 3, 1, b"BTC"), BalanceUpdate(100000, 100000, 1, 2, 1, b"USDT"),
                    BalanceUpdate(50000, 50000, 1, 4, 5, b"BTC"), BalanceUpdate(10000, 10000, 1, 1, 5, b"USDT"))

    def want(self, slot, price, size, side=1, iid=BTC, flags=0):
        self.model.write(slot, IdealOrder(price, size, iid, side, int(flags)))

    def run(self):
        self.ov.loop()
        return self.ov.requests.take()

    def answer(self, *msgs):
        for m in msgs:
            {OrderUpdate: self.ov.on_updates, Fill: self.ov.on_fills, BalanceUpdate: self.ov.on_balances}[type(m)](m)


def upd(r, status, filled=0, price=None, size=None, ts=5, reason=0):
    oid = r.order_id if r.action == A.NEW else r.ref_id
    return OrderUpdate(oid, r.price if price is None else price, r.size if size is None else size, filled, ts,
                       r.instrument, int(status), r.side, reason, b"")


def test_an_ideal_is_placed_once_and_fills_consume_it():
    g = Rig()
    g.want(0, 10000, 500)
    (r,) = g.run()
    assert (r.action, r.price, r.size, r.side, r.instrument, r.model, r.slot) == (A.NEW, 10000, 500, 1, BTC, MODEL, 0)
    assert g.run() == []  # in flight: nothing more
    g.answer(upd(r, S.ACK), upd(r, S.OPEN))
    assert g.run() == []
    g.answer(Fill(r.order_id, 1, 10000, 500, 10, 6, BTC, 1, 1, b"USDT"), upd(r, S.FILLED, 500))
    assert g.run() == []  # filled: not re-placed behind the model's back
    assert g.ov.orders.positions[BTC] == 500
    g.want(0, 10000, 500)  # the model re-arms the slot
    (r2,) = g.run()
    assert r2.action == A.NEW and r2.order_id != r.order_id


def test_a_changed_price_is_an_amend_where_the_venue_has_it():
    g = Rig()
    g.want(0, 10000, 500)
    (r,) = g.run()
    g.answer(upd(r, S.OPEN), Fill(r.order_id, 1, 10000, 200, 0, 6, BTC, 1, 1, b"USDT"), upd(r, S.PARTIALLY_FILLED, 200))
    g.want(0, 9990, 500)
    (a,) = g.run()
    assert (a.action, a.ref_id, a.price, a.size) == (A.AMEND, r.order_id, 9990, 700)  # filled + wanted open
    assert g.run() == []
    g.answer(upd(a, S.PARTIALLY_FILLED, 200, price=9990, size=700))
    assert g.run() == []
    o = g.ov.orders.get(r.order_id)
    assert (o.price, o.size, o.pending) == (9990, 700, 0)


def test_without_amend_a_change_cancels_first_and_places_after_the_confirmation():
    g = Rig()
    g.want(1, 1000, 100, iid=KR)
    (r,) = g.run()
    g.answer(upd(r, S.OPEN))
    g.want(1, 995, 100, iid=KR)
    (c,) = g.run()
    assert (c.action, c.ref_id) == (A.CANCEL, r.order_id)
    assert g.run() == []  # never two live orders in one slot
    g.answer(upd(c, S.CANCELLED))
    (n,) = g.run()
    assert (n.action, n.price, n.size) == (A.NEW, 995, 100)


def test_an_amend_the_venue_refuses_becomes_cancel_then_new():
    g = Rig()
    g.want(0, 10000, 500, flags=OrderFlags.POST_ONLY)
    (r,) = g.run()
    g.answer(upd(r, S.OPEN))
    g.want(0, 10050, 500, flags=OrderFlags.POST_ONLY)
    (a,) = g.run()
    assert a.action == A.AMEND
    g.answer(upd(a, S.CANCEL_REJECTED, price=10000, size=500, reason=6))
    (c,) = g.run()
    assert (c.action, c.ref_id) == (A.CANCEL, r.order_id)
    g.answer(upd(c, S.CANCELLED))
    (n,) = g.run()
    assert (n.action, n.price) == (A.NEW, 10050)
    assert g.ov.venue_rejects["CANCEL_POST_ONLY"] == 1


def test_size_zero_withdraws_the_order():
    g = Rig()
    g.want(2, 10000, 500, side=-1)
    (r,) = g.run()
    g.answer(upd(r, S.OPEN))
    g.want(2, 0, 0)
    (c,) = g.run()
    assert (c.action, c.ref_id) == (A.CANCEL, r.order_id)


def refused(g, caplog):
    caplog.clear()
    assert g.run() == []
    return [r.message.rsplit(": ", 1)[1].split(" (")[0] for r in caplog.records if "refused" in r.message]


@pytest.mark.parametrize("setup,want,reason", [
    ({}, dict(price=10000, size=500, iid=3), "UNKNOWN_INSTRUMENT"),
    ({"limits": {}}, dict(price=10000, size=500), "NO_LIMITS"),
    ({"venues": {"kraken": {}}}, dict(price=10000, size=500), "NO_VENUE"),
    ({}, dict(price=10000, size=1), "FILTER"),  # below the 0.002 minimum size
    ({}, dict(price=1003, size=100, iid=KR), "FILTER"),  # off the 0.5 tick
    ({}, dict(price=10000, size=2001), "POSITION"),  # 2.001 > 2 BTC
    ({}, dict(price=60000, size=1700), "NOTIONAL"),  # 1.7 x 600.00 = 1020 > 1000
    ({}, dict(price=10000, size=1100, side=-1), "BALANCE"),  # 1.1 BTC to sell, 1 BTC held (see below)
])
def test_each_refusal_is_counted_and_explained(setup, want, reason, caplog):
    caplog.set_level(logging.WARNING)
    g = Rig(**setup)
    if reason == "BALANCE":
        g.answer(BalanceUpdate(1000, 1000, 2, 3, 1, b"BTC"))
    g.want(0, **want)
    assert refused(g, caplog) == [reason]
    assert g.ov.refusals[reason] == 1
    g.answer(BalanceUpdate(100000, 100000, 9, 2, 1, b"USDT"))  # an account change: retried, counted, not re-logged
    assert refused(g, caplog) == []
    assert g.ov.refusals[reason] == 2


def test_no_self_trade_with_our_own_resting_order_on_the_venue():
    g = Rig()
    g.want(0, 10000, 500, side=-1)
    (r,) = g.run()
    g.want(1, 10000, 500, side=1)  # would meet our sell at 100.00
    assert g.run() == [] and g.ov.refusals["SELF_TRADE"] == 1
    g.want(1, 9999, 500, side=1)
    assert [x.action for x in g.run()] == [A.NEW]
    g.want(2, 10000, 100, side=1, iid=KR)  # other venue: no conflict
    assert [x.action for x in g.run()] == [A.NEW]


def test_balance_counts_orders_in_flight_and_fills_not_yet_in_a_balance():
    g = Rig(limits={"binance:BTCUSDT": {"max_position": "100", "max_notional": "100000"}})
    g.want(0, 10000, 5000)  # 5 BTC at 100.00: 500.00 + 1.00 fee reserved, in flight
    (r,) = g.run()
    g.want(1, 10000, 5000)  # another 501.00: only 499.00 left of 1000.00
    assert g.run() == [] and g.ov.refusals["BALANCE"] == 1
    g.want(1, 10000, 4800)  # 480.00 + 0.96
    (r2,) = g.run()
    # the first buy fills; no balance snapshot yet: the estimate moves with the fill
    g.answer(Fill(r.order_id, 1, 10000, 5000, 100, 7, BTC, 1, 2, b"USDT"), upd(r, S.FILLED, 5000, ts=7))
    g.want(2, 10000, 181)  # 18.10 + 0.04 > the 18.04 left
    assert g.run() == [] and g.ov.refusals["BALANCE"] == 2
    g.answer(BalanceUpdate(49900, 900, 8, 2, 1, b"USDT"))  # the venue's figure, covering the fill: same result
    assert g.run() == [] and g.ov.refusals["BALANCE"] == 3
    g.want(2, 10000, 180)  # 18.00 + 0.036 -> 0.04: exactly what is left
    assert [x.action for x in g.run()] == [A.NEW]
    assert g.ov.balances.total("binance", "USDT") == 49900


def test_rate_limit_refuses_then_retries_when_the_window_frees():
    g = Rig(venues={"binance": {"fee_bps": 20, "amend": True, "rate": 2, "rate_window_ms": 1000}})
    t0 = g.clock.t
    for s in range(3):
        g.want(s, 9990 - s, 500)
    assert [r.slot for r in g.run()] == [0, 1]
    assert g.ov.refusals["RATE"] == 1 and g.ov.wakeup == t0 + 1_000_000_000
    g.clock.t = t0 + 999_999_999
    assert g.run() == []
    g.clock.t = t0 + 1_000_000_000
    assert [r.slot for r in g.run()] == [2]
    assert g.ov.wakeup == t0 + 5_000_000_000  # no retry due; the answer deadline of the first two


def test_cancels_are_never_held_back_by_the_rate_limit():
    g = Rig(venues={"binance": {"fee_bps": 20, "amend": True, "rate": 1, "rate_window_ms": 1000}})
    g.want(0, 10000, 500)
    (r,) = g.run()
    g.answer(upd(r, S.OPEN))
    g.want(0, 0, 0)
    assert [x.action for x in g.run()] == [A.CANCEL]


def test_kill_file_cancels_everything_and_refuses_new_orders(tmp_path, caplog):
    kill = tmp_path / "KILL"
    g = Rig(kill_file=str(kill))
    g.want(0, 10000, 500)
    g.want(1, 1000, 100, iid=KR)
    a, b = g.run()
    g.answer(upd(a, S.OPEN))  # b still in flight
    kill.write_text("")
    assert g.run() == []  # the file is polled at most every 100 ms
    g.clock.t += 100_000_000
    (c,) = g.run()
    assert (c.action, c.ref_id) == (A.CANCEL, a.order_id)
    assert "KILL SWITCH" in caplog.text
    g.answer(upd(b, S.OPEN))  # the in-flight one is cancelled once the venue has it
    (c2,) = g.run()
    assert (c2.action, c2.ref_id) == (A.CANCEL, b.order_id)
    g.want(2, 9990, 500)
    assert g.run() == [] and g.ov.refusals["KILLED"] == 1


def test_a_parked_overseer_of_its_own_polls_the_ideals():
    g = Rig(poll_ns=2_000_000)
    g.run()
    assert g.ov.wakeup == g.clock.t + 2_000_000  # seqlock writes ring no doorbell
    assert Rig().ov.wakeup == 0  # by default only rate retries ask for a wake-up


def test_a_lost_new_is_cancelled_after_the_timeout_and_the_slot_freed(caplog):
    g = Rig(answer_timeout_ms=100)
    g.want(0, 10000, 500)
    (r,) = g.run()
    g.clock.t += 50_000_000
    assert g.run() == [] and g.ov.wakeup == g.clock.t + 50_000_000  # asks to be woken at the deadline
    g.clock.t += 60_000_000
    with caplog.at_level(logging.WARNING):
        (c,) = g.run()
    assert (c.action, c.ref_id) == (A.CANCEL, r.order_id) and g.ov.lost_answers["NEW"] == 1
    assert "no answer to the NEW" in caplog.text
    g.answer(upd(c, S.CANCEL_REJECTED, reason=7))  # the venue never heard of it: UNKNOWN_ORDER
    assert not g.ov.orders.live() and g.ov.orders.counts["lost_new"] == 1
    assert g.run() == []  # like any order that ended: the model sees it and re-arms the slot
    g.want(0, 10000, 500)
    (again,) = g.run()
    assert again.action == A.NEW and again.order_id != r.order_id and (again.price, again.size) == (10000, 500)


def test_an_answered_order_never_times_out():
    g = Rig(answer_timeout_ms=100)
    g.want(0, 10000, 500)
    (r,) = g.run()
    g.answer(upd(r, S.ACK), upd(r, S.OPEN))
    g.clock.t += 10**9
    assert g.run() == [] and not g.ov.lost_answers and g.ov.wakeup == 0


def test_a_lost_cancel_is_sent_again():
    g = Rig(answer_timeout_ms=100)
    g.want(0, 10000, 500)
    (r,) = g.run()
    g.answer(upd(r, S.ACK), upd(r, S.OPEN))
    g.want(0, 0, 0)
    (c,) = g.run()
    g.clock.t += 150_000_000
    (c2,) = g.run()
    assert (c.action, c2.action, c2.ref_id) == (A.CANCEL, A.CANCEL, r.order_id) and g.ov.lost_answers["CANCEL"] == 1
    g.answer(upd(c2, S.CANCELLED))
    assert not g.ov.orders.live() and g.run() == []


@pytest.mark.parametrize("venue_slot", [(KR, 1), (BTC, 0)])  # a change by cancel, a change by amend
def test_an_order_the_venue_forgot_ends_and_frees_its_slot(venue_slot, caplog):
    """A restarted venue (or handler) no longer knows our open order: its "unknown order" answer
    ends the order once, and the slot's new wish is placed: no cancel asked again and again."""
    iid, slot = venue_slot
    price = 1000 if iid == KR else 10000
    g = Rig()
    g.want(slot, price, 100 if iid == KR else 500, iid=iid)
    (r,) = g.run()
    g.answer(upd(r, S.OPEN))
    g.want(slot, price - 5, 100 if iid == KR else 500, iid=iid)
    (c,) = g.run()
    assert c.action == (A.CANCEL if iid == KR else A.AMEND)
    with caplog.at_level(logging.WARNING):
        g.answer(upd(c, S.CANCEL_REJECTED, price=r.price, size=r.size, reason=7))  # UNKNOWN_ORDER
        reqs = g.run() + g.run()
        g.want(slot, price - 5, 100 if iid == KR else 500, iid=iid)  # the model saw the order end: re-armed
        reqs += g.run() + g.run()
    assert [x.action for x in reqs] == [A.NEW] and reqs[0].price == price - 5
    assert not g.ov.orders.get(r.order_id).live
    assert g.ov.venue_rejects["CANCEL_UNKNOWN_ORDER"] == 1
    assert caplog.text.count(f"order {r.order_id} is unknown to the venue") == 1


def test_a_cancel_the_venue_keeps_refusing_is_retried_with_backoff():
    """Every cancel answered at once with a refusal: retries back off (never the round-trip rate)."""
    g = Rig(cancel_retry_ms=50, cancel_retry_max_ms=2000)
    g.want(0, 10000, 500)
    (r,) = g.run()
    g.answer(upd(r, S.OPEN))
    g.want(0, 0, 0)
    t0, sent = g.clock.t, []
    while g.clock.t < t0 + 20 * 10**9:
        for c in g.run():
            assert (c.action, c.ref_id) == (A.CANCEL, r.order_id)
            sent.append(g.clock.t)
            g.answer(upd(c, S.CANCEL_REJECTED, reason=9))  # refused, the order stands
        g.clock.t += 1_000_000
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert gaps[:6] == [50_000_000, 100_000_000, 200_000_000, 400_000_000, 800_000_000, 1_600_000_000]
    assert set(gaps[6:]) == {2_000_000_000} and len(sent) == 15  # capped: one every 2 s
    assert g.ov.wakeup == sent[-1] + 2_000_000_000  # it asks to be woken for the next one


def test_cancel_retries_wait_for_the_rate_window():
    g = Rig(venues={"binance": {"fee_bps": 20, "amend": True, "rate": 2, "rate_window_ms": 1000}},
            cancel_retry_ms=1)
    for s in range(2):
        g.want(s, 10000 - s, 500)
    rs = g.run()
    g.answer(*(upd(r, S.OPEN) for r in rs))
    t0 = g.clock.t = g.clock.t + 10**9
    for s in range(2):
        g.want(s, 0, 0)
    cancels = g.run()
    assert len(cancels) == 2  # first cancels are never held back
    g.answer(*(upd(c, S.CANCEL_REJECTED, reason=9) for c in cancels))
    g.clock.t += 5_000_000
    assert g.run() == [] and g.ov.wakeup == t0 + 10**9  # the retries wait for the window
    g.clock.t = t0 + 10**9
    assert [c.action for c in g.run()] == [A.CANCEL, A.CANCEL]


def test_an_unanswered_cancel_is_retried_with_a_growing_wait():
    g = Rig(answer_timeout_ms=100, cancel_retry_max_ms=1000)
    g.want(0, 10000, 500)
    (r,) = g.run()
    g.answer(upd(r, S.OPEN))
    g.want(0, 0, 0)
    t0, sent = g.clock.t, []
    while g.clock.t < t0 + 5 * 10**9:
        sent += [g.clock.t for c in g.run() if c.action == A.CANCEL]
        g.clock.t += 1_000_000
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert gaps[:4] == [100_000_000, 200_000_000, 400_000_000, 800_000_000] and set(gaps[4:]) == {1_000_000_000}


def test_a_venue_that_halts_order_entry_trips_the_kill_switch(caplog):
    """An account handler answers HALTED when its venue banned us or refused the key: everything is
    cancelled and nothing new goes out."""
    g = Rig()
    g.want(0, 10000, 500)
    (a,) = g.run()
    g.answer(upd(a, S.OPEN))
    g.answer(OrderUpdate(0, 0, 0, 0, 6, BTC, S.REJECTED, 0, int(Reject.HALTED), b""))
    assert "KILL SWITCH: order entry halted on binance" in caplog.text
    kinds = [(x.action, x.ref_id) for x in g.run()]
    assert (A.CANCEL, a.order_id) in kinds
    g.want(1, 9990, 500)
    assert all(x.action != A.NEW for x in g.run())
