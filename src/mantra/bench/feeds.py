"""`mantra bench feeds`: what a venue frame costs, on real venue recordings.

Per venue, the recorded frames are replayed (REST snapshots answered from the recording at once):

- decode_apply: ``protocol.on_frame`` alone (msgspec decode, exact fixed-point conversion, book
  apply, sync and checksum checks), µs per frame: every frame, and the frames that changed a book.
- feed: the same plus what the Feed actor does with the events (one ``L2Update`` / ``TradeUpdate``
  published per level / trade into real spine rings), per frame; ``feed_frames_per_s`` is the
  wall-clock rate of an uninstrumented replay (snapshots included): one feed process's capacity,
  sockets aside; ``feed_with_capture_frames_per_s`` the same while every frame is also captured
  (``capture_compression``: raw bytes / file bytes).
- baseline: ``json.loads`` and a ``dict`` book keyed by float price, the plain-Python way, timed on
  the same frames in the same run; ``ratio_p50`` = ours / baseline (below 1: faster).
- checksum (Kraken, Bitfinex): the checksum computation alone, µs per book update: Kraken's
  as the protocol reports them (``VenueProtocol.checksum_timer``, around the computation); Bitfinex's
  recording carries no checksums, so its public ``book_checksum`` is timed after each frame that
  changed a book, as a ``cs`` message would have it computed.
- loopback: the recording sent by a local WebSocket server (a forked process) to a FeedRunner with
  the Feed's publisher: frames/s including websockets' receive path, beside the rate at which
  websockets alone receives the same frames (``transport_only_frames_per_s``).

Timings include one ``perf_counter_ns`` pair (``timer_overhead_us``).  Recordings: ``--captures
DIR``, else ``$MANTRA_CAPTURES``, else ``../shared/data/captures`` from the current directory
(never found relative to the source tree: an installed package has none around it).
"""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from ..instruments import InstrumentRegistry
from ..runtime.actor import Output, Tracking
from ..runtime.clock import RealClock
from ..runtime.supervisor import die_with_parent  # imported before any fork: it records the forking pid
from ..spine import Ring
from ..spine.messages import BookStatus, L2Update, TradeUpdate
from ..store import cryptofeed as cf
from ..store.capture import CaptureWriter
from ..venues.check import DISCOVER
from ..venues.events import Fetch, Level, Status, Trade
from ..venues.registry import make_protocol

OPTIONS = {"captures", "seconds", "loopback"}
VENUES = ("binance", "bitstamp", "coinbase", "kraken", "bitfinex")
pc = time.perf_counter_ns


DEFAULT_CAPTURES = Path("..", "shared", "data", "captures")


def captures_dir(captures: str | None = None) -> Path:
    """The recordings: ``captures`` (``--captures``), ``$MANTRA_CAPTURES``, or the default from the
    current directory; one that is not a directory is an error naming where it came from."""
    if captures:
        directory, source = Path(captures), "--captures"
    elif os.environ.get("MANTRA_CAPTURES"):
        directory, source = Path(os.environ["MANTRA_CAPTURES"]), "$MANTRA_CAPTURES"
    else:
        directory, source = DEFAULT_CAPTURES, "the default (relative to the current directory)"
    if not directory.is_dir():
        raise FileNotFoundError(f"no recordings directory {directory} (from {source}): give one with "
                                "--captures DIR or $MANTRA_CAPTURES")
    return directory


def _norm(url: str) -> str:
    u = urlsplit(url)
    return f"{u.path.rstrip('/')}?{u.query}"


