"""A restarted overseer rebuilds its orders from the queues' history: no order placed twice, and
the orders it had out stay its own (a later change of wish replaces them, once)."""

import multiprocessing as mp
import time

from mantra.runtime.actor import Actor
from mantra.runtime.config import parse
from mantra.runtime.process import Runner
from mantra.runtime.supervisor import create_spine
from mantra.runtime import paths
from mantra.spine import Ring
from mantra.spine.messages import IdealOrder, OrderAction
from mantra.trading.common import load_registry, resolve

from .harness import INSTRUMENTS


class Wisher(Actor):
    """Wants a bid and an ask; ``bid`` moves the bid when set from outside."""

    arrays = ("ideal",)
    bid = 1_000_000

    def on_start(self):
        self.iid = resolve(load_registry(INSTRUMENTS, self.system), "binance:BTCUSDT").id
        self.move(self.bid)
        self.ideal.write(1, IdealOrder(1_100_000, 10, self.iid, -1, 0))

    def move(self, price):
        self.ideal.write(0, IdealOrder(price, 10, self.iid, 1, 0))


DOC = {
    "system": {"name": "ovrestart"},
    "queues": {"l2": {"type": "L2Update", "capacity": 1024}, "trades": {"type": "TradeUpdate", "capacity": 1024},
               **{q: {"type": t, "capacity": 1024} for q, t in (("requests", "OrderRequest"), ("updates", "OrderUpdate"),
                                                              ("fills", "Fill"), ("balances", "BalanceUpdate"))}},
    "arrays": {"wish": {"type": "IdealOrder", "size": 2}},
    "actors": {
        "wisher": {"class": f"{__name__}:Wisher", "arrays": {"ideal": "wish"}},
        "overseer": {"class": "mantra.trading.overseer:Overseer",
                     "inputs": {"updates": "updates", "fills": "fills", "balances": "balances"},
                     "outputs": {"requests": "requests"}, "arrays": {"w": "wish"},
                     "params": {"models": ["w"], "instruments": INSTRUMENTS,
                                "venues": {"binance": {"fee_bps": 10, "amend": False, "rate": 1000}},
                                "limits": {"binance:BTCUSDT": {"max_position": "1", "max_notional": "100000"}}}},
        "exchange": {"class": "mantra.trading.mock_exchange:MockExchange",
                     "inputs": {"requests": "requests", "l2": "l2", "trades": "trades"},
                     "outputs": {"updates": "updates", "fills": "fills", "balances": "balances"},
                     "params": {"instruments": INSTRUMENTS, "venues": {"binance": {
                         "maker_bps": 10, "taker_bps": 20, "amend": False, "balances": {"BTC": "1", "USDT": "10000"}}}}},
    },
}


def _first_overseer(seconds):
    r = Runner(parse(DOC), ["overseer"], process="ov1")
    r.start()
    t = time.monotonic()
    while time.monotonic() - t < seconds:
        r.step()
    r.stop()  # its cursors stay behind with a pid that is about to die


def _step(runners, seconds):
    t = time.monotonic()
    while time.monotonic() - t < seconds:
        for r in runners:
            r.step()


def test_a_restarted_overseer_places_nothing_twice_and_keeps_its_orders(shm_root):
    spec = parse(DOC)
    create_spine(spec).close()
    venue_side = Runner(spec, ["wisher", "exchange"], process="main")
    venue_side.start()
    child = mp.get_context("fork").Process(target=_first_overseer, args=(0.6,))
    child.start()
    while child.is_alive():
        venue_side.step()
    assert child.exitcode == 0
    wisher, ex = (s.actor for s in venue_side.slots)
    assert len(ex.orders) == 2  # the first overseer placed both wishes

    second = Runner(spec, ["overseer"], process="ov2")
    second.start()
    _step([second, venue_side], 0.3)
    ov = second.slots[0].actor
    reqs = Ring.attach(paths.queue(paths.system_dir(spec.name), "requests")).reader("t", start=0, register=False)
    actions = [m.action for m in iter(reqs.read, None)]
    assert actions.count(int(OrderAction.NEW)) == 2 and len(actions) == 2  # nothing sent again
    assert len(ov.orders.live()) == 2 and {st.order.order_id for st in ov.slots[0]} == set(ex.orders)

    wisher.move(1_000_100)  # a new wish for the bid: replaced once (cancel, then new)
    _step([second, venue_side], 0.3)
    actions += [m.action for m in iter(reqs.read, None)]
    assert actions[2:] == [int(OrderAction.CANCEL), int(OrderAction.NEW)]
    assert sorted(o.price for o in ex.orders.values()) == [1_000_100, 1_100_000]
    second.stop()
    venue_side.stop()


