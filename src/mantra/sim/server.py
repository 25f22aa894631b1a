"""The simulator server: one venue's WebSocket feed and REST API on loopback, and the truth.

A venue module (``sim/<venue>.py``) only formats that venue's messages and answers its REST paths;
everything a venue shares is here, so each venue module stays a description of the venue:

* **WebSocket.**  One ``websockets`` sync server (``ws_url``), bound to 127.0.0.1.  Threads, no
  asyncio: websockets' thread per connection reads client messages, one writer thread per
  connection sends (a slow or stalled client never blocks the market), and one market thread steps
  the source (``market.py``).
* **REST** on its own port (``rest_url``): a stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with
  keep-alive, so any method with headers and a body reaches the venue module's ``rest(request)``
  (signed order entry needs POST/PUT/DELETE; websockets' handshake hook only sees GETs).
* **Truth.**  Every step is applied to one ``L2Book`` per instrument (``book(symbol)``) before the
  venue module turns it into frames for each subscriber.  Subscription state and formatting run
  under one lock, so a snapshot is always exactly the state between two diffs of a connection.
* **Faults** (named and checked in ``faults.py``), callable from any thread: ``disconnect``,
  ``drop_next``, ``corrupt_checksum_next``, ``malformed_next``, ``slow``, ``reconnect_request``,
  ``rate_limit_next`` (and ``rest_limit_per_s`` for a standing REST rate limit); from a ``faults``
  schedule; or through the control paths on the REST port (loopback only, never rate limited, any
  method): ``/__sim/fault/<name>[?arg=N]``, ``/__sim/pause``, ``/__sim/resume`` and
  ``/__sim/book/<symbol>`` (the truth, as exact decimal text), ``/__sim/account`` (the account's
  truth: orders placed per client id, open orders, balances; simulators with order entry).

``pause()``/``resume()`` freeze the market (connections and heartbeats go on) so that a client's
books can be compared with ``book(symbol)``.  Everything stops by itself: the market thread ends
the simulator after ``lifetime_s``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from ..book import L2Book
from ..fixed import from_fixed
from ..instruments import Instrument
from .faults import inject as _inject
from .faults import schedule as _schedule
from .market import ASK, BID, Step, SyntheticMarket

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")
CONTROL = "/__sim/"
MAX_BODY = 1 << 20  # a REST request body larger than this is refused (413)


# -- formatting helpers --------------------------------------------------------------------------
def raw(text: str) -> msgspec.Raw:
    """A JSON number written exactly as ``text`` (Kraken v2 and Bitfinex send numbers, not strings)."""
    return msgspec.Raw(text.encode())




def encode(obj) -> str:
    return msgspec.json.encode(obj).decode()


# -- server ------------------------------------------------------------------------------------
class Client:
    """One WebSocket connection: request path and query, outgoing queue, the venue's state for it."""

    def __init__(self, conn, target: str, number: int):
        url = urlsplit(target)
        self.conn = conn
        self.path = url.path
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.number = number
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.last_sent = time.monotonic()  # for venues' idle heartbeats
        self.open = True


class Request(NamedTuple):
    """One REST request as a venue module's ``rest`` sees it.

    ``query`` holds the last value of each parameter; ``target`` is the path and query exactly as
    sent and ``body`` the raw bytes (what a venue's signature covers); ``headers`` look up names
    case-insensitively (``headers.get("X-MBX-APIKEY")``)."""

    method: str  # "GET", "POST", "PUT", "DELETE"...
    path: str
    query: dict
    headers: Message
    body: bytes
    target: str

    def json(self):
        """The body decoded as JSON (``None`` if empty); a body that is not JSON is a 400."""
        if not self.body:
            return None
        try:
            return msgspec.json.decode(self.body)
        except msgspec.DecodeError:
            raise RestError(400, {"error": "body is not JSON"}) from None

    def form(self) -> dict:
        """The body as ``application/x-www-form-urlencoded`` parameters (last value of each)."""
        return {k: v[-1] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}


class Reply(NamedTuple):
    """A REST answer other than a plain 200: a ``rest`` hook may return one instead of a body."""

    status: int
    body: object  # bytes as is, anything else as JSON
    headers: dict = {}


