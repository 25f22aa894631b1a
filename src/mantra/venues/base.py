"""Machinery every sans-IO venue protocol shares: books, counters, trust status, events.

A protocol takes frames in (``on_frame``), REST bodies in (``on_rest``), connection changes and a
~1/s tick (``on_timer``), and appends event tuples to ``events`` for the caller to drain.

Conventions every venue follows (see ``venues/events.py`` for the tuples):

* Levels are emitted *after* being applied to ``books[iid]``; the last ``Level`` of one exchange
  message has ``last=True``, so consumers act only on a consistent book.
* **Snapshots are diffs.**  ``apply_snapshot`` emits ``BookState(SYNCING, "snapshot")`` (always,
  even if the status already was SYNCING), then a deletion (size 0) for every held level the
  snapshot no longer has, then every level of the snapshot; the venue sets SYNCED afterwards.  A
  consumer that applies all ``Level``s in order therefore always holds the venue's book, and one
  that starts from an empty book at a ``BookState(SYNCING)`` gets the whole snapshot.
* Subscribed-depth books (``depth > 0``) are truncated at each message boundary, and the levels
  that fall out of scope are emitted as deletions (the venue sends none for them).
* Anything that makes a book untrustworthy (gap, checksum mismatch, crossed at a message boundary,
  malformed frame for that book, stale feed) sets the reason status with ``set_status``, is
  counted in ``stats``, and triggers the venue's ``resync`` (which counts ``resyncs``).
* ``on_frame`` never raises: unreadable frames are counted in ``malformed`` and logged with an
  excerpt (``bad_frame``).  Fields are type-checked where they are read (a string is not a number, a
  bool is not an int), and every number that leaves a protocol fits the int64 field it ends up in
  (``L2Update``/``TradeUpdate``): prices > 0, sizes >= 0, ids and times in 0..2**63-1.  Prices and
  sizes come from ``fixed.to_fixed``/``side_rows``, which refuse values beyond int64; the book
  refuses negative sizes and prices outside 1..int64 as it applies levels (``Book.apply_levels``);
  ``apply_levels`` checks the time, ``apply_snapshot`` and ``trade`` everything before anything is
  applied; a bad number raises before anything of the message is emitted, so it is a
  malformed frame and its book is resynced (consumers rebuild from the resync's snapshot, which
  starts with CLEAR).  Levels a venue keeps to apply later (buffered during a sync) are checked
  with ``check_levels`` on arrival.
* A feed that cannot prove it lost nothing (no sequence numbers, no checksum) marks a book it
  applied diffs to ``UNVERIFIED`` until it can check it again (Bitstamp's audit).
* Stale watchdog (``on_timer``): every venue sets ``stale_after_s``; venues whose quiet connection
  may legitimately send nothing set ``probe_after_s`` and ``probe()``, a request the venue answers,
  so silence then means a stalled connection, not a quiet market.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from time import perf_counter_ns

from ..book import Book
from ..instruments import Instrument, InstrumentRegistry
from .events import BookState, Level, Reconnect, Status, Trade

log = logging.getLogger(__name__)

SEC = 1_000_000_000
INT64_MAX = (1 << 63) - 1  # every price, size, id and time ends up in an int64 message field
_new = tuple.__new__  # builds a Level without the NamedTuple's Python-level __new__ (hot path)
_SYNCED = Status.SYNCED


@dataclass
class BookStats:
    """Per-instrument counters."""

    checksum_ok: int = 0
    checksum_failed: int = 0
    gaps: int = 0
    resyncs: int = 0
    crossed: int = 0
    messages: int = 0  # exchange messages applied to this book
    malformed: int = 0  # frames (or REST bodies) for this book that could not be used
    stale: int = 0  # times the watchdog found the feed silent


def excerpt(data, limit: int = 160) -> str:
    """A short printable piece of a frame for logs."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data[: limit + 1]).decode("utf-8", "replace")
    else:
        data = str(data)
    return repr(data[:limit]) + ("..." if len(data) > limit else "")


