"""Persisted streams for analysis: Arrow tables, DataFrames (pandas or polars), Parquet.

Every function takes ``damage``: a list that receives a ``segments.Damage`` per damaged part of a
file that had to be skipped (also logged), so an export never hides what it could not read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import segments


def table(root, queue: str, start: int = 0, end: int = 2**64 - 1, damage: list | None = None) -> pa.Table:
    recs = segments.load(Path(root), queue, start, end, damage)
    cols = {}
    for name in recs.dtype.names or ():
        col = recs[name]
        if col.dtype.kind == "S":
            cols[name] = pa.array([bytes(x).rstrip(b"\0").decode(errors="replace") for x in col])
        else:
            cols[name] = pa.array(np.ascontiguousarray(col))
    return pa.table(cols)


def frame(root, queue: str, start: int = 0, end: int = 2**64 - 1, backend: str = "pandas",
          damage: list | None = None):
    """One stream as a DataFrame: ``backend`` "pandas" or "polars" (whichever is installed)."""
    t = table(root, queue, start, end, damage)
    if backend == "polars":
        import polars as pl

        return pl.from_arrow(t)
    return t.to_pandas()


def to_parquet(root, out_dir, queues: list[str] | None = None, damage: list | None = None) -> dict[str, int]:
    """Write each queue to ``<out_dir>/<queue>.parquet``; returns rows per queue."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for q in queues or segments.queues(Path(root)):
        t = table(root, q, damage=damage)
        pq.write_table(t, out / f"{q}.parquet", compression="zstd")
        rows[q] = t.num_rows
    return rows
