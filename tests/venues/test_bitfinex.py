"""Bitfinex WebSocket v2 protocol: documented checksum vectors, the recorded capture, faults."""

import json
import zlib
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantra.instruments import InstrumentRegistry
from mantra.store.cryptofeed import OPEN, RECV
from mantra.venues.bitfinex.instruments import parse_instruments
from mantra.venues.bitfinex.protocol import BitfinexProtocol, checksum_string, signed_crc32
from mantra.venues.events import Level, Reconnect, Status, Trade
from venuekit import as_decimal, drain, sends, statuses

T0 = 1_700_000_000_000_000_000
SEC = 10**9
FLAGS = 65536 + 131072  # SEQ_ALL + OB_CHECKSUM
CHAN = 17082
CAPTURE_SYMBOLS = ["tBFTUSD", "tIOTETH", "tDOGUSD", "tMNABTC", "tODEUSD", "tTESTBTC:TESTUSD", "tSNGUSD"]


def js(d: Decimal) -> str:
    """JavaScript's Number#toString for a decimal of at most 8 decimals (what the venue writes)."""
    if d == 0:
        return "0"
    if abs(d) >= Decimal("1e-6"):
        return format(d.normalize(), "f")
    sign, digits, exp = d.normalize().as_tuple()
    mant = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return ("-" if sign else "") + f"{mant}e{exp + len(digits) - 1}"


def oracle(bids, asks):
    """The documented checksum over plain {Decimal price: Decimal amount} sides (ask amounts negative)."""
    b = sorted(bids.items(), reverse=True)[:25]
    a = sorted(asks.items())[:25]
    parts = []
    for i in range(max(len(b), len(a))):
        for side in (b, a):
            if i < len(side):
                parts.append(f"{format(side[i][0].normalize(), 'f')}:{js(side[i][1])}")
    z = zlib.crc32(":".join(parts).encode())
    return z - 2**32 if z >= 2**31 else z


class Feed:
    """Writes venue frames with a per-connection sequence number."""

    def __init__(self, p, flags=FLAGS):
        self.p, self.seq, self.flags = p, 0, flags
        p.on_connect(T0)
        p.on_frame(json.dumps({"event": "conf", "status": "OK", "flags": flags}), T0)

    def frame(self, chan, *body, ts=T0):
        self.seq += 1
        tail = [self.seq] if self.flags & 65536 else []
        self.p.on_frame("[" + ",".join([str(chan), *body, *map(str, tail)]) + "]", ts)

    def subscribed(self, chan=CHAN, symbol="tBTCUSD", channel="book"):
        self.p.on_frame(json.dumps({"event": "subscribed", "channel": channel, "chanId": chan, "symbol": symbol,
                                    "prec": "P0", "freq": "F0", "len": "25", "pair": symbol[1:]}), T0)


def entry(price, count, amount):
    return f"[{price},{count},{amount}]"


def make(depth=25, symbols=("tBTCUSD",), **kw):
    reg = InstrumentRegistry()
    p = BitfinexProtocol(reg, list(symbols), depth, **kw)
    return p, reg


def synced(bids=((Decimal(100), 1, Decimal(1)),), asks=((Decimal(101), 1, Decimal(-1)),)):
    p, reg = make()
    f = Feed(p)
    f.subscribed()
    f.frame(CHAN, "[" + ",".join(entry(js(pr), c, js(a)) for pr, c, a in list(bids) + list(asks)) + "]")
    drain(p)
    return p, reg.get("bitfinex", "tBTCUSD").id, f


# -- documented checksum vectors ----------------------------------------------------------------
@pytest.mark.parametrize("vid, raw_price", [("bf-p0", None), ("bf-exp-notation", "1.7e-8")])
def test_documented_checksum_vectors(vectors, vid, raw_price):
    vec = next(v for v in vectors("bitfinex")["checksum_vectors"] if v["id"] == vid)
    p, reg = make()
    f = Feed(p)
    f.subscribed()
    rows = vec["bids"] + vec["asks"]
    text = [entry(raw_price if raw_price and r[0] < 1 else r[0], r[1], r[2]) for r in rows]
    f.frame(CHAN, "[" + ",".join(text) + "]")
    iid = reg.get("bitfinex", "tBTCUSD").id
    assert p.status[iid] == Status.SYNCED
    f.frame(CHAN, '"cs"', str(vec["expected_checksum_signed"]))
    assert (p.stats[iid].checksum_ok, p.stats[iid].checksum_failed) == (1, 0)
    assert p.status[iid] == Status.SYNCED


