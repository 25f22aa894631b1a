"""Venue simulators: the venue-specific faults (reconnect requests, corrupt checksums, stalls, REST
rate limits), heartbeats, REST endpoints and error answers, each end to end over loopback."""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from decimal import Decimal
from urllib.error import HTTPError

import pytest
from test_simulators import VENUES, Feed, _registry, bad_counts, converge, iids, synced, venue  # noqa: F401
from websockets.sync.client import connect

from mantra.venues.bitfinex.protocol import BULK_UPDATES, OB_CHECKSUM, BitfinexProtocol
from mantra.sim.bitfinex import BitfinexSimulator
from mantra.venues.binance.instruments import parse_instruments as binance_instruments
from mantra.venues.bitfinex.instruments import parse_instruments as bitfinex_instruments
from mantra.venues.bitstamp.instruments import parse_instruments as bitstamp_instruments
from mantra.venues.coinbase.instruments import parse_instruments as coinbase_instruments
from mantra.venues.kraken.instruments import parse_instruments as kraken_instruments
from mantra.sim.kraken import KrakenSimulator
from mantra.sim import ASK, BID


def get(url: str) -> tuple[int, dict, object]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


# -- server-initiated reconnects ---------------------------------------------------------------
@pytest.mark.parametrize("name,why", [("binance", "serverShutdown"), ("bitstamp", "request_reconnect"),
                                      ("bitfinex", "20051")])
def test_a_reconnect_request_makes_the_client_reconnect_and_resync(venue, name, why):
    sim, feed, syms = venue(name)
    feed.pump(synced(feed, syms, messages=5))
    sim.reconnect_request()
    feed.pump(lambda: feed.connects == 2 and synced(feed, syms, messages=3)())
    assert len(feed.reconnects) == 1 and why in feed.reconnects[0]
    assert sim.connections == 2
    converge(feed, sim, syms)


@pytest.mark.parametrize("name", ["coinbase", "kraken"])
def test_venues_without_a_reconnect_request_say_so(venue, name):
    sim, feed, syms = venue(name)
    with pytest.raises(NotImplementedError):
        sim.reconnect_request()


# -- checksums ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["kraken", "kraken-v1", "bitfinex"])
def test_a_corrupt_checksum_is_caught_and_the_book_resubscribed(venue, name):
    sim, feed, syms = venue(name)
    feed.pump(synced(feed, syms, messages=5))
    sim.corrupt_checksum_next()
    feed.pump(lambda: bad_counts(feed, syms)["checksum_failed"] == 1 and synced(feed, syms)())
    assert bad_counts(feed, syms)["gaps"] == 0
    assert feed.connects == 1  # resubscribed on the same connection
    converge(feed, sim, syms)
    assert sum(feed.p.stats[i].checksum_ok for i in iids(feed, syms)) > 0


class _ChecksumOnlyBitfinex(BitfinexProtocol):
    """Asks for checksums and bulk updates but no sequence numbers: a loss shows only in the checksum."""

    def _send(self, msg):
        if msg.get("event") == "conf":
            msg = {**msg, "flags": OB_CHECKSUM | BULK_UPDATES}
        super()._send(msg)


def test_bitfinex_bulk_updates_without_sequence_numbers_lose_frames_to_the_checksum():
    syms = ["tBTCUSD", "tETHUSD"]
    with BitfinexSimulator(seed=3, rate=150.0) as sim:
        reg = _registry("bitfinex", bitfinex_instruments, sim.rest_url + "/v2/conf/pub:info:pair")
        feed = Feed(_ChecksumOnlyBitfinex(reg, syms, url=sim.ws_url))
        feed.connect()
        feed.pump(synced(feed, syms, messages=5))
        mark = {i: feed.p.stats[i].messages for i in iids(feed, syms)}
        sim.drop_next(3)
        feed.pump(lambda: sim.dropped == 3 and synced(feed, syms)()
                  and all(feed.p.stats[i].messages >= m + 10 for i, m in mark.items()))
        assert bad_counts(feed, syms)["checksum_failed"] > 0 and bad_counts(feed, syms)["gaps"] == 0
        converge(feed, sim, syms)
        feed.close()


# -- stalls and heartbeats ---------------------------------------------------------------------
def test_a_stall_delays_frames_but_loses_none(venue):
    sim, feed, syms = venue("binance")
    feed.pump(synced(feed, syms, messages=5))
    sim.slow(0.6)
    n = len(feed.received)
    feed.pump(lambda: len(feed.received) > n + 20)
    gaps = [b - a for a, b in zip(feed.received[n - 1 :], feed.received[n:])]
    assert max(gaps) >= 0.5  # nothing arrived during the stall
    assert bad_counts(feed, syms)["gaps"] == 0  # and nothing was lost: the frames came afterwards
    converge(feed, sim, syms)


