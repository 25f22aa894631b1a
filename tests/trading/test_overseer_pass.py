"""The overseer's pass: slots written since the last pass and slots to redo (refused, answered)
are reconciled together in slot order, whichever kind comes first; a written slot is read just
before its turn."""

from mantra.spine.messages import OrderAction as A, OrderStatus as S

from .test_overseer import Rig, upd


def test_a_pass_serves_written_and_retried_slots_in_slot_order():
    g = Rig(venues={"binance": {"fee_bps": 20, "amend": True, "rate": 2, "rate_window_ms": 1000}})
    t0 = g.clock.t
    g.want(1, 9990, 500)
    g.want(3, 9980, 500)
    assert [r.slot for r in g.run()] == [1, 3]
    g.want(0, 9970, 500)  # the window is full: refused, retried when it frees
    assert g.run() == [] and g.ov.refusals["RATE"] == 1
    g.clock.t = t0 + 1_000_000_000
    g.want(2, 9960, 500)  # written in the pass that retries slot 0: slot 0 still goes first
    assert [(r.slot, r.price) for r in g.run()] == [(0, 9970), (2, 9960)]


def test_a_slot_written_and_to_redo_is_served_once_with_what_was_written():
    g = Rig()
    g.want(0, 10000, 500)
    g.want(1, 9990, 500)
    a, b = g.run()
    g.answer(upd(b, S.OPEN))  # slot 1 to redo (its order changed), slot 0 still in flight
    g.want(1, 9995, 500)
    g.want(0, 10005, 500)
    r, = g.run()
    assert (r.action, r.slot, r.ref_id, r.price) == (A.AMEND, 1, b.order_id, 9995)
    assert g.run() == []
    g.answer(upd(a, S.OPEN))  # slot 0 answered: what was written last is served
    r, = g.run()
    assert (r.action, r.slot, r.ref_id, r.price) == (A.AMEND, 0, a.order_id, 10005)