def test_documented_raw_book_checksum_string(vectors):
    vec = next(v for v in vectors("bitfinex")["checksum_vectors"] if v["id"] == "bf-r0")
    frag = lambda rows: [f"{r[0]}:{r[2]}" for r in rows]  # raw books hash the order id
    s = checksum_string(frag(vec["bids"]), frag(vec["asks"]))
    assert s == vec["checksum_string"] and signed_crc32(s) == vec["expected_checksum_signed"]
    # One side longer than the other: its extra entries follow, none are invented.
    assert checksum_string(["1:1", "2:2", "3:3"], ["4:-4"]) == "1:1:4:-4:2:2:3:3"


# -- checksum against an independent model ------------------------------------------------------
units = st.integers(1, 300)  # amounts in 1e-8 units: many are below 1e-6, written in exponent form
price_steps = st.integers(1, 40)
update = st.tuples(st.booleans(), price_steps, st.integers(0, 3), units)


@settings(max_examples=60, deadline=None)
@given(st.lists(update, min_size=1, max_size=60), st.booleans())
def test_random_updates_validate_against_plain_checksum(updates, tiny_prices):
    """Prices below 1e-6 arrive in exponent form and are hashed in fixed form; amounts as written."""
    scale = Decimal("1e-10") if tiny_prices else Decimal(1)  # down to the 10 decimals kept
    bid_px = lambda i: (Decimal(i) * scale).normalize()
    ask_px = lambda i: (Decimal(100 + i) * scale).normalize()
    p, iid, f = synced(bids=(), asks=())
    model = {"b": {}, "a": {}}
    for is_bid, step, count, amount_units in updates:
        price = bid_px(step) if is_bid else ask_px(step)
        amount = Decimal(amount_units).scaleb(-8) * (1 if is_bid else -1)
        side = model["b" if is_bid else "a"]
        if count:
            side[price] = amount
            f.frame(CHAN, entry(js(price), count, js(amount)))
        else:
            side.pop(price, None)
            f.frame(CHAN, entry(js(price), 0, 1 if is_bid else -1))
        f.frame(CHAN, '"cs"', str(oracle(model["b"], model["a"])))
    st_ = p.stats[iid]
    assert (st_.checksum_ok, st_.checksum_failed, st_.gaps, p.malformed) == (len(updates), 0, 0, 0)
    assert as_decimal(p, iid) == {"b": model["b"], "a": {k: -v for k, v in model["a"].items()}}


# -- the recorded capture -----------------------------------------------------------------------
def plain_replay(records):
    """Independent replay: plain dicts of Decimals, channels from the subscribed events."""
    chans, first, books = {}, set(), {}
    for r in records:
        if r.kind != RECV:
            continue
        msg = json.loads(r.payload, parse_float=Decimal)
        if isinstance(msg, dict):
            if msg.get("event") == "subscribed" and msg["channel"] == "book":
                chans[msg["chanId"]] = msg["symbol"]
                first.add(msg["chanId"])
            continue
        if msg[0] not in chans or isinstance(msg[1], str):
            continue
        book = books.setdefault(chans[msg[0]], {"b": {}, "a": {}})
        rows = msg[1] if msg[0] in first else [msg[1]]
        first.discard(msg[0])
        for price, count, amount in rows:
            price = Decimal(price)
            if count == 0:
                book["b" if amount == 1 else "a"].pop(price, None)
            elif amount > 0:
                book["b"][price] = Decimal(amount)
            else:
                book["a"][price] = -Decimal(amount)
    return books


@pytest.fixture(scope="module")
def replayed(recording):
    recs = recording("BITFINEX.ws.11.0")
    reg = InstrumentRegistry()
    p = BitfinexProtocol(reg, CAPTURE_SYMBOLS, 100)
    events, crossed_at_boundary = [], []
    for r in recs:
        if r.kind == OPEN:
            p.on_connect(r.ts)
        elif r.kind == RECV:
            p.on_frame(r.payload, r.ts)
            crossed_at_boundary += [i for i, b in p.books.items() if p.status[i] == Status.SYNCED and b.crossed()]
        events.extend(p.events)
        p.events.clear()
    return p, reg, events, recs, crossed_at_boundary


