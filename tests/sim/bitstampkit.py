"""The Bitstamp order-entry harness: ``accountkit.Harness`` with Bitstamp's protocol, its simulator's
key and the pair the tests trade.  Bitstamp's ``account_balances/`` gives totals and what is
available: both are compared with the simulator's truth."""

from __future__ import annotations

from accountkit import Harness
from mantra.sim.bitstamp import DEFAULT_KEY, DEFAULT_SECRET
from mantra.venues.account import Credentials
from mantra.venues.bitstamp.orders import BitstampOrders


class BitstampHarness(Harness):
    rest_lots = 200_000  # lots of 0.00000001 BTC: 0.002 BTC, above the 10 USD minimum order value
    take_lots = 400_000

    def __init__(self, sim, creds=None, first_id: int = 1000, **settings):
        super().__init__(sim, BitstampOrders, "btcusd", creds or Credentials(DEFAULT_KEY, DEFAULT_SECRET),
                         lambda v: int(v["id"]), first_id=first_id, **settings)
