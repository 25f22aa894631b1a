"""One live system per name; nothing Mantra starts outlives it; the next start takes over what a
dead one left; a crash report survives a status slot it cannot read."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mantra.runtime import inspect
from mantra.runtime.config import parse
from mantra.runtime.supervisor import Supervisor, create_spine, run_deterministic
from mantra.spine import SeqArray, shm
from mantra.spine.messages import ActorState, ActorStatus
from mantra.spine.shm import SystemRunning, proc_start
import waits

HERE = Path(__file__).resolve().parent


def env():
    return {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def config(tmp_path, name="locky"):
    """A small live system, every process parked (a slow ticker, a worker, telemetry)."""
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(textwrap.dedent(f"""
        [system]
        name = "{name}"
        [queues.l2]
        type = "L2Update"
        capacity = 4096
        [actors.ticker]
        class = "mantra.examples.hello:Ticker"
        params = {{ rate = 200 }}
        outputs = {{ out = "l2" }}
        [actors.worker]
        class = "actors:Recorder"
        params = {{ out = "{tmp_path / 'rec.json'}" }}
        inputs = {{ l2 = "l2" }}
        [actors.telemetry]
        class = "mantra.telemetry.actor:Telemetry"
        [processes.feed]
        actors = ["ticker"]
        [processes.work]
        actors = ["worker"]
        [processes.back]
        actors = ["telemetry"]
    """))
    return cfg


def wait_for(pred, timeout=20.0):
    return waits.wait_for(pred, timeout)


def lock_record(shm_root, name):
    try:
        return json.loads((shm_root / name / "lock").read_text() or "{}")
    except (FileNotFoundError, ValueError):
        return {}


def start(cfg, *args):
    return subprocess.Popen([sys.executable, "-m", "mantra.cli", "run", str(cfg), *args], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def running(shm_root, name, supervisor, n=3):
    """Wait until the system is up with its n processes; their pids."""
    assert wait_for(lambda: len(children_of(supervisor)) == n and (shm_root / name / "telemetry.json").exists()), \
        "system did not come up"
    return sorted(children_of(supervisor))


def children_of(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(stat[1]) == pid and stat[0] not in "ZX":
                out.append(int(p))
    return out


def test_a_second_start_of_a_running_system_is_refused_and_leaves_it_intact(tmp_path, shm_root):
    cfg = config(tmp_path)
    first = start(cfg)
    try:
        pids = running(shm_root, "locky", first.pid)
        second = subprocess.run([sys.executable, "-m", "mantra.cli", "run", str(cfg), "--duration", "1"],
                                env=env(), capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "already running" in second.stderr and f"pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        det = subprocess.run([sys.executable, "-m", "mantra.cli", "run", str(cfg), "--deterministic"],
                             env=env(), capture_output=True, text=True, timeout=60)
        assert det.returncode != 0 and "already running" in det.stderr
        # the first is untouched: same processes, its files in place, still running
        assert sorted(children_of(first.pid)) == pids and first.poll() is None
        assert lock_record(shm_root, "locky")["pid"] == first.pid
        assert (shm_root / "locky" / "system.json").exists() and (shm_root / "locky" / "queues" / "l2").exists()
        with pytest.raises(SystemRunning, match=f"pid {first.pid}"):
            create_spine(parse({"system": {"name": "locky"}}))
        shm.remove_system("locky")  # from another process: refused, the running system keeps its files
        assert (shm_root / "locky" / "system.json").exists()
        first.send_signal(signal.SIGINT)
        assert first.wait(20) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert not (shm_root / "locky").exists()


def test_kill_9_of_the_supervisor_kills_its_processes_and_the_next_start_takes_over(tmp_path, shm_root):
    cfg = config(tmp_path)
    first = start(cfg)
    try:
        pids = running(shm_root, "locky", first.pid)
        recorded = lock_record(shm_root, "locky")  # what the next start would clean up
        assert recorded["pid"] == first.pid and sorted(p for p, _ in recorded["processes"].values()) == pids
        starts = {pid: proc_start(pid) for pid in pids}
        first.kill()
        first.wait()
        assert wait_for(lambda: all(proc_start(p) != s for p, s in starts.items()), timeout=10), \
            f"orphaned: {[p for p, s in starts.items() if proc_start(p) == s]}"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert (shm_root / "locky" / "system.json").exists()  # what the dead one left
    again = subprocess.run([sys.executable, "-m", "mantra.cli", "run", str(cfg), "--duration", "1.5"],
                           env=env(), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert f"taking over from supervisor pid {first.pid}" in again.stderr
    assert again.stderr.count("process work started") == 1
    assert not (shm_root / "locky").exists()


def test_the_takeover_kills_processes_the_dead_supervisor_recorded_that_still_run(shm_root, caplog):
    stray = subprocess.Popen(["sleep", "60"])
    try:
        # a "supervisor" that started `stray`, recorded it and died without a word
        subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            import os
            from mantra.spine import SeqArray, shm
            shm.lock_system("locky").note("work", {stray.pid})
            os._exit(0)
        """)], env=env(), check=True, timeout=30)
        with caplog.at_level(logging.WARNING, logger="mantra.supervisor"):
            run_deterministic(parse({"system": {"name": "locky", "clock": "deterministic"}}))
        assert stray.wait(5) == -signal.SIGKILL
        assert "taking over from supervisor pid" in caplog.text
        assert f"killing process work (pid {stray.pid})" in caplog.text
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
    assert not (shm_root / "locky").exists()


