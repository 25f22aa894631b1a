"""The throughput benchmark's workload and pipeline: the reference stream encoded as venue frames
carries exactly the stream's book, and the two-process feed -> model pipeline fed from memory
sustains it without loss, reconnecting at each replay's end."""

import subprocess
import sys

import numpy as np
import pytest

from fixtures import GEN_L2
from mantra.bench import throughput as tp
from mantra.instruments import InstrumentRegistry
from mantra.venues.registry import make_protocol


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    d = tmp_path_factory.mktemp("tp")
    subprocess.run([sys.executable, str(GEN_L2), "20000", str(d / "l2")], check=True, capture_output=True)
    return np.load(d / "l2.npy"), tp.frames_of(d / "l2.npy")


def _final_book(rows) -> dict:
    book = {1: {}, -1: {}}
    for kind, side, price, qty in zip(rows["kind"].tolist(), rows["side"].tolist(), rows["price_tk"].tolist(),
                                      rows["qty_lt"].tolist()):
        if kind == 3:
            continue  # a trade: its level change follows as its own row
        if kind == 2 or qty == 0:
            book[side].pop(price, None)
        else:
            book[side][price] = qty
    return book


def test_the_frames_carry_the_streams_book_exactly(stream):
    rows, (frames, texts, levels) = stream
    assert levels == int((rows["kind"] != 3).sum())
    reg = InstrumentRegistry()
    reg.add(**tp.INSTRUMENT)
    p = make_protocol("coinbase", reg, [tp.SYMBOL])
    p.on_connect(0)
    for t in texts:
        p.on_frame(t, 1)
    want = _final_book(rows)
    book = p.books[reg.get("coinbase", tp.SYMBOL).id]
    # prices in ticks of 0.01 at price scale 2; sizes in lots of 0.001 at size scale 8
    got = {s: {price: size // 10**5 for price, size in book.levels(s)} for s in (1, -1)}
    assert got == want and p.frames == len(texts) and len(want[1]) >= 20


def test_the_live_pipeline_keeps_up_without_loss(stream):
    _, (frames, _, levels) = stream
    r = tp.measure(frames, seconds=2.5, warmup_s=0.5)
    assert r["failures"] == 0 and r["lost"] == 0
    assert r["levels_per_s"] > 0 and r["published_per_s"] >= r["levels_per_s"] * 0.9
    assert r["window_s"] > 1.0
