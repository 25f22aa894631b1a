"""Binance spot protocol: documented messages, the recorded capture, faults, metadata."""

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures import CAPTURES, VECTORS as VECTORS_PATH
from mantra.instruments import InstrumentRegistry
from mantra.venues.binance.instruments import parse_instruments
from mantra.venues.binance.protocol import BinanceProtocol
from mantra.venues.events import BookState, Fetch, Level, Reconnect, Status, Trade
from venuekit import as_decimal, drain


VECTORS = json.loads(VECTORS_PATH.read_text())["binance"]["messages"]
T0 = 1_700_000_000_000_000_000
SEC = 10**9


def make(symbols=("BNBBTC",), **kw):
    reg = InstrumentRegistry()
    return BinanceProtocol(reg, list(symbols), **kw), reg


def depth(U, u, b=(), a=(), s="BNBBTC"):
    return json.dumps({"e": "depthUpdate", "E": 1, "s": s, "U": U, "u": u, "b": list(b), "a": list(a)})


def snapshot(last, bids=(), asks=()):
    return json.dumps({"lastUpdateId": last, "bids": list(bids), "asks": list(asks)}).encode()


SNAP_URL = "https://api.binance.com/api/v3/depth?symbol=BNBBTC&limit=1000"


# -- documented messages ---------------------------------------------------------------------
def test_documented_diff_after_documented_snapshot_is_dropped_as_old():
    p, reg = make()
    p.on_connect(T0)
    p.on_frame(json.dumps(VECTORS["combined_stream_wrapper"]["message"]), T0 + 1)
    assert Fetch(SNAP_URL) in drain(p)
    # The documented snapshot (lastUpdateId 1027024) is newer than the documented event (u=160).
    p.on_rest(SNAP_URL, json.dumps(VECTORS["rest_depth_snapshot"]["message"]).encode(), T0 + 2)
    iid = reg.get("binance", "BNBBTC").id
    assert as_decimal(p, iid) == {"b": {Decimal("4"): Decimal("431")}, "a": {Decimal("4.000002"): Decimal("12")}}
    assert p.status[iid] == Status.SYNCED
    assert p.stats[iid].gaps == 0


def test_documented_event_straddling_the_snapshot_is_applied():
    p, reg = make()
    iid = reg.get("binance", "BNBBTC").id
    p.on_connect(T0)
    p.on_frame(json.dumps(VECTORS["diff_depth_update"]["message"]), T0 + 1)  # U=157, u=160
    p.on_rest(SNAP_URL, snapshot(158, [["0.0024", "1"]], [["0.0027", "5"]]), T0 + 2)
    assert as_decimal(p, iid) == {
        "b": {Decimal("0.0024"): Decimal("10")},
        "a": {Decimal("0.0026"): Decimal("100"), Decimal("0.0027"): Decimal("5")},
    }
    ev = drain(p)
    levels = [e for e in ev if type(e) is Level]
    # Snapshot, then the event: each message's last level is flagged, the book synced afterwards.
    assert levels[-1] == Level(iid, -1, reg[iid].price("0.0026"), reg[iid].size("100"), True, 1672515782136 * 10**6)
    assert [e.status for e in ev if type(e) is BookState][-1] == Status.SYNCED


def test_documented_trade_and_agg_trade():
    p, reg = make()
    iid = reg.get("binance", "BNBBTC").id
    p.on_frame(json.dumps({"stream": "bnbbtc@trade", "data": VECTORS["trade"]["message"]}), T0)
    p.on_frame(json.dumps(VECTORS["agg_trade"]["message"]), T0)
    inst = reg[iid]
    # m=true: the buyer was the maker, so the aggressor sold (-1).
    assert drain(p) == [
        Trade(iid, -1, inst.price("0.001"), inst.size("100"), 12345, 1672515782136 * 10**6),
        Trade(iid, -1, inst.price("0.001"), inst.size("100"), 12345, 1672515782136 * 10**6),
    ]


