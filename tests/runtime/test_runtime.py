"""Actor runtime: configuration, deterministic placement, supervision, tools attaching from outside."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mantra.runtime.config import ConfigError, parse
from mantra.runtime.supervisor import run_deterministic
from waits import wait_for

HERE = Path(__file__).resolve().parent


def env():
    """The environment for spawned systems (read at call time: MANTRA_SHM is per test)."""
    return {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def hello_doc(name="det", count=3000, seed=5):
    return {
        "system": {"name": name, "clock": "deterministic"},
        "queues": {"l2": {"type": "L2Update", "capacity": 1 << 14}, "top": {"type": "L2Update", "capacity": 1 << 14}},
        "arrays": {"quotes": {"type": "IdealOrder", "size": 2}},
        "actors": {
            "ticker": {"class": "mantra.examples.hello:Ticker", "params": {"rate": 1000, "count": count, "seed": seed},
                       "outputs": {"out": "l2"}},
            "book": {"class": "mantra.examples.hello:BookKeeper", "inputs": {"l2": "l2"}, "outputs": {"top": "top"},
                     "arrays": {"quotes": "quotes"}},
            "sink": {"class": "mantra.examples.hello:Sink", "inputs": {"top": "top"}},
            "telemetry": {"class": "mantra.telemetry.actor:Telemetry"},
        },
    }


def _sink(runner):
    return next(s.actor for s in runner.slots if s.spec.name == "sink")


def test_deterministic_placement_gives_identical_output_twice(shm_root):
    a = run_deterministic(parse(hello_doc()), start_ns=1_700_000_000_000_000_000)
    b = run_deterministic(parse(hello_doc()), start_ns=1_700_000_000_000_000_000)
    sa, sb = _sink(a), _sink(b)
    assert sa.received > 500 and sa.crossed == 0
    assert sa.digest.hexdigest() == sb.digest.hexdigest()
    c = run_deterministic(parse(hello_doc(seed=6)), start_ns=1_700_000_000_000_000_000)
    assert _sink(c).digest.hexdigest() != sa.digest.hexdigest()  # the digest does see the data
    ticker = next(s for s in a.slots if s.spec.name == "ticker")
    assert ticker.actor.sent == 3000  # the run ended because the input ended, not early
    assert not (shm_root / "det").exists()


@pytest.mark.parametrize("doc,match", [
    ({"queues": {"q": {"type": "Nope"}}}, "unknown message type"),
    ({"queues": {"q": {"type": "L2Update", "capacity": 1000}}}, "power of two"),
    ({"actors": {"a": {"class": "x:Y", "inputs": {"p": "missing"}}}}, "unknown queue"),
    ({"actors": {"a": {"class": "x:Y"}}, "processes": {"p1": {"actors": ["a"]}, "p2": {"actors": ["a"]}}},
     "placed in both"),
    ({"actors": {f"a{i}": {"class": "x:Y"} for i in range(3)},
      "processes": {f"p{i}": {"actors": [f"a{i}"], "mode": "spin"} for i in range(3)}}, "at most two busy"),
    ({"queues": {"q": {"type": "L2Update"}},
      "actors": {"a": {"class": "x:Y", "outputs": {"o": "q"}}, "b": {"class": "x:Y", "outputs": {"o": "q"}}}},
     "mpmc"),
    ({"system": {"name": "bad/name"}}, "bad name"),
    ({"actors": {"a": {"class": "x:Y"}}, "processes": {"p": {"actors": ["a"], "timing": 1000}}},
     "timing must be a power of two"),
])
def test_config_errors_are_clear(doc, match):
    with pytest.raises((ConfigError, ValueError), match=match):
        parse(doc)


def test_handler_exceptions_are_counted_not_fatal(shm_root):
    doc = hello_doc("faulty", count=300)
    doc["actors"] = {"ticker": doc["actors"]["ticker"],
                     "faulty": {"class": "actors:Faulty", "inputs": {"l2": "l2"}}}
    sys.path.insert(0, str(HERE))
    try:
        r = run_deterministic(parse(doc))
    finally:
        sys.path.remove(str(HERE))
    slot = next(s for s in r.slots if s.spec.name == "faulty")
    assert slot.errors > 0 and slot.actor.ok > 0 and slot.errors + slot.actor.ok == slot.handled


def write_cfg(tmp_path, name, extra_actor, restart="on-failure"):
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(f"""
[system]
name = "{name}"
[queues.l2]
type = "L2Update"
capacity = 16384
[actors.ticker]
class = "mantra.examples.hello:Ticker"
params = {{ rate = 5000 }}
outputs = {{ out = "l2" }}
{extra_actor}
[actors.telemetry]
class = "mantra.telemetry.actor:Telemetry"
[processes.feed]
actors = ["ticker"]
mode = "park"
[processes.work]
actors = ["worker"]
mode = "park"
restart = "{restart}"
[processes.back]
actors = ["telemetry"]
""")
    return cfg


def test_run_signal_stop_and_tools_from_outside(tmp_path, shm_root):
    out = tmp_path / "rec.json"
    cfg = write_cfg(tmp_path, "live", f"""
