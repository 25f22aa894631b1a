"""Raw capture files: every frame a feed sends and receives and every REST body, with receipt times.

A capture file is a zstd stream of independent zstd frames ("chunks", each with its checksum), so
``zstdcat`` reads it and a crash loses at most the chunk being built: the writer buffers whole
records and compresses them into one chunk every ``flush_ms`` or ``flush_bytes``.  Files are never
appended to once closed (each writer opens new ones, rotated by size and age), so the only damage a
crash can do is a partial chunk at the end of the last file, which the reader counts and skips.

Inside a chunk, records follow each other::

    ts u64 | conn u32 | data_len u32 | meta_len u16 | status u16 | kind u8 | meta | data

``ts`` is the receipt (or send) time in ns since the epoch, ``conn`` the connection the record
belongs to (a new id for every connection opened, 0 when unknown), ``meta`` the URL of an OPEN or
REST record or the reason of a CLOSE, ``status`` the HTTP status of a REST record.  Text frames are
stored as UTF-8 and read back as ``str``; binary frames carry the ``BINARY`` kind bit and read back
as ``bytes``.  Every file starts with a META record (JSON: format, version, writer).

Secrets never reach a file: what we send (frames, URLs, headers) and the reasons of CLOSE records
go through :mod:`mantra.redact`, the redaction logs and error messages use too (secret field and
header values, tokens in URL paths, replaced by ``***``).  So are REST answers other than 200 (a
venue's error may echo the request; no protocol sees them), and all received data when
``redact_received`` is set (private channels echoing tokens).
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import struct
import time
from enum import IntEnum
from pathlib import Path
from typing import Iterator, NamedTuple

import zstandard

log = logging.getLogger(__name__)

FORMAT, VERSION = "mantra-capture", 1
SUFFIX = ".cap.zst"
MAGIC = b"\x28\xb5\x2f\xfd"  # zstd frame magic: where a damaged file's next chunk may start
HEAD = struct.Struct("<QIIHHB")
BINARY = 0x80


class Kind(IntEnum):
    META = 0
    OPEN = 1  # a connection was opened: meta = url, data = request headers (redacted)
    RECV = 2  # a frame received
    SENT = 3  # a frame sent
    REST = 4  # a REST answer: meta = url, status = HTTP status, data = body
    CLOSE = 5  # a connection ended: meta = reason


class Record(NamedTuple):
    ts: int
    conn: int
    kind: int  # Kind
    data: str | bytes
    meta: str = ""
    status: int = 0


class CaptureError(ValueError):
    pass


# -- redaction: the project's one (mantra.redact), shared with logs and errors ------------------
from ..redact import MASK, SECRET_FIELDS, SECRET_HEADERS, Redactor  # noqa: E402,F401 - part of this API


# -- writer ----------------------------------------------------------------------------------
class CaptureWriter:
    """Append records to rotating capture files in ``directory`` named ``<prefix>.<utc time>.<n>.cap.zst``.

    One writer per thread (no locking).  Call ``tick(now)`` now and then so a quiet connection's
    records are flushed within ``flush_ms`` too; ``close()`` flushes the rest.
    """

    def __init__(self, directory, prefix: str = "capture", *, flush_ms: float = 250.0,
                 flush_bytes: int = 256 << 10, rotate_bytes: int = 128 << 20, rotate_s: float = 3600.0,
                 level: int = 3, redactor: Redactor | None = None, redact_received: bool = False,
                 fsync: bool = False):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        if "/" in prefix or not prefix:
            raise ValueError(f"bad capture prefix {prefix!r}")
        self.prefix = prefix
        self.flush_ns = int(flush_ms * 1e6)
        self.flush_bytes, self.rotate_bytes, self.rotate_ns = flush_bytes, rotate_bytes, int(rotate_s * 1e9)
        self.redactor = redactor or Redactor()
        self.redact_received = redact_received
        self.fsync = fsync
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._buf = bytearray()
        self._first_ts = 0  # ts of the oldest record in the buffer
        self._last_ts = 0
        self._fd = -1
        self._opened_ns = 0
        self._size = 0
        self._seq = 0
        self._conn = 0
        self.files: list[Path] = []
        self.records = self.chunks = self.bytes_in = self.bytes_out = 0

    # records ---------------------------------------------------------------------------
    def open(self, ts: int, url: str, headers=None) -> int:
        """A connection opened: returns its new id for the records that follow."""
        self._conn += 1
        data = self.redactor.header_lines(headers) if headers else ""
        self.write(Kind.OPEN, self._conn, ts, data, self.redactor.text(url))
        return self._conn

    def recv(self, conn: int, ts: int, data) -> None:
        if self.redact_received:
            data = self.redactor.text(data)
        self.write(Kind.RECV, conn, ts, data)

    def sent(self, conn: int, ts: int, data) -> None:
        self.write(Kind.SENT, conn, ts, self.redactor.text(data))

    def rest(self, conn: int, ts: int, url: str, body: bytes, status: int = 200) -> None:
        if self.redact_received or status != 200:  # error bodies echo requests, and nothing replays them
            body = self.redactor.text(body)
        self.write(Kind.REST, conn, ts, body, self.redactor.text(url), status)

    def closed(self, conn: int, ts: int, reason: str = "") -> None:
        self.write(Kind.CLOSE, conn, ts, "", self.redactor.text(reason))

    def write(self, kind: int, conn: int, ts: int, data, meta: str = "", status: int = 0) -> None:
        """One record, as is (the typed methods above redact; the importer redacts itself)."""
        if isinstance(data, str):
            body = data.encode("utf-8", "surrogateescape")
        else:
            body = bytes(data)
            if kind in (Kind.RECV, Kind.SENT):
                kind |= BINARY
        m = meta.encode("utf-8", "surrogateescape")[:0xFFFF]
        buf = self._buf
        if not buf:
            self._first_ts = ts
        self._last_ts = ts
        buf += HEAD.pack(ts, conn, len(body), len(m), status, kind)
        buf += m
        buf += body
        self.records += 1
        if len(buf) >= self.flush_bytes or ts - self._first_ts >= self.flush_ns:
            self.flush(ts)

    # chunks and files ------------------------------------------------------------------
    def tick(self, now: int) -> None:
        if self._buf and now - self._first_ts >= self.flush_ns:
            self.flush(now)

    def flush(self, now: int | None = None) -> None:
        if not self._buf:
            return
        now = self._last_ts if now is None else now  # records' own clock: rotation follows their times
        if self._fd >= 0 and (self._size >= self.rotate_bytes or now - self._opened_ns >= self.rotate_ns):
            self._close_file()
        if self._fd < 0:
            self._open_file(now)
        raw = bytes(self._buf)
        self._buf.clear()
        self._put(raw)

    def _put(self, raw: bytes) -> None:
        chunk = self._cctx.compress(raw)
        view = memoryview(chunk)
        while view:  # one write() in practice; loop in case of a short write
            n = os.write(self._fd, view)
            view = view[n:]
        if self.fsync:
            os.fsync(self._fd)
        self._size += len(chunk)
        self.chunks += 1
        self.bytes_in += len(raw)
        self.bytes_out += len(chunk)

    def _open_file(self, now: int) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000))
        self._seq += 1
        while True:
            path = self.dir / f"{self.prefix}.{stamp}.{os.getpid()}.{self._seq:04d}{SUFFIX}"
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
                break
            except FileExistsError:
                self._seq += 1
        self.files.append(path)
        self._opened_ns, self._size = now, 0
        head = json.dumps({"format": FORMAT, "version": VERSION, "prefix": self.prefix, "created_ns": now})
        self._put(HEAD.pack(now, 0, len(head), 0, 0, Kind.META) + head.encode())

    def _close_file(self) -> None:
        if self.fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1

    def close(self) -> None:
        self.flush()
        if self._fd >= 0:
            self._close_file()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- reader ----------------------------------------------------------------------------------
def capture_files(paths) -> list[Path]:
    """Files named by ``paths`` (a path or a list; directories contribute their capture files)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for p in map(Path, paths):
        out += sorted(p.glob(f"*{SUFFIX}")) if p.is_dir() else [p]
    return out


