"""The venue protocols' native fast paths against their Python references, at the protocol level
(the book-level equivalences are in tests/test_book.py)."""

from test_bitfinex import CHAN, Feed, entry, make


def test_bitfinex_checksum_takes_the_venue_text_while_the_book_holds_text_c_would_not_write():
    """Amounts written "1.50" or "1e-07" (not what from_fixed writes) send the checksum through the
    venue's own text; once those levels are gone it is computed in C again, equal to the reference."""
    p, _ = make()
    f = Feed(p)
    f.subscribed()
    iid = next(iter(p.books))
    px = p.registry[iid].price
    f.frame(CHAN, "[" + ",".join([entry(100, 1, "1.50"), entry(99, 1, 2), entry(101, 1, "-1e-07"), entry(102, 1, -3)]) + "]")
    assert p._odd[iid] == ({px("100")}, {px("101")})
    assert p.book_checksum(iid) == p.checksum_reference(iid)
    f.frame(CHAN, "[" + ",".join([entry(100, 0, 1), entry(101, 0, -1)]) + "]")  # both odd levels deleted
    assert p._odd[iid] == (set(), set())
    assert p.book_checksum(iid) == p.checksum_reference(iid) == p.books[iid].bitfinex_checksum(*p._scales[iid])
    f.frame(CHAN, entry(100, 1, "2.0"))  # a canonical level rewritten in an odd form
    assert p._odd[iid] == ({px("100")}, set()) and p.book_checksum(iid) == p.checksum_reference(iid)
    f.frame(CHAN, entry(100, 1, 2))
    assert p._odd[iid] == (set(), set()) and p.book_checksum(iid) == p.checksum_reference(iid)
    f.frame(CHAN, '"cs"', str(p.checksum_reference(iid)))
    assert p.stats[iid].checksum_ok == 1 and p.stats[iid].checksum_failed == 0


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mantra.book import Book, L2Book  # noqa: E402
from mantra.venues.base import emit_levels  # noqa: E402
from mantra.venues.events import Level  # noqa: E402

level = st.tuples(st.sampled_from([1, -1]), st.integers(1, 40), st.one_of(st.just(0), st.integers(1, 2**63 - 1)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(level, max_size=8), max_size=30), st.sampled_from([0, 1, 2, 5, 25]),
       st.integers(0, 2**63 - 1), st.integers(0, 2**31))
def test_apply_emit_matches_emit_levels(msgs, depth, exch_ts, iid):
    """Book.apply_emit (what every venue's apply_levels runs) against emit_levels on an L2Book: the
    same dropped levels and the same Level events (values, types, order, the last flag)."""
    book, ref = Book(depth), L2Book(depth)
    got, want = [], []
    for levels in msgs:
        assert book.apply_emit(levels, got, Level, iid, exch_ts) == emit_levels(ref, levels, want, iid, exch_ts)
        assert got == want and all(type(e) is Level for e in got)
        assert [type(x) for e in got for x in e] == [type(x) for e in want for x in e]
    assert book.bids == ref.bids and book.asks == ref.asks


def test_apply_emit_refuses_a_bad_level_and_emits_nothing():
    book, events = Book(), []
    try:
        book.apply_emit([(1, 5, 1), (1, 0, 1)], events, Level, 3, 0)
    except ValueError:
        pass
    else:
        raise AssertionError("a price of 0 must be refused")
    assert events == [] and book.bids == {5: 1}  # what came before stays: the caller resyncs
