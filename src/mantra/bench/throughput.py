"""`mantra bench throughput`: L2 level updates sustained through feed -> spine -> C book -> model,
in the live two-process placement, with the model's loss counted.

Workload: the reference L2 stream (``../shared/bench/gen_l2_dataset.py``, the one every backtest
benchmark uses) as the venue would send it: Coinbase Advanced Trade ``l2_data`` frames, one per
``window_ms`` of the stream's exchange time (diff channels batch like this: Binance's
``depth@100ms``), after the subscription's snapshot.  The frames are encoded once, in memory, and
handed to the feed's real client (``feeds.wsclient``) by a socket served from memory
(``bench.memsocket``): as many whole frames per read as a busy socket's 256 KiB buffer holds, and
at the end EOF, so the feed reconnects, resubscribes and takes the stream again from its snapshot.

Placement: process ``feed`` (spinning, CPU 0) runs the Feed; process ``model`` (spinning, CPU 1)
a trade model following the instrument: the runtime's C dispatcher applies every level to its
book and calls the model once per frame.  The parent samples the ``l2`` ring and the model's
cursor (its lag and loss) every ~50 ms; the rate is over the run after ``warmup_s``.

Baseline, same run, same frames: a plain Python loop that parses each frame with ``json.loads``
and keeps a dict book keyed by float price (no exactness, no sync, no spine).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..runtime.clock import utc
from ..runtime.config import parse
from ..runtime.supervisor import Supervisor
from ..spine.shm import remove_system
from ..trading.model import TradeModel
from .memsocket import MemSocket, ws_frame
from .persist import shared_dir

OPTIONS = {"seconds", "messages"}

SYMBOL = "BTC-USD"
INSTRUMENT = {"venue": "coinbase", "symbol": SYMBOL, "base": "BTC", "quote": "USD", "price_scale": 2,
              "size_scale": 8, "tick": "0.01", "lot": "0.00000001", "min_size": "0.00001", "min_notional": "1"}
TARGET = 500_000


class Follower(TradeModel):
    """Follows one instrument's book (kept by the runtime in C) and places nothing."""

    instrument = ""

    def on_start(self) -> None:
        super().on_start()
        self.follow(self.instrument)


def _levels(rows) -> list[dict]:
    out = []
    for side, price, qty in zip(rows["side"].tolist(), rows["price_tk"].tolist(), rows["qty_lt"].tolist()):
        out.append({"side": "bid" if side > 0 else "offer", "event_time": "",
                    "price_level": f"{price // 100}.{price % 100:02d}", "new_quantity": f"{qty // 1000}.{qty % 1000:03d}"})
    return out


def frames_of(dataset: Path, window_ms: float = 100.0) -> tuple[list[bytes], list[str], int]:
    """The stream as Coinbase Advanced Trade frames: (encoded frames, their texts, level updates)."""
    a = np.load(dataset)
    book = a[a["kind"] != 3]  # trades travel on another channel
    snap = book[book["kind"] == 4]
    rest = book[book["kind"] != 4]
    texts = [json.dumps({"channel": "subscriptions", "client_id": "", "timestamp": utc(int(a["ts"][0])),
                         "sequence_num": 0, "events": [{"subscriptions": {"level2": [SYMBOL]}}]})]

    def frame(kind: str, rows, ts: int) -> str:
        ups = _levels(rows)
        when = utc(ts, 6)
        for u in ups:
            u["event_time"] = when
        return json.dumps({"channel": "l2_data", "client_id": "", "timestamp": utc(ts), "sequence_num": len(texts),
                           "events": [{"type": kind, "product_id": SYMBOL, "updates": ups}]})

    texts.append(frame("snapshot", snap, int(snap["ts"][0])))
    bucket = rest["ts"] // int(window_ms * 1e6)
    cuts = np.flatnonzero(np.diff(bucket)) + 1
    for part in np.split(rest, cuts):
        if len(part):
            texts.append(frame("update", part, int(part["ts"][-1])))
    return [ws_frame(t.encode()) for t in texts], texts, len(book)


def baseline(texts: list[str], seconds: float) -> dict:
    """json.loads + a dict book keyed by float price, over the same frames: levels/s."""
    levels = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        bids: dict = {}
        asks: dict = {}
        for text in texts:
            m = json.loads(text)
            for ev in m.get("events", ()):
                for u in ev.get("updates", ()):
                    side = bids if u["side"] == "bid" else asks
                    p, q = float(u["price_level"]), float(u["new_quantity"])
                    if q:
                        side[p] = q
                    else:
                        side.pop(p, None)
                    levels += 1
        if time.perf_counter() >= end:
            break
    return {"levels_per_s": round(levels / (time.perf_counter() - t0))}


