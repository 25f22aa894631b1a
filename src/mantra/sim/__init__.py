"""Local venue simulators: each venue's native WebSocket feed and REST API on loopback.

Machines without internet run their feeds, the demo, the drill and the tests against these.  A
package of its own, apart from the protocols in ``venues/``, so that what the tests check against
is never the code under test.  ``market`` (what changes: synthetic or replayed), ``server`` (the
WebSocket and REST servers, the truth, the faults' mechanics), ``faults`` (names, arguments,
schedules), ``oracles`` (the checksums, from the venues' documents), one module per venue
(``binance``, ``bitstamp``, ``bitfinex``, ``coinbase``, ``kraken``: its messages and REST
endpoints) and ``spawn`` (by venue name, as child processes; ``python -m mantra.sim <venue>``).
"""

from .faults import FAULTS, fault_option, parse_fault
from .market import ASK, BID, DepthView, Listing, ReplayMarket, SimTrade, Step, SyntheticMarket, collapse
from .oracles import bitfinex_checksum, kraken_checksum
from .server import Client, Reply, Request, RestError, VenueSimulator
from .spawn import SIMULATORS, account_options, feed_options, make_simulator, spawn, stop_spawned

__all__ = ["ASK", "BID", "FAULTS", "SIMULATORS", "Client", "DepthView", "Listing", "ReplayMarket", "Reply",
           "Request", "RestError", "SimTrade", "Step", "SyntheticMarket", "VenueSimulator", "bitfinex_checksum",
           "account_options", "collapse", "fault_option", "feed_options", "kraken_checksum", "make_simulator", "parse_fault",
           "spawn", "stop_spawned"]
