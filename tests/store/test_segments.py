"""Segment files: exact round trips, time ranges, crash tolerance, old schemas, exports."""

import multiprocessing as mp
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fixtures import GEN_L2
from mantra.spine.messages import REGISTRY, L2Update, TradeUpdate, message
from mantra.store import export, reference, segments
from mantra.store.segments import SegmentWriter
from waits import wait_for


def records(cls, n, seed=0):
    rng = np.random.default_rng(seed)
    r = np.zeros(n, cls.DTYPE)
    for name in cls.DTYPE.names:
        if name.startswith("_"):
            continue
        f = r.dtype.fields[name][0]
        if f.kind in "iu":
            info = np.iinfo(f)
            r[name] = rng.integers(info.min, info.max, n, dtype=f, endpoint=True)
        elif f.kind == "S":
            r[name] = [bytes(rng.integers(65, 90, f.itemsize // 2, dtype=np.uint8)) for _ in range(n)]
    r["publish"] = np.sort(r["publish"])
    return r


def strip(r):
    return r[[n for n in r.dtype.names if not n.startswith("_")]]


@pytest.mark.parametrize("cls", list(REGISTRY.values()), ids=lambda c: c.__name__)
def test_every_message_type_round_trips_exactly(cls, tmp_path):
    w = SegmentWriter(tmp_path / "q" / "1.seg", "q", cls)
    a, b = records(cls, 1000, 1), records(cls, 37, 2)
    b["publish"] += a["publish"][-1] - b["publish"][0]  # keep time order across chunks
    w.append(a)
    w.append(b)
    w.close()
    got = segments.load(tmp_path, "q")
    want = np.concatenate([strip(a), strip(b)])
    assert len(got) == len(want)
    for name in got.dtype.names:
        assert np.array_equal(got[name], want[name]), name


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=300))
def test_delta_coding_is_exact_for_any_values(tmp_path_factory, prices):
    d = tmp_path_factory.mktemp("seg")
    r = np.zeros(len(prices), L2Update.DTYPE)
    r["price"] = prices
    r["publish"] = np.arange(len(prices))
    w = SegmentWriter(d / "q" / "0.seg", "q", L2Update)
    w.append(r)
    w.close()
    assert segments.load(d, "q")["price"].tolist() == prices


def test_time_index_skips_chunks_and_filters_records(tmp_path):
    w = SegmentWriter(tmp_path / "q" / "0.seg", "q", L2Update)
    for k in range(10):
        r = np.zeros(100, L2Update.DTYPE)
        r["publish"] = np.arange(k * 100, k * 100 + 100)
        r["price"] = r["publish"]
        w.append(r)
    w.close()
    info = segments.scan(tmp_path / "q" / "0.seg")
    assert len(info.chunks) == 10 and info.records == 1000 and info.torn == 0
    got = segments.load(tmp_path, "q", start=250, end=449)
    assert got["price"].tolist() == list(range(250, 450))




@pytest.fixture(scope="module")
def reference_rows(tmp_path_factory):
    """200k events of the project's reference L2 stream (the generator is deterministic)."""
    out = tmp_path_factory.mktemp("ref") / "l2"
    subprocess.run([sys.executable, str(GEN_L2), "200000", str(out)],
                   check=True, capture_output=True, timeout=120)
    return np.load(f"{out}.npy")


def test_market_data_compresses_at_least_10x(tmp_path, reference_rows):
    l2, trades = reference.convert(reference_rows)
    # as recorded live: published a few µs after the frame arrived
    l2["publish"] = l2["origin"] + np.random.default_rng(1).integers(300, 3000, len(l2))
    w = SegmentWriter(tmp_path / "l2" / "0.seg", "l2", L2Update)
    for i in range(0, len(l2), 65536):
        w.append(l2[i:i + 65536])
    w.close()
    assert w.raw_bytes / w.bytes >= 10, w.raw_bytes / w.bytes
    got = segments.load(tmp_path, "l2")
    assert np.array_equal(got["price"], l2["price"]) and np.array_equal(got["publish"], l2["publish"])


def test_reference_import_keeps_every_event(reference_rows):
    l2, trades = reference.convert(reference_rows)
    assert len(l2) + len(trades) == len(reference_rows)
    assert (trades["price"] > 0).all() and set(np.unique(trades["side"])) <= {-1, 1}
    ends = l2["flags"] & 1
    assert ends.sum() > 0.3 * len(l2) / 2.37  # most messages end with a delta that carries the flag
    book = {1: {}, -1: {}}
    for p, sz, sd in zip(l2["price"].tolist(), l2["size"].tolist(), l2["side"].tolist()):
        if sz:
            book[sd][p] = sz
        else:
            book[sd].pop(p, None)
    assert max(book[1]) < min(book[-1])  # the replayed book ends uncrossed


def test_torn_tail_is_detected_and_everything_before_reads(tmp_path):
    p = tmp_path / "q" / "0.seg"
    w = SegmentWriter(p, "q", TradeUpdate)
    for k in range(5):
        r = records(TradeUpdate, 200, k)
        r["publish"] = np.arange(k * 200, k * 200 + 200)
        w.append(r)
    w.close()
    size = p.stat().st_size
    with open(p, "r+b") as f:
        f.truncate(size - 100)  # the last chunk was being written when the process died
    info = segments.scan(p)
    assert info.records == 800 and info.torn > 0
    assert len(segments.load(tmp_path, "q")) == 800
    with open(p, "r+b") as f:  # a damaged chunk in the middle is skipped, not fatal
        f.seek(info.chunks[1][0] + 10)
        f.write(b"\xff\xff\xff")
    info = segments.scan(p)
    assert sum(len(x) for x in segments.read(p, info=info)) == 600 and info.torn > 0


def _write_forever(path):
    w = SegmentWriter(path, "q", L2Update)
    k = 0
    while True:
        r = np.zeros(1000, L2Update.DTYPE)
        r["publish"] = np.arange(k, k + 1000)
        r["price"] = r["publish"]
        w.append(r)
        k += 1000


def test_kill_9_while_writing_leaves_a_readable_file(tmp_path):
    p = tmp_path / "q" / "0.seg"
    child = mp.get_context("fork").Process(target=_write_forever, args=(p,))
    child.start()

    def written():
        try:
            return p.exists() and len(segments.load(tmp_path, "q")) >= 2000
        except Exception:  # noqa: BLE001  (a file being written may not load yet)
            return False

    assert wait_for(written, 30), "the child wrote nothing"
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    got = segments.load(tmp_path, "q")
    assert len(got) >= 1000 and len(got) % 1000 == 0
    assert got["price"].tolist() == list(range(len(got)))  # a prefix, nothing garbled


def test_old_schema_file_still_loads_and_upgrades(tmp_path):
    # An earlier layout of L2Update, before exch_ts and flags existed.
    OldL2 = message("L2UpdateV0", 990, "price:q size:q instrument:I side:b", 64)
    r = np.zeros(3, OldL2.DTYPE)
    r["price"], r["size"], r["instrument"], r["side"] = [1, 2, 3], [4, 5, 6], 9, -1
    w = SegmentWriter(tmp_path / "l2" / "0.seg", "l2", OldL2)
    w.append(r)
    w.close()
    got = segments.load(tmp_path, "l2")
    assert got.dtype.names == ("origin", "publish", "publisher", "tflags", "price", "size", "instrument", "side")
    now = segments.upgrade(got, L2Update)
    assert now["price"].tolist() == [1, 2, 3] and (now["instrument"] == 9).all()
    assert (now["exch_ts"] == 0).all() and (now["flags"] == 0).all()


def test_newer_format_is_refused_clearly(tmp_path):
    p = tmp_path / "q" / "0.seg"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"MANTRSEG" + (99).to_bytes(4, "little") + (2).to_bytes(4, "little") + b"{}")
    with pytest.raises(ValueError, match="newer"):
        segments.scan(p)


def test_export_parquet_and_dataframe(tmp_path):
    w = SegmentWriter(tmp_path / "data" / "fills" / "0.seg", "fills", REGISTRY[7])
    r = records(REGISTRY[7], 50)
    r["fee_asset"] = b"USDT"
    w.append(r)
    w.close()
    df = export.frame(tmp_path / "data", "fills")
    assert len(df) == 50 and list(df["fee_asset"].unique()) == ["USDT"]
    assert df["price"].tolist() == r["price"].tolist()
    rows = export.to_parquet(tmp_path / "data", tmp_path / "pq")
    assert rows == {"fills": 50}
    import pyarrow.parquet as pq
    assert pq.read_table(tmp_path / "pq" / "fills.parquet").column("trade_id").to_pylist() == r["trade_id"].tolist()