class CaptureReader:
    """Records of any number of capture files, merged in receipt-time order.

    Damage is counted, never fatal: ``truncated`` files ending in a partial chunk (a crash, or a
    file still being written), ``corrupt`` chunks that failed to decode (skipped up to the next
    chunk), of which ``oversized`` would have decoded to more than ``max_chunk`` bytes (a chunk
    holds ``flush_bytes`` plus one record, so more is damage or a decompression bomb: refused
    before its memory is taken).  A file that is not a capture at all raises :class:`CaptureError`.
    """

    BLOCK = 1 << 18
    MAX_CHUNK = 64 << 20
    STEP = 64  # input fed at a time to a frame of undeclared size: bounds what one call can inflate

    def __init__(self, paths, max_chunk: int = MAX_CHUNK):
        self.paths = capture_files(paths)
        self.max_chunk = max_chunk
        self.records = self.truncated = self.corrupt = self.oversized = 0
        self.meta: dict[Path, dict] = {}

    def __iter__(self) -> Iterator[Record]:
        its = [self._file(p) for p in self.paths]
        if len(its) == 1:
            return its[0]
        return heapq.merge(*its, key=lambda r: r.ts)

    def _file(self, path: Path) -> Iterator[Record]:
        first, damage = True, self.corrupt
        for raw in self._chunks(path):
            for rec in self._records(raw, path):
                if rec.kind == Kind.META:
                    if first:
                        self.meta[path] = _check_meta(path, rec.data)
                elif first and self.corrupt == damage:
                    raise CaptureError(f"{path}: not a {FORMAT} file (no header record)")
                else:  # after a damaged header chunk the rest is still good
                    self.records += 1
                    yield rec
                first = False

    def _chunks(self, path: Path) -> Iterator[bytes]:
        """Decoded chunks of one file, skipping damaged and oversized ones."""
        dctx = zstandard.ZstdDecompressor()
        with open(path, "rb") as fp:
            buf = fp.read(self.BLOCK)  # input from the start of the chunk being decoded
            if buf and not buf.startswith(MAGIC):
                raise CaptureError(f"{path}: not a {FORMAT} file (no zstd magic)")
            while buf:
                if len(buf) < 18:  # a frame header is at most 18 bytes
                    buf += fp.read(self.BLOCK)
                size = _content_size(buf)
                if size is not None and size > self.max_chunk:
                    self._oversized(path, f"declares {size} bytes")
                    buf = self._next_magic(fp, buf)
                    continue
                # a declared size is enforced by zstd itself; an undeclared one is fed in small
                # steps and the output counted, so no single call can inflate far past the limit
                step = None if size is not None else self.STEP
                dobj, out, fed, total = dctx.decompressobj(), [], 0, 0
                while True:
                    if fed == len(buf):
                        more = fp.read(self.BLOCK)
                        if not more:
                            self.truncated += 1
                            log.warning("%s: ends in a partial chunk (%d bytes), skipped", path.name, len(buf))
                            return
                        buf += more
                    piece = buf[fed:fed + step] if step else (buf[fed:] if fed else buf)
                    fed += len(piece)
                    try:
                        data = dobj.decompress(piece)
                    except zstandard.ZstdError as e:
                        self._damaged(path, e)
                        buf = self._next_magic(fp, buf)
                        break
                    out.append(data)
                    total += len(data)
                    if total > self.max_chunk:
                        self._oversized(path, f"decodes to more than {total} bytes")
                        buf = self._next_magic(fp, buf)
                        break
                    if dobj.eof:
                        yield b"".join(out)
                        buf = dobj.unused_data + buf[fed:] or fp.read(self.BLOCK)
                        break

    def _next_magic(self, fp, buf: bytes) -> bytes:
        """``buf`` from the next chunk start after its first byte (reading on as needed); b"" at the end."""
        i = buf.find(MAGIC, 1)
        while i < 0:
            more = fp.read(self.BLOCK)
            if not more:
                return b""
            buf = buf[-3:] + more  # a magic may straddle the two reads
            i = buf.find(MAGIC)
        return buf[i:]

    def _records(self, raw: bytes, path: Path) -> Iterator[Record]:
        off, n, head = 0, len(raw), HEAD.size
        unpack = HEAD.unpack_from
        while off < n:
            if off + head > n:
                self._damaged(path, "record header past the chunk's end")
                return
            ts, conn, dlen, mlen, status, kind = unpack(raw, off)
            off += head
            end = off + mlen + dlen
            if end > n:
                self._damaged(path, "record past the chunk's end")
                return
            meta = raw[off:off + mlen].decode("utf-8", "surrogateescape") if mlen else ""
            body = raw[off + mlen:end]
            off = end
            if kind & BINARY:
                yield Record(ts, conn, kind & ~BINARY, body, meta, status)
            elif kind == Kind.REST:
                yield Record(ts, conn, kind, body, meta, status)
            else:
                yield Record(ts, conn, kind, body.decode("utf-8", "surrogateescape"), meta, status)

    def _damaged(self, path: Path, why) -> None:
        self.corrupt += 1
        log.warning("%s: damaged chunk skipped: %s", path.name, why)

    def _oversized(self, path: Path, why: str) -> None:
        self.oversized += 1
        self.corrupt += 1
        log.error("%s: chunk refused: %s, over the %d-byte limit", path.name, why, self.max_chunk)