@pytest.mark.parametrize("name", ["coinbase", "binance", "bitstamp", "bitfinex", "kraken"])
def test_a_long_stall_trips_the_stale_watchdog_and_the_client_reconnects(venue, name):
    sim, feed, syms = venue(name)
    feed.p.stale_after_s = 0.6
    if feed.p.probe_after_s is not None:
        feed.p.probe_after_s = 0.3  # the probe is stalled too: it cannot keep the feed alive
    feed.pump(synced(feed, syms, messages=5))
    sim.slow(1.2)
    feed.pump(lambda: feed.connects == 2 and synced(feed, syms, messages=3)(), timeout=6)
    assert any("no data" in r for r in feed.reconnects)
    assert all(feed.p.stats[i].stale == 1 for i in iids(feed, syms))
    converge(feed, sim, syms)


@pytest.mark.parametrize("name", ["coinbase", "kraken", "kraken-v1", "bitfinex"])
def test_heartbeats_keep_a_quiet_feed_alive(venue, name):
    sim, feed, syms = venue(name)
    if name == "bitfinex":
        sim.hb_s = 0.5  # the venue's 15 s, shortened
    feed.p.stale_after_s = 1.3
    feed.pump(synced(feed, syms, messages=5))
    sim.pause()
    start = time.monotonic()
    with pytest.raises(AssertionError, match="not reached"):
        feed.pump(lambda: False, timeout=1.8)
    quiet = [t for t in feed.received if t > start + 0.3]
    assert quiet, "no heartbeat during a quiet market"
    assert feed.connects == 1 and not feed.reconnects
    assert bad_counts(feed, syms)["gaps"] == 0  # heartbeats carry the sequence (Bitfinex) without a gap
    assert all(feed.p.stats[i].stale == 0 for i in iids(feed, syms))


# -- REST --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,status,text", [("binance", 418, "Binance error -1003"),
                                             ("binance", 429, "Binance error -1003"),
                                             ("bitstamp", 429, "Rate limit exceeded")])
def test_a_rate_limited_snapshot_is_counted_explained_and_fetched_again(venue, caplog, name, status, text):
    caplog.set_level(logging.WARNING)
    sim, feed, syms = venue(name)
    sim.rate_limit_next(1, status)  # the protocols fetch only once their first frames are in
    feed.pump(synced(feed, syms, messages=3))
    assert feed.p.malformed == 1 and sum(feed.p.stats[i].malformed for i in iids(feed, syms)) == 1
    assert text in caplog.text
    converge(feed, sim, syms)


def test_a_standing_rest_limit_answers_with_the_venues_error():
    with KrakenSimulator(rest_limit_per_s=2) as sim:
        answers = [get(sim.rest_url + "/0/public/AssetPairs") for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 429]
    assert answers[2][2] == {"error": ["EGeneral:Too many requests"]} and answers[2][1]["Retry-After"] == "1"


def _levels(rows, key=None):
    """``[[price, size, ...], ...]`` (or dicts) -> ``[(Decimal, Decimal)]``."""
    return [(Decimal(str(r[key[0]] if key else r[0])), Decimal(str(r[key[1]] if key else r[1]))) for r in rows]


# venue -> (snapshot path for symbol, body -> (bids, asks) best first as Decimals, symbol)
SNAPSHOTS = {
    "binance": ("/api/v3/depth?symbol=ETHUSDT&limit=1000", lambda b: (_levels(b["bids"]), _levels(b["asks"])), "ETHUSDT"),
    "bitstamp": ("/api/v2/order_book/ethusd/", lambda b: (_levels(b["bids"]), _levels(b["asks"])), "ethusd"),
    "kraken": ("/0/public/Depth?pair=XBTUSD&count=500",
               lambda b: (_levels(b["result"]["XBTUSD"]["bids"]), _levels(b["result"]["XBTUSD"]["asks"])), "BTC/USD"),
    "coinbase": ("/api/v3/brokerage/market/product_book?product_id=SOL-USD",
                 lambda b: (_levels(b["pricebook"]["bids"], ("price", "size")),
                            _levels(b["pricebook"]["asks"], ("price", "size"))), "SOL-USD"),
    "coinbase-exchange": ("/products/BTC-USD/book?level=2",
                          lambda b: (_levels(b["bids"]), _levels(b["asks"])), "BTC-USD"),
    "bitfinex": ("/v2/book/tETHUSD/P0?len=100",
                 lambda b: ([(Decimal(str(r[0])), Decimal(str(r[2]))) for r in b if Decimal(str(r[2])) > 0],
                            [(Decimal(str(r[0])), -Decimal(str(r[2]))) for r in b if Decimal(str(r[2])) < 0]),
                 "tETHUSD"),
}


