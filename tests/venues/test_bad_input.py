"""Every venue against hostile input, from its recorded frames: one value of one frame replaced by a
number outside int64 (or negative, NaN, an exponent) or by a value of another JSON type.  The
protocol must never raise, never emit a number that does not fit its int64 message field (nor a
non-int where an int goes), count and log every frame it rejects, and never leave a SYNCED book
that differs from the one a clean replay holds at the same point.  Then the stale watchdog of every
venue, on recorded frames and a fake clock."""

from __future__ import annotations

import json
import logging
import re
from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mantra.instruments import InstrumentRegistry
from mantra.store.cryptofeed import HTTP, OPEN, RECV, SENT, read_capture
from mantra.venues.base import INT64_MAX
from mantra.venues.check import DISCOVER, TICK_NS, _json, _norm, _Replay
from mantra.venues.events import BookState, Level, Reconnect, Send, Status, Trade
from mantra.venues.registry import make_protocol

from fixtures import CAPTURES

# venue -> (recordings, how many of the WebSocket records to replay)
CASES = {
    "binance": (["BINANCE.ws.1.0", "BINANCE.http.0.0"], 400),
    "bitstamp": (["BITSTAMP.ws.1.0", "BITSTAMP.http.0.0"], 500),
    "bitfinex": (["BITFINEX.ws.11.0"], 500),
    "coinbase": (["COINBASE.ws.28.0"], 500),
    "kraken": (["KRAKEN.ws.50.0"], 500),
}
AFTER = 25  # frames replayed after the altered one
TRUSTED = (Status.SYNCED, Status.UNVERIFIED)  # both claim the book is the venue's


class Num(str):
    """A JSON number's exact text (written unquoted)."""


def dump(v) -> str:
    if type(v) is Num:
        return str(v)
    if isinstance(v, list):
        return "[" + ",".join(dump(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k) + ":" + dump(x) for k, x in v.items()) + "}"
    return json.dumps(v)


def load(text):
    return json.loads(text, parse_float=Num)


def leaves(v, path=()):
    """Every (path, value) inside a decoded frame, containers included."""
    yield path, v
    if isinstance(v, list):
        for i, x in enumerate(v):
            yield from leaves(x, path + (i,))
    elif isinstance(v, dict):
        for k, x in v.items():
            yield from leaves(x, path + (k,))


def replace(v, path, new):
    if not path:
        return new
    v = list(v) if isinstance(v, list) else dict(v)
    v[path[0]] = replace(v[path[0]], path[1:], new)
    return v


_NUMERIC = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def numeric(v) -> bool:
    return (type(v) is int) or (type(v) is Num) or (type(v) is str and _NUMERIC.fullmatch(v) is not None)


class Capture:
    """A venue's recording, cut to its first ``limit`` WebSocket records."""

    def __init__(self, venue: str):
        files, limit = CASES[venue]
        self.venue = venue
        self.bodies: dict[str, list] = {}
        self.records, opened, sent = [], [], []
        for name in files:
            path = CAPTURES / name
            if not path.exists():
                pytest.skip(f"capture {name} not available")
            for rec in read_capture(path):
                if rec.kind == HTTP:
                    body = rec.payload if isinstance(rec.payload, bytes) else rec.payload.encode()
                    self.bodies.setdefault(_norm(rec.url), []).append((rec.ts, body))
                elif rec.kind == OPEN:
                    opened.append(rec.url)
                    self.records.append(rec)
                elif rec.kind == SENT:
                    sent.append(_json(rec.payload))
                elif rec.kind == RECV:
                    self.records.append(rec)
        self.records = self.records[:limit]
        self.symbols, self.opts = DISCOVER[venue](opened, sent, list(self.bodies))
        self.frames = [i for i, r in enumerate(self.records) if r.kind == RECV and r.payload[:1] in ("{", "[")]


_captures: dict[str, Capture] = {}


def capture(venue: str) -> Capture:
    if venue not in _captures:
        _captures[venue] = Capture(venue)
    return _captures[venue]


