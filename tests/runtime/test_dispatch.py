"""The C dispatcher: per-message handler calls, the deterministic merge by publish time, its stops,
and book ports.  Rings in one process; a SimClock shows each handler its record's time."""

from hypothesis import given, settings
from hypothesis import strategies as st

from mantra import _spine
from mantra.book import Book
from mantra.runtime.actor import Tracking
from mantra.runtime.clock import SimClock
from mantra.spine import Ring
from mantra.spine.messages import L2Flags, L2Update, TradeUpdate

LAST = int(L2Flags.LAST)


class Owner:
    wakeup = 0


def make_input(ring, handler, clock, owner=None, stop_after=False, books=None, track=None):
    t = ring.msg_type
    return _spine.Input(ring.reader("t").reader, handler, t, list(t.FIELDS_AT), track or Tracking(), clock, None, 1,
                        owner, stop_after, books)


def publish(ring, msg, at, origin=None):
    ring.writer()._w.publish(ring.msg_type.STRUCT.pack(*msg), origin or at, 9, at)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 50)), min_size=1, max_size=60))
def test_records_of_several_inputs_are_handed_over_in_publish_time_order(tmp_path_factory, recs):
    d = tmp_path_factory.mktemp("q")
    a, b = Ring.create(d / "a", L2Update, 256), Ring.create(d / "b", TradeUpdate, 256)
    pa, pb = a.writer(), b.writer()
    clock, seen = SimClock(1), []
    ins = [make_input(a, lambda m: seen.append((clock.t, "a", m.price)), clock),
           make_input(b, lambda m: seen.append((clock.t, "b", m.price)), clock)]
    ta = tb = 0  # each ring is in time order, the two interleave arbitrarily
    for k, (on_a, dt) in enumerate(recs):
        if on_a:
            ta += dt
            pa._w.publish(L2Update.STRUCT.pack(k, 1, 0, 1, 1, 0), 1, 9, ta)
        else:
            tb += dt
            pb._w.publish(TradeUpdate.STRUCT.pack(k, 1, 0, k, 1, 1), 1, 9, tb)
    limit = max(ta, tb) // 2 + 1
    _spine.dispatch_all(ins, limit)
    want = sorted([(t, "a" if on_a else "b", k) for k, ((on_a, _), t) in enumerate(
        zip(recs, _times(recs)))], key=lambda x: (x[0], x[1]))
    assert seen == [w for w in want if w[0] < limit]  # ties: list order; the limit is exclusive
    _spine.dispatch_all(ins, 2**64 - 1)
    assert seen == want


def _times(recs):
    ta = tb = 0
    for on_a, dt in recs:
        if on_a:
            ta += dt
            yield ta
        else:
            tb += dt
            yield tb


def test_the_merge_stops_at_a_reaction_and_at_a_wake_up(sysdir):
    a, out = Ring.create(sysdir / "a", L2Update, 64), Ring.create(sysdir / "out", L2Update, 64)
    w = out.writer()
    clock, owner, seen = SimClock(1), Owner(), []

    def handler(m):
        seen.append(m.price)
        if m.price == 3:
            w.send(m, origin=1, publisher=1)  # a reaction: the runner must run loops now
        if m.price == 5:
            owner.wakeup = clock.t  # "call my loop now"
        if m.price == 7:
            owner.wakeup = 95  # later: records from 95 on wait for that loop

    inp = make_input(a, handler, clock, owner)
    for i in range(1, 11):
        publish(a, L2Update(i, 1, 0, 1, 1, 0), at=10 * i)
    assert _spine.dispatch_all([inp], 2**64 - 1) and seen == [1, 2, 3] and clock.t == 30
    _spine.dispatch_all([inp], 2**64 - 1)
    assert seen[-1] == 5 and clock.t == 50
    owner.wakeup = 0
    _spine.dispatch_all([inp], 2**64 - 1)
    assert seen[-1] == 9  # 7 asked for 95: 8 (80) and 9 (90) still go, 10 (100) waits
    owner.wakeup = 0
    _spine.dispatch_all([inp], 2**64 - 1)
    assert seen[-1] == 10


def test_an_actor_that_loops_after_input_gets_the_rest_of_its_instant_first(sysdir):
    a = Ring.create(sysdir / "a", L2Update, 64)
    clock, seen = SimClock(1), []
    inp = make_input(a, lambda m: seen.append(m.price), clock, Owner(), stop_after=True)
    for i, t in enumerate([10, 10, 10, 20, 20]):
        publish(a, L2Update(i, 1, 0, 1, 1, 0), at=t)
    _spine.dispatch_all([inp], 2**64 - 1)
    assert seen == [0, 1, 2]
    _spine.dispatch_all([inp], 2**64 - 1)
    assert seen == [0, 1, 2, 3, 4]


