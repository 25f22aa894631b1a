"""The Feed actor end to end: a recorded Binance session served over loopback (WebSocket + REST)
goes through the Feed into the spine; consumers rebuild the books from L2Update alone and must hold
exactly what the sans-IO protocol computes from the same frames offline."""

import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feedkit import CAPTURES, RestServer, WsServer  # noqa: E402

from mantra.book import L2Book  # noqa: E402
from mantra.feeds.actor import SharedRegistry, status_reason  # noqa: E402
from mantra.instruments import InstrumentRegistry  # noqa: E402
from mantra.runtime import paths  # noqa: E402
from mantra.runtime.config import parse  # noqa: E402
from mantra.runtime.supervisor import Supervisor, run_deterministic  # noqa: E402
from mantra.spine import Ring  # noqa: E402
from mantra.spine.messages import BookStatus, L2Flags, L2Update, TradeUpdate  # noqa: E402
from mantra.store import cryptofeed as cf  # noqa: E402
from mantra.store.capture import CaptureReader, Kind  # noqa: E402
from mantra.venues.events import Fetch, Level, Status, Trade  # noqa: E402
from mantra.venues.registry import make_protocol  # noqa: E402

SYMBOLS = ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"]


@pytest.fixture(scope="module")
def recording():
    ws, http = CAPTURES / "BINANCE.ws.1.0", CAPTURES / "BINANCE.http.0.0"
    if not ws.exists() or not http.exists():
        pytest.skip("Binance recording not available")
    frames = [r.payload for r in cf.read_capture(ws) if r.kind == cf.RECV]
    bodies = {}
    for r in cf.read_capture(http):
        u = urlsplit(r.url)
        bodies.setdefault(f"{u.path}?{u.query}", r.payload.encode())  # the first answer per URL
    return frames, bodies


def offline(frames, bodies, symbols):
    """The protocol alone, no sockets: books by symbol, trades, exchange messages, snapshot sizes."""
    reg = InstrumentRegistry()
    p = make_protocol("binance", reg, symbols)
    out = {"messages": 0, "trades": [], "snapshot_levels": 0}

    def drain():
        while p.events:
            ev, p.events = p.events, []
            for e in ev:
                if type(e) is Fetch:
                    u = urlsplit(e.url)
                    body = bodies[f"{u.path}?{u.query}"]
                    out["snapshot_levels"] += sum(1 for side in ("bids", "asks") for _, q in json.loads(body)[side]
                                                  if float(q))
                    p.on_rest(e.url, body, 1)
                elif type(e) is Level and e.last:
                    out["messages"] += 1
                elif type(e) is Trade:
                    out["trades"].append((reg[e.instrument].symbol, e.side, e.price, e.size, e.trade_id, e.exch_ts))

    p.on_connect(1)
    drain()
    for f in frames:
        p.on_frame(f, 1)
        drain()
    out["books"] = {reg[i].symbol: (dict(b.bids), dict(b.asks)) for i, b in p.books.items()}
    out["status"] = {reg[i].symbol: s for i, s in p.status.items()}
    return out


def feed_actor(name, symbols, srv, rest, capture_dir, **extra):
    return {"class": "mantra.feeds.actor:Feed",
            "params": {"venue": "binance", "symbols": symbols, "capture_dir": str(capture_dir),
                       "options": {"ws_url": srv.url, "rest_url": rest.url},
                       "connection": {"ping_interval": None}, **extra},
            "outputs": {"l2": "l2", "trades": "trades", "status": "status"}}


QUEUES = {"l2": {"type": "L2Update", "capacity": 1 << 15, "mpmc": True},
          "trades": {"type": "TradeUpdate", "capacity": 1 << 12, "mpmc": True},
          "status": {"type": "BookStatus", "capacity": 1 << 10, "mpmc": True}}


