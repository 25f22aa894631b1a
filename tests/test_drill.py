"""`mantra drill` end to end: every process of the live demo system killed in turn and every venue
fault injected; afterwards every book equals its venue's, nothing recorded is lost or doubled, no
order was placed twice.  Also: the drill's own audit catches duplicates (it can fail)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mantra import drill
from mantra.spine.messages import Fill, OrderAction, OrderRequest
from mantra.store.segments import SegmentWriter


def test_the_whole_drill_passes(tmp_path, shm_root):
    p = subprocess.run([sys.executable, "-m", "mantra.cli", "drill", "--json", "--deadline", "30",
                        "--out", str(tmp_path / "drill")], capture_output=True, text=True, timeout=600)
    r = json.loads(p.stdout)
    assert [s["step"] for s in r["steps"]] == ["warmup"] + drill.default_steps()
    assert all(s["ok"] for s in r["steps"]), r["steps"]
    assert r["books_equal"] and all(r["books_equal"].values()), r["books_equal"]
    q = r["queues"]
    assert {"l2", "book_status", "trades", "requests", "fills"} <= set(q), q
    assert all(v["duplicates"] == 0 for v in q.values()), q
    assert q["l2"]["recorded"] == q["l2"]["published"] and q["book_status"]["recorded"] == q["book_status"]["published"]
    assert r["orders_placed_twice"] == r["fills_recorded_twice"] == 0
    assert r["most_cancels_of_one_order"] <= drill.MAX_CANCELS
    # the venues' own accounts: the handlers' process was killed too, nothing accepted twice, every fill recorded
    assert set(r["venues"]) == {"binance", "bitstamp", "coinbase", "kraken", "bitfinex"}, r["venues"]
    assert all(v["placed"] > 0 and v["placed_twice"] == 0 and v["fills"] == v["venue_fills"]
               for v in r["venues"].values()), r["venues"]
    assert r["ok"] and p.returncode == 0, p.stderr[-3000:]
    assert not shm_root.exists() or not any(shm_root.rglob("*"))


def _write(path, msg_type, rows):
    recs = np.zeros(len(rows), msg_type.DTYPE)
    for i, row in enumerate(rows):
        for k, v in row.items():
            recs[i][k] = v
    recs["publish"] = np.arange(1, len(rows) + 1)
    w = SegmentWriter(path / "x.seg", path.name, msg_type)
    w.append(recs)
    w.close()
    return recs


def test_the_audit_finds_doubles(tmp_path):
    (tmp_path / "requests").mkdir()
    (tmp_path / "fills").mkdir()
    new = int(OrderAction.NEW)
    reqs = _write(tmp_path / "requests", OrderRequest, [
        {"order_id": 1, "action": new}, {"order_id": 2, "action": new}, {"order_id": 2, "action": new},
        *({"order_id": 9, "ref_id": 1, "action": int(OrderAction.CANCEL)} for _ in range(3))])
    _write(tmp_path / "fills", Fill, [{"order_id": 1, "trade_id": 7}, {"order_id": 1, "trade_id": 7}])
    a = drill.audit(tmp_path, {})
    assert a["orders_placed_twice"] == 1 and a["fills_recorded_twice"] == 1
    assert a["most_cancels_of_one_order"] == 3
    assert a["queues"]["requests"] == {"recorded": len(reqs), "duplicates": 0}  # publish times differ
    # a record written twice, byte for byte, is a duplicate
    w = SegmentWriter(tmp_path / "requests" / "y.seg", "requests", OrderRequest)
    w.append(reqs[:2])
    w.close()
    assert drill.audit(tmp_path, {})["queues"]["requests"]["duplicates"] == 2


def test_unknown_steps_are_refused():
    with pytest.raises(ValueError, match="unknown drill step.*kill:nope"):
        drill.run(["kill:nope"])
