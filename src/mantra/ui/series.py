"""Columnar time series for the UI, answered at the plot's pixel width.

A ``Series`` holds int64 times (ns since the epoch, UTC) and value columns in growable numpy
buffers.  A range query with more points than the plot has pixels to show them is decimated per
pixel column: a line keeps, per column, the minimum and the maximum of every value in it (two rows:
at the column's first and last time), so spikes survive any zoom; a point series keeps the real
rows holding its first value's minimum and maximum.  Answers travel as binary columns
(``encode``): ``u32 header length | JSON header padded to 8 bytes | columns``, which the page
wraps in typed arrays without parsing or copying.

Decimation reads block extremes: every ``BLOCK`` rows, once complete, keep their minimum and
maximum (and, for points, the first row holding each), so a pixel column over many rows reduces
whole blocks and scans only the partial blocks at its two ends.  An answer over 5 M rows costs
about what one over ``2 * BLOCK * width`` rows would.

Prices and sizes are kept as their fixed-point integers in float64 (exact below 2^53); a column's
``scale`` tells the page the decimals, so tooltips print exact decimals from the integers.  A
column declared ``"i8"`` (an order id) also keeps its exact int64 and travels as one.

Rows below ``n`` never change once appended (times are clamped, never rewritten, and a grown
buffer is a new array), so ``snapshot()`` taken under the server's lock can be decimated and
encoded outside it while the actor keeps appending.
"""

from __future__ import annotations

import json
import struct

import numpy as np

LINE, POINTS = "line", "points"
BLOCK = 64  # rows per block: the partial blocks a pixel column scans stay small (2 x 64 rows)
PLAIN = 4  # pixel columns of fewer rows than this many blocks, on average: scanned plainly (cheaper)


class Series:
    __slots__ = ("key", "kind", "cols", "scales", "dtypes", "t", "v", "ints", "n", "bmin", "bmax", "amin", "amax",
                 "nb", "block")

    def __init__(self, key: str, kind: str, cols: list[tuple], capacity: int = 1024, block: int = BLOCK):
        self.key, self.kind = key, kind
        self.cols = [c[0] for c in cols]
        self.scales = [c[1] for c in cols]
        self.dtypes = [c[2] if len(c) > 2 else "f8" for c in cols]
        if kind == LINE and "i8" in self.dtypes:
            raise ValueError("a line's columns are decimated to min/max: they cannot be exact int64")
        self.t = np.empty(capacity, np.int64)
        self.v = np.empty((len(cols), capacity), np.float64)
        self.ints = {i: np.empty(capacity, np.int64) for i, d in enumerate(self.dtypes) if d == "i8"}
        self.n = 0
        self.block = block
        # complete blocks' extremes: every column for a line; the first column (and the first row
        # holding each extreme) for points
        nc = len(cols) if kind == LINE else 1
        cb = capacity // block + 1
        self.bmin, self.bmax = np.empty((nc, cb)), np.empty((nc, cb))
        self.amin, self.amax = (np.empty(cb, np.int64), np.empty(cb, np.int64)) if kind == POINTS else (None, None)
        self.nb = 0

    def append(self, t, *cols) -> None:
        """Append rows (times and one array per column).  Times are made non-decreasing (a row
        stamped before the last one, e.g. from another producer of an mpmc queue, takes the last
        time), so ranges are found by binary search."""
        t = np.asarray(t, np.int64)
        k = len(t)
        if not k:
            return
        if self.n and t[0] < self.t[self.n - 1] or k > 1 and (np.diff(t) < 0).any():
            t = np.maximum.accumulate(np.concatenate(([self.t[self.n - 1]] if self.n else [], t)))[-k:]
            t = t.astype(np.int64)
        n, need = self.n, self.n + k
        if need > len(self.t):  # new arrays: a snapshot holding the old ones stays valid
            cap = max(need, 2 * len(self.t))
            self.t = np.concatenate([self.t[:n], np.empty(cap - n, np.int64)])
            v = np.empty((len(self.cols), cap), np.float64)
            v[:, :n] = self.v[:, :n]
            self.v = v
            for i, a in self.ints.items():
                self.ints[i] = np.concatenate([a[:n], np.empty(cap - n, np.int64)])
        self.t[n:need] = t
        for i, c in enumerate(cols):
            self.v[i, n:need] = c
            if i in self.ints:
                self.ints[i][n:need] = c
        self.n = need
        self._blocks()

    def _blocks(self) -> None:
        nb, nb2, B = self.nb, self.n // self.block, self.block
        if nb2 == nb:
            return
        if nb2 >= self.bmin.shape[1]:
            cb = max(nb2 + 1, 2 * self.bmin.shape[1])
            grow = lambda a: np.concatenate([a[..., :nb], np.empty(a.shape[:-1] + (cb - nb,), a.dtype)], -1)  # noqa: E731
            self.bmin, self.bmax = grow(self.bmin), grow(self.bmax)
            if self.amin is not None:
                self.amin, self.amax = grow(self.amin), grow(self.amax)
        seg = self.v[:len(self.bmin), nb * B:nb2 * B].reshape(len(self.bmin), nb2 - nb, B)
        lo, hi = np.fmin.reduce(seg, axis=2), np.fmax.reduce(seg, axis=2)
        self.bmin[:, nb:nb2], self.bmax[:, nb:nb2] = lo, hi
        if self.amin is not None:  # first row of each block holding its extreme (an all-NaN block: none)
            base = np.arange(nb, nb2) * B
            self.amin[nb:nb2] = base + (seg[0] == lo[0][:, None]).argmax(axis=1)
            self.amax[nb:nb2] = base + (seg[0] == hi[0][:, None]).argmax(axis=1)
        self.nb = nb2

    def last(self) -> tuple[int, list[float]] | None:
        if not self.n:
            return None
        return int(self.t[self.n - 1]), [float(x) for x in self.v[:, self.n - 1]]

    @property
    def t_range(self) -> tuple[int, int] | None:
        return (int(self.t[0]), int(self.t[self.n - 1])) if self.n else None

    def snapshot(self) -> "Snapshot":
        """The rows appended so far, readable without the lock (see the module's doc)."""
        return Snapshot(self)

    def query(self, t0: int | None = None, t1: int | None = None, width: int = 1000, method: str | None = None):
        """Rows in [t0, t1] (whole series by default) as ``(t, [columns], decimated, total)``;
        at most about ``2 * width`` rows.  ``method``: "plain" or "blocks" (tests hold them
        equal); by default whichever is cheaper for the range."""
        return Snapshot(self).query(t0, t1, width, method)