[actors.worker]
class = "actors:Recorder"
params = {{ out = "{out}" }}
inputs = {{ l2 = "l2" }}
""")
    proc = subprocess.Popen([sys.executable, "-m", "mantra.cli", "run", str(cfg)], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        sysd = shm_root / "live"
        assert wait_for(lambda: (sysd / "telemetry.json").exists()), "system did not come up"
        def inspected():
            ins = subprocess.run([sys.executable, "-m", "mantra.cli", "inspect", "live", "--json"], env=env(),
                                 capture_output=True, text=True, timeout=30)
            snaps.append(json.loads(ins.stdout))
            return snaps[-1]["queues"]["l2"]["rate"] > 1000

        snaps = []
        assert wait_for(inspected, 30), snaps[-1:]
        snap = snaps[-1]
        cons = {c["label"]: c for c in snap["queues"]["l2"]["consumers"]}
        assert cons["worker.l2"]["alive"] and cons["worker.l2"]["lost"] == 0
        assert snap["actors"]["worker"]["state"] == "RUNNING" and snap["actors"]["worker"]["handled"] > 0
        tail = subprocess.run([sys.executable, "-m", "mantra.cli", "tail", "live", "l2", "-n", "5"], env=env(),
                              capture_output=True, text=True, timeout=30)
        rows = [json.loads(x) for x in tail.stdout.splitlines()]
        assert len(rows) == 5 and all(r["type"] == "L2Update" and re.fullmatch(r"20\d\d-.*T.*\.\d{9}Z", r["origin"])
                                      for r in rows)
        tail = subprocess.run([sys.executable, "-m", "mantra.cli", "tail", "live", "l2", "-n", "2", "--raw"], env=env(),
                              capture_output=True, text=True, timeout=30)
        assert all(json.loads(x)["origin"] > 0 for x in tail.stdout.splitlines())
        top = subprocess.run([sys.executable, "-m", "mantra.cli", "top", "live", "--json"], env=env(),
                             capture_output=True, text=True, timeout=30)
        timers = json.loads(top.stdout)["timers"]
        assert timers["worker.l2"]["processing_us"]["count"] > 100
        assert 0 < timers["worker.l2"]["processing_us"]["p50"] < 1000
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    rec = json.loads(out.read_text())  # the stop hook ran
    assert rec["n"] > 1000
    assert not (shm_root / "live").exists(), "shared memory left behind"


def test_crashed_process_is_reported_and_restarted(tmp_path, shm_root):
    marker = tmp_path / "crashed"
    cfg = write_cfg(tmp_path, "crashy", f"""
