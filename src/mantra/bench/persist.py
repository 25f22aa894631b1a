"""`mantra bench persist`: the persister actor recording a queue fed with reference market data.

A producer process publishes L2Update records of the reference stream
(``../shared/bench/gen_l2_dataset.py``) paced at each rate; the real Persister actor, run by the real
Runner in this process, drains and writes segments.  Reported per rate: messages recorded per second,
losses, CPU share of the persister (its CPU seconds / wall seconds), and overall bytes per message and
compression ratio (64-byte slots in memory vs bytes on disk).  Baseline in the same run: the same
records written with plain ``np.save`` + zstd of the raw rows (no columnar coding).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard

from ..runtime import paths
from ..runtime.config import parse
from ..runtime.process import Runner
from ..runtime.supervisor import create_spine, die_with_parent  # imported before any fork
from ..spine.shm import remove_system
from ..store import reference, segments

OPTIONS = {"messages", "rate"}
FORK = mp.get_context("fork")


def shared_dir() -> Path:
    env = os.environ.get("MANTRA_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared"


def reference_records(n_deltas: int, workdir: Path) -> np.ndarray:
    out = workdir / "ref"
    subprocess.run([sys.executable, str(shared_dir() / "bench" / "gen_l2_dataset.py"), str(n_deltas), str(out)],
                   check=True, capture_output=True)
    l2, _ = reference.convert(np.load(f"{out}.npy"))
    l2["publish"] = l2["origin"] + np.random.default_rng(1).integers(300, 3000, len(l2))
    return l2


def _produce(path, raw: bytes, rec_size: int, rate: int, seconds: float):
    from ..spine import Ring

    die_with_parent()  # a benchmark stopped by force leaves nothing running

    os.sched_setaffinity(0, {0})
    pub = Ring.attach(path).writer().publish_record
    n = len(raw) // rec_size
    views = [raw[i * rec_size:(i + 1) * rec_size] for i in range(n)]
    now = time.monotonic_ns
    t0, total, i = now(), int(rate * seconds), 0
    while i < total:
        due = min(int((now() - t0) * rate / 1e9) + 1, total)
        while i < due:
            pub(views[i % n])
            i += 1
    os._exit(0)


def _one(rate: int, seconds: float, recs: np.ndarray, out: Path) -> dict:
    name = f"benchpersist{os.getpid()}"
    spec = parse({"system": {"name": name}, "queues": {"l2": {"type": "L2Update", "capacity": 1 << 18}},
                  "actors": {"persister": {"class": "mantra.store.persister:Persister",
                                           "params": {"dir": str(out), "flush_ms": 100}}}})
    create_spine(spec).close()
    try:
        runner = Runner(spec, ["persister"], process="bench", timing=False)
        d = paths.queue(paths.system_dir(name), "l2")
        raw = recs.tobytes()
        child = FORK.Process(target=_produce, args=(d, raw, recs.dtype.itemsize, rate, seconds))
        os.sched_setaffinity(0, {1 % os.cpu_count()})
        child.start()
        signal.signal(signal.SIGALRM, lambda *_: runner.request_stop())
        signal.setitimer(signal.ITIMER_REAL, seconds + 0.3)
        t0, c0 = time.monotonic(), time.process_time()
        runner.run()
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
        child.join()
        p = runner.slots[0].actor
        recorded = sum(segments.scan(f).records for f in segments.segments(out, "l2"))
        return {"rate": rate, "recorded": recorded, "recorded_per_s": round(recorded / wall),
                "lost": p.lost, "cpu_share": round(cpu / wall, 3)}
    finally:
        remove_system(name)


def run(messages: int = 500_000, rate: int = 250_000) -> dict:
    work = Path(tempfile.mkdtemp())
    try:
        recs = reference_records(messages, work)
        results = [_one(35_000, 3.0, recs, work / "r35k"), _one(rate, 3.0, recs, work / "rmax")]
        files = [f for d in ("r35k", "rmax") for f in segments.segments(work / d, "l2")]
        disk = sum(f.stat().st_size for f in files)
        n = sum(segments.scan(f).records for f in files)
        base = len(zstandard.ZstdCompressor(level=3).compress(recs.tobytes()))
        ratio = n * 64 / disk
        return {
            "bench": "persist",
            "at_35k": results[0], "at_rate": results[1],
            "msgs_per_s": results[1]["recorded_per_s"],
            "bytes_per_message": round(disk / n, 2),
            "compression_ratio": round(ratio, 2),
            "baseline_raw_zstd_ratio": round(len(recs) * 64 / base, 2),
            "ratio_vs_baseline": round(ratio / (len(recs) * 64 / base), 2),
            "cpu_share_at_35k": results[0]["cpu_share"],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