@pytest.mark.parametrize("key", ["server_shutdown_raw", "server_shutdown_combined"])
def test_server_shutdown_asks_for_reconnect(key):
    p, _ = make()
    p.on_frame(json.dumps(VECTORS[key]["message"]), T0)
    assert [type(e) for e in drain(p)] == [Reconnect]
    assert p.malformed == 0


def test_control_replies_are_not_malformed():
    p, _ = make()
    for key in ("subscribe_response", "control_error"):
        p.on_frame(json.dumps(VECTORS[key]["message"]), T0)
    assert p.malformed == 0 and drain(p) == []


def test_url_carries_every_stream_combined():
    p, _ = make(["BTCUSDT", "ETHBTC"])
    assert p.url == (
        "wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms/btcusdt@trade/ethbtc@depth@100ms/ethbtc@trade"
    )


# -- sync rules ------------------------------------------------------------------------------
def synced(last=100):
    p, reg = make()
    iid = reg.get("binance", "BNBBTC").id
    p.on_connect(T0)
    p.on_frame(depth(last - 5, last + 1), T0)
    p.on_rest(SNAP_URL, snapshot(last, [["1.0", "2"]], [["2.0", "3"]]), T0)
    drain(p)
    return p, iid


def test_gap_is_counted_and_snapshot_fetched_again():
    p, iid = synced(100)  # book at u=101
    p.on_frame(depth(102, 103, [["1.1", "1"]]), T0)
    p.on_frame(depth(105, 106, [["1.2", "1"]]), T0)  # 104 missing
    ev = drain(p)
    assert p.stats[iid].gaps == 1 and p.stats[iid].resyncs == 1
    assert [e.status for e in ev if type(e) is BookState][:1] == [Status.GAP]
    assert Fetch(SNAP_URL) in ev
    assert p.status[iid] != Status.SYNCED
    # The new snapshot resynchronises using the event kept from after the gap.
    p.on_rest(SNAP_URL, snapshot(105, [["1.0", "2"]], [["2.0", "3"]]), T0)
    assert p.status[iid] == Status.SYNCED
    assert as_decimal(p, iid)["b"] == {Decimal("1.0"): Decimal("2"), Decimal("1.2"): Decimal("1")}


def test_contiguous_and_repeated_events_are_no_gap():
    p, iid = synced(100)
    p.on_frame(depth(102, 104, [["1.1", "1"]]), T0)
    p.on_frame(depth(102, 104, [["1.1", "1"]]), T0)  # repeated: ignored
    p.on_frame(depth(105, 105, [["1.1", "0"]]), T0)
    assert p.stats[iid].gaps == 0 and p.status[iid] == Status.SYNCED
    assert as_decimal(p, iid)["b"] == {Decimal("1.0"): Decimal("2")}


def test_first_event_must_straddle_the_snapshot():
    p, reg = make()
    iid = reg.get("binance", "BNBBTC").id
    p.on_connect(T0)
    p.on_frame(depth(90, 95), T0)
    p.on_frame(depth(103, 104), T0)  # after a snapshot at 100, 101..102 are missing
    p.on_frame(depth(105, 106, [["1.5", "7"]]), T0)
    p.on_rest(SNAP_URL, snapshot(100, [["1.0", "2"]]), T0)
    assert p.stats[iid].gaps == 1 and p.status[iid] != Status.SYNCED
    assert Fetch(SNAP_URL) in drain(p)
    # Events buffered after the gap still count for the next snapshot.
    p.on_rest(SNAP_URL, snapshot(104, [["1.0", "2"]]), T0)
    assert p.status[iid] == Status.SYNCED and p.stats[iid].gaps == 1
    assert as_decimal(p, iid)["b"] == {Decimal("1.0"): Decimal("2"), Decimal("1.5"): Decimal("7")}


def test_snapshot_older_than_first_event_is_fetched_again_without_gap():
    p, reg = make()
    iid = reg.get("binance", "BNBBTC").id
    p.on_connect(T0)
    p.on_frame(depth(200, 201), T0)
    drain(p)
    p.on_rest(SNAP_URL, snapshot(150), T0)
    assert drain(p) == [Fetch(SNAP_URL)]
    assert p.stats[iid].gaps == 0 and p.status[iid] == Status.SYNCING


