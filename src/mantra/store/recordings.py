"""Venue recordings as backtest data: frames replayed through the venue's protocol (exactly as
``mantra venues check`` does) and turned into ``l2`` / ``trades`` segments by the same conversion
the live Feed uses, each message stamped with its frame's receipt time as origin and publish time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..feeds.actor import convert
from ..instruments import InstrumentRegistry
from ..spine.messages import L2Update, TradeUpdate
from ..venues.check import check
from .segments import SegmentWriter


def _records(rows: list, cls) -> np.ndarray:
    recs = np.zeros(len(rows), cls.DTYPE)
    if rows:
        cols = list(zip(*rows))
        recs["origin"] = recs["publish"] = cols[0]
        for name, col in zip(cls._fields, cols[1:]):
            recs[name] = col
    order = np.argsort(recs["publish"], kind="stable")  # several files: one time order
    return recs[order]


def import_recording(venue: str, files: list, out: str | Path, fmt: str = "cryptofeed") -> dict:
    out = Path(out)
    registry = InstrumentRegistry()
    l2, trades, snap = [], [], {}

    def sink(events, ts):
        convert(events, snap, lambda m: l2.append((ts, *m)), lambda m: trades.append((ts, *m)), lambda m: None)

    report = check(venue, files, fmt, sink=sink, registry=registry)
    written = {}
    for queue, rows, cls in (("l2", l2, L2Update), ("trades", trades, TradeUpdate)):
        recs = _records(rows, cls)
        if len(recs):
            w = SegmentWriter(out / queue / f"{int(recs['publish'][0])}.seg", queue, cls)
            w.append(recs)
            w.close()
        written[queue] = len(recs)
    out.mkdir(parents=True, exist_ok=True)
    registry.save(out / "instruments.json")
    return {**written, "instruments": len(registry), "frames": report["frames"], "malformed": report["malformed"]}