class Session:
    """One venue's recording: the book connection's frames, what it subscribed to, REST bodies."""

    def __init__(self, venue: str, directory: Path):
        self.venue = venue
        self.bodies: dict[str, bytes] = {}
        best = None
        for path in sorted(directory.glob(f"{venue.upper()}.*")):
            recs = list(cf.read_capture(path))
            for r in recs:
                if r.kind == cf.HTTP:
                    self.bodies.setdefault(_norm(r.url), r.payload.encode() if isinstance(r.payload, str) else r.payload)
            opened = [r.url for r in recs if r.kind == cf.OPEN]
            sent = [_json(r.payload) for r in recs if r.kind == cf.SENT]
            syms, opts = DISCOVER[venue](opened, sent, list(self.bodies))
            frames = [(r.ts, r.payload) for r in recs if r.kind == cf.RECV]
            if syms and (best is None or len(frames) > len(best[2])):
                best = (list(dict.fromkeys(syms)), opts, frames)
        if best is None:
            raise FileNotFoundError(f"no {venue} book recording in {directory}")
        self.symbols, self.opts, self.frames = best

    def protocol(self, **extra):
        return make_protocol(self.venue, InstrumentRegistry(), self.symbols, **{**self.opts, **extra})

    def answer(self, p, ev, ts, publish=None, published: bool = False) -> None:
        """Answer the protocol's fetches from the recording, at once; ``publish`` the events
        (the first batch unless ``published``), drop them otherwise."""
        while ev:
            if publish is not None and not published:
                publish(ev, ts)
            published = False
            fetches = [e.url for e in ev if type(e) is Fetch]
            ev.clear()
            for url in fetches:
                body = self.bodies.get(_norm(url))
                if body is not None:
                    p.on_rest(url, body, ts)


def _json(text):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


# -- measurements ----------------------------------------------------------------------------
def replay(s: Session, publish=None) -> tuple[np.ndarray, np.ndarray, object]:
    """One timed pass: per-frame ns, mask of frames that changed a book, the protocol."""
    p = s.protocol()
    n = len(s.frames)
    times = np.empty(n, dtype=np.int64)
    book = np.zeros(n, dtype=bool)
    p.on_connect(s.frames[0][0])
    s.answer(p, p.events, s.frames[0][0])
    on_frame, ev = p.on_frame, p.events
    gc.collect()
    for i, (ts, data) in enumerate(s.frames):
        t0 = pc()
        on_frame(data, ts)
        if publish is not None and ev:
            for e in ev:  # the runner's scan for control events
                t = type(e)
                if t is Level or t is Trade:
                    continue
            publish(ev, ts)
        t1 = pc()
        times[i] = t1 - t0
        if ev:
            book[i] = any(type(e) is Level for e in ev)
            s.answer(p, ev, ts, publish, published=True)
    return times, book, p


def feed_pass(s: Session, publish, capture=None) -> float:
    """One uninstrumented pass, frames through the protocol and the Feed's publisher (and a
    capture writer, as the runner feeds it): wall seconds."""
    p = s.protocol()
    p.on_connect(s.frames[0][0])
    s.answer(p, p.events, s.frames[0][0], publish)
    on_frame, ev, answer = p.on_frame, p.events, s.answer
    gc.collect()
    t0 = pc()
    for ts, data in s.frames:
        if capture is not None:
            capture.recv(1, ts, data)
        on_frame(data, ts)
        if ev:
            for e in ev:  # the runner's scan for control events
                t = type(e)
                if t is Level or t is Trade:
                    continue
            answer(p, ev, ts, publish)
    return (pc() - t0) / 1e9


def _pct(ns: np.ndarray) -> dict:
    if not len(ns):
        return {}
    us = ns / 1000.0
    return {"p50": round(float(np.percentile(us, 50)), 3), "p99": round(float(np.percentile(us, 99)), 3),
            "mean": round(float(us.mean()), 3)}


def _repeat(fn, seconds: float, min_runs: int = 2):
    out, t_end = [], time.monotonic() + seconds
    while len(out) < min_runs or time.monotonic() < t_end:
        out.append(fn())
        if len(out) >= 200:
            break
    return out