def check_levels(levels, exch_ts: int = 0) -> None:
    """Raise ``ValueError`` unless every ``(side, price, size)`` and the time fit an ``L2Update``:
    0 < price <= int64 max, 0 <= size <= int64 max, 0 <= exch_ts <= int64 max."""
    if type(exch_ts) is not int or not 0 <= exch_ts <= INT64_MAX:
        raise ValueError(f"exchange time {exch_ts!r} outside 0..int64")
    for _, price, size in levels:
        if not 0 < price <= INT64_MAX or not 0 <= size <= INT64_MAX:
            raise ValueError(f"level {price} x {size} outside the book's int64 range")


def emit_levels(book, levels: list, events: list, iid: int, exch_ts: int) -> list[tuple[int, int]]:
    """``Book.apply_emit`` in Python, its reference: apply a message's levels, truncate, append a
    ``Level`` per level, then a deletion per level truncation dropped, the final one ``last``."""
    dropped = book.apply_levels(levels)
    # Emitted after the whole message is applied: a level that fails to apply (out of range)
    # raises before anything of the message went out.
    push = events.append
    n = len(levels)
    if n and not dropped:
        for i in range(n - 1):
            side, price, size = levels[i]
            push(_new(Level, (iid, side, price, size, False, exch_ts)))
        side, price, size = levels[-1]
        push(_new(Level, (iid, side, price, size, True, exch_ts)))
    elif n:
        for side, price, size in levels:
            push(_new(Level, (iid, side, price, size, False, exch_ts)))
        for side, price in dropped[:-1]:
            push(_new(Level, (iid, side, price, 0, False, exch_ts)))
        side, price = dropped[-1]
        push(_new(Level, (iid, side, price, 0, True, exch_ts)))
    return dropped


