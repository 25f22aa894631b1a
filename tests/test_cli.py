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
