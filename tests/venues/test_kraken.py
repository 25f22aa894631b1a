"""Kraken spot protocol (WebSocket v1 and v2): documented vectors, recorded captures, faults."""

import json
import zlib
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantra.instruments import InstrumentRegistry
from mantra.store.cryptofeed import OPEN, RECV
from mantra.venues.events import BookState, Level, Reconnect, Status, Trade
from mantra.venues.kraken.instruments import parse_instruments, spec_from_v2_pair
from mantra.venues.kraken.protocol import KrakenProtocol
from venuekit import as_decimal, drain, sends, statuses

T0 = 1_700_000_000_000_000_000
SEC = 10**9
CAPTURE_PAIRS = ["WAVES/EUR", "XMR/USD", "KSM/XBT", "GRT/ETH", "SC/EUR", "ETH/CHF", "OCEAN/XBT", "OMG/USD", "XBT/CHF", "ADA/XBT"]


def oracle_checksum(asks, bids):
    """Kraken's documented rule, straight from the venue's full-precision strings: {price_str: qty_str}."""
    strip = lambda s: s.replace(".", "").lstrip("0")
    top_a = sorted(asks.items(), key=lambda kv: Decimal(kv[0]))[:10]
    top_b = sorted(bids.items(), key=lambda kv: -Decimal(kv[0]))[:10]
    return zlib.crc32("".join(strip(p) + strip(q) for p, q in top_a + top_b).encode())


def v1(depth=10, **kw):
    reg = InstrumentRegistry()
    p = KrakenProtocol(reg, ["XBT/USD"], depth, version=1, **kw)
    p.on_connect(T0)
    drain(p)
    return p, reg


def v1_snapshot(asks, bids, pair="XBT/USD", depth=10):
    row = lambda pq: [pq[0], pq[1], "1534614248.123678"]
    return json.dumps([0, {"as": [row(x) for x in asks], "bs": [row(x) for x in bids]}, f"book-{depth}", pair])


def v1_update(asks=(), bids=(), c=None, pair="XBT/USD", depth=10, split=True):
    row = lambda pq: [pq[0], pq[1], "1534614249.000001"]
    parts = []
    if asks:
        parts.append({"a": [row(x) for x in asks]})
    if bids or not parts:
        parts.append({"b": [row(x) for x in bids]})
    if not split and len(parts) == 2:
        parts = [{**parts[0], **parts[1]}]
    if c is not None:
        parts[-1]["c"] = str(c)
    return json.dumps([0, *parts, f"book-{depth}", pair])


# -- documented checksum vectors ----------------------------------------------------------------
def test_v1_documented_checksum_vector(vectors):
    vec = next(v for v in vectors("kraken")["checksum_vectors"] if v["id"] == "kr-v1-doc")
    p, reg = v1()
    p.on_frame(v1_snapshot([a[:2] for a in vec["asks"]], [b[:2] for b in vec["bids"]]), T0)
    iid = reg.get("kraken", "XBT/USD").id
    assert p.status[iid] == Status.SYNCED
    # Re-stating a level changes nothing; the update's checksum is the documented one.
    p.on_frame(v1_update(asks=[vec["asks"][0][:2]], c=vec["expected_checksum"]), T0)
    assert (p.stats[iid].checksum_ok, p.stats[iid].checksum_failed) == (1, 0)
    assert p.status[iid] == Status.SYNCED


def test_v2_documented_btcusd_snapshot_checksum(vectors):
    vec = next(v for v in vectors("kraken")["checksum_vectors"] if v["id"] == "kr-v2-btcusd")
    reg = InstrumentRegistry()
    reg.add("kraken", "BTC/USD", price_scale=1, size_scale=8, price_decimals=1, size_decimals=8)
    p = KrakenProtocol(reg, ["BTC/USD"], 10)
    p.on_connect(T0)
    assert [m["params"]["channel"] for m in sends(drain(p))] == ["book", "trade"]  # precision known already
    p.on_frame(vec["snapshot_json_text"], T0)
    iid = reg.get("kraken", "BTC/USD").id
    assert (p.stats[iid].checksum_ok, p.stats[iid].checksum_failed) == (1, 0)
    assert p.status[iid] == Status.SYNCED
    assert as_decimal(p, iid)["b"][Decimal("45283.5")] == Decimal("0.1")


