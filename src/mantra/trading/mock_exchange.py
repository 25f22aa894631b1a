"""The mock exchange: plays every venue in paper trading and backtests.

An actor around the matching engine (``matching.Matching``, whose docstring says how orders fill,
what is refused, how money and balances are kept): it keeps its own books from the market-data
streams (the runtime applies each L2Update to them) and matches our orders against them; our
orders never enter those public books (the market does not react to us).

- Requests take effect ``latency_ns`` after they arrive, answers are published ``response_ns``
  after the fact, both on the actor's clock (so it works under the simulated clock).  A venue
  acts on one connection's requests in the order sent.  Requests that are due act before an
  exchange message or trade that follows them.
- After the last record of each exchange message the engine sees the moved book; each public
  trade goes to the engine; answers go out with the origin of what caused them.
- Starting balances are published when the actor starts.

Params: ``instruments`` (registry), ``venues = { binance = { maker_bps = 1, taker_bps = 5,
latency_ns = 0, response_ns = 0, amend = true, balances = { BTC = "1", USDT = "50000" } } }``,
``l2_ports`` / ``trade_ports`` (input ports carrying L2Update / TradeUpdate, default ``l2`` /
``trades``).
"""

from __future__ import annotations

import heapq

from ..book import Book
from ..spine.messages import L2Update, OrderRequest, TradeUpdate
from .accounts import AccountHandler
from .common import bind_ports, settings
from .matching import Matching, Venue


class _Venue(Venue):
    """The engine's venue terms plus the actor's latencies."""

    __slots__ = ("latency", "response")
    KEYS = ("maker_bps", "taker_bps", "latency_ns", "response_ns", "amend", "balances")

    def __init__(self, name, maker_bps=0, taker_bps=0, latency_ns=0, response_ns=0, amend=True, balances=None):
        super().__init__(name, maker_bps, taker_bps, amend, balances)
        self.latency, self.response = int(latency_ns), int(response_ns)


class MockExchange(AccountHandler):
    loop_after_input = False  # handlers act on what is due themselves; the loop runs at wake-ups
    venues: dict = {}
    l2_ports = ("l2",)
    trade_ports = ("trades",)

    def __init__(self, **params):
        super().__init__(**params)
        self.books: dict[int, Book] = {}  # the runtime applies L2Updates to them in C
        # the matching engine watches them (Book.watch): only messages and trades that can reach our
        # resting orders call the handlers below
        self.book_ports = {p: self.books for p in (*self.l2_ports, *self.trade_ports)}
        self.inputs = ("requests",) + bind_ports(self, self.l2_ports, self._on_l2) + \
            bind_ports(self, self.trade_ports, self._on_trade)
        self.messages = {**self.messages, **{p: L2Update for p in self.l2_ports},
                         **{p: TradeUpdate for p in self.trade_ports}}
        # venue settings checked here, before the system starts, not in a forked process
        self.v = {name: settings(f"venues.{name}", _Venue, cfg, name=name)
                  for name, cfg in dict(self.venues).items()}

    def on_start(self) -> None:
        self._last_due: dict[str, int] = {}
        super().on_start()
        self.pending: list = []  # (due, seq, origin, request)
        self.outbox: list = []  # (due, seq, origin, port, message)
        self._seq = 0
        self.matching = Matching(self.registry, self.v, self._emit, books=self.books, name=self.name, log=self.log)
        now = self._now = self.clock.now()
        self._origin = 0
        self.matching.flush_balances(now)
        self._send_due(now)

    # the engine's state, for tests and inspection
    orders = property(lambda self: self.matching.orders, doc="live orders by id")
    bal = property(lambda self: self.matching.bal, doc="(venue, asset) -> [total, locked]")
    counts = property(lambda self: self.matching.counts, doc="refusals and ignored requests by reason")

    # ------------------------------------------------------------------ inputs
    def submit(self, r: OrderRequest) -> None:
        inst = self.registry.by_id.get(r.instrument)
        venue = self.v[inst.venue]
        # a venue acts on one connection's requests in the order sent, whatever their stamps
        due = max(self.clock.now() + venue.latency, self._last_due.get(inst.venue, 0))
        self._last_due[inst.venue] = due
        self._seq += 1
        heapq.heappush(self.pending, (due, self._seq, self.origin, r))
        self._set_wakeup()

    def _on_l2(self, m) -> None:
        """The last record of an exchange message: its levels are in the book already.  Requests
        that were due act before it (the runner runs this actor's loop at their due time)."""
        if self.matching.resting.get(m.instrument):
            self._origin = self.origin
            self._now = now = self.clock.now()
            self.matching.book_moved(m.instrument, now)

    def _on_trade(self, t: TradeUpdate) -> None:
        if not self.matching.resting.get(t.instrument):
            return
        now = self.clock.now()
        self._apply_due(now)
        self._origin, self._now = self.origin, now
        self.matching.trade(t.instrument, t.side, t.price, t.size, now)

    def loop(self) -> bool:
        now = self.clock.now()
        did = self._apply_due(now)
        did |= self._send_due(now)
        self._set_wakeup()
        return did

    # ------------------------------------------------------------------ timing
    def _apply_due(self, now: int) -> bool:
        pending, did = self.pending, False
        while pending and pending[0][0] <= now:
            _, _, origin, r = heapq.heappop(pending)
            self._origin, self._now = origin, now
            self.matching.act(r, now)
            did = True
        return did

    def _send_due(self, now: int) -> bool:
        out, did = self.outbox, False
        while out and out[0][0] <= now:
            _, _, origin, port, msg = heapq.heappop(out)
            self.set_origin(origin)
            getattr(self, port).send(msg)
            did = True
        return did

    def _set_wakeup(self) -> None:
        w = [q[0][0] for q in (self.pending, self.outbox) if q]
        self.wakeup = min(w) if w else 0

    _origin = _now = 0

    def _emit(self, venue: str, port: str, msg) -> None:
        """The engine's answers: published ``response_ns`` after the event, with the origin of
        what caused them."""
        self._seq += 1
        due = self._now + self.v[venue].response
        heapq.heappush(self.outbox, (due, self._seq, self._origin, port, msg))
        if not self.wakeup or due < self.wakeup:
            self.wakeup = due  # handlers answer through the loop: ask for it
