"""`mantra bench ui`: the realtime UI's server, page and live actor, on a big view and on the demo.

Data: one instrument with three series of ``messages`` points each (default 5 M), built through the
real ``View`` and ``Series`` code:

- ``top/<inst>`` (bid, ask): L2Update records of a random walk (a snapshot, then one record per
  change of the top: the touch level removed or a new one added, a tick at a time, on fixed-point
  integers) filed with ``View.ingest`` in batches of 8192 records, as the live actor drains them;
- ``trades/<inst>``: TradeUpdate records at the bid or ask of their time, filed with ``View.ingest``;
- ``fills/<inst>``: appended to the view's series directly (``Series.append``, the columns
  ``View`` gives fills): filing 5 M fills would also build 5 M-point position and PnL series
  through object-integer cash sums, which no session has.

Printed:

- ``points`` (per series), ``series`` (3);
- ``ingest_mrec_s``: millions of L2Update records per second filed by ``View.ingest`` (C books'
  tops, the top series' change filter and appends, per-publisher latency histograms);
  ``ingest_trades_mrec_s``: the same for the TradeUpdate records; ``view_build_s``: generating
  and filing the three series;
- ``decimate_ms``: the server's time for one full-range answer of the top series at 1500 px, as
  ``Source.series`` makes it (a snapshot under the server's lock, then min/max decimation from
  block extremes and binary encoding outside it, no HTTP), p50 of 20; ``decimate_zoom_ms``: the
  same for a 10 % range (20 random positions); ``decimate_points_ms``: the full-range answer of
  the trades series (points: the real rows at each pixel column's extremes);
- ``first_draw_ms``: in Debian's chromium driven by Playwright (a 1600 x 1000 viewport), against
  the real ``UiServer`` on 127.0.0.1, the page's own ``__m.first_draw_ms`` (``performance.now()``
  when the price panel's first draw with data completes, from navigation start): median of
  ``LOADS`` (5) fresh page loads (``first_draw_cold_ms``: the run's first, the browser's first
  page);
- ``zoom_redraw_p50_ms`` / ``_p99_ms``: the page's ``__m.redraws`` over ``ZOOMS`` programmatic
  zooms and pans of the price panel (``__ui.zoom``, the wheel's path: zoom-ins, zoom-outs and pans
  from the whole range down to about a second, each awaited before the next), from the zoom (the
  page shows the data it has, rescaled, at once) to the end of the draw with the new data (every
  series of the panel re-queried, in one request); ``zoom_redraw_max_ms``;
  ``zoom_painted_p50_ms`` / ``_p99_ms``: to the end of the frame that shows it (the canvas
  rasterised: ``requestAnimationFrame`` then a task); ``zoom_queued_p50_ms``, ``zoom_fetch_p50_ms``,
  ``zoom_parse_p50_ms``, ``zoom_draw_p50_ms``: where a redraw's time goes (before the request
  leaves, the round trip, decoding the answer, building and drawing); ``answers_decimated`` / ``answers_raw``: how many of the top series'
  answers were each; ``plot_width_px``: the width the page asks for (its plot's CSS pixels);
  ``page_errors``: the page's console errors meanwhile (the first five);
- ``browser_heap_mb``: the page's JS heap in use after those, after a garbage collection (CDP
  ``Performance.getMetrics`` JSHeapUsedSize);
- ``bytes_per_query``: median bytes of the top series' answers the page asked for meanwhile;
  ``bytes_per_redraw``: median bytes of every answer one zoom fetched; ``server_query_p50_ms``:
  the server's time per series answer the page asked for (``Source.series``);
- baseline, in the same run: ``undecimated_bytes`` / ``undecimated_encode_ms``: the whole top
  series as one undecimated answer (``Series.query`` at the series' length, then ``encode``: what
  sending every point would cost before the network and the plot), ``bytes_ratio`` =
  undecimated_bytes / bytes_per_query;
- ``ui_cpu_pct``: the demo's system (five venue simulators at the demo's rate, ``demo.build``:
  feeds, models, overseer, order handlers, persister, telemetry; its own UI actor left out) runs
  under a Supervisor in a child process; ``mantra ui SYSTEM`` attaches the UI actor to it from
  another process, and a chromium page stays open on it (polling the API as a user's does, the
  market maker's instrument selected).  After a warm-up, that process's CPU time (user + system,
  all its threads, from ``/proc``) over ``seconds`` of wall time (``ui_cpu_window_s``), as % of
  one core.  (The demo's own UI actor shares a process with the persister and telemetry: its
  share could not be told apart.)  ``demo_records_s``: the records per second the system's
  queues carried meanwhile; ``page_requests_s``: the page's requests per second;
  ``live_page_errors``: its console errors;
- ``ui_lost``: records the UI's readers lost (its consumer entries in the rings; must be 0), and
  ``ui_lost_reported``, what its API says it lost; ``other_consumers_lost``: what the
  ``other_consumers`` registered consumer entries (persister, models, overseer, handlers, in
  every queue) lost meanwhile (``Ring.consumers()``);
- ``open_10m_s``: seconds ``open_recording`` takes on a recording of 10 M L2Update records of four
  instruments (a quarter of them moving the top, the rest deeper levels), written with
  ``SegmentWriter`` as the persister writes (zstd level 9, 65536-record chunks, system.json and
  instruments.json beside), in a temporary directory removed after; ``recording_records``,
  ``recording_top_points`` (the four top series' points) and ``recording_damage`` as opened;
- ``targets`` and ``met``: first_draw_ms ≤ 1000, zoom_redraw_p50_ms ≤ 50, ui_cpu_pct ≤ 10 (and
  ``ui_lost`` = 0).

The demo's system runs first (its Supervisor is forked before this process starts a browser or
server threads), then the big view, then the recording.
"""

