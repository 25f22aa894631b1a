"""Pre-trade risk for the overseer: why a request may be refused, per-instrument limits, per-venue
order-rate limits, and the kill switch."""

from __future__ import annotations

from collections import deque
from enum import IntEnum
from heapq import heapify, heappop, heappush
from pathlib import Path

from ..instruments import Instrument, InstrumentRegistry
from .common import resolve


class Refusal(IntEnum):
    """Why the overseer did not send a request (counted per reason, each change of reason logged)."""

    KILLED = 1
    UNKNOWN_INSTRUMENT = 2
    NO_VENUE = 3  # the instrument's venue is not configured (fees, rate limit unknown)
    NO_LIMITS = 4  # no position/notional limits configured for the instrument
    FILTER = 5  # tick / lot / min size / min notional: the venue would reject it
    SELF_TRADE = 6  # would cross one of our own orders on the same venue
    POSITION = 7
    NOTIONAL = 8
    BALANCE = 9
    RATE = 10


class Limits:
    """Per instrument: ``max_position`` (base, either direction) and ``max_notional`` (quote at the
    instrument's price scale), both checked on the worst case: every open order on one side fills
    (the overseer's ``_check``)."""

    __slots__ = ("max_position", "max_notional")

    def __init__(self, max_position: int, max_notional: int):
        self.max_position, self.max_notional = max_position, max_notional

    @classmethod
    def parse(cls, reg: InstrumentRegistry, spec: dict) -> dict[int, "Limits"]:
        """``{"binance:BTCUSDT": {max_position = "0.5", max_notional = "25000"}}`` -> by instrument id."""
        out = {}
        for ref, d in (spec or {}).items():
            inst = resolve(reg, int(ref) if str(ref).isdigit() else ref)
            unknown = set(d) - {"max_position", "max_notional"}
            if unknown:
                raise ValueError(f"limits for {ref}: unknown keys {sorted(unknown)}")
            out[inst.id] = cls(inst.size(str(d["max_position"])), inst.price(str(d["max_notional"])))
        return out


class RateLimit:
    """At most ``count`` requests per sliding ``window_ns``."""

    __slots__ = ("count", "window", "sent")

    def __init__(self, count: int, window_ns: int):
        if count <= 0 or window_ns <= 0:
            raise ValueError("rate limit needs count > 0 and window > 0")
        self.count, self.window = count, window_ns
        self.sent: deque[int] = deque()

    def allows(self, now: int) -> bool:
        sent, edge = self.sent, now - self.window
        while sent and sent[0] <= edge:
            sent.popleft()
        return len(sent) < self.count

    def record(self, now: int) -> None:
        self.sent.append(now)

    def next_free(self, now: int) -> int:
        """When a refused request may go (0: now)."""
        return 0 if self.allows(now) else self.sent[0] + self.window


class KillSwitch:
    """Latched: once tripped it stays tripped until the process restarts.  Tripped by code
    (``trip``) or by an operator creating ``path`` (checked at most every ``every_ns``)."""

    def __init__(self, path: str = "", every_ns: int = 100_000_000):
        self.path = Path(path) if path else None
        self.every = every_ns
        self.next_check = 0
        self.reason = ""

    def check(self, now: int) -> bool:
        """True when the switch has just been tripped by the file."""
        if self.reason or self.path is None or now < self.next_check:
            return False
        self.next_check = now + self.every
        if self.path.exists():
            self.reason = f"kill file {self.path} exists"
            return True
        return False

    def trip(self, reason: str) -> bool:
        if self.reason:
            return False
        self.reason = reason
        return True

    def __bool__(self) -> bool:
        return bool(self.reason)


class Exposure:
    """What our orders hold, kept per order as it changes so a check costs O(1), not a walk over
    every open order: per instrument the size each side may still add to the position
    (``lock_qty``: what may still execute plus executions whose fills have not arrived), and per
    ``(venue, asset)`` the amount those orders lock, at the balance's scale.

    The overseer calls ``account(o, q, key, held)`` when order ``o``'s ``lock_qty`` ``q`` or what
    it locks changed; ``held`` is what it locks (0 and ``key`` None when its instrument is not among
    our balances).
    """

    __slots__ = ("open", "held", "of")

    def __init__(self):
        self.open: dict[tuple[int, int], int] = {}  # (instrument, side) -> lock_qty summed
        self.held: dict[tuple[str, str], int] = {}  # (venue, asset) -> locked amount
        self.of: dict[int, tuple] = {}  # order id -> (instrument, side, qty, key, held) counted

    def account(self, o, q: int, key, held: int) -> None:
        old = self.of.pop(o.order_id, None)
        if old is not None:
            iid, side, n, k, h = old
            self.open[(iid, side)] -= n
            if k is not None:
                self.held[k] -= h
        if q:
            self.of[o.order_id] = (o.instrument, o.side, q, key, held)
            s = (o.instrument, o.side)
            self.open[s] = self.open.get(s, 0) + q
            if key is not None:
                self.held[key] = self.held.get(key, 0) + held


class Extremes:
    """Per instrument and side, our most aggressive live price: the highest buy, the lowest sell
    (an order with an amend in flight counts at the worse of its price and the amend's): what a NEW
    must not cross (self-trade).  Kept as orders change, so no check or push walks the orders:
    per side a count of orders at each price and a heap of those prices with lazy deletion (a
    price whose count fell to 0 leaves the heap when it reaches the top, or when the heap is
    rebuilt because stale entries outnumber live prices).  O(log n) per change, O(1) amortised to
    read.

    The overseer calls ``set(o.order_id, iid, side, price)`` after anything that may have changed
    an order; ``price`` None once it is terminal."""

    __slots__ = ("at", "count", "heap")

    def __init__(self):
        self.at: dict[int, tuple[int, int, int]] = {}  # order id -> (instrument, side, price) counted
        self.count: dict[tuple[int, int], dict[int, int]] = {}  # (instrument, side) -> {price: orders}
        self.heap: dict[tuple[int, int], list[int]] = {}  # (instrument, side) -> heap of -side * price

    def set(self, oid: int, iid: int, side: int, price: int | None) -> bool:
        """Order ``oid`` counts at ``price`` (None: not at all) from now on; whether that changed."""
        old = self.at.get(oid)
        if old is not None:
            if price is not None and old[2] == price and old[0] == iid and old[1] == side:
                return False
            c = self.count[old[:2]]
            n = c[old[2]] - 1
            if n:
                c[old[2]] = n
            else:
                del c[old[2]]
            if price is None:
                del self.at[oid]
                return True
        elif price is None:
            return False
        k = (iid, side)
        self.at[oid] = (iid, side, price)
        c = self.count.get(k)
        if c is None:
            c = self.count[k] = {}
            self.heap[k] = []
        n = c.get(price, 0)
        c[price] = n + 1
        if not n:
            h = self.heap[k]
            if len(h) > 2 * len(c) + 8:  # mostly stale: rebuild from the live prices (amortised O(1))
                h[:] = [-side * p for p in c]
                heapify(h)
            else:
                heappush(h, -side * price)
        return True

    def best(self, iid: int, side: int) -> int | None:
        """The highest live buy (side 1) or lowest live sell (side -1) price; None: no order."""
        c = self.count.get((iid, side))
        if not c:
            return None
        h = self.heap[(iid, side)]
        while -side * h[0] not in c:
            heappop(h)
        return -side * h[0]
