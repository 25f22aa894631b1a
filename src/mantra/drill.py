"""`mantra drill`: crash and venue-fault drills against a running, supervised system.

The demo's system (the five real feeds on the five local venue simulators, the models, the
overseer, the mock exchange, the persister, telemetry) runs under the supervisor in this process;
the drill then takes one step at a time:

* ``kill:<process>`` — SIGKILL of each of the system's processes; the supervisor restarts it;
* ``<venue>:<fault>`` — each venue fault, injected through the simulator's control path
  (``sim/server.py``: disconnect, lost frames, malformed frames, a refused snapshot,
  a wrong checksum, a stall, a reconnect request);

and after each step waits until every book is SYNCED and moving again.  At the end it freezes every
market, trips the overseer's kill switch (every order cancelled, none placed: the accounts stop
changing) and, once the books match and every venue's fills are on the spine, checks what a user
relies on:

* every book a consumer rebuilds from the spine equals the simulator's (at the feed's depth);
* the recording holds every record each queue carried exactly once: nothing lost, nothing twice;
* no order id was placed twice, no fill recorded twice, no order cancelled over and over;
* at each venue with order entry (its simulator's account): no order accepted twice, and every fill
  it made is in the recording once (the account handler's process is among those killed).

The result is a dict (``--json``); ``ok`` is true only if every step recovered and every check held.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

from . import demo
from .book import L2Book
from .fixed import to_fixed
from .runtime import paths
from .runtime.config import parse
from .spine import Ring
from .spine.messages import L2Flags, OrderAction
from .spine.shm import remove_system
from .store import segments
from .venues.events import Status
from .venues.registry import protocol_class
from .sim import stop_spawned

# The faults each venue's protocol can notice (Bitstamp has no sequence numbers, so a lost diff is
# found only by its periodic audit; a wrong checksum exists only where the venue sends one), and on
# the venues with order entry, faults of the order path (the final audit finds what they broke).
FAULTS = {
    "binance": ("disconnect", "drop", "rate_limit", "malformed"),
    "bitstamp": ("disconnect", "malformed", "slow"),
    "coinbase": ("disconnect", "drop", "slow"),
    "kraken": ("disconnect", "drop", "corrupt_checksum", "order_5xx", "stream_disconnect"),
    "bitfinex": ("disconnect", "drop", "corrupt_checksum", "reconnect_request"),
}
FAULT_ARGS = {"drop": 2, "slow": 2, "rate_limit": 2}  # frames lost, seconds stalled, snapshots refused
# (rate_limit is followed by a disconnect: the resync's snapshot requests are the ones refused)
LIVE = (Status.SYNCED, Status.UNVERIFIED)  # a book in step with its venue (UNVERIFIED: it cannot prove it)
MOVING = 3  # complete book messages per instrument that show a book is live again
MAX_CANCELS = 6  # cancel requests for one order beyond which the overseer is looping


def default_steps() -> list[str]:
    return [f"kill:{p}" for p in ("feeds", "trading", "orders", "back")] + [
        f"{v}:{f}" for v, fs in FAULTS.items() for f in fs]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


class Drill:
    """The drill's state machine, stepped by the supervisor's ``on_tick`` (every ~50 ms)."""

    def __init__(self, sup, urls: dict, steps: list[str], step_deadline_s: float, kill_file: Path | None = None):
        self.sup, self.urls, self.steps, self.kill_file = sup, urls, list(steps), kill_file
        self.step_deadline_s = step_deadline_s
        self.rings: dict[str, Ring] = {}
        self.books: dict[int, L2Book] = {}
        self.status: dict[int, int] = {}
        self.moves: Counter = Counter()  # iid -> complete book messages seen
        self.results: list[dict] = []
        self.phase = "warmup"
        self.step: str | None = None
        self.t_step = time.monotonic()
        self.mark: Counter = Counter()
        self.upset: set[str] = set()  # venues whose books left SYNCED since the step began
        self.old_pid = 0
        self.books_equal: dict | None = None
        self.done = False
        self.accounts: dict = {}  # venue -> its simulator's account, read once the orders stopped
        self.fills: Counter = Counter()  # venue -> fills on the spine
        self.fills_ring = None

    # -- reading the spine ------------------------------------------------------------------
    def _attach(self) -> bool:
        if not self.rings:
            d = paths.system_dir(self.sup.spec.name)
            try:
                rings = {q: Ring.attach(paths.queue(d, q)) for q in ("l2", "book_status")}
            except (FileNotFoundError, OSError):
                return False
            from .feeds.actor import system_registry

            self.rings = rings
            self.readers = {q: r.reader("drill", start=0, register=False) for q, r in rings.items()}
            self.fills_ring = Ring.attach(paths.queue(d, "fills"))
            self.fills_reader = self.fills_ring.reader("drill", start=0, register=False)
            self.registry = system_registry(self.sup.spec.name)
        return True

    def _drain(self) -> None:
        while len(b := self.readers["l2"].read_batch(8192)):
            for iid, side, px, sz, fl in zip(*(b[k].tolist() for k in ("instrument", "side", "price", "size", "flags"))):
                book = self.books.get(iid)
                if book is None:
                    book = self.books[iid] = L2Book()
                if fl & L2Flags.CLEAR:  # a restarted feed's snapshot cannot list what its predecessor had
                    book.clear()
                book.apply(side, px, sz)
                if fl & L2Flags.LAST:
                    self.moves[iid] += 1
        while len(b := self.fills_reader.read_batch(1024)):
            for iid in b["instrument"].tolist():
                self.fills[self._venue(iid)] += 1
        while len(b := self.readers["book_status"].read_batch(1024)):
            for iid, st in zip(b["instrument"].tolist(), b["status"].tolist()):
                self.status[iid] = st
                if st not in LIVE:
                    self.upset.add(self._venue(iid))

    def _venue(self, iid: int) -> str:
        try:
            return self.registry[iid].venue
        except KeyError:
            return "?"

    def _instruments(self) -> list[int]:
        wanted = {(v, s) for v, u in self.urls.items() for s in u["symbols"]}
        return [i.id for i in self._registry() if (i.venue, i.symbol) in wanted]

    def _steady(self) -> bool:
        iids = self._instruments()
        n = sum(len(u["symbols"]) for u in self.urls.values())
        return (len(iids) == n and all(self.status.get(i) in LIVE for i in iids)
                and all(self.moves[i] - self.mark[i] >= MOVING for i in iids))

    # -- the steps --------------------------------------------------------------------------
    def _begin(self, step: str) -> None:
        self.step, self.t_step, self.mark, self.upset = step, time.monotonic(), Counter(self.moves), set()
        what, _, arg = step.partition(":")
        if what == "kill":
            pr = self.sup.procs.get(arg)
            self.old_pid = pr.pid if pr is not None else 0
            if self.old_pid:
                os.kill(self.old_pid, signal.SIGKILL)
        else:
            n = FAULT_ARGS.get(arg)
            _get(f"{self.urls[what]['rest']}/__sim/fault/{arg}" + (f"?arg={n}" if n else ""))
            if arg == "rate_limit":  # refused snapshots matter on a resync: force one
                _get(f"{self.urls[what]['rest']}/__sim/fault/disconnect")
        self.phase = "step"

    def _recovered(self) -> bool:
        what, _, arg = self.step.partition(":")
        if what == "kill":
            pr = self.sup.procs.get(arg)
            if pr is None or pr.pid == self.old_pid or not pr.is_alive():
                return False
            if arg == "feeds" and not self.upset >= set(self.urls):
                return False  # every venue's books went through a resync
        elif arg in ("disconnect", "drop", "rate_limit", "corrupt_checksum", "reconnect_request"):
            if what not in self.upset:
                return False  # the feed noticed
        return self._steady()

    def tick(self) -> None:
        if self.done or not self._attach():
            return
        self._drain()
        now = time.monotonic()
        late = now - self.t_step > self.step_deadline_s
        if self.phase == "warmup":
            if self._steady():
                self.results.append({"step": "warmup", "ok": True, "s": round(now - self.t_step, 2)})
                self._next()
            elif late:
                self.results.append({"step": "warmup", "ok": False, "s": round(now - self.t_step, 2),
                                     "status": self._status_text()})
                self._converge()
        elif self.phase == "step":
            if self._recovered() or late:
                r = {"step": self.step, "ok": not late, "s": round(now - self.t_step, 2)}
                if late:
                    r["status"] = self._status_text()
                self.results.append(r)
                self._next()
        elif self.phase == "converge":
            same = self._compare()
            if all(same.values()) or late:
                self.books_equal = same
                self.phase, self.t_step = "settle", now
        elif self.phase == "settle":
            # The orders have stopped (kill switch): wait until each venue's account holds no open
            # order and every fill it made is on the spine, so the audit compares finished accounts.
            self.accounts = {v: _get(f"{self.urls[v]['rest']}/__sim/account") for v in demo.TRADED}
            settled = all(not a["open"] and a["fills"] == self.fills[v] for v, a in self.accounts.items())
            if settled or late:
                self.done = True
                self.sup.stopping = True

    def _next(self) -> None:
        if self.steps:
            self._begin(self.steps.pop(0))
        else:
            self._converge()

    def _converge(self) -> None:
        for u in self.urls.values():
            _get(f"{u['rest']}/__sim/pause")
        if self.kill_file is not None:
            self.kill_file.touch()
        self.phase, self.t_step, self.truth = "converge", time.monotonic(), None

    def _compare(self) -> dict[str, bool]:
        """Each instrument's rebuilt book against the frozen simulator's, at the feed's depth."""
        if self.truth is None:
            self.truth = {(v, s): _get(f"{u['rest']}/__sim/book/{s}") for v, u in self.urls.items()
                          for s in u["symbols"]}
        out = {}
        for inst in self._registry():
            t = self.truth.get((inst.venue, inst.symbol))
            if t is None:
                continue
            depth = protocol_class(inst.venue).default_depth or 10**9
            book = self.books.get(inst.id, L2Book())
            ok = True
            for side, key in ((1, "bids"), (-1, "asks")):
                want = [(to_fixed(p, inst.price_scale), to_fixed(q, inst.size_scale)) for p, q in t[key][:depth]]
                ok &= book.top(side, 10**9) == want
            out[f"{inst.venue}:{inst.symbol}"] = bool(ok)
        return out

    def _registry(self) -> list:
        self.registry.refresh()  # venues may register mid-run (Kraken)
        return list(self.registry)

    def _status_text(self) -> dict:
        return {f"{self._venue(i)}:{self.registry[i].symbol}": self.status.get(i) for i in self._instruments()}

    def close(self) -> None:
        for r in self.rings.values():
            r.close()
        self.rings = {}
        if self.fills_ring is not None:
            self.fills_ring.close()
            self.fills_ring = None

    def counts(self) -> dict[str, int]:
        return {q: r.count() for q, r in self.rings.items()}


