"""Import of the reference L2 stream (``../shared/bench/gen_l2_dataset.py``) as spine records.

The generator writes one row per event (ts, kind, side, price_tk, qty_lt, last); kinds 0/1/2/4 are
level adds/updates/deletes/snapshot levels, kind 3 a trade.  They become ``L2Update`` and
``TradeUpdate`` record arrays ready for the segment writer or the replayer: exchange time is the
row's ``ts``, and so is the origin (shared by a message's rows, as a live frame's receipt stamp
is); publish = ``ts`` plus the row's place within its timestamp in ns, so the rows' order (a
trade, then the level it hit, ...) survives the split into two streams: replay goes by publish
time.  Prices are in ticks of 0.01 and sizes in lots of 0.001, so the
instrument is registered with price scale 2 and size scale 3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..spine.messages import L2Flags, L2Update, TradeUpdate

KIND_TRADE, KIND_SNAPSHOT, KIND_DELETE = 3, 4, 2
SPEC = dict(base="BTC", quote="USDT", price_scale=2, size_scale=3, tick=1, lot=1)


def publish_times(ts: np.ndarray) -> np.ndarray:
    """Each row's time plus its place among the rows of that time (ns), never going back: replay
    goes by publish time, so rows keep their order across streams."""
    ts = ts.astype(np.int64)
    first = np.flatnonzero(np.r_[True, ts[1:] != ts[:-1]])  # first row of each timestamp
    idx = np.arange(len(ts))
    place = idx - first[np.searchsorted(first, idx, side="right") - 1]
    return np.maximum.accumulate(ts + place)


def convert(rows: np.ndarray, instrument: int = 1, publisher: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(L2Update records, TradeUpdate records) from the generator's rows."""
    trade = rows["kind"] == KIND_TRADE
    publish = publish_times(rows["ts"])
    d, t = rows[~trade], rows[trade]
    l2 = np.zeros(len(d), L2Update.DTYPE)
    l2["origin"] = l2["exch_ts"] = d["ts"]
    l2["publish"] = publish[~trade]
    l2["publisher"] = publisher
    l2["price"] = d["price_tk"]
    l2["size"] = np.where(d["kind"] == KIND_DELETE, 0, d["qty_lt"])
    l2["instrument"] = instrument
    l2["side"] = d["side"]
    l2["flags"] = (d["last"].astype(np.uint8) * int(L2Flags.LAST)) | \
        np.where(d["kind"] == KIND_SNAPSHOT, int(L2Flags.SNAPSHOT), 0).astype(np.uint8)
    tr = np.zeros(len(t), TradeUpdate.DTYPE)
    tr["origin"] = tr["exch_ts"] = t["ts"]
    tr["publish"] = publish[trade]
    tr["publisher"] = publisher
    tr["price"], tr["size"], tr["side"], tr["instrument"] = t["price_tk"], t["qty_lt"], t["side"], instrument
    tr["trade_id"] = np.arange(1, len(t) + 1)
    return l2, tr


def load(path: str | Path, instrument: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, L2Update records, TradeUpdate records) of a generated ``.npy`` file."""
    rows = np.load(path)  # never a pickle: allow_pickle stays off
    need = ("ts", "kind", "side", "price_tk", "qty_lt", "last")
    if rows.dtype.names is None or any(f not in rows.dtype.names for f in need):
        raise ValueError(f"expected the generator's rows with fields {', '.join(need)}, found {rows.dtype}")
    l2, tr = convert(rows, instrument)
    return rows, l2, tr


def write_segments(npy: str | Path, out: str | Path, venue: str = "binance", symbol: str = "BTCUSDT") -> dict:
    """Turn a generated reference stream into backtest data: ``l2`` and ``trades`` segments plus
    the instrument registry they refer to."""
    from ..instruments import InstrumentRegistry
    from .segments import SegmentWriter

    out = Path(out)
    reg = InstrumentRegistry()
    inst = reg.add(venue, symbol, **SPEC)
    _, l2, tr = load(npy, inst.id)
    t0 = int(min(l2["publish"][0], tr["publish"][0] if len(tr) else l2["publish"][0]))
    for queue, recs, cls in (("l2", l2, L2Update), ("trades", tr, TradeUpdate)):
        w = SegmentWriter(out / queue / f"{t0}.seg", queue, cls)
        for i in range(0, len(recs), 65536):
            w.append(recs[i:i + 65536])
        w.close()
    out.mkdir(parents=True, exist_ok=True)
    reg.save(out / "instruments.json")
    return {"l2": len(l2), "trades": len(tr), "instrument": f"{venue}:{symbol}"}