def test_deterministic_runs_and_backtests_hold_the_lock_too(shm_root, caplog):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from mantra.spine import SeqArray, shm
        shm.lock_system("det")
        print("locked", flush=True)
        time.sleep(60)
    """)], env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        spec = parse({"system": {"name": "det", "clock": "deterministic"}})
        with pytest.raises(SystemRunning, match=f"already running \\(supervisor pid {holder.pid}"):
            run_deterministic(spec)
        assert (shm_root / "det" / "lock").exists()  # the holder's system is left alone
        holder.kill()
        holder.wait()
        with caplog.at_level(logging.WARNING, logger="mantra.supervisor"):
            create_spine(spec).close()  # what a backtest does: the dead holder's lock is taken over
        assert f"taking over from supervisor pid {holder.pid}" in caplog.text
        with pytest.raises(SystemRunning, match="in this process"):
            create_spine(spec)
        shm.remove_system("det")
        assert not (shm_root / "det").exists()
        run_deterministic(spec, keep=True)  # released on return, the files kept
        run_deterministic(spec)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert not (shm_root / "det").exists()


def test_the_demo_simulators_die_with_the_demo(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from mantra import demo
        procs, urls = demo.start_simulators(5.0, 120, Path({str(tmp_path / 'sims.log')!r}))
        print(" ".join(str(p.pid) for p in procs), flush=True)
        time.sleep(120)
    """)], env=env(), stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        sims = [int(p) for p in line.split()]
        assert len(sims) == 5, line
        starts = {p: proc_start(p) for p in sims}
        parent.kill()
        parent.wait()
        assert wait_for(lambda: all(proc_start(p) != s for p, s in starts.items()), timeout=10), \
            f"simulators outlived the demo: {[p for p, s in starts.items() if proc_start(p) == s]}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_a_forked_child_that_asks_dies_with_its_parent():
    """``die_with_parent()`` with no argument: what any forked helper (benchmarks too) calls first."""
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import multiprocessing as mp, time
        from mantra.runtime.supervisor import die_with_parent
        def child():
            die_with_parent()
            time.sleep(120)
        p = mp.get_context("fork").Process(target=child)
        p.start()
        print(p.pid, flush=True)
        time.sleep(120)
    """)], env=env(), stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        start = proc_start(pid)
        assert start is not None
        parent.kill()
        parent.wait()
        assert wait_for(lambda: proc_start(pid) != start, timeout=10), "the child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


class _HalfWritten:
    """A status array whose slot 1 a dead writer left half-written: reading it gives up."""

    def __init__(self, error):
        self.error, self.written = error, {}

    def read(self, i):
        if i == 1:
            raise self.error
        return 1, ActorStatus(*([0] * len(ActorStatus._fields)))

    def write(self, i, st, *a):
        self.written[i] = st


class ArrayReadError(Exception):
    """Stands for whatever dedicated exception the array read may come to raise."""


@pytest.mark.parametrize("error", [RuntimeError("seqlock read did not settle"), ArrayReadError("torn slot")])
def test_a_crash_report_survives_an_unreadable_status_slot(error, caplog):
    spec = parse({"system": {"name": "crashy"},
                  "actors": {n: {"class": "mantra.telemetry.actor:Telemetry"} for n in "abc"},
                  "processes": {"work": {"actors": ["a", "b", "c"]}}})
    sup = Supervisor(spec)
    sup.status = _HalfWritten(error)
    ids = {n: spec.actors[n].id for n in "abc"}
    bad = next(n for n, i in ids.items() if i == 1)
    with caplog.at_level(logging.ERROR, logger="mantra.supervisor"):
        sup._mark_crashed("work")
    assert f"actor {bad}'s status (slot 1) is unreadable" in caplog.text and str(error) in caplog.text
    assert {i for i in sup.status.written} == {i for n, i in ids.items() if n != bad}
    assert all(st.state == ActorState.CRASHED for st in sup.status.written.values())


def test_inspect_shows_an_unreadable_status_slot_and_carries_on(shm_root, monkeypatch):
    spec = parse({"system": {"name": "crashy"},
                  "actors": {n: {"class": "mantra.telemetry.actor:Telemetry"} for n in "ab"}})
    create_spine(spec).close()
    read = SeqArray.read

    def half_written(self, i):
        if i == spec.actors["a"].id:
            raise RuntimeError("seqlock read did not settle")
        return read(self, i)

    monkeypatch.setattr(SeqArray, "read", half_written)
    snap = inspect.snapshot("crashy", sample=0.01)
    assert snap["actors"] == {"a": {"state": "UNREADABLE"}, "b": {"state": "UNKNOWN"}}
    assert "UNREADABLE" in inspect.render(snap)
    shm.remove_system("crashy")