class RestError(Exception):
    """Raised by a venue's REST handler: answered with ``status``, the venue's error ``body`` and
    any extra ``headers``."""

    def __init__(self, status: int, body, headers: dict | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class VenueSimulator:
    """Base of the venue simulators; subclasses format messages (see the hooks at the end).

    ``source``: a ``SyntheticMarket`` or ``ReplayMarket`` (default: the venue's synthetic market
    with ``seed``, ``rate`` steps per second and ``levels`` per side).  ``port`` is the WebSocket
    port and ``rest_port`` the REST one (0: any free port, known after ``start``).  ``rest_limit_per_s``:
    REST requests beyond this many in a second get the venue's rate-limit answer.  ``max_queue``:
    frames a client may leave unread before it is closed (1008), as venues drop slow consumers.
    """

    venue = ""
    LISTINGS: tuple = ()  # the synthetic market's instruments
    idle_s = 0.1  # how often ``idle`` runs (heartbeats)
    rate_limit_status = 429

    def __init__(self, source=None, *, seed: int = 1, rate: float = 50.0, levels: int = 20,
                 host: str = "127.0.0.1", port: int = 0, rest_port: int = 0, lifetime_s: float = 600.0,
                 rest_limit_per_s: int | None = None, max_queue: int = 100_000, faults=()):
        if host not in LOOPBACK:
            raise ValueError(f"simulators serve loopback only, not {host!r}")
        self.source = source or SyntheticMarket(self.venue, self.LISTINGS, seed=seed, rate=rate, levels=levels)
        self.instruments: dict[str, Instrument] = {i.symbol: i for i in self.source.instruments}
        self.books = {s: L2Book() for s in self.instruments}  # the truth
        self.recent_trades = {s: deque(maxlen=50) for s in self.instruments}  # (SimTrade, ts), oldest first
        self.aliases: dict[str, str] = {}  # other spellings of a symbol (Kraken v1 names)
        self.host, self.port, self.rest_port = host, port, rest_port  # 0: any free port, known after start()
        self.lifetime_s, self.rest_limit_per_s, self.max_queue = lifetime_s, rest_limit_per_s, max_queue
        self.lock = threading.RLock()
        self.clients: list[Client] = []
        # faults
        self._drop = self._corrupt = self._malformed = 0
        self._stall_until = 0.0
        self._limited: deque[int] = deque()
        self._rest_times: deque[float] = deque()
        self.schedule = _schedule(faults)
        self.injected: Counter = Counter()  # fault name -> times injected (schedule and control paths)
        # counters, for tests and the demo
        self.connections = 0  # WebSocket connections accepted so far
        self.frames_sent = 0
        self.dropped = 0
        self.rest_requests: Counter = Counter()  # path -> requests (any method)
        self.steps = 0
        self.finished = False  # the source has no more steps (a replay has ended)
        self._paused = False
        self._stop = threading.Event()
        self._stopped = False
        self._server = self._rest = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "VenueSimulator":
        with self.lock:
            for step in self.source.initial():
                self._apply(step._replace(ts=time.time_ns()))
        self._server = serve(self._handle, self.host, self.port, compression=None,
                             ping_interval=20, close_timeout=2, logger=logging.getLogger(__name__ + ".ws"))
        self.port = self._server.socket.getsockname()[1]
        self._rest = _RestServer((self.host, self.rest_port), self)
        self.rest_port = self._rest.server_address[1]
        for target, name in ((self._server.serve_forever, "server"), (self._rest.serve_forever, "rest"),
                             (self._run, "market")):
            t = threading.Thread(target=target, name=f"{self.venue}-sim-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()  # stops accepting and closes the connections
        if self._rest is not None:
            self._rest.shutdown()
            self._rest.server_close()
        with self.lock:
            for c in self.clients:
                c.queue.put(None)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _hostport(self, port: int) -> str:
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    @property
    def address(self) -> str:
        """The WebSocket server's ``host:port`` as a URL spells it."""
        return self._hostport(self.port)

    @property
    def ws_url(self) -> str:
        return f"ws://{self.address}"

    @property
    def rest_url(self) -> str:
        return f"http://{self._hostport(self.rest_port)}"

    # -- the truth ---------------------------------------------------------------------------
    def symbol(self, name: str) -> str:
        return name if name in self.instruments else self.aliases.get(name, name)

    def book(self, symbol: str) -> L2Book:
        """A copy of the simulator's book for ``symbol``, taken between two steps."""
        out = L2Book()
        with self.lock:
            truth = self.books[self.symbol(symbol)]
            for side, levels in ((BID, truth.bids), (ASK, truth.asks)):
                for price, size in levels.items():
                    out.apply(side, price, size)
        return out

    def pause(self) -> None:
        """Freeze the market (connections stay up, heartbeats go on): books can then be compared."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    # -- faults ------------------------------------------------------------------------------
    def disconnect(self, abrupt: bool = False) -> None:
        """Close every client connection: a close frame (1001), or ``abrupt``: the TCP socket dies."""
        with self.lock:
            clients = list(self.clients)
        for c in clients:
            if abrupt:
                try:
                    c.conn.socket.shutdown(2)
                except OSError:
                    pass
            else:  # closing waits for the client's answer: not on the caller's thread
                threading.Thread(target=c.conn.close, args=(1001, "simulated disconnect"), daemon=True).start()

    def drop_next(self, n: int = 1) -> None:
        """Lose the next ``n`` book-update frames (their sequence numbers are used up all the same)."""
        with self.lock:
            self._drop += n

    def corrupt_checksum_next(self) -> None:
        """The next book checksum sent is wrong (Kraken, Bitfinex)."""
        with self.lock:
            self._corrupt += 1

    def malformed_next(self) -> None:
        """Send a broken copy (cut in half, not JSON) of the next frame before the frame itself."""
        with self.lock:
            self._malformed += 1

    def slow(self, seconds: float) -> None:
        """Stall all sending for ``seconds``; frames queue up and follow afterwards."""
        self._stall_until = time.monotonic() + seconds

    def reconnect_request(self) -> None:
        """Ask every client to reconnect, as the venue does before a restart."""
        if type(self).reconnect_message is VenueSimulator.reconnect_message:
            raise NotImplementedError(f"{self.venue} has no reconnect request")
        with self.lock:
            for c in self.clients:
                self.send(c, self.reconnect_message(c))

    def rate_limit_next(self, n: int = 1, status: int | None = None) -> None:
        """Answer the next ``n`` REST requests with the venue's rate-limit error (Binance: 429 or 418)."""
        with self.lock:
            self._limited.extend([status or self.rate_limit_status] * n)

    def inject(self, name: str, arg: float | None = None) -> None:
        """Run the fault ``name`` (one of ``faults.FAULTS``) with its optional numeric argument."""
        _inject(self, name, arg)

    # -- for venue modules -------------------------------------------------------------------
    def send(self, client: Client, obj, *, book: bool = False) -> None:
        """Queue one frame (``str`` as is, anything else as JSON) for ``client``; faults apply here."""
        if not client.open:
            return  # closing (slow consumer) or closed: nothing more for it
        data = obj if isinstance(obj, str) else encode(obj)
        if book and self._drop:
            self._drop -= 1
            self.dropped += 1
            return
        if self._malformed:
            self._malformed -= 1
            client.queue.put(data[: len(data) // 2])
        client.queue.put(data)
        client.last_sent = time.monotonic()
        self.frames_sent += 1
        if client.queue.qsize() > self.max_queue:  # a client that does not read: cut it off, as venues do
            log.warning("%s simulator: client %d does not read; closing it", self.venue, client.number)
            client.open = False
            self._close_later(client, 1008, "slow consumer")

    def corrupt(self) -> bool:
        """Whether the checksum being written must be wrong (consumes one ``corrupt_checksum_next``)."""
        if self._corrupt:
            self._corrupt -= 1
            return True
        return False

    def _close_later(self, client: Client, code: int, reason: str) -> None:
        threading.Thread(target=client.conn.close, args=(code, reason), daemon=True).start()

    # -- internals ---------------------------------------------------------------------------
    def _apply(self, step: Step) -> None:
        book = self.books[step.symbol]
        for side, price, size in step.levels:
            book.apply(side, price, size)
        self.recent_trades[step.symbol].extend((t, step.ts) for t in step.trades)

    def _run(self) -> None:
        start = time.monotonic()
        end = start + self.lifetime_s
        schedule = list(self.schedule)
        steps = self.source.steps()
        due = next_idle = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= end:
                log.info("%s simulator: lifetime of %.0f s is over, stopping", self.venue, self.lifetime_s)
                threading.Thread(target=self.stop, daemon=True).start()
                return
            while schedule and now - start >= schedule[0][0]:
                _, name, arg = schedule.pop(0)
                try:
                    self.inject(name, arg)
                except NotImplementedError as e:  # e.g. a venue without reconnect requests
                    log.warning("%s simulator: scheduled fault %s: %s", self.venue, name, e)
            if self._paused:
                due = now
            elif steps is not None and now >= due:
                try:
                    delay, step = next(steps)
                except StopIteration:
                    steps = None  # a replay has ended; connections stay up
                    self.finished = True
                else:
                    with self.lock:
                        step = step._replace(ts=time.time_ns())
                        self._apply(step)
                        self.steps += 1
                        self.publish(step)
                    due = max(due + delay, now - 0.2)  # a late thread catches up, but in no burst
            if now >= next_idle:
                with self.lock:
                    self.idle(now)
                next_idle = now + self.idle_s
            wake = min(next_idle, due) if steps is not None and not self._paused else next_idle
            if schedule:
                wake = min(wake, start + schedule[0][0])
            self._stop.wait(max(wake - time.monotonic(), 0.0))

    def _handle(self, conn) -> None:
        with self.lock:
            self.connections += 1
            client = Client(conn, conn.request.path, self.connections)
            self.clients.append(client)
            self.on_open(client)
        writer = threading.Thread(target=self._write, args=(client,), daemon=True,
                                  name=f"{self.venue}-sim-writer-{client.number}")
        writer.start()
        try:
            for text in conn:
                try:
                    msg = msgspec.json.decode(text)
                except msgspec.DecodeError:
                    msg = None
                with self.lock:
                    try:
                        if msg is None:
                            self.on_bad_message(client, text)
                        else:
                            self.on_message(client, msg)
                    except Exception:  # noqa: BLE001 - a client's odd message must not kill its connection
                        log.exception("%s simulator: cannot handle %r", self.venue, text[:200])
                        self.on_bad_message(client, text)
        except ConnectionClosed:
            pass
        finally:
            with self.lock:
                client.open = False
                if client in self.clients:
                    self.clients.remove(client)
            client.queue.put(None)

    def _write(self, client: Client) -> None:
        while True:
            data = client.queue.get()
            if data is None:
                return
            while (wait := self._stall_until - time.monotonic()) > 0:
                if self._stop.wait(wait):
                    return
            try:
                client.conn.send(data)
            except (ConnectionClosed, OSError):
                return  # the reading side notices too and forgets the client

    def serve_rest(self, req: Request) -> tuple[int, object, dict]:
        """One REST request: a control path, or the venue's (rate limits and faults apply)."""
        if req.path.startswith(CONTROL):
            status, body = self._control(req.path[len(CONTROL):], req.query)
            return status, body, {}
        with self.lock:
            self.rest_requests[req.path] += 1
            now = time.monotonic()
            self._rest_times.append(now)
            while self._rest_times and self._rest_times[0] < now - 1.0:
                self._rest_times.popleft()
            over = self.rest_limit_per_s is not None and len(self._rest_times) > self.rest_limit_per_s
            if self._limited or over:
                status = self._limited.popleft() if self._limited else self.rate_limit_status
                return status, self.rate_limit_body(status), {"Retry-After": "1"}
            try:
                out = self.rest(req)
            except RestError as e:
                return e.status, e.body, e.headers
        if isinstance(out, Reply):
            return out.status, out.body, out.headers
        return 200, out, {}

    def _control(self, path: str, query: dict) -> tuple[int, dict]:
        """The control paths (see the module doc): faults, pause/resume and the truth from outside."""
        what, _, arg = path.partition("/")
        try:
            if what == "fault":
                self.inject(arg, query.get("arg"))
                return 200, {"ok": True, "injected": dict(self.injected)}
            if what in ("pause", "resume"):
                getattr(self, what)()
                return 200, {"ok": True, "steps": self.steps, "injected": dict(self.injected)}
            if what == "book":
                inst = self.instruments[self.symbol(arg)]
                book = self.book(arg)
                side = lambda s: [[from_fixed(p, inst.price_scale), from_fixed(q, inst.size_scale)]  # noqa: E731
                                  for p, q in book.top(s, 10**9)]
                return 200, {"symbol": inst.symbol, "bids": side(BID), "asks": side(ASK), "steps": self.steps}
            if what == "account":
                with self.lock:
                    return 200, self.account()
        except (KeyError, ValueError, NotImplementedError) as e:
            return 400, {"error": str(e) or type(e).__name__}
        return 404, {"error": f"no control path {path!r}; known: fault/<name>, pause, resume, book/<symbol>, "
                              "account"}

    # -- venue hooks -------------------------------------------------------------------------
    def account(self) -> dict:
        """The account's truth, for checks from outside (``/__sim/account``, under the lock):
        ``placed`` (client order id -> NEWs accepted), ``open`` orders, ``balances`` and ``fills``
        (count), as exact decimal text."""
        raise NotImplementedError(f"the {self.venue} simulator has no order entry")

    def on_open(self, client: Client) -> None:
        """A connection opened (greeting, streams named in the URL)."""

    def on_message(self, client: Client, msg) -> None:
        """A decoded JSON message from the client (subscribe, unsubscribe, ping...)."""

    def on_bad_message(self, client: Client, text) -> None:
        """A client message that is not JSON, or could not be handled."""

    def publish(self, step: Step) -> None:
        """Send ``step`` (already applied to ``self.books``) to every subscribed client."""
        raise NotImplementedError

    def idle(self, now: float) -> None:
        """Runs every ``idle_s``: heartbeats."""

    def rest(self, req: Request):
        """Answer a REST request (any method): return the JSON body of a 200 (``bytes`` go as they
        are), or a ``Reply(status, body, headers)``; or raise ``RestError(status, body[, headers])``."""
        raise RestError(404, {"error": f"no such endpoint {req.method} {req.path}"})

    def rate_limit_body(self, status: int):
        return {"error": "rate limit exceeded"}

    def reconnect_message(self, client: Client):
        raise NotImplementedError(f"{self.venue} has no reconnect request")


# -- REST server -----------------------------------------------------------------------------------
class _RestHandler(BaseHTTPRequestHandler):
    """Every method the same way: read the body, ask the simulator, answer with a length (keep-alive)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: without it each answer waits ~40 ms
    server: "_RestServer"
    timeout = 30  # an idle keep-alive connection frees its thread after this long

    def _serve(self) -> None:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._answer(411, {"error": "chunked bodies are not served; send Content-Length"}, {})
        try:
            n = int(length or 0)
        except ValueError:
            return self._answer(400, {"error": f"bad Content-Length {length!r}"}, {})
        if not 0 <= n <= MAX_BODY:
            return self._answer(413, {"error": f"body of {n} bytes (at most {MAX_BODY})"}, {})
        body = self.rfile.read(n) if n else b""
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        req = Request(self.command, url.path, query, self.headers, body, self.path)
        try:
            status, out, headers = self.server.sim.serve_rest(req)
        except Exception:  # noqa: BLE001 - a venue module's bug is a 500, never a dead server
            log.exception("%s simulator: REST %s %s failed", self.server.sim.venue, self.command, self.path)
            status, out, headers = 500, {"error": "simulator error"}, {}
        self._answer(status, out, headers)

    def _answer(self, status: int, body, headers: dict) -> None:
        data = body if isinstance(body, bytes) else msgspec.json.encode(body)
        self.send_response(status, HTTPStatus(status).phrase)
        have = {k.lower() for k in headers}
        if "content-type" not in have:
            self.send_header("Content-Type", "application/json")
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        log.debug("%s simulator: REST %s", self.server.sim.venue, format % args)


class _RestServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, sim: VenueSimulator):
        self.sim = sim
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, _RestHandler)
