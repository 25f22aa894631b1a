"""`mantra run`: create a system's spine, start its processes, watch them, stop them cleanly.

SIGINT/SIGTERM stop every actor (stop hooks run) and remove the system's shared-memory directory.
A process that dies is reported and restarted per its policy, with backoff; its consumers resume
from the positions they published, its producers finish any slot left half-written.

One system per name: ``create_spine`` takes the system's lock (``shm.lock_system``) for the life of
the process that creates it, so a second start is refused while the first lives.  Every actor
process is killed by the kernel when the supervisor dies (even by SIGKILL), and the next start
takes over what a dead supervisor left: it names it, kills any process it recorded that still
runs, and clears its files.
"""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing as mp
import os
import signal
import threading
import time

from ..spine import Ring, SeqArray, shm
from ..spine.messages import ActorState, ActorStatus
from ..spine.shm import release_system, remove_system
from . import paths
from .clock import SimClock
from .config import SystemSpec
from .process import Runner, pin
from .summary import RunSummary
from ..sim import account_options, feed_options, spawn, stop_spawned

log = logging.getLogger("mantra.supervisor")
GRACE_S = 5.0


def create_spine(spec: SystemSpec, *, fresh: bool = True):
    """Make every queue and array of the system; returns the status array (kept by the caller).

    Takes the system's lock for this process (``shm.SystemRunning`` if another live process has
    it), released by ``remove_system`` / ``release_system`` or this process's end."""
    lock = shm.lock_system(spec.name)
    try:
        if lock.previous:
            take_over(spec.name, lock.previous)
        if fresh:
            shm.clear_system(lock)
        return _create(spec, fresh)
    except BaseException:
        remove_system(spec.name)
        raise


def take_over(system: str, previous: dict) -> None:
    """The lock's last holder died without stopping its system: say so, kill the processes it
    recorded that still run (each known by pid and start time, so a reused pid is left alone)."""
    log.warning("system %s: taking over from supervisor pid %s, which died without stopping it; "
                "cleaning up what it left", system, previous.get("pid", "?"))
    stale = []
    for pname, rec in (previous.get("processes") or {}).items():
        try:
            pid, start = int(rec[0]), rec[1]
        except (TypeError, ValueError, IndexError):
            continue
        if start is not None and shm.proc_start(pid) == start:
            log.warning("system %s: killing process %s (pid %d), left running by the dead supervisor",
                        system, pname, pid)
            try:
                os.kill(pid, signal.SIGKILL)
                stale.append((pid, start))
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + GRACE_S
    while any(shm.proc_start(pid) == start for pid, start in stale) and time.monotonic() < deadline:
        time.sleep(0.02)


def _create(spec: SystemSpec, fresh: bool):
    d = paths.system_dir(spec.name)
    for q in spec.queues.values():
        Ring.create(paths.queue(d, q.name), q.type, q.capacity, mpmc=q.mpmc, recreate=fresh).close()
    for a in spec.arrays.values():
        SeqArray.create(paths.array(d, a.name), a.type, a.size, recreate=fresh).close()
    status = SeqArray.create(paths.status(d), ActorStatus, max([a.id for a in spec.actors.values()] + [0]) + 1,
                             recreate=fresh)
    manifest = {
        "name": spec.name,
        "mode": spec.mode,
        "clock": spec.clock,
        "created_ns": time.time_ns(),
        "supervisor_pid": os.getpid(),
        "queues": {q.name: {"type": q.type.__name__, "capacity": q.capacity, "mpmc": q.mpmc}
                   for q in spec.queues.values()},
        "arrays": {a.name: {"type": a.type.__name__, "size": a.size} for a in spec.arrays.values()},
        "actors": {a.name: {"id": a.id, "class": a.cls, "inputs": a.inputs, "outputs": a.outputs,
                            "arrays": a.arrays} for a in spec.actors.values()},
        "processes": {p.name: {"actors": p.actors, "mode": p.mode, "cpu": p.cpu, "restart": p.restart}
                      for p in spec.processes.values()},
        "instruments": spec.instruments,
    }
    shm.write_text(paths.manifest(d), json.dumps(manifest, indent=1))
    spec.register_instruments()  # before any actor starts: none depends on who registers first
    return status


def _libc_prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()  # looked up before any fork: a child calls it and nothing else
PR_SET_PDEATHSIG = 1
_forked_from = os.getpid()


def _remember_parent() -> None:
    global _forked_from
    _forked_from = os.getpid()  # runs in the parent just before each fork: the child keeps it


os.register_at_fork(before=_remember_parent)


