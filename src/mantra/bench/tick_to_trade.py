"""`mantra bench tick-to-trade`: from a venue frame received by a Feed to the OrderRequest the
overseer publishes because of it, inside a running system fed by a local venue simulator.

Every message published for a frame carries the frame's receipt stamp as its origin; the model's
ideal order carries it on, and the overseer's request carries the origin of the ideal it serves.
So per request ``publish - origin`` is the internal tick-to-trade latency.  Only requests whose
origin is a frame's receipt stamp (found in the ``l2`` queue) are counted.

Placements, measured in the same run (the simulator serves from this parked process's threads):

- ``feed_parked`` (the headline): process ``feed`` (CPU 0) runs the Feed, parked on its doorbell
  (``poll(2)`` on the socket); process ``trading`` (spin, CPU 1) the market maker, the overseer and
  the mock exchange.  A parked process wakes cold: the same frame costs it about twice the CPU
  time it costs a spinning one.
- ``split_spin``: the same with the feed's process spinning too (reading its socket every pass).
- ``single_spin`` / ``single_parked``: everything in one process (CPU 0): the baseline (the
  better of the two by p50), and the ratios are headline / baseline.

The Feed reads its socket in its own thread and stamps each read right after ``recv``, before
the WebSocket frame is parsed: ``frame_to_l2`` includes parsing, decoding and publishing.

Breakdown (from the queues and the ``trading`` process's timing ring): ``frame_to_l2`` (receipt
-> the frame's last L2Update published), ``l2_to_ideal`` (that publish -> end of the market
maker's handler of it, which wrote the ideal), ``ideal_to_request`` (-> the request published).
``first_request``: per frame, its first request only (the reaction; a requote sends two), and
``stages_first_request`` splits it: the feed, the hop to the model's handler (with the C book
apply), the handler, the rest of that pass, and the overseer's pass up to the request.  The
trading process keeps the whole run's timing records for it (the process option ``timing``).
The market maker requotes on every tick move (``refresh`` = one tick) of a fast synthetic market.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..runtime import paths
from ..runtime.config import parse
from ..runtime.process import LOOP_STREAM
from ..runtime.supervisor import Supervisor
from ..spine import Ring
from ..spine.messages import L2Flags
from ..spine.shm import remove_system, system_dir
from ..sim.coinbase import LISTINGS, CoinbaseSimulator
from ..sim import SyntheticMarket
from .memsocket import MemSocket, ws_frame

OPTIONS = {"seconds", "rate", "frames"}

SYMBOL = "BTC-USD"
# The simulator's listing: the system's instrument (registered before any actor starts, so the
# feed and every trading actor use these exact increments).
INSTRUMENT = {"venue": "coinbase", "symbol": SYMBOL, "base": "BTC", "quote": "USD", "price_scale": 2,
              "size_scale": 8, "tick": "0.01", "lot": "0.00000001", "min_size": "0.00001", "min_notional": "1"}


def system_doc(name: str, url: str, *, clock: str = "realtime", spin: bool = True, mm: dict | None = None) -> dict:
    """Feed (simulated coinbase) -> market maker -> overseer -> mock exchange.  ``spin``: the feed
    never blocks (it polls every pass); else it parks on its doorbell."""
    params_mm = {"instrument": f"coinbase:{SYMBOL}", "spread": "0.02", "size": "0.001", "skew": "0",
                 "max_inventory": "10", "refresh": "0.01", **(mm or {})}
    cap = 1 << 18
    return {
        "system": {"name": name, "clock": clock, "instruments": [INSTRUMENT]},
        "queues": {"l2": {"type": "L2Update", "capacity": 1 << 20},
                   "trades": {"type": "TradeUpdate", "capacity": cap},
                   "status": {"type": "BookStatus", "capacity": 1 << 10},
                   **{q: {"type": t, "capacity": cap} for q, t in (
                       ("requests", "OrderRequest"), ("updates", "OrderUpdate"), ("fills", "Fill"),
                       ("balances", "BalanceUpdate"))}},
        "arrays": {"mm_ideal": {"type": "IdealOrder", "size": 2}},
        "actors": {
            "feed": {"class": "mantra.feeds.actor:Feed",
                     "params": {"venue": "coinbase", "symbols": [SYMBOL], "options": {"url": url},
                                "wait_ms": 0.0 if spin else 10.0, "poll_ms": 1.0},
                     "outputs": {"l2": "l2", "trades": "trades", "status": "status"}},
            "mm": {"class": "mantra.trading.models.market_maker:MarketMaker", "params": params_mm,
                   "inputs": {"l2": "l2", "requests": "requests", "updates": "updates", "fills": "fills"},
                   "arrays": {"ideal": "mm_ideal"}},
            "overseer": {"class": "mantra.trading.overseer:Overseer",
                         "params": {"models": ["mm"],
                                    "venues": {"coinbase": {"fee_bps": 5, "amend": True, "rate": 1_000_000}},
                                    "limits": {f"coinbase:{SYMBOL}": {"max_position": "100",
                                                                      "max_notional": "100000000"}}},
                         "inputs": {"updates": "updates", "fills": "fills", "balances": "balances"},
                         "outputs": {"requests": "requests"}, "arrays": {"mm": "mm_ideal"}},
            "exchange": {"class": "mantra.trading.mock_exchange:MockExchange",
                         "params": {"venues": {"coinbase": {"maker_bps": 2, "taker_bps": 5, "amend": True,
                                                            "balances": {"BTC": "1000", "USD": "100000000"}}}},
                         "inputs": {"requests": "requests", "l2": "l2", "trades": "trades"},
                         "outputs": {"updates": "updates", "fills": "fills", "balances": "balances"}},
        },
    }


def _pct(a: np.ndarray) -> dict:
    if not len(a):
        return {"p50": None, "p90": None, "p99": None, "p999": None}
    a = a / 1000.0
    return {k: round(float(np.percentile(a, q)), 3) for k, q in
            (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9))}


def _drain(path) -> np.ndarray:
    c = Ring.attach(path).reader("bench", start=0, register=False)
    parts = []
    while True:
        b = c.read_batch(65536)
        if not len(b):
            break
        parts.append(b.copy())
    return np.concatenate(parts) if parts else np.zeros(0)


def measure(d, trading_process: str, mm_id: int, ov_id: int, warmup_s: float) -> dict:
    """Tick-to-trade and its breakdown from a kept system directory ``d``."""
    l2, req = _drain(paths.queue(d, "l2")), _drain(paths.queue(d, "requests"))
    frames = l2[(l2["flags"] & int(L2Flags.LAST)) != 0]
    frame_pub = dict(zip(frames["origin"].tolist(), frames["publish"].tolist()))
    t0 = int(l2["origin"].min()) + int(warmup_s * 1e9) if len(l2) else 0  # skip connect + snapshot
    req = req[req["origin"] >= t0]
    mine = np.array([o in frame_pub for o in req["origin"].tolist()], bool)
    ticked = req[mine]
    lat = ticked["publish"].astype(np.int64) - ticked["origin"].astype(np.int64)
    out = {"count": int(len(lat)), "requests": int(len(req)), **_pct(lat)}
    # The reaction time proper: each frame's first request (a requote sends two; the second one's
    # wait for the first is in the figures above).
    first: dict[int, int] = {}
    for o, p in zip(ticked["origin"].tolist(), ticked["publish"].tolist()):
        if o not in first or p < first[o]:
            first[o] = p
    out["first_request"] = {**_pct(np.array([p - o for o, p in first.items()], np.int64)), "count": len(first)}
    f2l = np.array([frame_pub[o] - o for o in ticked["origin"].tolist()], np.int64)
    out["frame_to_l2"] = _pct(f2l)
    # Before the origin, not in the figures above: the simulator's market step (the frame's
    # exchange timestamp, same clock) to the receipt stamp: the simulator's queue and writer
    # thread, loopback, then the feed's wake-up (parked) or the rest of its pass (spinning).
    sent = frames[frames["origin"] >= t0]
    hidden = sent["origin"].astype(np.int64) - sent["exch_ts"].astype(np.int64)
    out["sim_send_to_origin"] = _pct(hidden[sent["exch_ts"] > 0])
    # From the trading process's timing ring (key = actor id << 16 | input, or | 0xFFFF for a
    # loop that acted on an origin): the market maker's l2 handler and the overseer's pass.
    tpath = paths.timing(d, trading_process)
    if tpath.exists():
        tim = _drain(tpath)
        handler: dict[int, tuple[int, int]] = {}  # origin -> (start, end) of the handler that wrote the ideal
        for o, b, e in zip(*(tim[tim["key"] == (mm_id << 16)][k].tolist() for k in ("origin", "start", "end"))):
            if o not in handler or e > handler[o][1]:
                handler[o] = (b, e)
        loop_at: dict[int, int] = {}  # origin -> start of the overseer's first pass that served it
        for o, b in zip(*(tim[tim["key"] == (ov_id << 16 | LOOP_STREAM)][k].tolist() for k in ("origin", "start"))):
            loop_at.setdefault(o, b)
        l2i, i2r, feed, hop, model, rest, ov = [], [], [], [], [], [], []
        for o, p in zip(ticked["origin"].tolist(), ticked["publish"].tolist()):
            h = handler.get(o)
            if h is not None:
                l2i.append(h[1] - frame_pub[o])
                i2r.append(p - h[1])
        for o, p in first.items():
            h, b = handler.get(o), loop_at.get(o)
            if h is not None and b is not None and b >= h[1]:
                feed.append(frame_pub[o] - o)
                hop.append(h[0] - frame_pub[o])
                model.append(h[1] - h[0])
                rest.append(b - h[1])
                ov.append(p - b)
        out["l2_to_ideal"] = {**_pct(np.array(l2i, np.int64)), "count": len(l2i)}
        out["ideal_to_request"] = _pct(np.array(i2r, np.int64))
        # each frame's first request, stage by stage (p50s of stages do not add up to the whole)
        out["stages_first_request"] = {
            "count": len(hop),
            "frame_to_l2": _pct(np.array(feed, np.int64)),  # the feed: parse, decode, book, publish
            "l2_to_model": _pct(np.array(hop, np.int64)),  # hop, the pass reaching the input, book apply
            "model": _pct(np.array(model, np.int64)),  # the market maker's handler (writes the ideal)
            "model_to_overseer": _pct(np.array(rest, np.int64)),  # the rest of the pass
            "overseer": _pct(np.array(ov, np.int64)),  # its pass: read slots, checks, publish
        }
    out["frames"] = int(len(frames))
    return out


def run_placement(name: str, url: str, processes: dict, seconds: float, warmup_s: float, **kw) -> dict:
    doc = system_doc(name, url, **kw)
    doc["processes"] = processes
    spec = parse(doc)
    sup = Supervisor(spec, keep=True)
    try:
        failures = sup.run(duration=seconds)
        d = system_dir(name)
        trading = next(p for p, cfg in processes.items() if "mm" in cfg["actors"])
        out = measure(d, trading, spec.actors["mm"].id, spec.actors["overseer"].id, warmup_s)
    finally:
        remove_system(name)
    out["failures"] = failures
    return out


# -- code path: the same system, frames from memory ---------------------------------------------

def record_frames(n: int, rate: int) -> list[bytes]:
    """``n`` messages of the Coinbase simulator's market, answering the subscriptions the Feed's own
    protocol sends, each encoded as the server's WebSocket text frame."""
    from websockets.sync.client import connect

    from ..instruments import InstrumentRegistry
    from ..venues.events import Send
    from ..venues.registry import make_protocol

    reg = InstrumentRegistry()
    reg.add(**INSTRUMENT)
    proto = make_protocol("coinbase", reg, [SYMBOL])
    proto.on_connect(0)
    sends = [e.text for e in proto.events if type(e) is Send]
    src = SyntheticMarket("coinbase", [ls for ls in LISTINGS if ls.symbol == SYMBOL], seed=7, rate=float(rate))
    msgs = []
    with CoinbaseSimulator(src) as sim, connect(sim.ws_url, max_size=None) as ws:
        for text in sends:
            ws.send(text)
        while len(msgs) < n:
            msgs.append(ws.recv(timeout=10).encode())
    return [ws_frame(m) for m in msgs]



