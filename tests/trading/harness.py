"""Drive trading actors without the runtime: a settable clock, outputs that record, seqlock-like
arrays in memory.  The runtime itself is exercised by the end-to-end test."""

from __future__ import annotations

import logging

from mantra.runtime.actor import Tracking
from mantra.spine.messages import BalanceUpdate, Fill, IdealOrder, L2Flags, OrderUpdate


class Clock:
    simulated = True

    def __init__(self, t: int = 1_000_000_000):
        self.t = t

    def now(self) -> int:
        return self.t

    def stamp(self) -> int:
        return self.t


class Out:
    """Output stand-in; ``cls``: the port's message type (a ring hands readers that type, whether
    the sender gave it or a plain tuple of its fields)."""

    def __init__(self, cls=None):
        self.msgs = []
        self.sent = 0
        self.cls = cls

    def send(self, msg) -> int:
        self.msgs.append(msg if self.cls is None or type(msg) is self.cls else self.cls(*msg))
        self.sent += 1
        return self.sent

    def take(self) -> list:
        m, self.msgs = self.msgs, []
        return m


class Array:
    """SeqArray stand-in: versions +2 per write, 0 = never written, publisher kept per slot."""

    def __init__(self, size: int):
        self.size = size
        self.slots = [(0, None, 0)] * size
        self.writer = 0
        self.n_writes = 0

    def write(self, i, msg, *a):
        v = self.slots[i][0] + 2
        self.slots[i] = (v, IdealOrder(*msg), self.writer)  # a slot holds the message, as read back in C
        self.n_writes += 1
        return v

    def writes(self):
        return self.n_writes

    def read(self, i):
        return self.slots[i][:2]

    def version(self, i):
        return self.slots[i][0]

    def latest(self, i):
        v, msg, pub = self.slots[i]
        return v, msg, 0, pub


class Port:
    """ArrayPort stand-in bound to one writer id."""

    def __init__(self, array: Array, actor_id: int):
        self.array, self.id = array, actor_id

    @property
    def size(self):
        return self.array.size

    def write(self, i, msg):
        self.array.writer = self.id
        return self.array.write(i, msg)

    def read(self, i):
        return self.array.read(i)

    def version(self, i):
        return self.array.version(i)


def make(cls, clock: Clock, actor_id: int = 1, name: str = "", arrays: dict | None = None, **params):
    a = cls(**params)
    a.clock, a.id, a.name = clock, actor_id, name or cls.__name__.lower()
    a.log = logging.getLogger(f"test.{a.name}")
    a._track = Tracking()
    for p in a.outputs:
        setattr(a, p, Out(getattr(a, "messages", {}).get(p)))
    for p, arr in (arrays or {}).items():
        setattr(a, p, Port(arr, actor_id))
    a._request_stop = lambda: None
    a.on_start()
    return a


def l2(actor, msg, port: str = "l2") -> None:
    """Deliver an L2Update as the runtime does on a book port: apply it to the actor's book of its
    instrument, then call the handler if it ends an exchange message."""
    books = actor.book_ports[port]
    book = books.get(msg.instrument)
    if book is None:
        return
    if msg.flags & L2Flags.CLEAR:
        book.clear()
    book.apply(msg.side, msg.price, msg.size)
    if msg.flags & L2Flags.LAST:
        if port in actor.book_calls:
            if not book.crossed():
                getattr(actor, f"on_{port}")(msg.instrument, book, msg.exch_ts)
        else:
            getattr(actor, f"on_{port}")(msg)


def route(msgs, overseer=None, models=()):
    """Hand a venue's answers to the overseer and models."""
    for m in msgs:
        for a in ([overseer] if overseer else []) + list(models):
            if isinstance(m, OrderUpdate):
                a.on_updates(m)
            elif isinstance(m, Fill):
                a.on_fills(m)
            elif isinstance(m, BalanceUpdate) and hasattr(a, "on_balances"):
                a.on_balances(m)


INSTRUMENTS = [
    # price 0.01, size 0.001, min size 0.002, min notional 10.00
    dict(venue="binance", symbol="BTCUSDT", base="BTC", quote="USDT", price_scale=2, size_scale=3, tick=1, lot=1,
         min_size=2, min_notional=1000),
    # coarser tick (0.5) and lot (0.01) at finer scales: filters bite
    dict(venue="kraken", symbol="XBT/USDT", base="BTC", quote="USDT", price_scale=1, size_scale=4, tick=5, lot=100,
         min_size=100, min_notional=0),
]
