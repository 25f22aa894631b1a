"""The UI's series: range queries at a plot's pixel width keep what a user must see, and the binary
answer reads back exactly."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantra.ui.series import LINE, POINTS, Series, decode, decode_all, encode

T0 = 1_796_000_000_000_000_000

rows = st.lists(st.tuples(st.integers(0, 10**6), st.integers(-1000, 1000), st.integers(0, 50)), min_size=1,
                max_size=400)


def build(kind, data):
    t = np.array(sorted(r[0] for r in data), np.int64) + T0
    a = np.array([r[1] for r in data], float)
    b = np.array([r[2] for r in data], float)
    s = Series("k", kind, [("a", 2), ("b", 0)], capacity=4)
    for i in range(0, len(t), 7):  # appended in batches: the buffers grow
        s.append(t[i:i + 7], a[i:i + 7], b[i:i + 7])
    return s, t, a, b


@settings(max_examples=150, deadline=None)
@given(rows, st.integers(1, 60), st.data())
def test_a_line_keeps_every_extreme_of_the_range_within_its_width(data, width, d):
    s, t, a, b = build(LINE, data)
    lo, hi = sorted(d.draw(st.integers(T0, T0 + 10**6)) for _ in range(2))
    tt, (qa, qb), decimated, total = s.query(lo, hi, width)
    inside = (t >= lo) & (t <= hi)
    assert len(tt) <= 2 * width + 2 and (np.diff(tt) >= 0).all()
    assert decimated == (total > 2 * width)
    if not decimated:  # the raw rows, one either side of the range included
        i0, i1 = np.searchsorted(t, lo), np.searchsorted(t, hi, "right")
        assert tt.tolist() == t[max(i0 - 1, 0):i1 + 1].tolist() and qa.tolist() == a[max(i0 - 1, 0):i1 + 1].tolist()
    if inside.any():  # no spike inside the range is lost at any zoom
        assert qa.min() <= a[inside].min() and qa.max() >= a[inside].max()
        assert qb.min() <= b[inside].min() and qb.max() >= b[inside].max()
    assert set(qa.tolist()) <= set(a.tolist())  # values are the data's own, never interpolated


@settings(max_examples=100, deadline=None)
@given(rows, st.integers(1, 40))
def test_points_are_real_rows_with_each_extreme(data, width):
    s, t, a, b = build(POINTS, data)
    tt, (qa, qb), decimated, total = s.query(None, None, width)
    real = set(zip(t.tolist(), a.tolist(), b.tolist()))
    assert set(zip(tt.tolist(), qa.tolist(), qb.tolist())) <= real  # every marker is a real row
    assert qa.min() == a.min() and qa.max() == a.max() and len(tt) <= 2 * width + 2


def test_rows_stamped_out_of_order_keep_the_times_searchable():
    s = Series("k", LINE, [("v", 0)])
    s.append([10, 30, 20], [1, 2, 3])
    s.append([25], [4])
    assert s.t[:s.n].tolist() == [10, 30, 30, 30] and s.v[0, :s.n].tolist() == [1, 2, 3, 4]


@given(rows)
def test_binary_answer_reads_back_exactly(data):
    s, t, a, b = build(LINE, data)
    tt, cols, dec, total = s.query(None, None, 1000)
    head, t2, cols2 = decode(encode("top/1", tt, cols, s.cols, s.scales, dec, total, T0, None))
    assert head["n"] == len(tt) and head["cols"][1] == {"name": "a", "dtype": "f8", "scale": 2}
    assert head["t0_ns_s"] == str(T0) and t2.tolist() == tt.tolist()  # ns exact: int64, never float
    assert [c.tolist() for c in cols2] == [c.tolist() for c in cols]
    raw = encode("k", tt, cols, s.cols, s.scales, dec, total)
    (hl,) = np.frombuffer(raw[:4], "<u4")
    assert (4 + hl) % 8 == 0  # columns 8-aligned: the page wraps them without copying


# values with ties (a few distinct), NaN (an empty book side, a request without origin) and runs
vals = st.one_of(st.integers(-3, 3).map(float), st.just(float("nan")), st.integers(-10**6, 10**6).map(float))
block_rows = st.lists(st.tuples(st.integers(0, 10**4), vals, vals), min_size=3, max_size=600)


@settings(max_examples=300, deadline=None)
@given(block_rows, st.sampled_from([LINE, POINTS]), st.integers(1, 8), st.integers(1, 12), st.integers(1, 50),
       st.data())
def test_block_extremes_answer_exactly_as_scanning_every_row(data, kind, block, width, batch, d):
    """Decimation from per-block extremes (whole blocks read, partial blocks at each pixel column's
    ends scanned) equals the plain scan of every row: no extreme lost at any zoom, the same real
    rows for points (the first holding each extreme), NaN ignored the same way."""
    t = np.array(sorted(r[0] for r in data), np.int64) + T0
    a, b = np.array([r[1] for r in data]), np.array([r[2] for r in data])
    s = Series("k", kind, [("a", 2), ("b", 0)], capacity=3, block=block)
    for i in range(0, len(t), batch):  # batches that end inside blocks and span several
        s.append(t[i:i + batch], a[i:i + batch], b[i:i + batch])
    lo, hi = sorted(d.draw(st.integers(T0 - 10, T0 + 10**4 + 10)) for _ in range(2))
    for t0, t1 in ((lo, hi), (None, None), (lo, None)):
        pt, pc, pd, pn = s.query(t0, t1, width, method="plain")
        bt, bc, bd, bn = s.query(t0, t1, width, method="blocks")
        assert (pd, pn) == (bd, bn) and bt.tolist() == pt.tolist()
        for p, q in zip(pc, bc):
            assert np.array_equal(p, q, equal_nan=True)
        if kind == POINTS:  # every answer row is a real row
            real = {(x, y if y == y else None) for x, y in zip(t.tolist(), a.tolist())}
            assert {(x, y if y == y else None) for x, y in zip(bt.tolist(), bc[0].tolist())} <= real


def test_blocks_are_read_beside_a_partial_last_block_and_by_default_on_big_ranges():
    rng = np.random.default_rng(5)
    n = 200_003  # not a whole number of blocks: the last rows are scanned
    s = Series("k", POINTS, [("a", 0)], block=64)
    t, a = np.arange(n, dtype=np.int64) * 10 + T0, rng.integers(-10**6, 10**6, n).astype(float)
    a[-1] = 2e6  # the global maximum in the partial block
    s.append(t, a)
    tt, (qa,), dec, total = s.query(None, None, 50)
    assert dec and total == n and qa.max() == 2e6 and qa.min() == a.min() and tt[-1] == t[-1]
    assert tt.tolist() == s.query(None, None, 50, method="plain")[0].tolist()


def test_an_int64_column_travels_exactly():
    big = [2**62 + 1, 2**53 + 1, 7]  # order ids past 2^53: a float64 would round them
    s = Series("orders/1", POINTS, [("price", 2), ("order_id", 0, "i8")])
    s.append([T0, T0 + 1, T0 + 2], [1.0, 3.0, 2.0], big)
    for width in (1000, 1):  # raw and decimated
        tt, cols, dec, total = s.query(None, None, width)
        head, t2, (price, oid) = decode(encode("orders/1", tt, cols, s.cols, s.scales, dec, total, dtypes=s.dtypes))
        assert head["cols"][2] == {"name": "order_id", "dtype": "i8", "scale": 0} and oid.dtype == np.dtype("<i8")
        assert set(oid.tolist()) <= set(big) and (width == 1 or oid.tolist() == big)
    with pytest.raises(ValueError):
        Series("k", LINE, [("id", 0, "i8")])


def test_a_snapshot_answers_the_same_while_rows_are_appended():
    s = Series("k", LINE, [("v", 0)], capacity=4, block=4)
    s.append(np.arange(100) + T0, np.arange(100.0))
    snap = s.snapshot()
    before = snap.query(None, None, 10)
    s.append(np.arange(100, 10_000) + T0, -np.arange(100.0, 10_000))  # the buffers grow and move
    after = snap.query(None, None, 10)
    assert before[0].tolist() == after[0].tolist() and before[1][0].tolist() == after[1][0].tolist()
    assert s.query(None, None, 10)[3] == 10_000


def test_answers_concatenate_and_read_back_each():
    s = Series("k", LINE, [("v", 3)])
    s.append([T0, T0 + 5], [1.0, 2.0])
    one = encode("a", *s.query()[:2], s.cols, s.scales, False, 2)
    two = encode("b", np.zeros(0, np.int64), [np.zeros(0)], s.cols, s.scales, False, 0)
    assert len(one) % 8 == 0 and len(two) % 8 == 0
    got = decode_all(one + two)
    assert [h["key"] for h, _, _ in got] == ["a", "b"] and got[0][1].tolist() == [T0, T0 + 5]
    assert got[0][2][0].tolist() == [1.0, 2.0] and got[1][0]["n"] == 0
