"""Log-bucket latency histograms: 8 buckets per power of two (≤ 9 % relative error), exact max."""

from __future__ import annotations

import numpy as np

SUB = 8
NBUCKETS = 64 * SUB
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999}


def buckets(values: np.ndarray) -> np.ndarray:
    v = np.maximum(values.astype(np.float64), 1.0)
    return np.minimum((np.log2(v) * SUB).astype(np.int64), NBUCKETS - 1)


class Hist:
    __slots__ = ("counts", "count", "max", "total")

    def __init__(self):
        self.counts = np.zeros(NBUCKETS, np.int64)
        self.count = 0
        self.max = 0
        self.total = 0

    def add(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        values = values.astype(np.int64)
        np.add.at(self.counts, buckets(values), 1)
        self.count += len(values)
        self.max = max(self.max, int(values.max()))
        self.total += int(values.sum())

    def quantile(self, q: float) -> float:
        """Upper edge of the bucket holding the q-th value (never above the exact max)."""
        if not self.count:
            return 0.0
        i = int(np.searchsorted(np.cumsum(self.counts), q * self.count, side="left"))
        return min(2.0 ** ((i + 1) / SUB), float(self.max))

    def summary(self, scale: float = 1e-3) -> dict:
        """Percentiles, mean and max in µs (``scale`` converts from ns)."""
        out = {k: round(self.quantile(q) * scale, 3) for k, q in QUANTILES.items()}
        out["mean"] = round(self.total / self.count * scale, 3) if self.count else 0.0
        out["max"] = round(self.max * scale, 3)
        out["count"] = self.count
        return out
