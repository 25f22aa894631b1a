"""Broadcast rings of seqlocked slots: one producer (or several), any number of consumers.

Producers never wait.  Each consumer keeps its own cursor; a consumer the producer laps notices it
from the slot version, counts what it lost and resyncs to ``head - capacity/2``.  Consumers that
register publish their position in the header so lag is visible from outside (``mantra inspect``).

With several producers (``mpmc``) a writer owns a slot before writing it, so a producer frozen or
killed mid-write never tears a record: a writer finding a slot still held by such a producer skips
that sequence (consumers count it in ``skipped``) and publishes under the next one, and consumers
give up a sequence left unwritten (``Reader.stuck_ns``, counted in ``lost``) instead of waiting for
a lap.  The protocol is described in ``_spine.c``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import _spine
from . import layout as L
from .messages import TRACK
from .shm import pid_alive

_HDR = TRACK.size


class Ring:
    def __init__(self, path: Path, mm, header: dict, msg_type):
        self.path, self.mm, self.header, self.msg_type = path, mm, header, msg_type
        self.capacity = header["capacity"]
        self.slot_size = header["slot_size"]
        self.name = path.name
        self._handles = []

    # ------------------------------------------------------------------ create / attach
    @classmethod
    def create(cls, path, msg_type, capacity: int = 1 << 16, *, mpmc: bool = False,
               recreate: bool = False) -> "Ring":
        """Create the ring, or attach to an identical existing one (see layout.create_file_for)."""
        if capacity < 2 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two, got {capacity}")
        path = Path(path)
        mm, h = L.create_file_for(path, L.KIND_MPMC if mpmc else L.KIND_SPMC, msg_type, capacity, recreate)
        return cls(path, mm, h, msg_type)

    @classmethod
    def attach(cls, path, msg_type=None) -> "Ring":
        path = Path(path)
        return cls(path, *L.open_file(path, L.KIND_SPMC, msg_type))

    # ------------------------------------------------------------------ ends
    def writer(self) -> "Producer":
        p = Producer(self)
        self._handles.append(p)
        return p

    def reader(self, label: str = "", start: int | None = None, register: bool = True) -> "Consumer":
        c = Consumer(self, label, start, register)
        self._handles.append(c)
        return c

    # ------------------------------------------------------------------ introspection
    def count(self) -> int:
        return _spine.load(self.mm, L.OFF_COUNT)

    def consumers(self) -> list[dict]:
        """Registered consumers: pid, label, next seq, lost, lag, alive."""
        out, head = [], self.count()
        for i in range(L.N_CURSORS):
            off = L.OFF_CURSORS + i * L.CURSOR_SIZE
            pid = _spine.load(self.mm, off)
            if not pid:
                continue
            seq, lost = _spine.load(self.mm, off + 8), _spine.load(self.mm, off + 16)
            label = bytes(self.mm[off + 24:off + 24 + L.LABEL_SIZE]).rstrip(b"\0").decode(errors="replace")
            out.append(dict(pid=pid, label=label, seq=seq, lost=lost, lag=max(head - seq, 0),
                            alive=pid_alive(pid), index=i))
        return out

    def cursor_seq(self, index: int) -> int:
        """Next sequence the consumer in cursor entry ``index`` will read (cheap: one load)."""
        return _spine.load(self.mm, L.OFF_CURSORS + index * L.CURSOR_SIZE + 8)

    def _claim_cursor(self, label: str) -> tuple[int, int | None]:
        """Take a cursor entry: preferably the one a dead consumer of the same label left (so a
        restarted actor resumes where it stopped: returns its position), else a free one."""
        me, raw = os.getpid(), label.encode()[:L.LABEL_SIZE].ljust(L.LABEL_SIZE, b"\0")
        free = []
        for i in range(L.N_CURSORS):
            off = L.OFF_CURSORS + i * L.CURSOR_SIZE
            pid = _spine.load(self.mm, off)
            if pid and pid_alive(pid):
                continue
            if pid and self.mm[off + 24:off + 24 + L.LABEL_SIZE] == raw and _spine.cas(self.mm, off, pid, me):
                return i, _spine.load(self.mm, off + 8)
            free.append((i, off, pid))
        for i, off, pid in free:
            if _spine.cas(self.mm, off, pid, me):
                _spine.store(self.mm, off + 16, 0)
                self.mm[off + 24:off + 24 + L.LABEL_SIZE] = raw
                return i, None
        return -1, None  # table full: the consumer still works, it is just not visible from outside

    def _release_cursor(self, i: int) -> None:
        if i >= 0 and self.mm is not None and not self.mm.closed:
            _spine.cas(self.mm, L.OFF_CURSORS + i * L.CURSOR_SIZE, os.getpid(), 0)

    def close(self) -> None:
        for h in self._handles:
            h.close()
        self._handles.clear()
        if self.mm is not None and not self.mm.closed:
            try:
                self.mm.close()
            except BufferError:  # a reader parked in another thread holds it: unmapped when it wakes
                pass

    def __repr__(self) -> str:
        return f"<Ring {self.name} {self.msg_type.__name__} x{self.capacity}>"


class Producer:
    """Publishes messages of the ring's type; the tracking header is filled here."""

    __slots__ = ("ring", "msg_type", "_w", "_pack", "publish_record", "stamp")

    def __init__(self, ring: Ring):
        self.ring, self.msg_type = ring, ring.msg_type
        self._w = _spine.Writer(ring.mm)
        self._pack = ring.msg_type.STRUCT.pack
        self.publish_record = self._w.publish_record
        self.stamp = self._w.stamp  # timing rings: stamp(key, origin, start), end read in C

    def send(self, msg, origin: int = 0, publisher: int = 0, now: int = 0) -> int:
        """Publish; ``origin`` 0 means this message is itself the origin (stamped now)."""
        return self._w.publish(self._pack(*msg), origin or _spine.now(), publisher, now)

    @property
    def recovered(self) -> int:
        """Half-written slots left by a dead producer that this producer finished."""
        return self._w.recovered

    @property
    def skipped(self) -> int:
        """Multi-producer: sequences given up because another producer (frozen or dead) still held
        the slot; the message went out under the next sequence."""
        return self._w.skipped

    @property
    def dropped(self) -> int:
        """Multi-producer: messages not published because other producers lapped this one while it
        claimed or wrote the slot (it was frozen a whole lap): stale, so never delivered late."""
        return self._w.dropped

    def close(self) -> None:
        self._w.close()