class Snapshot:
    __slots__ = Series.__slots__

    def __init__(self, s: Series):
        for k in self.__slots__:
            setattr(self, k, getattr(s, k))
        self.ints = dict(s.ints)

    def _col(self, i: int, i0: int, i1: int, idx=None):
        a = self.ints[i][i0:i1] if i in self.ints else self.v[i, i0:i1]
        return a.copy() if idx is None else a[idx]

    def query(self, t0: int | None = None, t1: int | None = None, width: int = 1000, method: str | None = None):
        t = self.t[:self.n]
        i0 = 0 if t0 is None else int(np.searchsorted(t, t0, "left"))
        i1 = self.n if t1 is None else int(np.searchsorted(t, t1, "right"))
        # one row either side, so a line enters and leaves the plot instead of starting inside it
        i0, i1 = max(i0 - 1, 0), min(i1 + 1, self.n)
        total = i1 - i0
        width = max(int(width), 1)
        ncol = len(self.cols)
        if total <= 2 * width:
            return t[i0:i1].copy(), [self._col(i, i0, i1) for i in range(ncol)], False, total
        ts = t[i0:i1]
        lo = int(ts[0]) if t0 is None else max(int(t0), int(ts[0]))
        hi = int(ts[-1]) if t1 is None else min(int(t1), int(ts[-1]))
        edges = lo + (np.arange(1, width, dtype=np.float64) * ((hi - lo) / width)).astype(np.int64)
        starts = np.unique(np.concatenate(([0], np.searchsorted(ts, edges, "left"))))
        starts = starts[starts < total]
        ends = np.append(starts[1:], total) - 1
        if method == "plain" or method is None and total < PLAIN * self.block * len(starts):
            return self._plain(ts, i0, i1, starts, ends, total)
        parts = _Parts(i0 + starts, i0 + ends, self.nb, self.block)
        if self.kind == LINE:
            tt = np.empty(2 * len(starts), np.int64)
            tt[0::2], tt[1::2] = ts[starts], ts[ends]
            out = []
            for i in range(ncol):
                mn, mx = parts.extremes(self.v[i], self.bmin[i], self.bmax[i])
                col = np.empty(2 * len(starts))
                col[0::2], col[1::2] = mn, mx
                out.append(col)
            return tt, out, True, total
        # points: the real rows at each pixel column's extremes of the first value
        rmin, rmax = parts.extreme_rows(self.v[0], self.bmin[0], self.bmax[0], self.amin, self.amax)
        idx = np.unique(np.concatenate([rmin[rmin >= 0], rmax[rmax >= 0]]))
        return t[idx].copy(), [self._col(i, 0, self.n, idx) for i in range(ncol)], True, total

    def _plain(self, ts, i0, i1, starts, ends, total):
        """Every row of the range reduced per pixel column (the reference the blocks must equal)."""
        ncol = len(self.cols)
        if self.kind == LINE:
            tt = np.empty(2 * len(starts), np.int64)
            tt[0::2], tt[1::2] = ts[starts], ts[ends]
            out = []
            for i in range(ncol):
                seg = self.v[i, i0:i1]
                col = np.empty(2 * len(starts))
                col[0::2] = np.fmin.reduceat(seg, starts)
                col[1::2] = np.fmax.reduceat(seg, starts)
                out.append(col)
            return tt, out, True, total
        v0 = self.v[0, i0:i1]
        bucket = np.repeat(np.arange(len(starts)), ends - starts + 1)
        rows = []
        for ext in (np.fmin, np.fmax):
            hit = np.flatnonzero(v0 == np.repeat(ext.reduceat(v0, starts), ends - starts + 1))
            first = np.r_[True, bucket[hit[1:]] != bucket[hit[:-1]]] if len(hit) else hit.astype(bool)
            rows.append(hit[first])
        idx = np.unique(np.concatenate(rows))
        return ts[idx].copy(), [self._col(i, i0, i1, idx) for i in range(ncol)], True, total