def _first_run(names, seconds):
    r = Runner(parse(DOC), names, process="first")
    r.start()
    t = time.monotonic()
    while time.monotonic() - t < seconds:
        r.step()
    r.stop()


def test_after_the_venue_restarted_an_order_it_forgot_ends_once(shm_root):
    """The trading process dies and restarts: the overseer rebuilds its orders from the queues, the
    (mock) venue starts empty.  A change of wish cancels the order the venue no longer knows: its
    "unknown order" answer ends it and the new wish is placed, with no cancel sent twice."""
    spec = parse(DOC)
    create_spine(spec).close()
    names = ["wisher", "overseer", "exchange"]
    child = mp.get_context("fork").Process(target=_first_run, args=(names, 0.6))
    child.start()
    child.join()
    assert child.exitcode == 0
    reqs = Ring.attach(paths.queue(paths.system_dir(spec.name), "requests")).reader("t", start=0, register=False)
    assert [m.action for m in iter(reqs.read, None)] == [int(OrderAction.NEW)] * 2

    again = Runner(spec, names, process="again")
    again.start()
    wisher, ov, ex = (s.actor for s in again.slots)
    assert not ex.orders and len(ov.orders.live()) == 2  # the venue forgot what the overseer remembers
    _step([again], 0.2)
    wisher.move(1_000_100)
    _step([again], 0.5)
    actions = [m.action for m in iter(reqs.read, None)]
    assert actions == [int(OrderAction.CANCEL), int(OrderAction.NEW)]
    assert [o.price for o in ex.orders.values()] == [1_000_100]
    assert ov.venue_rejects["CANCEL_UNKNOWN_ORDER"] == 1 and len(ov.orders.live()) == 2
    again.stop()


def test_a_restart_without_the_whole_history_trips_the_kill_switch_and_cancels_everything(shm_root):
    """The answers queue has overwritten part of what the first overseer read: its successor cannot
    know its open orders or positions.  It trips its kill switch, cancels every order it knows and
    sends CANCEL_ALL to the venue, and places nothing more."""
    doc = {**DOC, "system": {"name": "ovpartial"},
           "queues": {**DOC["queues"], "updates": {"type": "OrderUpdate", "capacity": 16}}}
    spec = parse(doc)
    create_spine(spec).close()
    venue_side = Runner(spec, ["wisher", "exchange"], process="main")
    venue_side.start()
    wisher, ex = (s.actor for s in venue_side.slots)
    child = mp.get_context("fork").Process(target=_first_overseer_of, args=(doc, 1.5))
    child.start()
    t, price = time.monotonic(), 1_000_000
    while child.is_alive():
        venue_side.step()
        if time.monotonic() - t > 0.1 and price < 1_000_020:  # requotes: more answers than the queue holds
            t, price = time.monotonic(), price + 1
            wisher.move(price)
    assert child.exitcode == 0
    ring = Ring.attach(paths.queue(paths.system_dir(spec.name), "updates"))
    assert ring.count() > ring.capacity and len(ex.orders) == 2
    reqs = Ring.attach(paths.queue(paths.system_dir(spec.name), "requests")).reader("t", start=0, register=False)
    assert len(list(iter(reqs.read, None))) > 2  # the first overseer's

    second = Runner(spec, ["overseer"], process="ov2")
    second.start()
    ov = second.slots[0].actor
    assert "history" in ov.kill_switch.reason
    _step([second, venue_side], 0.3)
    assert int(OrderAction.CANCEL_ALL) in [m.action for m in iter(reqs.read, None)]
    assert not ex.orders and not ov.orders.live()  # nothing left on the venue
    wisher.move(price + 5)  # the model still wants a bid: refused
    _step([second, venue_side], 0.2)
    assert not [m for m in iter(reqs.read, None) if m.action == int(OrderAction.NEW)]
    assert not ex.orders and ov.refusals["KILLED"] >= 1
    second.stop()
    venue_side.stop()


def _first_overseer_of(doc, seconds):
    r = Runner(parse(doc), ["overseer"], process="ov1")
    r.start()
    t = time.monotonic()
    while time.monotonic() - t < seconds:
        r.step()
    r.stop()