def test_quiet_symbol_is_fetched_after_the_wait():
    p, _ = make(sync_wait_s=3)
    p.on_connect(T0)
    drain(p)
    p.on_timer(T0 + 2 * 10**9)
    assert Fetch(SNAP_URL) not in drain(p)
    p.on_timer(T0 + 3 * 10**9)
    assert Fetch(SNAP_URL) in drain(p)


def test_malformed_frames_and_bodies_are_counted_and_the_feed_continues():
    p, iid = synced(100)
    p.on_frame(b'{"stream":"bnbbtc@depth@100ms","data":{"e":"depthUpd', T0)
    p.on_frame(depth(102, 102, [["1.1", "not a number"]]), T0)
    assert p.malformed == 2
    p.on_rest("https://api.binance.com/api/v3/depth?symbol=BNBBTC&limit=1000", b'{"code":-1121,"msg":"Invalid symbol."}', T0)
    assert p.malformed == 3
    # A half-understood depth event cannot be applied: the book is resynchronised, never left wrong.
    assert p.status[iid] != Status.SYNCED and p.stats[iid].resyncs >= 1
    assert as_decimal(p, iid)["b"] == {Decimal("1.0"): Decimal("2")}


# -- the recorded capture -------------------------------------------------------------------
def capture_records(name):
    """(kind, url, payload) of a recording, parsed here with plain string operations."""
    out = []
    for line in (CAPTURES / name).read_text().splitlines():
        if not line:
            continue
        if line[0].isdigit():
            out.append(("recv", "", line.partition(": ")[2]))
        else:
            url, arrow, rest = line.split(" ", 2)
            out.append(({"<->": "open", "<-": "sent", "->": "http"}[arrow], url, rest.partition(": ")[2]))
    return out


def plain_replay(frames, snapshots):
    """Binance's documented procedure with plain dicts of strings: the expected final books."""
    books, last = {}, {}
    for sym, snap in snapshots.items():
        books[sym] = {"b": {Decimal(p): Decimal(q) for p, q in snap["bids"]},
                      "a": {Decimal(p): Decimal(q) for p, q in snap["asks"]}}
        last[sym] = snap["lastUpdateId"]
    for f in frames:
        d = f["data"]
        sym = d["s"]
        if "@depth" not in f["stream"] or d["u"] <= last[sym]:
            continue
        assert d["U"] <= last[sym] + 1
        for side in "ba":
            for p, q in d[side]:
                if Decimal(q) == 0:
                    books[sym][side].pop(Decimal(p), None)
                else:
                    books[sym][side][Decimal(p)] = Decimal(q)
        last[sym] = d["u"]
    return books


@pytest.fixture(scope="module")
def capture():
    ws = capture_records("BINANCE.ws.1.0")
    http = {url: body for kind, url, body in capture_records("BINANCE.http.0.0")}
    return ws, http


def run_capture(ws, http, drop=None, inject=None):
    """Feed the recording; serve each requested snapshot from the recording, once."""
    reg = InstrumentRegistry()
    symbols = [s.split("@")[0].upper() for s in ws[0][1].split("streams=")[1].split("/") if "@depth" in s]
    p = BinanceProtocol(reg, symbols)
    served, fetches, n = set(), [], 0
    for kind, url, payload in ws:
        if kind == "open":
            p.on_connect(T0)
        elif kind == "recv":
            n += 1
            if n == drop:
                continue
            if n == inject:
                p.on_frame("{not json", T0)
            p.on_frame(payload, T0 + n)
        for e in drain(p):
            if type(e) is Fetch:
                fetches.append(e.url)
                if e.url in http and e.url not in served:
                    served.add(e.url)
                    p.on_rest(e.url, http[e.url].encode(), T0 + n)
    return p, reg, fetches


