"""`mantra backtest CONFIG.toml --data DIR`: the production system fed from recordings.

The system described by CONFIG runs unchanged, in the deterministic placement (one process, a
simulated clock, fixed actor order), except that:

- actors that produce the recorded market-data queues (feeds, synthetic markets) are replaced by one
  ``Replayer`` publishing the recorded ``l2`` / ``trades`` (whichever the data holds and the system
  has) at their recorded times;
- a ``Persister`` records every queue the run produces to ``--out`` (default
  ``data/backtests/<UTC time>/``; the replayed market data is already in ``--data``);
- the deterministic runner hands every actor each record at its recorded time, so no decision
  ever sees data from its future (``Runner.run_deterministic``);
- every actor that takes an ``instruments`` param and was given none (a trade model from any
  package, the overseer, the mock exchange) gets the data's ``instruments.json``: the ids in the
  recorded records are that registry's.

The result (``summarize``): the data's time range (first and last replayed event, UTC), counts of
events, orders and fills, every fill (UTC time, instrument, side, price, size, fee as exact
decimals), fees and PnL, a digest of every message the run produced (two deterministic runs give
equal digests), and ``damage``: what of the recordings (and of the run's own output) could not be
read and was skipped.

Money is exact: a fill's cash is what the venue charges or pays (``trading.common.cost`` /
``proceeds``: a buyer pays the ceiling, a seller receives the floor), fees as charged, and the
position is marked at the instrument's last market trade at or before the mark (its last fill
price before any trade).  PnL values are decimal text in the quote currency (``pnl_dec``,
``by_instrument``); ``pnl`` and ``fees`` are the same as floats, for quick comparisons.  With
several instruments the totals add their quote currencies as they are (say USD and USDT).

The PnL curve is marked every ``mark_s`` seconds (60: per-minute marks) from the first event, and
at the last.  ``sharpe`` is the mean over the standard deviation (n - 1) of the changes between
consecutive whole-interval marks, not annualised; ``sharpe_annualised`` multiplies it by
sqrt(intervals per 365-day year) (crypto trades around the clock).  ``max_drawdown`` is the largest
fall of the marked PnL from an earlier peak on the same marks, in quote currency, with the times of
that peak and of the trough.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import sys
import time
import tomllib
from datetime import datetime, timezone
from itertools import accumulate
from pathlib import Path

import numpy as np

from .instruments import InstrumentRegistry
from .runtime.config import ActorSpec, ConfigError, parse
from .runtime.supervisor import create_spine
from . import logs
from .runtime.clock import SimClock, utc
from .runtime.process import Runner
from .spine.messages import Liquidity, OrderAction
from .spine.shm import remove_system
from .store import segments
from .trading.common import cost, proceeds

MARKET = ("trades", "l2")  # replay order for records with equal times: a message's trades first
YEAR_S = 365 * 24 * 3600
SHOWN_FILLS = 3  # the report shows this many first and last fills
MAX_MARKS = 1_000_000  # PnL marks over the data: the curve is in the result


class BacktestError(ValueError):
    """The data or the output directory cannot be used (the message says why)."""


def load_config(path: str | Path) -> dict:
    """The TOML document at ``path``, checked as a system; any problem is a ``ConfigError`` naming
    the file."""
    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        parse(doc)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return doc


def check_data(data: Path) -> list[str]:
    """The market-data queues recorded in ``data``; a ``BacktestError`` when there are none."""
    if not data.is_dir():
        raise BacktestError(f"{data}: no such directory (make backtest data with `mantra import`)")
    have = [q for q in MARKET if q in segments.queues(data)]
    if not have:
        raise BacktestError(f"{data}: no recorded {' or '.join(MARKET)} (make backtest data with `mantra import`)")
    return have


def default_out() -> Path:
    """A new directory ``data/backtests/<UTC time>/`` (git-ignored) for a run's output."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = Path("data") / "backtests"
    for n in range(1, 1000):
        p = base / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            p.mkdir(parents=True)
            return p
        except FileExistsError:
            continue
    raise BacktestError(f"{base}: cannot make a new output directory")


