"""`mantra run`: create a system's spine, start its processes, watch them, stop them cleanly.

SIGINT/SIGTERM stop every actor (stop hooks run) and remove the system's shared-memory directory.
A process that dies is reported and restarted per its policy, with backoff; its consumers resume
from the positions they published, its producers finish any slot left half-written.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import signal
import time

from ..spine import Ring, SeqArray
from ..spine.messages import ActorState, ActorStatus
from ..spine.shm import remove_system
from . import paths
from .clock import SimClock
from .config import SystemSpec
from .process import Runner, pin

log = logging.getLogger("mantra.supervisor")
GRACE_S = 5.0


def create_spine(spec: SystemSpec, *, fresh: bool = True):
    """Make every queue and array of the system; returns the status array (kept by the caller)."""
    d = paths.system_dir(spec.name)
    if fresh:
        remove_system(spec.name)
    d.mkdir(parents=True, exist_ok=True)
    for q in spec.queues.values():
        Ring.create(paths.queue(d, q.name), q.type, q.capacity, mpmc=q.mpmc, recreate=fresh).close()
    for a in spec.arrays.values():
        SeqArray.create(paths.array(d, a.name), a.type, a.size, recreate=fresh).close()
    status = SeqArray.create(paths.status(d), ActorStatus, max([a.id for a in spec.actors.values()] + [0]) + 1,
                             recreate=fresh)
    manifest = {
        "name": spec.name,
        "mode": spec.mode,
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
    paths.manifest(d).write_text(json.dumps(manifest, indent=1))
    return status


def _die_with_parent() -> None:
    """A supervisor killed with SIGKILL must not leave its processes spinning forever."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(spec: SystemSpec, pname: str) -> None:
    _die_with_parent()
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
        pr = self.ctx.Process(target=_child, args=(self.spec, pname), name=f"mantra:{pname}", daemon=False)
        pr.start()
        self.procs[pname] = pr
        log.info("process %s started (pid %d)", pname, pr.pid)

    def _mark_crashed(self, pname: str) -> None:
        for an in self.spec.processes[pname].actors:
            aid = self.spec.actors[an].id
            v, st = self.status.read(aid)
            if st is not None:
                self.status.write(aid, st._replace(state=int(ActorState.CRASHED)), 1, 0)

    def run(self, duration: float | None = None) -> int:
        """Run until a signal (or ``duration`` seconds); returns the number of process failures."""
        self.status = create_spine(self.spec)
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
                if self.on_tick:
                    self.on_tick()
                now = time.monotonic()
                for pname, pr in list(self.procs.items()):
                    if pr.is_alive() or self.stopping:
                        continue
                    code = pr.exitcode
                    pr.join()
                    del self.procs[pname]
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
                    elif again:
                        log.error("process %s: restart limit (%d) reached, not restarting", pname, ps.max_restarts)
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

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        self.stopping = True
        for pr in self.procs.values():
            if pr.is_alive():
                os.kill(pr.pid, signal.SIGTERM)
        t_end = time.monotonic() + GRACE_S
        for pname, pr in self.procs.items():
            pr.join(max(t_end - time.monotonic(), 0.01))
            if pr.is_alive():
                log.error("process %s did not stop within %.0fs: killing it", pname, GRACE_S)
                pr.kill()
                pr.join()
        self.procs.clear()
        self.status.close()
        try:
            self.final_telemetry = json.loads(paths.telemetry(paths.system_dir(self.spec.name)).read_text())
        except (OSError, ValueError):
            pass
        if not self.keep:
            remove_system(self.spec.name)


def run_deterministic(spec: SystemSpec, *, start_ns: int = 1, keep: bool = False) -> Runner:
    """Every actor in one process, stepped in configuration order on a simulated clock."""
    status = create_spine(spec)
    status.close()
    clock = SimClock(start_ns)
    runner = Runner(spec, list(spec.actors), process="deterministic", clock=clock)
    try:
        runner.run_deterministic()
    finally:
        if not keep:
            remove_system(spec.name)
    return runner
