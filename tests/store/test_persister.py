"""The persister inside a system: it records every queue; a killed persister leaves readable files."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np

from mantra.runtime.config import parse
from mantra.runtime.supervisor import run_deterministic
from mantra.spine.messages import L2Update
from mantra.store import segments


def doc(name, out, count=2000):
    return {
        "system": {"name": name},
        "queues": {"l2": {"type": "L2Update", "capacity": 1 << 14}, "top": {"type": "L2Update", "capacity": 1 << 14}},
        "arrays": {"quotes": {"type": "IdealOrder", "size": 2}},
        "actors": {
            "ticker": {"class": "mantra.examples.hello:Ticker", "params": {"rate": 1000, "count": count},
                       "outputs": {"out": "l2"}},
            "book": {"class": "mantra.examples.hello:BookKeeper", "inputs": {"l2": "l2"}, "outputs": {"top": "top"},
                     "arrays": {"quotes": "quotes"}},
            "sink": {"class": "mantra.examples.hello:Sink", "inputs": {"top": "top"}},
            "persister": {"class": "mantra.store.persister:Persister", "params": {"dir": str(out), "flush_ms": 20}},
        },
    }


def test_deterministic_run_records_every_message_of_every_queue(tmp_path):
    r = run_deterministic(parse(doc("persist", tmp_path / "rec")), start_ns=1_700_000_000_000_000_000)
    sink = next(s for s in r.slots if s.spec.name == "sink")
    book = next(s for s in r.slots if s.spec.name == "book")
    assert segments.queues(tmp_path / "rec") == ["l2", "top"]
    l2 = segments.load(tmp_path / "rec", "l2")
    top = segments.load(tmp_path / "rec", "top")
    assert len(l2) == book.handled and len(top) == sink.handled > 0
    assert (np.diff(l2["publish"].astype(np.int64)) >= 0).all()
    # the recorded top-of-book stream is exactly what the sink saw, origins included
    d = hashlib.blake2b(digest_size=16)
    for rec in top:
        m = L2Update(*(int(rec[f]) for f in L2Update._fields))
        d.update(repr((m, int(rec["origin"]))).encode())
    assert d.hexdigest() == sink.actor.digest.hexdigest()
    assert (tmp_path / "rec" / "system.json").exists()


def test_persister_killed_mid_run_leaves_every_segment_readable(tmp_path, shm_root):
    out = tmp_path / "rec"
    cfg = tmp_path / "p.toml"
    cfg.write_text(f"""
[system]
name = "pk"
[queues.l2]
type = "L2Update"
capacity = 65536
[actors.ticker]
class = "mantra.examples.hello:Ticker"
params = {{ rate = 20000 }}
outputs = {{ out = "l2" }}
[actors.persister]
class = "mantra.store.persister:Persister"
params = {{ dir = "{out}", flush_ms = 50 }}
[processes.feed]
actors = ["ticker"]
[processes.rec]
actors = ["persister"]
restart = "never"
""")
    proc = subprocess.Popen([sys.executable, "-m", "mantra.cli", "run", str(cfg), "--duration", "6"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 15
        seg = None
        while time.monotonic() < deadline:
            files = segments.segments(out, "l2")
            if files and segments.scan(files[0]).records > 20_000:
                seg = files[0]
                break
            time.sleep(0.1)
        assert seg is not None, "persister wrote nothing"
        rec_pid = int([ln for ln in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()][1])
        os.kill(rec_pid, signal.SIGKILL)
        log = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "died: killed by signal 9" in log
    info = segments.scan(seg)
    got = segments.load(out, "l2")
    assert len(got) == info.records >= 20_000
    # what was recorded is a gap-free prefix of the stream (timestamps in order, no garbage)
    assert (np.diff(got["publish"].astype(np.int64)) >= 0).all() and (got["instrument"] == 1).all()


def test_a_persister_killed_and_restarted_records_every_message_once(tmp_path, shm_root):
    """kill -9 twice mid-run, restarted by the supervisor: what it recorded is exactly what a
    persister that was never killed recorded."""
    from mantra.runtime import paths
    from mantra.spine import Ring

    cfg = tmp_path / "p.toml"
    cfg.write_text(f"""
[system]
name = "pkr"
[queues.l2]
type = "L2Update"
capacity = 65536
[actors.ticker]
class = "mantra.examples.hello:Ticker"
params = {{ rate = 5000 }}
outputs = {{ out = "l2" }}
[actors.killed]
class = "mantra.store.persister:Persister"
params = {{ dir = "{tmp_path / 'killed'}", flush_ms = 50 }}
[actors.kept]
class = "mantra.store.persister:Persister"
params = {{ dir = "{tmp_path / 'kept'}", flush_ms = 50 }}
[processes.feed]
actors = ["ticker"]
[processes.rec]
actors = ["killed"]
restart = "always"
[processes.ref]
actors = ["kept"]
""")
    proc = subprocess.Popen([sys.executable, "-m", "mantra.cli", "run", str(cfg), "--duration", "7"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, kills, ring = time.monotonic() + 20, 0, None
        while kills < 2 and time.monotonic() < deadline:
            time.sleep(1.2)
            if ring is None and paths.queue(paths.system_dir("pkr"), "l2").exists():
                ring = Ring.attach(paths.queue(paths.system_dir("pkr"), "l2"))
            pids = [c["pid"] for c in (ring.consumers() if ring else []) if c["label"] == "killed" and c["alive"]]
            if pids and segments.segments(tmp_path / "killed", "l2"):
                os.kill(pids[0], signal.SIGKILL)
                kills += 1
        log = proc.communicate(timeout=40)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert kills == 2 and log.count("killed by signal 9") == 2, log[-3000:]
    killed, kept = segments.load(tmp_path / "killed", "l2"), segments.load(tmp_path / "kept", "l2")
    assert len(kept) > 20_000
    assert len(segments.segments(tmp_path / "killed", "l2")) == 3  # a new file per run
    assert killed.tobytes() == kept.tobytes()  # every record, once, in order
