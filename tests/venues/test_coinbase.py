"""Coinbase protocol: Advanced Trade and Exchange formats, the recorded capture, faults, metadata."""

import calendar
import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures import CAPTURES, VECTORS as VECTORS_PATH
from mantra.instruments import InstrumentRegistry
from mantra.venues.coinbase.instruments import parse_instruments
from mantra.venues.coinbase.protocol import CoinbaseProtocol, rfc3339_ns
from mantra.venues.events import Level, Send, Status, Trade
from venuekit import as_decimal, drain


VECTORS = json.loads(VECTORS_PATH.read_text())["coinbase"]["messages"]
T0 = 1_700_000_000_000_000_000
D = Decimal


def make(api="advanced", symbols=("BTC-USD",)):
    reg = InstrumentRegistry()
    p = CoinbaseProtocol(reg, list(symbols), api=api)
    p.on_connect(T0)
    return p, reg.get("coinbase", symbols[0]).id


def l2(seq, kind, updates, product="BTC-USD"):
    ups = [{"side": s, "event_time": "2023-02-09T20:32:51.1Z", "price_level": p, "new_quantity": q} for s, p, q in updates]
    return json.dumps({"channel": "l2_data", "timestamp": "2023-02-09T20:32:51.114964855Z", "sequence_num": seq,
                       "events": [{"type": kind, "product_id": product, "updates": ups}]})


# -- Advanced Trade -------------------------------------------------------------------------
def test_advanced_subscribes_one_channel_per_message():
    reg = InstrumentRegistry()
    p = CoinbaseProtocol(reg, ["ETH-USD", "BTC-USD"])
    p.on_connect(T0)
    sends = [json.loads(e.text) for e in drain(p) if type(e) is Send]
    doc = dict(VECTORS["at_subscribe_level2"]["message"])
    del doc["jwt"]  # public channels work unauthenticated
    assert sends[0] == doc
    assert {"type": "subscribe", "channel": "heartbeats"} in sends
    assert {"type": "subscribe", "product_ids": ["ETH-USD", "BTC-USD"], "channel": "market_trades"} in sends


def test_documented_snapshot_and_update():
    p, iid = make()
    p.on_frame(json.dumps(VECTORS["at_level2_snapshot"]["message"]), T0)
    assert p.status[iid] == Status.SYNCED
    assert as_decimal(p, iid) == {"b": {D("21921.73"): D("0.06317902"), D("21921.3"): D("0.02")}, "a": {}}
    drain(p)
    p.on_frame(json.dumps(VECTORS["at_level2_update"]["message"]), T0)
    # "0" removes the bid; the ask side is spelled "offer".
    assert as_decimal(p, iid) == {"b": {D("21921.3"): D("0.02")}, "a": {D("21925.01"): D("0.5")}}
    levels = [e for e in drain(p) if type(e) is Level]
    assert [(e.side, e.last) for e in levels] == [(1, False), (-1, True)]
    assert levels[0].exch_ts == rfc3339_ns("2023-02-09T20:32:51.114964855Z")


def test_sequence_gap_marks_books_and_resubscribes_level2():
    p, iid = make()
    p.on_frame(l2(0, "snapshot", [("bid", "10.00", "1"), ("offer", "11.00", "1")]), T0)
    p.on_frame(l2(1, "update", [("bid", "10.00", "2")]), T0)
    drain(p)
    p.on_frame(l2(3, "update", [("bid", "10.50", "2")]), T0)  # 2 was lost
    ev = drain(p)
    assert p.stats[iid].gaps == 1 and p.stats[iid].resyncs == 1
    assert Status.GAP in [e.status for e in ev if hasattr(e, "status")]
    sends = [json.loads(e.text) for e in ev if type(e) is Send]
    assert sends == [{"type": "unsubscribe", "channel": "level2", "product_ids": ["BTC-USD"]},
                     {"type": "subscribe", "channel": "level2", "product_ids": ["BTC-USD"]}]
    # Updates before the new snapshot are not applied; the snapshot resyncs the book.
    p.on_frame(l2(4, "update", [("bid", "10.60", "2")]), T0)
    assert p.status[iid] != Status.SYNCED
    p.on_frame(l2(5, "snapshot", [("bid", "10.00", "7"), ("offer", "11.00", "1")]), T0)
    assert p.status[iid] == Status.SYNCED
    assert as_decimal(p, iid)["b"] == {D("10"): D("7")}