def test_capture_syncs_with_no_false_gap_and_matches_a_plain_replay(capture):
    ws, http = capture
    p, reg, fetches = run_capture(ws, http)
    assert sorted(fetches) == sorted(http)  # one snapshot per symbol, no re-fetch
    frames = [json.loads(x) for k, _, x in ws if k == "recv"]
    expected = plain_replay(frames, {u.split("symbol=")[1].split("&")[0]: json.loads(b) for u, b in http.items()})
    assert p.malformed == 0
    for sym, book in expected.items():
        iid = reg.get("binance", sym).id
        assert p.stats[iid].gaps == 0 and p.stats[iid].crossed == 0
        assert p.status[iid] == Status.SYNCED
        assert as_decimal(p, iid) == book


def test_capture_dropped_frame_is_detected_as_gap(capture):
    ws, http = capture
    recv = [json.loads(x) for k, _, x in ws if k == "recv"]
    # Drop an NKNUSDT depth event well after sync whose successor does not repeat its ids.
    n = next(i for i, f in enumerate(recv, 1) if i > 50 and f["stream"] == "nknusdt@depth@100ms")
    p, reg, fetches = run_capture(ws, http, drop=n)
    iid = reg.get("binance", "NKNUSDT").id
    assert p.stats[iid].gaps == 1 and p.stats[iid].resyncs == 1
    assert fetches.count("https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000") == 2
    assert p.status[iid] != Status.SYNCED  # waiting for a snapshot the recording does not have
    for sym in ("BLZETH", "LRCBTC", "RUNEEUR"):
        assert p.stats[reg.get("binance", sym).id].gaps == 0


def test_capture_malformed_frame_is_counted_and_replay_continues(capture):
    ws, http = capture
    p, reg, _ = run_capture(ws, http, inject=100)
    assert p.malformed == 1
    assert all(p.status[i] == Status.SYNCED for i in p.books)


def test_each_message_ends_with_exactly_one_last_level(capture):
    ws, http = capture
    p, reg, _ = run_capture(ws[:1], http)
    checked = 0
    for k, _, x in ws:
        if k != "recv":
            continue
        p.on_frame(x, T0)
        ev = drain(p)
        fetch = [e.url for e in ev if type(e) is Fetch]
        if fetch:
            p.on_rest(fetch[0], http[fetch[0]].encode(), T0)
            drain(p)
            continue
        levels = [e.last for e in ev if type(e) is Level]
        if levels:
            assert levels == [False] * (len(levels) - 1) + [True]
            checked += 1
    assert checked > 100


# -- property tests -------------------------------------------------------------------------
def dec8(v):
    return f"{v // 10**8}.{v % 10**8:08d}"


# Bids below 1.5, asks above: random books that never cross, so every message must apply.
level = st.one_of(
    st.tuples(st.just(True), st.integers(1, 15 * 10**7 - 1), st.integers(0, 10**12)),
    st.tuples(st.just(False), st.integers(15 * 10**7, 10**9), st.integers(0, 10**12)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(level, max_size=6), max_size=25), st.sets(st.integers(0, 24), max_size=3))
def test_random_streams_match_a_dict_model_and_gaps_are_exactly_the_holes(msgs, holes):
    p, iid = synced(100)
    inst = p.registry[iid]
    model = {True: {inst.price("1.0"): inst.size("2")}, False: {inst.price("2.0"): inst.size("3")}}
    u, gap = 101, False
    for i, levels in enumerate(msgs):
        U = u + 1 + (i in holes)
        u = U + len(levels)
        bids = [[dec8(pr), dec8(q)] for b, pr, q in levels if b]
        asks = [[dec8(pr), dec8(q)] for b, pr, q in levels if not b]
        p.on_frame(depth(U, u, bids, asks), T0)
        if i in holes:
            gap = True
            break
        for b, pr, q in levels:
            if q:
                model[b][inst.price(dec8(pr))] = inst.size(dec8(q))
            else:
                model[b].pop(inst.price(dec8(pr)), None)
    assert p.stats[iid].gaps == int(gap)
    assert (p.status[iid] == Status.SYNCED) == (not gap)
    if not gap:
        assert p.books[iid].bids == model[True] and p.books[iid].asks == model[False]


