"""`mantra demo`: the whole engine live on loopback, then the same session replayed as a backtest.

Five venue simulators run as child processes (never threads of this process: the supervisor forks
its actor processes, and a fork must not copy live server threads).  The system is built here:
the five real feeds -> market makers on Binance, Kraken and Bitstamp BTC and a cross-venue model
(Coinbase BTC-USD vs Bitfinex tBTCUSD) -> the overseer -> the real account handlers of all five
venues (``mode = "sim"``: real orders, signed, on the simulators' order APIs and user streams; one
parked process serves the five), a persister recording every queue, and telemetry.  Bitstamp has
no amend: the overseer replaces its quotes by cancel and new (``amend = false`` for that venue).
The realtime UI serves the running system (its URL is printed first); a status block is
printed every second; at the end the recorded session is summarised and replayed through the same
system on a simulated clock.

Instrument ids: the traded instruments, with the simulators' exact increments, are the system's
``instruments``, registered when the spine is created, before any actor process starts.  Feeds
then find them there (rather than registering bare specs without base/quote), and the trading
actors take ``instruments = []``: "whatever the system registered".
"""

from __future__ import annotations

import importlib
import json
import socket
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from . import backtest
from .instruments import InstrumentRegistry
from .runtime import paths
from .runtime.config import parse
from .runtime.supervisor import Supervisor
from .spine import Ring, shm
from .spine.messages import OrderAction
from .spine.shm import remove_system
from .store import segments
from .venues.events import Status
from .execution import secrets
from .sim import account_options, feed_options, spawn, stop_spawned

SYSTEM = "demo"
VENUES = ("binance", "bitstamp", "coinbase", "kraken", "bitfinex")
MM = "binance:BTCUSDT"
MM_KRAKEN = "kraken:BTC/USD"  # a second market maker: both venues' handlers place, amend, cancel, fill
MM_BITSTAMP = "bitstamp:btcusd"  # a third, on a venue without amend: cancel and new
XV = ("coinbase:BTC-USD", "bitfinex:tBTCUSD")
TRADED = VENUES  # each with its account handler against its simulator
# the simulators' accounts; the same terms for the mock exchange when the session is replayed
BALANCES = {"binance": {"BTC": "0.5", "USDT": "20000"}, "kraken": {"BTC": "0.5", "USD": "20000"},
            "bitstamp": {"BTC": "0.5", "USD": "20000"}, "coinbase": {"BTC": "0.5", "USD": "20000"},
            "bitfinex": {"BTC": "0.5", "USD": "20000"}}
FEES = {"binance": (10, 10), "kraken": (16, 26), "bitstamp": (30, 40), "coinbase": (40, 60),
        "bitfinex": (10, 20)}  # maker, taker bps: the simulators' schedules
# The overseer's terms per venue, within the venues' own limits: Binance 50 orders / 10 s, Kraken's
# decaying per-pair counter (Starter: 60, -1/s), Bitstamp 400 requests/s, Coinbase 30 private
# requests/s, Bitfinex 1000 orders / 5 min.  Bitstamp cannot amend: its quotes move by cancel + new.
OVERSEER_VENUES = {"binance": {"amend": True, "rate": 4, "rate_window_ms": 1000},
                   "kraken": {"amend": True, "rate": 1, "rate_window_ms": 2000},
                   "bitstamp": {"amend": False, "rate": 4, "rate_window_ms": 1000},
                   "coinbase": {"amend": True, "rate": 3, "rate_window_ms": 1000},
                   "bitfinex": {"amend": True, "rate": 3, "rate_window_ms": 1000}}
MODELLED = (MM, MM_KRAKEN, MM_BITSTAMP, *XV)
# The cross-venue model is told trading is free and to take a pair up to 5 bps short of an edge:
# the simulators' synthetic markets all hover around one price (Coinbase's in cents, Bitfinex's in
# dollars), so a real edge is rare, and the demo should show both venues' order paths taking
# liquidity.  A real configuration asks for more than the fees.
XV_MIN_EDGE_BPS = -5
QUEUES = {"l2": ("L2Update", 1 << 16, True), "trades": ("TradeUpdate", 1 << 14, True),
          "book_status": ("BookStatus", 1 << 12, True), "requests": ("OrderRequest", 1 << 14, False),
          "updates": ("OrderUpdate", 1 << 14, True), "fills": ("Fill", 1 << 14, True),
          "balances": ("BalanceUpdate", 1 << 14, True)}  # one handler per venue publishes answers