def test_a_book_port_applies_levels_in_c_and_calls_once_per_message(sysdir):
    a = Ring.create(sysdir / "a", L2Update, 64)
    clock, books, seen, track = SimClock(1), {1: Book()}, [], Tracking()
    inp = make_input(a, lambda m: seen.append((m.price, books[1].best_bid(), books[1].best_ask(), track.origin)),
                     clock, books=books, track=track)
    msgs = [L2Update(100, 5, 0, 1, 1, 0), L2Update(101, 5, 0, 2, 1, LAST),  # instrument 2: not followed
            L2Update(105, 5, 0, 1, -1, LAST), L2Update(99, 5, 0, 1, 1, 0), L2Update(100, 0, 0, 1, 1, LAST)]
    for k, m in enumerate(msgs):
        publish(a, m, at=10 + k, origin=1000 + k)
    assert inp.dispatch() == 5 and inp.handled == 5
    assert seen == [(105, 100, 105, 1002), (100, 99, 105, 1004)]
    assert books[1].levels(1) == [(99, 5)]


def test_a_bad_record_on_a_book_port_is_an_error_the_runner_counts_not_a_crash(sysdir):
    a = Ring.create(sysdir / "a", L2Update, 64)
    books, seen = {1: Book()}, []
    inp = make_input(a, lambda m: seen.append(m.price), SimClock(1), books=books)
    publish(a, L2Update(100, -5, 0, 1, 1, LAST), at=10)
    publish(a, L2Update(101, 5, 0, 1, 1, LAST), at=11)
    try:
        inp.dispatch()
        raise AssertionError("no error")
    except ValueError as e:
        assert "negative size" in str(e)
    assert inp.failed and inp.errors == 1  # the runner logs and counts it against the actor
    assert seen == [101] and inp.handled == 2  # the bad record was consumed, the next one went too
    inp.failed = False
    assert inp.dispatch() == 0


def test_an_input_whose_handler_always_raises_does_not_starve_the_others(sysdir, caplog):
    from types import SimpleNamespace

    import pytest

    from mantra.runtime.process import Runner

    a, b = Ring.create(sysdir / "a", L2Update, 1024), Ring.create(sysdir / "b", L2Update, 1024)
    seen = []

    def broken(m):
        raise RuntimeError(f"bad {m.price}")

    ins = [make_input(a, broken, None), make_input(b, lambda m: seen.append(m.price), None)]
    for k in range(600):
        publish(a, L2Update(k, 1, 0, 1, 1, 0), at=k + 1)
        publish(b, L2Update(k, 1, 0, 1, 1, 0), at=k + 1)
    with pytest.raises(RuntimeError, match="bad 0"):  # the pass's first failure, raised after the pass
        _spine.dispatch_each(ins, 512)
    assert seen == list(range(512))  # the other input was served in the same pass
    assert ins[0].handled == ins[0].errors == 512 and ins[0].failed  # every failing record consumed, counted
    # the runner counts each failing record against the actor and logs a few of them
    slot = SimpleNamespace(inputs=[SimpleNamespace(c=c, errors_seen=0, port=p) for c, p in zip(ins, "ab")],
                           errors=0, spec=SimpleNamespace(name="x"))
    with caplog.at_level("ERROR", logger="mantra.runtime"):
        try:
            _spine.dispatch_each(ins, 512)
        except RuntimeError:
            Runner._failed(None, slot)
    assert slot.errors == 600 and ins[0].errors == 600 and seen == list(range(600))
    assert 1 <= len(caplog.records) <= 11


def test_an_interrupt_in_a_handler_stops_the_pass_at_once(sysdir):
    import pytest

    a, b = Ring.create(sysdir / "a", L2Update, 64), Ring.create(sysdir / "b", L2Update, 64)
    seen = []

    def interrupted(m):
        raise KeyboardInterrupt

    ins = [make_input(a, interrupted, None), make_input(b, seen.append, None)]
    publish(a, L2Update(1, 1, 0, 1, 1, 0), at=1)
    publish(b, L2Update(2, 1, 0, 1, 1, 0), at=1)
    with pytest.raises(KeyboardInterrupt):
        _spine.dispatch_each(ins, 10)
    assert seen == []