def system_doc(name: str) -> dict:
    return {
        "system": {"name": name, "clock": "realtime", "instruments": [INSTRUMENT]},
        "queues": {"l2": {"type": "L2Update", "capacity": 1 << 20},
                   "trades": {"type": "TradeUpdate", "capacity": 1 << 10},
                   "status": {"type": "BookStatus", "capacity": 1 << 10},
                   **{q: {"type": t, "capacity": 1 << 10} for q, t in (
                       ("requests", "OrderRequest"), ("updates", "OrderUpdate"), ("fills", "Fill"))}},
        "arrays": {"ideal": {"type": "IdealOrder", "size": 2}},
        "actors": {
            "feed": {"class": "mantra.feeds.actor:Feed",
                     "params": {"venue": "coinbase", "symbols": [SYMBOL], "options": {"url": "ws://memory.invalid/ws"},
                                "wait_ms": 0.0, "connection": {"backoff_s": 0.0}},
                     "outputs": {"l2": "l2", "trades": "trades", "status": "status"}},
            "model": {"class": "mantra.bench.throughput:Follower", "params": {"instrument": f"coinbase:{SYMBOL}"},
                      "inputs": {"l2": "l2", "requests": "requests", "updates": "updates", "fills": "fills"},
                      "arrays": {"ideal": "ideal"}},
        },
        "processes": {"feed": {"actors": ["feed"], "mode": "spin", "cpu": 0},
                      "model": {"actors": ["model"], "mode": "spin", "cpu": 1 % os.cpu_count()}},
    }


def measure(frames: list[bytes], seconds: float, warmup_s: float) -> dict:
    from ..feeds import wsclient

    name = f"throughput-{os.getpid()}"
    spec = parse(system_doc(name))
    samples: list[tuple[float, int, int, int, int]] = []  # (t, published, model's next seq, lost, lag)
    real = wsclient._open_socket
    # every (re)connection replays the stream from its snapshot; set before the fork
    wsclient._open_socket = lambda uri, proxy, timeout: MemSocket(frames, batch=wsclient.RECV_SIZE, eof=True)
    sup = Supervisor(spec, keep=True)
    ring = []

    def sample():
        if not ring:
            from ..runtime import paths
            from ..spine import Ring
            from ..spine.shm import system_dir

            try:
                ring.append(Ring.attach(paths.queue(system_dir(name), "l2")))
            except (FileNotFoundError, ValueError):
                return
        r = ring[0]
        mine = [c for c in r.consumers() if c["label"] == "model.l2"]
        if mine:
            c = mine[0]
            samples.append((time.monotonic(), r.count(), c["seq"], c["lost"], c["lag"]))

    sup.on_tick = sample
    try:
        failures = sup.run(duration=seconds)
    finally:
        wsclient._open_socket = real
        for r in ring:
            r.close()
        remove_system(name)
    if len(samples) < 2:
        return {"error": "the model never registered on the l2 queue", "failures": failures}
    t_start = samples[0][0] + warmup_s
    steady = [s for s in samples if s[0] >= t_start] or samples[-2:]
    (t0, pub0, seq0, lost0, _), (t1, pub1, seq1, lost1, _) = steady[0], steady[-1]
    dt = t1 - t0
    return {"levels_per_s": round((seq1 - seq0) / dt) if dt > 0 else None,
            "published_per_s": round((pub1 - pub0) / dt) if dt > 0 else None,
            "lost": int(samples[-1][3]), "max_lag": int(max(s[4] for s in steady)),
            "window_s": round(dt, 2), "failures": failures}


def run(seconds: float = 6.0, messages: int = 400_000) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mantra-bench-tp-"))
    try:
        subprocess.run([sys.executable, str(shared_dir() / "bench" / "gen_l2_dataset.py"), str(messages),
                        str(work / "l2_btcusdt")], check=True, capture_output=True)
        frames, texts, levels = frames_of(work / "l2_btcusdt.npy")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    live = measure(frames, seconds, warmup_s=1.0)
    base = baseline(texts, min(seconds, 3.0))
    rate = live.get("levels_per_s")
    return {
        "bench": "throughput",
        "levels_per_s": rate, "lost": live.get("lost"), "target_levels_per_s": TARGET,
        "ratio_vs_python_dict_book": round(rate / base["levels_per_s"], 2) if rate else None,
        "live": live, "baseline_python_dict_book": base,
        "workload": {"frames": len(frames), "levels": levels, "levels_per_frame": round(levels / max(len(frames) - 2, 1), 1),
                     "window_ms": 100, "source": "reference L2 stream as Coinbase Advanced Trade l2_data frames"},
        "placement": "feed (spin, CPU 0) | model following the book, C book apply (spin, CPU 1)",
        "seconds": seconds,
    }