# -- simulators -------------------------------------------------------------------------------
def start_simulators(rate: float, lifetime: float, log_path: Path) -> tuple[list, dict]:
    """One simulator process per venue (seeds 1..5); see ``sim.spawn``.  The traded venues' simulators
    and handlers share a key through the environment (``secrets.for_simulator``)."""
    for v in TRADED:
        secrets.for_simulator(v)
    return spawn({v: {"seed": i + 1, "rate": rate, "lifetime": lifetime, "balances": BALANCES.get(v, {})}
                  for i, v in enumerate(VENUES)}, log_path)


# -- the system -------------------------------------------------------------------------------
def free_port() -> int:
    """A free loopback port, chosen before the system starts so the UI's URL is printed first."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(urls: dict, out: Path, ui_port: int = 0) -> dict:
    """The system description (a dict for ``runtime.config.parse``)."""
    ports = {"l2": "l2", "requests": "requests", "updates": "updates", "fills": "fills"}
    a, b = XV
    actors = {f"feed_{v}": {"class": "mantra.feeds.actor:Feed",
                            "params": {"venue": v, "symbols": u["symbols"], "options": feed_options(v, u),
                                       "connection": {"backoff_s": 0.2}},
                            "outputs": {"l2": "l2", "trades": "trades", "status": "book_status"}}
              for v, u in urls.items()}
    actors.update({
        "mm": {"class": "mantra.trading.models.market_maker:MarketMaker", "inputs": ports,
               "arrays": {"ideal": "mm_ideal"},
               "params": {"instrument": MM, "spread": "0.04", "size": "0.01", "skew": "2",
                          "max_inventory": "0.05", "refresh": "0.02", "instruments": []}},
        "mm_kraken": {"class": "mantra.trading.models.market_maker:MarketMaker", "inputs": ports,
                      "arrays": {"ideal": "mmk_ideal"},
                      "params": {"instrument": MM_KRAKEN, "spread": "0.2", "size": "0.001", "skew": "2",
                                 "max_inventory": "0.005", "refresh": "0.3", "instruments": []}},
        "mm_bitstamp": {"class": "mantra.trading.models.market_maker:MarketMaker", "inputs": ports,
                        "arrays": {"ideal": "mmb_ideal"},
                        "params": {"instrument": MM_BITSTAMP, "spread": "4", "size": "0.001", "skew": "2",
                                   "max_inventory": "0.005", "refresh": "2", "instruments": []}},
        "xv": {"class": "mantra.trading.models.cross_venue:CrossVenue", "inputs": ports,
               "arrays": {"ideal": "xv_ideal"},
               "params": {"a": a, "b": b, "size": "0.01", "max_inventory": "0.05", "fee_bps_a": 0,
                          "fee_bps_b": 0, "min_edge_bps": XV_MIN_EDGE_BPS, "instruments": []}},
        "overseer": {"class": "mantra.trading.overseer:Overseer",
                     "inputs": {"updates": "updates", "fills": "fills", "balances": "balances"},
                     "outputs": {"requests": "requests"},
                     "arrays": {"mm": "mm_ideal", "mm_kraken": "mmk_ideal", "mm_bitstamp": "mmb_ideal",
                                "xv": "xv_ideal"},
                     "params": {"models": ["mm", "mm_kraken", "mm_bitstamp", "xv"], "instruments": [],
                                "venues": {v: {"fee_bps": FEES[v][1], **t} for v, t in OVERSEER_VENUES.items()},
                                "limits": {i: {"max_position": "0.2", "max_notional": "7000"} for i in MODELLED}}},
        **{f"orders_{v}": {"class": "mantra.execution.actor:VenueAccount",
                           "inputs": {"requests": "requests"},
                           "outputs": {"updates": "updates", "fills": "fills", "balances": "balances"},
                           "params": {"venue": v, "instruments": [], "options": account_options(v, urls[v]),
                                      "wait_ms": 1.0,
                                      "paper": {"maker_bps": FEES[v][0], "taker_bps": FEES[v][1],
                                                "balances": BALANCES[v]}}}
           for v in TRADED},
        "persister": {"class": "mantra.store.persister:Persister", "params": {"dir": str(out)}},
        "telemetry": {"class": "mantra.telemetry.actor:Telemetry"},
        "ui": {"class": "mantra.ui.actor:UiActor", "params": {"port": ui_port}},
    })
    return {
        "system": {"name": SYSTEM, "mode": "sim", "instruments": traded_instruments()},
        "queues": {q: {"type": t, "capacity": c, "mpmc": m} for q, (t, c, m) in QUEUES.items()},
        "arrays": {n: {"type": "IdealOrder", "size": 2} for n in ("mm_ideal", "mmk_ideal", "mmb_ideal", "xv_ideal")},
        "actors": actors,
        # Everything parks: the feeds wake on their sockets, the rest on their queues.
        "processes": {"feeds": {"actors": [n for n in actors if n.startswith("feed_")], "mode": "park"},
                      "trading": {"actors": ["mm", "mm_kraken", "mm_bitstamp", "xv", "overseer"], "mode": "park"},
                      # the handlers wait on their sockets up to wait_ms (requests wait as long)
                      "orders": {"actors": [f"orders_{v}" for v in TRADED], "mode": "park"},
                      "back": {"actors": ["persister", "telemetry", "ui"], "mode": "park"}},
    }


def traded_instruments() -> list[dict]:
    """The traded instruments with the simulators' own increments, as ``[system] instruments``."""
    out = []
    for ref in MODELLED:
        venue, _, symbol = ref.partition(":")
        mod = importlib.import_module(f"mantra.sim.{venue}")
        inst = next(x for x in mod.LISTINGS if x.symbol == symbol).instrument(venue, InstrumentRegistry())
        out.append({k: v for k, v in asdict(inst).items() if k != "id"})
    return out


