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
    instrument's price scale), both checked on the worst case: every open order on one side fills."""

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

    def refusal(self, inst: Instrument, price: int, pos: int, buys: int, sells: int) -> Refusal | None:
        """``buys``/``sells``: open size per side including the order being checked."""
        long_, short = pos + buys, pos - sells
        if long_ > self.max_position or -short > self.max_position:
            return Refusal.POSITION
        if max(abs(long_), abs(short)) * price // 10**inst.size_scale > self.max_notional:
            return Refusal.NOTIONAL
        return None


class RateLimit:
    """At most ``count`` requests per sliding ``window_ns``."""

    __slots__ = ("count", "window", "sent")

    def __init__(self, count: int, window_ns: int):
        if count <= 0 or window_ns <= 0:
            raise ValueError("rate limit needs count > 0 and window > 0")
        self.count, self.window = count, window_ns
        self.sent: deque[int] = deque()

    def _purge(self, now: int) -> None:
        sent, edge = self.sent, now - self.window
        while sent and sent[0] <= edge:
            sent.popleft()

    def allows(self, now: int) -> bool:
        self._purge(now)
        return len(self.sent) < self.count

    def record(self, now: int) -> None:
        self.sent.append(now)

    def next_free(self) -> int:
        """When a refused request may go (valid right after ``allows`` said no)."""
        return self.sent[0] + self.window if self.sent else 0


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
