"""The Feed actor against the local venue simulators, inside a running system: every venue syncs,
survives injected faults (lost frames, disconnects, malformed frames, REST rate limits) through
the real runner, and the books a consumer rebuilds from the spine end equal to the simulator's."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import feedkit  # noqa: E402

from mantra.runtime.config import parse  # noqa: E402
from mantra.runtime.supervisor import run_deterministic  # noqa: E402
from mantra.store.capture import CaptureReader, Kind  # noqa: E402
from mantra.sim.binance import BinanceSimulator  # noqa: E402
from mantra.sim.bitfinex import BitfinexSimulator  # noqa: E402
from mantra.sim.bitstamp import BitstampSimulator  # noqa: E402
from mantra.sim.coinbase import CoinbaseSimulator  # noqa: E402
from mantra.venues.events import Status  # noqa: E402
from mantra.sim.kraken import KrakenSimulator  # noqa: E402

# venue -> (simulator, symbols, protocol options from the simulator, book depth, faults)
CASES = {
    "binance": (BinanceSimulator, ["BTCUSDT", "ETHUSDT"],
                lambda s: {"ws_url": s.ws_url, "rest_url": s.rest_url, "refetch_s": 0.5}, 0,
                ["drop", "ratelimit", "malformed"]),
    "bitstamp": (BitstampSimulator, ["btcusd", "xrpusd"],
                 lambda s: {"ws_url": s.ws_url, "rest_url": s.rest_url, "audit_s": 0.5, "refetch_s": 0.5}, 0,
                 ["disconnect", "malformed"]),
    "coinbase": (CoinbaseSimulator, ["BTC-USD", "SOL-USD"], lambda s: {"url": s.ws_url}, 0,
                 ["drop", "disconnect"]),
    "kraken": (KrakenSimulator, ["BTC/USD", "XRP/USD"], lambda s: {"url": s.ws_url}, 10,
               ["drop", "disconnect"]),
    "bitfinex": (BitfinexSimulator, ["tBTCUSD", "tXRPUSD"], lambda s: {"url": s.ws_url}, 25,
                 ["drop", "malformed"]),
}


@pytest.mark.parametrize("venue", list(CASES))
def test_feed_survives_faults_and_ends_with_the_simulators_book(venue, tmp_path, shm_root):
    cls, symbols, options, depth, faults = CASES[venue]
    with cls(seed=11, rate=150.0) as sim:
        feedkit.SIMS[venue] = sim
        doc = {"system": {"name": f"sim{venue}", "clock": "deterministic"},
               "queues": {"l2": {"type": "L2Update", "capacity": 1 << 16},
                          "trades": {"type": "TradeUpdate", "capacity": 1 << 12},
                          "status": {"type": "BookStatus", "capacity": 1 << 10}},
               "actors": {
                   "feed": {"class": "mantra.feeds.actor:Feed",
                            "params": {"venue": venue, "symbols": symbols, "options": options(sim),
                                       "capture_dir": str(tmp_path / "cap"),
                                       "connection": {"backoff_s": 0.05, "timer_s": 0.25}},
                            "outputs": {"l2": "l2", "trades": "trades", "status": "status"}},
                   "check": {"class": "feedkit:SimCheck",
                             "params": {"sim": venue, "symbols": symbols, "faults": faults, "depth": depth},
                             "inputs": {"l2": "l2", "trades": "trades", "status": "status"}}}}
        runner = run_deterministic(parse(doc))
        feedkit.SIMS.pop(venue)
    feed, check = (s.actor for s in runner.slots)
    assert check.done, (check.phase, check.fault, check.recovered, check.status, feed.runner.stats())
    assert check.recovered == faults and check.trades > 0
    stats = feed.runner.stats()
    if "disconnect" in faults or "ratelimit" in faults:
        assert stats["reconnects"] >= 1 and Status.DISCONNECTED in check.seen_status
    proto = feed.protocol
    if "drop" in faults:  # the loss was found by the protocol, not healed by chance
        assert sum(st.gaps + st.checksum_failed for st in proto.stats.values()) > 0
    if "malformed" in faults:
        assert proto.malformed >= 1
    if "ratelimit" in faults:
        assert stats["http_status"].get(429, 0) == 2 and stats["fetch_errors"] == 2
    # The capture of the run holds every frame the runner handled, on as many connections.
    reader = CaptureReader(tmp_path / "cap")
    recs = list(reader)
    assert reader.truncated == reader.corrupt == 0
    assert sum(1 for r in recs if r.kind == Kind.RECV) == stats["frames"]
    assert sum(1 for r in recs if r.kind == Kind.OPEN) == stats["connects"]
    assert sum(1 for r in recs if r.kind == Kind.SENT) == stats["sent"]