def code_path(seconds: float, rate: int, frames: int, warmup_s: float) -> dict:
    """One spinning process (CPU 0): feed -> market maker -> overseer -> mock exchange, the feed's
    real client reading ``frames`` recorded frames from memory, one every ``1/rate`` s."""
    from ..feeds import wsclient

    recorded = record_frames(frames, max(rate, 4000))
    gap = int(1e9 / rate)
    seconds = max(seconds, warmup_s + len(recorded) * gap / 1e9 + 0.5)
    real = wsclient._open_socket
    wsclient._open_socket = lambda uri, proxy, timeout: MemSocket(recorded, gap_ns=gap)  # inherited by the fork
    try:
        procs = {"all": {"actors": ["feed", "mm", "overseer", "exchange"], "mode": "spin", "cpu": 0,
                         "timing": 1 << 19}}
        out = run_placement(f"t2t-code-{os.getpid()}", "ws://memory.invalid/ws", procs, seconds, warmup_s, spin=True)
    finally:
        wsclient._open_socket = real
    out.pop("sim_send_to_origin", None)  # the recording's venue times: meaningless here
    out["frames_recorded"] = len(recorded)
    return out


def run(seconds: float = 8.0, rate: int = 4000, frames: int = 20000) -> dict:
    warmup = 1.0
    tag = os.getpid()
    cpu1 = 1 % os.cpu_count()
    trading = ["mm", "overseer", "exchange"]
    keep = 1 << 19  # timing records: the whole run's, for the stage breakdown (about 35k/s here)
    placements = {  # name -> (processes, feed spins)
        "feed_parked": ({"feed": {"actors": ["feed"], "mode": "park", "cpu": 0},
                         "trading": {"actors": trading, "mode": "spin", "cpu": cpu1, "timing": keep}}, False),
        "split_spin": ({"feed": {"actors": ["feed"], "mode": "spin", "cpu": 0},
                        "trading": {"actors": trading, "mode": "spin", "cpu": cpu1, "timing": keep}}, True),
        "single_spin": ({"all": {"actors": ["feed", *trading], "mode": "spin", "cpu": 0, "timing": keep}}, True),
        "single_parked": ({"all": {"actors": ["feed", *trading], "mode": "park", "cpu": 0, "timing": keep}}, False),
    }
    out = {"code_path": code_path(seconds, rate, frames, 0.5)}
    src = SyntheticMarket("coinbase", [ls for ls in LISTINGS if ls.symbol == SYMBOL], seed=7, rate=float(rate))
    with CoinbaseSimulator(src) as sim:
        for name, (procs, spin) in placements.items():
            out[name] = run_placement(f"t2t-{name.replace('_', '-')}-{tag}", sim.ws_url, procs, seconds, warmup,
                                      spin=spin)
            time.sleep(0.2)
    head = out["feed_parked"]
    base = min((out["single_spin"], out["single_parked"]), key=lambda r: r["p50"] or float("inf"))

    def ratio(k):
        return round(head[k] / base[k], 2) if head[k] and base[k] else None

    return {
        "bench": "tick-to-trade",
        "p50_us": head["p50"], "p99_us": head["p99"], "count": head["count"],
        "placement": "feed (parked on its doorbell, CPU 0) | market maker + overseer + mock exchange "
                     "(spin, CPU 1); simulator threads in the parked parent",
        "placements": out,
        "baseline_single_process": {"p50_us": base["p50"], "p99_us": base["p99"], "count": base["count"],
                                    "placement": "single_spin" if base is out["single_spin"] else "single_parked"},
        "ratio_p50_vs_single": ratio("p50"), "ratio_p99_vs_single": ratio("p99"),
        "target_us": {"p50": 10, "p99": 40},
        "seconds": seconds, "rate": rate,
    }
