"""The connection runner: one WebSocket driving one sans-IO venue protocol, from the caller's thread.

No asyncio and no reader thread: ``poll`` reads the non-blocking socket itself (a
:class:`~mantra.feeds.wsclient.WsClient`), so a frame goes from ``recv`` to the protocol and the
sink without changing threads.  Each message's receipt time is stamped right after ``recv``
returns (``mantra._spine.now()``, ns, CLOCK_REALTIME) and handed to the protocol as ``ts``; a frame
that waited in the socket behind a slow REST fetch or a busy loop has waited before its stamp, as
with any venue socket: keep the loop that polls a feed short.

The runner does what the protocol asks (``Send``, ``Fetch``, ``Reconnect``), calls ``on_timer``
about once a second, and looks after the connection itself:

* reconnect with exponential backoff and jitter when the socket drops, the handshake fails, or the
  protocol asks; a connection that lived ``stable_s`` resets the backoff; ``on_connect`` makes the
  protocol resubscribe and resync;
* keepalive pings (a pong not back within ``ping_timeout`` drops the connection), answers to the
  venue's pings, a silent-socket watchdog (nothing at all, not even a pong, for ``silent_s``), and
  planned reconnects before a venue's connection age limit (``max_age_s``, e.g. Binance's 24 h);
* REST GETs with a timeout: errors and non-200 answers (429/418 included, ``Retry-After``
  honoured) are counted, logged and retried with backoff, never passed to the protocol.  A fetch
  blocks the loop (frames wait in the socket meanwhile), and so does connecting (up to
  ``open_timeout``); snapshots and reconnects are rare and the protocols buffer diffs while they sync.

URLs, error messages, reasons and error bodies are logged through :mod:`mantra.redact` (a
``listenKey`` in a URL, a ``signature`` in a failed GET), like everything the capture writes.

``poll(max_frames, timeout)`` serves what is available and returns, so one thread (an actor's
``loop``) can host several runners; ``run()`` loops until ``stop()`` for a runner of its own
thread.  A :class:`Doorbell` shared by the runners of a process lets it sleep until any of their
sockets has bytes (or a job is due), without busy-waiting.

Market events (``Level``, ``Trade``, ``BookState``) go to ``sink(events, ts)`` together with the
control events the runner has already acted on; a sink ignores types it does not know and must
not keep the list.
"""

from __future__ import annotations

import logging
import os
import random
import select
import threading
import time
import urllib.error
import urllib.request
import weakref
from email.utils import parsedate_to_datetime


from .. import _spine
from ..redact import redact
from ..venues.events import Fetch, Level, Reconnect, Send, Trade
from .wsclient import WsClient

log = logging.getLogger(__name__)

_now = _spine.now
_mono = time.monotonic


