"""Deterministic backtests on the reference stream: same digest twice, sensible accounting."""

import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from fixtures import GEN_L2
from mantra import backtest
from mantra.store import reference, segments

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "mantra" / "configs"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    subprocess.run([sys.executable, str(GEN_L2), "60000", str(d / "l2")],
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


@pytest.mark.parametrize("config", ["backtest_quote.toml", "backtest_mm.toml"])
def test_waking_the_mock_exchange_only_when_the_market_reaches_its_orders_changes_nothing(data, tmp_path, monkeypatch,
                                                                                           config):
    """Book.watch lets the runtime skip the mock exchange's handlers for messages and trades that
    cannot reach its resting orders; unwatched, it is handed every one (the reference)."""
    root, _ = data
    fast = backtest.run(CONFIGS / config, root, tmp_path / "fast")
    monkeypatch.setattr("mantra.trading.matching.Matching._watch", lambda self, iid: self.books[iid].watch(None))
    ref = backtest.run(CONFIGS / config, root, tmp_path / "ref")
    assert fast["fills"] > 0 and fast["orders"] > 0
    assert (fast["digest"], fast["pnl"], fast["fills"]) == (ref["digest"], ref["pnl"], ref["fills"])
    assert fast["handled"]["exchange"] == ref["handled"]["exchange"]  # every record still counted as handled


# -- what a result tells a user -------------------------------------------------------------------

def test_result_has_the_data_range_every_fill_and_exact_money(data, tmp_path):
    root, _ = data
    r = backtest.run(CONFIGS / "backtest_mm.toml", root, tmp_path / "out", mark_s=1)
    # the reference stream starts at 2024-06-01T00:00:00Z and spans about 25 s
    assert r["data_start"] == "2024-06-01T00:00:00.000000000Z"
    assert r["data_end"].startswith("2024-06-01T00:00:2") and r["data_end"].endswith("Z")
    fills = segments.load(tmp_path / "out", "fills")
    tl = r["trade_list"]
    assert len(tl) == r["fills"] == len(fills) > 0
    f0, t0 = fills[0], tl[0]
    assert t0["instrument"] == "binance:BTCUSDT" and t0["side"] == ("buy" if f0["side"] > 0 else "sell")
    assert Decimal(t0["price"]) == Decimal(int(f0["price"])) / 100  # ticks 0.01: decimal text, exact
    assert Decimal(t0["size"]) == Decimal(int(f0["size"])) / 1000
    assert Decimal(t0["fee"]) == Decimal(int(f0["fee"])) / 100
    assert datetime.fromisoformat(t0["time"][:26] + "+00:00").year == 2024
    assert (tmp_path / "out" / "fills.csv").read_text().count("\n") == len(fills) + 1
    # PnL, independently: what the venue charged or paid (buyer pays the ceiling, seller gets the
    # floor), fees, and the position marked at the last trade; exact, as the result's text
    trades = segments.load(root, "trades")
    cash = sum(-int(p) * int(q) // 1000 if s > 0 else int(p) * int(q) // 1000  # floor(-x) = -ceil(x)
               for p, q, s in zip(fills["price"], fills["size"], fills["side"]))
    pos = int((fills["size"].astype(np.int64) * fills["side"]).sum())
    pnl = Fraction(cash - int(fills["fee"].sum()), 100) + Fraction(pos * int(trades["price"][-1]), 100_000)
    assert Fraction(Decimal(r["pnl_dec"])) == pnl and Fraction(Decimal(r["pnl_curve"][-1][1])) == pnl
    assert Fraction(Decimal(r["fees_dec"])) == Fraction(int(fills["fee"].sum()), 100)
    # marks every second: a Sharpe and a drawdown with the times it ran between
    assert len(r["pnl_curve"]) >= 25 and r["sharpe"] is not None and "1 s" in r["sharpe_basis"]
    dd = r["max_drawdown"]
    assert Decimal(dd["amount"]) >= 0 and (dd["peak"] is None or dd["peak"] < dd["trough"])
    text = backtest.report(r)
    assert "2024-06-01T00:00:00" in text and tl[0]["price"] in text and str(tmp_path / "out" / "fills.csv") in text
    assert "Sharpe" in text and "max drawdown" in text


def test_sharpe_and_drawdown_of_a_known_curve():
    t = [i * 60 * 10**9 for i in range(6)]
    s = backtest.curve_stats(t, [0, 2, 1, 3, 0, 4], whole=6, mark_s=60)
    d = np.diff([0, 2, 1, 3, 0, 4])
    assert s["sharpe"] == round(d.mean() / d.std(ddof=1), 4)
    assert s["sharpe_annualised"] == round(d.mean() / d.std(ddof=1) * (365 * 24 * 60) ** 0.5, 4)
    assert s["drawdown"] == (3, t[3], t[4])  # from 3 at the fourth mark down to 0
    flat = backtest.curve_stats(t[:2], [0, 0], whole=2, mark_s=60)
    assert flat["sharpe"] is None and flat["drawdown"][0] == 0


# -- mistakes get one line and exit 2 -------------------------------------------------------------

def mantra(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mantra.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.mark.parametrize("case", ["no config", "bad config", "not toml", "no data dir", "empty data dir",
                                  "no queue for the data"])
def test_backtest_mistakes_are_one_line_and_exit_2(data, tmp_path, case):
    root, _ = data
    cfg, d = CONFIGS / "backtest_mm.toml", root
    if case == "no config":
        cfg = tmp_path / "missing.toml"
    elif case == "bad config":
        cfg = tmp_path / "bad.toml"
        cfg.write_text((CONFIGS / "backtest_mm.toml").read_text().replace('spread = "0.06"', 'sprd = "0.06"'))
    elif case == "not toml":
        cfg = tmp_path / "bad.toml"
        cfg.write_text("[system\n")
    elif case == "no queue for the data":  # the system's market queues have other names
        cfg = tmp_path / "other.toml"
        text = (CONFIGS / "backtest_noop.toml").read_text()
        cfg.write_text(text.replace("queues.l2", "queues.book").replace('l2 = "l2"', 'l2 = "book"')
                       .replace("queues.trades", "queues.prints").replace('trades = "trades"', 'trades = "prints"'))
    elif case == "no data dir":
        d = tmp_path / "nodata"
    else:
        d = tmp_path / "empty"
        d.mkdir()
    p = mantra("backtest", str(cfg), "--data", str(d), cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("mantra backtest: ") and p.stderr.count("\n") == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "data").exists()  # nothing made for a run that did not happen


def test_output_goes_to_data_backtests_and_is_named(data, tmp_path):
    root, _ = data
    p = mantra("backtest", str(CONFIGS / "backtest_noop.toml"), "--data", str(root), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    made = list((tmp_path / "data" / "backtests").iterdir())
    assert len(made) == 1 and (made[0] / "result.json").exists()
    assert f"output        {made[0].relative_to(tmp_path)}" in p.stdout
    # a second run into the same --out would mix two runs' records: refused
    q = mantra("backtest", str(CONFIGS / "backtest_noop.toml"), "--data", str(root), "--out", str(made[0]),
               cwd=tmp_path)
    assert q.returncode == 2 and "already holds" in q.stderr
