"""docs/MODELS.md, followed as a user would: its files written into a package of their own outside
Mantra, its unit tests run, `mantra import` and `mantra backtest` run as commands with the
package on PYTHONPATH.  The files come from the guide itself, so the guide cannot rot."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import GEN_L2


REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "MODELS.md"


def guide_files() -> dict[str, str]:
    """Each fenced block the guide marks ``file=PATH``: path -> text."""
    blocks = re.findall(r"^```\w+ file=(\S+)\n(.*?)^```$", GUIDE.read_text(), re.M | re.S)
    return dict(blocks)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("user") / "mystrats"
    for path, text in guide_files().items():
        p = root / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def env(project: Path) -> dict:
    """The user's package importable (and whatever makes Mantra importable here)."""
    paths = [str(project), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def test_the_guide_has_every_file_and_the_commands():
    files = guide_files()
    assert {"mystrats/__init__.py", "mystrats/joiner.py", "tests/test_joiner.py", "backtest_joiner.toml"} <= set(files)
    text = GUIDE.read_text()
    assert "mantra import l2_btcusdt.npy --out data/ref" in text
    assert "PYTHONPATH=$PWD mantra backtest backtest_joiner.toml --data data/ref" in text
    assert 'class = "mystrats.joiner:TouchJoiner"' in files["backtest_joiner.toml"]


def test_the_guides_unit_tests_pass(project):
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=project,
                       env=env(project), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "4 passed" in p.stdout


def test_a_model_from_the_users_own_package_trades_in_a_backtest(project, tmp_path):
    subprocess.run([sys.executable, str(GEN_L2), "60000",
                    str(project / "l2_btcusdt")], check=True, capture_output=True, timeout=120)
    mantra = [sys.executable, "-m", "mantra.cli"]
    p = subprocess.run([*mantra, "import", "l2_btcusdt.npy", "--out", "data/ref"], cwd=project,
                       env=env(project), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([*mantra, "backtest", "backtest_joiner.toml", "--data", "data/ref", "--json"], cwd=project,
                       env=env(project), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)
    assert r["orders"] > 0 and r["fills"] > 0  # the model's wishes were placed, and some filled
    assert {f["instrument"] for f in r["trade_list"]} == {"binance:BTCUSDT"}
    # the report's files, where the guide says they are
    out = project / r["out"]
    assert out.parent == project / "data" / "backtests" and (out / "fills.csv").exists()
    assert json.loads((out / "result.json").read_text())["digest"] == r["digest"]