def audit(out: Path, published: dict[str, int]) -> dict:
    """What the recording holds against what the queues carried; orders and fills counted once."""
    queues = {}
    for q in segments.queues(out):
        recs = segments.load(out, q)
        raw = np.ascontiguousarray(recs).view(np.dtype((np.void, recs.dtype.itemsize))) if len(recs) else recs
        dup = len(recs) - len(np.unique(raw)) if len(recs) else 0
        queues[q] = {"recorded": int(len(recs)), "duplicates": int(dup)}
        if q in published:
            queues[q]["published"] = published[q]
    req = segments.load(out, "requests") if "requests" in queues else None
    fills = segments.load(out, "fills") if "fills" in queues else None
    placed_twice = cancels_max = fills_twice = 0
    if req is not None and len(req):
        new = req["order_id"][req["action"] == OrderAction.NEW]
        placed_twice = int(len(new) - len(np.unique(new)))
        refs = req["ref_id"][req["action"] == OrderAction.CANCEL]
        cancels_max = int(np.unique(refs, return_counts=True)[1].max()) if len(refs) else 0
    if fills is not None and len(fills):
        keys = np.stack([fills["instrument"].astype(np.uint64), fills["order_id"], fills["trade_id"]], axis=1)
        fills_twice = int(len(keys) - len(np.unique(keys, axis=0)))
    return {"queues": queues, "orders_placed_twice": placed_twice, "fills_recorded_twice": fills_twice,
            "most_cancels_of_one_order": cancels_max}


