"""Logging as people read it: repeated warnings folded into counts, backtest lines stamped with
simulated time.

``setup(verbose)`` is what every command installs: one handler on stderr whose formatter stamps
UTC times (or the simulated clock's, while ``use_clock`` has one set) and a ``Repeats`` filter.
A message logged again from the same place (logger, level, format string) within ``window_s`` is
let through ``burst`` times, then only counted; the first one after the window says how many were
held back, and ``flush()`` (called when a run stops) reports what is still pending, so nothing is
lost from the count.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime, timezone

from .redact import RedactFilter

_clock = None  # a callable giving simulated ns since the epoch, while a backtest runs


def use_clock(now_ns) -> None:
    """Stamp log lines with this clock (``None``: wall time again)."""
    global _clock
    _clock = now_ns


class Stamps(logging.Formatter):
    """UTC (or simulated) stamps, and the note ``Repeats`` left on a record."""

    def format(self, record) -> str:
        return super().format(record) + getattr(record, "repeat_note", "")

    def formatTime(self, record, datefmt=None) -> str:  # noqa: N802 (logging's name)
        if _clock is not None:
            ns = _clock()
            return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " sim"
        return datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class Repeats(logging.Filter):
    def __init__(self, burst: int = 5, window_s: float = 10.0, clock=time.monotonic):
        super().__init__()
        self.burst, self.window_s, self.clock = burst, window_s, clock
        self.seen: dict[tuple, list] = {}  # key -> [window start, passed, held back, logger name, template]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        s = self.seen.get(key)
        if s is None or now - s[0] >= self.window_s:
            held = s[2] if s else 0
            self.seen[key] = [now, 1, 0, record.name, str(record.msg)]
            # a note beside the record, never in it: other handlers (tests' capture) see it unchanged
            record.repeat_note = f" [and {held} more like it in the last {self.window_s:.0f} s, not shown]" if held else ""
        elif s[1] < self.burst:
            s[1] += 1
            record.repeat_note = ""
        else:
            s[2] += 1
            return False
        if self.seen[key][1] == self.burst:
            record.repeat_note += f" [repeated: further ones are counted for {self.window_s:.0f} s]"
        return True

    def flush(self) -> list[tuple[str, str, int]]:
        """(logger, message template, held back) still pending; forgets them."""
        out = [(s[3], s[4], s[2]) for s in self.seen.values() if s[2]]
        for s in self.seen.values():
            s[2] = 0
        return out


_repeats: Repeats | None = None


def setup(verbose: bool = False) -> None:
    global _repeats
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Stamps("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _repeats = Repeats()
    handler.addFilter(RedactFilter())  # other libraries' records too (ours are masked at creation)
    handler.addFilter(_repeats)
    handler.name = "mantra"
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.name != "mantra"] + [handler]  # others' stay
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def flush() -> None:
    """Report what the repeat filter still holds back (call when a run stops)."""
    if _repeats is None:
        return
    for name, template, n in _repeats.flush():
        logging.getLogger(name).warning("%d more of %r were not shown", n, template)