from __future__ import annotations

import functools
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from ..instruments import InstrumentRegistry
from ..runtime import paths
from ..runtime.supervisor import die_with_parent  # imported before any fork
from ..spine.messages import BookStatus, L2Update, TradeUpdate
from ..store.segments import SegmentWriter
from ..venues.events import Status

OPTIONS = {"messages", "seconds"}
TARGETS = {"first_draw_ms": 1000, "zoom_redraw_p50_ms": 50, "ui_cpu_pct": 10}
WIDTH = 1500
ZOOMS = 40
LOADS = 5
RECORDING = 10_000_000
BATCH = 8192
T0 = 1_767_225_600_000_000_000  # 2026-01-01 UTC
CHROMIUM = os.environ.get("MANTRA_CHROMIUM") or shutil.which("chromium") or "chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1600, "height": 1000}
FORK = mp.get_context("fork")


# -- data ---------------------------------------------------------------------------------------
def top_walk(n: int, rng, iid: int, start: int, spread: int = 1, gap_ns: int = 1_000_000, deep: float = 0.0,
             publisher: int = 3) -> np.ndarray:
    """L2Update records of one instrument: a snapshot (a dense ladder of one-tick levels on each
    side, deep enough for the walk), then ``n - 1`` records of a random walk of the mid, a tick per
    step, each step two records that each change the top (up: the best ask removed, then a bid a
    tick higher added; down: the mirror), so the top series has ``n`` points.  With ``deep`` > 0,
    that share of the ``n - 1`` records are size changes of levels behind the touch instead (the
    top unchanged).  Times: from T0, uniform gaps of ``gap_ns`` on average; origin a few µs
    before publish."""
    nd = int((n - 1) * deep)
    m = n - 1 - nd  # the records after the snapshot that move the top
    steps = rng.choice(np.array([-1, 1], np.int64), (m + 1) // 2)
    mid = np.concatenate(([0], np.cumsum(steps)))
    lo, hi = int(mid.min()), int(mid.max())
    bids = np.arange(start + lo - 60, start + 1)
    asks = np.arange(start + spread, start + spread + hi + 61)
    snap = np.zeros(len(bids) + len(asks), L2Update.DTYPE)
    snap["side"][:len(bids)], snap["side"][len(bids):] = 1, -1
    snap["price"] = np.concatenate([bids, asks])
    snap["size"] = rng.integers(1, 100_000, len(snap))
    snap["flags"] = 2
    snap["flags"][0] |= 4
    snap["flags"][-1] |= 1
    k = np.arange(m) // 2
    first = np.arange(m) % 2 == 0
    up = steps[k] > 0
    before, after = mid[k], mid[k + 1]
    walk = np.zeros(m, L2Update.DTYPE)
    walk["side"] = np.where(first == up, -1, 1)
    walk["price"] = np.where(first, np.where(up, before + spread, before), np.where(up, after, after + spread)) + start
    walk["size"] = np.where(first, 0, rng.integers(1, 100_000, m))
    walk["flags"] = 1
    if nd:
        # deep updates at random places in the walk, a few ticks behind the touch of their time
        at = np.sort(rng.integers(0, m + 1, nd))
        mid_at = np.where(at > 0, after[np.maximum(at - 1, 0)], 0) if m else np.zeros(nd, np.int64)
        side = rng.choice(np.array([1, -1], np.int8), nd)
        off = rng.integers(2, 50, nd)
        dp = np.zeros(nd, L2Update.DTYPE)
        dp["side"] = side
        dp["price"] = start + mid_at + np.where(side > 0, -off, spread + off)
        dp["size"] = rng.integers(1, 100_000, nd)
        dp["flags"] = 1
        walk = np.insert(walk, at, dp)
    recs = np.concatenate([snap, walk])
    recs["instrument"] = iid
    recs["publish"] = T0 + np.cumsum(rng.integers(1, 2 * gap_ns, len(recs)))
    recs["publish"][:len(snap)] = recs["publish"][0]
    recs["exch_ts"] = recs["publish"] - 2_000_000
    recs["origin"] = recs["publish"] - rng.integers(300, 3000, len(recs)).astype(np.uint64)
    recs["publisher"] = publisher
    return recs


def _registry() -> InstrumentRegistry:
    reg = InstrumentRegistry()
    reg.add("binance", "BTCUSDT", price_scale=2, size_scale=5, base="BTC", quote="USDT")
    reg.add("binance", "ETHUSDT", price_scale=2, size_scale=4, base="ETH", quote="USDT")
    reg.add("kraken", "BTC/USD", price_scale=1, size_scale=8, base="BTC", quote="USD")
    reg.add("coinbase", "BTC-USD", price_scale=2, size_scale=8, base="BTC", quote="USD")
    return reg


def _at_touch(top, t: np.ndarray, side: np.ndarray, taker: bool) -> np.ndarray:
    """Price at the touch at times ``t``: a taker buy pays the ask, a maker buy rests on the bid."""
    i = np.maximum(np.searchsorted(top.t[:top.n], t, "right") - 1, 0)
    bid, ask = top.v[0, :top.n][i], top.v[1, :top.n][i]
    return np.where((side > 0) == taker, ask, bid)


def build_view(n: int, seed: int = 1):
    """The view of ``n``-point top, trades and fills series of binance BTCUSDT (id 1)."""
    from ..ui.series import POINTS
    from ..ui.view import View

    reg = _registry()
    view = View(reg, {3: "feed_binance", 5: "overseer", 7: "orders_binance"})
    rng = np.random.default_rng(seed)
    iid = 1
    l2 = top_walk(n, rng, iid, 50_000_00)
    st = np.zeros(1, BookStatus.DTYPE)
    st["instrument"], st["status"], st["publish"], st["publisher"] = iid, int(Status.SYNCED), l2["publish"][0], 3
    view.ingest("book_status", st, BookStatus)
    t = time.perf_counter()
    for i in range(0, len(l2), BATCH):
        view.ingest("l2", l2[i:i + BATCH], L2Update)
    l2_s = time.perf_counter() - t
    top = view.series[f"top/{iid}"]
    lo, hi = top.t_range
    nl2 = len(l2)
    del l2
    # trades spread over the same time, at the touch their aggressor takes
    tr = np.zeros(n, TradeUpdate.DTYPE)
    tr["publish"] = np.sort(rng.integers(lo, hi, n))
    tr["side"] = rng.choice(np.array([1, -1], np.int8), n)
    tr["price"] = _at_touch(top, tr["publish"].astype(np.int64), tr["side"], True)
    tr["size"] = rng.integers(1, 50_000, n)
    tr["trade_id"] = np.arange(1, n + 1)
    tr["instrument"], tr["publisher"] = iid, 3
    tr["exch_ts"] = tr["publish"] - 2_000_000
    tr["origin"] = tr["publish"] - rng.integers(300, 3000, n).astype(np.uint64)
    t = time.perf_counter()
    for i in range(0, n, BATCH):
        view.ingest("trades", tr[i:i + BATCH], TradeUpdate)
    tr_s = time.perf_counter() - t
    del tr
    ft = np.sort(rng.integers(lo, hi, n))
    side = rng.choice(np.array([1, -1], np.int8), n)
    inst = reg[iid]
    view._series(f"fills/{iid}", POINTS, [("price", inst.price_scale), ("size", inst.size_scale), ("side", 0)]).append(
        ft, _at_touch(top, ft, side, False), rng.integers(1, 1000, n), side)
    return view, iid, {"ingest_mrec_s": round(nl2 / l2_s / 1e6, 2), "ingest_trades_mrec_s": round(n / tr_s / 1e6, 2)}


# -- server side --------------------------------------------------------------------------------
def _p50_ms(f, k: int) -> float:
    ts = []
    for i in range(k):
        t = time.perf_counter_ns()
        f(i)
        ts.append(time.perf_counter_ns() - t)
    return round(float(np.median(ts)) / 1e6, 3)


def server_side(view, iid: int) -> dict:
    from ..ui.server import Source

    src = Source(view, "bench")
    key = f"top/{iid}"
    s = view.series[key]
    lo, hi = s.t_range
    rng = np.random.default_rng(2)
    starts = rng.integers(lo, hi - (hi - lo) // 10, 20)
    full = _p50_ms(lambda i: src.series(key, None, None, WIDTH), 20)
    points = _p50_ms(lambda i: src.series(f"trades/{iid}", None, None, WIDTH), 20)
    zoom = _p50_ms(lambda i: src.series(key, int(starts[i]), int(starts[i]) + (hi - lo) // 10, WIDTH), 20)
    raw = src.series(key, None, None, s.n)
    enc = _p50_ms(lambda i: src.series(key, None, None, s.n), 3)
    return {"decimate_ms": full, "decimate_zoom_ms": zoom, "decimate_points_ms": points, "undecimated_bytes": len(raw),
            "undecimated_encode_ms": enc}


def _pct(a, q) -> float:
    return round(float(np.percentile(np.asarray(a, np.float64), q)), 2)


# -- the page -----------------------------------------------------------------------------------
class _Page:
    def __init__(self, browser, url: str, ready_s: float = 60):
        self.errors: list[str] = []
        self.requests = 0
        self.page = browser.new_page(viewport=VIEWPORT)
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", self._count)
        self.page.goto(url)
        self.page.wait_for_function("window.__ui && window.__ui.ready === true", timeout=ready_s * 1000)

    def _count(self, _req) -> None:
        self.requests += 1

    def js(self, expr, arg=None):
        return self.page.evaluate(expr, arg)

    def heap_mb(self) -> float:
        cdp = self.page.context.new_cdp_session(self.page)
        try:
            cdp.send("HeapProfiler.collectGarbage")
            cdp.send("Performance.enable")
            m = {x["name"]: x["value"] for x in cdp.send("Performance.getMetrics")["metrics"]}
            return round(m["JSHeapUsedSize"] / 2**20, 1)
        finally:
            cdp.detach()

    def close(self) -> None:
        self.page.close()


def _zooms(full: tuple[float, float], n: int, seed: int = 3) -> list[tuple[float, float]]:
    """Windows (epoch s) from the whole range: zoom-ins, pans and zoom-outs, each a change."""
    rng = np.random.default_rng(seed)
    lo, hi = full
    a, b = lo, hi
    out = []
    while len(out) < n:
        w = b - a
        op = rng.choice(["in", "out", "pan"], p=[0.45, 0.25, 0.3])
        if w >= (hi - lo) * 0.999:
            op = "in"
        elif w < 2.0:
            op = "out"
        if op == "in":
            c = a + w * rng.uniform(0.2, 0.8)
            w2 = w * rng.uniform(0.1, 0.4)
            na, nb = c - w2 / 2, c + w2 / 2
        elif op == "out":
            c = (a + b) / 2
            w2 = min(w * rng.uniform(2, 6), hi - lo)
            na, nb = c - w2 / 2, c + w2 / 2
        else:
            d = w * rng.uniform(0.3, 0.8) * rng.choice([-1, 1])
            if a + d < lo or b + d > hi:
                d = -d
            na, nb = a + d, b + d
        if na < lo:
            na, nb = lo, lo + (nb - na)
        if nb > hi:
            na, nb = hi - (nb - na), hi
        na, nb = max(na, lo), min(nb, hi)
        if abs(na - a) + abs(nb - b) < 1e-6 * (hi - lo):
            continue
        a, b = na, nb
        out.append((a, b))
    return out


def _quiet(handle_error, request, client_address) -> None:
    """A page closed while its keep-alive connection waited for the next request: not an error
    (the server would print the reset's traceback)."""
    if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
        handle_error(request, client_address)


def browser_side(browser, view, iid: int) -> dict:
    from ..ui.server import Source, UiServer

    answers: list = []  # (key, bytes, ns) of every series answer the page asked for

    class Timed(Source):
        def series(self, key, t0, t1, width):
            t = time.perf_counter_ns()
            body = super().series(key, t0, t1, width)
            answers.append((key, len(body), time.perf_counter_ns() - t, width))
            return body

    server = UiServer(Timed(view, "bench"), "127.0.0.1", 0)
    server.httpd.handle_error = functools.partial(_quiet, server.httpd.handle_error)
    server.start()
    pages, errors = [], []
    try:
        draws = []
        for _ in range(LOADS):
            p = _Page(browser, server.url)
            draws.append(p.js("window.__m.first_draw_ms"))
            errors += p.errors
            pages.append(p)
            if len(pages) > 1:
                pages.pop(0).close()
        page = pages[-1]
        page.js("(id) => window.__ui.select(id)", iid)
        page.page.wait_for_function("(k) => window.__ui.lastRange && window.__ui.lastRange.key === k",
                                    arg=f"top/{iid}", timeout=10_000)
        page.page.wait_for_function("window.__ui.ready === true", timeout=10_000)
        lo, hi = (x / 1e9 for x in view.series[f"top/{iid}"].t_range)
        windows = _zooms((lo, hi), ZOOMS)
        widths, per_zoom, top_answers, dec = [], [], [], [0, 0]
        k0 = page.js("window.__m.redraws.length")
        for a, b in windows:
            k = page.js("window.__m.redraws.length")
            n0 = len(answers)
            page.js("([a, b]) => window.__ui.zoom(a, b)", [a, b])
            page.page.wait_for_function("(k) => window.__m.redraws.length > k", arg=k, timeout=15_000)
            got = answers[n0:]
            per_zoom.append(sum(x[1] for x in got))
            for key, nbytes, ns, width in got:
                if key == f"top/{iid}":
                    top_answers.append(nbytes)
                    widths.append(width)
            last = page.js("window.__ui.lastRange")
            if last and last.get("key") == f"top/{iid}":
                dec[0 if last.get("decimated") else 1] += 1
        redraws = page.js("window.__m.redraws")[k0:]
        page.page.wait_for_function("(k) => window.__m.painted.length >= k", arg=k0 + len(redraws), timeout=5_000)
        painted = page.js("window.__m.painted")[k0:]
        phases = page.js("window.__m.phases")[-len(redraws):]
        heap = page.heap_mb()
        errors += page.errors
        zoom_ns = [x[2] for x in answers]
    finally:
        for p in pages:
            p.close()
        server.close()
    bpq = int(np.median(top_answers)) if top_answers else None
    return {"first_draw_ms": round(float(np.median(draws)), 1), "first_draw_cold_ms": round(draws[0], 1),
            "zooms": len(redraws), "zoom_redraw_p50_ms": _pct(redraws, 50), "zoom_redraw_p99_ms": _pct(redraws, 99),
            "zoom_redraw_max_ms": round(max(redraws), 1), "zoom_painted_p50_ms": _pct(painted, 50),
            "zoom_painted_p99_ms": _pct(painted, 99),
            **{f"zoom_{k}_p50_ms": _pct([p[k] for p in phases], 50) for k in ("queued", "fetch", "parse", "draw")},
            "answers_decimated": dec[0], "answers_raw": dec[1],
            "plot_width_px": int(np.median(widths)) if widths else None,
            "browser_heap_mb": heap, "bytes_per_query": bpq, "bytes_per_redraw": int(np.median(per_zoom)),
            "server_query_p50_ms": round(float(np.median(zoom_ns)) / 1e6, 3), "page_errors": errors[:5]}


# -- the demo, live -----------------------------------------------------------------------------
def _supervise(spec, log_path: str) -> None:
    """The child that runs the demo's system (its Supervisor forks the actor processes)."""
    die_with_parent()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    import logging

    from ..runtime.supervisor import Supervisor

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    Supervisor(spec).run()


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _wait(cond, timeout: float, every: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(every)
    return cond()


class DemoSystem:
    """The demo's system under a Supervisor in a child process, without its own UI actor."""

    def __init__(self, work: Path):
        from .. import demo
        from ..runtime.config import parse

        self.work = work
        self.name = f"benchui{os.getpid()}"
        self.sims, urls = demo.start_simulators(40.0, 600.0, work / "simulators.log")
        self.proc = None
        try:
            doc = demo.build(urls, work / "session")
            doc["system"]["name"] = self.name
            doc["actors"].pop("ui", None)
            for p in doc["processes"].values():
                p["actors"] = [a for a in p["actors"] if a != "ui"]
            self.spec = parse(doc)
            self.mm = demo.MM.split(":", 1)
            self.proc = FORK.Process(target=_supervise, args=(self.spec, str(work / "system.log")), daemon=False)
            self.proc.start()
        except BaseException:
            self.stop()
            raise

    @property
    def dir(self) -> Path:
        return paths.system_dir(self.name)

    def stop(self) -> None:
        from ..sim import stop_spawned
        from ..spine.shm import remove_system

        if self.proc is not None and self.proc.pid is not None:
            if self.proc.is_alive():
                os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.join(40)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        stop_spawned(self.sims)
        if self.dir.exists():
            remove_system(self.name)

    def log_tail(self) -> str:
        try:
            return (self.work / "system.log").read_text()[-2000:]
        except OSError:
            return ""


def live_side(browser, system: DemoSystem, seconds: float) -> dict:
    from ..spine import Ring

    if not _wait(lambda: paths.manifest(system.dir).exists() and system.proc.is_alive(), 30):
        raise RuntimeError(f"the demo's system did not start: {system.log_tail()}")
    man = json.loads(paths.manifest(system.dir).read_text())
    rings = {q: Ring.attach(paths.queue(system.dir, q)) for q in man["queues"]}
    ui = page = None
    try:
        if not _wait(lambda: rings["l2"].count() > 1000, 60):
            raise RuntimeError(f"the demo's feeds published nothing: {system.log_tail()}")
        ui = subprocess.Popen([sys.executable, "-m", "mantra.cli", "ui", system.name], stdout=subprocess.PIPE,
                              stderr=open(system.work / "ui.log", "ab"), text=True, start_new_session=True,
                              preexec_fn=functools.partial(die_with_parent, os.getpid()))
        url = ui.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"`mantra ui` printed no URL: {(system.work / 'ui.log').read_text()[-2000:]}")
        page = _Page(browser, url)
        with urllib.request.urlopen(url + "api/meta", timeout=10) as r:
            meta = json.loads(r.read())
        venue, symbol = system.mm
        iid = next((i["id"] for i in meta["instruments"] if i["venue"] == venue and i["symbol"] == symbol), None)
        if iid is not None:
            page.js("(id) => window.__ui.select(id)", iid)
        page.page.wait_for_timeout(3000)  # warm-up: the rings' backlog read, the panels drawn
        counts0 = sum(r.count() for r in rings.values())
        req0, c0, w0 = page.requests, _cpu_s(ui.pid), time.monotonic()
        page.page.wait_for_timeout(seconds * 1000)  # (the browser's events are handled meanwhile)
        c1, w1 = _cpu_s(ui.pid), time.monotonic()
        counts1 = sum(r.count() for r in rings.values())
        reqs = page.requests - req0
        with urllib.request.urlopen(url + "api/state", timeout=10) as r:
            state = json.loads(r.read())
        ui_lost = other_lost = 0
        labels = []
        for q, ring in rings.items():
            for c in ring.consumers():
                if c["pid"] == ui.pid:
                    ui_lost += c["lost"]
                elif c["alive"]:
                    other_lost += c["lost"]
                    labels.append(f"{q}:{c['label']}")
        errors = page.errors
        alive = system.proc.is_alive()
    finally:
        if page is not None:
            page.close()
        if ui is not None:
            if ui.poll() is None:
                ui.send_signal(signal.SIGINT)
            try:
                ui.wait(10)
            except subprocess.TimeoutExpired:
                ui.kill()
                ui.wait()
            ui.stdout.close()
        for r in rings.values():
            r.close()
    if not alive:
        raise RuntimeError(f"the demo's system stopped during the measurement: {system.log_tail()}")
    wall = w1 - w0
    return {"ui_cpu_pct": round(100 * (c1 - c0) / wall, 2), "ui_cpu_window_s": round(wall, 1),
            "demo_records_s": round((counts1 - counts0) / wall), "page_requests_s": round(reqs / wall, 1),
            "ui_lost": ui_lost, "ui_lost_reported": state.get("ui", {}).get("lost"),
            "other_consumers_lost": other_lost, "other_consumers": len(labels), "live_page_errors": errors[:5]}


# -- a recording --------------------------------------------------------------------------------
def write_recording(root: Path, n: int, seed: int = 4) -> None:
    """``n`` L2Update records of the registry's four instruments, interleaved in time, as the
    persister records them."""
    reg = _registry()
    rng = np.random.default_rng(seed)
    ids = sorted(reg.by_id)
    who = rng.integers(0, len(ids), n)
    recs = np.zeros(n, L2Update.DTYPE)
    for k, iid in enumerate(ids):
        sel = who == k
        cnt = int(sel.sum())
        recs[sel] = top_walk(cnt, rng, iid, [50_000_00, 3_000_00, 500_000, 50_000_00][k], deep=0.75,
                             publisher=3 + k)[:cnt]
    recs["publish"] = T0 + np.cumsum(rng.integers(1, 500_000, n))  # one queue: its publish order
    recs["origin"] = recs["publish"] - rng.integers(300, 3000, n).astype(np.uint64)
    recs["exch_ts"] = recs["publish"] - 2_000_000
    w = SegmentWriter(root / "l2" / f"{int(recs['publish'][0])}.seg", "l2", L2Update, level=9)
    for i in range(0, n, 65536):
        w.append(recs[i:i + 65536])
    w.close()
    reg.save(root / "instruments.json")
    actors = {f"feed_{inst.venue}_{inst.id}": {"id": 2 + inst.id} for inst in reg.by_id.values()}
    (root / "system.json").write_text(json.dumps({
        "name": "benchrec", "mode": "live", "queues": {"l2": {"type": "L2Update", "capacity": 1 << 16, "mpmc": True}},
        "actors": actors}, indent=1))


def recording_side(work: Path) -> dict:
    from ..ui.recording import open_recording

    root = work / "recording"
    write_recording(root, RECORDING)
    t = time.perf_counter()
    view, info = open_recording(root)
    dt = time.perf_counter() - t
    pts = sum(s.n for k, s in view.series.items() if k.startswith("top/"))
    del view
    shutil.rmtree(root, ignore_errors=True)
    return {"open_10m_s": round(dt, 2), "recording_records": info["records"], "recording_top_points": pts,
            "recording_damage": info["damage"]}


# -- the run ------------------------------------------------------------------------------------
def run(messages: int = 5_000_000, seconds: float = 10) -> dict:
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        raise RuntimeError(f"chromium not found ({CHROMIUM}): install Debian's chromium or set MANTRA_CHROMIUM")
    out: dict = {"bench": "ui"}
    work = Path(tempfile.mkdtemp(prefix="mantra-bench-ui-"))
    system = None
    try:
        system = DemoSystem(work)  # forked first: before this process has a browser or threads
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                live = live_side(browser, system, seconds)
                system.stop()
                system = None
                t = time.perf_counter()
                view, iid, ingest = build_view(messages)
                build_s = time.perf_counter() - t
                out.update(points=messages, series=3, **ingest, view_build_s=round(build_s, 1))
                out.update(server_side(view, iid))
                out.update(browser_side(browser, view, iid))
                del view
            finally:
                browser.close()
        out.update(live)
        out.update(recording_side(work))
    finally:
        if system is not None:
            system.stop()
        shutil.rmtree(work, ignore_errors=True)
    out["bytes_ratio"] = round(out["undecimated_bytes"] / out["bytes_per_query"], 1) if out.get("bytes_per_query") \
        else None
    out["targets"] = dict(TARGETS)
    out["met"] = {k: out.get(k) is not None and out[k] <= v for k, v in TARGETS.items()}
    out["met"]["ui_lost"] = out.get("ui_lost") == 0
    return out
