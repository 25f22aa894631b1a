"""Segment files: the persisted form of a spine queue.

A segment is append-only and self-describing (format 2; every byte under a checksum)::

    file header   b"MANTRSEG" | u32 format version | u32 descriptor length | descriptor (JSON)
                  | u32 crc32 of all of it                     -- written twice, back to back
    chunk*        b"MSEGCHNK" | u32 payload bytes | u32 records | u32 crc32(payload)
                  | u64 first publish ns | u64 last publish ns | u64 ring | u64 seq
                  | u32 crc32 of this header | payload (zstd)

The descriptor names the queue and its message type with every field (name, numpy format, offset),
the record size and a schema version, so a file written by an older layout is still decoded by its
own description.  A chunk's payload is the records stored column by column, integer columns
delta-encoded (timestamps, prices and sequence-like ids then compress ~20x), then zstd.  ``ring``
and ``seq`` say where the records came from: the ring's identity (its creation time) and the ring
sequence number just past the chunk's last record, so a restarted persister resumes exactly after
what is on disk (both 0 when the records came from elsewhere).

Damage costs only what it hits.  The header is kept twice; each chunk starts with a sync marker
and has its header and payload checksummed, so a reader skips a damaged chunk (or a torn tail, or
bytes appended after one) and finds the next by its marker.  Sizes are checked against the file
and ``MAX_CHUNK_BYTES`` before anything is allocated.  Whatever is skipped is reported: a
``Damage`` entry (file, offset, bytes, reason) on ``SegmentInfo.damage``, and through ``load()``'s
``damage`` list to export, replay and backtests.  Format 1 files (one header, unchecked chunk
headers) still read, with the same bounds.
The chunk headers double as the time index: ``read(..., start, end)`` skips chunks outside the range
without decompressing them.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import zstandard

log = logging.getLogger(__name__)

MAGIC = b"MANTRSEG"
FORMAT_VERSION = 2
SCHEMA_VERSION = 1  # bump when a message type changes shape; old files keep their own descriptor
SYNC = b"MSEGCHNK"  # starts every chunk: where a reader picks up again after damage
CHUNK = struct.Struct("<8sIIIQQQQI")
_HEAD = struct.Struct("<8sII")
MAX_DESC = 1 << 16  # a descriptor is a few hundred bytes
MAX_CHUNK_BYTES = 1 << 30  # decoded size of one chunk a reader accepts
CHUNK_RECORDS = 1 << 20  # what a writer puts in one chunk at most (<= 120 MiB decoded)
# format 1: one unchecked header, chunks with a u32 magic and no header checksum
V1_CHUNK = struct.Struct("<IIIIQQ")
V1_MAGIC = 0x4B4E4843  # "CHNK"


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


class NotASegment(ValueError):
    """The file is not a segment file at all."""


class Damaged(ValueError):
    """A chunk that cannot be what its header says."""


def packed_size(dt: np.dtype) -> int:
    """Bytes one record takes in a payload (its fields, no padding)."""
    return sum(dt.fields[n][0].itemsize for n in dt.names)


def _decode(payload: bytes, n: int, dt: np.dtype, t0: int, t1: int) -> np.ndarray:
    size = n * packed_size(dt)
    try:
        declared = zstandard.get_frame_parameters(payload).content_size
    except zstandard.ZstdError as e:
        raise Damaged(f"not a zstd frame ({e})") from None
    if declared != size or size > MAX_CHUNK_BYTES:  # checked before zstd allocates it
        raise Damaged(f"payload decodes to {declared} bytes, {n} records take {size}")
    try:
        raw = zstandard.ZstdDecompressor().decompress(payload, max_output_size=size)
    except zstandard.ZstdError as e:
        raise Damaged(f"payload does not decode ({e})") from None
    if len(raw) != size:
        raise Damaged(f"payload decoded to {len(raw)} bytes, {n} records take {size}")
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
    if "publish" in dt.names and n and (int(out["publish"][0]) != t0 or int(out["publish"][-1]) != t1):
        raise Damaged("records do not match the chunk's time range")
    return out


def _file_header(desc: dict) -> bytes:
    d = json.dumps(desc).encode()
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, len(d)) + d
    return head + struct.pack("<I", zlib.crc32(head))


class SegmentWriter:
    """Appends record batches (structured arrays of the queue's DTYPE) as chunks.

    An existing file is appended to only if it is of this format and the same queue layout.
    """

    def __init__(self, path: Path, queue: str, msg_type, level: int = 9, fsync: bool = False):
        self.path = Path(path)
        self.desc = descriptor(queue, msg_type)
        self.dtype = dtype_of(self.desc)
        self.names = list(self.dtype.names)
        self.level, self.fsync = level, fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            info = scan(self.path)
            if info.version != FORMAT_VERSION or info.desc != self.desc:
                raise ValueError(f"{self.path}: written as format {info.version} for {info.desc and info.desc['type']}"
                                 f", cannot append {msg_type.__name__} (format {FORMAT_VERSION}): use a new file")
        self.f = open(self.path, "ab")
        if new:
            self.f.write(_file_header(self.desc) * 2)  # two copies: one damaged header costs nothing
            self.f.flush()
        self.records = 0
        self.raw_bytes = 0
        self.bytes = self.f.tell()

    def append(self, records: np.ndarray, ring: int = 0, seq: int = 0) -> None:
        """``ring``/``seq``: the source ring's identity and the sequence number just past the
        last record (0: not from a ring)."""
        n = len(records)
        for i in range(0, n, CHUNK_RECORDS):
            part = records[i:i + CHUNK_RECORDS]
            self._chunk(part, ring, seq - (n - i - len(part)) if seq else 0)

    def _chunk(self, records: np.ndarray, ring: int, seq: int) -> None:
        recs = records if records.dtype == self.dtype else records[self.names]  # drop padding fields
        payload = _encode(recs, self.level)
        pub = recs["publish"]
        head = CHUNK.pack(SYNC, len(payload), len(recs), zlib.crc32(payload), int(pub[0]), int(pub[-1]),
                          ring, seq, 0)[:-4]
        self.f.write(head + struct.pack("<I", zlib.crc32(head)) + payload)
        self.f.flush()  # the chunk is in the OS now: a killed process loses nothing already appended
        if self.fsync:
            os.fsync(self.f.fileno())
        self.records += len(recs)
        self.raw_bytes += len(recs) * (self.dtype.itemsize + 8)  # what the records take in a slot
        self.bytes += CHUNK.size + len(payload)

    def close(self) -> None:
        if not self.f.closed:
            self.f.close()


class Chunk(NamedTuple):
    offset: int  # of the payload
    size: int  # payload bytes
    records: int
    crc: int
    first: int  # publish ns
    last: int
    ring: int = 0
    seq: int = 0


@dataclass(frozen=True)
class Damage:
    """Bytes of a segment file a reader skipped, and why."""
    path: str
    offset: int
    bytes: int
    reason: str
    records: int = 0  # records lost there, when a valid header said how many

    def __str__(self) -> str:
        lost = f", {self.records} records" if self.records else ""
        return f"{self.path} @{self.offset}: {self.bytes} bytes skipped ({self.reason}{lost})"


def summary(damage: list) -> dict:
    """What a list of ``Damage`` amounts to, for reports and results."""
    return {"chunks": len(damage), "bytes": sum(d.bytes for d in damage),
            "records": sum(d.records for d in damage), "where": [str(d) for d in damage]}


@dataclass
class SegmentInfo:
    path: Path
    desc: dict | None  # None: no header copy survived, the file cannot be decoded
    chunks: list = field(default_factory=list)  # Chunk per valid chunk, in file order
    damage: list = field(default_factory=list)  # Damage per skipped region
    version: int = FORMAT_VERSION

    @property
    def records(self) -> int:
        return sum(c.records for c in self.chunks)

    @property
    def torn(self) -> int:
        """Bytes skipped (damaged, or a tail that does not form a whole chunk)."""
        return sum(d.bytes for d in self.damage)

    def _damaged(self, offset: int, nbytes: int, reason: str, records: int = 0) -> None:
        d = Damage(str(self.path), offset, nbytes, reason, records)
        self.damage.append(d)
        log.warning("segment damage: %s", d)


def _header(buf: bytes, size: int):
    """(version, descriptor, where chunks start, damage notes) from a file's first bytes."""
    notes = []
    for at in [0] + [i for i in _find_all(buf, MAGIC, 1)][:4]:
        if len(buf) < at + _HEAD.size:
            break
        magic, ver, dlen = _HEAD.unpack_from(buf, at)
        end = at + _HEAD.size + dlen
        if magic != MAGIC or dlen > MAX_DESC or end + 4 > len(buf):
            continue
        if struct.unpack_from("<I", buf, end)[0] != zlib.crc32(buf[at:end]):
            continue
        if ver > FORMAT_VERSION:
            raise ValueError(f"segment format {ver} is newer than this build ({FORMAT_VERSION})")
        copy = end + 4 - at
        start = 2 * copy if at == 0 else at + copy
        if buf[copy:2 * copy] != buf[:copy]:
            notes.append((0 if at else copy, copy, f"header copy {2 if at == 0 else 1} damaged"))
        desc = _desc(buf[at + _HEAD.size:end])
        if desc is not None:
            return ver, desc, start, notes
    magic, ver, dlen = _HEAD.unpack_from(buf, 0)
    if magic == MAGIC and ver == 1 and dlen <= MAX_DESC and _HEAD.size + dlen <= size:
        desc = _desc(buf[_HEAD.size:_HEAD.size + dlen])  # format 1: one header, no checksum
        if desc is not None:
            return 1, desc, _HEAD.size + dlen, notes
    if magic == MAGIC and ver > FORMAT_VERSION and ver != 0xFFFFFFFF:
        raise ValueError(f"segment format {ver} is newer than this build ({FORMAT_VERSION})")
    if MAGIC not in buf:
        raise NotASegment("not a segment file")
    return None, None, size, [(0, size, "file header damaged (both copies): nothing decodable")]


def _desc(raw: bytes) -> dict | None:
    """A descriptor, if it is one this build can decode with."""
    try:
        desc = json.loads(raw)
        dtype_of(desc)
        return desc
    except (ValueError, TypeError, KeyError):
        return None


def _find_all(buf: bytes, sub: bytes, start: int):
    i = buf.find(sub, start)
    while i >= 0:
        yield i
        i = buf.find(sub, i + 1)


class _Scanner:
    """Walks a file's chunks; on a header that does not check out, resynchronises on the next
    chunk marker whose header does."""

    def __init__(self, f, info: SegmentInfo, size: int, itemsize: int):
        self.f, self.info, self.size, self.itemsize = f, info, size, itemsize
        self.v1 = info.version == 1
        self.hsize = V1_CHUNK.size if self.v1 else CHUNK.size

    def header(self, pos: int, strict: bool = False) -> Chunk | None:
        """The chunk at ``pos`` if its header is sound and its sizes fit (``strict``: and its
        payload matches its checksum)."""
        self.f.seek(pos)
        h = self.f.read(self.hsize)
        if len(h) < self.hsize:
            return None
        if self.v1:
            magic, plen, n, crc, t0, t1 = V1_CHUNK.unpack(h)
            ring = seq = 0
            if magic != V1_MAGIC:
                return None
        else:
            sync, plen, n, crc, t0, t1, ring, seq, hcrc = CHUNK.unpack(h)
            if sync != SYNC or hcrc != zlib.crc32(h[:-4]):
                return None
        raw = n * self.itemsize
        if not n or raw > MAX_CHUNK_BYTES or plen > raw + raw // 64 + 4096 \
                or pos + self.hsize + plen > self.size:
            return None
        if strict and zlib.crc32(self.f.read(plen)) != crc:
            return None
        return Chunk(pos + self.hsize, plen, n, crc, t0, t1, ring, seq)

    def next_sync(self, pos: int) -> tuple[int, Chunk | None]:
        """The first sound chunk after ``pos`` (payload checked too: a stale header inside
        damaged bytes must not swallow good chunks)."""
        marker = struct.pack("<I", V1_MAGIC) if self.v1 else SYNC
        at, block = pos + 1, 1 << 20
        while at < self.size:
            self.f.seek(at)
            buf = self.f.read(block + len(marker) - 1)
            for i in _find_all(buf, marker, 0):
                c = self.header(at + i, strict=True)
                if c:
                    return at + i, c
            at += block
        return self.size, None

    def run(self, pos: int) -> None:
        info = self.info
        while pos < self.size:
            c = self.header(pos)
            # a sound header followed by neither the end nor another sound header: the chunk may
            # be a torn one that later appends ran over, so its payload decides
            if c and c.offset + c.size < self.size and not self.header(c.offset + c.size):
                c = self.header(pos, strict=True)
            if c:
                info.chunks.append(c)
                pos = c.offset + c.size
                continue
            nxt, c = self.next_sync(pos)
            info._damaged(pos, nxt - pos, "damaged chunk" if c else "torn or damaged tail")
            pos = nxt


def scan(path: Path) -> SegmentInfo:
    """Read the header and the chunk index (no decompression).  Damage is noted, not raised;
    only a file that is not a segment at all, or of a newer format, raises ValueError."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        buf = f.read(2 * (_HEAD.size + MAX_DESC + 4))
        if len(buf) < _HEAD.size:
            raise NotASegment(f"{path}: not a segment file (too short)")
        try:
            ver, desc, pos, notes = _header(buf, size)
        except NotASegment as e:
            raise NotASegment(f"{path}: {e}") from None
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        info = SegmentInfo(Path(path), desc, version=ver or FORMAT_VERSION)
        for at, n, why in notes:
            info._damaged(at, n, why)
        if desc is not None:
            _Scanner(f, info, size, packed_size(dtype_of(desc))).run(pos)
    return info


def read(path: Path, start: int = 0, end: int = 2**64 - 1, info: SegmentInfo | None = None):
    """Yield record arrays (the file's own dtype) of the chunks overlapping [start, end].
    A chunk whose payload fails its checks is skipped and noted on ``info.damage``."""
    info = info or scan(path)
    if info.desc is None:
        return
    dt = dtype_of(info.desc)
    hsize = V1_CHUNK.size if info.version == 1 else CHUNK.size
    with open(path, "rb") as f:
        for c in info.chunks:
            if c.last < start or c.first > end:
                continue
            f.seek(c.offset)
            payload = f.read(c.size)
            try:
                if zlib.crc32(payload) != c.crc:
                    raise Damaged("payload checksum mismatch")
                recs = _decode(payload, c.records, dt, c.first, c.last)
            except Damaged as e:
                info._damaged(c.offset - hsize, hsize + c.size, str(e), c.records)
                continue
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


def load(root: Path, queue: str, start: int = 0, end: int = 2**64 - 1, damage: list | None = None) -> np.ndarray:
    """All records of one queue as one structured array.  What had to be skipped is logged and,
    when ``damage`` is a list, appended to it (``Damage`` entries)."""
    parts, dt = [], None
    for p in segments(root, queue):
        if not p.stat().st_size:  # created, then the process died before the header: nothing lost
            continue
        try:
            info = scan(p)
        except NotASegment as e:  # e.g. cut inside its header: nothing in it can be read
            info = SegmentInfo(p, None)
            info._damaged(0, p.stat().st_size, str(e).removeprefix(f"{p}: "))
        parts += read(p, start, end, info)
        if info.desc is not None and dt is None:
            dt = dtype_of(info.desc)
        if damage is not None:
            damage += info.damage
    if not parts:
        return np.zeros(0, dt) if dt is not None else np.zeros(0)
    return np.concatenate(parts)


def resume_point(root: Path, queue: str) -> tuple[int, int]:
    """(ring, seq) of the newest chunk on disk that came from a ring (0, 0 when there is none):
    where the persister that wrote it stopped."""
    for p in reversed(segments(root, queue)):
        try:
            chunks = scan(p).chunks
        except ValueError:
            continue
        if chunks:  # the newest file with records decides
            return next(((c.ring, c.seq) for c in reversed(chunks) if c.seq), (0, 0))
    return 0, 0


def upgrade(records: np.ndarray, msg_type) -> np.ndarray:
    """Old-schema records as the current type: shared fields copied, new fields zero."""
    out = np.zeros(len(records), msg_type.DTYPE)
    for name in records.dtype.names:
        if name in out.dtype.names:
            out[name] = records[name]
    return out
