"""Runs the actors placed in one process: wiring, the step loop, timing and status.

Every handled message is timed: the runner reads the clock before the handler and ``stamp`` (in C)
writes (key, origin, start, end) to this process's timing ring after it.  Actor code never sees it.
"""

from __future__ import annotations

import gc
import logging
import os
import time

from .. import _spine
from ..spine import Ring, SeqArray
from ..spine.messages import ActorState, ActorStatus, Timing
from . import paths
from .actor import Actor, ArrayPort, Output, Tracking
from .clock import RealClock

log = logging.getLogger("mantra.runtime")

LOOP_STREAM = 0xFFFF
BATCH = 512  # messages per input per pass: keeps one busy stream from starving the others
STATUS_EVERY_NS = 100_000_000
MAX_PARK_NS = 100_000_000


class _Input:
    __slots__ = ("reader", "record", "unpack", "make", "handler", "key", "consumer", "port")

    def __init__(self, consumer, handler, key, port):
        self.consumer, self.port = consumer, port
        self.reader = consumer.reader
        self.record = consumer.record
        self.unpack = consumer.msg_type.STRUCT.unpack_from
        self.make = consumer.msg_type._make
        self.handler, self.key = handler, key


class _Slot:
    """Runtime bookkeeping for one actor."""

    __slots__ = ("actor", "spec", "inputs", "handled", "loops", "busy", "errors", "has_loop", "outputs")

    def __init__(self, actor, spec):
        self.actor, self.spec = actor, spec
        self.inputs: list[_Input] = []
        self.outputs: list[Output] = []
        self.handled = self.loops = self.busy = self.errors = 0
        self.has_loop = type(actor).loop is not Actor.loop


