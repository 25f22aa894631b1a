"""The harness the order-entry tests share: a venue's order protocol through the shared
``AccountRunner`` against that venue's simulator over loopback, what they publish landing in an
overseer's books, and the invariants every test checks (no order placed twice, every fill counted
once, balances equal to the simulator's truth).  ``BinanceHarness`` and ``KrakenHarness`` name the
venue: its protocol class, its simulator's credentials and the symbol traded."""

from __future__ import annotations

import json

from fixtures import VECTORS
from mantra.execution.runner import AccountRunner
from mantra.sim import binance as binance_sim
from mantra.sim import kraken as kraken_sim
from mantra.spine.messages import BalanceUpdate, Fill, OrderAction, OrderRequest, OrderUpdate
from mantra.trading.accounts import Orders
from mantra.venues.account import Credentials, client_id
from mantra.venues.binance.orders import BinanceOrders
from mantra.venues.kraken.orders import KrakenOrders, trade_key
from waits import wait_for

KRAKEN_SECRET = json.loads(VECTORS.read_text())["kraken"]["signature_vectors"][0]["private_key"]


class Harness:
    """The protocol and runner against a simulator; what they publish lands in an overseer's books.

    ``protocol``: the venue's ``OrderProtocol`` class; ``symbol``: the instrument the tests trade
    (``btc``; its base and quote are the balances compared); ``creds``: the simulator's key;
    ``venue_trade_id``: the spine's ``trade_id`` of one of the simulator's fills; ``check_available``:
    compare the available balance too, not only the total."""

    def __init__(self, sim, protocol, symbol: str, creds, venue_trade_id, *, first_id: int = 1000,
                 check_available: bool = True, **settings):
        self.sim = sim
        self.symbol = symbol
        self.insts = {i.symbol: i for i in sim.instruments.values()}
        self.btc = self.insts[symbol]
        self.assets = (self.btc.quote, self.btc.base)
        self.venue_trade_id = venue_trade_id
        self.check_available = check_available
        settings.setdefault("reconcile_s", 30)
        self.proto = protocol(creds, list(self.insts.values()), ws_url=sim.ws_url, rest_url=sim.rest_url,
                              **settings)
        self.out: list = []
        self.orders = Orders()
        self.runner = AccountRunner(self.proto, self._sink, loopback_only=True, timer_s=0.05, backoff_s=0.05,
                                    backoff_max_s=0.2, http_timeout=3.0)
        self.next_id = first_id  # order ids never repeat across handlers (the overseer's are unique)

    def _sink(self, m, ts) -> None:
        self.out.append(m)
        if type(m) is OrderUpdate:
            self.orders.on_update(m)
        elif type(m) is Fill:
            self.orders.on_fill(m)

    def pump(self, cond, timeout: float = 10.0) -> bool:
        def step():
            self.runner.poll(0.02)
            return cond()
        return wait_for(step, timeout, step=0)

    def start(self) -> "Harness":
        self.runner.start()
        assert self.pump(lambda: self.proto.subscribed and self.balance_seen(self.btc.quote)), self.proto.counts
        return self

    def close(self) -> None:
        self.runner.close()

    def request(self, action, ref=0, price=0, size=0, side=1, flags=0, inst=None) -> OrderRequest:
        self.next_id += 1
        r = OrderRequest(self.next_id, ref, price, size, (inst or self.btc).id, 1, 0, action, side, flags)
        self.orders.sent(r)
        self.runner.submit(r)
        return r

    def new(self, price, size, side=1, flags=0):
        return self.request(OrderAction.NEW, price=price, size=size, side=side, flags=flags)

    def status(self, oid):
        o = self.orders.get(oid)
        return o.status if o else None

    def balance_seen(self, asset: str) -> BalanceUpdate | None:
        last = None
        for m in self.out:
            if type(m) is BalanceUpdate and m.asset.rstrip(b"\0").decode() == asset:
                last = m
        return last

    def fills(self, oid) -> list[Fill]:
        return [m for m in self.out if type(m) is Fill and m.order_id == oid]

    def book(self):
        return self.sim.book(self.symbol)

    def far_bid(self) -> int:
        return (self.book().best_bid() // self.btc.tick - 200) * self.btc.tick

    def fills_settled(self) -> bool:
        """Every fill the venue made for our orders has reached us (a reordered or cut stream
        delivers some late: held back, or fetched by the reconciliation)."""
        return all(sorted(f.trade_id for f in self.fills(oid)) == sorted(self.venue_trade_id(v)
                                                                         for v in self.sim.fills_of(client_id(oid)))
                   for oid in list(self.orders.active) + list(self.orders.done))

    def check_invariants(self) -> None:
        """No order placed twice; every fill the venue made arrived once; balances equal the truth."""
        assert all(n == 1 for n in self.sim.placed.values()), self.sim.placed
        assert self.sim.order_counts["duplicate_cid"] == 0
        self.pump(self.fills_settled, 5.0)
        for oid, o in list(self.orders.active.items()) + list(self.orders.done.items()):
            venue = self.sim.fills_of(client_id(oid))
            assert sorted(f.trade_id for f in self.fills(oid)) == sorted(self.venue_trade_id(v) for v in venue), oid
            assert o.fill_qty == sum(f.size for f in self.fills(oid)) <= max(o.size, o.filled)
        assert self.orders.counts["overfill"] == 0
        assert self.pump(self._balances_match, 5.0), [(a, self.balance_seen(a), self.sim.balance(a))
                                                      for a in self.assets]

    def _balances_match(self) -> bool:
        for asset in self.assets:
            b = self.balance_seen(asset)
            total, avail, scale = self.sim.balance(asset)
            k = 10 ** (b.scale - scale) if b is not None else 0
            if b is None or b.total != total * k or (self.check_available and b.available != avail * k):
                return False
        return True


class BinanceHarness(Harness):
    def __init__(self, sim, creds=None, first_id: int = 1000, **settings):
        super().__init__(sim, BinanceOrders, "BTCUSDT",
                         creds or Credentials(binance_sim.DEFAULT_KEY, binance_sim.DEFAULT_SECRET),
                         lambda v: v["id"], first_id=first_id, **settings)


class KrakenHarness(Harness):
    """Kraken reports totals only: the available balance is ours (``venues/kraken/orders.py``)."""

    def __init__(self, sim, creds=None, first_id: int = 1000, **settings):
        super().__init__(sim, KrakenOrders, "BTC/USD", creds or Credentials(kraken_sim.DEFAULT_KEY, KRAKEN_SECRET),
                         lambda v: trade_key(v["exec_id"]), first_id=first_id, check_available=False, **settings)