def _takes_instruments(cls: str) -> bool:
    try:
        return "instruments" in ActorSpec("", cls, 0).load_class().known_params()
    except (ConfigError, AttributeError):
        return False  # not an actor class: parse() names the problem


def _is(cls: str, base: str) -> bool:
    try:
        c = ActorSpec("", cls, 0).load_class()
    except ConfigError:
        return False
    mod, _, name = base.partition(":")
    return issubclass(c, getattr(__import__(mod, fromlist=[name]), name))


def _paper_venues(doc: dict) -> None:
    """A system that trades on venues (sim or live mode) is backtested on the mock exchange: each
    account handler's venue joins the system's mock exchange (one is added, in the first handler's
    process, if it has none) with the handler's ``paper`` terms (fees, balances, latency)."""
    actors = doc.get("actors", {})
    handlers = {n: a for n, a in actors.items() if _is(a.get("class", ""), "mantra.execution.actor:VenueAccount")}
    if not handlers:
        return
    mock = next((a for a in actors.values() if _is(a.get("class", ""), "mantra.trading.mock_exchange:MockExchange")), None)
    first = next(iter(handlers))
    if mock is None:
        h = handlers[first]
        inputs = {"requests": h.get("inputs", {}).get("requests", "requests")}
        inputs.update({q: q for q in MARKET if q in doc.get("queues", {})})
        mock = {"class": "mantra.trading.mock_exchange:MockExchange", "inputs": inputs,
                "outputs": dict(h.get("outputs", {})), "params": {"venues": {}}}
        for p in doc.get("processes", {}).values():
            if first in p.get("actors", []):
                p["actors"].append("paper_exchange")
        actors["paper_exchange"] = mock
    venues = mock.setdefault("params", {}).setdefault("venues", {})
    for n, a in handlers.items():
        params = a.get("params", {})
        venues[str(params.get("venue", "")).lower()] = dict(params.get("paper", {}))
        del actors[n]


def prepare(doc: dict, data: Path, out: Path) -> dict:
    doc = json.loads(json.dumps(doc))  # deep copy
    doc.setdefault("system", {}).update(clock="deterministic", mode="paper")
    doc["system"]["name"] = f"bt{os.getpid()}"
    doc.pop("simulators", None)
    _paper_venues(doc)
    recorded = set(segments.queues(data))
    streams = {q: q for q in MARKET if q in recorded and q in doc.get("queues", {})}
    if not streams:
        raise BacktestError(f"{data}: no recorded {' or '.join(MARKET)} for this system's queues "
                            f"(it has {', '.join(doc.get('queues', {})) or 'none'})")
    actors = doc.setdefault("actors", {})
    for name in [n for n, a in actors.items() if a.get("class") == "mantra.ui.actor:UiActor"]:
        del actors[name]  # a live view has nothing to show on a simulated clock: `--ui` opens the result
    for name in [n for n, a in actors.items() if set(a.get("outputs", {}).values()) & set(streams)]:
        del actors[name]
    inst = data / "instruments.json"
    for a in actors.values():
        # by what the class takes, not where it lives: a model from the user's own package too
        if inst.exists() and "instruments" not in a.get("params", {}) and _takes_instruments(a.get("class", "")):
            a.setdefault("params", {})["instruments"] = str(inst)
    replay = {"class": "mantra.store.replayer:Replayer", "outputs": {q: q for q in streams},
              "params": {"dir": str(data), "streams": streams}}
    # the run's own messages; the replayed market data is already in --data
    produced = [q for q in doc.get("queues", {}) if q not in streams]
    # chunks by size, not by (simulated) time: a backtest's bound on crash loss is moot
    persist = {"class": "mantra.store.persister:Persister",
               "params": {"dir": str(out), "chunk_records": 1 << 18, "flush_ms": 600_000, "queues": produced}}
    doc["actors"] = {"replay": replay, **actors, "persister": persist}
    for p in doc.get("processes", {}).values():
        p["actors"] = [a for a in p.get("actors", []) if a in doc["actors"]]
    return doc


def _bar(frac: float, rate: float, width: int = 30) -> str:
    fill = int(frac * width)
    return f"\r[{'#' * fill}{'.' * (width - fill)}] {frac * 100:5.1f}%  {rate / 1000:8.1f}k events/s"


