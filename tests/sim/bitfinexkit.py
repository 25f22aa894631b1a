"""The order-entry harness (``accountkit.Harness``) for Bitfinex: ``BitfinexOrders`` against the
Bitfinex simulator.  Bitfinex names our orders by integers (``gid``/``cid``, see
``venues/bitfinex/orders.py``), not by ``client_id()``'s text: the checks that ask the simulator
about one of our orders use its ``cid``."""

from __future__ import annotations

from accountkit import Harness
from mantra.sim import bitfinex as bitfinex_sim
from mantra.venues.account import Credentials
from mantra.venues.bitfinex.orders import BitfinexOrders, bfx_ids


def cid(order_id: int) -> int:
    """The venue's client id of our order."""
    return bfx_ids(order_id)[1]


class BitfinexHarness(Harness):
    rest_lots = 20

    def __init__(self, sim, creds=None, first_id: int = 1000, **settings):
        settings.setdefault("rest_per_min", 10_000)  # the state machine asks a lot; the limit is tested alone
        super().__init__(sim, BitfinexOrders, "tBTCUSD",
                         creds or Credentials(bitfinex_sim.DEFAULT_KEY, bitfinex_sim.DEFAULT_SECRET),
                         lambda v: v[0], first_id=first_id, **settings)

    def sim_cid(self, oid) -> int:
        return cid(oid)