def test_late_or_repeated_sequence_is_ignored():
    p, iid = make()
    p.on_frame(l2(5, "snapshot", [("bid", "10.00", "1")]), T0)
    p.on_frame(l2(6, "update", [("bid", "10.00", "2")]), T0)
    p.on_frame(l2(6, "update", [("bid", "10.00", "9")]), T0)
    p.on_frame(l2(4, "update", [("bid", "10.00", "9")]), T0)
    assert as_decimal(p, iid)["b"] == {D("10"): D("2")}
    assert p.stats[iid].gaps == 0


def test_heartbeats_in_both_counter_forms_and_subscriptions_are_quiet():
    p, iid = make()
    hb = VECTORS["at_heartbeats"]["message"]
    p.on_frame(json.dumps(hb), T0)
    hb2 = dict(hb, sequence_num=1, events=[{"current_time": "x", "heartbeat_counter": 3050}])
    p.on_frame(json.dumps(hb2), T0)
    p.on_frame(json.dumps(dict(VECTORS["at_subscriptions_ack"]["message"], sequence_num=2)), T0)
    p.on_frame(json.dumps(VECTORS["at_error"]["message"]), T0)
    assert p.malformed == 0 and p.stats[iid].gaps == 0
    assert [e for e in drain(p) if type(e) in (Level, Trade)] == []


def test_market_trades_updates_give_the_aggressor_side():
    p, iid = make(symbols=("ETH-USD",))
    snap = VECTORS["at_market_trades"]["message"]
    p.on_frame(json.dumps(snap), T0)
    assert [e for e in drain(p) if type(e) is Trade] == []  # trades from before the subscription
    upd = json.loads(json.dumps(snap))
    upd["sequence_num"] = 1
    upd["events"][0]["type"] = "update"
    p.on_frame(json.dumps(upd), T0)
    inst = p.registry[iid]
    exch = calendar.timegm((2019, 8, 14, 20, 42, 27)) * 10**9 + 265_000_000
    # side is the maker's: a maker BUY means the taker sold.
    assert drain(p) == [Trade(iid, -1, inst.price("1260.01"), inst.size("0.3"), 0, exch)]


def test_malformed_advanced_frames_are_counted_and_resync_their_book():
    p, iid = make()
    p.on_frame(l2(0, "snapshot", [("bid", "10.00", "1")]), T0)
    p.on_frame("not json", T0)
    assert p.malformed == 1 and p.status[iid] == Status.SYNCED  # nothing says a book missed data
    drain(p)
    p.on_frame(l2(1, "update", [("middle", "10.00", "1")]), T0)
    assert p.malformed == 2 and p.status[iid] != Status.SYNCED
    assert {"type": "subscribe", "channel": "level2", "product_ids": ["BTC-USD"]} in [
        json.loads(e.text) for e in drain(p) if type(e) is Send]
    p.on_frame(l2(2, "snapshot", [("bid", "10.00", "3")]), T0)  # the feed goes on
    assert p.status[iid] == Status.SYNCED and as_decimal(p, iid)["b"] == {D("10"): D("3")}