MATIC_PAIR = {"symbol": "MATIC/USD", "price_precision": 4, "qty_precision": 8, "price_increment": "0.0001",
              "qty_increment": "0.00000001", "qty_min": "5", "cost_min": "0.5", "status": "online"}


def test_v2_precision_from_instrument_channel_validates_trimmed_snapshot(vectors):
    """The doc's MATIC/USD snapshot prints trimmed numbers; only the pair's precisions give its checksum."""
    reg = InstrumentRegistry()
    p = KrakenProtocol(reg, ["MATIC/USD"], 10)
    p.on_connect(T0)
    assert [m["params"]["channel"] for m in sends(drain(p))] == ["instrument"]  # precision unknown: ask first
    p.on_frame(json.dumps({"channel": "instrument", "type": "snapshot", "data": {"assets": [], "pairs": [MATIC_PAIR]}}), T0)
    assert [m["params"]["channel"] for m in sends(drain(p))] == ["book", "trade"]
    p.on_frame(vectors("kraken")["messages"]["v2_book_snapshot"]["json_text"], T0)
    iid = reg.get("kraken", "MATIC/USD").id
    assert reg[iid].price_scale == 4 and reg[iid].size_scale == 8
    assert (p.stats[iid].checksum_ok, p.stats[iid].checksum_failed) == (1, 0)
    assert p.status[iid] == Status.SYNCED


def test_v2_without_instrument_channel_precision_is_learned_from_the_widest_numbers(vectors):
    reg = InstrumentRegistry()
    p = KrakenProtocol(reg, ["MATIC/USD"], 10)
    p.on_frame(vectors("kraken")["messages"]["v2_book_snapshot"]["json_text"], T0)
    iid = reg.get("kraken", "MATIC/USD").id
    assert (reg[iid].price_scale, reg[iid].size_scale) == (4, 8)
    assert p.stats[iid].checksum_ok == 1 and p.status[iid] == Status.SYNCED


def test_v2_wrongly_guessed_precision_is_caught_not_trusted(vectors):
    """Every quantity trimmed on the wire: the guess is wrong and the checksum says so."""
    msg = json.loads(vectors("kraken")["messages"]["v2_book_snapshot"]["json_text"], parse_float=Decimal)
    data = msg["data"][0]
    for x in data["asks"] + data["bids"]:
        x["qty"] = Decimal("100.5")
    fmt = lambda x, n: format(x, f".{n}f").replace(".", "").lstrip("0")
    text = "".join(fmt(x["price"], 4) + fmt(x["qty"], 8) for x in data["asks"][:10])
    text += "".join(fmt(x["price"], 4) + fmt(x["qty"], 8) for x in data["bids"][:10])
    data["checksum"] = zlib.crc32(text.encode())
    reg = InstrumentRegistry()
    p = KrakenProtocol(reg, ["MATIC/USD"], 10)
    p.on_connect(T0)
    drain(p)
    side = lambda xs: "[" + ",".join(f'{{"price":{x["price"]},"qty":{x["qty"]}}}' for x in xs) + "]"
    p.on_frame(f'{{"channel":"book","type":"snapshot","data":[{{"symbol":"MATIC/USD","bids":{side(data["bids"])},'
               f'"asks":{side(data["asks"])},"checksum":{data["checksum"]}}}]}}', T0)
    iid = reg.get("kraken", "MATIC/USD").id
    ev = drain(p)
    assert p.stats[iid].checksum_failed == 1 and p.status[iid] == Status.RESYNCING
    assert Status.CHECKSUM in statuses(ev)
    assert sends(ev)[0]["method"] == "unsubscribe"