def run(config: str | Path | dict, data: str | Path, out: str | Path | None = None,
        progress: bool = False, mark_s: float = 60) -> dict:
    """Backtest ``config`` (a TOML path or a parsed document) on ``data``; the result is also
    written to ``<out>/result.json`` and its fills to ``<out>/fills.csv``.  A config that fails
    its checks raises ``ConfigError``; unusable data or output, ``BacktestError``."""
    data = Path(data)
    if isinstance(config, dict):
        doc = config
        parse(doc)  # the user's system checked as written, before it is rewired
    else:
        doc = load_config(config)
    check_data(data)
    first_last = span(data)
    if not mark_s > 0 or (first_last and (first_last[1] - first_last[0]) / 1e9 / mark_s > MAX_MARKS):
        raise BacktestError(f"marks every {mark_s:g} s: expected a positive interval giving at most "
                            f"{MAX_MARKS:,} marks over the data")
    if out:
        out = Path(out)
        if segments.queues(out) or (out / "result.json").exists():  # two runs' records would mix
            raise BacktestError(f"{out} already holds a run's output: choose another --out")
        spec = parse(prepare(doc, data, out))
    else:
        parse(prepare(doc, data, Path("out")))  # every check before a directory is made
        out = default_out()
        spec = parse(prepare(doc, data, out))
    create_spine(spec).close()
    try:
        runner = Runner(spec, list(spec.actors), process="backtest", clock=SimClock(1))
        replay = runner.slots[0].actor
        t0 = time.perf_counter()
        tick = None
        if progress:
            last = [0.0]

            def tick():
                t = time.perf_counter()
                if t - last[0] > 0.25:
                    last[0] = t
                    sys.stderr.write(_bar(replay.progress, replay.i / max(t - t0, 1e-9)))

        logs.use_clock(runner.clock.now)  # what actors log is stamped with the replay's time
        try:
            runner.run_deterministic(tick=tick)
        finally:
            logs.use_clock(None)
        end = time.perf_counter()
        wall, run_s = end - t0, end - runner.started
        if progress:
            sys.stderr.write(_bar(1.0, replay.total / run_s) + "\n")
        telemetry = next((s.actor.snapshot(0) for s in runner.slots if hasattr(s.actor, "snapshot")), None)
        handled = {s.spec.name: s.handled for s in runner.slots if s.inputs}
    finally:
        remove_system(spec.name)
    out.mkdir(parents=True, exist_ok=True)
    if (data / "instruments.json").exists():  # so `mantra export` of the output has decimals too
        shutil.copyfile(data / "instruments.json", out / "instruments.json")
    r = {**summarize(out, data, replay.total, run_s, telemetry, list(replay.damage), mark_s=mark_s),
         "wall_s": round(wall, 3), "load_s": round(wall - run_s, 3), "handled": handled,
         "data": str(data)}  # the market the run saw: `mantra ui --data OUT` shows it beside the run
    write_fills(r["trade_list"], out / "fills.csv")
    r["fills_csv"] = str(out / "fills.csv")
    (out / "result.json").write_text(json.dumps(r, indent=1))
    return r


def _registry(data: Path) -> InstrumentRegistry | None:
    p = data / "instruments.json"
    return InstrumentRegistry.load(p) if p.exists() else None


def digest(out: Path, damage: list | None = None) -> str:
    h = hashlib.blake2b(digest_size=16)
    for q in segments.queues(out):
        h.update(q.encode())
        h.update(segments.load(out, q, damage=damage).tobytes())
    return h.hexdigest()


def dec(value: int, scale: int, decimals: int = 0) -> str:
    """Exact decimal text of a fixed-point int at any scale; trailing zeros trimmed down to
    ``decimals`` decimals."""
    q, r = divmod(abs(value), 10**scale)
    frac = str(r).rjust(scale, "0").rstrip("0").ljust(decimals, "0") if scale else ""
    return ("-" if value < 0 else "") + (f"{q}.{frac}" if frac else str(q))