# -- live status ------------------------------------------------------------------------------
class LiveStatus:
    """Reads the system's queues from the supervisor process (unregistered readers: no lag counted)."""

    def __init__(self, system: str, symbols: dict[str, list]):
        self.system, self.symbols = system, symbols
        self.rings, self.readers, self.last_counts = {}, {}, {}
        self.t0 = self.last_t = time.monotonic()
        self.book: dict[int, int] = {}  # iid -> latest status
        self.orders = self.fills = 0
        self.pos: dict[int, list] = {}  # iid -> [cash, position, last price] (floats: display only)
        self.fees = 0.0
        self.reg = None

    def _attach(self) -> bool:
        if self.rings:
            return True
        d = paths.system_dir(self.system)
        try:
            self.rings = {q: Ring.attach(paths.queue(d, q)) for q in QUEUES}
        except (FileNotFoundError, OSError):
            self.rings = {}
            return False
        from .feeds.actor import system_registry

        self.reg = system_registry(self.system)
        self.readers = {q: self.rings[q].reader("demo-status", start=0, register=False)
                        for q in ("book_status", "requests", "fills")}
        self.last_counts = {q: 0 for q in QUEUES}
        return True

    def _drain(self) -> None:
        for m in self._batches("book_status"):
            for iid, st in zip(m["instrument"].tolist(), m["status"].tolist()):
                self.book[iid] = st
        for m in self._batches("requests"):
            self.orders += int((m["action"] == OrderAction.NEW).sum())
        for m in self._batches("fills"):
            self.fills += len(m)
            for iid, px, sz, side, fee in zip(*(m[k].tolist() for k in ("instrument", "price", "size", "side", "fee"))):
                inst = self.reg[iid]
                p, s = px / 10 ** inst.price_scale, sz / 10 ** inst.size_scale
                c = self.pos.setdefault(iid, [0.0, 0.0, p])
                c[0] -= p * s * side + fee / 10 ** inst.price_scale
                c[1] += s * side
                c[2] = p
                self.fees += fee / 10 ** inst.price_scale

    def _batches(self, q: str):
        r = self.readers[q]
        while len(b := r.read_batch(4096)):
            yield b

    def render(self, telemetry: dict | None) -> str:
        if not self._attach():
            return "starting..."
        self._drain()
        now = time.monotonic()
        dt = max(now - self.last_t, 1e-3)
        counts = {q: r.count() for q, r in self.rings.items()}
        rates = {q: (counts[q] - self.last_counts[q]) / dt for q in counts}
        self.last_counts, self.last_t = counts, now
        synced = {v: 0 for v in self.symbols}
        unverified = {v: 0 for v in self.symbols}  # consistent, but the venue cannot prove it (Bitstamp)
        for iid, st in self.book.items():
            try:
                v = self.reg[iid].venue
            except KeyError:
                continue
            if st in (Status.SYNCED, Status.UNVERIFIED) and v in synced:
                synced[v] += 1
                unverified[v] += st == Status.UNVERIFIED
        pnl = sum(c + p * last for c, p, last in self.pos.values())
        lines = [f"mantra demo   {now - self.t0:5.1f} s",
                 "books synced  " + "  ".join(f"{v} {synced[v]}/{len(s)}" + (f" ({unverified[v]} unverified)"
                                                                                 if unverified[v] else "")
                                              for v, s in self.symbols.items()),
                 "msg/s         " + "  ".join(f"{q} {rates[q]:.0f}" for q in QUEUES),
                 f"orders {self.orders}  fills {self.fills}  fees {self.fees:.4f}  PnL {pnl:+.2f} (rough, at last fill)"]
        if telemetry:
            hops = [(k, t["latency_us"]) for k, t in telemetry.get("timers", {}).items()
                    if not k.endswith(".loop")]  # loop steps have no origin: not a hop
            lines.append("hop latency since origin (µs)  p50 / p99   (updates, fills: since the venue's "
                         "answer reached us)")
            lines += [f"  {k:<28}{lat['p50']:>10.1f} {lat['p99']:>10.1f}" for k, lat in hops]
        return "\n".join(lines)

    def close(self) -> None:
        for r in self.rings.values():
            r.close()
        self.rings = {}