# -- documented messages ------------------------------------------------------------------------
def test_v2_documented_trade(vectors):
    reg = InstrumentRegistry()
    reg.add("kraken", "MATIC/USD", **{k: v for k, v in spec_from_v2_pair(MATIC_PAIR).items() if k != "symbol"})
    p = KrakenProtocol(reg, ["MATIC/USD"])
    p.on_frame(vectors("kraken")["messages"]["v2_trade_update"]["json_text"], T0)
    inst = reg.get("kraken", "MATIC/USD")
    # 2023-09-25T07:49:37.708706Z
    assert drain(p) == [Trade(inst.id, -1, inst.price("0.5117"), inst.size("40.0"), 4665906, 1695628177708706000)]


def test_v1_documented_trade_and_heartbeat(vectors):
    msgs = vectors("kraken")["messages"]
    p, reg = v1()
    p.on_frame(json.dumps(msgs["v1_trade"]["message"]), T0)
    p.on_frame(json.dumps(msgs["v1_heartbeat"]["message"]), T0)
    inst = reg.get("kraken", "XBT/USD")  # registered from the trade's strings
    assert (inst.price_scale, inst.size_scale) == (5, 8)
    assert drain(p) == [
        Trade(inst.id, -1, 554120000, 15850568, 0, 1534614057321597000),
        Trade(inst.id, 1, 606000000, 2455000, 0, 1534614057324998000),
    ]
    assert p.malformed == 0


def test_v1_documented_snapshot_then_two_part_update_and_republish(vectors):
    msgs = vectors("kraken")["messages"]
    p, reg = v1()
    p.on_frame(json.dumps(msgs["v1_book_snapshot"]["message"]), T0)
    iid = reg.get("kraken", "XBT/USD").id
    ev = drain(p)
    assert ev[0] == BookState(iid, Status.SYNCING, "snapshot") and ev[-1] == BookState(iid, Status.SYNCED, "snapshot")
    # The documented update has 5 elements (an "a" object and a "b" object with "c"); its checksum
    # belongs to the doc's hidden full book, so it is replaced by the one of the book it leads to.
    upd = msgs["v1_book_update"]["message"]
    asks = {"5541.30000": "2.50700000", "5541.80000": "0.33000000", "5542.70000": "0.64700000", "5542.50000": "0.40100000"}
    bids = {"5539.90000": "0.30000000", "5539.50000": "5.00000000"}  # 5541.20000 untouched, 5541.3 bid removed (absent)
    bids["5541.20000"] = "1.52900000"
    upd = [upd[0], upd[1], {**upd[2], "c": str(oracle_checksum(asks, bids))}, upd[3], upd[4]]
    p.on_frame(json.dumps(upd), T0)
    assert p.stats[iid].checksum_ok == 1 and p.status[iid] == Status.SYNCED
    levels = [e for e in drain(p) if type(e) is Level]
    assert [e.last for e in levels] == [False, False, True]
    # Republished levels ("r") are applied like any other.
    p.on_frame(json.dumps(msgs["v1_book_update_republish"]["message"]), T0)
    assert as_decimal(p, iid)["a"][Decimal("5542.5")] == Decimal("0.401")
    assert p.malformed == 0