def die_with_parent(parent: int | None = None) -> None:
    """Call in a process right after it is forked (or as a ``preexec_fn``) from ``parent`` (default:
    the process that forked this one): the kernel SIGKILLs it when the parent dies, even by
    SIGKILL, so nothing Mantra starts outlives it.  A parent that died before the request leaves
    the signal unsent: then die now."""
    parent = _forked_from if parent is None else parent
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def _child(spec: SystemSpec, pname: str, parent: int) -> None:
    die_with_parent(parent)
    p = spec.processes[pname]
    pin(p.cpu)
    runner = Runner(spec, p.actors, process=pname, mode=p.mode, timing_capacity=p.timing)
    stop = lambda *_: runner.request_stop()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.run()


class Supervisor:
    def __init__(self, spec: SystemSpec, *, keep: bool = False):
        self.spec, self.keep = spec, keep
        self.ctx = mp.get_context("fork")
        self.procs: dict[str, mp.Process] = {}
        self.restarts = {p: 0 for p in spec.processes}
        self.next_start: dict[str, float] = {}
        self.exits: list[dict] = []
        self.stopping = False
        self.on_tick = None  # called every supervision round (~50 ms), e.g. to draw a status
        self.final_telemetry = None  # the telemetry snapshot at shutdown, if any

    def _start(self, pname: str) -> None:
        pr = self.ctx.Process(target=_child, args=(self.spec, pname, os.getpid()), name=f"mantra:{pname}",
                              daemon=False)
        pr.start()
        self.procs[pname] = pr
        self._note(pname, pr.pid)
        log.info("process %s started (pid %d)", pname, pr.pid)

    def _note(self, pname: str, pid: int | None) -> None:
        """Record the process in the system's lock, for the next start if this supervisor dies."""
        lock = shm.held(self.spec.name)
        if lock is not None:
            try:
                lock.note(pname, pid)
            except OSError as e:
                log.warning("could not record process %s in the system's lock: %s", pname, e)

    def _mark_crashed(self, pname: str) -> None:
        """Mark the dead process's actors CRASHED.  A slot it left half-written cannot be read
        (the read gives up and raises): it is reported as unreadable and the rest carry on."""
        for an in self.spec.processes[pname].actors:
            aid = self.spec.actors[an].id
            try:
                v, st = self.status.read(aid)
                if st is None and v & 1:  # it died writing its status: start from a blank one
                    st = ActorStatus(0, 0, 0, 0, 0, 0, 0, 0)
                if st is not None:
                    self.status.write(aid, st._replace(state=int(ActorState.CRASHED)), 1, 0)
            except Exception as e:  # noqa: BLE001 - a crash report must never crash the supervisor
                log.error("process %s: actor %s's status (slot %d) is unreadable, left as it is: %s: %s",
                          pname, an, aid, type(e).__name__, e)

    def run(self, duration: float | None = None) -> int:
        """Run until a signal (or ``duration`` seconds); returns the number of process failures."""
        self.status = create_spine(self.spec)
        self.sims = start_simulators(self.spec)
        self.summary = RunSummary(self.spec)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        failures = 0
        deadline = time.monotonic() + duration if duration else None
        try:
            for pname in self.spec.processes:
                self._start(pname)
            while not self.stopping:
                if deadline and time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
                self.summary.drain()
                if self.on_tick:
                    self.on_tick()
                now = time.monotonic()
                for pname, pr in list(self.procs.items()):
                    if pr.is_alive() or self.stopping:
                        continue
                    code = pr.exitcode
                    pr.join()
                    del self.procs[pname]
                    self._note(pname, None)
                    ps = self.spec.processes[pname]
                    failed = code != 0
                    failures += failed
                    how = f"killed by signal {-code}" if code and code < 0 else f"exit code {code}"
                    self.exits.append({"process": pname, "pid": pr.pid, "exitcode": code, "t": time.time()})
                    if failed:
                        self._mark_crashed(pname)
                        log.error("process %s (pid %d) died: %s", pname, pr.pid, how)
                    else:
                        log.info("process %s (pid %d) finished", pname, pr.pid)
                    again = ps.restart == "always" or (ps.restart == "on-failure" and failed)
                    if again and self.restarts[pname] < ps.max_restarts:
                        self.restarts[pname] += 1
                        delay = min(0.2 * 2 ** (self.restarts[pname] - 1), 5.0)
                        self.next_start[pname] = now + delay
                        log.warning("restarting %s in %.1fs (restart %d of %d)", pname, delay,
                                    self.restarts[pname], ps.max_restarts)
                    elif again:  # a system missing a part it was meant to have must not run on headless
                        log.error("process %s: restart limit (%d) reached; stopping the system", pname,
                                  ps.max_restarts)
                        self.stopping = True
                for pname, t in list(self.next_start.items()):
                    if now >= t:
                        del self.next_start[pname]
                        self._start(pname)
                if not self.procs and not self.next_start:
                    break  # everything finished
        finally:
            self.shutdown()
            for s, h in old.items():
                signal.signal(s, h)
        return failures

    def _stop(self, names: list[str]) -> None:
        for pname in names:
            if self.procs[pname].is_alive():
                os.kill(self.procs[pname].pid, signal.SIGTERM)
        t_end = time.monotonic() + GRACE_S
        for pname in names:
            pr = self.procs[pname]
            pr.join(max(t_end - time.monotonic(), 0.01))
            if pr.is_alive():
                log.error("process %s did not stop within %.0fs: killing it", pname, GRACE_S)
                pr.kill()
                pr.join()

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        """Stop the processes that publish first, then those that only consume (the persister,
        telemetry), so the recorders drain every record the others published up to their stop."""
        self.stopping = True
        publishes = {p for p, ps in self.spec.processes.items()
                     if any(self.spec.actors[a].outputs or self.spec.actors[a].arrays for a in ps.actors)}
        for wave in (publishes, set(self.procs) - publishes):
            self._stop([p for p in self.procs if p in wave])
        self.procs.clear()
        stop_spawned(self.sims)
        self.summary.close()
        self.status.close()
        try:
            self.final_telemetry = json.loads(shm.read_text(paths.telemetry(paths.system_dir(self.spec.name))))
        except (OSError, ValueError, shm.Refused):
            pass
        if self.keep:
            release_system(self.spec.name)
        else:
            remove_system(self.spec.name)