class _Parts:
    """Pixel columns [s, e] (absolute rows, inclusive) split into the rows of the partial blocks
    at their ends, scanned, and the whole blocks between, read from the block extremes."""

    def __init__(self, s: np.ndarray, e: np.ndarray, nb: int, B: int):
        # whole blocks: from the first block starting at or after s to the last ending at or before e
        fb0 = np.minimum(-(-s // B), nb)
        fb1 = np.minimum((e + 1) // B, nb)
        self.full = fb1 > fb0
        # rows scanned: [s, fb0 * B) and [fb1 * B, e] where there are whole blocks, else [s, e]
        h0, h1 = s, np.where(self.full, fb0 * B, e + 1)
        t0, t1 = np.where(self.full, fb1 * B, e + 1), e + 1
        self.n = len(s)
        self.fb0, self.fb1 = fb0, fb1
        # the scanned runs as one flat list of row indices, each run one reduceat segment
        lo = np.concatenate([h0, t0])
        ln = np.concatenate([h1 - h0, t1 - t0])
        self.run_has = ln > 0
        lo, ln = lo[self.run_has], ln[self.run_has]
        self.run_start = np.concatenate(([0], np.cumsum(ln)[:-1])).astype(np.int64)
        self.rows = np.repeat(lo - self.run_start, ln) + np.arange(int(ln.sum()), dtype=np.int64)
        self.ln = ln
        self.run_id = np.repeat(np.arange(len(ln)), ln)

    def _scan(self, vals: np.ndarray, ext):
        """Per pixel column, the head's and the tail's extreme (NaN where empty), and the first row
        holding it (-1 where none); ``vals``: the scanned rows' values."""
        red = np.full(2 * self.n, np.nan)
        arg = np.full(2 * self.n, -1, np.int64)
        if len(vals):
            r = ext.reduceat(vals, self.run_start)
            hit = np.flatnonzero(vals == np.repeat(r, self.ln))
            run = self.run_id[hit]
            first = np.r_[True, run[1:] != run[:-1]] if len(hit) else hit.astype(bool)
            a = np.full(len(self.ln), -1, np.int64)
            a[run[first]] = self.rows[hit[first]]
            red[self.run_has], arg[self.run_has] = r, a
        return red[:self.n], arg[:self.n], red[self.n:], arg[self.n:]

    def _blocks(self, b: np.ndarray, ext):
        """Per pixel column, the extreme of its whole blocks (NaN where none) and the block."""
        out = np.full(self.n, np.nan)
        blk = np.full(self.n, -1, np.int64)
        f = self.full
        if f.any():
            ix = np.empty(2 * int(f.sum()), np.int64)
            ix[0::2], ix[1::2] = self.fb0[f], self.fb1[f]
            bb = np.append(b[:max(int(self.fb1[f].max()), 1)], np.nan)  # fb1 may be one past the end
            r = ext.reduceat(bb, ix)[0::2]
            out[f] = r
            # the first block holding it: within [fb0, fb1), the first equal to the extreme
            ln = (self.fb1 - self.fb0)[f]
            starts = np.concatenate(([0], np.cumsum(ln)[:-1]))
            idx = np.repeat(self.fb0[f] - starts, ln) + np.arange(int(ln.sum()))
            hit = np.flatnonzero(bb[idx] == np.repeat(r, ln))
            seg = np.repeat(np.arange(len(ln)), ln)[hit]
            first = np.r_[True, seg[1:] != seg[:-1]] if len(hit) else hit.astype(bool)
            bk = np.full(len(ln), -1, np.int64)
            bk[seg[first]] = idx[hit[first]]
            blk[f] = bk
        return out, blk

    def extremes(self, v, bmin, bmax):
        """Per pixel column, the minimum and maximum of ``v`` (NaN ignored; all NaN: NaN)."""
        vals = v[self.rows]
        f = self.full
        if f.any():
            ix = np.empty(2 * int(f.sum()), np.int64)
            ix[0::2], ix[1::2] = self.fb0[f], self.fb1[f]
            top = max(int(self.fb1[f].max()), 1)
        out = []
        for ext, b in ((np.fmin, bmin), (np.fmax, bmax)):
            part = np.full(2 * self.n, np.nan)
            if len(vals):
                part[self.run_has] = ext.reduceat(vals, self.run_start)
            m = ext(part[:self.n], part[self.n:])
            if f.any():
                m[f] = ext(m[f], ext.reduceat(np.append(b[:top], np.nan), ix)[0::2])
            out.append(m)
        return out

    def extreme_rows(self, v, bmin, bmax, amin, amax):
        """Per pixel column, the first row holding the minimum of ``v`` and the first holding its
        maximum (-1 where every value is NaN)."""
        out = []
        vals = v[self.rows]
        for ext, b, arg in ((np.fmin, bmin, amin), (np.fmax, bmax, amax)):
            h, ha, tl, ta = self._scan(vals, ext)
            m, blk = self._blocks(b, ext)
            best = ext(ext(h, m), tl)
            # the earliest part holding it: head, then whole blocks, then tail
            row = np.where(tl == best, ta, -1)
            row = np.where(m == best, arg[np.maximum(blk, 0)], row)
            row = np.where(h == best, ha, row)
            out.append(row)
        return out


def encode(key: str, t: np.ndarray, cols: list[np.ndarray], names: list[str], scales: list[int],
           decimated: bool, total: int, t0: int | None = None, t1: int | None = None,
           dtypes: list[str] | None = None) -> bytes:
    """The binary answer: ``u32 LE header length | JSON header (space-padded so the columns start
    8-aligned) | t as int64 | each column as float64 (or int64 where its dtype is "i8")``, all
    little-endian.  Its length is a multiple of 8, so answers concatenate and stay aligned."""
    n = len(t)
    dtypes = dtypes or ["f8"] * len(cols)
    head = {"key": key, "n": n, "total": total, "decimated": decimated,
            "t0_ns_s": str(t0) if t0 is not None else None, "t1_ns_s": str(t1) if t1 is not None else None,
            "cols": [{"name": "t", "dtype": "i8", "scale": 0}]
            + [{"name": c, "dtype": d, "scale": s} for c, s, d in zip(names, scales, dtypes)]}
    h = json.dumps(head, separators=(",", ":")).encode()
    h += b" " * (-(4 + len(h)) % 8)
    parts = [struct.pack("<I", len(h)), h, np.ascontiguousarray(t, "<i8").tobytes()]
    parts += [np.ascontiguousarray(c, "<" + d).tobytes() for c, d in zip(cols, dtypes)]
    return b"".join(parts)


def decode(buf: bytes, offset: int = 0) -> tuple[dict, np.ndarray, list[np.ndarray]]:
    """The inverse of ``encode`` (tests and the benchmark read answers with it); ``offset``: where
    the answer starts in a concatenation (``decode_all``)."""
    (hl,) = struct.unpack_from("<I", buf, offset)
    head = json.loads(bytes(buf[offset + 4:offset + 4 + hl]))
    off, n = offset + 4 + hl, head["n"]
    t = np.frombuffer(buf, "<i8", n, off)
    cols = [np.frombuffer(buf, "<" + c["dtype"], n, off + 8 * n * (k + 1)) for k, c in enumerate(head["cols"][1:])]
    return head, t, cols


def decode_all(buf: bytes) -> list[tuple[dict, np.ndarray, list[np.ndarray]]]:
    """Every answer of a concatenation (``/api/series?keys=``)."""
    out, off = [], 0
    while off < len(buf):
        head, t, cols = decode(buf, off)
        out.append((head, t, cols))
        (hl,) = struct.unpack_from("<I", buf, off)
        off += 4 + hl + 8 * head["n"] * len(head["cols"])
    return out
