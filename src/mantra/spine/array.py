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
        self._pack = msg_type.STRUCT.pack
        self._unpack = msg_type.STRUCT.unpack_from
        self._make = msg_type._make
        self.record = bytearray(header["slot_size"] - 8)
        self.version = self._a.version
        self.writes = self._a.writes  # writes to any slot so far: one load tells "nothing changed"
        self._track = TRACK.unpack_from
        # What this process wrote last per slot: (version, message, origin, publisher).  A reader
        # in the writer's process (a model and the overseer placed together) gets the message
        # back without decoding it while the slot's version is still the one written here.
        self._mine: dict[int, tuple] = {}

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
        origin = origin or _spine.now()
        v = self._a.write(index, self._pack(*msg), origin, publisher, now)
        self._mine[index] = (v, msg if type(msg) is self.msg_type else self._make(msg), origin, publisher)
        return v

    def read(self, index: int):
        """(version, message) — message is None for a slot never written (version 0) or left
        mid-write by a writer that died there (odd version)."""
        try:
            v = self._a.read_into(index, self.record)
        except TornRead:
            return self._a.version(index), None
        return v, (self._make(self._unpack(self.record, _HDR)) if v else None)

    def latest(self, index: int) -> tuple:
        """(version, message or None, origin, publisher) of the slot's current value."""
        mine = self._mine.get(index)
        if mine is not None and mine[0] == self._a.version(index):
            return mine
        try:
            v = self._a.read_into(index, self.record)
        except TornRead:
            return self._a.version(index), None, 0, 0
        if not v:
            return 0, None, 0, 0
        origin, _, publisher, _ = self._track(self.record, 0)
        return v, self._make(self._unpack(self.record, _HDR)), origin, publisher

    def close(self) -> None:
        self._a.close()
        if not self.mm.closed:
            self.mm.close()
