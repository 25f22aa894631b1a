"""Deterministic backtests on the reference stream: same digest twice, sensible accounting."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mantra import backtest
from mantra.store import reference, segments

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CONFIGS = Path(__file__).resolve().parents[1] / "src" / "mantra" / "configs"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    subprocess.run([sys.executable, str(SHARED / "bench" / "gen_l2_dataset.py"), "60000", str(d / "l2")],
                   check=True, capture_output=True, timeout=120)
    info = reference.write_segments(d / "l2.npy", d / "data")
    return d / "data", info


def test_noop_backtest_replays_every_event(data, tmp_path):
    root, info = data
    r = backtest.run(CONFIGS / "backtest_noop.toml", root, tmp_path / "out")
    assert r["events"] == info["l2"] + info["trades"]
    assert r["handled"]["model"] == info["l2"] + info["trades"]  # the model saw every one of them
    assert r["orders"] == r["fills"] == 0


def test_quoting_backtest_is_deterministic_and_accounts_exactly(data, tmp_path):
    root, _ = data
    a = backtest.run(CONFIGS / "backtest_mm.toml", root, tmp_path / "a")
    b = backtest.run(CONFIGS / "backtest_mm.toml", root, tmp_path / "b")
    assert a["digest"] == b["digest"] and a["pnl"] == b["pnl"]
    assert a["orders"] > 0 and a["fills"] > 0 and a["fees"] > 0
    fills = segments.load(tmp_path / "a", "fills")
    pos = int((fills["size"].astype(np.int64) * fills["side"]).sum())
    assert a["positions"]["binance:BTCUSDT"] == (f"{pos / 1000:g}" if pos >= 0 else f"-{-pos / 1000:g}")
    # every fill belongs to an order the overseer requested
    req = segments.load(tmp_path / "a", "requests")
    assert set(fills["order_id"].tolist()) <= set(req["order_id"].tolist())