# -- metadata -------------------------------------------------------------------------------
EXCHANGE_INFO = {
    "timezone": "UTC",
    "symbols": [
        {
            "symbol": "ETHBTC", "status": "TRADING", "baseAsset": "ETH", "baseAssetPrecision": 8,
            "quoteAsset": "BTC", "quotePrecision": 8, "quoteAssetPrecision": 8,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.00000100", "maxPrice": "100000.00000000", "tickSize": "0.00000100"},
                {"filterType": "LOT_SIZE", "minQty": "0.00100000", "maxQty": "100000.00000000", "stepSize": "0.00100000"},
                {"filterType": "NOTIONAL", "minNotional": "0.00100000", "maxNotional": "9000000.00000000"},
            ],
        },
        {
            "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "baseAssetPrecision": 8,
            "quoteAsset": "USDT", "quotePrecision": 8, "quoteAssetPrecision": 8,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.05000000"},
                {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
                {"filterType": "MIN_NOTIONAL", "minNotional": "5.00000000"},
            ],
        },
    ],
}


def test_exchange_info_gives_exact_scales_ticks_and_minimums():
    specs = {s["symbol"]: s for s in parse_instruments(json.dumps(EXCHANGE_INFO).encode())}
    assert specs["ETHBTC"] == dict(symbol="ETHBTC", base="ETH", quote="BTC", price_scale=6, size_scale=3, tick=1, lot=1,
                                   min_size=1, min_notional=1000, price_decimals=8, size_decimals=8)
    b = specs["BTCUSDT"]
    assert (b["price_scale"], b["tick"], b["size_scale"], b["lot"], b["min_notional"]) == (2, 5, 5, 1, 500)
    reg = InstrumentRegistry()
    inst = reg.add("binance", **b)
    assert inst.price("67000.05000000") % inst.tick == 0


@settings(max_examples=100)
@given(st.integers(1, 10**8), st.integers(0, 8), st.integers(1, 10**8), st.integers(0, 8))
def test_exchange_info_filters_round_trip(tick_units, tick_exp, step_units, step_exp):
    """Any tick/step written Binance-style (8 decimals) comes back exactly as scale and integer increment."""
    tick = Decimal(tick_units).scaleb(-tick_exp)
    step = Decimal(step_units).scaleb(-step_exp)
    body = {"symbols": [{"symbol": "XY", "baseAsset": "X", "quoteAsset": "Y", "filters": [
        {"filterType": "PRICE_FILTER", "tickSize": f"{tick:.8f}"},
        {"filterType": "LOT_SIZE", "stepSize": f"{step:.8f}", "minQty": f"{step:.8f}"}]}]}
    (spec,) = parse_instruments(json.dumps(body).encode())
    assert Decimal(spec["tick"]).scaleb(-spec["price_scale"]) == tick
    assert Decimal(spec["lot"]).scaleb(-spec["size_scale"]) == step
    assert spec["min_size"] == spec["lot"]
    assert spec["tick"] % 10 != 0 or spec["price_scale"] == 0  # the scale is the smallest exact one


def test_reconnect_starts_a_fresh_sync():
    p, iid = synced(100)
    p.on_disconnect(T0)
    assert p.status[iid] == Status.DISCONNECTED
    p.on_rest(SNAP_URL, snapshot(500, [["9.0", "1"]]), T0)  # a late answer: ignored
    assert p.status[iid] == Status.DISCONNECTED
    p.on_connect(T0 + 1)
    assert p.status[iid] == Status.SYNCING
    drain(p)
    p.on_frame(depth(700, 702), T0 + 2)  # ids restart anywhere: no gap, just a new sync
    assert drain(p) == [Fetch(SNAP_URL)]
    p.on_rest(SNAP_URL, snapshot(701, [["1.0", "5"]]), T0 + 3)
    assert p.status[iid] == Status.SYNCED and p.stats[iid].gaps == 0
    assert as_decimal(p, iid)["b"] == {Decimal("1.0"): Decimal("5")}


