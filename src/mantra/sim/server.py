"""Local venue simulators: each venue's native WebSocket protocol and REST endpoints on loopback.

Machines without internet run their feeds, the demo and the tests against these.  A venue module
(``<venue>/simulator.py``) only formats that venue's messages; everything else is here:

* **Server.**  One ``websockets`` sync server per simulator, bound to 127.0.0.1; the same port
  answers plain HTTP GETs (the REST endpoints) through ``process_request``.  Threads, no asyncio:
  websockets' thread per connection reads client messages, one writer thread per connection sends
  (a slow or stalled client never blocks the market), and one market thread steps the source.
* **Market.**  A source yields ``Step``s: the book changes and trades of one exchange message.
  ``SyntheticMarket`` is a seeded random market; ``ReplayMarket`` re-serves what a venue once sent
  (a cryptofeed recording).  The simulator applies every step to one ``L2Book`` per instrument, its
  truth (``book(symbol)``), then the venue module turns the step into frames for each subscriber.
  Subscription state and formatting run under one lock, so a snapshot is always exactly the state
  between two diffs of the same connection.
* **Faults**, callable from any thread at runtime: ``disconnect``, ``drop_next``,
  ``corrupt_checksum_next``, ``malformed_next``, ``slow``, ``reconnect_request``,
  ``rate_limit_next`` (and ``rest_limit_per_s`` for a standing REST rate limit).  From outside the
  process: a ``faults`` schedule (``[(seconds after start, name, argument), ...]``; the command
  line's ``--fault 5:disconnect``), and the control paths on the REST port (loopback only, never
  rate limited): ``GET /__sim/fault/<name>[?arg=N]``, ``/__sim/pause``, ``/__sim/resume`` and
  ``/__sim/book/<symbol>`` (the truth, as exact decimal text).

``pause()``/``resume()`` freeze the market (connections and heartbeats go on) so that a client's
books can be compared with ``book(symbol)``.  ``make_simulator(venue, replay=None, **options)``
builds one by venue name; ``python -m mantra.venues.simulator <venue>`` serves one from a shell.
Everything stops by itself: the market thread ends the simulator after ``lifetime_s``.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Iterator, NamedTuple
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.sync.server import serve

from ..book import L2Book
from ..fixed import from_fixed, to_fixed
from ..instruments import Instrument, InstrumentRegistry
from .events import BookState, Fetch, Level, Status, Trade

log = logging.getLogger(__name__)

BID, ASK = 1, -1
LOOPBACK = ("127.0.0.1", "::1", "localhost")


# -- market -----------------------------------------------------------------------------------
class SimTrade(NamedTuple):
    side: int  # aggressor: +1 buyer lifted the ask, -1 seller hit the bid
    price: int
    size: int
    trade_id: int


class Step(NamedTuple):
    """One exchange message's worth of market change for one instrument."""

    symbol: str
    levels: list  # (side, price, size): the final size of each changed level (0 deletes), in order
    trades: list  # SimTrade, executed on the book as it was before this step
    ts: int = 0  # ns since the epoch; stamped by the simulator when it publishes the step


@dataclass(frozen=True)
class Listing:
    """A synthetic instrument: the venue's symbol, its increments, where its price starts."""

    symbol: str
    base: str
    quote: str
    tick: str  # price increment; its decimals are the price scale
    lot: str  # size increment; its decimals are the size scale
    start: str  # first mid price
    max_size: str  # largest size of a new level
    min_size: str = "0"
    min_notional: str = "0"

    def instrument(self, venue: str, registry: InstrumentRegistry) -> Instrument:
        ps, ss = _decimals(self.tick), _decimals(self.lot)
        return registry.add(
            venue, self.symbol, base=self.base, quote=self.quote, price_scale=ps, size_scale=ss,
            tick=to_fixed(self.tick, ps), lot=to_fixed(self.lot, ss), min_size=to_fixed(self.min_size, ss),
            min_notional=to_fixed(self.min_notional, ps), price_decimals=ps, size_decimals=ss)


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


