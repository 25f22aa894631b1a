"""The one blocking runner every venue's order protocol shares (``venues/account.py``).

It owns the IO a sans-IO ``OrderProtocol`` asks for and nothing else:

- WebSockets (``feeds.wsclient.WsClient``, read from the caller's thread, stamped on receipt): one
  per connection name the protocol opened, kept up — a dropped one is reported (``on_close``) and
  reopened with exponential back-off and jitter (``on_open`` again, where the protocol re-subscribes).
- HTTP on a worker thread (blocking ``http.client`` with keep-alive per host), so a slow REST call
  never holds up a WebSocket order; answers come back through ``poll`` (``on_http``), a timeout or
  transport error as status 0 (outcome unknown).
- The protocol's timer every ``timer_s``.
- ``loopback_only``: any connection or HTTP request to a host that is not loopback raises
  ``LoopbackOnly`` before anything leaves (every mode but ``live``).
- Requests: ``submit`` hands a request to the protocol and writes what it produced at once; once the
  protocol halted, every request is refused (``Reject.HALTED``) without reaching it.

What the protocol emits for the system (``OrderUpdate`` / ``Fill`` / ``BalanceUpdate``, ``Halt``)
goes to ``sink(message, ts)`` with the receipt time of the frame or answer that caused it.
``handler_ns`` keeps, when asked (``timing=True``), each request's time from ``submit`` to its bytes
handed to the socket, signing included (the order-entry benchmark).
"""

from __future__ import annotations

import http.client
import logging
import os
import queue
import random
import select
import threading
import time
from collections import Counter, deque
from urllib.parse import urlsplit

from .. import _spine
from ..redact import redact
from ..spine.messages import OrderRequest
from ..trading.accounts import Reject
from ..feeds.wsclient import WsClient
from ..venues.account import Close, Halt, Http, Open, OrderProtocol, WsSend

log = logging.getLogger(__name__)

_now = _spine.now
_mono = time.monotonic


LOOPBACK = ("127.0.0.1", "::1", "localhost")


class LoopbackOnly(ValueError):
    """A handler outside live mode was about to reach a real venue."""