@pytest.mark.parametrize("honour_clear", [False, True])
def test_feed_publishes_books_trades_and_status_that_rebuild_the_venue_book(
        recording, tmp_path, shm_root, honour_clear):
    frames, bodies = recording
    ref = offline(frames, bodies, SYMBOLS)
    assert all(s == Status.SYNCED for s in ref["status"].values())
    with WsServer(frames) as srv, RestServer(bodies) as rest:
        doc = {"system": {"name": "feedt", "clock": "deterministic"}, "queues": QUEUES,
               "actors": {"feed": feed_actor("feed", SYMBOLS, srv, rest, tmp_path / "cap"),
                          "books": {"class": "feedkit:BookBuilder",
                                    "params": {"expect": ref["messages"], "expect_trades": len(ref["trades"]),
                                               "honour_clear": honour_clear},
                                    "inputs": {"l2": "l2", "trades": "trades", "status": "status"}}}}
        t0 = time.time_ns()
        runner = run_deterministic(parse(doc), keep=True)
        t1 = time.time_ns()
    feed, books = (s.actor for s in runner.slots)
    reg = SharedRegistry(paths.system_dir("feedt") / "instruments.json")
    assert sorted(i.symbol for i in reg) == sorted(SYMBOLS)
    assert books.messages == ref["messages"] and len(books.trade_list) == len(ref["trades"])

    # The books rebuilt from the spine are the protocol's books, which are the offline ones.
    got = {reg[i].symbol: (dict(b.bids), dict(b.asks)) for i, b in books.books.items()}
    assert got == ref["books"]
    assert {reg[i].symbol: (dict(b.bids), dict(b.asks)) for i, b in feed.protocol.books.items()} == ref["books"]
    assert [(reg[t.instrument].symbol, t.side, t.price, t.size, t.trade_id, t.exch_ts)
            for t in books.trade_list] == ref["trades"]

    # Status: each book went SYNCING (connected) -> SYNCING (snapshot) -> SYNCED.
    last = {}
    for m in books.statuses:
        last[reg[m.instrument].symbol] = (m.status, m.reason)
    assert last == {s: (Status.SYNCED, status_reason(f"snapshot {json.loads(bodies[k])['lastUpdateId']}"))
                    for s in SYMBOLS for k in bodies if f"symbol={s}&" in k}

    # Flags: one CLEAR per snapshot, SNAPSHOT on exactly the snapshot's levels.
    flags = books.flags
    assert sum(1 for f in flags if f & L2Flags.CLEAR) == 4
    assert all(f & L2Flags.SNAPSHOT for f in flags if f & L2Flags.CLEAR)
    assert sum(1 for f in flags if f & L2Flags.SNAPSHOT) == ref["snapshot_levels"]
    assert sum(1 for f in flags if f & L2Flags.LAST) == ref["messages"]

    # Origins are the receipt times of the frames (or REST bodies) the levels came from; the
    # capture holds every frame with its receipt time.  Frames queued during a fetch were received
    # before its body, so only the frames' own origins are in order.
    assert t0 <= min(books.origins) and max(books.origins) <= t1
    cap = list(CaptureReader(tmp_path / "cap"))
    assert [r.data for r in cap if r.kind == Kind.RECV] == frames
    frame_ts = [r.ts for r in cap if r.kind == Kind.RECV]
    rest_ts = {r.ts for r in cap if r.kind == Kind.REST}
    assert frame_ts == sorted(frame_ts) and set(books.origins) <= set(frame_ts) | rest_ts
    from_frames = [o for o in books.origins if o not in rest_ts]
    assert from_frames == sorted(from_frames) and from_frames
    assert sorted(r.data for r in cap if r.kind == Kind.REST) == sorted(bodies.values())
    assert [r.kind for r in cap][0] == Kind.OPEN and [r.kind for r in cap][-1] == Kind.CLOSE


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_two_feeds_in_one_parked_process_publish_across_processes_without_spinning(recording, tmp_path, shm_root):
    frames, bodies = recording
    a, b = SYMBOLS[:2], SYMBOLS[2:]
    ref = offline(frames, bodies, SYMBOLS)
    with WsServer(frames) as srv, RestServer(bodies) as rest:
        doc = {"system": {"name": "feedp"}, "queues": QUEUES,
               "actors": {"fa": feed_actor("fa", a, srv, rest, tmp_path / "cap"),
                          "fb": feed_actor("fb", b, srv, rest, tmp_path / "cap", wait_ms=50)},
               "processes": {"feeds": {"actors": ["fa", "fb"], "mode": "park"}}}
        sup = Supervisor(parse(doc), keep=True)
        cpu = {}
        start = time.monotonic()

        def tick():
            pr = sup.procs.get("feeds")
            if pr is None or not pr.is_alive():
                return
            t = time.monotonic() - start
            key = "early" if t < 1.5 else "late"  # the frames are all handled well within 1.5 s
            cpu.setdefault(key, _cpu_seconds(pr.pid))
            cpu["end"] = _cpu_seconds(pr.pid)

        sup.on_tick = tick
        assert sup.run(duration=3.5) == 0
    d = paths.system_dir("feedp")
    reg = SharedRegistry(d / "instruments.json")
    assert sorted(i.id for i in reg) == [1, 2, 3, 4]  # two feeds, one dense id space
    books: dict[int, L2Book] = {}
    l2 = Ring.attach(paths.queue(d, "l2"), L2Update).reader("check", start=0)
    while (m := l2.read()) is not None:
        books.setdefault(m.instrument, L2Book()).apply(m.side, m.price, m.size)
    assert {reg[i].symbol: (dict(bk.bids), dict(bk.asks)) for i, bk in books.items()} == ref["books"]
    trades = Ring.attach(paths.queue(d, "trades"), TradeUpdate).reader("check", start=0)
    n = 0
    while trades.read() is not None:
        n += 1
    assert n == len(ref["trades"])
    status = Ring.attach(paths.queue(d, "status"), BookStatus).reader("check", start=0)
    final = {}
    while (m := status.read()) is not None:
        final[m.instrument] = m.status
    # Stopping the feeds tells consumers the books are no longer live.
    assert sorted(final) == [1, 2, 3, 4] and set(final.values()) == {Status.DISCONNECTED}
    # Idle and parked: well under a tenth of a core while nothing arrives.
    assert cpu["end"] - cpu["late"] < 0.1 * 2.0