# -- checksum against an independent model ------------------------------------------------------
prices = st.integers(1, 60).map(lambda i: f"{i / 10:.5f}")  # prices "0.10000" .. "6.00000"
qtys = st.integers(0, 5).map(lambda i: f"{i}.00000500" if i else "0.00000000")
ops = st.lists(st.tuples(st.sampled_from("ab"), prices, qtys), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.lists(ops, min_size=1, max_size=12), st.booleans())
def test_v1_random_updates_never_give_false_checksum_failures(messages, split):
    """Random updates of a depth-10 book, checksummed by the plain rule over a plain truncated model."""
    p, reg = v1(depth=10)
    model = {"a": {}, "b": {}}
    # A crossed book is flagged (correctly) before its checksum matters: keep asks above bids.
    asks0 = {f"{7 + i / 10:.5f}": "1.00000000" for i in range(12)}
    bids0 = {f"{0.01 * (i + 1):.5f}": "1.00000000" for i in range(12)}
    p.on_frame(v1_snapshot(list(asks0.items()), list(bids0.items())), T0)
    iid = reg.get("kraken", "XBT/USD").id
    model = {"a": dict(sorted(asks0.items(), key=lambda kv: Decimal(kv[0]))[:10]),
             "b": dict(sorted(bids0.items(), key=lambda kv: -Decimal(kv[0]))[:10])}
    assert as_decimal(p, iid)["a"] == {Decimal(k): Decimal(v) for k, v in model["a"].items()}  # snapshot truncated
    n = 0
    for msg in messages:
        asks, bids = [], []
        for side, price, qty in msg:
            if side == "a":
                price = f"{Decimal(price) + 6:.5f}"  # asks live in 6.1 .. 12
                asks.append((price, qty))
            else:
                bids.append((price, qty))
            book = model[side]
            if Decimal(qty):
                book[price] = qty
            else:
                book.pop(price, None)
        model["a"] = dict(sorted(model["a"].items(), key=lambda kv: Decimal(kv[0]))[:10])
        model["b"] = dict(sorted(model["b"].items(), key=lambda kv: -Decimal(kv[0]))[:10])
        p.on_frame(v1_update(asks, bids, oracle_checksum(model["a"], model["b"]), split=split), T0)
        n += 1
        got = as_decimal(p, iid)
        assert got == {s: {Decimal(k): Decimal(v) for k, v in model[s].items()} for s in "ab"}
    assert (p.stats[iid].checksum_ok, p.stats[iid].checksum_failed, p.stats[iid].resyncs) == (n, 0, 0)


# -- recorded captures --------------------------------------------------------------------------
def replay(records, p, check=None):
    for r in records:
        if r.kind == OPEN:
            p.on_connect(r.ts)
        elif r.kind == RECV:
            p.on_frame(r.payload, r.ts)
            if check:
                check(r)
    return p


def plain_replay(records, depth):
    """Independent replay of a v1 book recording: plain dicts of the venue's strings, no shared code."""
    books = {}
    for r in records:
        if r.kind != RECV or not r.payload.startswith("["):
            continue
        msg = json.loads(r.payload)
        if not msg[-2].startswith("book"):
            continue
        book = books.setdefault(msg[-1], {"a": {}, "b": {}})
        for part in msg[1:-2]:
            for key, rows in part.items():
                if key in ("as", "bs", "a", "b"):
                    side = book[key[0]]
                    for row in rows:
                        if Decimal(row[1]):
                            side[Decimal(row[0])] = Decimal(row[1])
                        else:
                            side.pop(Decimal(row[0]), None)
        book["a"] = dict(sorted(book["a"].items())[:depth])
        book["b"] = dict(sorted(book["b"].items(), reverse=True)[:depth])
    return books


@pytest.fixture(scope="module")
def replayed(recording):
    recs = recording("KRAKEN.ws.50.0")
    reg = InstrumentRegistry()
    p = KrakenProtocol(reg, CAPTURE_PAIRS, 1000, version=1)
    events = []

    def keep(_):
        events.extend(p.events)
        p.events.clear()

    replay(recs, p, keep)
    return p, reg, events, recs


def test_capture_every_checksum_validates(replayed):
    p, reg, _, recs = replayed
    n_checksums = sum(1 for r in recs if r.kind == RECV and '"c":"' in r.payload)
    assert n_checksums > 0
    assert sum(s.checksum_ok for s in p.stats.values()) == n_checksums
    for iid, s in p.stats.items():  # each book validated exactly the checksums its updates carried
        assert s.checksum_ok == len(book_frames(recs, reg[iid].symbol)), reg[iid].symbol
    assert p.malformed == 0
    for iid, s in p.stats.items():
        assert (s.checksum_failed, s.resyncs, s.crossed) == (0, 0, 0), reg[iid].symbol
        assert p.status[iid] == Status.SYNCED
    assert sorted(reg[i].symbol for i in p.books) == sorted(CAPTURE_PAIRS)


