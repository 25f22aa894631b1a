"""What a sans-IO venue protocol emits.

A protocol takes frames and REST bodies in and appends these plain tuples to its ``events`` list;
the feed runner (or a test, or ``mantra venues check``) drains them.  Tuples, not classes, because
a busy feed emits millions of them.  Prices and sizes are fixed-point ints at the instrument's scales.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


class Side(IntEnum):
    BID = 1
    ASK = -1


class Status(IntEnum):
    """Trust in a book.  SYNCED is proven; UNVERIFIED is consistent but unprovable; anything else
    means: do not trade on it."""

    SYNCING = 0  # waiting for snapshot / first consistent state
    SYNCED = 1
    GAP = 2  # sequence gap detected
    CHECKSUM = 3  # checksum mismatch
    CROSSED = 4  # best bid >= best ask at a message boundary
    STALE = 5  # no data within the watchdog interval
    RESYNCING = 6  # resync requested, waiting for fresh state
    MALFORMED = 7  # a frame for this book could not be parsed
    DISCONNECTED = 8
    # Built from a snapshot and consistent, but diffs were applied since the venue last let us
    # verify it, on a feed that cannot show a lost diff (no sequence numbers, no checksum):
    # Bitstamp between audits, Coinbase's Exchange level2.  Consumers decide whether to trade on it.
    UNVERIFIED = 9


class Level(NamedTuple):
    """One price level changed; ``size == 0`` removes it.  ``last`` closes an exchange message."""

    instrument: int
    side: int  # Side.BID / Side.ASK
    price: int
    size: int
    last: bool
    exch_ts: int  # venue timestamp in ns since epoch, 0 when the venue gives none


class Trade(NamedTuple):
    instrument: int
    side: int  # aggressor: +1 buyer (lifted the ask), -1 seller (hit the bid), 0 unknown
    price: int
    size: int
    trade_id: int
    exch_ts: int


class BookState(NamedTuple):
    """A book's trust status changed (or was re-asserted after a resync)."""

    instrument: int
    status: int  # Status
    reason: str


class Send(NamedTuple):
    """The runner must send this text frame on the connection."""

    text: str


class Fetch(NamedTuple):
    """The runner must GET this URL and hand the body to ``on_rest(url, body, ts)``."""

    url: str


class Reconnect(NamedTuple):
    """The runner must drop the connection and connect again (then call ``on_connect``)."""

    reason: str
