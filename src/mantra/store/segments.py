"""Segment files: the persisted form of a spine queue.

A segment is append-only and self-describing:

    file header   b"MANTRSEG" | u32 format version | u32 descriptor length | descriptor (JSON)
    chunk*        u32 magic | u32 payload bytes | u32 records | u32 crc32(payload) | u64 first publish ns
                  | u64 last publish ns | payload (zstd)

The descriptor names the queue and its message type with every field (name, numpy format, offset),
the record size and a schema version, so a file written by an older layout is still decoded by its
own description.  A chunk's payload is the records stored column by column, integer columns
delta-encoded (timestamps, prices and sequence-like ids then compress ~20x), then zstd.
Chunks are written whole and flushed; after a crash at most the chunk being written is missing, and
a torn tail is detected by length and CRC, counted and skipped: every file stays readable.
The chunk headers double as the time index: ``read(..., start, end)`` skips chunks outside the range
without decompressing them.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard

MAGIC = b"MANTRSEG"
FORMAT_VERSION = 1
SCHEMA_VERSION = 1  # bump when a message type changes shape; old files keep their own descriptor
CHUNK = struct.Struct("<IIIIQQ")
CHUNK_MAGIC = 0x4B4E4843  # "CHNK"
_HEAD = struct.Struct("<8sII")


def descriptor(queue: str, msg_type) -> dict:
    dt = msg_type.DTYPE
    return {
        "queue": queue,
        "type": msg_type.__name__,
        "type_id": msg_type.TYPE_ID,
        "type_hash": msg_type.TYPE_HASH,
        "schema_version": SCHEMA_VERSION,
        "record_size": dt.itemsize,
        "fields": [[n, dt.fields[n][0].str, dt.fields[n][1]] for n in dt.names if not n.startswith("_")],
    }


def dtype_of(desc: dict) -> np.dtype:
    names, formats, offsets = zip(*desc["fields"])
    return np.dtype({"names": list(names), "formats": list(formats), "offsets": list(offsets),
                     "itemsize": desc["record_size"]})


def _encode(records: np.ndarray, level: int) -> bytes:
    """Columns; integers delta- and zigzag-coded, then split into byte planes, so the many
    all-zero high bytes of small deltas form long runs that zstd squeezes to almost nothing."""
    cols = []
    for name in records.dtype.names:
        col = np.ascontiguousarray(records[name])
        if col.dtype.kind in "iu" and col.dtype.itemsize >= 4:
            if name == "publish" and "origin" in records.dtype.names:
                col = col - records["origin"]  # publish follows origin closely; wraps exactly
            cols.append(_shuffle(_zigzag_delta(col)))
        else:
            cols.append(col.tobytes())
    return zstandard.ZstdCompressor(level=level).compress(b"".join(cols))


def _zigzag_delta(col: np.ndarray) -> np.ndarray:
    size = col.dtype.itemsize
    u = col.view(f"<u{size}")
    d = np.empty_like(u)
    d[:1] = u[:1]
    np.subtract(u[1:], u[:-1], out=d[1:])  # wrapping arithmetic: exact for every value
    s = d.view(f"<i{size}")
    return ((s << 1) ^ (s >> (size * 8 - 1))).view(u.dtype)


def _unzigzag_delta(z: np.ndarray, dtype: np.dtype) -> np.ndarray:
    one = z.dtype.type(1)
    d = (z >> one) ^ (np.zeros_like(z) - (z & one))
    return np.cumsum(d, dtype=z.dtype).view(dtype)


def _shuffle(u: np.ndarray) -> bytes:
    return np.ascontiguousarray(u.view(np.uint8).reshape(-1, u.dtype.itemsize).T).tobytes()


def _unshuffle(raw: bytes, pos: int, n: int, itemsize: int) -> np.ndarray:
    planes = np.frombuffer(raw, np.uint8, n * itemsize, pos).reshape(itemsize, n)
    return np.ascontiguousarray(planes.T).view(f"<u{itemsize}").reshape(n)


def _decode(payload: bytes, n: int, dt: np.dtype) -> np.ndarray:
    raw = zstandard.ZstdDecompressor().decompress(payload, max_output_size=n * dt.itemsize + 1)
    out = np.zeros(n, dt)
    pos = 0
    for name in dt.names:
        fdt = dt.fields[name][0]
        if fdt.kind in "iu" and fdt.itemsize >= 4:
            out[name] = _unzigzag_delta(_unshuffle(raw, pos, n, fdt.itemsize), fdt)
        else:
            out[name] = np.frombuffer(raw, fdt, n, pos)
        pos += n * fdt.itemsize
    if "publish" in dt.names and "origin" in dt.names:
        out["publish"] += out["origin"]
    return out


class SegmentWriter:
    """Appends record batches (structured arrays of the queue's DTYPE) as chunks."""

    def __init__(self, path: Path, queue: str, msg_type, level: int = 9, fsync: bool = False):
        self.path = Path(path)
        self.desc = descriptor(queue, msg_type)
        self.dtype = dtype_of(self.desc)
        self.names = list(self.dtype.names)
        self.level, self.fsync = level, fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.f = open(self.path, "ab")
        if new:
            d = json.dumps(self.desc).encode()
            self.f.write(_HEAD.pack(MAGIC, FORMAT_VERSION, len(d)) + d)
            self.f.flush()
        self.records = 0
        self.raw_bytes = 0
        self.bytes = self.f.tell()

    def append(self, records: np.ndarray) -> None:
        if not len(records):
            return
        recs = records if records.dtype == self.dtype else records[self.names]  # drop padding fields
        payload = _encode(recs, self.level)
        pub = recs["publish"]
        self.f.write(CHUNK.pack(CHUNK_MAGIC, len(payload), len(recs), zlib.crc32(payload),
                                int(pub[0]), int(pub[-1])) + payload)
        self.f.flush()  # the chunk is in the OS now: a killed process loses nothing already appended
        if self.fsync:
            os.fsync(self.f.fileno())
        self.records += len(recs)
        self.raw_bytes += len(recs) * (self.dtype.itemsize + 8)  # what the records take in a slot
        self.bytes += CHUNK.size + len(payload)

    def close(self) -> None:
        if not self.f.closed:
            self.f.close()


@dataclass
class SegmentInfo:
    path: Path
    desc: dict
    chunks: list = field(default_factory=list)  # (offset, payload bytes, records, crc, first ns, last ns)
    torn: int = 0  # bytes at the tail that do not form a whole, valid chunk

    @property
    def records(self) -> int:
        return sum(c[2] for c in self.chunks)


def scan(path: Path) -> SegmentInfo:
    """Read the header and the chunk index (no decompression)."""
    with open(path, "rb") as f:
        head = f.read(_HEAD.size)
        if len(head) < _HEAD.size:
            raise ValueError(f"{path}: not a segment file (too short)")
        magic, ver, dlen = _HEAD.unpack(head)
        if magic != MAGIC:
            raise ValueError(f"{path}: not a segment file")
        if ver > FORMAT_VERSION:
            raise ValueError(f"{path}: segment format {ver} is newer than this build ({FORMAT_VERSION})")
        info = SegmentInfo(Path(path), json.loads(f.read(dlen)))
        size = os.fstat(f.fileno()).st_size
        pos = _HEAD.size + dlen
        while pos < size:
            f.seek(pos)
            h = f.read(CHUNK.size)
            if len(h) < CHUNK.size:
                break
            magic, plen, n, crc, t0, t1 = CHUNK.unpack(h)
            if magic != CHUNK_MAGIC or pos + CHUNK.size + plen > size:
                break
            info.chunks.append((pos + CHUNK.size, plen, n, crc, t0, t1))
            pos += CHUNK.size + plen
        info.torn = size - pos
    return info


def read(path: Path, start: int = 0, end: int = 2**64 - 1, info: SegmentInfo | None = None):
    """Yield record arrays (the file's own dtype) of the chunks overlapping [start, end]."""
    info = info or scan(path)
    dt = dtype_of(info.desc)
    with open(path, "rb") as f:
        for off, plen, n, crc, t0, t1 in info.chunks:
            if t1 < start or t0 > end:
                continue
            f.seek(off)
            payload = f.read(plen)
            if zlib.crc32(payload) != crc:
                info.torn += plen  # a chunk damaged in place: skipped and counted
                continue
            recs = _decode(payload, n, dt)
            if start or end != 2**64 - 1:
                recs = recs[(recs["publish"] >= start) & (recs["publish"] <= end)]
            yield recs


def segments(root: Path, queue: str) -> list[Path]:
    """A queue's segment files in time order (names are the first publish time)."""
    d = Path(root) / queue
    return sorted(d.glob("*.seg"), key=lambda p: (len(p.stem), p.stem)) if d.exists() else []


def queues(root: Path) -> list[str]:
    r = Path(root)
    return sorted(p.name for p in r.iterdir() if p.is_dir() and any(p.glob("*.seg"))) if r.exists() else []


def load(root: Path, queue: str, start: int = 0, end: int = 2**64 - 1) -> np.ndarray:
    """All records of one queue as one structured array."""
    parts = [r for p in segments(root, queue) for r in read(p, start, end)]
    if not parts:
        files = segments(root, queue)
        return np.zeros(0, dtype_of(scan(files[0]).desc)) if files else np.zeros(0)
    return np.concatenate(parts)


def upgrade(records: np.ndarray, msg_type) -> np.ndarray:
    """Old-schema records as the current type: shared fields copied, new fields zero."""
    out = np.zeros(len(records), msg_type.DTYPE)
    for name in records.dtype.names:
        if name in out.dtype.names:
            out[name] = records[name]
    return out