def test_capture_books_equal_plain_replay_and_level_stream(replayed):
    p, reg, events, recs = replayed
    want = plain_replay(recs, 1000)
    for iid in p.books:
        sym = reg[iid].symbol
        assert as_decimal(p, iid) == want[sym], sym
        # A consumer of the Level stream alone holds the same book.
        cons = {1: {}, -1: {}}
        for e in events:
            if type(e) is Level and e.instrument == iid:
                if e.size:
                    cons[e.side][e.price] = e.size
                else:
                    cons[e.side].pop(e.price, None)
        assert cons == {1: p.books[iid].bids, -1: p.books[iid].asks}


def as_v2(payload):
    """A v1 book frame re-written in the v2 format (numbers keep their full-precision text)."""
    if not payload.startswith("["):
        return None
    msg = json.loads(payload)
    if not msg[-2].startswith("book"):
        return None
    side = lambda rows: "[" + ",".join(f'{{"price":{r[0]},"qty":{r[1]}}}' for r in rows) + "]"
    bids, asks, c, stamps = [], [], None, []
    for part in msg[1:-2]:
        for key, rows in part.items():
            if key == "c":
                c = rows
            else:
                (bids if key[0] == "b" else asks).extend(rows)
                stamps += [r[2] for r in rows]
    kind = "update" if c is not None else "snapshot"
    when = None
    if stamps:
        sec, _, us = max(stamps).partition(".")
        when = datetime.fromtimestamp(int(sec), timezone.utc).replace(microsecond=int(us.ljust(6, "0")[:6]))
    extra = f',"checksum":{c}' if c is not None else ""
    extra += f',"timestamp":"{when:%Y-%m-%dT%H:%M:%S.%fZ}"' if when else ""
    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{msg[-1]}","bids":{side(bids)},'
            f'"asks":{side(asks)}{extra}}}]}}')


def test_capture_rewritten_as_v2_validates_every_checksum(recording):
    """The v2 path on real data: the v1 recording's books and checksums in the v2 message format."""
    recs = recording("KRAKEN.ws.50.0")
    reg = InstrumentRegistry()
    p = KrakenProtocol(reg, CAPTURE_PAIRS, 1000, version=2)
    p.on_connect(T0)
    n = 0
    for r in recs:
        frame = as_v2(r.payload) if r.kind == RECV else None
        if frame:
            p.on_frame(frame, r.ts)
            n += '"checksum"' in frame
    assert n == sum(1 for r in recs if r.kind == RECV and '"c":"' in r.payload) > 0 and p.malformed == 0
    assert sum(s.checksum_ok for s in p.stats.values()) == n
    assert all(s.checksum_failed == 0 and s.crossed == 0 for s in p.stats.values())
    want = plain_replay(recs, 1000)
    for iid in p.books:
        assert as_decimal(p, iid) == want[reg[iid].symbol]
        assert p.status[iid] == Status.SYNCED


@pytest.mark.parametrize("name, trades", [("KRAKEN.ws.48.0", 10), ("KRAKEN.ws.49.0", 0)])
def test_capture_trade_and_ticker_connections(recording, name, trades):
    recs = recording(name)
    p = replay(recs, KrakenProtocol(InstrumentRegistry(), CAPTURE_PAIRS, 1000, version=1))
    got = [e for e in p.events if type(e) is Trade]
    assert len(got) == trades and p.malformed == 0
    assert p.frames == sum(1 for r in recs if r.kind == RECV)


# -- faults -------------------------------------------------------------------------------------
def book_frames(recs, pair):
    return [i for i, r in enumerate(recs) if r.kind == RECV and r.payload.endswith(f'"{pair}"]') and '"c":"' in r.payload]


