"""Replay: a recorded session published back through the same code reproduces what it saw."""

import numpy as np

from mantra.runtime.config import parse
from mantra.runtime.supervisor import Supervisor, run_deterministic
from mantra.store import segments
from mantra.store.segments import SegmentWriter
from mantra.spine.messages import L2Update

from .test_persister import doc


def replay_doc(name, data, out, speed=None):
    d = {
        "system": {"name": name},
        "queues": {"l2": {"type": "L2Update", "capacity": 1 << 12}, "top": {"type": "L2Update", "capacity": 1 << 12}},
        "arrays": {"quotes": {"type": "IdealOrder", "size": 2}},
        "actors": {
            "replay": {"class": "mantra.store.replayer:Replayer",
                       "params": {"dir": str(data), "streams": {"l2": "l2"}, "stop_when_done": True},
                       "outputs": {"l2": "l2"}},
            "book": {"class": "mantra.examples.hello:BookKeeper", "inputs": {"l2": "l2"}, "outputs": {"top": "top"},
                     "arrays": {"quotes": "quotes"}},
            "sink": {"class": "mantra.examples.hello:Sink", "inputs": {"top": "top"}},
            "persister": {"class": "mantra.store.persister:Persister", "params": {"dir": str(out)}},
        },
    }
    if speed is not None:
        d["actors"]["replay"]["params"]["speed"] = speed
    return d


def _actor(r, name):
    return next(s.actor for s in r.slots if s.spec.name == name)


def test_deterministic_replay_reproduces_the_recorded_session(tmp_path):
    live = run_deterministic(parse(doc("rec", tmp_path / "live", count=5000)), start_ns=1_700_000_000_000_000_000)
    # a small ring (4096) and 5000 messages: the replayer must pace itself by its consumers
    again = run_deterministic(parse(replay_doc("rep", tmp_path / "live", tmp_path / "replayed")))
    assert _actor(again, "replay").i == _actor(again, "replay").total == len(segments.load(tmp_path / "live", "l2"))
    assert _actor(again, "sink").received == _actor(live, "sink").received > 100
    assert _actor(again, "sink").digest.hexdigest() == _actor(live, "sink").digest.hexdigest()
    a, b = segments.load(tmp_path / "live", "top"), segments.load(tmp_path / "replayed", "top")
    assert np.array_equal(a, b)  # book states identical, publish times and origins included
    assert _actor(again, "book").book.bids == _actor(live, "book").book.bids


def test_real_time_replay_as_fast_as_possible_loses_nothing(tmp_path, shm_root):
    rng = np.random.default_rng(3)
    n = 60_000
    r = np.zeros(n, L2Update.DTYPE)
    r["origin"] = r["publish"] = 1_700_000_000_000_000_000 + np.arange(n) * 1000
    r["price"] = 6_000_000 + rng.integers(-50, 50, n)
    r["side"] = np.where(r["price"] < 6_000_000, 1, -1)
    r["size"] = rng.integers(0, 10, n)
    r["flags"] = 1
    w = SegmentWriter(tmp_path / "data" / "l2" / "0.seg", "l2", L2Update)
    w.append(r)
    w.close()
    spec = parse(replay_doc("fast", tmp_path / "data", tmp_path / "out", speed=0))
    Supervisor(spec).run(duration=30)  # the replayer stops the system when done
    got = segments.load(tmp_path / "out", "l2")
    assert len(got) == n and np.array_equal(got["price"], r["price"]) and np.array_equal(got["origin"], r["origin"])


def test_a_damaged_recording_replays_the_rest_and_says_what_it_skipped(tmp_path, caplog):
    live = tmp_path / "live"
    run_deterministic(parse(doc("rec", live, count=3000)), start_ns=1_700_000_000_000_000_000)
    f = segments.segments(live, "l2")[0]
    info = segments.scan(f)
    assert len(info.chunks) >= 3
    c = info.chunks[1]
    raw = bytearray(f.read_bytes())
    raw[c.offset + c.size // 2] ^= 0x40  # one bit in the second chunk
    f.write_bytes(bytes(raw))
    again = run_deterministic(parse(replay_doc("rep", live, tmp_path / "replayed")))
    rep = _actor(again, "replay")
    assert rep.total == info.records - c.records and rep.i == rep.total
    assert rep.skipped["chunks"] == 1 and rep.skipped["records"] == c.records
    assert rep.damage[0].path == str(f) and rep.damage[0].offset == c.offset - segments.CHUNK.size
    assert "damaged parts of the recording skipped" in caplog.text
