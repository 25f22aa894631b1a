"""A connected socket served from memory, for benchmarks of the feed's real client
(``feeds.wsclient``) without a server competing for the cores.

It answers the WebSocket upgrade as a server would, then hands over pre-encoded server frames:
one per read at most every ``gap_ns`` (so each frame's reaction is measured alone, as a venue
paces them), or with ``batch`` as many whole frames as fit in ``batch`` bytes per read (a busy
socket's kernel buffer).  At the end it says EOF (``eof``: the runner reconnects and the next
socket replays the frames) or has nothing more to read.
"""

from __future__ import annotations

import base64
import hashlib
import os

from .._spine import now

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(payload: bytes) -> bytes:
    """A server's (unmasked) final text frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 1 << 16:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + payload


class MemSocket:
    def __init__(self, frames: list[bytes], *, gap_ns: int = 0, batch: int = 0, eof: bool = False):
        self._r, self._w = os.pipe()
        os.write(self._w, b"x")  # always readable: poll(2) never blocks, recv_into says when a frame is due
        self.frames, self.gap, self.batch, self.eof = frames, gap_ns, batch, eof
        self.i = self.due = 0
        self._answer = b""

    def fileno(self) -> int:
        return self._r

    def setsockopt(self, *a) -> None:
        pass

    def settimeout(self, t) -> None:
        pass

    def setblocking(self, flag) -> None:
        pass

    def send(self, data) -> int:
        data = bytes(data)
        if data.startswith(b"GET "):  # the upgrade request: answer it as a server would
            key = next(line.split(b":", 1)[1].strip() for line in data.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            self._answer = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        return len(data)

    sendall = send

    def recv(self, n: int) -> bytes:
        a, self._answer = self._answer, b""
        return a

    def recv_into(self, buf) -> int:
        frames, i = self.frames, self.i
        if i >= len(frames):
            if self.eof:
                return 0
            raise BlockingIOError
        if self.gap:
            t = now()
            if t < self.due:
                raise BlockingIOError
            self.due = t + self.gap
        room = min(len(buf), self.batch) if self.batch else 0
        k = 0
        while i < len(frames):
            f = frames[i]
            if k and k + len(f) > room:
                break
            buf[k:k + len(f)] = f
            k += len(f)
            i += 1
        self.i = i
        return k

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