def test_capture_dropped_frame_is_caught_and_resubscribed(recording):
    recs = list(recording("KRAKEN.ws.50.0"))
    frames = book_frames(recs, "XMR/USD")
    k = len(frames) // 2  # an update in the middle: updates before it and after it
    drop, upto = frames[k], frames[k + 1]  # after the deletion, recs[upto - 1] is the next XMR/USD update
    del recs[drop]
    reg = InstrumentRegistry()
    p = KrakenProtocol(reg, CAPTURE_PAIRS, 1000, version=1)
    replay(recs[:upto], p)
    iid = reg.get("kraken", "XMR/USD").id
    st = p.stats[iid]
    assert st.checksum_failed == 1 and st.resyncs == 1 and p.status[iid] == Status.RESYNCING
    ev = drain(p)
    assert Status.CHECKSUM in statuses(ev)
    unsub = [m for m in sends(ev) if m["event"] == "unsubscribe"]
    assert unsub == [{"event": "unsubscribe", "pair": ["XMR/USD"], "subscription": {"name": "book", "depth": 1000}}]
    # Updates of the abandoned subscription are ignored, the other books go on.
    replay(recs[upto:], p)
    assert st.checksum_failed == 1 and p.malformed == 0
    assert all(p.status[i] == Status.SYNCED for i in p.books if i != iid)
    # The venue confirms: subscribe again; its snapshot makes the book trustworthy again.
    p.on_frame(json.dumps({"channelID": 992, "channelName": "book-1000", "event": "subscriptionStatus",
                           "pair": "XMR/USD", "status": "unsubscribed", "subscription": {"depth": 1000, "name": "book"}}), T0)
    assert [m["event"] for m in sends(drain(p))] == ["subscribe"]
    snap = next(r.payload for r in recs if r.kind == RECV and r.payload.endswith('"XMR/USD"]') and '"as"' in r.payload)
    p.on_frame(snap, T0)
    assert p.status[iid] == Status.SYNCED


def test_altered_checksum_resyncs_and_feed_continues():
    p, reg = v1()
    p.on_frame(v1_snapshot([("10.00000", "1.00000000")], [("9.00000", "1.00000000")]), T0)
    iid = reg.get("kraken", "XBT/USD").id
    good = oracle_checksum({"10.00000": "2.00000000"}, {"9.00000": "1.00000000"})
    p.on_frame(v1_update([("10.00000", "2.00000000")], c=good ^ 1), T0)
    assert p.stats[iid].checksum_failed == 1 and p.status[iid] == Status.RESYNCING
    assert [m["event"] for m in sends(drain(p))] == ["unsubscribe"]
    p.on_frame(v1_update([("10.00000", "3.00000000")], c=0), T0)  # stale subscription: ignored
    assert p.stats[iid].checksum_failed == 1
    p.on_frame(v1_snapshot([("10.00000", "5.00000000")], [("9.00000", "1.00000000")]), T0)
    assert p.status[iid] == Status.SYNCED and as_decimal(p, iid)["a"] == {Decimal(10): Decimal(5)}


def test_malformed_frames_are_counted_and_do_not_stop_the_feed(caplog):
    p, reg = v1()
    p.on_frame(v1_snapshot([("10.00000", "1.00000000")], [("9.00000", "1.00000000")]), T0)
    iid = reg.get("kraken", "XBT/USD").id
    p.on_frame('[0,{"a":[["10.00000","2.0000', T0)  # cut short: the book cannot be named
    assert p.malformed == 1 and p.status[iid] == Status.SYNCED
    # ...but the update it carried is missing, and the next checksum says so.
    p.on_frame(v1_update([("11.00000", "1.00000000")],
                         c=oracle_checksum({"10.00000": "2.00000000", "11.00000": "1.00000000"}, {"9.00000": "1.00000000"})), T0)
    assert p.stats[iid].checksum_failed == 1 and p.status[iid] == Status.RESYNCING
    # A nameable book frame with a bad number: MALFORMED, counted, resynced; never raised.
    p.on_frame(v1_snapshot([("10.00000", "1.00000000")], [("9.00000", "1.00000000")]), T0)
    drain(p)
    p.on_frame(v1_update([("10.000001", "1.00000000")], c=0), T0)  # more decimals than the pair has
    assert p.malformed == 2 and p.stats[iid].malformed == 1
    ev = drain(p)
    assert Status.MALFORMED in statuses(ev) and [m["event"] for m in sends(ev)] == ["unsubscribe"]
    assert "malformed frame" in caplog.text


