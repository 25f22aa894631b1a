"""A client WebSocket read from the caller's own thread: websockets' sans-I/O protocol over a
non-blocking socket (TLS included), no reader thread.

Connecting blocks (TCP, TLS, the HTTP upgrade, all within ``open_timeout``); nothing does after
that.  :meth:`WsClient.read` takes what the socket holds and stamps its receipt time
(``mantra._spine.now()``) the moment ``recv`` returns, before any decoding: each complete message
goes to ``msgs`` as ``(data, ts)`` (``str`` for text, ``bytes`` for binary).  A message split over
several reads carries the stamp of the read that completed it; messages of one read share its stamp.

The common case, a read holding only whole unfragmented text frames while the stream is at a frame
boundary, is parsed here directly (a frame header is 2-10 bytes); everything else (control
frames, fragments, compressed or split frames) goes through the protocol.  So that both stay
in step, every byte handed to the protocol is also walked frame by frame here (``_walk``): the
direct path is taken only at a boundary.

Frames the protocol answers by itself (pongs to the server's pings, the echo of a close) are written
at once.  When the connection is over (closed by the peer, EOF, a socket error, a frame that breaks
the WebSocket protocol) ``ended`` says why; the messages that came before stay in ``msgs``.

An error raised while connecting has its message masked (:mod:`mantra.redact`: a ``listenKey`` in the
URL, a proxy's password), and the protocol's debug lines (the request line, headers) go to this
module's logger, whose records are masked too.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import time
from collections import deque

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import USER_AGENT, Response
from websockets.protocol import OPEN
from websockets.uri import parse_uri

from .. import _spine
from ..redact import redact_exception

log = logging.getLogger(__name__)

_now = _spine.now
_text_frames = _spine.text_frames
_mono = time.monotonic
_AGAIN = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)  # nothing to read / no room
TEXT, BINARY, CONT, PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG
RECV_SIZE = 1 << 18  # into one buffer kept per connection: a fresh 256 KiB per recv costs an mmap


def _open_socket(uri, proxy, timeout: float) -> socket.socket:
    """TCP to the server, or through ``proxy`` (a URL; True: from the environment)."""
    if proxy is True:
        from websockets.proxy import get_proxy

        proxy = get_proxy(uri)
    if not proxy:
        return socket.create_connection((uri.host, uri.port), timeout=timeout)
    from websockets.proxy import parse_proxy
    from websockets.sync.client import connect_http_proxy, connect_socks_proxy
    from websockets.sync.utils import Deadline

    p = parse_proxy(proxy)
    if p.scheme.startswith("socks"):
        return connect_socks_proxy(p, uri, Deadline(timeout))
    return connect_http_proxy(p, uri, Deadline(timeout), user_agent_header=USER_AGENT)


class WsClient:
    """One client connection.  Not thread-safe: one thread reads, writes and closes it."""

    def __init__(self, url: str, *, headers: dict | None = None, open_timeout: float = 10.0,
                 max_size: int | None = 1 << 25, compression: str | None = None, proxy: str | bool | None = None):
        try:
            self._open(url, headers, open_timeout, max_size, compression, proxy)
        except Exception as e:
            raise redact_exception(e)  # the URL, headers or proxy may be in its message

    def _open(self, url, headers, open_timeout, max_size, compression, proxy) -> None:
        uri = parse_uri(url)
        extensions = None
        if compression == "deflate":
            from websockets.extensions.permessage_deflate import enable_client_permessage_deflate

            extensions = enable_client_permessage_deflate(None)
        elif compression is not None:
            raise ValueError(f"unsupported compression: {compression}")
        self.proto = ClientProtocol(uri, extensions=extensions, max_size=max_size, logger=log)
        self.msgs: deque = deque()  # (data, receipt ns) of each complete message not yet taken
        self._append = self.msgs.append
        self.lane = None  # a protocol's Lane.take: frames it takes are published from read()
        self.taken = self.taken_chars = 0  # frames (and characters) it took, for the runner to count
        self.read_ts = 0  # the stamp of the read they came in
        self.ended: str | None = None  # why the connection is over
        self.bad_frames = 0  # text messages that are not UTF-8, frames that break the protocol
        self.response: Response | None = None
        self.last_rx = _mono()  # last bytes of any kind (pings and pongs too): the watchdog's clock
        self.ping_sent: float | None = None  # monotonic time of the unanswered keepalive ping
        self._ping = b""
        self._pings = 0
        self._frag: list | None = None  # opcode then the parts of a fragmented message
        self._rest = 0  # bytes of the frame the protocol is in the middle of
        self._head = b""  # a frame header split across reads, as given to the protocol
        self.max_size = max_size or 1 << 62
        self._out = bytearray()  # written when the socket has room
        self._rx = memoryview(bytearray(RECV_SIZE))
        deadline = _mono() + open_timeout
        sock = _open_socket(uri, proxy, open_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if uri.secure:
                sock.settimeout(max(deadline - _mono(), 0.001))
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=uri.host)
            self.sock = sock
            self._handshake(headers, deadline)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._tls = uri.secure  # decrypted bytes can wait inside the TLS layer, unseen by poll()
        self._poller = select.poll()
        self._poller.register(sock.fileno(), select.POLLIN)
        self._ready = self._poller.poll

    def _handshake(self, headers: dict | None, deadline: float) -> None:
        proto, sock = self.proto, self.sock
        req = proto.connect()
        if headers:
            req.headers.update(headers)
        req.headers.setdefault("User-Agent", USER_AGENT)
        proto.send_request(req)
        self._flush()
        got = bytearray()  # what came before the first frame boundary is known
        while self.response is None:
            left = deadline - _mono()
            if left <= 0:
                raise TimeoutError("timed out waiting for the handshake response")
            sock.settimeout(left)
            data = sock.recv(RECV_SIZE)
            ts = _now()
            if data:
                got += data
                proto.receive_data(data)
            else:
                proto.receive_eof()
            events = proto.events_received()
            if proto.handshake_exc is not None:
                raise proto.handshake_exc
            if events and isinstance(events[0], Response):
                self.response = events.pop(0)
                self._walk(bytes(got[got.find(b"\r\n\r\n") + 4:]))  # frames read with the response
                self._frames(events, ts)  # frames that came in the response's read
                self._flush()  # and the pongs they asked for
                self._check()
            elif not data:
                raise ConnectionError("connection closed during the handshake")

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> bool:
        """Messages (or bytes inside TLS) are waiting to be taken without touching the socket."""
        return bool(self.msgs) or (self._tls and self.ended is None and self.sock.pending() > 0)

    def read(self, timeout: float = 0.0) -> bool:
        """Take what the socket holds, waiting up to ``timeout`` s for it; True if bytes came."""
        if self.ended is not None:
            return False
        if not (self._tls and self.sock.pending()) and not self._ready(timeout * 1000 if timeout > 0 else 0):
            return False
        try:
            k = self.sock.recv_into(self._rx)
        except _AGAIN:
            return False
        except OSError as e:
            self._end(f"recv failed: {type(e).__name__}: {e}")
            return False
        ts = _now()
        self.last_rx = _mono()
        proto = self.proto
        if not k:
            proto.receive_eof()
            self._end("closed by peer (EOF)")
            return False
        if not self._rest and not self._head:
            # At a frame boundary: the common frames in C (_direct is its reference), then the rest.
            # A lane (set by the runner) publishes the frames it takes from here, unless frames are
            # already waiting (they go first).
            i, taken, chars = _text_frames(self._rx, k, ts, self._append, self.max_size,
                                           None if self.msgs else self.lane)
            if taken:
                self.taken += taken
                self.taken_chars += chars
                self.read_ts = ts
            if i < k:
                data = self._rx[i:k].tobytes()
                data = data[self._direct(data, ts):]
            if i == k or not data:
                if self._out:
                    self._flush()
                return True
        else:
            data = self._rx[:k].tobytes()
        self._walk(data)
        proto.receive_data(data)
        self._frames(proto.events_received(), ts)
        if proto.writes:  # pongs, a close echo
            self._flush()
        if proto.state is not OPEN:
            self._check()
        elif self._out:
            self._flush()
        return True

    def _direct(self, data: bytes, ts: int) -> int:
        """Take the whole unfragmented, uncompressed text frames at the start of ``data`` (a frame
        boundary); returns how many bytes they span."""
        i, n, msgs = 0, len(data), self.msgs
        while n - i >= 2 and data[i] == 0x81 and data[i + 1] < 0x80:  # FIN + TEXT, unmasked
            ln, h = data[i + 1], 2
            if ln == 126:
                ln, h = int.from_bytes(data[i + 2:i + 4], "big"), 4
            elif ln == 127:
                ln, h = int.from_bytes(data[i + 2:i + 10], "big"), 10
            end = i + h + ln
            if end > n or ln > self.max_size or n - i < h:
                break
            try:
                msgs.append((data[i + h:end].decode(), ts))
            except UnicodeDecodeError as e:
                self.bad_frames += 1
                log.warning("%s: text message that is not UTF-8 dropped: %s", self.proto.uri.host, e)
            i = end
        return i

    def _walk(self, data: bytes) -> None:
        """Follow the frame boundaries in bytes handed to the protocol."""
        if self._rest:
            k = min(self._rest, len(data))
            self._rest -= k
            data = data[k:]
            if self._rest:
                return
        buf = self._head + data if self._head else data
        i, n = 0, len(buf)
        while n - i >= 2:
            ln, h = buf[i + 1] & 0x7F, 2
            if ln == 126:
                h = 4
            elif ln == 127:
                h = 10
            if buf[i + 1] & 0x80:
                h += 4  # masked (a server never should; the protocol will say so)
            if n - i < h:
                break
            if ln >= 126:
                ln = int.from_bytes(buf[i + 2:i + (4 if ln == 126 else 10)], "big")
            end = i + h + ln
            if end > n:
                self._rest, self._head = end - n, b""
                return
            i = end
        self._head = bytes(buf[i:])

    def _frames(self, frames: list, ts: int) -> None:
        msgs = self.msgs
        for f in frames:
            op = f.opcode
            if op is TEXT or op is BINARY:
                if not f.fin:
                    self._frag = [op, f.data]
                    continue
                data = f.data
            elif op is CONT:
                self._frag.append(f.data)  # the protocol rejects a CONT without a start
                if not f.fin:
                    continue
                op, *parts = self._frag
                self._frag = None
                data = b"".join(parts)
            else:
                if op is PONG and f.data == self._ping:
                    self.ping_sent = None
                continue  # pings are answered by the protocol, a close is seen by _check
            if op is TEXT:
                try:
                    data = data.decode()
                except UnicodeDecodeError as e:
                    self.bad_frames += 1
                    log.warning("%s: text message that is not UTF-8 dropped: %s", self.proto.uri.host, e)
                    continue
            else:
                data = bytes(data)
            msgs.append((data, ts))

    def _check(self) -> None:
        """After the protocol left OPEN: say why."""
        proto = self.proto
        if proto.state is OPEN:
            return
        exc = proto.parser_exc
        if exc is not None and not isinstance(exc, EOFError):
            self.bad_frames += 1
            self._end(f"protocol error: {type(exc).__name__}: {exc}")
        elif proto.close_rcvd is not None:
            self._end(f"closed by peer: {proto.close_rcvd}")
        else:
            self._end("closed by peer")

    def _end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason

    def _flush(self) -> None:
        out = self._out
        for chunk in self.proto.data_to_send():
            out += chunk  # the empty end-of-stream marker adds nothing: close() ends the socket
        while out:
            try:
                k = self.sock.send(out)
            except _AGAIN:
                return  # the kernel's buffer is full: the rest goes with the next read
            except OSError as e:
                out.clear()
                self._end(f"send failed: {type(e).__name__}: {e}")
                return
            del out[:k]

    def send_text(self, text: str) -> bool:
        """Queue a text message and write it; False if the connection can no longer send."""
        if self.ended is not None or self.proto.state is not OPEN:
            return False
        self.proto.send_text(text.encode())
        self._flush()
        return self.ended is None

    def ping(self) -> None:
        """A keepalive ping; ``ping_sent`` is cleared when its pong comes."""
        if self.ended is not None or self.proto.state is not OPEN:
            return
        self._pings += 1
        self._ping = self._pings.to_bytes(4, "big")
        self.ping_sent = _mono()
        self.proto.send_ping(self._ping)
        self._flush()

    def close(self) -> None:
        """Say goodbye (a close frame, if the connection is still open) and close the socket at once."""
        try:
            if self.ended is None and self.proto.state is OPEN:
                self.proto.send_close(1000)
                self._flush()
        except Exception:  # noqa: BLE001 - the socket is going away either way
            pass
        self._end("closed")
        self.sock.close()