def span(data: Path) -> tuple[int, int] | None:
    """First and last publish time (ns) of the recorded market data, from the chunk indexes."""
    lo = hi = None
    for q in MARKET:
        for p in segments.segments(data, q):
            try:
                chunks = segments.scan(p).chunks if p.stat().st_size else []
            except ValueError:
                continue  # unreadable: the replay's damage report says so
            for c in chunks:
                lo = c.first if lo is None else min(lo, c.first)
                hi = c.last if hi is None else max(hi, c.last)
    return None if lo is None else (lo, hi)


def trade_list(fills: np.ndarray, reg: InstrumentRegistry) -> list[dict]:
    """Every fill, in the order the run produced them, as exact decimal text; ``time`` is the
    venue's fill time (UTC)."""
    out = []
    for f in fills:
        inst = reg.by_id.get(int(f["instrument"]))
        if inst is None:
            continue
        ps, ss = inst.price_scale, inst.size_scale
        out.append({"time": utc(f["exch_ts"]), "instrument": f"{inst.venue}:{inst.symbol}",
                    "side": "buy" if f["side"] > 0 else "sell", "price": dec(int(f["price"]), ps, ps),
                    "size": dec(int(f["size"]), ss, ss), "fee": dec(int(f["fee"]), ps, ps),
                    "fee_asset": bytes(f["fee_asset"]).rstrip(b"\0").decode(errors="replace") or inst.quote,
                    "liquidity": "taker" if f["liquidity"] == Liquidity.TAKER else "maker",
                    "order_id": int(f["order_id"])})
    return out


def write_fills(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["time", "instrument", "side", "price", "size", "fee", "fee_asset", "liquidity",
                                "order_id"])
        w.writeheader()
        w.writerows(rows)


def curve_stats(times: list[int], values: list, whole: int, mark_s: float) -> dict:
    """Sharpe and max drawdown of a marked PnL curve (see the module doc).  ``values`` are exact
    (ints at one scale, or Decimals); the first ``whole`` marks are the whole-interval ones."""
    diffs = [float(b - a) for a, b in zip(values[:whole - 1], values[1:whole])] if whole > 1 else []
    sharpe = None
    if len(diffs) > 1:
        sd = float(np.std(diffs, ddof=1))
        if sd > 0:
            sharpe = float(np.mean(diffs)) / sd
    peak_i, dd, dd_at = 0, 0, None
    for i, v in enumerate(values):
        if v > values[peak_i]:
            peak_i = i
        elif values[peak_i] - v > dd:
            dd, dd_at = values[peak_i] - v, (peak_i, i)
    return {"sharpe": None if sharpe is None else round(sharpe, 4),
            "sharpe_annualised": None if sharpe is None else round(sharpe * math.sqrt(YEAR_S / mark_s), 4),
            "sharpe_basis": f"changes of the PnL marked every {mark_s:g} s; annualised by "
                            f"sqrt({YEAR_S / mark_s:g} intervals a year)",
            "drawdown": (dd, None if dd_at is None else times[dd_at[0]], None if dd_at is None else times[dd_at[1]])}


