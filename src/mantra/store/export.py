"""Persisted streams for analysis: Arrow tables, DataFrames (pandas or polars), Parquet.

Columns, for people and for exact work alike:

- every field of the message type, as recorded: prices, sizes and fees stay the exact fixed-point
  integers (``price`` = price * 10**price_scale of the row's instrument), so nothing is lost;
- ``<field>_dec`` beside each of them (``price``, ``fee``: the instrument's price scale; ``size``,
  ``filled``: its size scale; a balance's ``total``, ``available``: the row's own ``scale``): the
  same value as ``decimal128(38, S)``, S the widest scale among the rows.  One column has one
  scale, and instruments differ (BTC-USD at 2 decimals, a coin priced in BTC at 8), so the value is
  widened exactly to S rather than rounded; precision 38 holds any int64 at any scale up to 18;
- ``venue`` and ``symbol`` after ``instrument``;
- ``origin``, ``publish``, ``exch_ts`` as ``timestamp[ns, tz=UTC]`` (the same integer ns, typed),
  unless a value does not fit a timestamp (kept as the integer then).

The instruments come from ``instruments.json`` beside the data (written by ``mantra import`` and by
``mantra backtest`` into its output), or the ``instruments`` argument.  Parquet files carry them in
the schema metadata under ``mantra`` (JSON: the queue, each instrument's id, venue, symbol, base,
quote, scales, tick and lot), so a reader can go back from the integers without this package.
Without instruments the integers are all there is (the metadata says so).

Every function takes ``damage``: a list that receives a ``segments.Damage`` per damaged part of a
file that had to be skipped (also logged), so an export never hides what it could not read."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..instruments import InstrumentRegistry
from . import segments

log = logging.getLogger(__name__)

PRICE_FIELDS = ("price", "fee")  # at the row's instrument's price scale
SIZE_FIELDS = ("size", "filled")  # at its size scale
OWN_SCALE_FIELDS = ("total", "available")  # at the row's ``scale`` field (BalanceUpdate)
TIME_FIELDS = ("origin", "publish", "exch_ts")  # epoch ns
MAX_SCALE = 18
UTC_NS = pa.timestamp("ns", tz="UTC")


def registry(root, instruments=None) -> InstrumentRegistry | None:
    """``instruments`` (a registry or a path), else ``<root>/instruments.json`` if there is one."""
    if isinstance(instruments, InstrumentRegistry):
        return instruments
    p = Path(instruments) if instruments else Path(root) / "instruments.json"
    return InstrumentRegistry.load(p) if p.exists() else None


def decimals(values: np.ndarray, scales: np.ndarray) -> pa.Array | None:
    """Fixed-point ints, each at its row's scale (-1: unknown, null), as one decimal128 column at
    the widest scale: exact (widening multiplies by a power of ten, nothing is rounded)."""
    known = (scales >= 0) & (scales <= MAX_SCALE)
    if not known.any():
        return None
    top = int(scales[known].max())
    whole = pa.array(values.astype(np.int64)).cast(pa.decimal128(38, 0))
    out = pa.nulls(len(values), pa.decimal128(38, top))
    for s in np.unique(scales[known]).tolist():
        # the same integers read at scale s (a view: no arithmetic), then widened to the top scale
        part = whole.view(pa.decimal128(38, s)).cast(pa.decimal128(38, top))
        out = pc.if_else(pa.array(scales == s), part, out)
    return out


def _times(col: np.ndarray) -> pa.Array:
    if col.size and int(col.max()) > np.iinfo(np.int64).max:
        return pa.array(col)  # not a time this type can hold: the integer, as recorded
    return pa.array(col.astype(np.int64)).view(UTC_NS)


def table(root, queue: str, start: int = 0, end: int = 2**64 - 1, damage: list | None = None,
          instruments=None) -> pa.Table:
    """One stream (module doc for the columns and the metadata)."""
    recs = segments.load(Path(root), queue, start, end, damage)
    reg = registry(root, instruments)
    names = recs.dtype.names or ()
    by_id = {} if reg is None else reg.by_id
    n_ids = max(by_id, default=0) + 1
    ids = None
    if "instrument" in names and by_id:
        ids = recs["instrument"].astype(np.int64)
        ids = np.where(ids < n_ids, ids, 0)  # 0: no instrument has it
    row_scales = {}
    if ids is not None:
        for kind, attr in (("price", "price_scale"), ("size", "size_scale")):
            lut = np.full(n_ids, -1, np.int64)
            for i, inst in by_id.items():
                lut[i] = getattr(inst, attr)
            row_scales[kind] = lut[ids]
    cols = {}
    for name in names:
        col = recs[name]
        if col.dtype.kind == "S":
            cols[name] = pa.array([bytes(x).rstrip(b"\0").decode(errors="replace") for x in col])
        elif name in TIME_FIELDS:
            cols[name] = _times(col)
        else:
            cols[name] = pa.array(np.ascontiguousarray(col))
        if name == "instrument" and ids is not None:
            for attr in ("venue", "symbol"):
                lut = np.full(n_ids, None, object)
                for i, inst in by_id.items():
                    lut[i] = getattr(inst, attr)
                cols[attr] = pa.array(lut[ids], pa.string()).dictionary_encode()
        scales = (row_scales.get("price") if name in PRICE_FIELDS else row_scales.get("size") if name in SIZE_FIELDS
                  else recs["scale"].astype(np.int64) if name in OWN_SCALE_FIELDS and "scale" in names else None)
        if scales is not None:
            d = decimals(col, scales)
            if d is not None:
                cols[f"{name}_dec"] = d
    t = pa.table(cols)
    meta = {"queue": queue, "instruments": [] if reg is None else [
        {k: v for k, v in asdict(i).items() if k not in ("price_decimals", "size_decimals", "min_size",
                                                          "min_notional")} for i in reg]}
    return t.replace_schema_metadata({**(t.schema.metadata or {}), b"mantra": json.dumps(meta).encode()})


def frame(root, queue: str, start: int = 0, end: int = 2**64 - 1, backend: str = "pandas",
          damage: list | None = None, instruments=None):
    """One stream as a DataFrame: ``backend`` "pandas" or "polars" (whichever is installed)."""
    t = table(root, queue, start, end, damage, instruments)
    if backend == "polars":
        import polars as pl

        return pl.from_arrow(t)
    return t.to_pandas()


def to_parquet(root, out_dir, queues: list[str] | None = None, damage: list | None = None,
               instruments=None) -> dict[str, int]:
    """Write each queue to ``<out_dir>/<queue>.parquet``; returns rows per queue.  Damage skipped
    is also written to ``<out_dir>/damage.json`` (absent when there was none) and logged."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reg = registry(root, instruments)
    if reg is None:
        log.warning("export: no instruments.json in %s: prices and sizes stay fixed-point integers", root)
    rows, mine = {}, []
    for q in queues or segments.queues(Path(root)):
        t = table(root, q, damage=mine, instruments=reg)
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