def start_simulators(spec: SystemSpec) -> list:
    """Start the system's ``[simulators]`` and point its Feeds and account handlers for those
    venues that name no URL at them (before any process forks, so every process sees the same
    spec).  A handler's simulator and the handler share one key: the environment's
    ``MANTRA_<VENUE>_API_KEY`` / ``_SECRET`` when set, else a fresh random one put there."""
    if not spec.simulators:
        return []
    from ..execution.actor import VenueAccount
    from ..execution import secrets
    from ..feeds.actor import Feed

    handlers = [a for a in spec.actors.values() if issubclass(a.load_class(), VenueAccount)]
    for a in handlers:
        venue = str(a.params.get("venue", "")).lower()
        if venue in spec.simulators and not a.params.get("credentials"):
            secrets.for_simulator(venue)
    procs, urls = spawn(spec.simulators)
    for a in spec.actors.values():
        venue = str(a.params.get("venue", "")).lower()
        if venue not in urls:
            continue
        cls = a.load_class()
        opts = a.params.setdefault("options", {})
        if {"url", "ws_url", "rest_url"} & set(opts):
            continue
        if issubclass(cls, Feed):
            opts.update(feed_options(venue, urls[venue]))
            log.info("%s: %s feed connects to the system's simulator at %s", a.name, venue, urls[venue]["ws"])
        elif issubclass(cls, VenueAccount):
            opts.update(account_options(venue, urls[venue]))
            log.info("%s: %s orders go to the system's simulator at %s", a.name, venue, urls[venue]["ws"])
    return procs


def run_deterministic(spec: SystemSpec, *, start_ns: int = 1, keep: bool = False,
                      duration_s: float | None = None) -> Runner:
    """Every actor in one process, stepped in configuration order on a simulated clock.

    ``duration_s``: stop once that much simulated time has passed (checked every few hundred
    steps, so the stop falls at the same point every run).  SIGINT/SIGTERM stop the run the same
    way, stop hooks and all; ``runner.signal`` then names the signal."""
    sims: list = []
    status = create_spine(spec)
    status.close()
    try:
        sims += start_simulators(spec)
        clock = SimClock(start_ns)
        runner = Runner(spec, list(spec.actors), process="deterministic", clock=clock)
        runner.signal = None
        end = start_ns + int(duration_s * 1e9) if duration_s else None

        def stop(signum, frame):
            runner.signal = signum
            runner.request_stop()

        old = {}
        if threading.current_thread() is threading.main_thread():
            old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        tick = (lambda: clock.now() >= end and runner.request_stop()) if end else None
        try:
            runner.run_deterministic(tick=tick)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    finally:
        stop_spawned(sims)
        if keep:
            release_system(spec.name)
        else:
            remove_system(spec.name)
    return runner