class Run:
    """One protocol replaying a capture record by record, as ``mantra venues check`` does."""

    def __init__(self, cap: Capture):
        self.p = make_protocol(cap.venue, InstrumentRegistry(), list(dict.fromkeys(cap.symbols)), **cap.opts)
        self.batch: list = []
        self.replay = _Replay(self.p, {u: deque(b) for u, b in cap.bodies.items()}, lambda ev, ts: self.batch.extend(ev))
        self.replay.tick = None

    def step(self, rec, payload=None) -> list:
        """Feed one record (``payload`` in place of a frame's own); the events it caused."""
        self.batch.clear()
        r, p = self.replay, self.p
        r.until(rec.ts)
        if rec.kind == OPEN:
            p.on_connect(rec.ts)
            if r.tick is None:
                r.tick = rec.ts + TICK_NS
        else:
            p.on_frame(rec.payload if payload is None else payload, rec.ts)
        r.drain(rec.ts)
        return list(self.batch)

    def books(self) -> dict:
        """symbol -> (status, bids, asks)"""
        p = self.p
        return {p.registry[i].symbol: (p.status[i], dict(b.bids), dict(b.asks)) for i, b in p.books.items()}


def well_formed(events) -> None:
    """Every number an event carries fits the int64 message field it ends up in."""
    for e in events:
        t = type(e)
        if t is Level:
            assert all(type(x) is int for x in (e.instrument, e.side, e.price, e.size, e.exch_ts)), e
            assert e.side in (1, -1) and type(e.last) is bool, e
            assert 0 < e.price <= INT64_MAX and 0 <= e.size <= INT64_MAX and 0 <= e.exch_ts <= INT64_MAX, e
        elif t is Trade:
            assert all(type(x) is int for x in (e.instrument, e.side, e.price, e.size, e.trade_id, e.exch_ts)), e
            assert e.side in (1, 0, -1), e
            assert 0 < e.price <= INT64_MAX and 0 < e.size <= INT64_MAX, e
            assert 0 <= e.trade_id <= INT64_MAX and 0 <= e.exch_ts <= INT64_MAX, e
        elif t is BookState:
            assert type(e.reason) is str and Status(e.status) is not None, e


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.malformed = 0

    def emit(self, record):
        if "malformed frame" in record.msg:
            self.malformed += 1


def run_altered(venue, data, values, only_numbers: bool):
    cap = capture(venue)
    at = data.draw(st.integers(0, len(cap.frames) - 1), label="frame")
    clean, bad = Run(cap), Run(cap)
    idx = cap.frames[at]
    for rec in cap.records[:idx]:
        clean.step(rec)
        bad.step(rec)
    rec = cap.records[idx]
    msg = load(rec.payload)
    spots = [(p, v) for p, v in leaves(msg) if p and (numeric(v) if only_numbers else True)]
    if not spots:
        return
    path, old = data.draw(st.sampled_from(spots), label="value")
    new = data.draw(values(old), label="new")
    text = dump(replace(msg, path, new))
    handler = Warnings()
    logger = logging.getLogger("mantra.venues.base")
    logger.addHandler(handler)
    try:
        before = bad.p.malformed
        ok_events = clean.step(rec)
        bad_events = bad.step(rec, text)
        well_formed(bad_events)
        counted = bad.p.malformed - before
        # Counted and logged, once: or else taken like the clean frame (same kinds of events).
        assert counted == handler.malformed
        if counted == 0 and not (numeric(old) and numeric(new)):  # a number's text taken as the number
            assert [type(e) for e in bad_events if type(e) in (Level, Trade)] == \
                   [type(e) for e in ok_events if type(e) in (Level, Trade)], (path, new)
        for rec in cap.records[idx + 1 : idx + 1 + AFTER]:
            clean.step(rec)
            well_formed(bad.step(rec))
            if only_numbers:
                mine, truth = bad.books(), clean.books()
                for sym, (status, bids, asks) in mine.items():
                    if status in TRUSTED:
                        assert truth.get(sym, (None, {}, {}))[1:] == (bids, asks), (sym, path, new)
    finally:
        logger.removeHandler(handler)