# -- hostile input and stalls ---------------------------------------------------------------
@pytest.mark.parametrize("event", [
    {"E": 2**62},  # event time beyond int64 once in ns
    {"E": -1},
    {"u": 2**64},  # taken as the last id it would hide every later event
    {"U": 103, "u": 102},
    {"b": [["1.5", "-1"]]},
    {"b": [["-1.5", "1"]]},
    {"a": [["1e30", "1"]]},
    {"a": [["99999999999999999999", "1"]]},
    {"b": [["NaN", "1"]]},
])
def test_numbers_outside_int64_are_malformed_and_resync_never_a_wrong_synced_book(event):
    p, iid = synced(100)
    msg = {"e": "depthUpdate", "E": 1, "s": "BNBBTC", "U": 102, "u": 102, "b": [["1.5", "1"]], "a": [], **event}
    p.on_frame(json.dumps({"stream": "bnbbtc@depth@100ms", "data": msg}), T0)
    assert p.malformed == 1 and p.stats[iid].malformed == 1
    ev = drain(p)
    assert p.status[iid] == Status.RESYNCING and Fetch(SNAP_URL) in ev
    assert not [e for e in ev if type(e) is Level]  # consumers saw nothing of it


def test_a_field_of_the_wrong_type_in_a_diff_resyncs_its_book():
    p, iid = synced(100)
    msg = {"e": "depthUpdate", "E": 1e400, "s": "BNBBTC", "U": 102, "u": 102, "b": [], "a": []}
    p.on_frame(json.dumps({"stream": "bnbbtc@depth@100ms", "data": msg}).replace("Infinity", "1e400"), T0)
    assert p.malformed == 1 and p.status[iid] == Status.RESYNCING


@pytest.mark.parametrize("trade", [{"t": 2**64}, {"T": 2**62}, {"p": "-1"}, {"q": "1e40"}, {"m": "yes"}, {"t": True}])
def test_bad_trades_are_counted_not_emitted(trade):
    p, _ = make()
    msg = {"e": "trade", "E": 1, "s": "BNBBTC", "t": 12345, "p": "0.001", "q": "100", "T": 123456785, "m": True, **trade}
    p.on_frame(json.dumps(msg), T0)
    assert p.malformed == 1 and drain(p) == []


def test_a_snapshot_outside_int64_is_an_unusable_body():
    p, reg = make()
    iid = reg.get("binance", "BNBBTC").id
    p.on_connect(T0)
    p.on_frame(depth(95, 101), T0)
    p.on_rest(SNAP_URL, snapshot(100, [["1.0", "-2"]], [["2.0", "3"]]), T0)
    p.on_rest(SNAP_URL, snapshot(2**64, [["1.0", "2"]], [["2.0", "3"]]), T0)
    assert p.malformed == 2 and p.status[iid] == Status.SYNCING and len(p.books[iid]) == 0


def test_a_stall_is_stale_after_an_unanswered_probe_and_reconnects():
    p, iid = synced(100)
    sent = []
    for s in range(1, 7):  # the tick at 1 s sees the last frames
        p.on_timer(T0 + s * SEC)
        sent += [json.loads(e.text) for e in drain(p) if hasattr(e, "text")]
    assert [m["method"] for m in sent] == ["LIST_SUBSCRIPTIONS"] * 2  # after 2 s of silence, then 4 s
    assert p.status[iid] == Status.SYNCED
    p.on_timer(T0 + 7 * SEC)
    ev = drain(p)
    assert p.status[iid] == Status.STALE and p.stats[iid].stale == 1
    assert any(type(e) is Reconnect and "no data for 6.0 s" in e.reason for e in ev)
    # An answered probe keeps a quiet connection alive.
    p, iid = synced(100)
    for s in range(1, 20):
        p.on_timer(T0 + s * SEC)
        if any(hasattr(e, "text") for e in drain(p)):
            p.on_frame('{"result":[],"id":1}', T0 + s * SEC)
    assert p.status[iid] == Status.SYNCED and p.malformed == 0