def _register(path, venue, n, q):
    reg = SharedRegistry(path)
    q.put((venue, [(s, reg.add(venue, s).id) for s in (f"S{i}" for i in range(n))], reg.add("kraken", "X").id))


def test_shared_registry_gives_every_process_the_same_dense_ids(tmp_path):
    path = tmp_path / "instruments.json"
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_register, args=(path, v, 15, q)) for v in ("binance", "bitstamp", "coinbase")]
    for p in procs:
        p.start()
    results = [q.get(timeout=20) for _ in procs]
    for p in procs:
        p.join(10)
    reg = SharedRegistry(path)
    assert sorted(i.id for i in reg) == list(range(1, 47))  # 3 x 15 + one shared, no gaps, no duplicates
    assert len({common for _, _, common in results}) == 1  # everyone got the same id for the shared one
    for venue, ids, _ in results:
        assert all(reg.get(venue, s).id == i for s, i in ids)
    other = SharedRegistry(path)
    assert other.add("binance", "S3").id == reg.get("binance", "S3").id
    late = reg.add("kraken", "NEW", price_scale=5)
    assert other[late.id] == late  # a lookup that misses reads the file again


def test_status_reason_never_splits_a_character():
    assert status_reason("snapshot 499869752") == b"snapshot 4998697"
    r = status_reason("écart détecté — resync")
    assert len(r) <= 16 and r.decode() == "écart détecté"[: len(r.decode())]