class Doorbell:
    """Lets one thread sleep until any of several runners has bytes on its socket, a message
    already read, or a job due."""

    def __init__(self):
        self._runners = weakref.WeakSet()
        self._fds: tuple = ()
        self._poller = select.poll()

    def add(self, runner: "FeedRunner") -> None:
        self._runners.add(runner)

    def remove(self, runner: "FeedRunner") -> None:
        self._runners.discard(runner)

    def _forget(self) -> None:
        # A forked child must not read its parent's sockets.
        self.__init__()

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` s (less if a runner has a job due sooner); True if a runner has input."""
        runners = list(self._runners)
        if any(r.pending() for r in runners):
            return True
        due = min((r.next_due() for r in runners), default=_mono() + timeout)
        timeout = min(timeout, max(due - _mono(), 0.0))
        if timeout <= 0:
            return False
        fds = tuple(fd for fd in (r.fileno() for r in runners) if fd >= 0)
        if fds != self._fds:  # connections come and go: watch the current sockets
            self._poller = select.poll()
            for fd in fds:
                self._poller.register(fd, select.POLLIN)
            self._fds = fds
        if not fds:
            time.sleep(timeout)
            return False
        return bool(self._poller.poll(timeout * 1000))


DOORBELL = Doorbell()  # the one every Feed of a process shares
os.register_at_fork(after_in_child=DOORBELL._forget)


def _retry_after(headers) -> float:
    """Seconds a 429/418/503 answer asks us to wait (0 if it does not say)."""
    value = headers.get("Retry-After") if headers else None
    if not value:
        return 0.0
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return 0.0


class FeedRunner:
    """One connection of one protocol.  Not thread-safe: use it from one thread (``stop`` excepted)."""

    MAX_RETRY_AFTER_S = 3600.0
    SERVICE_S = 0.001  # with no frames, look at the jobs (timer, watchdogs, pings, fetches) this often

    def __init__(self, protocol, sink=None, *, url: str | None = None, capture=None, headers: dict | None = None,
                 ping_interval: float | None = 15.0, ping_timeout: float | None = 15.0,
                 open_timeout: float = 10.0, silent_s: float | None = 60.0,
                 max_age_s: float | None = None, backoff_s: float = 0.5, backoff_max_s: float = 30.0,
                 stable_s: float = 30.0, fetch_timeout: float = 10.0, fetch_backoff_s: float = 1.0,
                 fetch_backoff_max_s: float = 60.0, timer_s: float = 1.0, max_size: int = 1 << 25,
                 compression: str | None = None, proxy: str | bool | None = None,
                 doorbell: Doorbell | None = None, seed: int | None = None):
        self.proto = protocol
        self.sink = sink
        self.url = url or protocol.url
        self.capture = capture
        self.headers = dict(headers or {})
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.open_timeout = open_timeout
        self.silent_s, self.max_age_s = silent_s, max_age_s
        self.backoff_s, self.backoff_max_s, self.stable_s = backoff_s, backoff_max_s, stable_s
        self.fetch_timeout, self.fetch_backoff_s, self.fetch_backoff_max_s = fetch_timeout, fetch_backoff_s, fetch_backoff_max_s
        self.timer_s = timer_s
        self.max_size, self.compression, self.proxy = max_size, compression, proxy
        self.doorbell = doorbell
        self.lane = None  # a protocol's fast_lane(...).take, set by its Feed
        self._rng = random.Random(seed)
        handlers = [] if proxy is True else [urllib.request.ProxyHandler({} if not proxy else {"http": proxy, "https": proxy})]
        self._opener = urllib.request.build_opener(*handlers)
        self.ws: WsClient | None = None
        self.conn = 0  # id of the current connection (the capture's, when capturing)
        self._connected_at = 0.0
        self._connect_at = 0.0  # monotonic time of the next connection attempt
        self._failures = 0  # consecutive failed or short-lived connections
        self._reconnect: str | None = None  # the protocol asked for a new connection (why)
        self._next_timer = _mono() + timer_s
        self._next_service = 0.0
        self._next_ping = 0.0
        self._fetch_due: dict[str, float] = {}  # url -> monotonic time to GET it
        self._fetch_fails: dict[str, int] = {}
        self._fetch_not_before: dict[str, float] = {}  # 429/418 cool-down, kept across reconnects
        self._stop = threading.Event()
        self.closed = False
        # counters
        self.frames = self.bytes = self.connects = self.reconnects = self.connect_errors = 0
        self.drops = self.sent = self.send_errors = self.fetches = self.fetch_errors = self.bad_frames = 0
        self.http_status: dict[int, int] = {}
        if doorbell is not None:
            doorbell.add(self)

    # -- driving ----------------------------------------------------------------------------
    def poll(self, max_frames: int = 256, timeout: float = 0.0) -> int:
        """Handle up to ``max_frames`` frames (waiting up to ``timeout`` s for the first bytes), then
        due jobs: (re)connect, timer, fetches, pings, watchdogs.  Returns the number of frames handled."""
        if self.closed:
            return 0
        ws = self.ws
        if ws is None:
            if _mono() >= self._connect_at:
                self._connect()
                ws = self.ws
            if ws is None:
                self._service(_mono())
                if timeout > 0:
                    self._stop.wait(min(timeout, max(self._connect_at - _mono(), 0.0)))
                return 0
        n = 0
        msgs, read, proto, cap, conn, lane = ws.msgs, ws.read, self.proto, self.capture, self.conn, self.lane
        ws.lane = lane if cap is None else None  # frames taken inside read() are not seen here to capture
        wait = timeout
        while n < max_frames:
            if not msgs:
                # After a read's frames, return: what they caused runs before the next read (this
                # loop's caller polls again at once, and a parked one finds the socket readable).
                if n or not read(wait):
                    break
                wait = 0
                if ws.taken:  # frames the lane took inside read(), published already
                    n += ws.taken
                    self.bytes += ws.taken_chars
                    ws.taken = ws.taken_chars = 0
                    if proto.events:  # a crossed book's status and resync
                        self._drain(ws.read_ts)
                continue  # (or a partial frame, or control frames only: read on)
            data, ts = msgs.popleft()
            n += 1
            self.bytes += len(data)
            if cap is not None:
                cap.recv(conn, ts, data)
            if lane is None or not lane(data, ts):  # the common frame whole in C, else the protocol
                proto.on_frame(data, ts)
            if proto.events:
                self._drain(ts)
            if self._reconnect is not None or self.ws is not ws:
                break
        now = _mono()
        self.frames += n
        if now < self._next_service and ws.ended is None and self._reconnect is None:
            return n  # jobs are looked at every SERVICE_S: the path of a frame and of an idle spin stays short
        self._service(now)
        return n

    def run(self, max_frames: int = 256, timeout: float = 0.1) -> None:
        """Poll until :meth:`stop` (from any thread), then close."""
        try:
            while not self._stop.is_set():
                self.poll(max_frames, timeout)
        finally:
            self.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self, reason: str = "stopped") -> None:
        """Close the connection for good (the protocol hears ``on_disconnect``)."""
        if self.closed:
            return
        if self.ws is not None:
            self._drop(reason, planned=True)
        self.closed = True
        if self.doorbell is not None:
            self.doorbell.remove(self)

    def fileno(self) -> int:
        """The socket to wait on (-1 while disconnected)."""
        ws = self.ws
        return ws.fileno() if ws is not None else -1

    def pending(self) -> bool:
        """Input is waiting that the socket's readiness does not show: messages already read, bytes
        inside TLS, a connection that ended."""
        ws = self.ws
        return ws is not None and (ws.pending() or ws.ended is not None)

    def next_due(self) -> float:
        """Monotonic time of the next scheduled job (timer, connection attempt, fetch, ping)."""
        if self.closed:
            return float("inf")
        due = self._next_timer
        ws = self.ws
        if ws is None:
            due = min(due, self._connect_at)
        elif self.ping_interval is not None and ws.ping_sent is None:  # none while one is unanswered
            due = min(due, self._next_ping)
        if self._fetch_due:
            due = min(due, min(self._fetch_due.values()))
        return max(due, self._next_service)  # poll() looks at jobs no sooner

    def stats(self) -> dict:
        """Counters (``bytes``: characters for text frames)."""
        ws = self.ws
        return {"frames": self.frames, "bytes": self.bytes, "connects": self.connects,
                "reconnects": self.reconnects, "connect_errors": self.connect_errors, "drops": self.drops,
                "sent": self.sent, "send_errors": self.send_errors, "fetches": self.fetches,
                "fetch_errors": self.fetch_errors,
                "bad_frames": self.bad_frames + (ws.bad_frames if ws is not None else 0),
                "http_status": dict(self.http_status), "connected": ws is not None}

    # -- events -----------------------------------------------------------------------------
    def _drain(self, ts: int) -> None:
        ev = self.proto.events
        for e in ev:
            t = type(e)
            if t is Level or t is Trade:
                continue
            if t is Send:
                self._send(e.text, ts)
            elif t is Fetch:
                self._want(e.url)
            elif t is Reconnect and self._reconnect is None:
                self._reconnect = e.reason
        try:
            if self.sink is not None:
                self.sink(ev, ts)
        finally:
            ev.clear()  # a failing sink must not see the same events again

    def _send(self, text: str, ts: int) -> None:
        ws = self.ws
        if ws is None or not ws.send_text(text):
            self.send_errors += 1  # disconnected (on_connect will subscribe again) or dropping
            return
        self.sent += 1
        if self.capture is not None:
            self.capture.sent(self.conn, _now(), text)

    # -- connection -------------------------------------------------------------------------
    def _backoff(self, failures: int, base: float, cap: float) -> float:
        if failures <= 0:
            return 0.0
        d = min(cap, base * 2 ** min(failures - 1, 30))
        return d * (0.5 + 0.5 * self._rng.random())  # jitter: reconnecting clients do not stampede

    def _connect(self) -> None:
        try:
            ws = WsClient(self.url, headers=self.headers, open_timeout=self.open_timeout, max_size=self.max_size,
                          compression=self.compression, proxy=self.proxy)
        except Exception as e:  # noqa: BLE001 - refused, DNS, TLS, handshake status or garbage: all retried
            self.connect_errors += 1
            self._failures += 1
            delay = self._backoff(self._failures, self.backoff_s, self.backoff_max_s)
            self._connect_at = _mono() + delay
            log.warning("%s: cannot connect to %s (%s: %s); retry in %.2f s", self.proto.venue, redact(self.url),
                        type(e).__name__, redact(e), delay)
            return
        self.ws = ws
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
        self._connected_at = _mono()
        if self.ping_interval is not None:
            self._next_ping = self._connected_at + self.ping_interval
        ts = _now()
        self.conn = self.capture.open(ts, self.url, self.headers) if self.capture is not None else self.connects
        log.info("%s: connected to %s", self.proto.venue, redact(self.url))
        self.proto.on_connect(ts)
        self._drain(ts)

    def _drop(self, reason: str, planned: bool = False) -> None:
        """Forget the connection and schedule the next one."""
        ws, self.ws = self.ws, None
        now = _mono()
        self.drops += 1
        self.bad_frames += ws.bad_frames
        if planned:
            self._failures = 0
        elif now - self._connected_at >= self.stable_s:
            self._failures = 1
        else:
            self._failures += 1
        delay = self._backoff(self._failures, self.backoff_s, self.backoff_max_s)
        self._connect_at = now + delay
        self._reconnect = None
        self._fetch_due.clear()  # the protocol asks again once it resyncs
        (log.info if planned else log.warning)("%s: connection dropped (%s); reconnect in %.2f s",
                                               self.proto.venue, redact(reason), delay)
        ws.close()
        ts = _now()
        if self.capture is not None:
            self.capture.closed(self.conn, ts, reason)
        self.proto.on_disconnect(ts)
        self._drain(ts)

    # -- jobs -------------------------------------------------------------------------------
    def _service(self, now: float) -> None:
        self._next_service = now + self.SERVICE_S
        ws = self.ws
        if ws is not None:
            if ws.ended is not None and not ws.msgs:
                self._drop(ws.ended)
            elif self._reconnect is not None:
                self._drop(f"protocol: {self._reconnect}")
            elif self.silent_s is not None and now - ws.last_rx > self.silent_s:
                self._drop(f"silent socket: nothing for {now - ws.last_rx:.1f} s")
            elif self.max_age_s is not None and now - self._connected_at >= self.max_age_s:
                self._drop(f"planned: connection age {now - self._connected_at:.0f} s", planned=True)
            elif self.ping_interval is not None:
                self._keepalive(ws, now)
        if now >= self._next_timer:
            nxt = self._next_timer + self.timer_s
            self._next_timer = nxt if nxt > now else now + self.timer_s  # after a stall: no burst of ticks
            ts = _now()
            self.proto.on_timer(ts)
            if self.proto.events:
                self._drain(ts)
        if self._fetch_due and self.ws is not None:
            for url, due in list(self._fetch_due.items()):
                if due <= now and self.ws is not None:
                    del self._fetch_due[url]
                    self._get(url)
        if self.capture is not None:
            self.capture.tick(_now())

    def _keepalive(self, ws: WsClient, now: float) -> None:
        if ws.ping_sent is not None:
            if self.ping_timeout is not None and now - ws.ping_sent > self.ping_timeout:
                self._drop(f"keepalive: no pong for {now - ws.ping_sent:.1f} s")
        elif now >= self._next_ping:
            ws.ping()
            self._next_ping = now + self.ping_interval

    def _want(self, url: str) -> None:
        if url not in self._fetch_due:  # one GET per url at a time
            self._fetch_due[url] = max(_mono(), self._fetch_not_before.get(url, 0.0))

    def _get(self, url: str) -> None:
        self.fetches += 1
        status, body, wait, err = 0, b"", 0.0, ""
        try:
            req = urllib.request.Request(url, headers=self.headers)
            with self._opener.open(req, timeout=self.fetch_timeout) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, wait = e.code, _retry_after(e.headers)
            try:
                body = e.read()
            except Exception:  # noqa: BLE001 - the error body is only for the log
                body = b""
        except Exception as e:  # noqa: BLE001 - timeouts, resets, DNS: counted and retried
            err = f"{type(e).__name__}: {redact(e)}"
        ts = _now()
        if status:
            self.http_status[status] = self.http_status.get(status, 0) + 1
        if self.capture is not None:
            self.capture.rest(self.conn, ts, url, body, status)
        if status == 200:
            self._fetch_fails.pop(url, None)
            self._fetch_not_before.pop(url, None)
            self.proto.on_rest(url, body, ts)
            if self.proto.events:
                self._drain(ts)
            return
        self.fetch_errors += 1
        fails = self._fetch_fails[url] = self._fetch_fails.get(url, 0) + 1
        delay = max(self._backoff(fails, self.fetch_backoff_s, self.fetch_backoff_max_s),
                    min(wait, self.MAX_RETRY_AFTER_S))
        if status in (418, 429) or wait:
            self._fetch_not_before[url] = _mono() + delay
        self._fetch_due[url] = _mono() + delay
        why = err or f"HTTP {status} {redact(body)[:120]!r}"  # masked whole, then cut: no half secret
        log.warning("%s: GET %s failed (%s); retry %d in %.2f s", self.proto.venue, redact(url), why, fails, delay)
