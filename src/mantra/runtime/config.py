"""A system described in TOML: queues, seqlock arrays, actors and their placement in processes.

    [system]
    name = "hello"
    mode = "paper"               # where orders go: paper (the mock exchange), sim (the account
                                 #   handlers against local venue simulators), live (real venues:
                                 #   `mantra run --live` only, with credentials)
    clock = "realtime"           # or "deterministic": one process, simulated clock, fixed order
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

    [simulators.kraken]          # optional: a local venue simulator started with the system (tests,
    seed = 3                     #   drills); the system's Feeds for that venue that name no URL
    rate = 40.0                  #   connect to it, and its account handlers in sim mode.  faults:
                                 #   [seconds after start, name, argument?]; balances (order entry):
                                 #   the account's, { BTC = "0.5", USD = "20000" }
    faults = [[5, "disconnect"], [8, "drop", 2]]

    [processes.hot]
    actors = ["source"]
    mode = "spin"                # spin (busy-poll, at most two on a 2-core box) or park (futex)
    cpu = 0                      # pin to this CPU (optional)
    restart = "on-failure"       # never | on-failure | always
    max_restarts = 3
    timing = 65536               # timing ring records (power of two): per-message timings kept

Everything is checked before anything starts, and the first problem is one ``ConfigError`` naming
the file, the key and what was expected: unknown keys, values of the wrong type, actor classes
that do not import, params the class does not take (``Actor.known_params``) or whose values its
constructor refuses, ports bound that the actor does not have or ports it has left unbound, a
queue or array of another message type than the port declares (``Actor.messages``), instruments
listed twice with different terms.  The system's instruments (``[system] instruments`` and every
actor's inline ``instruments`` list) are registered when the spine is created, before any process
starts, so every actor and feed sees the same instruments whichever starts first.
"""

from __future__ import annotations

import importlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..spine.messages import BY_NAME
from ..spine.shm import check_name
from .actor import Actor


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
        except Exception as e:  # not found, or the module failed while importing
            raise ConfigError(f"actors.{self.name}.class: cannot load {self.cls!r}: "
                              f"{type(e).__name__}: {e}") from None


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
    clock: str  # realtime | deterministic
    queues: dict[str, QueueSpec]
    arrays: dict[str, ArraySpec]
    actors: dict[str, ActorSpec]
    processes: dict[str, ProcessSpec]
    source: dict = field(default_factory=dict)
    instruments: list = field(default_factory=list)  # inline instrument specs for every actor
    simulators: dict = field(default_factory=dict)  # venue -> simulator options (``[simulators.<venue>]``)
    mode: str = "paper"  # where orders go: paper | sim | live

    def register_instruments(self) -> None:
        """Register the system's instruments in its shared registry (the spine's directory must
        exist): before any actor starts, so none depends on which process registers first."""
        from ..trading.common import register_instruments

        register_instruments(self.name, system_instruments(self))


_SECTIONS = ("system", "queues", "arrays", "actors", "processes", "simulators")
_PORTS = ("inputs", "outputs", "arrays")
# key -> expected type, per kind of table
_KEYS = {
    "system": {"name": str, "mode": str, "clock": str, "instruments": list},
    "queue": {"type": str, "capacity": int, "mpmc": bool},
    "array": {"type": str, "size": int},
    "actor": {"class": str, "params": dict, "inputs": dict, "outputs": dict, "arrays": dict},
    "process": {"actors": list, "mode": str, "cpu": int, "restart": str, "max_restarts": int, "timing": int},
    "simulator": {"seed": int, "rate": float, "levels": int, "lifetime": float, "faults": list, "balances": dict},
}
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
               dict: "a table"}


def _is(v, t) -> bool:
    if t is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, t) and not (t is int and isinstance(v, bool))


