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
