"""Pre-trade risk for the overseer: why a request may be refused, per-instrument limits, per-venue
order-rate limits, and the kill switch."""

from __future__ import annotations

from collections import deque
from enum import IntEnum
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

    The overseer calls ``account(o, held)`` after anything that may have changed order ``o``;
    ``held`` is what it locks (0 and ``key`` None when its instrument is not among our balances).
    """

    __slots__ = ("open", "held", "of")

    def __init__(self):
        self.open: dict[tuple[int, int], int] = {}  # (instrument, side) -> lock_qty summed
        self.held: dict[tuple[str, str], int] = {}  # (venue, asset) -> locked amount
        self.of: dict[int, tuple] = {}  # order id -> (instrument, side, qty, key, held) counted

    def account(self, o, key, held: int) -> None:
        old = self.of.pop(o.order_id, None)
        if old is not None:
            iid, side, q, k, h = old
            self.open[(iid, side)] -= q
            if k is not None:
                self.held[k] -= h
        q = o.lock_qty
        if q:
            self.of[o.order_id] = (o.instrument, o.side, q, key, held)
            s = (o.instrument, o.side)
            self.open[s] = self.open.get(s, 0) + q
            if key is not None:
                self.held[key] = self.held.get(key, 0) + held
