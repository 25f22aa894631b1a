"""Venue simulators re-serving recordings: a client of the simulator ends with the books a protocol
reading the recording directly ends with, and a fault during a replay is recovered from."""

from __future__ import annotations

import pytest
from fixtures import CAPTURES
from test_simulators import Feed, _registry, bad_counts, converge, iids, synced

from mantra.instruments import InstrumentRegistry
from mantra.venues.binance.instruments import parse_instruments as binance_instruments
from mantra.venues.binance.protocol import BinanceProtocol
from mantra.sim.binance import BinanceSimulator
from mantra.venues.bitfinex.protocol import BitfinexProtocol
from mantra.sim.bitfinex import BitfinexSimulator
from mantra.venues.bitstamp.instruments import parse_instruments as bitstamp_instruments
from mantra.venues.bitstamp.protocol import BitstampProtocol
from mantra.sim.bitstamp import BitstampSimulator
from mantra.venues.events import Status
from mantra.venues.kraken.instruments import parse_instruments as kraken_instruments
from mantra.venues.kraken.protocol import KrakenProtocol
from mantra.sim.kraken import KrakenSimulator
from mantra.sim import ReplayMarket

# name -> (venue, recordings, simulator, speed, protocol factory(sim, symbols, depth))
REPLAYS = {
    "binance": ("binance", ["BINANCE.ws.1.0", "BINANCE.http.0.0"], BinanceSimulator, 25.0,
                lambda sim, syms, depth: BinanceProtocol(
                    _registry("binance", binance_instruments, sim.rest_url + "/api/v3/exchangeInfo"), syms,
                    ws_url=sim.ws_url, rest_url=sim.rest_url, sync_wait_s=0.3, refetch_s=0.5)),
    "bitstamp": ("bitstamp", ["BITSTAMP.ws.1.0", "BITSTAMP.http.0.0"], BitstampSimulator, 20.0,
                 lambda sim, syms, depth: BitstampProtocol(
                     _registry("bitstamp", bitstamp_instruments, sim.rest_url + "/api/v2/trading-pairs-info/"), syms,
                     ws_url=sim.ws_url, rest_url=sim.rest_url, refetch_s=0.5)),
    "bitfinex": ("bitfinex", ["BITFINEX.ws.11.0"], BitfinexSimulator, 20.0,
                 lambda sim, syms, depth: BitfinexProtocol(InstrumentRegistry(), syms, depth, url=sim.ws_url)),
    "kraken-v1": ("kraken", ["KRAKEN.ws.50.0"], KrakenSimulator, 20.0,
                  lambda sim, syms, depth: KrakenProtocol(
                      _registry("kraken", kraken_instruments, sim.rest_url + "/0/public/AssetPairs"), syms, depth,
                      version=1, url=sim.v1_url)),
}


def _recorded(name):
    venue, files, *_ = REPLAYS[name]
    paths = [CAPTURES / f for f in files]
    if not all(p.exists() for p in paths):
        pytest.skip(f"recordings {files} not available")
    return venue, paths


@pytest.mark.parametrize("name", list(REPLAYS))
def test_a_replayed_recording_reaches_the_client_as_the_venue_sent_it(name):
    venue, paths = _recorded(name)
    _, _, sim_cls, speed, proto = REPLAYS[name]
    market = ReplayMarket(venue, paths, speed=speed, max_gap_s=0.05)
    direct = market.protocol  # the books as read straight from the recording
    syms = [i.symbol for i in market.instruments]
    with sim_cls(market) as sim:
        feed = Feed(proto(sim, syms, direct.depth))
        feed.connect()
        feed.pump(lambda: sim.finished and synced(feed, syms)(), timeout=8)
        converge(feed, sim, syms)
        feed.close()
    assert bad_counts(feed, syms) == {"gaps": 0, "checksum_failed": 0, "crossed": 0, "malformed": 0}
    recorded = {direct.registry[i].symbol: direct.books[i] for i in direct.books
                if direct.status[i] == Status.SYNCED}
    assert recorded, "the recording synced no book"
    for sym, want in recorded.items():
        mine = feed.p.registry.get(feed.p.venue, sym)
        theirs = direct.registry.get(direct.venue, sym)
        assert (mine.price_scale, mine.size_scale) == (theirs.price_scale, theirs.size_scale)
        book = feed.p.books[mine.id]
        assert book.bids == want.bids and book.asks == want.asks, sym


def test_a_fault_during_a_replay_is_recovered_from():
    venue, paths = _recorded("kraken-v1")
    market = ReplayMarket(venue, paths, speed=5.0, max_gap_s=0.05)
    syms = [i.symbol for i in market.instruments]
    with KrakenSimulator(market) as sim:
        feed = Feed(REPLAYS["kraken-v1"][4](sim, syms, market.protocol.depth))
        feed.connect()
        feed.pump(synced(feed, syms, messages=1), timeout=5)
        sim.corrupt_checksum_next()
        feed.pump(lambda: bad_counts(feed, syms)["checksum_failed"] == 1 and synced(feed, syms)(), timeout=5)
        converge(feed, sim, syms)
        assert sum(feed.p.stats[i].resyncs for i in iids(feed, syms)) == 1
        feed.close()