def _table(where: str, d, kind: str | None = None) -> dict:
    """``d`` as a table, its keys and their value types checked against ``_KEYS[kind]``."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a table, not {d!r}")
    if kind is None:
        return d
    keys = _KEYS[kind]
    for k, v in d.items():
        t = keys.get(k)
        if t is None:
            raise ConfigError(f"{where}.{k}: unknown key (known: {', '.join(keys)})")
        if not _is(v, t):
            raise ConfigError(f"{where}.{k}: expected {_TYPE_NAMES[t]}, not {v!r}")
    return d


def _msg_type(where: str, name: str):
    t = BY_NAME.get(name)
    if t is None:
        raise ConfigError(f"{where}: unknown message type {name!r} (known: {', '.join(sorted(BY_NAME))})")
    return t


def parse(doc: dict) -> SystemSpec:
    """A checked ``SystemSpec`` from a parsed TOML document (see the module doc)."""
    _table("the file", doc)
    for k in doc:
        if k not in _SECTIONS:
            raise ConfigError(f"{k}: unknown section (known: {', '.join(_SECTIONS)})")
    sysd = _table("system", doc.get("system", {}), "system")
    name = sysd.get("name", "mantra")
    _name("system.name", name)
    mode, clock = sysd.get("mode", "paper"), sysd.get("clock", "realtime")
    if mode in ("realtime", "deterministic"):
        raise ConfigError(f"system.mode: says where orders go now (paper, sim or live); for the clock write "
                          f"clock = {mode!r}")
    if mode not in MODES:
        raise ConfigError(f"system.mode: expected one of {', '.join(MODES)}, not {mode!r}")
    if clock not in ("realtime", "deterministic"):
        raise ConfigError(f"system.clock: expected realtime or deterministic, not {clock!r}")
    instruments = sysd.get("instruments", [])
    if not all(isinstance(i, dict) and "venue" in i and "symbol" in i for i in instruments):
        raise ConfigError("system.instruments must be a list of tables, each with venue and symbol")
    queues = {}
    for qn, q in _table("queues", doc.get("queues", {})).items():
        where = f"queues.{qn}"
        _table(where, q, "queue")
        _name(where, qn)
        cap = q.get("capacity", 1 << 16)
        if cap < 2 or cap & (cap - 1):
            raise ConfigError(f"{where}.capacity: expected a power of two, not {cap}")
        queues[qn] = QueueSpec(qn, _msg_type(f"{where}.type", q.get("type", "")), cap, q.get("mpmc", False))
    arrays = {}
    for an, a in _table("arrays", doc.get("arrays", {})).items():
        where = f"arrays.{an}"
        _table(where, a, "array")
        _name(where, an)
        size = a.get("size", 1)
        if size < 1:
            raise ConfigError(f"{where}.size: expected at least 1, not {size}")
        arrays[an] = ArraySpec(an, _msg_type(f"{where}.type", a.get("type", "")), size)
    actors = {}
    for i, (an, a) in enumerate(_table("actors", doc.get("actors", {})).items(), start=1):
        where = f"actors.{an}"
        _table(where, a, "actor")
        if "class" not in a:
            raise ConfigError(f"{where}.class: missing (\"module:Class\")")
        spec = ActorSpec(an, a["class"], i, dict(a.get("params", {})), dict(a.get("inputs", {})),
                         dict(a.get("outputs", {})), dict(a.get("arrays", {})))
        for kind in _PORTS:
            known, what = (arrays, "array") if kind == "arrays" else (queues, "queue")
            for port, target in getattr(spec, kind).items():
                if not isinstance(target, str):
                    raise ConfigError(f"{where}.{kind}.{port}: expected the name of a {what}, not {target!r}")
                if target not in known:
                    raise ConfigError(f"{where}.{kind}.{port}: unknown {what} {target!r}")
        actors[an] = spec
    procs, placed = {}, {}
    for pn, p in _table("processes", doc.get("processes", {})).items():
        where = f"processes.{pn}"
        _table(where, p, "process")
        _name(where, pn)
        ps = ProcessSpec(pn, list(p.get("actors", [])), p.get("mode", "park"), p.get("cpu"),
                         p.get("restart", "on-failure"), p.get("max_restarts", 3), p.get("timing", 1 << 16))
        if ps.timing < 2 or ps.timing & (ps.timing - 1):
            raise ConfigError(f"{where}: timing must be a power of two, not {ps.timing}")
        if ps.mode not in ("spin", "park"):
            raise ConfigError(f"{where}.mode: expected spin or park, not {ps.mode!r}")
        if ps.restart not in ("never", "on-failure", "always"):
            raise ConfigError(f"{where}.restart: expected never, on-failure or always, not {ps.restart!r}")
        if ps.max_restarts < 0 or (ps.cpu is not None and ps.cpu < 0):
            raise ConfigError(f"{where}: cpu and max_restarts cannot be negative")
        for an in ps.actors:
            if an not in actors:
                raise ConfigError(f"{where}.actors: unknown actor {an!r}")
            if an in placed:
                raise ConfigError(f"{where}.actors: actor {an} is placed in both {placed[an]} and {pn}")
            placed[an] = pn
        procs[pn] = ps
    unplaced = [a for a in actors if a not in placed]
    if unplaced:
        # Unplaced actors share one parked process: placement is an optimisation, not a requirement.
        procs.setdefault("main", ProcessSpec("main", []))
        procs["main"].actors.extend(unplaced)
    spinning = [p for p in procs.values() if p.mode == "spin"]
    if len(spinning) > 2:
        raise ConfigError(f"processes: {len(spinning)} spinning processes: this engine allows at most two busy "
                          "pollers per machine of two cores; park the rest")
    producers: dict[str, list[str]] = {}
    for a in actors.values():
        for qn in a.outputs.values():
            producers.setdefault(qn, []).append(a.name)
    for qn, who in producers.items():
        if len(who) > 1 and not queues[qn].mpmc:
            raise ConfigError(f"queues.{qn}.mpmc: the queue has producers {who}: set mpmc = true")
    sims = {v: _simulator(f"simulators.{v}", v, s) for v, s in _table("simulators", doc.get("simulators", {})).items()}
    spec = SystemSpec(name, clock, queues, arrays, actors, procs, doc, instruments, sims, mode)
    for a in actors.values():
        _check_actor(spec, a)
    _check_instruments(spec)
    _check_mode(spec)
    return spec


MODES = ("paper", "sim", "live")


def _check_mode(spec: SystemSpec) -> None:
    """Where orders go agrees with who handles them: the mock exchange plays venues in paper mode
    (and in sim mode the venues without a handler yet); real account handlers need sim or live, sim
    handlers a simulator of their venue, live no mock venue at all, and neither a simulated clock."""
    from ..execution.actor import VenueAccount
    from ..trading.mock_exchange import MockExchange

    for a in spec.actors.values():
        cls = a.load_class()
        where = f"actors.{a.name}"
        if issubclass(cls, VenueAccount):
            venue = str(a.params.get("venue", "")).lower()
            if spec.mode == "paper":
                raise ConfigError(f"{where}: a VenueAccount places real orders, but system.mode is \"paper\" "
                                  "(the mock exchange): set mode = \"sim\" (local simulators) or \"live\"")
            if spec.clock == "deterministic":
                raise ConfigError(f"{where}: a VenueAccount talks to a venue in real time: system.clock must be "
                                  "\"realtime\"")
            if spec.mode == "sim" and venue not in spec.simulators and not a.params.get("options"):
                raise ConfigError(f"{where}: mode \"sim\" needs a [simulators.{venue}] table for this handler "
                                  "(or its options pointing at a simulator)")
            if "live" in a.params:
                raise ConfigError(f"{where}.params.live: set by `mantra run --live` alone, never in a file")
        elif issubclass(cls, MockExchange) and spec.mode == "live":
            raise ConfigError(f"{where}: the mock exchange cannot play a venue in live mode: give each traded "
                              "venue a VenueAccount (mantra.execution.actor:VenueAccount)")


def _simulator(where: str, venue: str, s) -> dict:
    """A ``[simulators.<venue>]`` table, checked: the venue has a simulator, the faults exist."""
    from ..sim import SIMULATORS, parse_fault

    _table(where, s, "simulator")
    if venue not in SIMULATORS:
        raise ConfigError(f"{where}: no simulator for venue {venue!r} (known: {', '.join(SIMULATORS)})")
    out = {k: v for k, v in s.items() if k != "faults"}
    if out.get("balances"):
        from ..sim.spawn import ORDER_ENTRY

        if venue not in ORDER_ENTRY:
            raise ConfigError(f"{where}.balances: the {venue} simulator has no order entry (have: "
                              f"{', '.join(ORDER_ENTRY)})")
        for asset, amount in out["balances"].items():
            if not isinstance(amount, str):
                raise ConfigError(f"{where}.balances.{asset}: expected decimal text such as \"0.5\", not {amount!r}")
    if out.get("rate", 1) <= 0 or out.get("levels", 1) < 1 or out.get("lifetime", 1) <= 0:
        raise ConfigError(f"{where}: rate and lifetime must be > 0, levels at least 1")
    faults = []
    for f in s.get("faults", []):
        ok = isinstance(f, list) and len(f) in (2, 3) and _is(f[0], float) and f[0] >= 0 and isinstance(f[1], str)
        if not ok:
            raise ConfigError(f"{where}.faults: each fault is [seconds after start, name] or [seconds, name, "
                              f"argument], not {f!r}")
        try:
            faults.append((float(f[0]), *parse_fault(f[1], f[2] if len(f) == 3 else None)))
        except ValueError as e:
            raise ConfigError(f"{where}.faults: {e}") from None
    out["faults"] = faults
    return out


def _name(where: str, name: str) -> None:
    try:
        check_name(name)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def _check_actor(spec: SystemSpec, a: ActorSpec) -> None:
    """Import the actor's class, build it with its params (constructors only keep and check
    them: the work starts in on_start, in its process) and check its ports against the bindings."""
    where = f"actors.{a.name}"
    cls = a.load_class()
    if not (isinstance(cls, type) and issubclass(cls, Actor)):
        raise ConfigError(f"{where}.class: {a.cls} is not an Actor")
    known = cls.known_params()
    for k in a.params:
        if k not in known:
            raise ConfigError(f"{where}.params.{k}: unknown param of {a.cls} "
                              f"(known: {', '.join(sorted(known)) or 'none'})")
    try:
        actor = cls(**a.params)
    except Exception as e:  # the class's own check of its params, whatever it raises
        raise ConfigError(f"{where}.params: {e}") from None
    types = actor.messages
    for kind in _PORTS:
        declared, bound = tuple(getattr(actor, kind)), getattr(a, kind)
        what = "array" if kind == "arrays" else kind[:-1]
        for port in bound:
            if port not in declared:
                raise ConfigError(f"{where}.{kind}.{port}: {a.cls} has no {what} port {port!r} "
                                  f"(its {kind}: {', '.join(declared) or 'none'})")
        for port in declared:
            if port not in bound:
                raise ConfigError(f"{where}.{kind}: {what} port {port!r} of {a.cls} is not bound "
                                  f"to {'an array' if kind == 'arrays' else 'a queue'}")
            if kind == "inputs" and not callable(getattr(actor, f"on_{port}", None)):
                raise ConfigError(f"{where}.inputs.{port}: {a.cls} has no handler on_{port}(msg)")
            want = types.get(port)
            target = bound[port]
            have = (spec.arrays[target] if kind == "arrays" else spec.queues[target]).type
            if isinstance(want, str):
                want = BY_NAME.get(want, want)
            if want is not None and want is not have:
                raise ConfigError(f"{where}.{kind}.{port}: the port carries {getattr(want, '__name__', want)}, "
                                  f"{'array' if kind == 'arrays' else 'queue'} {target!r} holds {have.__name__}")


def system_instruments(spec: SystemSpec) -> list[tuple[str, dict]]:
    """(where, inline spec) for every instrument the system lists: ``[system] instruments``, then
    each actor's ``instruments`` param when it is a list (a path names a saved registry)."""
    out = [(f"system.instruments[{i}]", d) for i, d in enumerate(spec.instruments)]
    for a in spec.actors.values():
        own = a.params.get("instruments")
        if isinstance(own, (list, tuple)):
            out += [(f"actors.{a.name}.params.instruments[{i}]", d) for i, d in enumerate(own)]
    return out


def _check_instruments(spec: SystemSpec) -> None:
    """Every listed instrument is well formed, and one listed twice has the same terms."""
    from ..instruments import InstrumentRegistry
    from ..trading.common import register_spec

    reg = InstrumentRegistry()
    for where, d in system_instruments(spec):
        try:
            register_spec(reg, d)
        except (TypeError, ValueError, KeyError) as e:
            raise ConfigError(f"{where}: {e}") from None


def load(path: str | Path) -> SystemSpec:
    """The system a TOML file describes, checked; any problem is a ConfigError naming the file."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it: {e.strerror or e}") from None
    try:
        return parse(tomllib.loads(text))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
