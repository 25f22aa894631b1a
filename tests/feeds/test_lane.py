"""``_spine.Lane``, the feed's native frame path, held to its reference: the Coinbase protocol's
Python ``on_frame`` followed by the feed's ``convert``.  Over any sequence of frames (good updates,
gaps, repeats, snapshots, crossed books, odd numbers, odd times, odd JSON) a feed using the lane
publishes the same records (fields and origin) and leaves the protocol in the same state."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantra import _spine
from mantra.feeds.actor import convert
from mantra.instruments import InstrumentRegistry
from mantra.runtime.actor import Tracking
from mantra.spine import Ring
from mantra.spine.messages import L2Update
from mantra.venues.coinbase.protocol import CoinbaseProtocol
from mantra.venues.events import Level

PRODUCTS = ("BTC-USD", "ETH-USD")
T0 = 1_700_000_000_000_000_000

GOOD_SIZES = st.sampled_from(["0", "1", "0.5", "0.00000001", "2.10000000"])
ODD = {  # one oddity at a time, in a frame otherwise common
    "price_level": ["100.00", "99.98", "100.02", "100.010", "100.011", "0", "-1", "1e2", "", "100.", ".5", "9223372036854775807", "00100.00",
                    " 100", "100.001"],
    "new_quantity": ["0.000000001", "-0.1", "1E1", "x", "92233720368.54775808"],
    "side": ["ask", "BID", "", "buy", "sell"],
    "timestamp": ["2023-02-09T20:32:51Z", "2023-02-09 20:32:51.1Z", "2023-02-09T20:32:51.1234567891Z",
                  "2023-13-09T20:32:51Z", "2023-02-30T20:32:51.5Z", "1969-12-31T23:59:59Z", "2023-02-09T20:32:51.Z",
                  "2023-02-09T20:32:51", "", "2024-02-29T00:00:00.000001Z", "2023-02-09T20:32:51+00:00"],
}


@st.composite
def frame(draw):
    """One Advanced Trade frame: mostly a common l2_data update, now and then a snapshot, another
    channel, or one oddity (a value, a time, a sequence step, the JSON's shape)."""
    kind = draw(st.sampled_from(["update"] * 8 + ["snapshot", "other"]))
    odd = draw(st.sampled_from([None] * 6 + ["value", "seq", "shape", "events"]))
    seq_step = draw(st.sampled_from([0, 2, -1, None])) if odd == "seq" else 1
    if kind == "other":
        doc = {"channel": draw(st.sampled_from(["heartbeats", "subscriptions", "market_trades"])), "events": []}
    else:
        ups = []
        for _ in range(draw(st.integers(1, 4))):
            side = draw(st.sampled_from(["bid", "offer"]))
            cents = draw(st.integers(9990, 9999) if side == "bid" else st.integers(10001, 10010))
            ups.append({"side": side, "event_time": "2023-02-09T20:32:51.1Z", "price_level": f"{cents / 100:.2f}",
                        "new_quantity": draw(GOOD_SIZES)})
        doc = {"channel": "l2_data", "client_id": "", "timestamp": "2023-02-09T20:32:51.114964855Z",
               "events": [{"type": kind, "product_id": draw(st.sampled_from(PRODUCTS)), "updates": ups}]}
        if odd == "value":
            key = draw(st.sampled_from(sorted(ODD)))
            target = doc if key == "timestamp" else draw(st.sampled_from(ups))
            target[key] = draw(st.sampled_from(ODD[key]))
        elif odd == "events":
            ev = doc["events"][0]
            change = draw(st.sampled_from(["two", "none", "no_levels", "unknown", "reorder", "extra"]))
            if change == "two":
                doc["events"] = [ev, ev]
            elif change == "none":
                doc["events"] = []
            elif change == "no_levels":
                ev["updates"] = []
            elif change == "unknown":
                ev["product_id"] = "SOL-USD"
            elif change == "reorder":
                doc["events"] = [dict(reversed(list(ev.items())))]
                ups[0] = dict(reversed(list(ups[0].items())))
            else:
                doc["extra"] = {"nested": [1, 2.5e3, None, True, "x", {"a": []}]}
    doc["seq_step"] = seq_step
    style = draw(st.sampled_from(["spaced", "escape", "truncated", "trailing", "dupkey"])) if odd == "shape" else "plain"
    return doc, style


def render(doc: dict, style: str, seq: int) -> str:
    doc = {k: v for k, v in doc.items() if k != "seq_step"}
    if seq is not None:
        doc["sequence_num"] = seq
    text = json.dumps(doc, separators=(",", ":")) if style != "spaced" else json.dumps(doc, indent=1)
    if style == "escape":
        text = text.replace('"bid"', '"\\u0062id"').replace('"l2_data"', '"l2\\u005fdata"')
    elif style == "truncated":
        text = text[:-3]
    elif style == "trailing":
        text += " x"
    elif style == "dupkey":
        text = text.replace('"channel":', '"channel":"heartbeats","channel":', 1)
    return text


class Side:
    """A protocol with a ring behind it, fed one way or the other."""

    def __init__(self, d, name, lane: bool):
        reg = InstrumentRegistry()
        for p in PRODUCTS:
            reg.add("coinbase", p, price_scale=2, size_scale=8)
        self.proto = CoinbaseProtocol(reg, list(PRODUCTS))
        self.proto.on_connect(T0)
        self.proto.events.clear()
        self.ring = Ring.create(d / name, L2Update, 1 << 12)
        self.track, self.snap = Tracking(), {}
        self.port = _spine.Port(self.ring.writer()._w, L2Update, L2Update.FIELDS_AT, L2Update.STRUCT.size,
                                self.track, None, 5)
        self.lane = self.proto.fast_lane(self.port, self.track, self.snap) if lane else None
        self.taken, self.other = 0, []  # frames the lane took; non-level events, as published
        self.reader = Ring.attach(d / name, L2Update).reader("", start=0, register=False)

    def feed(self, text: str, ts: int) -> None:
        p = self.proto
        if self.lane is not None and self.lane.take(text, ts):
            self.taken += 1
        else:
            p.on_frame(text, ts)
        if p.events:
            self.other += [e for e in p.events if type(e) is not Level]
            self.track.origin = ts
            convert(p.events, self.snap, self.port.send, lambda m: None, lambda m: None)
            p.events.clear()

    def publish(self, events: list, ts: int) -> None:
        """The Feed's sink: what the runner hands over."""
        self.other += [e for e in events if type(e) is not Level]
        self.track.origin = ts
        convert(events, self.snap, self.port.send, lambda m: None, lambda m: None)

    def records(self) -> list:
        out = []
        while self.reader.read() is not None:
            r = bytes(self.reader.record)
            out.append((r[:8], r[16:20], r[24:54]))  # origin, publisher, payload (not the publish time)
        return out

    def state(self) -> tuple:
        p = self.proto
        books = {i: (b.bids, b.asks) for i, b in p.books.items()}
        return (p._seq, p.frames, p.last_ts, dict(p.stats), dict(p.status), set(p._synced), books, self.snap,
                self.other)


@settings(max_examples=150, deadline=None)
@given(st.lists(frame(), min_size=1, max_size=40))
def test_the_lane_publishes_what_the_python_path_does(tmp_path_factory, frames):
    d = tmp_path_factory.mktemp("lane")
    ref, fast = Side(d, "ref", lane=False), Side(d, "fast", lane=True)
    seq = -1
    books = [{"channel": "l2_data", "timestamp": "2023-02-09T20:32:51Z", "seq_step": 1, "events": [
        {"type": "snapshot", "product_id": p, "updates": [{"side": "bid", "price_level": "99.99", "new_quantity": "1"},
                                                           {"side": "offer", "price_level": "100.01", "new_quantity": "1"}]}]}
             for p in PRODUCTS]
    frames = [(books[0], "plain"), (books[1], "plain")] + frames
    for i, (doc, style) in enumerate(frames):
        step = doc["seq_step"]
        seq = None if step is None else max(seq + step, 0)
        text = render(doc, style, seq)
        ts = T0 + i
        ref.feed(text, ts)
        fast.feed(text, ts)
        assert fast.records() == ref.records(), text
        assert fast.state() == ref.state(), text
        if seq is None:
            seq = 0


def test_the_lane_takes_the_common_frame():
    """Not a vacuous equality: a synced book's plain updates go through C, and nothing else does."""
    import tempfile
    from pathlib import Path

    s = Side(Path(tempfile.mkdtemp()), "r", lane=True)
    snap = {"channel": "l2_data", "timestamp": "2023-02-09T20:32:51Z", "sequence_num": 0,
            "events": [{"type": "snapshot", "product_id": "BTC-USD", "updates": [
                {"side": "bid", "price_level": "100.00", "new_quantity": "1"},
                {"side": "offer", "price_level": "100.02", "new_quantity": "1"}]}]}
    s.feed(json.dumps(snap), T0)
    assert s.taken == 0
    upd = {"channel": "l2_data", "timestamp": "2023-02-09T20:32:51.5Z", "sequence_num": 1,
           "events": [{"type": "update", "product_id": "BTC-USD", "updates": [
               {"side": "offer", "event_time": "x", "price_level": "100.01", "new_quantity": "0.5"}]}]}
    s.feed(json.dumps(upd), T0 + 7)
    assert s.taken == 1 and s.proto._seq == 1 and s.proto.stats[s.proto._iid["BTC-USD"]].messages == 2
    recs = s.records()
    last = L2Update.STRUCT.unpack(recs[-1][2])
    assert int.from_bytes(recs[-1][0], "little") == T0 + 7
    assert last == (10001, 50_000_000, 1675974771_500_000_000, s.proto._iid["BTC-USD"], -1, 1)  # LAST


def test_a_lane_needs_a_real_time_l2_ring():
    import tempfile
    from pathlib import Path

    from mantra.runtime.clock import SimClock
    from mantra.spine.messages import TradeUpdate

    s = Side(Path(tempfile.mkdtemp()), "r", lane=False)
    sim = _spine.Port(s.ring.writer()._w, L2Update, L2Update.FIELDS_AT, L2Update.STRUCT.size, s.track, SimClock(1), 5)
    with pytest.raises(TypeError, match="real time"):
        s.proto.fast_lane(sim, s.track, s.snap)
    tr = Ring.create(Path(tempfile.mkdtemp()) / "t", TradeUpdate, 16)
    trades = _spine.Port(tr.writer()._w, TradeUpdate, TradeUpdate.FIELDS_AT, TradeUpdate.STRUCT.size, s.track)
    with pytest.raises(TypeError, match="L2Update"):
        s.proto.fast_lane(trades, s.track, s.snap)


def test_a_frame_of_many_levels_is_taken_and_equal(tmp_path):
    """The lane's level buffer grows: a 1,000-level update (the throughput bench's frames carry ~240)."""
    ref, fast = Side(tmp_path, "ref", lane=False), Side(tmp_path, "fast", lane=True)
    snap = {"channel": "l2_data", "timestamp": "2023-02-09T20:32:51Z", "sequence_num": 0,
            "events": [{"type": "snapshot", "product_id": "ETH-USD", "updates": [
                {"side": "bid", "price_level": "100.00", "new_quantity": "1"},
                {"side": "offer", "price_level": "200.00", "new_quantity": "1"}]}]}
    ups = [{"side": "bid" if k % 2 else "offer", "price_level": f"{(10 + k % 90 if k % 2 else 20000 + k) / 100:.2f}",
            "new_quantity": str(k % 7)} for k in range(1000)]
    big = {"channel": "l2_data", "timestamp": "2023-02-09T20:32:52Z", "sequence_num": 1,
           "events": [{"type": "update", "product_id": "ETH-USD", "updates": ups}]}
    for side in (ref, fast):
        side.feed(json.dumps(snap), T0)
        side.feed(json.dumps(big), T0 + 1)
    assert fast.taken == 1
    expected = ref.records()
    assert len(expected) == 1002 and fast.records() == expected
    assert fast.state() == ref.state()


def _cb(seq, kind, ups, product="BTC-USD", extra=""):
    return json.dumps({"channel": "l2_data", "timestamp": "2023-02-09T20:32:51.5Z", "sequence_num": seq,
                       "events": [{"type": kind, "product_id": product, "updates": [
                           {"side": s, "price_level": p, "new_quantity": q} for s, p, q in ups]}]}) + extra


def test_a_runner_with_a_lane_counts_and_publishes_what_one_without_does(tmp_path):
    """Over a real socket, reads of several frames (the lane takes them inside the read, until one
    it declines), a crossed book, a gap: the runner's counters, the records and the protocol agree."""
    import sys
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from feedkit import RawWsServer, frame

    from mantra.feeds.runner import FeedRunner

    texts = [_cb(0, "snapshot", [("bid", "100.00", "1"), ("offer", "100.02", "1")])]
    texts += [_cb(i, "update", [("bid", f"{99 + i / 100:.2f}", "2")]) for i in range(1, 6)]
    texts += [_cb(6, "update", [("offer", "99.00", "1")])]  # crosses the book: resync
    texts += [_cb(7, "update", [("bid", "99.50", "1")]), _cb(9, "update", [("bid", "99.40", "1")])]  # gap
    texts += [_cb(10, "snapshot", [("bid", "98.00", "1"), ("offer", "98.50", "1")])]
    texts += [_cb(i, "update", [("offer", f"{98.5 + i / 100:.2f}", "3")]) for i in range(11, 20)]
    wire = [frame(t) for t in texts]
    script = [b"".join(wire[:4]), 0.02, b"".join(wire[4:9]), 0.02, b"".join(wire[9:14]), 0.02, b"".join(wire[14:])]
    sides = {}
    with RawWsServer(script) as srv:
        for name, use in (("ref", False), ("fast", True)):
            side = Side(tmp_path, name, lane=use)
            side.proto.url = srv.url
            runner = FeedRunner(side.proto, lambda ev, ts, s=side: s.publish(ev, ts), ping_interval=None)
            runner.lane = side.lane.take if use else None
            end = time.monotonic() + 10
            while side.proto._seq < 19 and time.monotonic() < end:
                runner.poll(64, 0.01)
            runner.close()
            sides[name] = (side, runner.frames, runner.bytes)
    (ref, rf, rb), (fast, ff, fb) = sides["ref"], sides["fast"]
    assert ref.proto._seq == 19 and (ff, fb) == (rf, rb) == (len(texts), sum(map(len, texts)))
    expected = [r[1:] for r in ref.records()]  # origins are each connection's own receipt times
    assert [r[1:] for r in fast.records()] == expected and len(expected) > 20
    assert fast.state()[3:8] == ref.state()[3:8] and fast.state()[:2] == ref.state()[:2]  # (not last_ts: a receipt time)
    assert [(type(e), e[:2]) for e in fast.other] == [(type(e), e[:2]) for e in ref.other]
    assert fast.lane.handled > 10