class Consumer:
    """One reader's cursor.  ``read()`` returns the next message (a NamedTuple) or None; the
    tracking header of the last record read is in ``origin`` / ``record``."""

    def __init__(self, ring: Ring, label: str, start: int | None, register: bool):
        self.ring, self.msg_type = ring, ring.msg_type
        self._cursor, resume = ring._claim_cursor(label or f"pid{os.getpid()}") if register else (-1, None)
        if start is None:
            start = resume
        self._r = _spine.Reader(ring.mm, -1 if start is None else start, self._cursor)
        self.record = bytearray(ring.slot_size - 8)
        self._unpack = ring.msg_type.STRUCT.unpack_from
        self._make = ring.msg_type._make
        self._batch = None
        self.origin = 0

    def read(self):
        o = self._r.read_into(self.record)
        if not o:
            return None
        self.origin = o
        return self._make(self._unpack(self.record, _HDR))

    def wait(self, timeout: float, spin: float = 0.0):
        """Block up to ``timeout`` seconds (spinning ``spin`` seconds first, then parked on a futex)."""
        o = self._r.wait_into(self.record, int(timeout * 1e9), int(spin * 1e9))
        if not o:
            return None
        self.origin = o
        return self._make(self._unpack(self.record, _HDR))

    def tracking(self) -> tuple:
        """(origin_ns, publish_ns, publisher, flags) of the last record read."""
        return TRACK.unpack_from(self.record, 0)

    def read_batch(self, max_n: int = 4096) -> np.ndarray:
        """Up to ``max_n`` records as a structured array (tracking fields + payload fields).
        The array is reused by the next call: copy it to keep it."""
        if self._batch is None or len(self._batch) < max_n:
            self._batch = np.zeros(max_n, dtype=self.msg_type.DTYPE)
        n = self._r.read_batch(self._batch, max_n)
        return self._batch[:n]

    @property
    def reader(self):
        """The C reader (``read_into``/``wait_into``/``read_batch``), for runtime hot loops."""
        return self._r

    @property
    def lost(self) -> int:
        """Messages lost: overwritten before read (lapped), or never completed by their producer."""
        return self._r.lost

    @property
    def skipped(self) -> int:
        """Multi-producer: sequences that carried no message (see ``Producer.skipped``)."""
        return self._r.skipped

    @property
    def seq(self) -> int:
        return self._r.seq

    @seq.setter
    def seq(self, v: int) -> None:
        self._r.seq = v

    @property
    def lag(self) -> int:
        return max(self._r.head() - self._r.seq, 0)

    def close(self) -> None:
        self.ring._release_cursor(self._cursor)
        self._cursor = -1
        self._r.close()