def _content_size(buf: bytes) -> int | None:
    """The size a zstd frame declares it decodes to, None when it does not say (or the header is
    damaged: decoding then fails and is counted as such)."""
    try:
        size = zstandard.get_frame_parameters(buf[:18]).content_size
    except zstandard.ZstdError:
        return None
    return None if size >= zstandard.CONTENTSIZE_ERROR else size


def _check_meta(path: Path, text) -> dict:
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CaptureError(f"{path}: not a {FORMAT} file (header {text!r:.80})")
    if meta.get("version", 0) > VERSION:
        raise CaptureError(f"{path}: capture format version {meta['version']} is newer than this reader ({VERSION})")
    return meta


def read_captures(paths) -> CaptureReader:
    return CaptureReader(paths)


# -- import ----------------------------------------------------------------------------------
def import_cryptofeed(files, directory, prefix: str = "import", **writer_opts) -> dict:
    """Convert cryptofeed recordings (``mantra.store.cryptofeed``) into capture files.

    Records of all ``files`` are merged by receipt time.  Each connection-open line starts a new
    connection id; REST bodies (no connection in that format) get id 0.  What was sent is redacted
    like a live capture.  Returns counts and the files written.
    """
    from . import cryptofeed as cf

    readers = [cf.read_capture(f) for f in files]
    out = CaptureWriter(directory, prefix, **writer_opts)
    conns: dict[int, int] = {}  # reader index -> current connection id
    counts = {"records": 0, "skipped": 0}

    def tagged(i, reader):
        for rec in reader:
            yield rec.ts, i, rec

    try:
        for ts, i, rec in heapq.merge(*(tagged(i, r) for i, r in enumerate(readers)), key=lambda t: t[0]):
            if rec.kind == cf.OPEN:
                conns[i] = out.open(rec.ts, rec.url)
            elif rec.kind == cf.RECV:
                out.recv(conns.get(i, 0), rec.ts, rec.payload)
            elif rec.kind == cf.SENT:
                out.sent(conns.get(i, 0), rec.ts, rec.payload)
            elif rec.kind == cf.HTTP:
                body = rec.payload.encode("utf-8", "surrogateescape") if isinstance(rec.payload, str) else rec.payload
                out.rest(0, rec.ts, rec.url, body)
            else:  # configuration lines carry no time and nothing to replay
                counts["skipped"] += 1
                continue
            counts["records"] += 1
    finally:
        out.close()
    counts["malformed_lines"] = sum(r.malformed for r in readers)
    counts["files"] = [str(p) for p in out.files]
    return counts
