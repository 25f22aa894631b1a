"""`mantra inspect` and `mantra tail`: look at a running system from outside, attaching read-only
by name (queues' write counters and published consumer cursors, the actors' status array).
Everything is opened through ``spine.shm``'s checks: files another user made or planted are refused,
never decoded and printed."""

from __future__ import annotations

import json
import time

from ..spine import Ring, SeqArray
from ..fixed import from_fixed
from ..spine.messages import ActorState, ActorStatus, L2Flags, Liquidity, OrderAction, OrderStatus, text
from ..spine.shm import read_text, systems
from ..venues.events import Status
from . import paths
from .clock import utc


def find_system(name: str | None) -> str:
    names = systems()
    if name:
        if name not in names:
            raise SystemExit(f"no running system {name!r} (running: {', '.join(names) or 'none'})")
        return name
    if len(names) != 1:
        raise SystemExit(f"name a system: running are {', '.join(names) or 'none'}")
    return names[0]


_UNREADABLE = object()


def _read_status(status, i):
    """An actor's status, None if never written, _UNREADABLE if its writer died mid-write (the
    seqlock read gives up): shown as such, never an error of the whole tool."""
    try:
        return status.read(i)[1]
    except Exception:  # noqa: BLE001 - whatever the array read raises for a slot it cannot settle
        return _UNREADABLE


def snapshot(system: str, sample: float = 0.5) -> dict:
    """Queues (writes, rate, consumers' lag and losses) and actors (state, counters, utilisation)."""
    d = paths.system_dir(system)
    man = json.loads(read_text(paths.manifest(d)))
    rings = {q: Ring.attach(paths.queue(d, q)) for q in man["queues"]}
    status = SeqArray.attach(paths.status(d), ActorStatus)
    try:
        c0 = {q: r.count() for q, r in rings.items()}
        a0 = {a: _read_status(status, v["id"]) for a, v in man["actors"].items()}
        t0 = time.monotonic()
        time.sleep(sample)
        dt = time.monotonic() - t0
        queues = {}
        for q, r in rings.items():
            c = r.count()
            queues[q] = {"type": man["queues"][q]["type"], "capacity": r.capacity, "writes": c,
                         "rate": round((c - c0[q]) / dt, 1), "consumers": r.consumers()}
        actors = {}
        for a, v in man["actors"].items():
            st = _read_status(status, v["id"])
            if st is None or st is _UNREADABLE:
                actors[a] = {"state": "UNKNOWN" if st is None else "UNREADABLE"}
                continue
            before = st if a0[a] is None or a0[a] is _UNREADABLE else a0[a]
            util = (st.busy_ns - before.busy_ns) / max(st.updated_ns - before.updated_ns, 1) \
                if st.updated_ns != before.updated_ns else None
            actors[a] = {"state": ActorState(st.state).name, "pid": st.pid, "handled": st.handled,
                         "loops": st.loops, "errors": st.errors,
                         "utilisation": round(util, 4) if util is not None else None}
        return {"system": system, "queues": queues, "actors": actors}
    finally:
        for r in rings.values():
            r.close()
        status.close()


def render(s: dict) -> str:
    out = [f"system {s['system']}", "", f"{'queue':<16}{'type':<14}{'writes':>12}{'msg/s':>12}  consumers (lag/lost)"]
    for q, v in s["queues"].items():
        cons = ", ".join(f"{c['label']}{'' if c['alive'] else '(dead)'} {c['lag']}/{c['lost']}" for c in v["consumers"])
        out.append(f"{q:<16}{v['type']:<14}{v['writes']:>12}{v['rate']:>12.0f}  {cons}")
    out += ["", f"{'actor':<16}{'state':<10}{'pid':>8}{'handled':>12}{'loops':>10}{'errors':>8}{'util':>8}"]
    for a, v in s["actors"].items():
        if "pid" not in v:
            out.append(f"{a:<16}{v['state']:<10}")
            continue
        u = "-" if v["utilisation"] is None else f"{v['utilisation'] * 100:.1f}%"
        out.append(f"{a:<16}{v['state']:<10}{v['pid']:>8}{v['handled']:>12}{v['loops']:>10}{v['errors']:>8}{u:>8}")
    return "\n".join(out)


_TIMES = ("origin", "publish", "exch_ts", "since_ns", "updated_ns")
_ENUMS = {"action": OrderAction, "liquidity": Liquidity}


def readable(name: str, fields: dict, registry) -> dict:
    """A message as people read it: prices and sizes as exact decimals at their instrument's
    scales (balances at their own), times as UTC, the instrument as venue:symbol, enums by name."""
    out = dict(fields)
    for k in _TIMES:
        if k in out:
            out[k] = utc(out[k]) if out[k] else None
    inst = registry.by_id.get(out.get("instrument")) if "instrument" in out and registry is not None else None
    if inst is not None:
        out["instrument"] = f"{inst.venue}:{inst.symbol}"
        for k, scale in (("price", inst.price_scale), ("size", inst.size_scale), ("filled", inst.size_scale),
                         ("fee", inst.price_scale)):
            if k in out:
                out[k] = from_fixed(out[k], scale)
    if name == "BalanceUpdate":
        for k in ("total", "available"):
            out[k] = from_fixed(out[k], out["scale"])
    status = {"OrderUpdate": OrderStatus, "BookStatus": Status, "ActorStatus": ActorState}.get(name)
    for k, enum in ({**_ENUMS, "status": status} if status else _ENUMS).items():
        if k in out:
            try:
                out[k] = enum(out[k]).name
            except ValueError:
                pass  # a value this version does not know: shown as it is
    if name == "L2Update":
        out["flags"] = "|".join(f.name for f in L2Flags if out["flags"] & f) or "0"
    return out


def tail(system: str, stream: str, limit: int = 0, timeout: float = 0.0, out=print, raw: bool = False) -> int:
    """Print decoded messages of one queue as they arrive (from now on), readable (``readable``)
    unless ``raw``.  Returns the count."""
    d = paths.system_dir(system)
    path = paths.queue(d, stream)
    if not path.exists():
        raise SystemExit(f"system {system} has no queue {stream!r}")
    ring = Ring.attach(path)
    c = ring.reader("tail", register=False)
    registry = None
    if not raw and (d / "instruments.json").exists():
        from ..feeds.actor import SharedRegistry

        registry = SharedRegistry(d / "instruments.json")
    n, deadline = 0, time.monotonic() + timeout if timeout else None
    try:
        while not limit or n < limit:
            m = c.wait(0.2)
            if m is None:
                if deadline and time.monotonic() >= deadline:
                    break
                continue
            origin, publish, publisher, _ = c.tracking()
            fields = {k: (text(v) if isinstance(v, bytes) else v) for k, v in m._asdict().items()}
            rec = {"type": type(m).__name__, "origin": origin, "publish": publish, "publisher": publisher, **fields}
            if not raw:
                if registry is not None and rec.get("instrument") not in registry.by_id:
                    registry.refresh()  # registered since (Kraken registers mid-run)
                rec = readable(rec["type"], rec, registry)
            out(json.dumps(rec))
            n += 1
        if c.lost:
            out(json.dumps({"lost": c.lost}))
    finally:
        ring.close()
    return n
