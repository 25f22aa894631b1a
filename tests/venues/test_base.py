"""Shared protocol machinery, through a toy venue whose frames are ``side price size;...``."""

import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from mantra.instruments import InstrumentRegistry
from mantra.venues.base import BookStats, VenueProtocol
from mantra.venues.events import BookState, Level, Reconnect, Status
from venuekit import drain

SEC = 10**9
T0 = 1_700_000_000 * SEC


class Toy(VenueProtocol):
    venue = "kraken"  # any registered venue name
    stale_after_s = 5

    def handle(self, data, ts):
        iid = self.books and next(iter(self.books))
        self._busy = iid
        if data == "boom":
            raise RuntimeError("unexpected")
        levels = []
        for part in data.split(";"):
            side, price, size = part.split()
            levels.append((int(side), int(price), int(size)))
        self.apply_levels(iid, levels, ts)
        self.check_crossed(iid)


def make(depth=0):
    reg = InstrumentRegistry()
    p = Toy(reg, ["XBT/USD"], depth)
    iid = reg.get("kraken", "XBT/USD").id
    return p, iid


def consumer_replay(events, iid):
    """What a consumer rebuilds from the Level stream alone."""
    book = {1: {}, -1: {}}
    for e in events:
        if type(e) is Level and e.instrument == iid:
            if e.size:
                book[e.side][e.price] = e.size
            else:
                book[e.side].pop(e.price, None)
    return book


def test_registers_unknown_symbols_and_tracks_status():
    p, iid = make()
    assert p.status[iid] == Status.DISCONNECTED and p.stats[iid] == BookStats()
    p.on_connect(T0)
    assert drain(p) == [BookState(iid, Status.SYNCING, "connected")]
    p.on_disconnect(T0)
    assert drain(p) == [BookState(iid, Status.DISCONNECTED, "disconnected")]


def test_set_status_emits_only_on_change():
    p, iid = make()
    p.set_status(iid, Status.SYNCED, "a")
    p.set_status(iid, Status.SYNCED, "b")
    assert drain(p) == [BookState(iid, Status.SYNCED, "a")]


def test_message_levels_flag_last_and_count():
    p, iid = make()
    p.on_frame("1 100 5;1 99 1;-1 101 2", T0)
    ev = drain(p)
    assert [e.last for e in ev] == [False, False, True]
    assert p.books[iid].best_bid() == 100 and p.stats[iid].messages == 1


def test_truncation_emits_deletions_so_consumers_follow():
    p, iid = make(depth=2)
    p.on_frame("1 100 1;1 99 1;-1 105 1", T0)
    p.on_frame("1 101 1;1 102 1", T0)  # pushes 100 and 99 out of scope
    ev = drain(p)
    assert p.books[iid].bids == {102: 1, 101: 1}
    assert consumer_replay(ev, iid)[1] == {102: 1, 101: 1}
    assert ev[-1].last and sum(e.last for e in ev) == 2


snap_levels = st.dictionaries(st.integers(1, 50), st.integers(1, 9), max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(snap_levels, snap_levels), min_size=1, max_size=4))
def test_snapshots_are_diffs_a_consumer_can_follow(snaps):
    p, iid = make()
    events = []
    for bids, asks in snaps:
        p.apply_snapshot(iid, sorted(bids.items(), reverse=True), sorted(asks.items()), T0)
        ev = drain(p)
        assert ev[0] == BookState(iid, Status.SYNCING, "snapshot")  # always re-asserted
        levels = [e for e in ev if type(e) is Level]
        assert [e.last for e in levels] == [False] * (len(levels) - 1) + [True] * bool(levels)
        events += ev
        assert consumer_replay(events, iid) == {1: bids, -1: asks}
        assert p.books[iid].bids == bids and p.books[iid].asks == asks


def test_crossed_at_message_boundary_is_counted_and_resynced():
    p, iid = make()
    p.set_status(iid, Status.SYNCED, "test")
    drain(p)
    p.on_frame("1 100 1;-1 99 1", T0)
    ev = drain(p)
    assert p.stats[iid].crossed == 1 and p.stats[iid].resyncs == 1
    assert [e.status for e in ev if type(e) is BookState] == [Status.CROSSED, Status.RESYNCING]
    assert any(type(e) is Reconnect for e in ev)  # the default resync