def test_unreadable_l2_message_resyncs_every_book():
    p, iid = make(symbols=("BTC-USD", "ETH-USD"))
    p.on_frame(l2(0, "snapshot", [("bid", "10.00", "1")]), T0)
    p.on_frame(l2(1, "snapshot", [("bid", "20.00", "1")], product="ETH-USD"), T0)
    drain(p)
    p.on_frame('{"channel":"l2_data","timestamp":"2023-02-09T20:32:51Z","sequence_num":2,"events":{"x":1}}', T0)
    assert p.malformed == 1 and all(p.status[i] != Status.SYNCED for i in p.books)
    sends = [json.loads(e.text) for e in drain(p) if type(e) is Send]
    assert sends == [{"type": "unsubscribe", "channel": "level2", "product_ids": ["BTC-USD", "ETH-USD"]},
                     {"type": "subscribe", "channel": "level2", "product_ids": ["BTC-USD", "ETH-USD"]}]


# -- Exchange format ------------------------------------------------------------------------
def test_exchange_documented_snapshot_and_l2update():
    p, iid = make("exchange")
    sends = [json.loads(e.text) for e in drain(p) if type(e) is Send]
    assert sends == [{"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["level2_batch", "heartbeat", "matches"]}]
    p.on_frame(json.dumps(VECTORS["ex_level2_snapshot"]["message"]), T0)
    p.on_frame(json.dumps(VECTORS["ex_l2update"]["message"]), T0)
    assert as_decimal(p, iid) == {"b": {D("10101.10"): D("0.45054140"), D("10101.80"): D("0.162567")},
                               "a": {D("10102.55"): D("0.57753524")}}
    assert p.status[iid] == Status.UNVERIFIED  # an update applied, and level2 has no sequence numbers


def test_exchange_matches_dedup_by_sequence_and_last_match_is_history():
    p, iid = make("exchange")
    m = {"type": "match", "trade_id": 10, "sequence": 50, "maker_order_id": "a", "taker_order_id": "b",
         "time": "2021-04-17T16:43:30.244075Z", "product_id": "BTC-USD", "size": "5.23512", "price": "400.23", "side": "sell"}
    p.on_frame(json.dumps(dict(m, type="last_match", sequence=40, trade_id=9)), T0)
    p.on_frame(json.dumps(m), T0)
    p.on_frame(json.dumps(m), T0)  # repeated
    inst = p.registry[iid]
    trades = [e for e in drain(p) if type(e) is Trade]
    # maker sold: the taker bought (+1)
    assert trades == [Trade(iid, 1, inst.price("400.23"), inst.size("5.23512"), 10, rfc3339_ns(m["time"]))]


# -- the recorded capture (Exchange format) -------------------------------------------------
@pytest.fixture(scope="module")
def capture():
    lines = (CAPTURES / "COINBASE.ws.28.0").read_text().splitlines()
    return [line.partition(": ")[2] for line in lines if line[:1].isdigit()]


def plain_replay(frames):
    books = {}
    for f in frames:
        m = json.loads(f)
        if m["type"] == "snapshot":
            books[m["product_id"]] = {"b": {D(p): D(q) for p, q in m["bids"]}, "a": {D(p): D(q) for p, q in m["asks"]}}
        elif m["type"] == "l2update" and m["product_id"] in books:
            for side, p, q in m["changes"]:
                s = books[m["product_id"]]["b" if side == "buy" else "a"]
                if D(q):
                    s[D(p)] = D(q)
                else:
                    s.pop(D(p), None)
    return books


def products(frames):
    return sorted({json.loads(f)["product_id"] for f in frames if '"snapshot"' in f})


def test_capture_books_match_a_plain_replay_and_never_cross(capture):
    reg = InstrumentRegistry()
    p = CoinbaseProtocol(reg, products(capture), api="exchange")
    p.on_connect(T0)
    crossed = 0
    for f in capture:
        p.on_frame(f, T0)
        crossed += sum(b.crossed() for b in p.books.values())
        p.events.clear()
    assert crossed == 0 and p.malformed == 0
    expected = plain_replay(capture)
    assert len(expected) == 10
    for product, book in expected.items():
        iid = reg.get("coinbase", product).id
        assert p.status[iid] == Status.UNVERIFIED and p.stats[iid].crossed == 0  # updates since the snapshot
        assert as_decimal(p, iid) == book


def test_capture_trades_match_the_recorded_matches(capture):
    reg = InstrumentRegistry()
    p = CoinbaseProtocol(reg, products(capture), api="exchange")
    trades = []
    for f in capture:
        p.on_frame(f, T0)
        trades += [e for e in p.events if type(e) is Trade]
        p.events.clear()
    matches = [json.loads(f) for f in capture if f.startswith('{"type":"match"')]
    assert [t.trade_id for t in trades] == [m["trade_id"] for m in matches]
    assert [t.side for t in trades] == [1 if m["side"] == "sell" else -1 for m in matches]


def test_capture_with_malformed_frames_keeps_going(capture):
    reg = InstrumentRegistry()
    p = CoinbaseProtocol(reg, products(capture), api="exchange")
    frames = list(capture)
    frames.insert(500, '{"type":"l2update","product_id":"SKL-USD","changes":[["buy","x","1"]]')  # truncated
    frames.insert(800, '{"type":"l2update","product_id":"SKL-USD","changes":[["up","1.0","1"]],"time":"2021-04-17T16:43:37Z"}')
    for f in frames:
        p.on_frame(f, T0)
        p.events.clear()
    assert p.malformed == 2
    iid = reg.get("coinbase", "SKL-USD").id
    # A bad update for a book leaves it untrusted until a fresh snapshot; the others are untouched.
    assert p.status[iid] != Status.SYNCED and p.stats[iid].resyncs == 1
    assert all(p.status[i] == Status.UNVERIFIED for i in p.books if i != iid)


# -- parsers --------------------------------------------------------------------------------
@settings(max_examples=200)
@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)), st.integers(0, 999), st.integers(0, 9))
def test_rfc3339_matches_datetime(dt, extra_ns, digits):
    frac = f"{dt.microsecond:06d}{extra_ns:03d}"[:digits]
    text = dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if digits else "") + "Z"
    whole = int(dt.replace(tzinfo=timezone.utc, microsecond=0).timestamp())
    assert rfc3339_ns(text) == whole * 10**9 + (int(frac.ljust(9, "0")) if digits else 0)