def collapse(levels) -> list[tuple[int, int, int]]:
    """Keep each level's final size, in first-change order: a venue sends one entry per level."""
    out: dict[tuple[int, int], int] = {}
    for side, price, size in levels:
        out[(side, price)] = size
    return [(s, p, q) for (s, p), q in out.items()]


class SyntheticMarket:
    """A seeded random market: the same seed gives the same steps, however fast they are taken.

    Per instrument, a centre price random-walks; levels are added around it (never crossing the
    other side), resized, deleted (far ones first once a side is long), and trades take liquidity
    at the touch.  One step changes one instrument: a trade (and the level it leaves), or
    1..``max_changes`` level changes.
    """

    def __init__(self, venue: str, listings, *, seed: int = 1, rate: float = 50.0, levels: int = 20,
                 max_changes: int = 3, trade_ratio: float = 0.15):
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.registry = InstrumentRegistry()
        self.instruments = [x.instrument(venue, self.registry) for x in listings]
        self.rate = rate
        self.levels = max(levels, 4)
        self.max_changes = max_changes
        self.trade_ratio = trade_ratio
        self.rng = random.Random(seed)
        self.books = {i.symbol: L2Book() for i in self.instruments}  # the generator's own copy of the truth
        self._center = {x.symbol: to_fixed(x.start, i.price_scale) for x, i in zip(listings, self.instruments)}
        self._max_lots = {i.symbol: max(to_fixed(x.max_size, i.size_scale) // i.lot, 1)
                          for x, i in zip(listings, self.instruments)}
        self._trade_id = {i.symbol: 0 for i in self.instruments}
        self._opening = self._open()

    def initial(self) -> list[Step]:
        """The opening books: ``levels`` per side around the start price."""
        return list(self._opening)

    def _open(self) -> list[Step]:
        out = []
        for inst in self.instruments:
            book, c, tick = self.books[inst.symbol], self._center[inst.symbol], inst.tick
            levels = []
            for side in (BID, ASK):
                price = c - side * tick * self.rng.randint(1, 3)
                for _ in range(self.levels):
                    if price > 0:
                        levels.append((side, price, self._size(inst)))
                    price -= side * tick * self.rng.randint(1, 3)
            for lv in levels:
                book.apply(*lv)
            out.append(Step(inst.symbol, levels, []))
        return out

    def steps(self) -> Iterator[tuple[float, Step]]:
        while True:
            yield 1.0 / self.rate, self.step()

    def step(self) -> Step:
        rng = self.rng
        inst = rng.choice(self.instruments)
        sym = inst.symbol
        book = self.books[sym]
        if rng.random() < 0.2:  # the random walk: new levels gather around the moving centre
            self._center[sym] = max(self._center[sym] + rng.choice((-1, 1)) * inst.tick, inst.tick * 4 * self.levels)
        levels, trades = [], []
        for k in range(rng.randint(1, self.max_changes)):
            self._operate(inst, book, levels, trades, trade=k == 0)
            if trades:
                break  # a trade's step is the trade and its effect on the touch, nothing else
        return Step(sym, collapse(levels), trades)

    def _size(self, inst: Instrument) -> int:
        # Mostly small, sometimes large: a log-uniform number of lots.
        lots = int(self._max_lots[inst.symbol] ** self.rng.random())
        return inst.lot * max(lots, 1)

    def _operate(self, inst: Instrument, book: L2Book, levels: list, trades: list, trade: bool) -> None:
        rng, tick = self.rng, inst.tick
        side = rng.choice((BID, ASK))
        mine = book.bids if side == BID else book.asks
        r = rng.random()
        if len(mine) > 2 * self.levels:  # keep sides bounded: drop the furthest level
            change = (side, book.top(side, len(mine))[-1][0], 0)
        elif r < self.trade_ratio and trade:  # a trade takes (part of) the touch; the aggressor is the other side
            price, size = book.top(side, 1)[0]
            if len(mine) > 2 and rng.random() < 0.4:
                qty = size  # the whole level
            else:
                qty = min(inst.lot * rng.randint(1, max(size // inst.lot - 1, 1)), size)
            if qty == size and len(mine) <= 2:  # never empty a side
                qty -= inst.lot
            if qty <= 0:
                return
            self._trade_id[inst.symbol] += 1
            trades.append(SimTrade(-side, price, qty, self._trade_id[inst.symbol]))
            change = (side, price, size - qty)
        elif r < 0.45 and mine:  # resize a level, mostly near the touch
            top = book.top(side, len(mine))
            price = top[min(int(rng.expovariate(0.25)), len(top) - 1)][0]
            change = (side, price, self._size(inst))
        elif r < 0.75 or len(mine) <= self.levels // 2:  # add a level near the centre, never crossing
            price = self._center[inst.symbol] - side * tick * (1 + int(rng.expovariate(0.15)))
            other = book.best_ask() if side == BID else book.best_bid()
            if other is not None and (price - other) * side >= 0:
                price = other - side * tick * rng.randint(1, 3)
            if price <= 0:
                return
            change = (side, price, self._size(inst))
        else:  # delete a level, further ones more likely
            top = book.top(side, len(mine))
            price = top[len(top) - 1 - min(int(rng.expovariate(0.2)), len(top) - 1)][0]
            change = (side, price, 0)
        book.apply(*change)
        levels.append(change)


class ReplayMarket:
    """Re-serve a recording: its book changes and trades as steps, paced by the recorded times.

    The recording (cryptofeed format: WebSocket frames plus ``*.http.*`` REST bodies) is decoded by
    the venue's own protocol, the way ``mantra venues check`` replays it; each exchange message that
    changed a book (its ``Level``s up to ``last``) becomes one step, each trade a step of its own.
    Steps up to the first state of every instrument form the opening books; the rest follow at the
    recorded pace divided by ``speed`` (silences capped at ``max_gap_s``).  The simulator then serves
    them in its own venue's format with live sequence numbers, so faults and resyncs work as with the
    synthetic market.
    """

    def __init__(self, venue: str, files, symbols: list[str] | None = None, *, speed: float = 1.0,
                 max_gap_s: float = 1.0, **opts):
        from ..store.cryptofeed import HTTP, OPEN, RECV, SENT, read_capture
        from .check import DISCOVER
        from .registry import make_protocol

        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed, self.max_gap_s = speed, max_gap_s
        records, bodies, opened, sent = [], {}, [], []
        for path in files:
            for rec in read_capture(path):
                if rec.kind == HTTP:
                    body = rec.payload if isinstance(rec.payload, bytes) else rec.payload.encode()
                    bodies.setdefault(rec.url.rstrip("/"), []).append(body)
                elif rec.kind in (OPEN, RECV):
                    opened += [rec.url] if rec.kind == OPEN else []
                    records.append(rec)
                elif rec.kind == SENT:
                    try:
                        sent.append(msgspec.json.decode(rec.payload))
                    except msgspec.DecodeError:
                        pass
        found, found_opts = DISCOVER[venue](opened, sent, list(bodies))
        self.registry = InstrumentRegistry()
        proto = make_protocol(venue, self.registry, symbols or list(dict.fromkeys(found)), **{**found_opts, **opts})
        self._decoded: list[tuple[int, Step]] = []
        pending: dict[int, list] = {}
        used = Counter()
        tick = None
        for rec in records:
            while tick is not None and tick <= rec.ts:  # the protocol's ~1/s timer, at recorded times
                proto.on_timer(tick)
                self._collect(proto, pending, bodies, used, tick)
                tick += 1_000_000_000
            if rec.kind == OPEN:
                if proto.connected:
                    proto.on_disconnect(rec.ts)
                proto.on_connect(rec.ts)
                tick = tick or rec.ts + 1_000_000_000
            else:
                proto.on_frame(rec.payload, rec.ts)
            self._collect(proto, pending, bodies, used, rec.ts)
        self.instruments = [self.registry[i] for i in proto.books]
        self.protocol = proto  # holds the books as read straight from the recording
        self.malformed = proto.malformed

    def _collect(self, proto, pending: dict, bodies: dict, used: Counter, ts: int) -> None:
        """Turn the protocol's events into steps; answer its fetches from the recorded bodies."""
        while proto.events:
            events = list(proto.events)
            proto.events.clear()
            for e in events:
                t = type(e)
                if t is Level:
                    pending.setdefault(e.instrument, []).append((e.side, e.price, e.size))
                    if e.last:
                        sym = self.registry[e.instrument].symbol
                        self._decoded.append((ts, Step(sym, collapse(pending.pop(e.instrument)), [])))
                elif t is Trade:
                    trade = SimTrade(e.side or BID, e.price, e.size, e.trade_id)
                    self._decoded.append((ts, Step(self.registry[e.instrument].symbol, [], [trade])))
                elif t is Fetch:
                    # The next recorded answer for that URL (the last one again once all are used).
                    answers = bodies.get(e.url.rstrip("/"))
                    if answers:
                        n = used[e.url]
                        used[e.url] += 1
                        proto.on_rest(e.url, answers[min(n, len(answers) - 1)], ts)
                elif t is BookState and e.status == Status.SYNCING:
                    pending.pop(e.instrument, None)

    def initial(self) -> list[Step]:
        waiting = {i.symbol for i in self.instruments}
        n = 0
        while waiting and n < len(self._decoded):
            waiting.discard(self._decoded[n][1].symbol)
            n += 1
        self._start = n
        return [s for _, s in self._decoded[:n]]

    def steps(self) -> Iterator[tuple[float, Step]]:
        prev = self._decoded[self._start - 1][0] if self._start else None
        for ts, step in self._decoded[self._start :]:
            gap = 0.0 if prev is None else min((ts - prev) / 1e9 / self.speed, self.max_gap_s)
            prev = ts
            yield gap, step


# -- depth-limited subscriptions ----------------------------------------------------------------
class DepthView:
    """What a subscriber to the best ``depth`` levels holds.

    Venues with a subscribed depth (Kraken, Bitfinex) send the changes inside that window, a level
    that enters it from below (Kraken marks it "republished"), and no delete for a level pushed out
    by a better one: the client truncates.  ``diff`` computes those changes against the truth; the
    caller applies each message it sends with ``apply``, exactly as the client will, so a checksum
    computed from ``book`` is what the client must find, even for a message the client never got.
    """

    def __init__(self, depth: int, truth: L2Book):
        self.book = L2Book(depth)
        for side in (BID, ASK):
            for price, size in truth.top(side, depth):
                self.book.apply(side, price, size)

    def diff(self, truth: L2Book, changed) -> list[tuple[int, int, int, bool]]:
        """``(side, price, size, republished)``: deletions first, so that a client truncating after
        every single-level message never drops a level that belongs in the window."""
        depth = self.book.depth
        deletes, sets = [], []
        for side in (BID, ASK):
            old = self.book.bids if side == BID else self.book.asks
            have = truth.bids if side == BID else truth.asks
            new = truth.top(side, depth)
            inside = {p for p, _ in new}
            deletes += [(side, p, 0, False) for p in old if p not in inside and p not in have]
            sets += [(side, p, s, (side, p) not in changed) for p, s in new if old.get(p) != s]
        return deletes + sets

    def apply(self, levels) -> None:
        for side, price, size, *_ in levels:
            self.book.apply(side, price, size)
        self.book.truncate()


# -- checksums (written from the venues' documents, independently of the protocols) ------------
def kraken_checksum(book: L2Book, price_decimals: int, size_decimals: int, price_scale: int | None = None,
                    size_scale: int | None = None) -> int:
    """CRC32 of the top 10 asks (ascending) then bids (descending): each price and quantity
    written with the pair's precision, ``.`` removed, leading zeros stripped."""
    ps = price_decimals if price_scale is None else price_scale
    ss = size_decimals if size_scale is None else size_scale

    def text(v: int, scale: int, decimals: int) -> str:
        return from_fixed(v, scale, decimals).replace(".", "").lstrip("0")

    parts = [text(p, ps, price_decimals) + text(s, ss, size_decimals)
             for side in (ASK, BID) for p, s in book.top(side, 10)]
    return zlib.crc32("".join(parts).encode())


def bitfinex_checksum(bids: list[str], asks: list[str]) -> int:
    """Signed CRC32 of ``bid0:ask0:bid1:ask1...`` (``"price:amount"`` fragments, best first, top 25)."""
    parts = []
    for i in range(25):
        if i < len(bids):
            parts.append(bids[i])
        if i < len(asks):
            parts.append(asks[i])
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


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


class RestError(Exception):
    """Raised by a venue's REST handler: answered with ``status`` and the venue's error ``body``."""

    def __init__(self, status: int, body):
        super().__init__(status)
        self.status, self.body = status, body


class VenueSimulator:
    """Base of the venue simulators; subclasses format messages (see the hooks at the end).

    ``source``: a ``SyntheticMarket`` or ``ReplayMarket`` (default: the venue's synthetic market
    with ``seed``, ``rate`` steps per second and ``levels`` per side).  ``rest_limit_per_s``:
    REST requests beyond this many in a second get the venue's rate-limit answer.  ``max_queue``:
    frames a client may leave unread before it is closed (1008), as venues drop slow consumers.
    """

    venue = ""
    LISTINGS: tuple = ()  # the synthetic market's instruments
    idle_s = 0.1  # how often ``idle`` runs (heartbeats)
    rate_limit_status = 429

    def __init__(self, source=None, *, seed: int = 1, rate: float = 50.0, levels: int = 20,
                 host: str = "127.0.0.1", port: int = 0, lifetime_s: float = 600.0,
                 rest_limit_per_s: int | None = None, max_queue: int = 100_000, faults=()):
        if host not in LOOPBACK:
            raise ValueError(f"simulators serve loopback only, not {host!r}")
        self.source = source or SyntheticMarket(self.venue, self.LISTINGS, seed=seed, rate=rate, levels=levels)
        self.instruments: dict[str, Instrument] = {i.symbol: i for i in self.source.instruments}
        self.books = {s: L2Book() for s in self.instruments}  # the truth
        self.recent_trades = {s: deque(maxlen=50) for s in self.instruments}  # (SimTrade, ts), oldest first
        self.aliases: dict[str, str] = {}  # other spellings of a symbol (Kraken v1 names)
        self.host, self.port = host, port  # port 0: any free port, known after start()
        self.lifetime_s, self.rest_limit_per_s, self.max_queue = lifetime_s, rest_limit_per_s, max_queue
        self.lock = threading.RLock()
        self.clients: list[Client] = []
        # faults
        self._drop = self._corrupt = self._malformed = 0
        self._stall_until = 0.0
        self._limited: deque[int] = deque()
        self._rest_times: deque[float] = deque()
        self.schedule = sorted((float(at), *parse_fault(name, arg)) for at, name, arg in faults)
        self.injected: Counter = Counter()  # fault name -> times injected (schedule and control paths)
        # counters, for tests and the demo
        self.connections = 0  # WebSocket connections accepted so far
        self.frames_sent = 0
        self.dropped = 0
        self.rest_requests: Counter = Counter()  # path -> requests
        self.steps = 0
        self.finished = False  # the source has no more steps (a replay has ended)
        self._paused = False
        self._stop = threading.Event()
        self._stopped = False
        self._server = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "VenueSimulator":
        with self.lock:
            for step in self.source.initial():
                self._apply(step._replace(ts=time.time_ns()))
        self._server = serve(self._handle, self.host, self.port, process_request=self._http, compression=None,
                             ping_interval=20, close_timeout=2, logger=logging.getLogger(__name__ + ".ws"))
        self.port = self._server.socket.getsockname()[1]
        for target, name in ((self._server.serve_forever, "server"), (self._run, "market")):
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

    @property
    def address(self) -> str:
        """``host:port`` as a URL spells it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.address}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.address}"

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
        """Run the fault ``name`` (one of ``FAULTS``) with its optional numeric argument."""
        name, arg = parse_fault(name, arg)
        method = getattr(self, FAULTS[name])
        method() if arg is None else method(arg)
        self.injected[name] += 1
        log.info("%s simulator: fault %s%s injected", self.venue, name, "" if arg is None else f" ({arg})")

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

    def _http(self, conn, request):
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None  # a WebSocket handshake
        url = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        headers = [("Content-Type", "application/json")]
        if url.path.startswith(CONTROL):
            status, body = self._control(url.path[len(CONTROL):], query)
            data = msgspec.json.encode(body)
            return Response(status, HTTPStatus(status).phrase,
                            Headers(headers + [("Content-Length", str(len(data)))]), data)
        with self.lock:
            self.rest_requests[url.path] += 1
            now = time.monotonic()
            self._rest_times.append(now)
            while self._rest_times and self._rest_times[0] < now - 1.0:
                self._rest_times.popleft()
            over = self.rest_limit_per_s is not None and len(self._rest_times) > self.rest_limit_per_s
            if self._limited or over:
                status = self._limited.popleft() if self._limited else self.rate_limit_status
                body = self.rate_limit_body(status)
                headers.append(("Retry-After", "1"))
            else:
                try:
                    status, body = 200, self.rest(url.path, query)
                except RestError as e:
                    status, body = e.status, e.body
        data = body if isinstance(body, bytes) else msgspec.json.encode(body)
        headers.append(("Content-Length", str(len(data))))
        return Response(status, HTTPStatus(status).phrase, Headers(headers), data)

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
        except (KeyError, ValueError, NotImplementedError) as e:
            return 400, {"error": str(e) or type(e).__name__}
        return 404, {"error": f"no control path {path!r}; known: fault/<name>, pause, resume, book/<symbol>"}

    # -- venue hooks -------------------------------------------------------------------------
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

    def rest(self, path: str, query: dict):
        """Answer a REST GET: return the JSON body, or raise ``RestError``."""
        raise RestError(404, {"error": f"no such endpoint {path}"})

    def rate_limit_body(self, status: int):
        return {"error": "rate limit exceeded"}

    def reconnect_message(self, client: Client):
        raise NotImplementedError(f"{self.venue} has no reconnect request")


# -- faults by name ------------------------------------------------------------------------------
CONTROL = "/__sim/"
FAULTS = {"disconnect": "disconnect", "drop": "drop_next", "corrupt_checksum": "corrupt_checksum_next",
          "malformed": "malformed_next", "slow": "slow", "reconnect_request": "reconnect_request",
          "rate_limit": "rate_limit_next"}
FAULT_ARGS = {"drop": 1, "slow": 1.0, "rate_limit": 1}  # the faults that take a number, and its type


def parse_fault(name: str, arg=None) -> tuple[str, float | None]:
    """Checks a fault's name and argument; an unknown one is an error naming the known ones."""
    if name not in FAULTS:
        raise ValueError(f"unknown simulator fault {name!r}; known: {', '.join(FAULTS)}")
    if arg is None or arg == "":
        return name, None
    if name not in FAULT_ARGS:
        raise ValueError(f"simulator fault {name!r} takes no argument (got {arg!r})")
    try:
        value = type(FAULT_ARGS[name])(arg)
    except (TypeError, ValueError):
        raise ValueError(f"simulator fault {name!r}: argument {arg!r} is not a number") from None
    if not 0 < value <= 1000:
        raise ValueError(f"simulator fault {name!r}: argument {arg!r} is out of range (0, 1000]")
    return name, value


def fault_option(text: str) -> tuple[float, str, str | None]:
    """``SECONDS:NAME[:ARG]`` from the command line -> a schedule entry."""
    at, _, rest = text.partition(":")
    name, _, arg = rest.partition(":")
    try:
        when = float(at)
    except ValueError:
        raise ValueError(f"--fault {text!r}: expected SECONDS:NAME[:ARG], e.g. 5:disconnect or 8:drop:3") from None
    return (when, *parse_fault(name, arg or None))


# -- by venue name ---------------------------------------------------------------------------------
SIMULATORS = {
    "binance": ("mantra.venues.binance.simulator", "BinanceSimulator"),
    "bitstamp": ("mantra.venues.bitstamp.simulator", "BitstampSimulator"),
    "bitfinex": ("mantra.venues.bitfinex.simulator", "BitfinexSimulator"),
    "coinbase": ("mantra.venues.coinbase.simulator", "CoinbaseSimulator"),
    "kraken": ("mantra.venues.kraken.simulator", "KrakenSimulator"),
}


def make_simulator(venue: str, replay=None, speed: float = 1.0, **opts) -> VenueSimulator:
    """A (not yet started) simulator for ``venue``: synthetic, or re-serving the ``replay`` files."""
    import importlib

    try:
        module, name = SIMULATORS[venue.lower()]
    except KeyError:
        raise ValueError(f"unknown venue {venue!r}; known: {', '.join(SIMULATORS)}") from None
    source = ReplayMarket(venue.lower(), replay, speed=speed) if replay else None
    return getattr(importlib.import_module(module), name)(source, **opts)


# -- as child processes (the demo, the drill, a system's [simulators]) ------------------------------
def spawn(venues: dict[str, dict], log_path=None) -> tuple[list, dict]:
    """One simulator process per venue: ``{venue: {seed, rate, levels, lifetime, faults}}`` (faults:
    ``[(seconds, name, arg or None), ...]``).  Returns (processes, venue -> {ws, rest, symbols}).
    Each dies with this process, however it ends (SIGKILL included); stop them with ``stop_spawned``.
    Their logs go to ``log_path`` (default: this process's stderr)."""
    import functools
    import os
    import subprocess
    import sys

    from ..runtime.supervisor import die_with_parent

    procs, urls = [], {}
    log = open(log_path, "ab") if log_path else None
    try:
        for venue, o in venues.items():
            cmd = [sys.executable, "-m", "mantra.venues.simulator", venue, "--port", "0",
                   "--seed", str(o.get("seed", 1)), "--rate", str(o.get("rate", 50.0)),
                   "--levels", str(o.get("levels", 20)), "--lifetime", str(o.get("lifetime", 3600.0))]
            for at, name, arg in o.get("faults", ()):
                cmd += ["--fault", f"{at}:{name}" + ("" if arg is None else f":{arg}")]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                                          start_new_session=True,  # Ctrl-C is the parent's to handle
                                          preexec_fn=functools.partial(die_with_parent, os.getpid())))
        for venue, p in zip(venues, procs):
            line = p.stdout.readline()  # "VENUE: ws URL  rest URL  instruments A, B, C"
            if not line.startswith(f"{venue}: ws "):
                raise RuntimeError(f"{venue} simulator did not start (see {log_path or 'its log'}): {line!r}")
            head, _, insts = line.strip().partition("  instruments ")
            parts = head.split()
            urls[venue] = {"ws": parts[2], "rest": parts[4], "symbols": insts.split(", ")}
    except BaseException:
        stop_spawned(procs)
        raise
    finally:
        if log:
            log.close()
    return procs, urls


def stop_spawned(procs: list) -> None:
    import subprocess

    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout:
            p.stdout.close()


def feed_options(venue: str, urls: dict) -> dict:
    """A Feed's protocol options pointing at a spawned simulator."""
    if venue in ("binance", "bitstamp"):  # WebSocket diffs + REST snapshots
        return {"ws_url": urls["ws"], "rest_url": urls["rest"]}
    return {"url": urls["ws"]}


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mantra.venues.simulator",
                                 description="Serve a venue's market-data protocol on loopback.")
    ap.add_argument("venue", choices=sorted(SIMULATORS))
    ap.add_argument("--port", type=int, default=0, help="default: any free port")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=50.0, help="synthetic messages per second")
    ap.add_argument("--levels", type=int, default=20, help="synthetic levels per side")
    ap.add_argument("--replay", nargs="+", metavar="FILE", help="re-serve these recordings instead")
    ap.add_argument("--speed", type=float, default=1.0, help="replay speed factor")
    ap.add_argument("--lifetime", type=float, default=3600.0, help="stop after this many seconds")
    ap.add_argument("--fault", action="append", default=[], metavar="SECONDS:NAME[:ARG]",
                    help=f"inject a fault at that time after start (repeatable); names: {', '.join(FAULTS)}")
    args = ap.parse_args(argv)
    try:
        faults = [fault_option(f) for f in args.fault]
    except ValueError as e:
        ap.error(str(e))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sim = make_simulator(args.venue, args.replay, args.speed, seed=args.seed, rate=args.rate, levels=args.levels,
                         port=args.port,
                         lifetime_s=args.lifetime, faults=faults)
    with sim:
        print(f"{args.venue}: ws {sim.ws_url}  rest {sim.rest_url}  instruments {', '.join(sim.instruments)}",
              flush=True)
        try:
            while not sim._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