def test_a_watched_book_calls_its_handler_only_when_a_message_reaches_what_is_watched(sysdir):
    a = Ring.create(sysdir / "a", L2Update, 64)
    clock, books, seen = SimClock(1), {1: Book()}, []
    books[1].watch([(1, 100, 5)])  # a resting bid at 100 with 5 ahead of it
    inp = make_input(a, lambda m: seen.append((m.price, clock.now())), clock, books=books)
    msgs = [L2Update(100, 9, 0, 1, 1, 0), L2Update(110, 5, 0, 1, -1, LAST),  # away from it: no call
            L2Update(100, 3, 0, 1, 1, LAST),  # the level fell below the queue ahead
            L2Update(101, 5, 0, 1, 1, LAST),  # elsewhere
            L2Update(100, 5, 0, 1, -1, LAST)]  # an ask at our bid's price: the book reached it
    for k, m in enumerate(msgs):
        publish(a, m, at=10 + k)
    assert inp.dispatch() == 5 and inp.handled == 5
    assert seen == [(100, 12), (100, 14)]
    assert books[1].levels(1) == [(101, 5), (100, 3)]
    publish(a, L2Update(100, 0, 0, 1, -1, 0), at=20)  # the ask at our price goes (a venue would have filled us)
    publish(a, L2Update(120, 1, 0, 1, -1, LAST), at=21)
    assert inp.dispatch() == 2 and seen[-1] == (100, 14) and clock.now() == 21  # time moved on without a call


def test_a_trade_port_with_watched_books_hands_over_only_trades_that_can_reach_them(sysdir):
    t = Ring.create(sysdir / "t", TradeUpdate, 64)
    clock, books, seen, owner = SimClock(1), {1: Book()}, [], Owner()
    books[1].watch([(1, 100, 5), (-1, 110, 0)])  # a bid at 100 and an ask at 110 rest
    inp = _spine.Input(t.reader("t").reader, lambda m: seen.append(m.price), TradeUpdate, list(TradeUpdate.FIELDS_AT),
                       Tracking(), clock, None, 1, owner, False, books, True)
    for k, price in enumerate([105, 100, 109, 111, 101]):
        publish(t, TradeUpdate(price, 1, 0, k, 1, 1), at=10 + k)
    publish(t, TradeUpdate(105, 1, 0, 9, 2, 1), at=15)  # an instrument without a book: the handler decides
    assert inp.dispatch() == 6 and inp.handled == 6
    assert seen == [100, 111, 105] and clock.now() == 15
    owner.wakeup = 20  # a request falls due at 20: a trade then must reach the handler after it acts
    publish(t, TradeUpdate(105, 1, 0, 10, 1, 1), at=19)
    publish(t, TradeUpdate(106, 1, 0, 11, 1, 1), at=20)
    assert inp.dispatch() == 2 and seen[-1] == 106
    books[1].watch(None)  # not watched: every trade
    publish(t, TradeUpdate(105, 1, 0, 12, 1, 1), at=21)
    assert inp.dispatch() == 1 and seen[-1] == 105


def test_a_book_call_port_hands_over_instrument_book_and_exchange_time_without_a_message(sysdir):
    a = Ring.create(sysdir / "a", L2Update, 64)
    clock, books, seen, track = SimClock(1), {1: Book(), 3: Book()}, [], Tracking()
    inp = _spine.Input(a.reader("t").reader, lambda iid, book, ets: seen.append((iid, book is books[iid], ets,
                                                                                book.best_bid(), clock.now(), track.origin)),
                       L2Update, list(L2Update.FIELDS_AT), track, clock, None, 1, None, False, books, False, True)
    publish(a, L2Update(100, 5, 777, 1, 1, 0), at=10, origin=50)
    publish(a, L2Update(101, 5, 778, 1, 1, LAST), at=11, origin=51)
    publish(a, L2Update(7, 1, 2**40, 2, 1, LAST), at=12)  # an instrument without a book
    publish(a, L2Update(9, 1, -5, 3, 1, LAST), at=13, origin=53)
    assert inp.dispatch() == 4
    assert seen == [(1, True, 778, 101, 11, 51), (3, True, -5, 9, 13, 53)]
    publish(a, L2Update(101, 1, 779, 1, -1, LAST), at=14)  # an ask at the bid: crossed, not handed over
    publish(a, L2Update(101, 0, 780, 1, -1, LAST), at=15)  # uncrossed again
    assert inp.dispatch() == 2 and inp.crossed == 1
    assert [x[2] for x in seen] == [778, -5, 780] and clock.now() == 15
