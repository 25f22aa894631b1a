"""Bitstamp protocol: documented messages, the recorded capture, the periodic audit, faults, metadata."""

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures import CAPTURES, VECTORS as VECTORS_PATH
from mantra.instruments import InstrumentRegistry
from mantra.venues.bitstamp.instruments import parse_instruments
from mantra.venues.bitstamp.protocol import BitstampProtocol
from mantra.venues.events import Fetch, Level, Reconnect, Send, Status, Trade
from venuekit import as_decimal, drain, sends, statuses


VECTORS = json.loads(VECTORS_PATH.read_text())["bitstamp"]["messages"]
T0 = 1_700_000_000_000_000_000
SEC = 10**9
URL = "https://www.bitstamp.net/api/v2/order_book/btcusd/"


def D(x):
    return Decimal(x)


def diff(micro, bids=(), asks=(), pair="btcusd"):
    data = {"timestamp": str(micro // 10**6), "microtimestamp": str(micro), "bids": list(bids), "asks": list(asks)}
    return json.dumps({"data": data, "event": "data", "channel": f"diff_order_book_{pair}"})


def rest(micro, bids=(), asks=()):
    return json.dumps({"timestamp": str(micro // 10**6), "microtimestamp": str(micro), "bids": list(bids), "asks": list(asks)}).encode()


def ack(pair="btcusd"):
    return json.dumps({"event": "bts:subscription_succeeded", "channel": f"diff_order_book_{pair}", "data": {}})


def make(**kw):
    reg = InstrumentRegistry()
    p = BitstampProtocol(reg, ["btcusd"], **kw)
    return p, reg.get("bitstamp", "btcusd").id


def connected(**kw):
    p, iid = make(**kw)
    p.on_connect(T0)
    p.on_frame(ack(), T0)
    return p, iid


# -- documented messages ---------------------------------------------------------------------
def test_subscribes_to_both_channels_then_fetches_after_the_ack():
    p, iid = make()
    p.on_connect(T0)
    sends = [json.loads(e.text) for e in drain(p) if type(e) is Send]
    assert sends == [VECTORS["subscribe_request"]["message"],
                     {"event": "bts:subscribe", "data": {"channel": "live_trades_btcusd"}}]
    p.on_frame(json.dumps(VECTORS["subscription_succeeded"]["message"]), T0)
    assert drain(p) == [Fetch(URL)]


def test_documented_snapshot_then_documented_diff():
    p, iid = connected()
    p.on_rest(URL, json.dumps(VECTORS["rest_order_book_snapshot"]["message"]).encode(), T0)
    assert p.status[iid] == Status.SYNCED
    drain(p)
    p.on_frame(json.dumps(VECTORS["diff_order_book"]["message"]), T0)
    # Worked by hand from the two documented messages: sizes are absolute, "0.00000000" deletes.
    assert as_decimal(p, iid) == {
        "b": {D("7935.33"): D("3.1468")},
        "a": {D("7945.54"): D("0.1"), D("7945.64"): D("0.06"), D("7946.48"): D("4"), D("7947.75"): D("3.147")},
    }
    levels = [e for e in drain(p) if type(e) is Level]
    assert [e.last for e in levels] == [False] * 9 + [True]
    assert levels[-1].exch_ts == 1560182488522670 * 1000


def test_diffs_not_newer_than_the_snapshot_are_dropped():
    p, iid = connected()
    p.on_frame(diff(100, [["10.00", "5"]]), T0)  # buffered, older than the snapshot
    p.on_frame(diff(300, [["11.00", "1"]]), T0)  # buffered, newer
    p.on_rest(URL, rest(200, [["9.00", "1"]], [["12.00", "1"]]), T0)
    p.on_frame(diff(250, [["9.50", "1"]]), T0)  # older than the state held: dropped
    assert as_decimal(p, iid)["b"] == {D("9"): D("1"), D("11"): D("1")}


def test_documented_trade_gives_taker_side():
    p, iid = make()
    p.on_frame(json.dumps(VECTORS["live_trade"]["message"]), T0)
    inst = p.registry[iid]
    assert drain(p) == [Trade(iid, 1, inst.price("38416"), inst.size("0.00280000"), 212337562, 1643643584587000 * 1000)]


def test_request_reconnect_and_control_events():
    p, iid = make()
    p.on_frame(json.dumps(VECTORS["request_reconnect"]["message"]), T0)
    p.on_frame('{"event":"bts:request_reconnect","channel":"","data":{}}', T0)
    for key in ("heartbeat_response", "error"):
        p.on_frame(json.dumps(VECTORS[key]["message"]), T0)
    assert [type(e) for e in drain(p)] == [Reconnect, Reconnect]
    assert p.malformed == 0


def test_malformed_frames_are_counted_and_a_bad_diff_resyncs_its_book():
    p, iid = connected()
    p.on_rest(URL, rest(200, [["9.00", "1"]], [["12.00", "1"]]), T0)
    drain(p)
    p.on_frame("{nope", T0)
    assert p.malformed == 1 and p.status[iid] == Status.SYNCED
    p.on_frame(diff(300, [["9.00", "x"]]), T0)
    assert p.malformed == 2 and p.status[iid] != Status.SYNCED
    assert Fetch(URL) in drain(p)
    p.on_rest(URL, rest(400, [["9.00", "2"]], [["12.00", "1"]]), T0)
    assert p.status[iid] == Status.SYNCED and as_decimal(p, iid)["b"] == {D("9"): D("2")}


# -- periodic audit --------------------------------------------------------------------------
def synced_audit():
    p, iid = connected(audit_s=30)
    p.on_rest(URL, rest(1000, [["9.00", "1"], ["8.00", "1"]], [["12.00", "1"]]), T0)
    drain(p)
    return p, iid


def test_audit_match_counts_ok():
    p, iid = synced_audit()
    p.on_frame(diff(1100, [["9.00", "2"]]), T0)
    p.on_timer(T0 + 29 * SEC)
    assert Fetch(URL) not in drain(p)
    p.on_timer(T0 + 30 * SEC)
    assert Fetch(URL) in drain(p)
    p.on_rest(URL, rest(1100, [["9.00", "2"], ["8.00", "1"]], [["12.00", "1"]]), T0 + 30 * SEC)
    assert (p.stats[iid].checksum_ok, p.stats[iid].checksum_failed) == (1, 0)
    assert p.status[iid] == Status.SYNCED


def test_audit_compares_at_the_same_point_when_the_snapshot_is_older():
    p, iid = synced_audit()
    p.on_timer(T0 + 30 * SEC)
    drain(p)
    p.on_frame(diff(1200, [["9.00", "3"]]), T0)  # arrives while the fetch is in flight
    p.on_rest(URL, rest(1100, [["9.00", "1"], ["8.00", "1"]], [["12.00", "1"]]), T0 + 31 * SEC)
    assert (p.stats[iid].checksum_ok, p.stats[iid].checksum_failed) == (1, 0)


def test_audit_waits_for_the_local_book_when_the_snapshot_is_newer():
    p, iid = synced_audit()
    p.on_timer(T0 + 30 * SEC)
    drain(p)
    p.on_rest(URL, rest(1300, [["9.00", "4"], ["8.00", "1"]], [["12.00", "1"]]), T0 + 30 * SEC)
    assert p.stats[iid].checksum_ok + p.stats[iid].checksum_failed == 0  # not comparable yet
    p.on_frame(diff(1300, [["9.00", "4"]]), T0)  # the diff the snapshot already contains
    p.on_frame(diff(1400, [["8.00", "2"]]), T0)  # past the snapshot: compare, then apply
    assert (p.stats[iid].checksum_ok, p.stats[iid].checksum_failed) == (1, 0)
    assert as_decimal(p, iid)["b"] == {D("9"): D("4"), D("8"): D("2")}


def test_audit_mismatch_counts_failure_and_replaces_the_book():
    p, iid = synced_audit()
    p.on_timer(T0 + 30 * SEC)
    drain(p)
    p.on_rest(URL, rest(900, [["9.00", "1"], ["7.00", "5"]], [["12.00", "1"]]), T0 + 30 * SEC)
    assert (p.stats[iid].checksum_ok, p.stats[iid].checksum_failed) == (0, 1)
    assert p.stats[iid].resyncs == 1
    ev = drain(p)
    assert Status.CHECKSUM in [e.status for e in ev if hasattr(e, "status")]
    assert p.status[iid] == Status.SYNCED
    assert as_decimal(p, iid)["b"] == {D("9"): D("1"), D("7"): D("5")}


def test_a_phantom_level_deeper_than_the_snapshot_does_not_survive_the_audit():
    p, iid = connected(audit_s=30)
    p.on_rest(URL, rest(1000, [["9.00", "1"], ["8.00", "1"], ["5.00", "1"]], [["12.00", "1"]]), T0)
    # The diff deleting 5.00 is lost; the venue's book (and its next snapshot) no longer has it.
    p.on_timer(T0 + 30 * SEC)
    drain(p)
    p.on_rest(URL, rest(1000, [["9.00", "1"], ["8.00", "1"]], [["12.00", "1"]]), T0 + 30 * SEC)
    assert as_decimal(p, iid)["b"] == {D("9"): D("1"), D("8"): D("1")}
    inst = p.registry[iid]
    assert [e for e in drain(p) if type(e) is Level] == [Level(iid, 1, inst.price("5"), 0, True, 1000 * 1000)]
    assert p.status[iid] == Status.SYNCED


def test_a_phantom_level_inside_the_snapshot_is_an_audit_failure():
    p, iid = connected(audit_s=30)
    p.on_rest(URL, rest(1000, [["9.00", "1"], ["8.50", "1"], ["8.00", "1"]], [["12.00", "1"]]), T0)
    p.on_timer(T0 + 30 * SEC)
    p.on_rest(URL, rest(1000, [["9.00", "1"], ["8.00", "1"], ["7.00", "1"]], [["12.00", "1"]]), T0 + 30 * SEC)
    assert p.stats[iid].checksum_failed == 1
    assert as_decimal(p, iid)["b"] == {D("9"): D("1"), D("8"): D("1"), D("7"): D("1")}


def test_diffs_make_the_book_unverified_until_an_audit_agrees():
    p, iid = synced_audit()
    assert p.status[iid] == Status.SYNCED  # the snapshot itself
    p.on_frame(diff(1100, [["9.00", "2"]]), T0)
    assert p.status[iid] == Status.UNVERIFIED  # a lost diff would not show
    p.on_frame(diff(1200, [["8.00", "3"]]), T0)
    assert statuses(drain(p)) == [Status.UNVERIFIED]  # once, not per diff
    p.on_timer(T0 + 30 * SEC)
    p.on_rest(URL, rest(1200, [["9.00", "2"], ["8.00", "3"]], [["12.00", "1"]]), T0 + 30 * SEC)
    assert p.status[iid] == Status.SYNCED and p.stats[iid].checksum_ok == 1
    p.on_frame(diff(1300, [["9.00", "1"]]), T0)
    assert p.status[iid] == Status.UNVERIFIED


def test_a_dropped_diff_is_never_a_synced_book_and_the_audit_replaces_it():
    p, iid = synced_audit()
    p.on_frame(diff(1100, [["9.00", "2"]]), T0)
    # diff(1200, [["9.00", "5"]]) is lost
    p.on_frame(diff(1300, asks=[["12.00", "2"]]), T0)
    assert p.status[iid] == Status.UNVERIFIED and as_decimal(p, iid)["b"][D("9")] == D("2")
    p.on_timer(T0 + 30 * SEC)
    p.on_rest(URL, rest(1300, [["9.00", "5"], ["8.00", "1"]], [["12.00", "2"]]), T0 + 30 * SEC)
    assert p.stats[iid].checksum_failed == 1 and p.status[iid] == Status.SYNCED
    assert as_decimal(p, iid) == {"b": {D("9"): D("5"), D("8"): D("1")}, "a": {D("12"): D("2")}}


@pytest.mark.parametrize("field,value", [("microtimestamp", "9" * 20), ("microtimestamp", "-5"),
                                         ("microtimestamp", "NaN"), ("bids", [["9.00", "-1"]]),
                                         ("bids", [["1e30", "1"]]), ("asks", [["-12", "1"]])])
def test_numbers_outside_int64_are_malformed_and_resync(field, value):
    p, iid = synced_audit()
    data = {"timestamp": "1", "microtimestamp": "1100", "bids": [["9.00", "2"]], "asks": [], field: value}
    p.on_frame(json.dumps({"data": data, "event": "data", "channel": "diff_order_book_btcusd"}), T0)
    ev = drain(p)
    assert p.malformed == 1 and p.status[iid] == Status.RESYNCING and Fetch(URL) in ev
    assert not [e for e in ev if type(e) is Level]  # consumers saw nothing of it
    p.on_frame(diff(1200, [["9.00", "3"]]), T0)  # and a later diff is not taken as older
    p.on_rest(URL, rest(1150, [["9.00", "2"]], [["12.00", "1"]]), T0)
    assert as_decimal(p, iid)["b"] == {D("9"): D("3")}


@pytest.mark.parametrize("trade", [{"id": 2**64}, {"type": 7}, {"microtimestamp": "9" * 19},
                                   {"price_str": "-1"}, {"id": True}, {"amount_str": 5}])
def test_bad_trades_are_counted_not_emitted(trade):
    p, iid = make()
    data = {"id": 1, "amount_str": "0.1", "price_str": "100", "type": 0, "microtimestamp": "1643643584587000", **trade}
    p.on_frame(json.dumps({"data": data, "event": "trade", "channel": "live_trades_btcusd"}), T0)
    assert p.malformed == 1 and drain(p) == []


def test_a_stall_marks_the_books_stale_after_a_probe_went_unanswered():
    p, iid = synced_audit()
    p.on_timer(T0 + SEC)
    assert drain(p) == []
    p.on_timer(T0 + 3 * SEC)
    assert sends(drain(p)) == [{"event": "bts:heartbeat"}]  # quiet: ask the venue for an answer
    p.on_frame('{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}', T0 + 3 * SEC)
    for s in range(4, 10):
        p.on_timer(T0 + s * SEC)  # sees the answer at 4 s, probes again at 6 s: unanswered
    assert p.status[iid] == Status.SYNCED and p.malformed == 0
    assert sends(drain(p)) == [{"event": "bts:heartbeat"}] * 2  # every 2 s of silence
    p.on_timer(T0 + 10 * SEC)
    ev = drain(p)
    assert p.status[iid] == Status.STALE and p.stats[iid].stale == 1
    assert any(type(e) is Reconnect and "no data for 6.0 s" in e.reason for e in ev)


def test_unanswered_audit_is_fetched_again():
    p, iid = synced_audit()
    p.on_timer(T0 + 30 * SEC)
    assert Fetch(URL) in drain(p)
    p.on_timer(T0 + 35 * SEC)
    assert Fetch(URL) not in drain(p)
    p.on_timer(T0 + 41 * SEC)
    assert Fetch(URL) in drain(p)


# -- the recorded capture -------------------------------------------------------------------
def records(name):
    out = []
    for line in (CAPTURES / name).read_text().splitlines():
        if not line:
            continue
        if line[0].isdigit():
            out.append(("recv", "", line.partition(": ")[2]))
        else:
            url, arrow, rest_ = line.split(" ", 2)
            out.append(({"<->": "open", "<-": "sent", "->": "http"}[arrow], url, rest_.partition(": ")[2]))
    return out


@pytest.fixture(scope="module")
def capture():
    ws = records("BITSTAMP.ws.1.0")
    snaps = {url.rstrip("/").rsplit("/", 1)[1]: json.loads(body) for _, url, body in records("BITSTAMP.http.0.0")}
    return ws, snaps


def plain_replay(ws, snaps):
    """Snapshot, then every diff newer than the state held, with plain dicts of Decimals."""
    books, at = {}, {}
    for pair, s in snaps.items():
        books[pair] = {"b": {D(p): D(q) for p, q in s["bids"]}, "a": {D(p): D(q) for p, q in s["asks"]}}
        at[pair] = int(s["microtimestamp"])
    for kind, _, payload in ws:
        if kind != "recv":
            continue
        m = json.loads(payload)
        if m["event"] != "data":
            continue
        pair = m["channel"][len("diff_order_book_"):]
        micro = int(m["data"]["microtimestamp"])
        if micro <= at[pair]:
            continue
        for side, key in (("b", "bids"), ("a", "asks")):
            for p, q in m["data"][key]:
                if D(q):
                    books[pair][side][D(p)] = D(q)
                else:
                    books[pair][side].pop(D(p), None)
        at[pair] = micro
    return books


def run(ws, snaps, drop=None):
    reg = InstrumentRegistry()
    pairs = list(snaps)
    p = BitstampProtocol(reg, pairs)
    crossed_at_boundary = 0
    n = 0
    for kind, _, payload in ws:
        if kind == "open":
            p.on_connect(T0)
        elif kind == "recv":
            n += 1
            if n == drop:
                continue
            p.on_frame(payload, T0 + n)
            crossed_at_boundary += sum(b.crossed() for b in p.books.values())
        for e in drain(p):
            if type(e) is Fetch:
                pair = e.url.rstrip("/").rsplit("/", 1)[1]
                p.on_rest(e.url, json.dumps(snaps[pair]).encode(), T0 + n)
    return p, reg, crossed_at_boundary


def test_capture_books_match_a_plain_replay_and_never_cross(capture):
    ws, snaps = capture
    p, reg, crossed = run(ws, snaps)
    assert crossed == 0
    assert p.malformed == 0
    expected = plain_replay(ws, snaps)
    for pair, book in expected.items():
        iid = reg.get("bitstamp", pair).id
        assert p.status[iid] in (Status.SYNCED, Status.UNVERIFIED)  # UNVERIFIED once diffs came: no audit yet
        assert p.stats[iid].crossed == 0
        assert as_decimal(p, iid) == book


def test_capture_trades_are_emitted_with_exact_prices(capture):
    ws, snaps = capture
    reg = InstrumentRegistry()
    p = BitstampProtocol(reg, list(snaps))
    trades = []
    for kind, _, payload in ws:
        if kind == "recv":
            p.on_frame(payload, T0)
            trades += [e for e in drain(p) if type(e) is Trade]
            p.events.clear()
    expected = [json.loads(x)["data"] for k, _, x in ws if k == "recv" and '"event":"trade"' in x]
    assert len(trades) == len(expected) > 0
    for t, e in zip(trades, expected):
        inst = reg[t.instrument]
        assert (t.trade_id, t.side) == (e["id"], 1 if e["type"] == 0 else -1)
        assert Decimal(t.price).scaleb(-inst.price_scale) == D(e["price_str"])
        assert Decimal(t.size).scaleb(-inst.size_scale) == D(e["amount_str"])


# -- property test --------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 5), st.lists(st.tuples(st.integers(1, 999), st.integers(0, 50)), max_size=4)),
                max_size=20))
def test_out_of_order_diffs_are_dropped_exactly(diffs):
    """Random microtimestamps (some going backwards): the book equals applying only newer diffs."""
    p, iid = connected(audit_s=0)
    p.on_rest(URL, rest(1000, [["0.50", "1"]], [["100.00", "1"]]), T0)
    model, at, micro = {D("0.5"): D("1")}, 1000, 1000
    for step, levels in diffs:
        micro += step
        p.on_frame(diff(micro, [[f"{pr / 100:.2f}", str(q)] for pr, q in levels]), T0)
        if micro > at:
            for pr, q in levels:
                if q:
                    model[D(f"{pr / 100:.2f}")] = D(q)
                else:
                    model.pop(D(f"{pr / 100:.2f}"), None)
            at = micro
    assert as_decimal(p, iid)["b"] == model


# -- metadata -------------------------------------------------------------------------------
def test_trading_pairs_info_and_markets_bodies():
    old = [{"name": "BTC/USD", "url_symbol": "btcusd", "base_decimals": 8, "counter_decimals": 2,
            "instant_order_counter_decimals": 2, "minimum_order": "10.0 USD", "trading": "Enabled",
            "instant_and_market_orders": "Enabled", "description": "Bitcoin / U.S. dollar"}]
    new = [{"name": "ETH/BTC", "market_symbol": "ethbtc", "base_currency": "ETH", "base_decimals": 8,
            "counter_currency": "BTC", "counter_decimals": 5, "minimum_order_value": "0.0002", "trading": "Enabled",
            "instant_order_counter_decimals": 8, "description": "Ether / Bitcoin", "market_type": "SPOT"}]
    assert parse_instruments(json.dumps(old).encode()) == [dict(
        symbol="btcusd", base="BTC", quote="USD", price_scale=2, size_scale=8, tick=1, lot=1, min_size=0,
        min_notional=1000, price_decimals=2, size_decimals=8)]
    (eth,) = parse_instruments(json.dumps(new).encode())
    assert (eth["symbol"], eth["base"], eth["quote"], eth["price_scale"], eth["min_notional"]) == ("ethbtc", "ETH", "BTC", 5, 20)
