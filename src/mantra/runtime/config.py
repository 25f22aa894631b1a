"""A system described in TOML: queues, seqlock arrays, actors and their placement in processes.

    [system]
    name = "hello"
    mode = "realtime"            # or "deterministic": one process, simulated clock, fixed order
    instruments = [              # optional: every trading actor's instruments, listed once
      { venue = "coinbase", symbol = "BTC-USD", base = "BTC", quote = "USD", price_scale = 2,
        size_scale = 8, tick = "0.01", lot = "0.00000001", min_size = "0.0001", min_notional = "1" },
    ]

    [queues.ticks]
    type = "L2Update"            # a message type from mantra.spine.messages
    capacity = 65536             # power of two
    mpmc = false                 # several producers?

    [arrays.ideal]
    type = "IdealOrder"
    size = 16

    [actors.source]
    class = "mantra.examples.hello:Source"
    params = { rate = 10000 }
    outputs = { out = "ticks" }  # actor port -> queue
    inputs = {}                  # actor port -> queue; handler is on_<port>(msg)
    arrays = {}                  # actor port -> array

    [processes.hot]
    actors = ["source"]
    mode = "spin"                # spin (busy-poll, at most two on a 2-core box) or park (futex)
    cpu = 0                      # pin to this CPU (optional)
    restart = "on-failure"       # never | on-failure | always
    max_restarts = 3
    timing = 65536               # timing ring records (power of two): per-message timings kept
"""

from __future__ import annotations

import importlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..spine.messages import BY_NAME
from ..spine.shm import check_name


class ConfigError(ValueError):
    pass


@dataclass
class QueueSpec:
    name: str
    type: type
    capacity: int = 1 << 16
    mpmc: bool = False


@dataclass
class ArraySpec:
    name: str
    type: type
    size: int


@dataclass
class ActorSpec:
    name: str
    cls: str
    id: int
    params: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)

    def load_class(self):
        mod, _, attr = self.cls.partition(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"actor {self.name}: cannot load class {self.cls!r}: {e}") from None


@dataclass
class ProcessSpec:
    name: str
    actors: list[str]
    mode: str = "park"
    cpu: int | None = None
    restart: str = "on-failure"
    max_restarts: int = 3
    timing: int = 1 << 16


@dataclass
class SystemSpec:
    name: str
    mode: str
    queues: dict[str, QueueSpec]
    arrays: dict[str, ArraySpec]
    actors: dict[str, ActorSpec]
    processes: dict[str, ProcessSpec]
    source: dict = field(default_factory=dict)
    instruments: list = field(default_factory=list)  # inline instrument specs for every actor


def _msg_type(where: str, name: str):
    t = BY_NAME.get(name)
    if t is None:
        raise ConfigError(f"{where}: unknown message type {name!r} (known: {', '.join(sorted(BY_NAME))})")
    return t


def parse(doc: dict) -> SystemSpec:
    sysd = doc.get("system", {})
    name = check_name(str(sysd.get("name", "mantra")))
    mode = sysd.get("mode", "realtime")
    if mode not in ("realtime", "deterministic"):
        raise ConfigError(f"system.mode must be realtime or deterministic, not {mode!r}")
    instruments = sysd.get("instruments", [])
    if not isinstance(instruments, list) or not all(isinstance(i, dict) and "venue" in i and "symbol" in i
                                                    for i in instruments):
        raise ConfigError("system.instruments must be a list of tables, each with venue and symbol")
    queues = {}
    for qn, q in doc.get("queues", {}).items():
        check_name(qn)
        cap = int(q.get("capacity", 1 << 16))
        if cap < 2 or cap & (cap - 1):
            raise ConfigError(f"queue {qn}: capacity {cap} is not a power of two")
        queues[qn] = QueueSpec(qn, _msg_type(f"queue {qn}", q.get("type", "")), cap, bool(q.get("mpmc", False)))
    arrays = {}
    for an, a in doc.get("arrays", {}).items():
        check_name(an)
        arrays[an] = ArraySpec(an, _msg_type(f"array {an}", a.get("type", "")), int(a.get("size", 1)))
    actors = {}
    for i, (an, a) in enumerate(doc.get("actors", {}).items(), start=1):
        if "class" not in a:
            raise ConfigError(f"actor {an}: missing class = \"module:Class\"")
        spec = ActorSpec(an, a["class"], i, dict(a.get("params", {})), dict(a.get("inputs", {})),
                         dict(a.get("outputs", {})), dict(a.get("arrays", {})))
        for port, qn in {**spec.inputs, **spec.outputs}.items():
            if qn not in queues:
                raise ConfigError(f"actor {an}: port {port} names unknown queue {qn!r}")
        for port, arn in spec.arrays.items():
            if arn not in arrays:
                raise ConfigError(f"actor {an}: port {port} names unknown array {arn!r}")
        actors[an] = spec
    procs, placed = {}, {}
    for pn, p in doc.get("processes", {}).items():
        check_name(pn)
        ps = ProcessSpec(pn, list(p.get("actors", [])), p.get("mode", "park"), p.get("cpu"),
                         p.get("restart", "on-failure"), int(p.get("max_restarts", 3)), int(p.get("timing", 1 << 16)))
        if ps.timing < 2 or ps.timing & (ps.timing - 1):
            raise ConfigError(f"process {pn}: timing must be a power of two, not {ps.timing}")
        if ps.mode not in ("spin", "park"):
            raise ConfigError(f"process {pn}: mode must be spin or park, not {ps.mode!r}")
        if ps.restart not in ("never", "on-failure", "always"):
            raise ConfigError(f"process {pn}: restart must be never, on-failure or always")
        for an in ps.actors:
            if an not in actors:
                raise ConfigError(f"process {pn}: unknown actor {an!r}")
            if an in placed:
                raise ConfigError(f"actor {an} placed in both {placed[an]} and {pn}")
            placed[an] = pn
        procs[pn] = ps
    unplaced = [a for a in actors if a not in placed]
    if unplaced:
        # Unplaced actors share one parked process: placement is an optimisation, not a requirement.
        procs.setdefault("main", ProcessSpec("main", []))
        procs["main"].actors.extend(unplaced)
    spinning = [p for p in procs.values() if p.mode == "spin"]
    if len(spinning) > 2:
        raise ConfigError(f"{len(spinning)} spinning processes: this engine allows at most two busy pollers "
                          "per machine of two cores; park the rest")
    producers: dict[str, list[str]] = {}
    for a in actors.values():
        for qn in a.outputs.values():
            producers.setdefault(qn, []).append(a.name)
    for qn, who in producers.items():
        if len(who) > 1 and not queues[qn].mpmc:
            raise ConfigError(f"queue {qn} has producers {who}: set mpmc = true")
    return SystemSpec(name, mode, queues, arrays, actors, procs, doc, instruments)


def load(path: str | Path) -> SystemSpec:
    try:
        doc = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    return parse(doc)
