"""Reader for cryptofeed raw-data recordings (the format of ``../shared/data/captures``).

One record per line, written by cryptofeed's ``AsyncFileCallback``:

    configuration: <text>                   header (optional)
    <url> <-> <time>                        a WebSocket connection was opened
    <url> <- <time>: <payload>              a frame the client sent
    <time>: <payload>                       a frame (or poll body) the client received
    <url> -> <time>: <body>                 a REST response body

``<time>`` is ``str(time.time())``: decimal seconds.  It is converted to integer nanoseconds from
the text itself (never through float), so a recording replays with the exact receipt times it was
written with.  Sub-nanosecond digits, which a float repr can carry, are truncated.  Binary frames
appear as a Python bytes literal (``b'...'``) and are returned as ``bytes``.

A malformed line is counted, remembered (line number and reason, the first few) and skipped: one bad
line must not hide the rest of a recording.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Iterator, NamedTuple

log = logging.getLogger(__name__)

OPEN, SENT, RECV, HTTP, CONFIG = "open", "sent", "recv", "http", "config"
_ARROWS = {"<->": OPEN, "<-": SENT, "->": HTTP}
_ARROW_OF = {v: k for k, v in _ARROWS.items()}


class Record(NamedTuple):
    kind: str  # OPEN | SENT | RECV | HTTP | CONFIG
    url: str  # connection url (RECV: the connection opened last in the file), request url (HTTP)
    ts: int  # receipt time, ns since the epoch
    payload: str | bytes  # "" for OPEN
    line: int = 0  # 1-based line number in the file, for error messages


class MalformedLine(ValueError):
    pass


def parse_time(text: str) -> int:
    """``"1633998512.0633569" -> 1633998512063356900`` exactly (sub-ns digits truncated)."""
    whole, dot, frac = text.partition(".")
    if not (whole.isdigit() and whole.isascii()) or (dot and not (frac.isdigit() and frac.isascii())):
        raise MalformedLine(f"bad timestamp {text!r}")
    return int(whole) * 1_000_000_000 + int(frac[:9].ljust(9, "0") if frac else 0)


def format_time(ts: int) -> str:
    """Inverse of :func:`parse_time` for whole nanoseconds (trailing zeros trimmed, at least ``.0``)."""
    s, ns = divmod(ts, 1_000_000_000)
    return f"{s}.{str(ns).rjust(9, '0').rstrip('0') or '0'}"


def _payload(text: str) -> str | bytes:
    if text[:2] in ("b'", 'b"'):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text  # a text frame that merely starts like a bytes literal
        if isinstance(value, bytes):
            return value
    return text


def parse_line(line: str, url: str = "", lineno: int = 0) -> Record:
    """Parse one line (without its newline).  ``url`` is the connection received frames belong to."""
    if line[:1].isdigit():
        head, sep, body = line.partition(": ")
        if not sep:
            raise MalformedLine("received line without ': '")
        return Record(RECV, url, parse_time(head), _payload(body), lineno)
    if line.startswith("configuration: "):
        return Record(CONFIG, "", 0, line[len("configuration: ") :], lineno)
    # URLs contain no spaces, so the first space ends the URL and the arrow follows it.
    first, _, rest = line.partition(" ")
    arrow, _, rest = rest.partition(" ")
    kind = _ARROWS.get(arrow)
    if not first or kind is None:
        raise MalformedLine("unrecognised line")
    if kind == OPEN:
        return Record(OPEN, first, parse_time(rest), "", lineno)
    head, sep, body = rest.partition(": ")
    if not sep:
        raise MalformedLine(f"{arrow} line without ': '")
    return Record(kind, first, parse_time(head), _payload(body), lineno)


def format_record(rec: Record) -> str:
    """The line cryptofeed would have written for ``rec`` (without newline)."""
    payload = repr(rec.payload) if isinstance(rec.payload, bytes) else rec.payload
    if rec.kind == RECV:
        return f"{format_time(rec.ts)}: {payload}"
    if rec.kind == CONFIG:
        return f"configuration: {payload}"
    if rec.kind == OPEN:
        return f"{rec.url} <-> {format_time(rec.ts)}"
    return f"{rec.url} {_ARROW_OF[rec.kind]} {format_time(rec.ts)}: {payload}"


class CaptureReader:
    """Iterate a recording's records lazily; ``malformed``/``errors`` fill in as lines are read."""

    MAX_ERRORS = 20  # remembered for reporting; all are counted

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lines = 0
        self.malformed = 0
        self.errors: list[tuple[int, str]] = []

    def __iter__(self) -> Iterator[Record]:
        url = ""
        with open(self.path, "rb") as fp:
            for lineno, raw in enumerate(fp, 1):
                self.lines = lineno
                raw = raw.rstrip(b"\r\n")
                if not raw.strip():
                    continue  # the writer separates flushed batches with blank lines
                try:
                    rec = parse_line(raw.decode("utf-8"), url, lineno)
                except (MalformedLine, UnicodeDecodeError) as e:
                    self._bad(lineno, str(e))
                    continue
                if rec.kind == OPEN:
                    url = rec.url
                yield rec

    def _bad(self, lineno: int, reason: str) -> None:
        self.malformed += 1
        if len(self.errors) < self.MAX_ERRORS:
            self.errors.append((lineno, reason))
        log.warning("%s:%d: malformed line skipped: %s", self.path.name, lineno, reason)


def read_capture(path: str | Path) -> CaptureReader:
    return CaptureReader(path)
