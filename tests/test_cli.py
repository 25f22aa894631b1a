"""Ordinary mistakes with the `mantra` command get a clear message and a non-zero exit, not a
traceback or a silent success."""

import os
import subprocess
import sys

import numpy as np

from mantra.spine.messages import L2Update
from mantra.store.segments import SegmentWriter

MANTRA = [sys.executable, "-m", "mantra.cli"]


def run(*args, **kw):
    return subprocess.run([*MANTRA, *args], capture_output=True, text=True, timeout=60, **kw)


def test_export_of_nothing_is_an_error(tmp_path):
    p = run("export", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert p.returncode != 0 and "holds no recorded queues" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "o").exists()


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    """`mantra export ... | head -0`: the reader left before the JSON was written."""
    recs = np.zeros(3, L2Update.DTYPE)
    recs["publish"] = [1, 2, 3]
    w = SegmentWriter(tmp_path / "data" / "l2" / "1.seg", "l2", L2Update)
    w.append(recs)
    w.close()
    r, wfd = os.pipe()
    os.close(r)  # nobody will read
    p = subprocess.run([*MANTRA, "export", str(tmp_path / "data"), "--out", str(tmp_path / "o")],
                       stdout=wfd, stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(wfd)
    assert (tmp_path / "o" / "l2.parquet").exists()  # the work was done
    assert p.returncode == 141 and "Traceback" not in p.stderr, p.stderr


def test_export_of_damaged_data_says_so(tmp_path):
    recs = np.zeros(1000, L2Update.DTYPE)
    recs["publish"] = np.arange(1, 1001)
    recs["price"] = np.arange(1000) * 7
    f = tmp_path / "data" / "l2" / "1.seg"
    w = SegmentWriter(f, "l2", L2Update)
    w.append(recs[:500])
    w.append(recs[500:])
    w.close()
    raw = bytearray(f.read_bytes())
    raw[-40] ^= 0xFF  # inside the last chunk's payload
    f.write_bytes(bytes(raw))
    p = run("export", str(tmp_path / "data"), "--out", str(tmp_path / "o"))
    assert p.returncode == 1 and "damaged data skipped" in p.stderr, p.stderr
    assert '"l2": 500' in p.stdout  # the sound chunk was exported


def test_clean_removes_what_dead_systems_left_and_keeps_running_ones(shm_root):
    from mantra.spine import shm

    for name in ("dead1", "dead2"):
        lock = shm.lock_system(name)
        (shm.system_dir(name) / "queues").mkdir()
        lock._close()  # as if its supervisor had been killed: lock file and files left behind
    live = shm.lock_system("alive")  # this process holds it: a running system
    try:
        p = run("clean")
        assert p.returncode == 0 and "removed 2 stopped system(s)" in p.stdout and "kept running: alive" in p.stdout
        assert shm.systems() == ["alive"]
    finally:
        live.release()


def test_import_mistakes_say_what_to_do(tmp_path):
    pq = tmp_path / "l2.parquet"
    pq.write_bytes(b"PAR1 not really")
    p = run("import", str(pq), "--out", str(tmp_path / "o"))
    assert p.returncode != 0 and "--venue" in p.stderr and ".parquet" in p.stderr and "Traceback" not in p.stderr
    rec = tmp_path / "KRAKEN.ws.1.0"  # a recording given without --venue
    rec.write_text("")
    p = run("import", str(rec), "--out", str(tmp_path / "o"))
    assert p.returncode != 0 and "--venue NAME" in p.stderr and "pickle" not in p.stderr.lower()
    bad = tmp_path / "x.npy"
    np.save(bad, np.arange(3))
    p = run("import", str(bad), "--out", str(tmp_path / "o"))
    assert p.returncode != 0 and "not a readable reference stream" in p.stderr and "Traceback" not in p.stderr
