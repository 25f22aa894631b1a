"""``Book.watch``: the mock exchange is woken only for messages that reach its resting orders.

The reference is the engine called after every message (``Matching.book_moved``); the fast path
calls it only when ``Book.due()`` says so, as the runtime's book-mode input does.  Both engines get
the same requests, trades and messages and must say exactly the same things."""

from hypothesis import given, settings
from hypothesis import strategies as st

from mantra.spine.messages import OrderAction, OrderFlags, OrderRequest
from mantra.trading.matching import Matching

from .harness import INSTRUMENTS
from .test_matching import BTC, T0, venues

PRICES = st.integers(9997, 10004)
# bids at or below 10000, asks above: the book is seldom crossed, so queues ahead decide the wake-ups
LEVEL = st.one_of(st.tuples(st.just(1), st.integers(9997, 10000), st.integers(0, 300)),
                  st.tuples(st.just(-1), st.integers(10001, 10004), st.integers(0, 300)))
OPS = st.one_of(
    st.tuples(st.just("levels"), st.lists(LEVEL, min_size=1, max_size=6), st.booleans()),  # bool: clear first
    st.tuples(st.just("new"), st.sampled_from([1, -1]), PRICES, st.integers(100, 400), st.booleans()),
    st.tuples(st.just("amend"), st.integers(0, 20), PRICES, st.integers(100, 400)),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    st.tuples(st.just("trade"), st.sampled_from([1, -1, 0]), PRICES, st.integers(1, 200)),
)


class Side:
    def __init__(self, fast: bool):
        self.out, self.fast, self.woken = [], fast, 0
        self.m = Matching(INSTRUMENTS, venues(binance={"balances": {"BTC": "1000", "USDT": "100000000"}}),
                          lambda v, port, msg: self.out.append((port, msg)))

    def run(self, ops):
        t, ids = T0, []
        for op in ops:
            t += 1000
            if op[0] == "levels":
                book = self.m.books[BTC]
                if op[2]:
                    book.clear()
                for side, price, size in op[1]:
                    book.apply(side, price, size)
                if not self.fast or book.due():
                    self.woken += 1
                    self.m.book_moved(BTC, t)
            elif op[0] == "new":
                ids.append(len(ids) + 1)
                flags = int(OrderFlags.POST_ONLY) if op[4] else 0
                self.m.act(OrderRequest(ids[-1], 0, op[2], op[3], BTC, 7, 0, int(OrderAction.NEW), op[1], flags), t)
            elif op[0] in ("amend", "cancel") and ids:
                ref = ids[op[1] % len(ids)]
                ids.append(len(ids) + 1)
                action, price, size = ((OrderAction.AMEND, op[2], op[3]) if op[0] == "amend"
                                       else (OrderAction.CANCEL, 0, 0))
                self.m.act(OrderRequest(ids[-1], ref, price, size, BTC, 7, 0, int(action), 0, 0), t)
            elif op[0] == "trade":
                self.m.trade(BTC, op[1], op[2], op[3], t)
        return self.out, {i: (o.price, o.size, o.filled, o.queue) for i, o in self.m.resting[BTC].items()}


@settings(max_examples=400, deadline=None)
@given(st.lists(OPS, max_size=60))
def test_waking_only_when_due_says_and_does_exactly_what_waking_on_every_message_does(ops):
    ref, fast = Side(False), Side(True)
    assert fast.run(ops) == ref.run(ops)
    assert fast.woken <= ref.woken


def test_a_message_away_from_our_orders_does_not_wake_us_and_one_through_them_does():
    s = Side(True)
    book = s.m.books[BTC]
    for side, price, size in [(1, 10000, 500), (-1, 10010, 500)]:
        book.apply(side, price, size)
    s.m.act(OrderRequest(1, 0, 10000, 100, BTC, 7, 0, int(OrderAction.NEW), 1, int(OrderFlags.POST_ONLY)), T0)
    assert not book.due()  # the levels above came before the order: nothing to look at
    assert s.m.resting[BTC][1].queue == 500
    book.apply(1, 9999, 50)
    book.apply(-1, 10011, 50)
    book.apply(1, 10000, 600)  # our level grew: the queue ahead stays
    assert not book.due()
    book.apply(1, 10000, 400)  # it shrank below our queue ahead
    assert book.due() and not book.due()
    s.m.book_moved(BTC, T0 + 1)
    book.apply(-1, 10000, 10)  # an ask at our bid: the book moved through our order
    assert book.due()


def test_watch_refuses_what_is_not_an_order():
    s = Side(True)
    book = s.m.books[BTC]
    for bad in ([(2, 1, 1)], [[1, 1, 1]], [(1, 1)], 5):
        try:
            book.watch(bad)
        except (TypeError, ValueError):
            continue
        raise AssertionError(f"watch({bad!r}) was accepted")
    book.watch(None)
    assert book.due()  # not watched: every message is due