def test_crossing_inside_a_message_is_not_flagged():
    p, iid = make()
    p.on_frame("-1 99 1", T0)
    p.on_frame("1 100 1;-1 99 0", T0)  # crosses after the first level, not at the boundary
    assert p.stats[iid].crossed == 0


def test_malformed_frames_are_counted_logged_and_never_raise(caplog):
    p, iid = make()
    p.set_status(iid, Status.SYNCED, "test")
    with caplog.at_level(logging.WARNING, logger="mantra.venues.base"):
        p.on_frame("1 100 x" + "y" * 500, T0)
        p.on_frame(b"boom", T0)
        p.on_frame("boom", T0)
    assert p.malformed == 3 and p.frames == 3
    assert p.stats[iid].malformed == 3 and p.status[iid] == Status.RESYNCING
    text = caplog.text
    assert "malformed frame" in text and "'1 100 xyyy" in text and "..." in text  # a short excerpt
    assert "RuntimeError" in text
    p.on_frame("1 100 1", T0)  # keeps going
    assert p.books[iid].bids == {100: 1}


def test_stale_watchdog_reports_once_per_silence():
    p, iid = make()
    p.on_connect(T0)
    p.on_frame("1 100 1", T0)
    p.on_timer(T0 + 1 * SEC)  # sees the frame
    drain(p)
    p.on_timer(T0 + 6 * SEC)
    assert drain(p) == []  # 5 s silent: not yet
    p.on_timer(T0 + 7 * SEC)
    ev = drain(p)
    assert BookState(iid, Status.STALE, "no data for 6.0 s") in ev and type(ev[-1]) is Reconnect
    assert p.stats[iid].stale == 1
    p.on_timer(T0 + 8 * SEC)
    assert drain(p) == []  # already reported
    p.on_connect(T0 + 9 * SEC)
    p.on_timer(T0 + 20 * SEC)
    assert any(type(e) is Reconnect for e in drain(p))  # a new connection that stays silent


def test_watchdog_off_when_disconnected():
    p, iid = make()
    p.on_timer(T0 + 100 * SEC)
    assert drain(p) == []


def test_the_book_refuses_what_an_int64_field_cannot_carry():
    import pytest

    from mantra.book import L2Book

    b = L2Book()
    b.apply(1, 100, 5)
    for side, price, size in [(1, 2**63, 1), (1, 0, 1), (-1, -5, 1), (1, 100, -1), (-1, 2**64, 0)]:
        with pytest.raises(ValueError):
            b.apply(side, price, size)
    assert b.bids == {100: 5} and b.asks == {}  # nothing changed
    b.apply(1, 100, 0)  # a held level is deleted as before, a missing valid one is a no-op
    b.apply(1, 7, 0)
    assert len(b) == 0


def test_a_bad_level_or_time_emits_nothing_and_resyncs_the_book():
    p, iid = make()
    p.set_status(iid, Status.SYNCED, "test")
    p.on_frame("1 100 1;1 -5 1", T0)
    assert p.malformed == 1 and p.status[iid] == Status.RESYNCING
    assert not [e for e in drain(p) if type(e) is Level]


def test_the_probe_comes_before_the_stale_verdict_and_the_grace_before_the_first_frame():
    p, iid = make()
    p.stale_after_s, p.probe_after_s = 5.0, 2.0
    probes = []
    p.probe = probes.append
    p.on_connect(T0)
    p.on_timer(T0 + 9 * SEC)  # nothing yet on this connection: a slow subscription, not a stall
    assert p.status[iid] != Status.STALE and probes == [T0 + 9 * SEC]
    p.on_timer(T0 + 11 * SEC)
    assert p.status[iid] == Status.STALE
    p.on_connect(T0 + 12 * SEC)
    p.on_frame("1 100 1", T0 + 12 * SEC)
    for s in range(13, 18):
        p.on_timer(T0 + s * SEC)
    assert probes[1:] == [T0 + 15 * SEC, T0 + 17 * SEC] and p.status[iid] != Status.STALE
    p.on_timer(T0 + 19 * SEC)
    assert p.status[iid] == Status.STALE
