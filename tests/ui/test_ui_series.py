"""The UI's series: range queries at a plot's pixel width keep what a user must see, and the binary
answer reads back exactly."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mantra.ui.series import LINE, POINTS, Series, decode, encode

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