class _Spine:
    """Real rings in a scratch directory and a Feed publishing into them (no runtime around)."""

    def __init__(self):
        from ..feeds.actor import convert

        self.dir = Path(tempfile.mkdtemp(prefix="mantra-bench-feeds-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        track, clock = Tracking(), RealClock()
        self.rings = []
        out = {}
        for port, typ, cap in (("l2", L2Update, 1 << 16), ("trades", TradeUpdate, 1 << 12), ("status", BookStatus, 1 << 10)):
            ring = Ring.create(self.dir / port, typ, cap)
            self.rings.append(ring)
            out[port] = Output(ring.writer(), track, clock, 1, port)
        snap: dict = {}
        l2, trades, status = out["l2"].send, out["trades"].send, out["status"].send

        def publish(events: list, ts: int) -> None:  # Feed.publish: the origin, then convert
            track.origin = ts
            convert(events, snap, l2, trades, status)

        self.publish = publish

    def close(self):
        for r in self.rings:
            r.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def checksum_cost(s: Session, seconds: float) -> dict | None:
    """µs per checksum computed on each book update (Kraken: as verified; Bitfinex: as a ``cs`` would)."""
    samples: list[int] = []
    if s.venue not in ("kraken", "bitfinex"):
        return None

    def one():
        p = s.protocol()
        if s.venue == "kraken":
            p.checksum_timer = lambda iid, ns: samples.append(ns)
        p.on_connect(s.frames[0][0])
        s.answer(p, p.events, 0)
        for ts, data in s.frames:
            p.on_frame(data, ts)
            if s.venue == "bitfinex" and p.events:
                for iid in {e.instrument for e in p.events if type(e) is Level}:
                    t0 = pc()
                    p.book_checksum(iid)
                    samples.append(pc() - t0)
            s.answer(p, p.events, ts)
        return p

    runs = _repeat(one, seconds)
    p = runs[-1]
    ok = sum(st.checksum_ok for st in p.stats.values())
    failed = sum(st.checksum_failed for st in p.stats.values())
    out = {"per_update_us": _pct(np.array(samples, dtype=np.int64)), "updates": len(samples) // len(runs)}
    if s.venue == "kraken":
        out.update(verified_ok=ok, failed=failed)
    else:
        out["note"] = ("recording has no checksums: computed after every frame that changed a book, "
                       "as a cs message would")
    return out


# -- plain-Python baseline -------------------------------------------------------------------
def _apply(book: dict, price, size) -> None:
    p, q = float(price), float(size)
    if q == 0.0:
        book.pop(p, None)
    else:
        book[p] = q


class Baseline:
    """json.loads + {float price: float size} per side: what the frames cost done plainly."""

    def __init__(self, venue):
        self.venue = venue
        self.books: dict = {}
        self.chans: dict = {}
        self.handle = getattr(self, venue)

    def sides(self, key):
        b = self.books.get(key)
        if b is None:
            b = self.books[key] = ({}, {})
        return b

    def binance(self, m):
        d = m.get("data") if isinstance(m, dict) else None
        if d and d.get("e") == "depthUpdate":
            bids, asks = self.sides(d["s"])
            for p, q in d["b"]:
                _apply(bids, p, q)
            for p, q in d["a"]:
                _apply(asks, p, q)

    def bitstamp(self, m):
        if isinstance(m, dict) and m.get("event") == "data" and m.get("channel", "").startswith("diff_order_book_"):
            bids, asks = self.sides(m["channel"])
            for p, q in m["data"]["bids"]:
                _apply(bids, p, q)
            for p, q in m["data"]["asks"]:
                _apply(asks, p, q)

    def coinbase(self, m):
        kind = m.get("type") if isinstance(m, dict) else None
        if kind == "l2update":
            bids, asks = self.sides(m["product_id"])
            for side, p, q in m["changes"]:
                _apply(bids if side == "buy" else asks, p, q)
        elif kind == "snapshot":
            bids, asks = self.sides(m["product_id"])
            bids.clear()
            asks.clear()
            for p, q in m["bids"]:
                _apply(bids, p, q)
            for p, q in m["asks"]:
                _apply(asks, p, q)

    def kraken(self, m):
        if not isinstance(m, list) or len(m) < 4 or not str(m[-2]).startswith("book"):
            return
        bids, asks = self.sides(m[-1])
        for part in m[1:-2]:
            for key, rows in part.items():
                if key in ("a", "as"):
                    for r in rows:
                        _apply(asks, r[0], r[1])
                elif key in ("b", "bs"):
                    for r in rows:
                        _apply(bids, r[0], r[1])

    def bitfinex(self, m):
        if isinstance(m, dict):
            if m.get("event") == "subscribed" and m.get("channel") == "book":
                self.chans[m["chanId"]] = m["symbol"]
            return
        sym = self.chans.get(m[0]) if isinstance(m, list) else None
        if sym is None or m[1] == "hb":
            return
        bids, asks = self.sides(sym)
        rows = m[1] if m[1] and isinstance(m[1][0], list) else [m[1]]
        for p, count, amount in rows:
            book = bids if amount > 0 else asks
            if count == 0:
                book.pop(float(p), None)
            else:
                book[float(p)] = abs(float(amount))


def baseline(s: Session) -> np.ndarray:
    b = Baseline(s.venue)
    handle, loads = b.handle, json.loads
    times = np.empty(len(s.frames), dtype=np.int64)
    gc.collect()
    for i, (_, data) in enumerate(s.frames):
        t0 = pc()
        handle(loads(data))
        times[i] = pc() - t0
    return times


# -- loopback --------------------------------------------------------------------------------
def _serve(frames, bodies, conn) -> None:
    """Child process: a WebSocket server sending ``frames`` to its one client, and REST bodies."""
    import threading

    die_with_parent()  # a benchmark stopped by force leaves nothing running
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from websockets.sync.server import serve

    class Rest(BaseHTTPRequestHandler):
        def do_GET(self):
            body = bodies.get(_norm(self.path))
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *a):
            pass

    rest = ThreadingHTTPServer(("127.0.0.1", 0), Rest)
    threading.Thread(target=rest.serve_forever, daemon=True).start()

    logging.getLogger("websockets").setLevel(logging.WARNING)

    def handler(ws):
        for f in frames:
            ws.send(f)
        try:
            for _ in ws:  # until the client goes
                pass
        except Exception:  # noqa: BLE001
            pass

    with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as srv:
        conn.send((srv.socket.getsockname()[1], rest.server_address[1]))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        conn.recv()  # the parent says when to stop
    rest.shutdown()


def _raw_rate(url: str, n: int) -> int | None:
    """The same frames received by the feed's WebSocket client alone (no protocol, no spine): the
    transport's share."""
    from ..feeds.wsclient import WsClient

    ws = WsClient(url, max_size=None)
    try:
        got, t0 = 0, 0
        while got < n and ws.ended is None:
            ws.read(1.0)
            while ws.msgs:
                ws.msgs.popleft()
                got += 1
                if got == 1:
                    t0 = pc()
        dt = (pc() - t0) / 1e9
    finally:
        ws.close()
    return round((got - 1) / dt) if got > 1 and dt else None


def loopback_rate(s: Session) -> dict:
    from ..feeds.runner import FeedRunner

    frames = [f for _, f in s.frames]
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_serve, args=(frames, s.bodies, child), daemon=True)
    proc.start()
    spine = _Spine()
    try:
        ws_port, rest_port = parent.recv()
        ws, rest = f"ws://127.0.0.1:{ws_port}", f"http://127.0.0.1:{rest_port}"
        raw = _raw_rate(ws, len(frames))
        urls = {"binance": {"ws_url": ws, "rest_url": rest}, "bitstamp": {"ws_url": ws, "rest_url": rest}}
        p = s.protocol(**urls.get(s.venue, {"url": ws}))
        r = FeedRunner(p, spine.publish, ping_interval=None)
        t_end = time.monotonic() + 20
        r.poll(0, 0)  # connect (and subscribe)
        t0 = pc()
        while r.frames < len(frames) and time.monotonic() < t_end:
            r.poll(1024, 0.05)
        dt = (pc() - t0) / 1e9
        r.close()
        # Small recordings are over before the rate means much (connection set-up, REST snapshots).
        rate = round(r.frames / dt) if r.frames >= 1000 else None
        return {"frames": r.frames, "seconds": round(dt, 4), "frames_per_s": rate, "fetches": r.fetches,
                "transport_only_frames_per_s": raw if rate else None}
    finally:
        parent.send("stop")
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
        spine.close()


# -- run -------------------------------------------------------------------------------------
def _timer_overhead() -> float:
    a = np.empty(100_000, dtype=np.int64)
    for i in range(len(a)):
        t0 = pc()
        a[i] = pc() - t0
    return round(float(np.percentile(a, 50)) / 1000, 3)


def run(captures: str | None = None, seconds: float = 1.5, loopback: bool = True) -> dict:
    try:
        directory = captures_dir(captures)
    except FileNotFoundError as e:
        raise SystemExit(f"mantra bench feeds: {e}") from None
    t_start = time.monotonic()
    out = {"bench": "feeds", "captures": str(directory), "timer_overhead_us": _timer_overhead(), "venues": {}}
    do_loopback = loopback  # the option; loopback_rate() measures
    for venue in VENUES:
        try:
            s = Session(venue, directory)
        except FileNotFoundError as e:
            out["venues"][venue] = {"skipped": str(e)}
            continue
        runs = _repeat(lambda: replay(s), seconds)
        times = np.concatenate([t for t, _, _ in runs])
        book = np.concatenate([b for _, b, _ in runs])
        p = runs[-1][2]
        spine = _Spine()
        try:
            fruns = _repeat(lambda: replay(s, spine.publish), seconds)
            fwall = _repeat(lambda: feed_pass(s, spine.publish), seconds / 2)
            with CaptureWriter(spine.dir / "capture", venue) as cap:
                cwall = _repeat(lambda: feed_pass(s, spine.publish, cap), seconds / 2)
            cratio = cap.bytes_in / max(cap.bytes_out, 1)
        finally:
            spine.close()
        ftimes = np.concatenate([t for t, _, _ in fruns])
        fbook = np.concatenate([b for _, b, _ in fruns])
        btimes = np.concatenate(_repeat(lambda: baseline(s), seconds / 2))
        levels = sum(st.messages for st in p.stats.values())
        v = {
            "frames": len(s.frames), "book_frames": int(runs[-1][1].sum()), "book_messages": levels,
            "malformed": p.malformed,
            "synced": sum(1 for st in p.status.values() if st in (Status.SYNCED, Status.UNVERIFIED)), "books": len(p.books),
            "decode_apply_us": {"all": _pct(times), "book_frames": _pct(times[book])},
            "feed_us": {"all": _pct(ftimes), "book_frames": _pct(ftimes[fbook])},
            "feed_frames_per_s": round(len(s.frames) / float(np.median(fwall))),
            "feed_with_capture_frames_per_s": round(len(s.frames) / float(np.median(cwall))),
            "capture_compression": round(cratio, 1),
            "baseline_us": {"all": _pct(btimes), "book_frames": _pct(btimes[np.resize(book[:len(s.frames)], len(btimes))])},
        }
        v["ratio_p50"] = {k: round(v["decode_apply_us"][k]["p50"] / v["baseline_us"][k]["p50"], 3)
                          for k in ("all", "book_frames") if v["baseline_us"][k]}
        ck = checksum_cost(s, seconds / 2)
        if ck:
            v["checksum"] = ck
        if do_loopback:
            v["loopback"] = loopback_rate(s)
        out["venues"][venue] = v
    out["seconds"] = round(time.monotonic() - t_start, 1)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