[actors.worker]
class = "actors:CrashOnce"
params = {{ marker = "{marker}", after = 500 }}
inputs = {{ l2 = "l2" }}
""")
    res = subprocess.run([sys.executable, "-m", "mantra.cli", "run", str(cfg), "--duration", "3"], env=env(),
                         capture_output=True, text=True, timeout=60)
    log = res.stdout + res.stderr
    assert marker.exists()
    assert "process work" in log and "died: exit code 3" in log
    assert "restarting work" in log
    assert log.count("process work started") == 2
    assert res.returncode == 1  # a failure happened during the run, and the exit code says so
    assert not (shm_root / "crashy").exists()


def test_a_deterministic_run_stopped_by_sigterm_removes_its_shared_memory(shm_root):
    cfg = Path(__file__).resolve().parents[2] / "src" / "mantra" / "configs" / "hello.toml"  # runs until stopped
    proc = subprocess.Popen([sys.executable, "-m", "mantra.cli", "run", str(cfg), "--deterministic"], env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not (shm_root / "hello").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 128 + signal.SIGTERM
    assert not (shm_root / "hello").exists()


def test_a_process_out_of_restarts_stops_the_system(tmp_path, shm_root):
    cfg = write_cfg(tmp_path, "doomed", """
[actors.worker]
class = "actors:CrashAlways"
inputs = { l2 = "l2" }
""").read_text().replace('restart = "on-failure"', 'restart = "on-failure"\nmax_restarts = 1')
    (tmp_path / "doomed.toml").write_text(cfg)
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "mantra.cli", "run", str(tmp_path / "doomed.toml"), "--duration", "60"],
                         env=env(), capture_output=True, text=True, timeout=90)
    log = res.stdout + res.stderr
    assert "restart limit (1) reached; stopping the system" in log, log[-2000:]
    assert res.returncode == 1 and time.monotonic() - t0 < 45  # not left running headless to the end
    assert not (shm_root / "doomed").exists()


def test_recorders_stop_after_the_processes_that_publish(tmp_path, shm_root):
    """What a producer publishes while it stops reaches the pure consumers (persister, telemetry)."""
    cfg = tmp_path / "order.toml"
    cfg.write_text(f"""
[system]
name = "order"
[queues.l2]
type = "L2Update"
capacity = 4096
[actors.talker]
class = "actors:LastWords"
outputs = {{ out = "l2" }}
params = {{ report = "{tmp_path / 'sent.json'}" }}
[actors.recorder]
class = "actors:Recorder"
inputs = {{ l2 = "l2" }}
params = {{ out = "{tmp_path / 'got.json'}" }}
[processes.front]
actors = ["talker"]
[processes.back]
actors = ["recorder"]
""")
    res = subprocess.run([sys.executable, "-m", "mantra.cli", "run", str(cfg), "--duration", "1.5"], env=env(),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    sent = json.loads((tmp_path / "sent.json").read_text())["sent"]
    assert sent == 300 and json.loads((tmp_path / "got.json").read_text())["n"] == sent


def test_a_deterministic_run_honours_duration_in_simulated_time(shm_root):
    cfg = Path(__file__).resolve().parents[2] / "src" / "mantra" / "configs" / "hello.toml"  # runs until stopped
    outs = [subprocess.run([sys.executable, "-m", "mantra.cli", "run", str(cfg), "--deterministic", "--duration", "2"],
                           env=env(), capture_output=True, text=True, timeout=120) for _ in range(2)]
    for p in outs:
        assert p.returncode == 0, p.stderr[-2000:]
        simulated = float(re.search(r"simulated time: ([\d.]+) s", p.stdout).group(1))
        assert 2.0 <= simulated < 2.5 and re.search(r"handled [1-9]", p.stdout)
    assert outs[0].stdout == outs[1].stdout  # the same stop point, the same summary


def test_ctrl_c_stops_a_deterministic_run_with_its_summary(shm_root):
    cfg = Path(__file__).resolve().parents[2] / "src" / "mantra" / "configs" / "hello.toml"
    proc = subprocess.Popen([sys.executable, "-m", "mantra.cli", "run", str(cfg), "--deterministic"], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not (shm_root / "hello").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGINT
    assert "Traceback" not in err and "simulated time:" in out and "handled" in out
    assert not (shm_root / "hello").exists()