@pytest.mark.parametrize("name", list(SNAPSHOTS))
def test_rest_book_snapshots_show_the_simulators_book(name):
    path, parse, sym = SNAPSHOTS[name]
    with VENUES[name][0](seed=5, rate=200.0) as sim:
        time.sleep(0.1)
        sim.pause()
        status, _, body = get(sim.rest_url + path)
        truth, inst = sim.book(sym), sim.instruments[sim.symbol(sym)]
    assert status == 200
    bids, asks = parse(body)
    assert bids == [(Decimal(p).scaleb(-inst.price_scale), Decimal(q).scaleb(-inst.size_scale))
                    for p, q in truth.top(BID, 1000)]
    assert asks == [(Decimal(p).scaleb(-inst.price_scale), Decimal(q).scaleb(-inst.size_scale))
                    for p, q in truth.top(ASK, 1000)]
    assert bids[0][0] < asks[0][0]


@pytest.mark.parametrize("name,path,parse", [
    ("binance", "/api/v3/exchangeInfo", binance_instruments),
    ("bitstamp", "/api/v2/trading-pairs-info/", bitstamp_instruments),
    ("bitstamp", "/api/v2/markets/", bitstamp_instruments),
    ("coinbase", "/api/v3/brokerage/market/products", coinbase_instruments),
    ("coinbase", "/products", coinbase_instruments),
    ("kraken", "/0/public/AssetPairs", kraken_instruments),
])
def test_metadata_endpoints_describe_the_instruments_served(name, path, parse):
    with VENUES[name][0]() as sim:
        specs = parse(urllib.request.urlopen(sim.rest_url + path, timeout=3).read())
        assert len(specs) == len(sim.instruments)
        for spec in specs:
            inst = sim.instruments[sim.symbol(spec["symbol"])]
            assert (spec["price_scale"], spec["size_scale"]) == (inst.price_scale, inst.size_scale)
            assert (spec["tick"], spec["lot"]) == (inst.tick, inst.lot)
            assert spec["min_notional"] == inst.min_notional


def test_bitfinex_metadata_gives_the_minimum_order_size():
    with BitfinexSimulator() as sim:
        for spec in bitfinex_instruments(urllib.request.urlopen(sim.rest_url + "/v2/conf/pub:info:pair").read()):
            inst = sim.instruments[spec["symbol"]]
            assert Decimal(spec["min_size"]).scaleb(-spec["size_scale"]) == Decimal(inst.min_size).scaleb(-inst.size_scale)


@pytest.mark.parametrize("name,path,status,body", [
    ("binance", "/api/v3/depth?symbol=NOPE", 400, {"code": -1121, "msg": "Invalid symbol."}),
    ("kraken", "/0/public/Depth?pair=NOPE", 200, {"error": ["EQuery:Unknown asset pair"]}),
])
def test_rest_errors_use_the_venues_bodies(name, path, status, body):
    with VENUES[name][0]() as sim:
        assert get(sim.rest_url + path)[::2] == (status, body)


# -- subscription errors ---------------------------------------------------------------------
# venue -> (path, bad request, predicate on the answer)
BAD_REQUESTS = {
    "binance": ("/ws", {"method": "NOPE", "id": 7}, lambda m: m.get("code") == 2 and m.get("id") == 7),
    "bitstamp": ("/", {"event": "bts:subscribe", "data": {"channel": "diff_order_book_nope"}},
                 lambda m: m.get("event") == "bts:error"),
    "bitfinex": ("/", {"event": "subscribe", "channel": "book", "symbol": "tBTCUSD", "prec": "P1"},
                 lambda m: m.get("event") == "error" and m.get("code") == 10011),
    "coinbase": ("/", {"type": "subscribe", "channel": "level2", "product_ids": ["NOPE-USD"]},
                 lambda m: m.get("type") == "error"),
    "kraken": ("/v2", {"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 7}, "req_id": 3},
               lambda m: m.get("success") is False and m.get("req_id") == 3),
    "kraken-v1": ("/", {"event": "subscribe", "pair": ["NOPE/USD"], "subscription": {"name": "book"}},
                  lambda m: m.get("status") == "error" and m.get("pair") == "NOPE/USD"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_a_bad_subscription_gets_the_venues_error_answer(name):
    path, request, answered = BAD_REQUESTS[name]
    with VENUES[name][0]() as sim, connect(f"ws://127.0.0.1:{sim.port}{path}", open_timeout=3) as ws:
        ws.send(json.dumps(request))
        ws.send("not json{")
        answers = []
        while len(answers) < 4:
            try:
                answers.append(json.loads(ws.recv(timeout=1)))
            except TimeoutError:
                break
        assert any(isinstance(m, dict) and answered(m) for m in answers), answers
        assert ws.protocol.state.name == "OPEN"  # the connection survives both