def test_products_in_both_api_shapes():
    at = {"products": [{"product_id": "BTC-USD", "price": "1", "base_increment": "0.00000001", "quote_increment": "0.01",
                        "price_increment": "0.01", "base_min_size": "0.00000001", "quote_min_size": "1",
                        "base_currency_id": "BTC", "quote_currency_id": "USD", "status": "online"}], "num_products": 1}
    ex = [{"id": "ETH-BTC", "base_currency": "ETH", "quote_currency": "BTC", "quote_increment": "0.00001",
           "base_increment": "0.00000001", "min_market_funds": "0.0001", "status": "online"}]
    assert parse_instruments(json.dumps(at).encode()) == [dict(
        symbol="BTC-USD", base="BTC", quote="USD", price_scale=2, size_scale=8, tick=1, lot=1, min_size=1,
        min_notional=100, price_decimals=2, size_decimals=8)]
    (e,) = parse_instruments(json.dumps(ex).encode())
    assert (e["symbol"], e["price_scale"], e["tick"], e["min_notional"]) == ("ETH-BTC", 5, 1, 10)


@settings(max_examples=100)
@given(st.integers(1, 10**6), st.integers(0, 10), st.integers(1, 10**6), st.integers(0, 10))
def test_product_increments_round_trip(q_units, q_exp, b_units, b_exp):
    quote = Decimal(q_units).scaleb(-q_exp)
    base = Decimal(b_units).scaleb(-b_exp)
    body = [{"id": "X-Y", "quote_increment": f"{quote:f}", "base_increment": f"{base:f}", "base_min_size": f"{base:f}"}]
    (spec,) = parse_instruments(json.dumps(body).encode())
    assert Decimal(spec["tick"]).scaleb(-spec["price_scale"]) == quote
    assert Decimal(spec["lot"]).scaleb(-spec["size_scale"]) == base
    assert (spec["base"], spec["quote"]) == ("X", "Y")