def test_resubscribe_unanswered_and_silent_feed_reconnect():
    p, reg = v1()
    p.on_frame(v1_snapshot([("10.00000", "1.00000000")], [("9.00000", "1.00000000")]), T0)
    iid = reg.get("kraken", "XBT/USD").id
    p.on_frame(v1_update([("10.00000", "2.00000000")], c=1), T0)  # wrong: resubscribe asked
    drain(p)
    p.on_timer(T0 + 5 * SEC)
    for s in range(6, 12):
        p.on_frame('{"event":"heartbeat"}', T0 + s * SEC)
        p.on_timer(T0 + s * SEC)
    assert drain(p) == []
    p.on_timer(T0 + 21 * SEC)  # 16 s without the venue confirming the unsubscribe, and 10 s silent
    reasons = [e.reason for e in drain(p) if type(e) is Reconnect]
    assert any("resubscribe" in r for r in reasons) and any("no data" in r for r in reasons)
    assert p.status[iid] == Status.STALE


def test_system_maintenance_untrusts_books_and_resubscribes_after():
    p, reg = v1()
    p.on_frame(v1_snapshot([("10.00000", "1.00000000")], [("9.00000", "1.00000000")]), T0)
    iid = reg.get("kraken", "XBT/USD").id
    p.on_frame('{"event":"systemStatus","status":"maintenance","version":"1.8.3"}', T0)
    assert p.status[iid] == Status.RESYNCING
    drain(p)
    p.on_frame('{"event":"systemStatus","status":"online","version":"1.8.3"}', T0)
    assert [m["event"] for m in sends(drain(p))] == ["unsubscribe"]


def test_subscription_messages_v1_and_v2():
    p, _ = v1(depth=25)
    p.on_connect(T0)
    assert sends(drain(p)) == [
        {"event": "subscribe", "pair": ["XBT/USD"], "subscription": {"name": "book", "depth": 25}},
        {"event": "subscribe", "pair": ["XBT/USD"], "subscription": {"name": "trade"}},
    ]
    with pytest.raises(ValueError):
        KrakenProtocol(InstrumentRegistry(), ["XBT/USD"], 20)
    with pytest.raises(ValueError):
        KrakenProtocol(InstrumentRegistry(), ["XBT/USD"], version=3)


# -- metadata -----------------------------------------------------------------------------------
def test_asset_pairs_metadata():
    body = json.dumps({"error": [], "result": {"XXBTZUSD": {
        "altname": "XBTUSD", "wsname": "XBT/USD", "base": "XXBT", "quote": "ZUSD", "pair_decimals": 1,
        "cost_decimals": 5, "lot_decimals": 8, "ordermin": "0.0001", "costmin": "0.5", "tick_size": "0.1",
        "status": "online"}}}).encode()
    (spec,) = parse_instruments(body)
    assert spec == dict(symbol="XBT/USD", base="XBT", quote="USD", price_scale=1, size_scale=8, tick=1, lot=1,
                        min_size=10000, min_notional=5, price_decimals=1, size_decimals=8)
    inst = InstrumentRegistry().add("kraken", **spec)
    assert inst.price_str(inst.price("45283.5")) == "45283.5"
    with pytest.raises(ValueError):
        parse_instruments(b'{"error":["EQuery:Unknown asset pair"],"result":{}}')


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10), st.integers(0, 10), st.integers(1, 10**6), st.integers(0, 10**6))
def test_v2_pair_spec_roundtrips_the_venue_strings(pp, qp, tick_units, min_units):
    tick = str(Decimal(tick_units).scaleb(-pp))
    spec = spec_from_v2_pair({"symbol": "A/B", "price_precision": pp, "qty_precision": qp, "price_increment": tick,
                              "qty_min": str(Decimal(min_units).scaleb(-qp)), "cost_min": "0"})
    assert spec["tick"] == tick_units and spec["min_size"] == min_units
    assert (spec["price_scale"], spec["size_scale"]) == (pp, qp)