def _money(fills: np.ndarray, trades: np.ndarray | None, reg: InstrumentRegistry, first: int, last: int,
           mark_s: float) -> dict:
    """Exact PnL per instrument and in total, marked every ``mark_s`` from ``first`` and at
    ``last``: (cash - fees) * 10**size_scale + position * mark, at scale price + size scale."""
    step = int(mark_s * 1e9)
    grid = list(range(first, last + 1, step))
    whole = len(grid)
    if grid[-1] != last:
        grid.append(last)
    g = np.array(grid, np.int64)
    iids = sorted(set(fills["instrument"].tolist()) & set(reg.by_id))
    top = max((reg[i].price_scale + reg[i].size_scale for i in iids), default=0)
    top_ps = max((reg[i].price_scale for i in iids), default=0)
    total = [0] * len(grid)
    fees_total, by = 0, {}
    for iid in iids:
        inst = reg[iid]
        ps, ss = inst.price_scale, inst.size_scale
        f = fills[fills["instrument"] == iid]
        f = f[np.argsort(f["publish"], kind="stable")]
        px, sz, side, fee = (f[k].tolist() for k in ("price", "size", "side", "fee"))
        cash = [0, *accumulate(proceeds(p, q, ss) if d < 0 else -cost(p, q, ss) for p, q, d in zip(px, sz, side))]
        fees = [0, *accumulate(fee)]
        pos = [0, *accumulate(q * d for q, d in zip(sz, side))]
        done = np.searchsorted(f["publish"].astype(np.int64), g, side="right").tolist()
        t = trades[trades["instrument"] == iid] if trades is not None else None
        if t is not None and len(t):
            tp = t["price"].tolist()
            seen = (np.searchsorted(t["publish"].astype(np.int64), g, side="right") - 1).tolist()
        else:
            tp, seen = [], [-1] * len(grid)
        up = 10 ** (top - ps - ss)
        for j, (k, m) in enumerate(zip(done, seen)):
            mark = tp[m] if m >= 0 else (px[k - 1] if k else 0)
            total[j] += ((cash[k] - fees[k]) * 10**ss + pos[k] * mark) * up
        k, m = done[-1], seen[-1]
        mark = tp[m] if m >= 0 else (px[k - 1] if k else 0)
        pnl = (cash[k] - fees[k]) * 10**ss + pos[k] * mark
        fees_total += fees[k] * 10 ** (top_ps - ps)
        by[f"{inst.venue}:{inst.symbol}"] = {
            "quote": inst.quote, "position": dec(pos[k], ss), "mark": dec(mark, ps, ps),
            "cash": dec(cash[k], ps, ps), "fees": dec(fees[k], ps, ps), "pnl": dec(pnl, ps + ss, ps)}
    stats = curve_stats(grid, total, whole, mark_s)
    dd, peak, trough = stats.pop("drawdown")
    return {"pnl_dec": dec(total[-1], top, top_ps), "fees_dec": dec(fees_total, top_ps, top_ps),
            "pnl": float(total[-1]) / 10**top, "fees": float(fees_total) / 10**top_ps, "by_instrument": by,
            "pnl_curve": [[utc(t), dec(v, top, top_ps)] for t, v in zip(grid, total)],
            **stats, "max_drawdown": {"amount": dec(dd, top, top_ps), "peak": peak and utc(peak),
                                      "trough": trough and utc(trough)}}


def summarize(out: Path, data: Path, events: int, run_s: float, telemetry: dict | None = None,
              damage: list | None = None, mark_s: float = 60) -> dict:
    """``events_per_s``: events over the run loop's time, loading the data excluded (as
    NautilusTrader's ``run()`` is timed in the peer benchmark).  ``damage``: what the replay
    skipped; what reading the results skips is added.  The rest: the module doc."""
    damage = [] if damage is None else damage
    reg = _registry(data)
    has = set(segments.queues(out))
    req = segments.load(out, "requests") if "requests" in has else None
    fills = segments.load(out, "fills") if "fills" in has else None
    trades = segments.load(data, "trades", damage=damage) if "trades" in segments.queues(data) else None
    first_last = span(data)
    res = {"events": events, "events_per_s": round(events / run_s) if run_s else 0, "run_s": round(run_s, 3),
           "data_start": first_last and utc(first_last[0]), "data_end": first_last and utc(first_last[1]),
           "orders": 0, "cancels": 0, "amends": 0, "fills": 0, "fees": 0.0, "pnl": 0.0, "fees_dec": "0",
           "pnl_dec": "0", "positions": {}, "by_instrument": {}, "pnl_curve": [], "sharpe": None,
           "sharpe_annualised": None, "sharpe_basis": None,
           "max_drawdown": {"amount": "0", "peak": None, "trough": None}, "trade_list": [], "out": str(out)}
    if req is not None and len(req):
        act = req["action"]
        res["orders"] = int((act == OrderAction.NEW).sum())
        res["cancels"] = int(((act == OrderAction.CANCEL) | (act == OrderAction.CANCEL_ALL)).sum())
        res["amends"] = int((act == OrderAction.AMEND).sum())
    res["fills"] = 0 if fills is None else len(fills)
    if res["fills"] and reg is not None:
        res["trade_list"] = trade_list(fills, reg)
        lo, hi = first_last or (int(fills["publish"].min()), 0)
        res.update(_money(fills, trades, reg, lo, max(hi, int(fills["publish"].max())), mark_s))
        for k, v in res["by_instrument"].items():
            res["positions"][k] = v["position"]
    res["digest"] = digest(out, damage)  # reads every output queue: its damage is noted there
    res["damage"] = segments.summary(list(dict.fromkeys(damage)))  # the trades are read twice
    if telemetry:
        res["latency"] = {k: {"processing_us": v["processing_us"]} for k, v in telemetry["timers"].items()}
    return res


