"""The tick-to-trade benchmark measures what it says: on a running two-process system fed by a
venue simulator, every counted request answers a frame the feed received (its origin is that
frame's receipt stamp), and the breakdown's stages fit inside the whole."""

import os

from mantra.bench.tick_to_trade import SYMBOL, run_placement
from mantra.sim.coinbase import LISTINGS, CoinbaseSimulator
from mantra.sim import SyntheticMarket


def test_tick_to_trade_counts_requests_that_answer_frames():
    src = SyntheticMarket("coinbase", [ls for ls in LISTINGS if ls.symbol == SYMBOL], seed=3, rate=2000.0)
    procs = {"feed": {"actors": ["feed"], "mode": "park"},
             "trading": {"actors": ["mm", "overseer", "exchange"], "mode": "park", "timing": 1 << 18}}
    with CoinbaseSimulator(src) as sim:
        r = run_placement(f"t2t-test-{os.getpid()}", sim.ws_url, procs, seconds=2.5, warmup_s=0.5, spin=False)
    assert r["failures"] == 0
    assert r["frames"] > 500
    # the market maker requotes on tick moves: many requests, each traced to its frame
    assert r["count"] > 50 and r["count"] <= r["requests"]
    first = r["first_request"]
    assert 0 < first["count"] <= r["count"] <= 2 * first["count"] + 10  # a requote is one or two requests
    assert 0 < first["p50"] <= r["p50"] < 10_000  # µs: a reaction, not a backlog
    assert 0 < r["frame_to_l2"]["p50"] <= r["p50"]
    assert r["l2_to_ideal"]["count"] > 0 and 0 < r["l2_to_ideal"]["p50"] <= r["p50"]
    # stage by stage, in causal order, for (nearly) every frame: the timing ring kept the whole run
    stages = r["stages_first_request"]
    assert stages["count"] >= 0.9 * first["count"]
    for name in ("frame_to_l2", "l2_to_model", "model", "model_to_overseer", "overseer"):
        assert stages[name]["p50"] > 0, name
