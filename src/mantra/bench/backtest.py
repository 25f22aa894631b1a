"""`mantra bench backtest --dataset PATH`: the deterministic backtest over the reference stream.

Runs ``mantra backtest`` on the reference L2 stream (``../shared/bench/gen_l2_dataset.py``; generated
into a temporary directory when no ``--dataset`` is given) with three systems:

- ``noop``: a model that handles every event and does nothing;
- ``quote``: the touch quoter (every 200 messages a post-only bid and ask at the touch) -> overseer
  -> mock exchange: the workload of the NautilusTrader side's quote mode;
- ``mm``: the market maker (requotes on every 2-tick move of its skewed mid, rate-limited by the
  overseer): a heavier workload, compared with the same NautilusTrader quote figure.

``events_per_s`` is events over the run loop (loading the data excluded), as NautilusTrader's
``run()`` is timed; ``wall_events_per_s`` includes loading.  When NautilusTrader is importable (or a
Python that has it is named by ``MANTRA_NAUTILUS_PYTHON``), its backtest on the same stream
(``../shared/bench/peer_nautilus_backtest.py``, modes noop and quote) runs in the same invocation and
the ratios are reported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .. import backtest
from ..store import reference
from .persist import shared_dir

OPTIONS = {"dataset", "messages"}
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _nautilus(dataset: Path, mode: str) -> dict | None:
    py = os.environ.get("MANTRA_NAUTILUS_PYTHON", sys.executable)
    probe = subprocess.run([py, "-c", "import nautilus_trader"], capture_output=True)
    if probe.returncode:
        return None
    r = subprocess.run([py, str(shared_dir() / "bench" / "peer_nautilus_backtest.py"), mode],
                       env={**os.environ, "L2_DATASET": str(dataset)}, capture_output=True, text=True, timeout=1800)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": r.stderr[-500:]}


def run(dataset: str | None = None, messages: int = 2_000_000) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mantra-bench-bt-"))
    try:
        if dataset is None:
            subprocess.run([sys.executable, str(shared_dir() / "bench" / "gen_l2_dataset.py"), str(messages),
                            str(work / "l2_btcusdt")], check=True, capture_output=True)
            dataset = work / "l2_btcusdt.npy"
        dataset = Path(dataset)
        reference.write_segments(dataset, work / "data")
        out = {"bench": "backtest", "dataset": dataset.name}
        peers: dict = {}
        for name, cfg, peer_mode in (("noop", "backtest_noop.toml", "noop"), ("quote", "backtest_quote.toml", "quote"),
                                     ("mm", "backtest_mm.toml", "quote")):
            r = backtest.run(CONFIGS / cfg, work / "data", work / f"out-{name}")
            out[name] = {k: r[k] for k in ("events", "events_per_s", "run_s", "wall_s", "orders", "fills", "fees",
                                           "pnl", "digest")}
            out[name]["wall_events_per_s"] = round(r["events"] / r["wall_s"])
            if peer_mode not in peers:
                peers[peer_mode] = _nautilus(dataset, peer_mode)
            peer = peers[peer_mode]
            if peer is not None:
                out[name]["nautilus"] = peer
                if "events_per_s" in peer:
                    out[name]["ratio_vs_nautilus"] = round(r["events_per_s"] / peer["events_per_s"], 2)
                    wall = peer.get("total_wall_s")
                    if wall:  # both end to end: loading, building and running
                        out[name]["wall_ratio_vs_nautilus"] = round(r["events"] / r["wall_s"] / (peer["n_events"] / wall), 2)
        out["events_per_s"] = out["noop"]["events_per_s"]
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