def test_pair_registered_meanwhile_by_another_connection_is_reused():
    reg = InstrumentRegistry()
    book_conn = KrakenProtocol(reg, ["XBT/USD"], 10, version=1)
    trade_conn = KrakenProtocol(reg, ["XBT/USD"], 10, version=1)
    trade_conn.on_frame(json.dumps([0, [["5541.20000", "0.15850568", "1534614057.321597", "s", "l", ""]], "trade", "XBT/USD"]), T0)
    book_conn.on_frame(v1_snapshot([("5541.30000", "1.00000000")], [("5541.20000", "1.00000000")]), T0)
    iid = reg.get("kraken", "XBT/USD").id
    assert len(reg) == 1 and book_conn.status[iid] == Status.SYNCED and book_conn.malformed == 0


# -- hostile input ----------------------------------------------------------------------------
@pytest.mark.parametrize("row", [["-10.00000", "1.00000000"], ["10.00000", "-1.00000000"],
                                 ["1e30", "1.00000000"], ["10.00000", "99999999999999999999"]])
def test_numbers_outside_int64_are_malformed_and_resync(row):
    p, reg = v1()
    p.on_frame(v1_snapshot([("10.00000", "1.00000000")], [("9.00000", "1.00000000")]), T0)
    iid = reg.get("kraken", "XBT/USD").id
    drain(p)
    p.on_frame(v1_update([tuple(row)], c=1), T0)
    assert p.malformed == 1 and p.status[iid] == Status.RESYNCING
    assert not [e for e in drain(p) if type(e) is Level]  # consumers saw nothing of it


@pytest.mark.parametrize("frame", [
    [0, {"a": {}}, "book-10", "XBT/USD"],  # levels must be an array
    [0, {"a": ["10.000001.0000000001534614249.000001"]}, "book-10", "XBT/USD"],  # of arrays, not text
    [0, "as", "book-10", "XBT/USD"],
    [0, {"a": [["11.00000", "1.00000000", "1534614249.000001"]]}, "book-10", 7],
    [0, {"a": [["11.00000", "1.00000000", "1534614249.000001"]]}, 10, "XBT/USD"],
    [0, {"a": [["11.00000", "1.00000000", "1534614249.000001"]]}, "book-10", "ETH/USD"],
])
def test_values_of_the_wrong_type_are_counted_never_silently_dropped(frame):
    p, reg = v1()
    p.on_frame(v1_snapshot([("10.00000", "1.00000000")], [("9.00000", "1.00000000")]), T0)
    drain(p)
    p.on_frame(json.dumps(frame), T0)
    assert p.malformed == 1


@pytest.mark.parametrize("trade", [{"trade_id": True}, {"trade_id": "7"}, {"trade_id": 2**64}, {"side": 1},
                                   {"timestamp": 5}, {"timestamp": "9999-09-25T07:49:37.708706Z"}])
def test_v2_bad_trades_are_counted_not_emitted(trade):
    reg = InstrumentRegistry()
    reg.add("kraken", "MATIC/USD", **{k: v for k, v in spec_from_v2_pair(MATIC_PAIR).items() if k != "symbol"})
    p = KrakenProtocol(reg, ["MATIC/USD"])
    d = {"symbol": "MATIC/USD", "side": "sell", "price": 0.5117, "qty": 40.0, "ord_type": "market",
         "trade_id": 4665906, "timestamp": "2023-09-25T07:49:37.708706Z", **trade}
    p.on_frame(json.dumps({"channel": "trade", "type": "update", "data": [d]}), T0)
    assert p.malformed == 1 and drain(p) == []


def test_a_stall_of_more_than_5_s_is_stale():
    p, reg = v1()
    p.on_frame(v1_snapshot([("10.00000", "1.00000000")], [("9.00000", "1.00000000")]), T0)
    iid = reg.get("kraken", "XBT/USD").id
    p.on_timer(T0 + SEC)
    p.on_timer(T0 + 6 * SEC)
    assert p.status[iid] == Status.SYNCED
    p.on_timer(T0 + 7 * SEC)  # heartbeats come every second: 6 s of nothing is a stall
    assert p.status[iid] == Status.STALE and any(type(e) is Reconnect for e in drain(p))