BIG = [2**63, 2**64, 10**19, 10**30, -1, -(2**63) - 1, -(10**25)]
BAD_TEXT = ["9" * 25, "-1", "-0.5", "-1e-8", "NaN", "nan", "Infinity", "-Infinity", "1e30", "1E+400",
            "1e999999999", "9.9e18", "18446744073709551616"]


def bad_numbers(venue):
    """A number that cannot be right where ``old`` was: too big for int64, negative (except where
    the sign means the side: Bitfinex amounts), not a number."""
    def small_negative(v):
        return venue == "bitfinex" and str(v).startswith("-") and len(str(v)) < 8

    def values(old):
        if type(old) is int:
            pool = BIG + [Num("1e400"), Num("-5.5")]
        elif type(old) is Num:
            pool = [Num(t) for t in ("1e400", "-1e400", "1E+30", "99999999999999999999.5")] + BIG
        else:
            pool = BAD_TEXT
        return st.sampled_from([v for v in pool if not small_negative(v)])
    return values


# (no list here has the shape of a venue's level or entry: that would be a message, not a bad value)
OTHERS = [0, 7, -3, 2**70, True, False, None, "", "x", "1.5", "0", Num("2.5"), [], [1, 2], ["x", None, True],
          {}, {"a": 1}, "9" * 60]


def kind(v) -> str:
    if v is None or type(v) is bool:
        return repr(v)
    if type(v) in (int, Num):
        return "number"
    return type(v).__name__


def other_types(old):
    """A value of another JSON type than ``old``."""
    return st.sampled_from([v for v in OTHERS if kind(v) != kind(old)])


VENUES = list(CASES)


@pytest.mark.parametrize("venue", VENUES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_numbers_outside_int64_are_malformed_never_a_wrong_synced_book(venue, data):
    run_altered(venue, data, bad_numbers(venue), only_numbers=True)


@pytest.mark.parametrize("venue", VENUES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_values_of_another_type_are_counted_never_raise(venue, data):
    run_altered(venue, data, other_types, only_numbers=False)


# -- the stale watchdog, per venue ---------------------------------------------------------------
def synced_run(venue: str) -> Run:
    cap = capture(venue)
    run = Run(cap)
    for rec in cap.records:
        run.step(rec)
    assert any(s in TRUSTED for s in run.p.status.values())
    return run


@pytest.mark.parametrize("venue", VENUES)
def test_a_stalled_feed_is_stale_and_reconnects(venue):
    run = synced_run(venue)
    p = run.p
    limit = type(p).stale_after_s
    assert limit is not None and limit <= 5.0  # an 8 s stall must not go unnoticed
    last = p.last_ts
    p.on_timer(last + 1)  # the watchdog sees the last frames
    p.events.clear()
    sent = []
    t = last
    while t < last + (limit - 1) * 1e9:
        t += 10**9
        p.on_timer(t)
        sent += [e for e in p.events if type(e) is Send]
        assert not any(type(e) in (Reconnect, BookState) for e in p.events), p.events
        p.events.clear()
    if p.probe_after_s is not None:  # a quiet feed was asked for an answer before it is declared stale
        assert sent
    p.on_timer(last + int((limit + 1) * 1e9))
    ev = list(p.events)
    assert any(type(e) is Reconnect and "no data" in e.reason for e in ev)
    assert all(p.status[i] == Status.STALE and p.stats[i].stale == 1 for i in p.books)


@pytest.mark.parametrize("venue", ["binance", "bitstamp", "bitfinex"])
def test_the_probes_answer_keeps_a_quiet_feed_alive(venue):
    run = synced_run(venue)
    p = run.p
    answer = {"binance": '{"result":[],"id":1}',
              "bitstamp": '{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}',
              "bitfinex": '{"event":"pong","ts":1,"cid":1}'}[venue]
    before = dict(p.status)
    t = p.last_ts
    for _ in range(30):
        t += 10**9
        p.on_timer(t)
        if any(type(e) is Send for e in p.events):
            p.on_frame(answer, t + 1000)  # the venue answers the probe
        assert not any(type(e) is Reconnect for e in p.events)
        p.events.clear()
    assert p.status == before and p.malformed == 0