def test_capture_replays_without_gaps_crossings_or_errors(replayed):
    p, reg, events, recs, crossed = replayed
    assert crossed == []
    assert p.frames == sum(1 for r in recs if r.kind == RECV) and p.malformed == 0
    for iid, s in p.stats.items():
        assert (s.gaps, s.crossed, s.resyncs, s.checksum_failed) == (0, 0, 0, 0), reg[iid].symbol
        assert p.status[iid] == Status.SYNCED and s.messages > 0
    assert sorted(reg[i].symbol for i in p.books) == sorted(CAPTURE_SYMBOLS)


def test_capture_books_equal_plain_replay_and_level_stream(replayed):
    p, reg, events, recs, _ = replayed
    want = plain_replay(recs)
    for iid in p.books:
        sym = reg[iid].symbol
        assert as_decimal(p, iid) == want[sym], sym
        cons = {1: {}, -1: {}}
        for e in events:
            if type(e) is Level and e.instrument == iid:
                if e.size:
                    cons[e.side][e.price] = e.size
                else:
                    cons[e.side].pop(e.price, None)
        assert cons == {1: p.books[iid].bids, -1: p.books[iid].asks}


def test_capture_dropped_frame_is_a_gap_and_books_resubscribe(recording):
    recs = list(recording("BITFINEX.ws.11.0"))
    book_updates = [i for i, r in enumerate(recs) if r.kind == RECV and r.payload.startswith("[232955,[0.")]
    drop = book_updates[200]
    del recs[drop]
    reg = InstrumentRegistry()
    p = BitfinexProtocol(reg, CAPTURE_SYMBOLS, 100)
    for r in recs[:drop]:
        if r.kind == OPEN:
            p.on_connect(r.ts)
        elif r.kind == RECV:
            p.on_frame(r.payload, r.ts)
    drain(p)
    assert all(p.stats[i].gaps == 0 for i in p.books)
    # The frame after the hole reveals it: every book is suspect (the seq is per connection).
    p.on_frame(recs[drop].payload, T0)
    ev = drain(p)
    # Books with a channel then: the lost frame may have been theirs.  Books subscribed later: not.
    before = {json.loads(r.payload)["symbol"] for r in recs[:drop]
              if r.kind == RECV and '"subscribed","channel":"book"' in r.payload}
    hit = {i for i in p.books if reg[i].symbol in before}
    assert 0 < len(hit) < len(CAPTURE_SYMBOLS)
    assert all(p.stats[i].gaps == 1 and p.stats[i].resyncs == 1 and p.status[i] == Status.RESYNCING for i in hit)
    assert Status.GAP in statuses(ev)
    unsub = [m for m in sends(ev) if m["event"] == "unsubscribe"]
    assert len(unsub) == len(hit)
    # The rest of the recording does not crash or count further gaps; confirmations resubscribe.
    for r in recs[drop + 1:]:
        if r.kind == RECV:
            p.on_frame(r.payload, r.ts)
    assert p.malformed == 0 and all(p.stats[i].gaps == (i in hit) for i in p.books)
    assert all(p.status[i] == Status.SYNCED for i in p.books if i not in hit)
    drain(p)
    for m in unsub:
        p.on_frame(json.dumps({"event": "unsubscribed", "status": "OK", "chanId": m["chanId"]}), T0)
    subs = [m for m in sends(drain(p)) if m["event"] == "subscribe"]
    assert sorted(m["symbol"] for m in subs) == sorted(before) and {m["len"] for m in subs} == {"100"}


# -- faults -------------------------------------------------------------------------------------
def test_altered_checksum_resyncs_and_new_snapshot_recovers():
    p, iid, f = synced()
    f.frame(CHAN, '"cs"', str(oracle({Decimal(100): Decimal(1)}, {Decimal(101): Decimal(-1)}) ^ 1))
    ev = drain(p)
    assert p.stats[iid].checksum_failed == 1 and p.stats[iid].resyncs == 1
    assert statuses(ev) == [Status.CHECKSUM, Status.RESYNCING]
    assert sends(ev) == [{"event": "unsubscribe", "chanId": CHAN}]
    f.frame(CHAN, entry(99, 1, 5))  # the abandoned channel's data is ignored
    assert 99 * 10**8 not in p.books[iid].bids
    p.on_frame(json.dumps({"event": "unsubscribed", "status": "OK", "chanId": CHAN}), T0)
    assert sends(drain(p))[0]["event"] == "subscribe"
    f.subscribed(chan=CHAN + 1)
    f.frame(CHAN + 1, "[" + entry(98, 1, 2) + "]")
    assert p.status[iid] == Status.SYNCED and as_decimal(p, iid) == {"b": {Decimal(98): Decimal(2)}, "a": {}}


