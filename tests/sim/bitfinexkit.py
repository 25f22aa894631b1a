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
    def __init__(self, sim, creds=None, first_id: int = 1000, **settings):
        settings.setdefault("rest_per_min", 10_000)  # the state machine asks a lot; the limit is tested alone
        super().__init__(sim, BitfinexOrders, "tBTCUSD",
                         creds or Credentials(bitfinex_sim.DEFAULT_KEY, bitfinex_sim.DEFAULT_SECRET),
                         lambda v: v[0], first_id=first_id, **settings)

    def fills_settled(self) -> bool:
        return all(sorted(f.trade_id for f in self.fills(oid)) == sorted(v[0] for v in self.sim.fills_of(cid(oid)))
                   for oid in list(self.orders.active) + list(self.orders.done))

    def check_invariants(self) -> None:
        """No order placed twice; every fill the venue made arrived once; balances equal the truth."""
        assert all(n == 1 for n in self.sim.placed.values()), self.sim.placed
        assert self.sim.order_counts["duplicate_cid"] == 0
        self.pump(self.fills_settled, 5.0)
        for oid, o in list(self.orders.active.items()) + list(self.orders.done.items()):
            venue = self.sim.fills_of(cid(oid))
            assert sorted(f.trade_id for f in self.fills(oid)) == sorted(v[0] for v in venue), oid
            assert o.fill_qty == sum(f.size for f in self.fills(oid)) <= max(o.size, o.filled)
        assert self.orders.counts["overfill"] == 0
        assert self.pump(self._balances_match, 5.0), [(a, self.balance_seen(a), self.sim.balance(a))
                                                      for a in self.assets]
