"""``VenueAccount``: the account handler of one venue — ``OrderRequest`` in, the venue's answers out.

    [actors.binance_orders]
    class = "mantra.execution.actor:VenueAccount"
    inputs = { requests = "requests" }
    outputs = { updates = "updates", fills = "fills", balances = "balances" }
    [actors.binance_orders.params]
    venue = "binance"
    instruments = []                       # the system's
    options = { unknown_orders = "cancel" }  # the venue protocol's settings (URLs, recv window, ...)
    credentials = { key_env = "MANTRA_BINANCE_API_KEY", secret_env = "MANTRA_BINANCE_API_SECRET" }

The venue's sans-IO order protocol (``venues/<venue>/orders.py``) does the venue's work; the shared
``AccountRunner`` does the IO, read from this actor's loop (``wait_ms`` > 0: the loop blocks up to
that long on the handler's sockets when idle, like the feeds).  Every message is published with the
receipt time of the frame or answer it came from as its origin.

Safety: the handler connects only to loopback addresses (the local venue simulators) unless the
system runs in ``live`` mode, which ``mantra run --live`` alone sets (``live`` param).  A venue that
halts order entry (banned, credentials refused) answers ``Reject.HALTED``: the overseer trips its kill
switch on it.  ``cancel_all_on_stop`` cancels every open order when the handler stops.  A backtest
of the system replaces the handler by the mock exchange, with the handler's ``paper`` terms
(``maker_bps``, ``taker_bps``, ``latency_ns``, ``balances``, ...; see ``trading/mock_exchange.py``).
"""

from __future__ import annotations

import importlib
from ..instruments import VENUE_IDS
from ..spine.messages import BalanceUpdate, Fill, OrderAction, OrderRequest, OrderStatus, OrderUpdate
from ..trading.accounts import AccountHandler, Reject
from ..venues.account import Halt
from . import secrets
from .runner import AccountRunner

PROTOCOLS = {"binance": "mantra.venues.binance.orders:BinanceOrders",
             "kraken": "mantra.venues.kraken.orders:KrakenOrders",
             "coinbase": "mantra.venues.coinbase.orders:CoinbaseOrders",
             "bitstamp": "mantra.venues.bitstamp.orders:BitstampOrders",
             "bitfinex": "mantra.venues.bitfinex.orders:BitfinexOrders"}


def protocol_class(venue: str):
    path = PROTOCOLS.get(venue)
    if path is None:
        raise ValueError(f"no order entry for venue {venue!r} yet (have: {', '.join(PROTOCOLS)})")
    mod, _, cls = path.partition(":")
    return getattr(importlib.import_module(mod), cls)


class VenueAccount(AccountHandler):
    venue = ""
    options: dict = {}
    credentials: dict = {}
    connection: dict = {}  # AccountRunner settings (timeouts, back-off, timer)
    paper: dict = {}  # the mock exchange's terms for this venue when the system is backtested
    live = False
    cancel_all_on_stop = True
    wait_ms = 10.0

    def __init__(self, **params):
        super().__init__(**params)
        self.venue = str(self.venue).lower()
        if self.venue not in VENUE_IDS:
            raise ValueError(f"venue: unknown venue {self.venue!r} (known: {', '.join(VENUE_IDS)})")
        protocol_class(self.venue)  # checked before the system starts
        self.venues = (self.venue,)

    def on_start(self) -> None:
        super().on_start()
        creds = secrets.load(self.venue, self.credentials)
        insts = [i for i in self.registry if i.venue == self.venue]
        self.protocol = protocol_class(self.venue)(creds, insts, **dict(self.options))
        self.published = self._fills_published()
        self.runner = AccountRunner(self.protocol, self._publish, loopback_only=not self.live, **dict(self.connection))
        self.halted = ""
        self.runner.start()
        self.wakeup = self.clock.now()

    def submit(self, r: OrderRequest) -> None:
        if r.action == OrderAction.CANCEL_ALL:
            self.runner.cancel_all()
        else:
            self.runner.submit(r)

    def loop(self) -> bool:
        n = self.runner.poll(self.wait_ms / 1000 if self.wait_ms > 0 else 0.0)
        self.wakeup = self.clock.now()
        return bool(n)

    def on_stop(self) -> None:
        if getattr(self, "runner", None) is None:
            return
        try:
            if self.cancel_all_on_stop and not self.runner.halted:
                self.runner.cancel_all()
                self.runner.poll(0.2)
        finally:
            self.runner.close()

    def _fills_published(self) -> set:
        """(order id, trade id) of this venue's fills still in our output queue: a restarted handler
        reconciles recent fills with the venue and must not publish those a predecessor did."""
        ring = getattr(self.fills, "ring", None)
        if ring is None:
            return set()
        n = ring.count()
        c = ring.reader("", start=max(n - ring.capacity, 0), register=False)
        out = set()
        for _ in range(n - c.seq):
            f = c.read()
            if f is None:
                break
            if f.instrument in self.served:
                out.add((f.order_id, f.trade_id))
        return out

    def _publish(self, m, ts: int) -> None:
        self.set_origin(ts)
        t = type(m)
        if t is OrderUpdate:
            self.updates.send(m)
        elif t is Fill:
            key = (m.order_id, m.trade_id)
            if key in self.published:
                self.repeats = getattr(self, "repeats", 0) + 1  # published before a restart
                return
            self.published.add(key)
            self.fills.send(m)
        elif t is BalanceUpdate:
            self.balances.send(m)
        elif t is Halt:
            self.halted = m.reason
            self.log.error("%s: %s order entry halted: %s: the kill switch trips", self.name, self.venue, m.reason)
            iid = min(self.served, default=0)  # says which venue
            self.updates.send(OrderUpdate(0, 0, 0, 0, ts, iid, OrderStatus.REJECTED, 0, int(Reject.HALTED), b""))