# -- the run ----------------------------------------------------------------------------------
def _replay_doc(doc: dict) -> dict:
    """The same system for the backtest; trading actors load the recording's instruments.json
    (``instruments = []`` would mean "the replay system's registry", which starts empty)."""
    doc = json.loads(json.dumps(doc))
    for a in doc["actors"].values():
        if a["class"].startswith("mantra.trading"):
            a.get("params", {}).pop("instruments", None)
    return doc


def by_venue(out: Path) -> dict[str, dict]:
    """What each traded venue did in the recorded session, from the spine's own queues: orders sent,
    cancels, amends, orders the venue answered with its own order id, fills, and its last non-zero
    balances (what the handler read from the venue, what the overseer checks orders against)."""
    from .fixed import from_fixed
    from .instruments import VENUES as ALL

    reg = InstrumentRegistry.load(out / "instruments.json")
    venue_of = {i.id: i.venue for i in reg}
    rows = {v: {"orders": 0, "cancels": 0, "amends": 0, "answered": 0, "fills": 0, "balances": {}} for v in TRADED}
    has = set(segments.queues(out))

    def count(q, key, where=None):
        if q not in has:
            return
        m = segments.load(out, q)
        if where is not None:
            m = m[where(m)]
        for iid in m["instrument"].tolist():
            v = venue_of.get(iid)
            if v in rows:
                rows[v][key] += 1

    count("requests", "orders", lambda m: m["action"] == OrderAction.NEW)
    count("requests", "cancels", lambda m: m["action"] == OrderAction.CANCEL)
    count("requests", "amends", lambda m: m["action"] == OrderAction.AMEND)
    count("fills", "fills")
    if "updates" in has:
        u = segments.load(out, "updates")
        u = u[u["venue_id"] != b""]
        for iid, oid in set(zip(u["instrument"].tolist(), u["order_id"].tolist())):
            if venue_of.get(iid) in rows:
                rows[venue_of[iid]]["answered"] += 1
    if "balances" in has:
        b = segments.load(out, "balances")
        for venue, asset, total, scale in zip(*(b[k].tolist() for k in ("venue", "asset", "total", "scale"))):
            v = ALL[venue - 1] if 0 < venue <= len(ALL) else None
            if v in rows:
                rows[v]["balances"][asset.rstrip(b"\0").decode()] = (total, scale)
    for r in rows.values():
        r["balances"] = {a: from_fixed(t, sc) for a, (t, sc) in r["balances"].items() if t}
    return rows


