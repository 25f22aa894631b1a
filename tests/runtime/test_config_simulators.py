"""A system's own venue simulators (`[simulators.<venue>]`): started with the system, its Feeds that
name no URL connect to them, their scheduled faults fire (the feed notices and recovers), and they
end with the system.  Bad tables are one clear ConfigError."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mantra.runtime.config import ConfigError, parse

HERE = Path(__file__).resolve().parent

SYSTEM = """
[system]
name = "simsys"
[queues.l2]
type = "L2Update"
capacity = 16384
mpmc = true
[queues.trades]
type = "TradeUpdate"
capacity = 4096
[queues.status]
type = "BookStatus"
capacity = 1024
[simulators.kraken]
seed = 4
rate = 60
faults = [[1.5, "disconnect"]]
[actors.feed]
class = "mantra.feeds.actor:Feed"
params = { venue = "kraken", symbols = ["BTC/USD"], connection = { backoff_s = 0.1 } }
outputs = { l2 = "l2", trades = "trades", status = "status" }
[actors.rec]
class = "actors:Recorder"
inputs = { l2 = "l2" }
params = { out = "OUT" }
[processes.feeds]
actors = ["feed"]
[processes.back]
actors = ["rec"]
"""


def test_a_systems_simulator_serves_its_feed_and_its_fault_fires(tmp_path, shm_root):
    cfg = tmp_path / "simsys.toml"
    cfg.write_text(SYSTEM.replace("OUT", str(tmp_path / "rec.json")))
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    p = subprocess.run([sys.executable, "-m", "mantra.cli", "run", str(cfg), "--duration", "5"], env=env,
                       capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stderr[-3000:]
    log = p.stderr
    assert "feed connects to the system's simulator at ws://127.0.0.1:" in log
    assert "fault disconnect injected" in log  # the simulator's schedule (its log reaches ours)
    assert log.count("kraken: connected") >= 2, log[-3000:]  # it reconnected after the fault
    assert json.loads((tmp_path / "rec.json").read_text())["n"] > 20  # market data flowed
    out = subprocess.run(["pgrep", "-f", "mantra.sim kraken"], capture_output=True, text=True)
    assert out.stdout.strip() == ""  # the simulator ended with the system


@pytest.mark.parametrize("table,why", [
    ('[simulators.nasdaq]\nseed = 1', "no simulator for venue 'nasdaq'"),
    ('[simulators.kraken]\nsed = 1', "simulators.kraken.sed: unknown key"),
    ('[simulators.kraken]\nrate = "fast"', "simulators.kraken.rate: expected a number"),
    ('[simulators.kraken]\nfaults = [[1, "explode"]]', "unknown simulator fault 'explode'"),
    ('[simulators.kraken]\nfaults = [["soon", "drop"]]', "each fault is [seconds after start, name]"),
    ('[simulators.kraken]\nfaults = [[1, "drop", -3]]', "out of range"),
])
def test_bad_simulator_tables_are_clear_errors(table, why):
    doc = tomllib.loads(f'[system]\nname = "x"\n{table}\n')
    with pytest.raises(ConfigError, match=why.replace("[", r"\[").replace("(", r"\(")):
        parse(doc)
