"""The Feed actor: one venue connection publishing ``L2Update`` / ``TradeUpdate`` / ``BookStatus``.

    [actors.binance]
    class = "mantra.feeds.actor:Feed"
    params = { venue = "binance", symbols = ["BTCUSDT"], capture_dir = "captures",
               options = { ws_url = "ws://127.0.0.1:9001", rest_url = "http://127.0.0.1:9002" },
               connection = { backoff_s = 0.5 } }
    outputs = { l2 = "l2", trades = "trades", status = "book_status" }

``options`` go to the venue protocol (URLs, depth, ...), ``connection`` to the
:class:`~mantra.feeds.runner.FeedRunner` (backoff, pings, watchdogs).  Every message published
for one venue frame carries that frame's receipt time as its origin.

Levels follow the protocols' convention (``venues/base.py``): a snapshot arrives as
``BookState(SYNCING, "snapshot")`` then levels that turn the held book into the snapshot
(deletions included).  Those levels are flagged ``SNAPSHOT``, the first also ``CLEAR``: a consumer
may either apply every level as it comes, or clear its book at ``CLEAR``; both end with the
venue's book.  ``LAST`` closes each exchange message.

Every ``loop()`` reads the feed's socket itself (non-blocking; about a microsecond when nothing
came), so a frame is stamped and published in the actor's own thread.  Waiting: a parked process
may host several feeds.  With ``wait_ms > 0`` an idle feed blocks in ``loop()`` on the process's
doorbell, a ``poll(2)`` over the sockets of all its feeds, until any has bytes (other actors of
that process wait at most ``wait_ms``); with ``wait_ms = 0`` it never blocks and asks to be stepped
every ``poll_ms`` (for spinning processes, or processes whose other actors must never wait).

Instrument ids come from one registry per system, ``<system dir>/instruments.json``, shared under
a file lock by every process that registers instruments (:class:`SharedRegistry`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from ..instruments import Instrument, InstrumentRegistry
from ..runtime import paths
from ..runtime.actor import Actor
from ..spine import shm
from ..spine.messages import L2Flags
from ..venues.events import BookState, Level, Status, Trade
from ..venues.registry import make_protocol
from .runner import DOORBELL, FeedRunner

log = logging.getLogger(__name__)

LAST, SNAPSHOT, CLEAR = int(L2Flags.LAST), int(L2Flags.SNAPSHOT), int(L2Flags.CLEAR)
_SYNCING = int(Status.SYNCING)

# Venues that cut connections at a fixed age: reconnect on our terms a little before.
MAX_AGE_S = {"binance": 23.5 * 3600}


class SharedRegistry(InstrumentRegistry):
    """An instrument registry kept in a JSON file that every process of a system shares.

    ``add`` takes the file lock, merges what other processes registered, assigns the next id and
    writes the file back, so ids agree system-wide whichever process registers first (a venue
    that registers an instrument mid-run, like Kraken once it learns the precision, included).
    An instrument another process registered first is returned as it is (first writer wins).
    Lookups that miss re-read the file.
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)
        shm.ensure_dir(self.path.parent)
        self._mtime = None
        with self._locked():
            self.refresh()

    @contextmanager
    def _locked(self):
        fd = shm.open_fd(self.path.with_name(self.path.name + ".lock"))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def refresh(self) -> None:
        """Merge the file's instruments (ids never change once written)."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return
        if st.st_mtime_ns == self._mtime:
            return
        for inst in InstrumentRegistry.parse(shm.read_text(self.path)):
            mine = self.by_id.get(inst.id)
            if mine is None:
                self.by_id[inst.id] = inst
                self.by_key[inst.key] = inst
            elif mine != inst:
                raise RuntimeError(f"{self.path}: instrument {inst.id} is {inst.key}, this process has {mine.key}")
        self._mtime = st.st_mtime_ns

    def add(self, venue: str, symbol: str, **spec) -> Instrument:
        old = self.by_key.get((venue.lower(), symbol))
        if old is not None:
            return super().add(venue, symbol, **spec)  # the usual conflict check
        with self._locked():
            self.refresh()
            old = self.by_key.get((venue.lower(), symbol))
            if old is not None:
                if spec and any(getattr(old, k) != v for k, v in spec.items()):
                    log.warning("%s:%s was registered by another process with %s; using it", venue, symbol, old)
                return old
            inst = super().add(venue, symbol, **spec)
            shm.write_text(self.path, json.dumps([asdict(i) for i in self.by_id.values()], indent=1))
            self._mtime = os.stat(self.path, follow_symlinks=False).st_mtime_ns
            return inst

    def get(self, venue: str, symbol: str) -> Instrument:
        try:
            return super().get(venue, symbol)
        except KeyError:
            self.refresh()
            return super().get(venue, symbol)

    def __getitem__(self, iid: int) -> Instrument:
        inst = self.by_id.get(iid)
        if inst is None:
            self.refresh()
            inst = self.by_id[iid]
        return inst


def system_registry(system: str) -> SharedRegistry:
    """The registry every actor of ``system`` shares."""
    return SharedRegistry(paths.system_dir(system) / "instruments.json")


def status_reason(reason: str) -> bytes:
    """A reason as BookStatus carries it: at most 16 bytes of UTF-8, never a split character."""
    return reason.encode()[:16].decode("utf-8", "ignore").encode()


class Feed(Actor):
    outputs = ("l2", "trades", "status")

    venue = ""
    symbols: tuple = ()
    options: dict = {}  # protocol options
    connection: dict = {}  # FeedRunner options
    capture_dir = ""  # raw capture directory ("": no capture)
    capture: dict = {}  # CaptureWriter options
    max_frames = 256  # frames per loop() step: bounds the time other actors wait
    wait_ms = 10.0
    poll_ms = 1.0

    def on_start(self) -> None:
        self.registry = system_registry(self.system)
        self.protocol = make_protocol(self.venue, self.registry, list(self.symbols), **self.options)
        self.writer = None
        if self.capture_dir:
            from ..store.capture import CaptureWriter

            self.writer = CaptureWriter(self.capture_dir, f"{self.venue}-{self.name}", **self.capture)
        opts = {"max_age_s": MAX_AGE_S.get(self.venue.lower()), **self.connection}
        self.runner = FeedRunner(self.protocol, self.publish, capture=self.writer, doorbell=DOORBELL, **opts)
        self._snap: dict[int, int] = {}  # iid -> flags for its next level while a snapshot is coming
        port = getattr(self.l2, "port", None)  # a spine Output's C port
        if port is not None and not self.clock.simulated:  # the venue's common frame in C, published from there
            lane = self.protocol.fast_lane(port, self._track, self._snap)
            self.runner.lane = lane.take if lane is not None else None
        self.wakeup = self.clock.now()

    def loop(self) -> bool:
        if self.runner.poll(self.max_frames, 0.0):
            self.wakeup = self.clock.now()
            return True
        if self.wait_ms > 0:
            rang = DOORBELL.wait(self.wait_ms / 1000)
            self.wakeup = self.clock.now()  # this loop is the process's blocking point
            return rang
        due = max(self.runner.next_due() - time.monotonic(), 0.0)
        self.wakeup = self.clock.now() + int(min(self.poll_ms / 1000, due) * 1e9)
        return False

    def on_stop(self) -> None:
        self.runner.close()
        if self.writer is not None:
            self.writer.close()

    def publish(self, events: list, ts: int) -> None:
        """Turn one batch of protocol events (all from the frame received at ``ts``) into messages."""
        self._track.origin = ts  # set_origin, inlined: this is the hot path
        convert(events, self._snap, self.l2.send, self.trades.send, self.status.send)


def convert(events: list, snap: dict, l2, trades, status) -> None:
    """Protocol events -> message tuples handed to ``l2`` / ``trades`` / ``status`` (plain tuples in
    each message's field order).  ``snap`` (iid -> flags) carries snapshot flagging across frames:
    one place for the feed and for importing recordings as backtest data."""
    for e in events:
        t = type(e)
        if t is Level:
            iid, side, price, size, last, exch_ts = e
            flags = LAST if last else 0
            if snap and iid in snap:
                flags |= snap[iid]
                if last:
                    del snap[iid]
                else:
                    snap[iid] = SNAPSHOT
            l2((price, size, exch_ts, iid, side, flags))
        elif t is Trade:
            iid, side, price, size, trade_id, exch_ts = e
            trades((price, size, exch_ts, trade_id, iid, side))
        elif t is BookState:
            iid, st, reason = e
            if st == _SYNCING and reason == "snapshot":
                snap[iid] = SNAPSHOT | CLEAR
            else:
                snap.pop(iid, None)
            status((0, iid, st, 0, status_reason(reason)))
