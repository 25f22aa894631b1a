"""Clocks: real time for live systems, a simulated one for deterministic runs.

All spine timestamps are ns since the epoch.  Under a SimClock the runtime stamps publish times from
the simulated clock too, so two runs over the same input produce byte-identical records.
"""

from __future__ import annotations

import time

from .. import _spine


def utc(ns: int, digits: int = 9) -> str:
    """ns since the epoch as ISO 8601 UTC text, ``digits`` fraction digits:
    ``2023-02-09T20:32:50.714964855Z`` (the fraction from the integer: datetime keeps only µs)."""
    s, frac = divmod(int(ns), 1_000_000_000)
    head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
    return f"{head}.{str(frac).rjust(9, '0')[:digits]}Z" if digits else f"{head}Z"


class RealClock:
    simulated = False
    now = staticmethod(_spine.now)  # the C function itself: no Python frame on the hot path

    def stamp(self) -> int:
        """Publish time to hand the C writer: 0 means "read the clock in C"."""
        return 0


class SimClock:
    simulated = True

    def __init__(self, start_ns: int = 0):
        # t: "now"; while an actor handles a record, the runtime's C dispatcher sets it to that
        # record's publish time; advance_to(0) returns it to the run's present (high)
        self.t = self.high = start_ns

    def now(self) -> int:
        return self.t

    def stamp(self) -> int:
        return self.t or 1

    def advance_to(self, t: int) -> None:
        if t > self.high:
            self.high = t
        self.t = self.high