def test_malformed_frames_are_counted_and_the_gap_they_leave_resyncs(caplog):
    p, iid, f = synced()
    p.on_frame('[17082,[100,1,', T0)  # cut short: its sequence number is lost with it
    f.seq += 1
    assert p.malformed == 1 and p.status[iid] == Status.SYNCED
    f.frame(CHAN, entry(100, 1, 2))
    assert p.stats[iid].gaps == 1 and p.status[iid] == Status.RESYNCING
    assert "malformed frame" in caplog.text and "[17082,[100,1," in caplog.text
    # A readable frame with an unusable entry is pinned on its book.
    p, iid, f = synced()
    f.frame(CHAN, entry(100, 0, 7))  # a delete must say 1 or -1
    assert p.malformed == 1 and p.stats[iid].malformed == 1
    assert Status.MALFORMED in statuses(drain(p))
    p, iid, f = synced()
    f.frame(CHAN, entry("100.00000000001", 1, 1))  # finer than any price the venue writes
    assert p.malformed == 1 and p.status[iid] == Status.RESYNCING


def test_info_codes_reconnect_pause_and_resubscribe():
    p, iid, f = synced()
    p.on_frame(json.dumps({"event": "info", "code": 20060, "msg": "Entering in Maintenance mode."}), T0)
    assert p.status[iid] == Status.RESYNCING
    f.frame(CHAN, entry(100, 1, 9))  # data during maintenance is not trusted into the book
    assert p.books[iid].bids == {p.registry[iid].price("100"): p.registry[iid].size("1")}
    drain(p)
    p.on_frame(json.dumps({"event": "info", "code": 20061, "msg": "Maintenance ended."}), T0)
    assert sends(drain(p)) == [{"event": "unsubscribe", "chanId": CHAN}]
    p.on_frame(json.dumps({"event": "unsubscribed", "status": "OK", "chanId": CHAN}), T0)
    assert [m["event"] for m in sends(drain(p))] == ["subscribe"]
    p.on_frame(json.dumps({"event": "info", "code": 20051, "msg": "Stop/Restart Websocket Server"}), T0)
    assert any(type(e) is Reconnect for e in drain(p))
    assert p.malformed == 0


def test_connect_sends_conf_then_subscriptions():
    p, _ = make(depth=100, symbols=["tBTCUSD", "tTESTBTC:TESTUSD"])
    p.on_connect(T0)
    msgs = sends(drain(p))
    assert msgs[0] == {"event": "conf", "flags": FLAGS}
    assert msgs[1] == {"event": "subscribe", "channel": "book", "symbol": "tBTCUSD", "prec": "P0", "freq": "F0", "len": "100"}
    assert [m["channel"] for m in msgs[1:]] == ["book", "book", "trades", "trades"]
    inst = p.registry.get("bitfinex", "tTESTBTC:TESTUSD")
    assert (inst.base, inst.quote, inst.price_scale, inst.size_scale) == ("TESTBTC", "TESTUSD", 10, 8)
    with pytest.raises(ValueError):
        make(depth=10)


def test_without_seq_flag_frames_are_read_positionally():
    p, reg = make()
    f = Feed(p, flags=0)
    f.subscribed()
    f.frame(CHAN, "[" + entry(100, 1, 1) + "," + entry(101, 2, -3) + "]")
    f.frame(CHAN, '"hb"')
    f.frame(CHAN, entry(100, 0, 1))
    iid = reg.get("bitfinex", "tBTCUSD").id
    assert as_decimal(p, iid) == {"b": {}, "a": {Decimal(101): Decimal(3)}} and p.malformed == 0


def test_silent_feed_goes_stale():
    p, iid, f = synced()
    p.on_timer(T0 + SEC)
    p.on_timer(T0 + 32 * SEC)
    assert p.status[iid] == Status.STALE and any(type(e) is Reconnect for e in drain(p))


