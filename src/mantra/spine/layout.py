"""The on-disk header of every spine file (rings and seqlock arrays) and its validation.

Header (4096 bytes, see ``_spine.c``): line 0 holds static fields, line 1 (offset 64) the write
counter alone, line 2 (offset 128) the park word, offset 256 the type name, offset 512 onwards 56
consumer cursors of 64 bytes (pid, next seq, lost, label).  Slots follow at offset 4096.
"""

from __future__ import annotations

import struct

from .. import _spine

MAGIC = 0x314E4950534E414D  # b"MANSPIN1" little-endian
# 2: a multi-producer writer owns a slot before writing it and skips slots others still hold (see
# _spine.c); a version-1 producer would write over them, so version-1 files are refused, not read.
LAYOUT_VERSION = _spine.LAYOUT_VERSION
_OLD_VERSIONS = {1: "written by a build whose multi-producer writers could tear records"}
KIND_SPMC, KIND_MPMC, KIND_ARRAY = 1, 2, 3
KIND_NAMES = {KIND_SPMC: "spmc", KIND_MPMC: "mpmc", KIND_ARRAY: "array"}
HEADER_SIZE = _spine.HEADER_SIZE
OFF_COUNT = 64
OFF_EPOCH = 128
OFF_NAME = 256
OFF_CURSORS = _spine.CURSORS_OFFSET
CURSOR_SIZE = _spine.CURSOR_SIZE
N_CURSORS = _spine.N_CURSORS
LABEL_SIZE = 40

# magic, layout version, kind, type id, slot size, capacity, type hash, created ns, payload size
_STATIC = struct.Struct("<QIIIIQQQI")


class LayoutError(Exception):
    """A spine file exists but was made for another layout, type or size."""


def write_header(buf, *, kind: int, type_id: int, slot_size: int, capacity: int, type_hash: int,
                 payload_size: int, name: str) -> None:
    _STATIC.pack_into(buf, 0, MAGIC, LAYOUT_VERSION, kind, type_id, slot_size, capacity, type_hash,
                      _spine.now(), payload_size)
    raw = name.encode()[:63]
    buf[OFF_NAME:OFF_NAME + 64] = raw.ljust(64, b"\0")


def read_header(buf) -> dict:
    magic, ver, kind, type_id, slot, cap, thash, created, psize = _STATIC.unpack_from(buf, 0)
    name = bytes(buf[OFF_NAME:OFF_NAME + 64]).rstrip(b"\0").decode(errors="replace")
    return dict(magic=magic, layout_version=ver, kind=kind, type_id=type_id, slot_size=slot,
                capacity=cap, type_hash=thash, created_ns=created, payload_size=psize, type_name=name)


def validate(h: dict, *, path, kind=None, type_id=None, type_hash=None, slot_size=None) -> None:
    """Raise LayoutError naming every mismatch: never attach to something we would corrupt."""
    problems = []
    if h["magic"] != MAGIC:
        problems.append("not a Mantra spine file (bad magic)")
    elif h["layout_version"] != LAYOUT_VERSION:
        why = _OLD_VERSIONS.get(h["layout_version"])
        problems.append(f"layout version {h['layout_version']}{f' ({why})' if why else ''}, "
                        f"this build speaks {LAYOUT_VERSION}")
    else:
        if kind is not None and (kind == KIND_ARRAY) != (h["kind"] == KIND_ARRAY):
            problems.append(f"kind {KIND_NAMES.get(h['kind'], h['kind'])}, expected {KIND_NAMES[kind]}")
        if type_id is not None and h["type_id"] != type_id:
            problems.append(f"message type id {h['type_id']} ({h['type_name']}), expected {type_id}")
        if type_hash is not None and h["type_hash"] != type_hash:
            problems.append(f"message layout hash {h['type_hash']:#x} differs from {type_hash:#x} "
                            f"({h['type_name']} changed shape)")
        if slot_size is not None and h["slot_size"] != slot_size:
            problems.append(f"slot size {h['slot_size']}, expected {slot_size}")
    if problems:
        raise LayoutError(f"{path}: " + "; ".join(problems) + " — recreate it (recreate=True) or stop the other system")


def open_file(path, kind: int, msg_type=None):
    """Attach to an existing spine file: (mapping, header, message type), validated."""
    from .messages import REGISTRY
    from .shm import map_file

    mm = map_file(path)
    h = read_header(mm)
    try:
        if msg_type is None:
            msg_type = REGISTRY.get(h["type_id"])
            if msg_type is None:
                raise LayoutError(f"{path}: unknown message type id {h['type_id']} ({h['type_name']})")
        validate(h, path=path, kind=kind, type_id=msg_type.TYPE_ID, type_hash=msg_type.TYPE_HASH,
                 slot_size=msg_type.SLOT_SIZE)
        if len(mm) < HEADER_SIZE + h["capacity"] * h["slot_size"]:
            raise LayoutError(f"{path}: file shorter than its header says")
    except Exception:
        mm.close()
        raise
    return mm, h, msg_type


def create_file_for(path, kind: int, msg_type, capacity: int, recreate: bool):
    """Create a spine file, or attach to an identical existing one: (mapping, header).  One of
    another type, kind or size is a LayoutError unless ``recreate`` (which replaces it)."""
    from .shm import create_file

    if path.exists():
        try:
            mm, h, _ = open_file(path, kind, msg_type)
            if h["capacity"] == capacity and h["kind"] == kind:
                return mm, h
            mm.close()
            raise LayoutError(f"{path}: exists as {KIND_NAMES[h['kind']]} with capacity {h['capacity']}, "
                              f"asked for {KIND_NAMES[kind]} with capacity {capacity}")
        except LayoutError:
            if not recreate:
                raise
            path.unlink()

    def init(m):
        write_header(m, kind=kind, type_id=msg_type.TYPE_ID, slot_size=msg_type.SLOT_SIZE, capacity=capacity,
                     type_hash=msg_type.TYPE_HASH, payload_size=msg_type.STRUCT.size, name=msg_type.__name__)

    mm = create_file(path, HEADER_SIZE + capacity * msg_type.SLOT_SIZE, init)
    return mm, read_header(mm)
