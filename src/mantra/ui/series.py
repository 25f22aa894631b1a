"""Columnar time series for the UI, answered at the plot's pixel width.

A ``Series`` holds int64 times (ns since the epoch, UTC) and float64 value columns in growable numpy
buffers.  A range query with more points than the plot has pixels to show them is decimated per
pixel column: a line keeps, per column, the minimum and the maximum of every value in it (two rows:
at the column's first and last time), so spikes survive any zoom; a point series keeps the real
rows holding its first value's minimum and maximum.  Answers travel as binary columns
(``encode``): ``u32 header length | JSON header padded to 8 bytes | columns``, which the page
wraps in typed arrays without parsing or copying.

Prices and sizes are kept as their fixed-point integers in float64 (exact below 2^53); a column's
``scale`` tells the page the decimals, so tooltips print exact decimals from the integers.
"""

from __future__ import annotations

import json
import struct

import numpy as np

LINE, POINTS = "line", "points"


class Series:
    __slots__ = ("key", "kind", "cols", "scales", "t", "v", "n")

    def __init__(self, key: str, kind: str, cols: list[tuple[str, int]], capacity: int = 1024):
        self.key, self.kind = key, kind
        self.cols = [c for c, _ in cols]
        self.scales = [s for _, s in cols]
        self.t = np.empty(capacity, np.int64)
        self.v = np.empty((len(cols), capacity), np.float64)
        self.n = 0

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
        need = self.n + k
        if need > len(self.t):
            cap = max(need, 2 * len(self.t))
            self.t = np.concatenate([self.t[:self.n], np.empty(cap - self.n, np.int64)])
            v = np.empty((len(self.cols), cap), np.float64)
            v[:, :self.n] = self.v[:, :self.n]
            self.v = v
        self.t[self.n:need] = t
        for i, c in enumerate(cols):
            self.v[i, self.n:need] = c
        self.n = need

    def last(self) -> tuple[int, list[float]] | None:
        if not self.n:
            return None
        return int(self.t[self.n - 1]), [float(x) for x in self.v[:, self.n - 1]]

    @property
    def t_range(self) -> tuple[int, int] | None:
        return (int(self.t[0]), int(self.t[self.n - 1])) if self.n else None

    def query(self, t0: int | None = None, t1: int | None = None, width: int = 1000):
        """Rows in [t0, t1] (whole series by default) as ``(t, [columns], decimated, total)``;
        at most about ``2 * width`` rows."""
        t = self.t[:self.n]
        i0 = 0 if t0 is None else int(np.searchsorted(t, t0, "left"))
        i1 = self.n if t1 is None else int(np.searchsorted(t, t1, "right"))
        # one row either side, so a line enters and leaves the plot instead of starting inside it
        i0, i1 = max(i0 - 1, 0), min(i1 + 1, self.n)
        total = i1 - i0
        width = max(int(width), 1)
        if total <= 2 * width:
            return t[i0:i1].copy(), [self.v[i, i0:i1].copy() for i in range(len(self.cols))], False, total
        ts = t[i0:i1]
        lo = int(ts[0]) if t0 is None else max(int(t0), int(ts[0]))
        hi = int(ts[-1]) if t1 is None else min(int(t1), int(ts[-1]))
        edges = lo + (np.arange(1, width, dtype=np.float64) * ((hi - lo) / width)).astype(np.int64)
        starts = np.unique(np.concatenate(([0], np.searchsorted(ts, edges, "left"))))
        starts = starts[starts < total]
        ends = np.append(starts[1:], total) - 1
        if self.kind == LINE:
            tt = np.empty(2 * len(starts), np.int64)
            tt[0::2], tt[1::2] = ts[starts], ts[ends]
            out = []
            for i in range(len(self.cols)):
                seg = self.v[i, i0:i1]
                col = np.empty(2 * len(starts))
                col[0::2] = np.fmin.reduceat(seg, starts)
                col[1::2] = np.fmax.reduceat(seg, starts)
                out.append(col)
            return tt, out, True, total
        # points: the real rows at each pixel column's extremes of the first value
        v0 = self.v[0, i0:i1]
        bucket = np.repeat(np.arange(len(starts)), ends - starts + 1)
        rows = []
        for ext in (np.fmin, np.fmax):
            hit = np.flatnonzero(v0 == np.repeat(ext.reduceat(v0, starts), ends - starts + 1))
            first = np.r_[True, bucket[hit[1:]] != bucket[hit[:-1]]] if len(hit) else hit.astype(bool)
            rows.append(hit[first])
        idx = np.unique(np.concatenate(rows))
        return ts[idx].copy(), [self.v[i, i0:i1][idx] for i in range(len(self.cols))], True, total


def encode(key: str, t: np.ndarray, cols: list[np.ndarray], names: list[str], scales: list[int],
           decimated: bool, total: int, t0: int | None = None, t1: int | None = None) -> bytes:
    """The binary answer: ``u32 LE header length | JSON header (space-padded so the columns start
    8-aligned) | t as int64 | each column as float64``, all little-endian."""
    n = len(t)
    head = {"key": key, "n": n, "total": total, "decimated": decimated,
            "t0_ns_s": str(t0) if t0 is not None else None, "t1_ns_s": str(t1) if t1 is not None else None,
            "cols": [{"name": "t", "dtype": "i8", "scale": 0}]
            + [{"name": c, "dtype": "f8", "scale": s} for c, s in zip(names, scales)]}
    h = json.dumps(head, separators=(",", ":")).encode()
    h += b" " * (-(4 + len(h)) % 8)
    parts = [struct.pack("<I", len(h)), h, np.ascontiguousarray(t, "<i8").tobytes()]
    parts += [np.ascontiguousarray(c, "<f8").tobytes() for c in cols]
    return b"".join(parts)


def decode(buf: bytes) -> tuple[dict, np.ndarray, list[np.ndarray]]:
    """The inverse of ``encode`` (tests and the benchmark read answers with it)."""
    (hl,) = struct.unpack_from("<I", buf)
    head = json.loads(buf[4:4 + hl])
    off, n = 4 + hl, head["n"]
    t = np.frombuffer(buf, "<i8", n, off)
    cols = [np.frombuffer(buf, "<f8", n, off + 8 * n * (k + 1)) for k in range(len(head["cols"]) - 1)]
    return head, t, cols