def venue_report(rows: dict[str, dict]) -> str:
    cols = ("orders", "cancels", "amends", "answered", "fills")
    out = [f"{'':<10}" + "".join(f"{c:>10}" for c in cols) + "   balances (the venue's last)"]
    for v, r in rows.items():
        bal = "  ".join(f"{a} {t}" for a, t in sorted(r["balances"].items())) or "none"
        out.append(f"{v:<10}" + "".join(f"{r[c]:>10}" for c in cols) + f"   {bal}")
    return "\n".join(out)


def compare(live: dict, replay: dict) -> str:
    rows = [("orders", "orders", "{:d}"), ("fills", "fills", "{:d}"), ("fees", "fees", "{:.4f}"),
            ("PnL", "pnl", "{:+.4f}")]
    out = [f"{'':<10}{'live':>14}{'replay':>14}"]
    out += [f"{label:<10}{f.format(live[k]):>14}{f.format(replay[k]):>14}" for label, k, f in rows]
    out.append("They differ because live, each actor reacts when the operating system schedules it and "
               "orders race the market in real time; the replay steps every actor in a fixed order on a "
               "simulated clock, so the same recorded market meets different decision timings.")
    return "\n".join(out)


def run(duration: float = 30.0, out: str | Path | None = None, rate: float = 40.0, ui_port: int = 0) -> int:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(out) if out else Path("data/demo") / stamp
    out.mkdir(parents=True, exist_ok=True)
    ui_port = ui_port or free_port()
    print(f"UI: http://127.0.0.1:{ui_port}/   (live while the demo runs; afterwards `mantra ui --data {out}`)",
          flush=True)
    print(f"starting five venue simulators (log: {out / 'simulators.log'})", flush=True)
    sims, urls = start_simulators(rate, duration + 60, out / "simulators.log")
    try:
        doc = build(urls, out, ui_port)
        spec = parse(doc)
        sup = Supervisor(spec, keep=True)  # kept until the final instrument registry is saved
        status = LiveStatus(spec.name, {v: u["symbols"] for v, u in urls.items()})
        tty = sys.stdout.isatty()
        last = [time.monotonic()]

        def tick():
            if time.monotonic() - last[0] >= 1.0:
                last[0] = time.monotonic()
                from .telemetry import top

                text = status.render(top.read(spec.name))
                print(("\033[2J\033[H" if tty else "\n") + text, flush=True)

        sup.on_tick = tick
        t0 = time.monotonic()
        try:
            failures = sup.run(duration=duration)
            print("\nat stop (feeds have disconnected):\n" + status.render(sup.final_telemetry), flush=True)
        finally:
            status.close()
            inst = paths.system_dir(spec.name) / "instruments.json"
            if inst.exists():  # venues register mid-run (Kraken): keep the final registry
                (out / "instruments.json").write_text(shm.read_text(inst))
            remove_system(spec.name)
        wall = time.monotonic() - t0
    finally:
        stop_spawned(sims)
    print(f"\nrecorded to {out}", flush=True)
    if "l2" not in segments.queues(out):
        print("nothing recorded: no report", flush=True)
        return 1
    events = sum(len(segments.load(out, q)) for q in ("l2", "trades") if q in segments.queues(out))
    live = backtest.summarize(out, out, events, wall, sup.final_telemetry)
    print("\n== live session ==\n" + backtest.report(live), flush=True)
    print("\n== per venue ==\n" + venue_report(by_venue(out)), flush=True)
    replay = backtest.run(_replay_doc(doc), out, out / "replay")  # kept: its report names its files
    print("\n== the same session replayed as a backtest ==\n" + backtest.report(replay), flush=True)
    print("\n== live vs replay ==\n" + compare(live, replay), flush=True)
    return 1 if failures else 0