def venue_audit(out: Path, accounts: dict, venue_of: dict[int, str]) -> dict:
    """Against each traded venue's own account (its simulator's truth, frozen): orders it accepted
    more than once per client id, and our recorded fills of that venue against the fills it made."""
    if not accounts:
        return {}
    fills = segments.load(out, "fills") if "fills" in segments.queues(out) else None
    res = {}
    for v, a in accounts.items():
        ours = 0 if fills is None else sum(1 for i in fills["instrument"].tolist() if venue_of.get(i) == v)
        res[v] = {"placed": len(a["placed"]), "placed_twice": sum(n > 1 for n in a["placed"].values()),
                  "fills": ours, "venue_fills": a["fills"]}
    return res


def run(steps: list[str] | None = None, out: str | Path | None = None, *, rate: float = 40.0,
        step_deadline_s: float = 30.0) -> dict:
    steps = default_steps() if steps is None else steps
    known = set(default_steps())
    bad = [s for s in steps if s not in known]
    if bad:
        raise ValueError(f"unknown drill step(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    out = Path(out) if out else Path("data/drill") / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    budget = step_deadline_s * (len(steps) + 2) + 120
    sims, urls = demo.start_simulators(rate, budget, out / "simulators.log")
    try:
        doc = demo.build(urls, out)
        for p in doc["processes"].values():
            p["restart"], p["max_restarts"] = "on-failure", 10
        kill_file = (out / "drill.kill").resolve()  # created at the end: the accounts stop changing
        kill_file.unlink(missing_ok=True)
        doc["actors"]["overseer"]["params"]["kill_file"] = str(kill_file)
        spec = parse(doc)
        sup = demo.Supervisor(spec, keep=True)
        drill = Drill(sup, urls, steps, step_deadline_s, kill_file)
        sup.on_tick = drill.tick
        t0 = time.monotonic()
        try:
            failures = sup.run(duration=budget)
            drill._drain()
            published = drill.counts()
        finally:
            drill.close()
            remove_system(spec.name)
    finally:
        stop_spawned(sims)
    result = {"out": str(out), "wall_s": round(time.monotonic() - t0, 1), "steps": drill.results,
              "process_deaths": failures, "books_equal": drill.books_equal or {}}
    result.update(audit(out, {"l2": published.get("l2", 0), "book_status": published.get("book_status", 0)}))
    result["venues"] = venue_audit(out, getattr(drill, "accounts", {}),
                                   {i.id: i.venue for i in getattr(drill, "registry", None) or ()})
    q = result["queues"]
    result["ok"] = bool(
        drill.done and len(drill.results) == len(steps) + 1 and all(r["ok"] for r in drill.results)
        and result["books_equal"] and all(result["books_equal"].values())
        and all(v["duplicates"] == 0 for v in q.values())
        and all(v["recorded"] == v["published"] for v in q.values() if "published" in v)
        and result["orders_placed_twice"] == 0 and result["fills_recorded_twice"] == 0
        and result["most_cancels_of_one_order"] <= MAX_CANCELS
        and set(result["venues"]) == set(demo.TRADED)
        and all(v["placed_twice"] == 0 and v["fills"] == v["venue_fills"] for v in result["venues"].values()))
    return result


def report(r: dict) -> str:
    lines = [f"drill {'PASSED' if r['ok'] else 'FAILED'} in {r['wall_s']} s (recorded to {r['out']})"]
    lines += [f"  {s['step']:<28} {'recovered' if s['ok'] else 'DID NOT RECOVER'} in {s['s']} s"
              + ("" if s["ok"] else f"  {s.get('status')}") for s in r["steps"]]
    bad = [k for k, v in r["books_equal"].items() if not v]
    lines.append(f"  books equal to the venues': {len(r['books_equal']) - len(bad)}/{len(r['books_equal'])}"
                 + (f"  differ: {', '.join(bad)}" if bad else ""))
    for q, v in sorted(r["queues"].items()):
        pub = f" of {v['published']} published" if "published" in v else ""
        lines.append(f"  {q:<12} {v['recorded']} recorded{pub}, {v['duplicates']} duplicates")
    lines.append(f"  orders placed twice {r['orders_placed_twice']}, fills recorded twice "
                 f"{r['fills_recorded_twice']}, most cancels of one order {r['most_cancels_of_one_order']}")
    for v, a in sorted(r["venues"].items()):
        lines.append(f"  {v:<12} at the venue: {a['placed']} orders placed, {a['placed_twice']} twice; fills "
                     f"{a['fills']} recorded of {a['venue_fills']} made")
    return "\n".join(lines)