def test_silent_feed_is_stale_and_reconnects():
    p, iid = make()
    p.on_frame(l2(0, "snapshot", [("bid", "10.00", "1")]), T0)
    drain(p)
    p.on_timer(T0 + 10**9)
    p.on_timer(T0 + 4 * 10**9)
    assert p.status[iid] == Status.SYNCED
    p.on_timer(T0 + 7 * 10**9)  # no heartbeat for more than 5 s
    ev = drain(p)
    assert p.status[iid] == Status.STALE
    assert [type(e).__name__ for e in ev].count("Reconnect") == 1
    p.on_connect(T0 + 8 * 10**9)
    assert p.status[iid] == Status.SYNCING  # a new connection starts with new snapshots


# -- hostile input --------------------------------------------------------------------------
@pytest.mark.parametrize("seq", [2**63, 2**64, -2])
def test_a_sequence_number_outside_int64_is_malformed_not_the_new_last(seq):
    p, iid = make()
    p.on_frame(l2(0, "snapshot", [("bid", "10.00", "1")]), T0)
    p.on_frame(l2(seq, "update", [("bid", "10.00", "2")]), T0)
    assert p.malformed == 1
    p.on_frame(l2(1, "update", [("bid", "10.00", "3")]), T0)  # taken: the bad number did not hide it
    assert as_decimal(p, iid)["b"] == {D("10"): D("3")}


@pytest.mark.parametrize("update", [("bid", "-10.00", "1"), ("bid", "10.00", "-1"), ("bid", "1e30", "1"),
                                    ("offer", "10.00", "99999999999999999999")])
def test_numbers_outside_int64_are_malformed_and_resync(update):
    p, iid = make()
    p.on_frame(l2(0, "snapshot", [("bid", "10.00", "1")]), T0)
    drain(p)
    p.on_frame(l2(1, "update", [("bid", "9.00", "1"), update]), T0)
    assert p.malformed == 1 and p.status[iid] == Status.RESYNCING
    assert not [e for e in drain(p) if type(e) is Level]  # consumers saw nothing of it


def test_a_time_outside_int64_is_malformed():
    p, iid = make()
    p.on_frame(l2(0, "snapshot", [("bid", "10.00", "1")]), T0)
    p.on_frame(l2(1, "update", [("bid", "10.00", "2")]).replace("2023-02-09", "9999-02-09"), T0)
    assert p.malformed == 1 and p.status[iid] == Status.RESYNCING


@pytest.mark.parametrize("match", [{"side": "up"}, {"trade_id": 2**64}, {"price": "-1"}, {"trade_id": True}])
def test_bad_matches_are_counted_not_emitted(match):
    p, iid = make("exchange")
    drain(p)
    msg = {"type": "match", "trade_id": 10, "sequence": 50, "maker_order_id": "a", "taker_order_id": "b",
           "time": "2014-11-07T08:19:27.028459Z", "product_id": "BTC-USD", "size": "5.23512", "price": "400.23",
           "side": "sell", **match}
    p.on_frame(json.dumps(msg), T0)
    assert p.malformed == 1 and drain(p) == []


def test_exchange_level2_books_are_unverified_after_an_update():
    p, iid = make("exchange")
    p.on_frame(json.dumps({"type": "snapshot", "product_id": "BTC-USD", "bids": [["10", "1"]], "asks": [["11", "1"]]}), T0)
    assert p.status[iid] == Status.SYNCED
    p.on_frame(json.dumps({"type": "l2update", "product_id": "BTC-USD", "changes": [["buy", "10", "2"]],
                           "time": "2021-04-17T16:43:37.067586Z"}), T0)
    assert p.status[iid] == Status.UNVERIFIED  # no sequence numbers: a lost update would not show
