"""Persisted streams for analysis: Arrow tables, DataFrames (pandas or polars), Parquet.

Every function takes ``damage``: a list that receives a ``segments.Damage`` per damaged part of a
file that had to be skipped (also logged), so an export never hides what it could not read."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import segments

log = logging.getLogger(__name__)


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
    """Write each queue to ``<out_dir>/<queue>.parquet``; returns rows per queue.  Damage skipped
    is also written to ``<out_dir>/damage.json`` (absent when there was none) and logged."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, mine = {}, []
    for q in queues or segments.queues(Path(root)):
        t = table(root, q, damage=mine)
        pq.write_table(t, out / f"{q}.parquet", compression="zstd")
        rows[q] = t.num_rows
    report = out / "damage.json"
    if mine:
        s = segments.summary(mine)
        report.write_text(json.dumps(s, indent=1))
        log.error("export: %d damaged parts skipped (%d bytes, %d records known lost), listed in %s",
                  s["chunks"], s["bytes"], s["records"], report)
    elif report.exists():
        report.unlink()  # from an earlier export into the same place
    if damage is not None:
        damage += mine
    return rows
