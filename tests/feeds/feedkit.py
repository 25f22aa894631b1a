"""Test helpers for feeds: a tiny scripted WebSocket server, a REST server, test actors.

Imported by the tests through ``sys.path`` (like ``tests/runtime/actors.py``), also by the
processes a Supervisor forks.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol
from websockets.sync.server import serve

from fixtures import CAPTURES
from mantra import _spine
from mantra.book import L2Book
from mantra.runtime.actor import Actor
from mantra.spine.messages import L2Flags
from mantra.venues.events import Status

LIVE = (Status.SYNCED, Status.UNVERIFIED)  # in step with the venue (UNVERIFIED: it cannot prove it)



class WsServer:
    """Sends ``frames`` to every client; ``drop_after``: close the connection after that many.

    ``connections`` records (monotonic time, path) of each accepted connection, ``received`` what
    clients sent.  ``hold``: keep connections open (silently) after the frames are sent.
    """

    def __init__(self, frames=(), drop_after: int | None = None, hold: bool = True, wait_for_client: int = 0,
                 ssl=None):
        self.frames = list(frames)
        self.drop_after = drop_after
        self.hold = hold
        self.wait_for_client = wait_for_client  # messages to receive before sending the frames
        self.connections: list[tuple[float, str]] = []
        self.received: list[str] = []
        self._stop = threading.Event()
        self.server = serve(self._handler, "127.0.0.1", 0, compression=None, max_size=None, ssl=ssl)
        self.port = self.server.socket.getsockname()[1]
        self.url = f"wss://localhost:{self.port}" if ssl else f"ws://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handler(self, ws):
        self.connections.append((time.monotonic(), ws.request.path))
        try:
            for _ in range(self.wait_for_client):
                self.received.append(ws.recv(timeout=5))
            for i, f in enumerate(self.frames):
                if self.drop_after is not None and i >= self.drop_after:
                    return  # leaving the handler closes the connection
                ws.send(f)
            while self.hold and not self._stop.is_set():
                try:
                    self.received.append(ws.recv(timeout=0.05))
                except TimeoutError:
                    pass
        except ConnectionClosed:
            pass

    def close(self):
        self._stop.set()
        self.server.shutdown()
        self.thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def frame(data, opcode: Opcode = Opcode.TEXT, fin: bool = True) -> bytes:
    """One unmasked (server to client) WebSocket frame on the wire."""
    if isinstance(data, str):
        data = data.encode()
    return Frame(opcode, data, fin).serialize(mask=False)


class RawWsServer:
    """A WebSocket server that writes exactly the bytes it is given, in the pieces it is given.

    After the handshake it plays ``script`` to every client: ``bytes`` are written in one
    ``send``, a number is a pause in seconds; then it keeps the connection open (``hold``) or closes
    it.  ``handshake``: bytes to answer the upgrade request with instead of accepting it (``None``:
    never answer); ``first``: bytes written in the same ``send`` as the accepting response.
    ``writes`` records (``_spine.now()`` just before each write, bytes), ``received`` the frames
    clients sent, ``connections`` the monotonic time of each accepted connection.
    """

    def __init__(self, script=(), hold: bool = True, handshake: bytes | None | bool = True, first: bytes = b""):
        self.script, self.hold, self.handshake, self.first = list(script), hold, handshake, first
        self.writes: list[tuple[int, bytes]] = []
        self.received: list[Frame] = []
        self.connections: list[float] = []
        self._stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.url = f"ws://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections.append(time.monotonic())
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        proto = ServerProtocol()
        conn.settimeout(0.05)
        with conn:
            while not proto.events and not self._stop.is_set():  # the upgrade request
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                proto.receive_data(data)
            if self.handshake is None:
                self._stop.wait()
                return
            if self.handshake is not True:
                conn.sendall(self.handshake)
                return
            proto.send_response(proto.accept(proto.events_received()[0]))
            conn.sendall(b"".join(proto.data_to_send()) + self.first)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for step in self.script:
                if isinstance(step, (int, float)):
                    time.sleep(step)
                else:
                    self.writes.append((_spine.now(), step))
                    conn.sendall(step)
            while self.hold and not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                proto.receive_data(data)
                self.received.extend(proto.events_received())
                proto.data_to_send()  # this server answers nothing, not even pings

    def close(self):
        self._stop.set()
        self.thread.join(5)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RestServer:
    """Answers GETs from ``bodies`` (path with query -> bytes); the first ``fail`` answers per path
    are ``status`` (with ``Retry-After: retry_after`` when given)."""

    def __init__(self, bodies: dict, fail: int = 0, status: int = 429, retry_after: str | None = None):
        self.bodies, self.fail, self.status, self.retry_after = bodies, fail, status, retry_after
        self.requests: list[tuple[float, str, int]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                n = sum(1 for _, p, _ in outer.requests if p == self.path)
                body = outer.bodies.get(self.path)
                code = outer.status if n < outer.fail else 200 if body is not None else 404
                outer.requests.append((time.monotonic(), self.path, code))
                payload = body if code == 200 else b'{"code":-1003,"msg":"Too many requests"}'
                self.send_response(code)
                if code != 200 and outer.retry_after:
                    self.send_header("Retry-After", outer.retry_after)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class BookBuilder(Actor):
    """Rebuilds every instrument's book from the spine; stops the system once it has ``expect``
    LAST-flagged levels and ``expect_trades`` trades, or after ``deadline_s`` of real time."""

    inputs = ("l2", "trades", "status")
    expect = 0
    expect_trades = 0
    deadline_s = 20.0
    honour_clear = False  # clear the book at CLEAR instead of relying on the deletions

    def on_start(self):
        self.books: dict[int, L2Book] = {}
        self.messages = 0
        self.levels = 0
        self.trade_list = []
        self.statuses = []
        self.origins = []
        self.flags = []
        self.deadline = time.monotonic() + self.deadline_s
        self.wakeup = self.clock.now()

    def on_l2(self, m):
        book = self.books.setdefault(m.instrument, L2Book())
        if self.honour_clear and m.flags & L2Flags.CLEAR:
            book.clear()
        book.apply(m.side, m.price, m.size)
        self.levels += 1
        self.flags.append(m.flags)
        self.origins.append(self.origin)
        if m.flags & L2Flags.LAST:
            self.messages += 1
            self._maybe_done()

    def on_trades(self, m):
        self.trade_list.append(m)
        self._maybe_done()

    def on_status(self, m):
        self.statuses.append(m)

    def _maybe_done(self):
        if self.messages >= self.expect and len(self.trade_list) >= self.expect_trades:
            self.stop_system()

    def loop(self):
        if time.monotonic() > self.deadline:
            self.stop_system()
        self.wakeup = self.clock.now() + 1_000_000
        return False


SIMS: dict = {}  # name -> running simulator, for actors of a deterministic (one-process) run


class SimCheck(Actor):
    """Drives a simulator scenario from inside a system: waits until every book is SYNCED and
    moving, injects the next fault, waits for the feed to recover (a non-SYNCED status seen, then
    SYNCED and moving again), and finally freezes the market and waits until the books it rebuilt
    from the spine equal the simulator's.  ``done`` tells whether it got there."""

    inputs = ("l2", "trades", "status")
    sim = ""
    symbols: tuple = ()
    faults: tuple = ()
    depth = 0  # the feed's book depth (0: full book)
    moving = 5  # LAST-flagged messages per book between phases
    deadline_s = 20.0

    def on_start(self):
        from mantra.feeds.actor import system_registry

        self.simulator = SIMS[self.sim]
        self.registry = system_registry(self.system)
        self.books: dict[int, L2Book] = {}
        self.status: dict[int, int] = {}
        self.msgs: dict[int, int] = {}
        self.trades = 0
        self.plan = list(self.faults)
        self.phase, self.fault, self.bad = "sync", None, False
        self.mark: dict[int, int] = {}
        self.recovered: list[str] = []
        self.seen_status: set[int] = set()
        self.done = False
        self.deadline = time.monotonic() + self.deadline_s
        self.wakeup = self.clock.now()

    def on_l2(self, m):
        self.books.setdefault(m.instrument, L2Book()).apply(m.side, m.price, m.size)
        if m.flags & L2Flags.LAST:
            self.msgs[m.instrument] = self.msgs.get(m.instrument, 0) + 1

    def on_trades(self, m):
        self.trades += 1

    def on_status(self, m):
        self.status[m.instrument] = m.status
        self.seen_status.add(m.status)
        if self.phase == "fault" and m.status not in LIVE:
            self.bad = True

    def _steady(self) -> bool:
        return (len(self.status) == len(self.symbols) and all(s in LIVE for s in self.status.values())
                and all(self.msgs.get(i, 0) - self.mark.get(i, 0) >= self.moving for i in self.status))

    def _same_books(self) -> bool:
        from mantra.fixed import rescale

        sim = self.simulator
        for iid in self.status:
            mine = self.registry[iid]
            theirs = sim.instruments[sim.symbol(mine.symbol)]
            truth, book = sim.book(mine.symbol), self.books.get(iid, L2Book())
            for side in (1, -1):
                want = [(rescale(p, theirs.price_scale, mine.price_scale), rescale(q, theirs.size_scale, mine.size_scale))
                        for p, q in truth.top(side, self.depth or 10**9)]
                if book.top(side, 10**9) != want:
                    return False
        return True

    def loop(self):
        self.wakeup = self.clock.now() + 1_000_000
        if time.monotonic() > self.deadline:
            self.stop_system()
            return False
        if self.phase == "sync" and self._steady():
            if self.fault is not None:
                self.recovered.append(self.fault)
            if not self.plan:
                self.simulator.pause()
                self.phase = "converge"
                return True
            self.fault = self.plan.pop(0)
            self.bad = self.fault == "malformed"  # a cut frame may not belong to any one book
            self.mark = dict(self.msgs)
            self.phase = "fault"
            sim = self.simulator
            if self.fault == "drop":
                sim.drop_next(2)
            elif self.fault == "disconnect":
                sim.disconnect()
            elif self.fault == "malformed":
                sim.malformed_next()
            elif self.fault == "ratelimit":  # the resync's snapshot is refused twice
                sim.rate_limit_next(2)
                sim.disconnect()
            return True
        if self.phase == "fault" and self.bad and self._steady():
            self.phase = "sync"
            self.mark = dict(self.msgs)
            return True
        if self.phase == "converge" and self._same_books():
            self.done = True
            self.stop_system()
        return False