class Runner:
    def __init__(self, system, actor_names: list[str], *, process: str, mode: str = "park",
                 clock=None, timing: bool = True):
        self.system, self.process, self.mode = system, process, mode
        self.clock = clock or RealClock()
        self.track = Tracking()
        self.stopping = False
        self._rings, self._arrays = {}, {}
        d = paths.system_dir(system.name)
        self.timing = Ring.create(paths.timing(d, process), Timing, 1 << 16, recreate=True).writer() if timing else None
        self.status = SeqArray.attach(paths.status(d), ActorStatus)
        self.slots: list[_Slot] = []
        for an in actor_names:
            spec = system.actors[an]
            actor = spec.load_class()(**spec.params)
            actor.system, actor.name, actor.id, actor.clock = system.name, an, spec.id, self.clock
            actor.log = logging.getLogger(f"mantra.actor.{an}")
            actor._track = self.track
            actor._request_stop = self.request_stop
            slot = _Slot(actor, spec)
            self._wire(slot, d)
            self.slots.append(slot)
        self._readers = [i.reader for s in self.slots for i in s.inputs]

    def _ring(self, d, qn):
        r = self._rings.get(qn)
        if r is None:
            r = self._rings[qn] = Ring.attach(paths.queue(d, qn), self.system.queues[qn].type)
        return r

    def _wire(self, slot: _Slot, d) -> None:
        a, spec = slot.actor, slot.spec
        declared = set(a.inputs) | set(a.outputs) | set(a.arrays)
        for port in {**spec.inputs, **spec.outputs, **spec.arrays}:
            if declared and port not in declared:
                raise ValueError(f"actor {spec.name}: {type(a).__name__} has no port {port!r}")
        for port in a.outputs:
            if port not in spec.outputs:
                raise ValueError(f"actor {spec.name}: output {port!r} is not bound to a queue")
            out = Output(self._ring(d, spec.outputs[port]).writer(), self.track, self.clock, spec.id,
                         spec.outputs[port])
            setattr(a, port, out)
            slot.outputs.append(out)
        for i, port in enumerate(a.inputs):
            if port not in spec.inputs:
                raise ValueError(f"actor {spec.name}: input {port!r} is not bound to a queue")
            handler = getattr(a, f"on_{port}", None)
            if handler is None:
                raise ValueError(f"actor {spec.name}: {type(a).__name__} lacks on_{port}(msg)")
            c = self._ring(d, spec.inputs[port]).reader(f"{spec.name}.{port}",
                                                        start=getattr(a, "start_seq", None))
            slot.inputs.append(_Input(c, handler, spec.id << 16 | i, port))
        for port in a.arrays:
            if port not in spec.arrays:
                raise ValueError(f"actor {spec.name}: array {port!r} is not bound")
            an = spec.arrays[port]
            arr = self._arrays.get(an) or SeqArray.attach(paths.array(d, an), self.system.arrays[an].type)
            self._arrays[an] = arr
            setattr(a, port, ArrayPort(arr, self.track, self.clock, spec.id))

    # ---------------------------------------------------------------------------- lifecycle
    def request_stop(self) -> None:
        self.stopping = True

    def start(self) -> None:
        for s in self.slots:
            self._set_state(s, ActorState.STARTING)
            s.actor.on_start()
            self._set_state(s, ActorState.RUNNING)
        gc.freeze()  # start-up objects never need scanning again

    def stop(self) -> None:
        for s in self.slots:
            self._set_state(s, ActorState.STOPPING)
            try:
                s.actor.on_stop()
            except Exception:
                log.exception("actor %s: on_stop failed", s.spec.name)
            self._set_state(s, ActorState.STOPPED)
        for r in self._rings.values():
            r.close()
        for a in self._arrays.values():
            a.close()
        if self.timing:
            self.timing.ring.close()
        self.status.close()

    def _set_state(self, s: _Slot, state) -> None:
        self.status.write(s.spec.id, ActorStatus(s.handled, s.loops, s.busy, self._since, s.errors,
                                                 _spine.now(), os.getpid(), int(state)), 1, 0)

    _since = 0

    def publish_status(self) -> None:
        for s in self.slots:
            self._set_state(s, ActorState.RUNNING)

    # ---------------------------------------------------------------------------- stepping
    def step(self) -> bool:
        """One pass over every actor: drain inputs (timed), then its loop.  True if any work."""
        did = False
        now = _spine.now
        stamp = self.timing.stamp if self.timing else None
        track = self.track
        view = self.clock.view if self.clock.simulated else None
        for s in self.slots:
            for inp in s.inputs:
                read, rec, unpack, make, handler, key = (inp.reader.read_into, inp.record, inp.unpack,
                                                         inp.make, inp.handler, inp.key)
                n = 0
                t_first = now()
                while n < BATCH:
                    o = read(rec)
                    if not o:
                        break
                    track.origin = o
                    if view is not None:
                        view(int.from_bytes(rec[8:16], "little"))  # simulated: now = its publish time
                    try:
                        if stamp is None:
                            handler(make(unpack(rec, 24)))
                        else:
                            t0 = now()
                            handler(make(unpack(rec, 24)))
                            stamp(key, o, t0)
                    except Exception:
                        s.errors += 1
                        if s.errors <= 10 or s.errors % 1000 == 0:
                            log.exception("actor %s: handler on_%s failed (%d errors)", s.spec.name,
                                          inp.port, s.errors)
                    n += 1
                if view is not None:
                    self.clock.advance_to(0)  # back to the run's present
                if n:
                    s.handled += n
                    s.busy += now() - t_first
                    did = True
            if s.has_loop:
                track.origin = 0
                t0 = now()
                try:
                    worked = s.actor.loop()
                except Exception:
                    worked = True
                    s.errors += 1
                    if s.errors <= 10 or s.errors % 1000 == 0:
                        log.exception("actor %s: loop failed (%d errors)", s.spec.name, s.errors)
                if worked:
                    s.loops += 1
                    s.busy += now() - t0
                    if stamp and track.origin:
                        stamp(s.spec.id << 16 | LOOP_STREAM, track.origin, t0)
                    did = True
        track.origin = 0
        return did

    def next_wakeup(self, foreground_only: bool = False) -> int:
        w = [s.actor.wakeup for s in self.slots
             if s.actor.wakeup and not (foreground_only and s.actor.background)]
        return min(w) if w else 0

    def run(self) -> None:
        """Real-time loop until stopped: spin (busy-poll) or park (futex on every input)."""
        self._since = _spine.now()
        self.start()
        next_status = 0
        try:
            while not self.stopping:
                did = self.step()
                t = _spine.now()
                if t >= next_status:
                    self.publish_status()
                    next_status = t + STATUS_EVERY_NS
                if did or self.mode == "spin":
                    continue
                wake = self.next_wakeup()
                timeout = MAX_PARK_NS if not wake else min(max(wake - t, 0), MAX_PARK_NS)
                if timeout:
                    _spine.wait_any(self._readers, timeout)
        finally:
            self.stop()

    def run_deterministic(self, tick=None) -> None:
        """Single process, simulated clock: step every actor in order until quiescent, then jump
        the clock to the earliest foreground wake-up (background actors — telemetry, persister —
        run whenever the clock passes their time but never hold it back); stop when no foreground
        actor has anything pending."""
        self._since = self.clock.now()
        self.start()
        actors = [s.actor for s in self.slots]
        n = 0
        try:
            while not self.stopping:
                n += 1
                if tick is not None and not n & 1023:
                    tick()  # e.g. a progress bar
                w = [a.wakeup for a in actors if a.wakeup and not a.background and not a.source]
                self.clock.horizon = min(w) if w else 0
                if self.step():
                    continue
                wake = self.next_wakeup(foreground_only=True)
                if not wake:
                    break
                if wake <= self.clock.now():
                    wake = self.clock.now() + 1  # an actor asked for "now" and did nothing: move on
                self.clock.advance_to(wake)
        finally:
            self.publish_status()
            self.stop()


def pin(cpu: int | None) -> None:
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError as e:
            log.warning("cannot pin to CPU %s: %s", cpu, e)