def _fill_line(f: dict) -> str:
    return (f"  {f['time'][:23]}Z  {f['instrument']}  {f['side']:<4} {f['price']} x {f['size']}  "
            f"fee {f['fee']} {f['fee_asset']}  {f['liquidity']}")


def report(r: dict) -> str:
    """The result for people: prices and sizes as decimals, times in UTC."""
    quotes = sorted({v["quote"] for v in r.get("by_instrument", {}).values()})
    q = " " + "+".join(quotes) if quotes else ""
    lines = []
    if r.get("data_start"):
        lines.append(f"data          {r['data_start']} .. {r['data_end']} (UTC, first and last event)")
    lines += [
        f"events        {r['events']:>12,}   ({r['events_per_s']:,}/s over {r['run_s']} s; loading data "
        f"{r.get('load_s', 0)} s)",
        f"orders        {r['orders']:>12,}   cancels {r['cancels']:,}  amends {r['amends']:,}",
        f"fills         {r['fills']:>12,}   fees {r.get('fees_dec', r['fees'])}{q}",
        f"PnL           {r.get('pnl_dec', r['pnl']):>12}{q}   (positions marked at the last trade)",
        "positions     " + (", ".join(f"{k} {v}" for k, v in r["positions"].items()) or "flat"),
    ]
    if r.get("sharpe") is not None:
        lines.append(f"Sharpe        {r['sharpe']:>12}   annualised {r['sharpe_annualised']} ({r['sharpe_basis']})")
    elif r.get("fills"):
        lines.append("Sharpe                 n/a   (fewer than three whole intervals between PnL marks, or no "
                     "change: mark more often, --mark-every)")
    dd = r.get("max_drawdown")
    if dd and dd["peak"]:
        lines.append(f"max drawdown  {dd['amount']:>12}{q}   from the peak at {dd['peak'][:23]}Z "
                     f"to {dd['trough'][:23]}Z")
    fl = r.get("trade_list") or []
    if fl:
        where = r.get("fills_csv") or "the result's trade_list"
        if len(fl) <= 2 * SHOWN_FILLS:
            lines.append(f"fills (all {len(fl)}; also in {where}):")
            lines += [_fill_line(f) for f in fl]
        else:
            lines.append(f"fills (first and last {SHOWN_FILLS} of {len(fl):,}; all in {where}):")
            lines += [_fill_line(f) for f in fl[:SHOWN_FILLS]] + ["  ..."]
            lines += [_fill_line(f) for f in fl[-SHOWN_FILLS:]]
    lines.append(f"digest        {r['digest']}")
    d = r.get("damage")
    if d and d["chunks"]:
        lines.append(f"DAMAGED DATA  {d['chunks']:>12,}   parts skipped ({d['bytes']:,} bytes, "
                     f"{d['records']:,} records known lost): " + "; ".join(d["where"][:3]))
    if r.get("pnl_curve"):
        vals = [float(v) for _, v in r["pnl_curve"]]
        vals = [vals[i] for i in np.linspace(0, len(vals) - 1, min(40, len(vals))).astype(int)]
        lo, hi = min(vals), max(vals)
        marks = " ▁▂▃▄▅▆▇█"
        spark = "".join(marks[int((v - lo) / (hi - lo) * 8)] if hi > lo else marks[4] for v in vals)
        lines.append(f"PnL over time {spark}  ({lo:.2f} .. {hi:.2f})")
    if r.get("latency"):
        lines.append("processing per actor x stream (µs, wall clock): p50 / p99 / max, count")
        for k, v in r["latency"].items():
            p = v["processing_us"]
            lines.append(f"  {k:<24}{p['p50']:>8.2f} {p['p99']:>8.2f} {p['max']:>9.1f}  {p['count']:,}")
    lines.append(f"output        {r['out']}")
    return "\n".join(lines)