class VenueProtocol:
    venue: str = ""
    default_depth: int = 0
    stale_after_s: float | None = None  # silent feed for this long -> STALE + Reconnect; None: off
    probe_after_s: float | None = None  # silent this long -> probe(), then again every as long
    # Before a connection's first frame the watchdog waits at least this long: venues can be slow to
    # answer subscriptions (a recorded Bitstamp connection sent its first frame after 6.8 s).
    connect_grace_s: float = 10.0
    # Optional hook, ``checksum_timer(iid, ns)``: told how long each checksum computation took
    # (``mantra bench feeds``).  Venues that verify checksums (Kraken, Bitfinex) run the computation
    # through ``timed`` when it is set; unset, it costs them one attribute test.
    checksum_timer = None

    def __init__(self, registry: InstrumentRegistry, symbols: list[str], depth: int | None = None):
        self.registry = registry
        self.symbols = list(symbols)
        self.depth = self.default_depth if depth is None else depth
        self.events: list = []
        self.books: dict[int, Book] = {}
        self.stats: dict[int, BookStats] = {}
        self.status: dict[int, Status] = {}
        self.frames = 0
        self.malformed = 0
        self.connected = False
        self.last_ts = 0  # latest time handed to us (frame, tick, connect), ns
        self._seen_frames = 0  # frames count at the last watchdog look
        self._active_at = 0  # when the watchdog last saw frames arrive
        self._stale_reported = False
        self._probed_at = 0  # when the watchdog last probed the connection
        self._connect_frames = 0  # frames count when the connection opened
        for sym in self.symbols:
            try:
                inst = registry.get(self.venue, sym)
            except KeyError:
                spec = self.default_spec(sym)
                if spec is None:
                    continue  # the venue registers it once its precision is known
                inst = registry.add(self.venue, sym, **spec)
            self.track(inst)

    def timed(self, iid: int, fn, *args):
        """``fn(*args)``, its duration reported to ``checksum_timer(iid, ns)``."""
        t0 = perf_counter_ns()
        out = fn(*args)
        self.checksum_timer(iid, perf_counter_ns() - t0)
        return out

    # -- instruments ------------------------------------------------------------------------
    def default_spec(self, symbol: str) -> dict | None:
        """Spec for a symbol missing from the registry; ``None`` defers registration to the venue."""
        return {}

    def track(self, inst: Instrument) -> int:
        """Give an instrument a book, counters and a status (idempotent)."""
        iid = inst.id
        if iid not in self.books:
            self.books[iid] = Book(self.depth)  # the C book; L2Book is its reference
            self.stats[iid] = BookStats()
            self.status[iid] = Status.SYNCING if self.connected else Status.DISCONNECTED
        return iid

    # -- connection -------------------------------------------------------------------------
    def on_connect(self, ts: int) -> None:
        """(Re)connected.  Venues extend this to emit their subscriptions."""
        self.connected = True
        self.last_ts = self._active_at = ts
        self._seen_frames = self.frames
        self._stale_reported = False
        self._probed_at = ts
        self._connect_frames = self.frames
        for iid in self.books:
            self.set_status(iid, Status.SYNCING, "connected")

    def on_disconnect(self, ts: int) -> None:
        self.connected = False
        self.last_ts = ts
        for iid in self.books:
            self.set_status(iid, Status.DISCONNECTED, "disconnected")

    def on_frame(self, data: str | bytes, ts: int) -> None:
        """One text frame.  Venues override ``handle``; a failure is a counted malformed frame."""
        self.frames += 1
        self.last_ts = ts
        self._busy = None  # the book (or books) a failure would leave untrustworthy, once known
        try:
            self.handle(data, ts)
        except Exception as e:  # noqa: BLE001 - a frame must never take the feed down
            self.bad_frame(data, e, self._busy)

    def handle(self, data: str | bytes, ts: int) -> None:
        raise NotImplementedError

    def fast_lane(self, port, track, snap: dict):
        """A ``_spine.Lane`` that takes this venue's common frame whole in C (``lane.take(text, ts)``:
        parse, book, publish on ``port`` with the frame's stamp as origin; ``track``: the feed's
        tracking, ``snap``: its snapshot flags), or None.  Its Python path stays the reference."""
        return None

    def on_rest(self, url: str, body: bytes, ts: int) -> None:
        log.warning("%s: unexpected REST body for %s: %s", self.venue, url, excerpt(body))

    def probe(self, ts: int) -> None:
        """Ask the venue for an answer (a frame) on a quiet connection.  Venues with ``probe_after_s``."""

    def on_timer(self, ts: int) -> None:
        """Stale-feed watchdog.  It counts frames, so it works whoever overrides ``on_frame``."""
        self.last_ts = ts
        if self.frames != self._seen_frames:
            self._seen_frames = self.frames
            self._active_at = ts
            self._stale_reported = False
            return
        if self.stale_after_s is None or not self.connected or self._stale_reported:
            return
        silent = ts - self._active_at
        limit = self.stale_after_s
        if self.frames == self._connect_frames:
            limit = max(limit, self.connect_grace_s)
        if silent > limit * SEC:
            self._stale_reported = True
            why = f"no data for {silent / SEC:.1f} s"
            for iid in self.books:
                self.stats[iid].stale += 1
                self.stats[iid].resyncs += 1
                self.set_status(iid, Status.STALE, why)
            self.events.append(Reconnect(f"{self.venue}: {why}"))
        elif self.probe_after_s is not None and silent >= self.probe_after_s * SEC \
                and ts - self._probed_at >= self.probe_after_s * SEC:
            self._probed_at = ts
            self.probe(ts)

    # -- status -----------------------------------------------------------------------------
    def set_status(self, iid: int, status: Status, reason: str) -> None:
        """Record a book's trust status; emits ``BookState`` only when it changes."""
        if self.status.get(iid) != status:
            self.status[iid] = status
            self.events.append(BookState(iid, int(status), reason))

    def resync(self, iid: int, why: str) -> None:
        """Get a fresh, trustworthy book.  Venues override with their cheapest way."""
        self.stats[iid].resyncs += 1
        self.set_status(iid, Status.RESYNCING, why)
        self.events.append(Reconnect(f"{self.venue}: {why}"))

    # -- books ------------------------------------------------------------------------------
    def apply_levels(self, iid: int, levels: list[tuple[int, int, int]], exch_ts: int) -> list[tuple[int, int]]:
        """Apply one exchange message's ``(side, price, size)`` levels, in order, and emit them.

        Truncates to the subscribed depth afterwards (emitting deletions for the dropped levels)
        and flags the message's final ``Level`` with ``last``.  Crossed/checksum checks are the
        caller's, at the same message boundary.  Returns the ``(side, price)`` levels truncated.
        A level or time outside the int64 message fields raises ``ValueError`` before anything is
        emitted (the book may hold the levels before it: the caller's failure resyncs it).
        """
        if not 0 <= exch_ts <= INT64_MAX:
            raise ValueError(f"exchange time {exch_ts!r} outside 0..int64")
        # In C (Book.apply_emit): apply each level, truncate to depth, append the events, as
        # emit_levels (the reference, above) does.
        dropped = self.books[iid].apply_emit(levels, self.events, Level, iid, exch_ts)
        self.stats[iid].messages += 1
        return dropped

    def apply_snapshot(self, iid: int, bids, asks, exch_ts: int) -> list[tuple[int, int]]:
        """Replace a book by a snapshot (``(price, size)`` pairs per side), following the convention above."""
        book = self.books[iid]
        new = [(1, p, s) for p, s in bids]
        new += [(-1, p, s) for p, s in asks]
        check_levels(new, exch_ts)  # before the SYNCING: a bad snapshot leaves the book as it was
        self.status[iid] = Status.SYNCING
        self.events.append(BookState(iid, int(Status.SYNCING), "snapshot"))
        new = [lv for lv in new if lv[2]]
        keep_b = {p for side, p, _ in new if side == 1}
        keep_a = {p for side, p, _ in new if side == -1}
        levels = [(1, p, 0) for p in book.bids if p not in keep_b]
        levels += [(-1, p, 0) for p in book.asks if p not in keep_a]
        return self.apply_levels(iid, levels + new, exch_ts)

    def trade(self, iid: int, side: int, price: int, size: int, trade_id: int, exch_ts: int) -> None:
        """Emit a trade; raises ``ValueError`` unless every number fits its ``TradeUpdate`` field."""
        if (type(trade_id) is not int or type(exch_ts) is not int or not 0 < price <= INT64_MAX
                or not 0 < size <= INT64_MAX or not 0 <= trade_id <= INT64_MAX or not 0 <= exch_ts <= INT64_MAX):
            raise ValueError(f"trade {price!r} x {size!r} id {trade_id!r} at {exch_ts!r}: not a positive int64")
        self.events.append(_new(Trade, (iid, side, price, size, trade_id, exch_ts)))

    def check_crossed(self, iid: int) -> bool:
        """At a message boundary: a crossed book is counted, flagged and resynchronised."""
        book = self.books[iid]
        if not book.crossed():
            return False
        self.stats[iid].crossed += 1
        why = f"crossed book: bid {book.best_bid()} >= ask {book.best_ask()}"
        self.set_status(iid, Status.CROSSED, why)
        self.resync(iid, why)
        return True

    # -- bad input --------------------------------------------------------------------------
    def bad_frame(self, data, error: BaseException | str, iid=None) -> None:
        """Count and log a frame we cannot use; if it was for a book (an iid), or may have been for
        any of several (a collection of iids), those books are resynced."""
        self.malformed += 1
        if iid is not None and type(iid) is not int:
            for i in list(iid):  # a copy: resyncing changes the venue's own sets
                self._bad_book(i, "message lost: " + (error if isinstance(error, str) else type(error).__name__))
            iid = None
        name = self.registry[iid].symbol if iid is not None else "-"
        why = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        # Unexpected exception types are bugs or new formats: keep their traceback.
        tb = not isinstance(error, (str, ValueError, KeyError, IndexError, TypeError))
        log.warning("%s %s: malformed frame (%s): %s", self.venue, name, why, excerpt(data), exc_info=tb and error)
        if iid is not None:
            self._bad_book(iid, why)

    def _bad_book(self, iid: int, why: str) -> None:
        self.stats[iid].malformed += 1
        self.set_status(iid, Status.MALFORMED, why)
        self.resync(iid, f"malformed frame: {why}")

    def bad_rest(self, iid: int, url: str, body: bytes, error: BaseException | str) -> None:
        """Count and log a REST body we cannot use (the venue retries its fetch)."""
        self.malformed += 1
        self.stats[iid].malformed += 1
        why = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        log.warning("%s: unusable REST body from %s (%s): %s", self.venue, url, why, excerpt(body))