def _check_loopback(venue: str, url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise LoopbackOnly(f"{venue}: {host} is a real venue: order entry outside loopback needs "
                           "mode = \"live\" and `mantra run --live`")


class _Conn:
    __slots__ = ("name", "url", "ws", "connect_at", "failures", "opened_at")

    def __init__(self, name: str, url: str):
        self.name, self.url = name, url
        self.ws: WsClient | None = None
        self.connect_at = 0.0
        self.failures = 0
        self.opened_at = 0.0


class HttpWorker:
    """Blocking HTTP requests on one thread; answers queue up for the owner, who is woken through
    a pipe (``fileno``) it can poll with its sockets."""

    def __init__(self, timeout: float = 5.0, user_agent: str = "mantra"):
        self.timeout, self.user_agent = timeout, user_agent
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.done: deque = deque()  # (tag, status, headers, body, receipt ns)
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self._conns: dict[tuple, http.client.HTTPConnection] = {}
        self._thread = threading.Thread(target=self._run, name="mantra-http", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._r

    def submit(self, req: Http) -> None:
        self.jobs.put(req)

    def take(self) -> list:
        try:
            os.read(self._r, 4096)
        except BlockingIOError:
            pass
        out = []
        while self.done:
            out.append(self.done.popleft())
        return out

    def close(self) -> None:
        self.jobs.put(None)
        self._thread.join(timeout=self.timeout + 1)
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _run(self) -> None:
        while True:
            req = self.jobs.get()
            if req is None:
                break
            status, headers, body = self._do(req)
            self.done.append((req.tag, status, headers, body, _now()))
            try:
                os.write(self._w, b"!")
            except OSError:
                pass
        for c in self._conns.values():
            c.close()

    def _do(self, req: Http):
        u = urlsplit(req.url)
        key = (u.scheme, u.hostname, u.port)
        path = u.path + ("?" + u.query if u.query else "")
        headers = {"User-Agent": self.user_agent, **dict(req.headers)}
        for attempt in (0, 1):  # a kept-alive connection the server closed meanwhile: once more, fresh
            conn = self._conns.get(key)
            if conn is None:
                cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
                conn = self._conns[key] = cls(u.hostname, u.port, timeout=self.timeout)
            try:
                conn.request(req.method, path, body=req.body or None, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                conn.close()
                self._conns.pop(key, None)
                if attempt or not isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError)):
                    return 0, {}, redact(f"{type(e).__name__}: {e}").encode()
            except Exception as e:  # noqa: BLE001 - timeouts, refused connections: the outcome is unknown
                conn.close()
                self._conns.pop(key, None)
                return 0, {}, redact(f"{type(e).__name__}: {e}").encode()
        return 0, {}, b"unreachable"


class AccountRunner:
    """Drives one ``OrderProtocol``.  Not thread-safe: one thread calls ``submit``/``poll``."""

    def __init__(self, protocol: OrderProtocol, sink, *, open_timeout: float = 5.0, http_timeout: float = 5.0,
                 backoff_s: float = 0.25, backoff_max_s: float = 10.0, stable_s: float = 10.0,
                 timer_s: float = 0.1, ping_interval: float | None = 15.0, timing: bool = False,
                 on_halt=None, loopback_only: bool = False, seed: int | None = None):
        self.proto, self.sink = protocol, sink
        self.open_timeout, self.backoff_s, self.backoff_max_s, self.stable_s = open_timeout, backoff_s, backoff_max_s, stable_s
        self.timer_s, self.ping_interval = timer_s, ping_interval
        self.on_halt = on_halt
        self.loopback_only = loopback_only
        self.http = HttpWorker(http_timeout)
        self.conns: dict[str, _Conn] = {}
        self.counts: Counter = Counter()
        self.handler_ns: list[int] | None = [] if timing else None
        self._rng = random.Random(seed)
        self._next_timer = 0.0
        self._next_ping = _mono() + (ping_interval or 0)
        self._poller = select.poll()
        self._fds: tuple = ()
        self.halted = ""
        self.closed = False
        self.started = False

    # -- driving --------------------------------------------------------------------------------
    def start(self) -> None:
        self.started = True
        self.proto.start(_now())
        self._drain(_now())
        self._connect_due()

    def submit(self, r: OrderRequest) -> None:
        if self.halted:
            self.proto.reject(r, Reject.HALTED, _now())
        else:
            t0 = _now()
            self.proto.submit(r, t0)
            self._drain(t0)
            if self.handler_ns is not None:
                self.handler_ns.append(_now() - t0)
            return
        self._drain(_now())

    def cancel_all(self) -> None:
        """The kill switch: every open order, on the venue's cancel-all where it has one."""
        self.proto.cancel_all(_now())
        self._drain(_now())

    def poll(self, timeout: float = 0.0) -> int:
        """Read every connection and HTTP answer (waiting up to ``timeout`` s for the first), then the
        due jobs (timer, reconnects, pings).  Returns how many frames and answers were handled."""
        if self.closed:
            return 0
        if timeout > 0 and not self.pending():
            self._wait(min(timeout, max(self.next_due() - _mono(), 0.0)))
        n = 0
        proto = self.proto
        for c in list(self.conns.values()):
            ws = c.ws
            if ws is None:
                continue
            ws.read(0)
            while ws.msgs:
                data, ts = ws.msgs.popleft()
                n += 1
                if isinstance(data, bytes):
                    self.counts["binary_frames"] += 1
                    continue
                proto.on_frame(c.name, data, ts)
                self._drain(ts)
            if ws.ended is not None:
                self._dropped(c, ws.ended)
        for tag, status, headers, body, ts in self.http.take():
            n += 1
            proto.on_http(tag, status, headers, body, ts)
            self._drain(ts)
        now = _mono()
        if now >= self._next_timer:
            self._next_timer = now + self.timer_s
            t = _now()
            proto.on_timer(t)
            self._drain(t)
        self._connect_due()
        if self.ping_interval and now >= self._next_ping:
            self._next_ping = now + self.ping_interval
            for c in self.conns.values():
                if c.ws is not None:
                    c.ws.ping()
        return n

    def filenos(self) -> tuple:
        return tuple(c.ws.fileno() for c in self.conns.values() if c.ws is not None) + (self.http.fileno(),)

    def pending(self) -> bool:
        return any(c.ws is not None and (c.ws.pending() or c.ws.ended is not None) for c in self.conns.values()) \
            or bool(self.http.done)

    def next_due(self) -> float:
        due = self._next_timer
        for c in self.conns.values():
            if c.ws is None:
                due = min(due, c.connect_at)
        return due

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for c in self.conns.values():
            if c.ws is not None:
                c.ws.close()
                c.ws = None
        self.http.close()

    # -- internals ------------------------------------------------------------------------------
    def _wait(self, timeout: float) -> None:
        fds = self.filenos()
        if fds != self._fds:
            self._poller = select.poll()
            for fd in fds:
                self._poller.register(fd, select.POLLIN)
            self._fds = fds
        self._poller.poll(timeout * 1000)

    def _drain(self, ts: int) -> None:
        ev = self.proto.events
        if not ev:
            return
        self.proto.events = []
        for e in ev:
            t = type(e)
            if t is WsSend:
                c = self.conns.get(e.conn)
                if c is None or c.ws is None or not c.ws.send_text(e.text):
                    # the protocol learns through on_close (or already has): its request is UNKNOWN
                    self.counts["send_failed"] += 1
            elif t is Http:
                if self.loopback_only:
                    _check_loopback(self.proto.venue, e.url)
                self.http.submit(e)
            elif t is Open:
                if self.loopback_only:
                    _check_loopback(self.proto.venue, e.url)
                c = self.conns.get(e.conn)
                if c is None:
                    self.conns[e.conn] = _Conn(e.conn, e.url)
                elif c.url != e.url:
                    c.url = e.url
                    if c.ws is not None:
                        self._dropped(c, "moved", reopen_now=True)
            elif t is Close:
                c = self.conns.pop(e.conn, None)
                if c is not None and c.ws is not None:
                    c.ws.close()
                    self.proto.on_close(c.name, _now(), e.reason)
            elif t is Halt:
                self.halted = e.reason
                log.error("%s: order entry halted: %s", self.proto.venue, redact(e.reason))
                if self.on_halt is not None:
                    self.on_halt(e.reason)
                self.sink(e, ts)
            else:  # OrderUpdate / Fill / BalanceUpdate
                self.sink(e, ts)
        if self.proto.events:  # on_close above may have produced more
            self._drain(ts)

    def _connect_due(self) -> None:
        now = _mono()
        for c in list(self.conns.values()):
            if c.ws is None and now >= c.connect_at:
                try:
                    c.ws = WsClient(c.url, open_timeout=self.open_timeout)
                except Exception as e:  # noqa: BLE001 - refused, DNS, TLS, handshake: retry later
                    c.failures += 1
                    c.connect_at = now + self._backoff(c.failures)
                    self.counts["connect_errors"] += 1
                    log.warning("%s/%s: cannot connect (%s); retrying in %.1f s", self.proto.venue, c.name,
                                redact(f"{type(e).__name__}: {e}"), c.connect_at - now)
                    continue
                c.opened_at = now
                self.counts["connects"] += 1
                self.proto.on_open(c.name, _now())
                self._drain(_now())

    def _dropped(self, c: _Conn, reason: str, reopen_now: bool = False) -> None:
        ws, c.ws = c.ws, None
        if ws is not None:
            ws.close()
        now = _mono()
        c.failures = 1 if now - c.opened_at >= self.stable_s else c.failures + 1
        c.connect_at = now if reopen_now else now + self._backoff(c.failures)
        self.counts["disconnects"] += 1
        log.warning("%s/%s: connection lost (%s)", self.proto.venue, c.name, redact(reason))
        self.proto.on_close(c.name, _now(), reason)
        self._drain(_now())

    def _backoff(self, failures: int) -> float:
        d = min(self.backoff_s * 2 ** max(failures - 1, 0), self.backoff_max_s)
        return d * (0.5 + self._rng.random() / 2)