# -- trades -------------------------------------------------------------------------------------
def test_documented_trades_te_then_tu_and_snapshots(vectors):
    msgs = vectors("bitfinex")["messages"]
    p, reg = make(symbols=["tBTCUSD"])
    f = Feed(p, flags=0)
    f.subscribed(chan=17470, channel="trades")
    iid = reg.get("bitfinex", "tBTCUSD").id
    drain(p)
    body = lambda key: msgs[key]["json_text"].split(",", 1)[1][:-1]
    f.frame(17470, body("trades_snapshot"))  # history from before we came: not emitted
    f.frame(17470, body("trade_te"))
    f.frame(17470, body("trade_tu"))  # the same trade again
    f.frame(17470, '"te"', "[401597396,1574694478900,-0.00000012,7245.2]")
    inst = reg[iid]
    assert drain(p) == [
        Trade(iid, 1, inst.price("7245.3"), inst.size("0.005"), 401597395, 1574694478808 * 10**6),
        Trade(iid, -1, inst.price("7245.2"), inst.size("0.00000012"), 401597396, 1574694478900 * 10**6),
    ]
    # After a resubscription the snapshot fills in only what was missed.
    f.frame(17470, "[[401597398,1574694479000,1,7246],[401597397,1574694478950,2,7245.5],[401597396,1574694478900,-0.00000012,7245.2]]")
    assert [e.trade_id for e in drain(p)] == [401597397, 401597398]


# -- metadata -----------------------------------------------------------------------------------
def test_pair_info_metadata():
    body = b'[[["BTCUSD",[null,null,null,"0.00006","2000.0",null,null,null,0.2,0.1]],["TESTBTC:TESTUSD",[null,null,null,0.0002,100]]]]'
    specs = parse_instruments(body)
    assert [s["symbol"] for s in specs] == ["tBTCUSD", "tTESTBTC:TESTUSD"]
    assert specs[0]["min_size"] == 6000 and specs[1]["min_size"] == 20000
    assert (specs[1]["base"], specs[1]["quote"]) == ("TESTBTC", "TESTUSD")
    reg = InstrumentRegistry()
    inst = reg.add("bitfinex", **specs[0])
    p = BitfinexProtocol(reg, ["tBTCUSD"])
    assert reg.get("bitfinex", "tBTCUSD") is inst and inst.id in p.books
    with pytest.raises(ValueError):
        parse_instruments(b'{"error":"nope"}')


# -- hostile input ------------------------------------------------------------------------------
def test_a_text_trade_time_is_malformed_not_a_huge_string():
    """A 330-byte frame whose MTS is text once made a 300 MB string (MTS * 10**6)."""
    import tracemalloc

    p, reg = make(symbols=["tBTCUSD"])
    f = Feed(p)
    f.subscribed(chan=17470, channel="trades")
    drain(p)
    tracemalloc.start()
    f.frame(17470, '"te"', '[401597396,"' + "9" * 300 + '",-0.5,7245.2]')
    f.frame(17470, '"te"', "[401597397,true,-0.5,7245.2]")  # a bool is not a time
    f.frame(17470, '"te"', '["401597398",1574694478900,-0.5,7245.2]')  # nor text an id
    f.frame(17470, '"te"', "[401597399,1574694478900]")  # too short
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000
    assert p.malformed == 4 and not [e for e in drain(p) if type(e) is Trade]


def test_numbers_outside_int64_are_malformed_and_resync_the_book():
    p, iid, f = synced()
    drain(p)
    f.frame(CHAN, entry(100, 2**63, 1))  # a count no book has
    assert p.malformed == 1 and p.status[iid] == Status.RESYNCING
    p, iid, f = synced()
    f.frame(CHAN, entry(100, 1, "1" + "0" * 30))  # an amount beyond int64 at any scale
    assert p.malformed == 1 and p.status[iid] == Status.RESYNCING
    p, iid, f = synced()
    f.frame(CHAN, entry(-5, 1, 1))
    assert p.malformed == 1 and p.status[iid] == Status.RESYNCING
    p, reg = make(symbols=["tBTCUSD"])
    f = Feed(p)
    f.subscribed(chan=17470, channel="trades")
    f.frame(17470, '"te"', f"[{2**64},1574694478900,-0.5,7245.2]")  # id beyond int64
    f.frame(17470, '"te"', f"[401597396,{2**62},-0.5,7245.2]")  # time beyond int64 once in ns
    assert p.malformed == 2 and not [e for e in drain(p) if type(e) is Trade]


def test_an_unreadable_book_message_resyncs_the_books_it_may_have_been_for():
    p, iid, f = synced()
    drain(p)
    f.frame(CHAN, '"zz"')  # a known channel, an unknown message: a change we cannot apply
    assert p.malformed == 1 and p.status[iid] == Status.RESYNCING
    p, iid, f = synced()
    f.frame(2**70, entry(100, 1, 1))  # no channel has this id: it may have been ours
    assert p.malformed == 1 and p.status[iid] == Status.RESYNCING
