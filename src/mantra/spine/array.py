"""Seqlock arrays: latest-value slots by index (a model's ideal orders, actor status).

One writer per slot; readers copy, then check the version, so they never see a torn value.  The
version changes on every write, which lets a reader skip slots that have not changed.  A slot whose
writer died (or froze) mid-write reads as "no value" with its odd version, ``(v, None)``, until
it is written again; ``_spine.Array.read_into`` raises ``TornRead`` for it.
"""

from __future__ import annotations

from pathlib import Path

from .. import _spine
from . import layout as L
from .messages import TRACK

_HDR = TRACK.size
TornRead = _spine.TornRead


class SeqArray:
    def __init__(self, path: Path, mm, header: dict, msg_type):
        self.path, self.mm, self.header, self.msg_type = path, mm, header, msg_type
        self.size = header["capacity"]
        self.name = path.name
        self._a = _spine.Array(mm)
        self._unpack = msg_type.STRUCT.unpack_from
        self._make = msg_type._make
        self.record = bytearray(header["slot_size"] - 8)
        self.version = self._a.version
        self.writes = self._a.writes  # writes to any slot so far: one load tells "nothing changed"
        # put/latest in C: packed from and built into the message type's layout
        self._port = self.port()
        # (version, message or None, origin, publisher) of a slot's current value
        self.latest = self._port.latest

    @classmethod
    def create(cls, path, msg_type, size: int, *, recreate: bool = False) -> "SeqArray":
        """Create the array, or attach to an identical existing one (see layout.create_file_for)."""
        path = Path(path)
        mm, h = L.create_file_for(path, L.KIND_ARRAY, msg_type, size, recreate)
        return cls(path, mm, h, msg_type)

    @classmethod
    def attach(cls, path, msg_type=None) -> "SeqArray":
        path = Path(path)
        return cls(path, *L.open_file(path, L.KIND_ARRAY, msg_type))

    def write(self, index: int, msg, origin: int = 0, publisher: int = 0, now: int = 0) -> int:
        return self._port.put(index, msg, origin, publisher, now)

    def port(self, track=None, clock=None, publisher: int = 0):
        """A C port writing this array: ``write(i, msg)`` stamps the origin from ``track`` and the
        time from ``clock`` (a simulated one; else real time)."""
        t = self.msg_type
        return _spine.Port(self._a, t, t.FIELDS_AT, t.STRUCT.size, track,
                           clock if clock is not None and clock.simulated else None, publisher)

    def read(self, index: int):
        """(version, message) — message is None for a slot never written (version 0) or left
        mid-write by a writer that died there (odd version)."""
        try:
            v = self._a.read_into(index, self.record)
        except TornRead:
            return self._a.version(index), None
        return v, (self._make(self._unpack(self.record, _HDR)) if v else None)

    def close(self) -> None:
        self._a.close()
        if not self.mm.closed:
            self.mm.close()
