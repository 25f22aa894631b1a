"""The Coinbase order-entry harness (``accountkit.Harness``): ``CoinbaseOrders`` against the Coinbase
simulator, trading BTC-USD with the SDK's EC test key (ES256) unless told another key.  The venue
reports available balances itself, so they are compared too."""

from __future__ import annotations

from accountkit import Harness
from mantra.sim import coinbase as coinbase_sim
from mantra.venues.account import Credentials
from mantra.venues.coinbase.orders import CoinbaseOrders, trade_key

EC_CREDS = Credentials(coinbase_sim.DEFAULT_KEY, coinbase_sim.DEFAULT_SECRET)
ED_CREDS = Credentials(coinbase_sim.DEFAULT_ED_KEY, coinbase_sim.DEFAULT_ED_SECRET)


class CoinbaseHarness(Harness):
    rest_lots = take_lots = 40_000  # lots of 0.00000001 BTC: 0.0004 BTC

    def __init__(self, sim, creds=None, first_id: int = 1000, **settings):
        super().__init__(sim, CoinbaseOrders, "BTC-USD", creds or EC_CREDS, lambda v: trade_key(v["trade_id"]),
                         first_id=first_id, **settings)
