"""L2Book against a naive reference model (a sorted list of levels per side)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantra.book import L2Book

BID, ASK = 1, -1


class NaiveBook:
    """Levels as plain lists, sorted on every question: obviously right, slow."""

    def __init__(self):
        self.side = {BID: {}, ASK: {}}

    def apply(self, side, price, size):
        if size:
            self.side[side][price] = size
        else:
            self.side[side].pop(price, None)

    def sorted(self, side):
        return sorted(self.side[side].items(), reverse=(side == BID))

    def truncate(self, depth):
        for side in (BID, ASK):
            self.side[side] = dict(self.sorted(side)[:depth])


ops = st.lists(
    st.tuples(st.sampled_from([BID, ASK]), st.integers(1, 40), st.integers(0, 5)),
    max_size=200,
)


def check_same(book, ref):
    for side in (BID, ASK):
        want = ref.sorted(side)
        assert list(book.levels(side)) == want
        assert book.top(side, 3) == want[:3]
        assert book.top_prices(side, 5) == [p for p, _ in want[:5]]
    bb, ba = ref.sorted(BID), ref.sorted(ASK)
    assert book.best_bid() == (bb[0][0] if bb else None)
    assert book.best_ask() == (ba[0][0] if ba else None)
    assert book.crossed() == bool(bb and ba and bb[0][0] >= ba[0][0])
    assert len(book) == len(bb) + len(ba)
    assert book.bids == ref.side[BID] and book.asks == ref.side[ASK]


@settings(max_examples=150, deadline=None)
@given(ops)
def test_matches_reference_after_every_op(seq):
    book, ref = L2Book(), NaiveBook()
    for side, price, size in seq:
        book.apply(side, price, size)
        ref.apply(side, price, size)
        check_same(book, ref)


@settings(max_examples=150, deadline=None)
@given(ops, st.integers(1, 8), st.integers(1, 30))
def test_truncation_matches_reference(seq, depth, every):
    """Truncating at arbitrary message boundaries keeps exactly the best `depth` levels."""
    book, ref = L2Book(depth), NaiveBook()
    for i, (side, price, size) in enumerate(seq):
        book.apply(side, price, size)
        ref.apply(side, price, size)
        if i % every == every - 1:
            before = {s: dict(ref.side[s]) for s in (BID, ASK)}
            dropped = book.truncate()
            ref.truncate(depth)
            gone = {(s, p) for s in (BID, ASK) for p in before[s] if p not in ref.side[s]}
            assert set(dropped) == gone and len(dropped) == len(gone)
            check_same(book, ref)
    book.truncate()
    ref.truncate(depth)
    check_same(book, ref)


def test_delete_missing_level_is_noop_and_best_recomputed():
    book = L2Book()
    book.apply(BID, 100, 1)
    book.apply(BID, 99, 2)
    book.apply(BID, 101, 0)  # missing: no-op
    assert book.best_bid() == 100
    book.apply(BID, 100, 0)  # best deleted: next best takes over
    assert book.best_bid() == 99 and len(book) == 1


def test_crossed_and_locked():
    book = L2Book()
    book.apply(BID, 100, 1)
    book.apply(ASK, 101, 1)
    assert not book.crossed()
    book.apply(ASK, 100, 1)  # locked counts as crossed: best_bid >= best_ask
    assert book.crossed()


def test_truncate_explicit_depth_and_clear():
    book = L2Book()
    for p in range(1, 11):
        book.apply(BID, p, 1)
        book.apply(ASK, 100 + p, 1)
    assert book.truncate() == []  # depth 0 keeps everything
    dropped = book.truncate(2)
    assert sorted(dropped) == sorted([(BID, p) for p in range(1, 9)] + [(ASK, 100 + p) for p in range(3, 11)])
    assert book.top(BID, 5) == [(10, 1), (9, 1)] and book.top(ASK, 5) == [(101, 1), (102, 1)]
    book.clear()
    assert len(book) == 0 and book.best_bid() is None and book.best_ask() is None and not book.crossed()


def test_bad_input_is_an_error():
    book = L2Book()
    with pytest.raises(ValueError):
        book.apply(BID, 100, -1)
    with pytest.raises(ValueError):
        L2Book(-1)
    assert len(book) == 0


# ---------------------------------------------------------------- the C book consumers keep

from mantra.book import Book  # noqa: E402

takes = st.lists(st.tuples(st.sampled_from(["apply", "take", "clear"]), st.sampled_from([BID, ASK]),
                           st.integers(1, 30), st.integers(0, 5)), max_size=200)


@settings(max_examples=200, deadline=None)
@given(takes)
def test_c_book_matches_reference_with_takes(seq):
    """Levels, best prices, crossing and what is left after our takes, after every operation; a
    take lasts until the level is next set."""
    book, ref, taken = Book(), NaiveBook(), {}
    for op, side, price, size in seq:
        if op == "apply":
            book.apply(side, price, size)
            ref.apply(side, price, size)
            taken.pop((side, price), None)
        elif op == "take":
            book.take(side, price, size)
            if price in ref.side[side]:
                taken[(side, price)] = taken.get((side, price), 0) + size
        else:
            book.clear()
            ref = NaiveBook()
            taken.clear()
        for s in (BID, ASK):
            left = [(p, q - taken.get((s, p), 0)) for p, q in ref.sorted(s)]
            assert book.levels(s) == [(p, q) for p, q in left if q > 0]
            assert book.top(s, 3) == [(p, q) for p, q in left if q > 0][:3]
            for p in range(1, 31):
                assert book.size(s, p) == max(ref.side[s].get(p, 0) - taken.get((s, p), 0), 0)
        bids, asks = ref.sorted(BID), ref.sorted(ASK)
        assert book.best_bid() == (bids[0][0] if bids else None)
        assert book.best_ask() == (asks[0][0] if asks else None)
        assert book.crossed() == bool(bids and asks and bids[0][0] >= asks[0][0])
        assert len(book) == len(bids) + len(asks)


def test_c_book_rejects_bad_input_clearly():
    b = Book()
    with pytest.raises(ValueError, match="negative size"):
        b.apply(BID, 100, -1)
    with pytest.raises(ValueError, match="side"):
        b.apply(0, 100, 1)
    with pytest.raises(OverflowError):
        b.apply(BID, 2**70, 1)  # prices and sizes are int64 fixed point
    assert len(b) == 0


records = st.lists(st.tuples(st.sampled_from([BID, ASK, 0]), st.integers(1, 30), st.integers(-1, 5),
                             st.sampled_from([0, 1, 4, 5])), max_size=150)


@settings(max_examples=200, deadline=None)
@given(records)
def test_c_book_tops_of_a_record_run_match_the_reference(seq):
    """``Book.tops`` (the UI's best bid/ask of a batch of L2Update records in one call) gives, at
    every record ending a message, the reference's best prices after it; a record the book refuses
    (side 0, negative size) is skipped and counted, the rest still applied; CLEAR empties first."""
    import numpy as np

    from mantra.spine.messages import L2Update

    recs = np.zeros(len(seq), L2Update.DTYPE)
    for i, (side, price, size, flags) in enumerate(seq):
        recs[i]["side"], recs[i]["price"], recs[i]["size"], recs[i]["flags"] = side, price, size, flags
    raw, bad = Book().tops(recs, recs.dtype.itemsize)
    got = np.frombuffer(raw, np.int64).reshape(-1, 3).tolist()
    ref, want, refused = NaiveBook(), [], 0
    for i, (side, price, size, flags) in enumerate(seq):
        if flags & 4:
            ref = NaiveBook()
        if side == 0 or size < 0:
            refused += 1
        else:
            ref.apply(side, price, size)
        if flags & 1:
            b, a = ref.sorted(BID), ref.sorted(ASK)
            want.append([i, b[0][0] if b else 0, a[0][0] if a else 0])
    assert got == want and bad == refused


def test_c_book_tops_refuses_a_buffer_that_is_not_records():
    with pytest.raises(ValueError, match="whole number"):
        Book().tops(b"x" * 57, 56)
    with pytest.raises(ValueError, match="smaller"):
        Book().tops(b"", 8)


# ---------------------------------------------------------------- the C book the venue protocols keep

import zlib  # noqa: E402

from mantra._spine import crc32  # noqa: E402
from mantra.fixed import from_fixed  # noqa: E402
from mantra.venues.bitfinex.protocol import checksum_string, signed_crc32  # noqa: E402
from mantra.venues.kraken.protocol import book_checksum as kraken_reference  # noqa: E402

INT64_MAX = 2**63 - 1
# Prices and sizes from 1 to int64 max, clustered so levels collide, with zero sizes (deletions).
prices = st.one_of(st.integers(1, 60), st.integers(1, 60).map(lambda p: p * 10**17), st.just(INT64_MAX))
sizes = st.one_of(st.just(0), st.integers(1, 9), st.integers(1, INT64_MAX), st.integers(1, 99).map(lambda q: q * 10**16))
messages = st.lists(st.lists(st.tuples(st.sampled_from([BID, ASK]), prices, sizes), max_size=6), max_size=40)


def bitfinex_reference(book: L2Book, ps: int, ss: int) -> int:
    """The protocol's checksum_reference when every level's venue text is canonical (from_fixed)."""
    fb = [f"{from_fixed(p, ps)}:{from_fixed(book.bids[p], ss)}" for p in book.top_prices(BID, 25)]
    fa = [f"{from_fixed(p, ps)}:-{from_fixed(book.asks[p], ss)}" for p in book.top_prices(ASK, 25)]
    return signed_crc32(checksum_string(fb, fa))


@settings(max_examples=150, deadline=None)
@given(messages, st.sampled_from([0, 1, 3, 10, 25, 26, 100]), st.integers(0, 18), st.integers(0, 18),
       st.integers(0, 3), st.integers(0, 3), st.integers(0, 20))
def test_protocol_book_and_checksums_match_the_references(msgs, depth, ps, ss, pk, sk, clear_at):
    """Book(depth) against L2Book message by message (apply_levels' drops, truncation, sides, top
    prices), and both venues' checksums against their Python references after every message: random
    scales, fewer levels than the checksum depth, sizes with trailing zeros, int64-sized numbers,
    prices that divide to 0.  Checksums are asked after every message, so their cache is exercised."""
    book, ref = Book(depth), L2Book(depth)
    assert book.depth == depth
    for i, levels in enumerate(msgs):
        if i == clear_at:
            book.clear()
            ref.clear()
        assert book.apply_levels(levels) == ref.apply_levels(levels)
        assert book.bids == ref.bids and book.asks == ref.asks
        for side in (BID, ASK):
            assert book.top_prices(side, 25) == ref.top_prices(side, 25)
        assert book.kraken_checksum(10**pk, 10**sk) == kraken_reference(ref, 10**pk, 10**sk)
        assert book.bitfinex_checksum(ps, ss) == bitfinex_reference(ref, ps, ss)
    assert book.truncate(2) == ref.truncate(2) and book.bids == ref.bids and book.asks == ref.asks


def test_protocol_book_refuses_what_the_reference_refuses():
    for bad in [(BID, 0, 1), (ASK, -5, 1), (BID, 2**63, 1), (BID, 100, -1), (ASK, 2**64, 0)]:
        book, ref = Book(), L2Book()
        with pytest.raises(ValueError):
            ref.apply_levels([(BID, 7, 1), bad])
        with pytest.raises(ValueError):
            book.apply_levels([(BID, 7, 1), bad])
        assert book.bids == ref.bids == {7: 1} and book.asks == ref.asks == {}  # what came before stays
    with pytest.raises(ValueError):
        Book(-1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_crc32_is_zlibs(data):
    """The checksums' CRC32 (folded with PCLMULQDQ from 64 bytes where the CPU has it, tables else)."""
    assert crc32(data) == zlib.crc32(data)
    assert crc32(data * 9) == zlib.crc32(data * 9)
