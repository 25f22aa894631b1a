"""Seqlock arrays: latest-value slots by index (a model's ideal orders, actor status).

One writer per slot; readers copy, then check the version, so they never see a torn value.  The
version changes on every write, which lets a reader skip slots that have not changed.
"""

from __future__ import annotations

from pathlib import Path

from .. import _spine
from . import layout as L
from .messages import REGISTRY, TRACK
from .shm import create_file, map_file

_HDR = TRACK.size


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

    @classmethod
    def create(cls, path, msg_type, size: int, *, recreate: bool = False) -> "SeqArray":
        path = Path(path)
        if path.exists():
            try:
                a = cls.attach(path, msg_type)
                if a.size != size:
                    a.close()
                    raise L.LayoutError(f"{path}: exists with {a.size} slots, asked for {size}")
                return a
            except L.LayoutError:
                if not recreate:
                    raise
                path.unlink()

        def init(m):
            L.write_header(m, kind=L.KIND_ARRAY, type_id=msg_type.TYPE_ID, slot_size=msg_type.SLOT_SIZE,
                           capacity=size, type_hash=msg_type.TYPE_HASH, payload_size=msg_type.STRUCT.size,
                           name=msg_type.__name__)

        mm = create_file(path, L.HEADER_SIZE + size * msg_type.SLOT_SIZE, init)
        return cls(path, mm, L.read_header(mm), msg_type)

    @classmethod
    def attach(cls, path, msg_type=None) -> "SeqArray":
        path = Path(path)
        mm = map_file(path)
        h = L.read_header(mm)
        try:
            msg_type = msg_type or REGISTRY.get(h["type_id"])
            if msg_type is None:
                raise L.LayoutError(f"{path}: unknown message type id {h['type_id']}")
            L.validate(h, path=path, kind=L.KIND_ARRAY, type_id=msg_type.TYPE_ID,
                       type_hash=msg_type.TYPE_HASH, slot_size=msg_type.SLOT_SIZE)
        except Exception:
            mm.close()
            raise
        return cls(path, mm, h, msg_type)

    def write(self, index: int, msg, origin: int = 0, publisher: int = 0, now: int = 0) -> int:
        return self._a.write(index, self._pack(*msg), origin or _spine.now(), publisher, now)

    def read(self, index: int):
        """(version, message) — message is None for a slot never written."""
        v = self._a.read_into(index, self.record)
        return v, (self._make(self._unpack(self.record, _HDR)) if v else None)

    def tracking(self) -> tuple:
        return TRACK.unpack_from(self.record, 0)

    def close(self) -> None:
        self._a.close()
        if not self.mm.closed:
            self.mm.close()
