"""Runs the actors placed in one process: wiring, the step loop, timing and status.

Handlers are called from C (``_spine.Input``: read the record, build the message, set the origin,
call, then write (key, origin, start, end) to this process's timing ring): every handled message is
timed and counted, and actor code never sees it.
"""

from __future__ import annotations

import gc
import logging
import os
import time

from .. import _spine
from ..spine import Ring, SeqArray
from ..spine.messages import ActorState, ActorStatus, L2Update, Timing, TradeUpdate
from . import paths
from .actor import Actor, ArrayPort, Output, Tracking
from .clock import RealClock

log = logging.getLogger("mantra.runtime")

LOOP_STREAM = 0xFFFF
BATCH = 512  # messages per input per pass: keeps one busy stream from starving the others
STATUS_EVERY_NS = 100_000_000
MAX_PARK_NS = 100_000_000


# where the C book reads price, size, exch_ts, instrument, side and flags in an L2Update record
_L2_AT = tuple(L2Update.FIELDS_AT[i][0] for i in (0, 1, 2, 3, 4, 5))
_TRADE_AT = tuple(TradeUpdate.FIELDS_AT[i][0] for i in (0, 4))  # and price, instrument in a TradeUpdate


class _Input:
    """One input port: ``c`` is the C dispatcher (read, build the message, set origin and the
    simulated clock's view, call the handler, write the timing record)."""

    __slots__ = ("c", "consumer", "port", "errors_seen")

    def __init__(self, consumer, handler, key, port, track, clock, timing, actor):
        self.consumer, self.port = consumer, port
        self.errors_seen = 0  # of c.errors, already counted against the actor
        t = consumer.msg_type
        books = actor.book_ports.get(port)
        # a book port carries L2Update (applied to the books in C) or TradeUpdate (handed over only
        # when it can reach what the owner watches on the book: Book.watch)
        trades = books is not None and t is TradeUpdate
        if books is not None and not (t is L2Update and _L2_AT == _spine.L2_OFFSETS
                                      or trades and _TRADE_AT == _spine.TRADE_OFFSETS):
            raise ValueError(f"actor {actor.name}: book port {port!r} must carry L2Update or TradeUpdate")
        self.c = _spine.Input(consumer.reader, handler, t, list(t.FIELDS_AT), track,
                              clock if clock.simulated else None, timing._w if timing else None, key,
                              actor, actor.loop_after_input and type(actor).loop is not Actor.loop, books, trades,
                              port in actor.book_calls)


class _Slot:
    """Runtime bookkeeping for one actor."""

    __slots__ = ("actor", "spec", "inputs", "cinputs", "loops", "busy", "errors", "has_loop", "outputs")

    def __init__(self, actor, spec):
        self.actor, self.spec = actor, spec
        self.inputs: list[_Input] = []
        self.cinputs: list = []  # their C dispatchers
        self.outputs: list[Output] = []
        self.loops = self.busy = self.errors = 0
        self.has_loop = type(actor).loop is not Actor.loop

    @property
    def handled(self) -> int:
        """Records handed to this actor's handlers (counted in C)."""
        return sum(i.c.handled for i in self.inputs)


class Runner:
    def __init__(self, system, actor_names: list[str], *, process: str, mode: str = "park",
                 clock=None, timing: bool = True, timing_capacity: int = 1 << 16):
        self.system, self.process, self.mode = system, process, mode
        self.clock = clock or RealClock()
        self.track = Tracking()
        self.stopping = False
        self._rings, self._arrays = {}, {}
        d = paths.system_dir(system.name)
        self.timing = (Ring.create(paths.timing(d, process), Timing, timing_capacity, recreate=True).writer()
                       if timing else None)
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
        self._readers = [i.consumer.reader for s in self.slots for i in s.inputs]

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
            slot.inputs.append(_Input(c, handler, spec.id << 16 | i, port, self.track, self.clock, self.timing, a))
            slot.cinputs.append(slot.inputs[-1].c)
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
    def _failed(self, s: _Slot) -> None:
        """Handlers raised (called with the first exception of the pass; each failing record is
        consumed, and the actor's other inputs were still served): count every failing record, log
        the first ten failures then one per thousand."""
        for inp in s.inputs:
            if inp.c.failed:
                inp.c.failed = False
                before, new = s.errors, inp.c.errors - inp.errors_seen
                inp.errors_seen += new
                s.errors += new
                if before < 10 or before // 1000 != s.errors // 1000:
                    log.exception("actor %s: handler on_%s failed (%d errors)", s.spec.name, inp.port, s.errors)

    def _loop(self, s: _Slot, now) -> bool:
        track = self.track
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
            if self.timing and track.origin:
                self.timing.stamp(s.spec.id << 16 | LOOP_STREAM, track.origin, t0)
        track.origin = 0
        return bool(worked)

    def step(self) -> bool:
        """One pass over every actor: drain inputs (timed, in C), then its loop.  True if any work."""
        did = False
        now, dispatch_each = _spine.now, _spine.dispatch_each
        sim = self.clock.simulated
        for s in self.slots:
            if s.cinputs:
                t0 = now()
                try:
                    n = dispatch_each(s.cinputs, BATCH)
                except Exception:
                    self._failed(s)
                    n = 1
                if sim:
                    self.clock.advance_to(0)  # back to the run's present
                if n:
                    s.busy += now() - t0
                    did = True
            if s.has_loop and self._loop(s, now):
                did = True
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
        """Single process, simulated clock, in time order.

        ``_spine.dispatch_all`` hands the foreground actors every waiting record in publish-time
        order (each handler seeing its record's time as "now") up to the earliest wake-up, and
        returns at the first reaction: a handler that published, wrote an array or asked for a
        wake-up by then (for an actor that loops after input, ``loop_after_input``: once the rest
        of that record's instant is handed over).  At that
        instant the loops with a reason to run do: the actor handled input (and loops after it),
        its ``wakeup`` is due, or an array it reads was written.  So no decision meets data from
        its future, however far ahead a source publishes, and the long stretches where nothing
        reacts cost one C call.  Background actors (telemetry, persister) run every few thousand
        records and at the end, and never hold the clock back."""
        self._since = self.clock.now()
        self.start()
        self.started = time.perf_counter()  # start-up (e.g. loading data) ends here
        clock, now = self.clock, _spine.now
        fg = [s for s in self.slots if not s.actor.background]
        bg = [s for s in self.slots if s.actor.background]
        inputs = [i.c for s in fg for i in s.inputs]
        loopers, bit = [], 0
        for s in fg:
            m = 0
            for _ in s.inputs:
                m |= (1 << bit) if bit < 63 else -1
                bit += 1
            if s.has_loop:
                if not s.actor.loop_after_input:
                    m = 0
                arrays = [getattr(s.actor, n).array._a for n in s.actor.arrays]
                loopers.append((s, s.actor, m, arrays, [a.writes() for a in arrays]))
        actors = [s.actor for s in fg]
        dispatch_all, traffic = _spine.dispatch_all, _spine.traffic
        never = 2**64 - 1
        n, bg_at, worked = 0, traffic(), True
        for s, *_ in loopers:
            self._loop(s, now)
        try:
            while not self.stopping:
                n += 1
                if traffic() - bg_at > 2048 or not n & 255:
                    for s in bg:
                        self._background(s, now)
                    bg_at = traffic()
                    if tick is not None:
                        tick()  # e.g. a progress bar
                t, w = clock.now(), never
                for a in actors:
                    x = a.wakeup
                    if x and x < w:
                        w = x
                try:
                    # records before the next wake-up (its loop runs first at that instant); a
                    # wake-up due already has had its loop run: hand over what exists by now
                    mask = dispatch_all(inputs, w if w > t else t + 1)
                except Exception:
                    mask = -1
                    for s in fg:
                        self._failed(s)
                if mask:
                    clock.advance_to(clock.t)  # the instant of the last record handed over
                elif w == never:
                    break
                elif w <= t and not worked:
                    # an actor asked for "now" and did nothing (e.g. a live feed with no frame):
                    # move on to the next later wake-up
                    later = [x for x in (a.wakeup for a in actors) if x > t]
                    clock.advance_to(min(later) if later else t + 1)
                else:
                    clock.advance_to(w)
                t = clock.now()
                worked = False
                for s, a, m, arrays, seen in loopers:
                    x = a.wakeup
                    go = mask & m or (x and x <= t)
                    for k, arr in enumerate(arrays):
                        v = arr.writes()
                        if v != seen[k]:
                            seen[k] = v
                            go = True
                    if go and self._loop(s, now):
                        worked = True
        finally:
            for s in bg:
                self._background(s, now)
            self.publish_status()
            self.stop()

    def _background(self, s: _Slot, now) -> None:
        for inp in s.inputs:
            try:
                inp.c.dispatch(0)
            except Exception:
                self._failed(s)
            self.clock.advance_to(0)
        if s.has_loop:
            self._loop(s, now)


def pin(cpu: int | None) -> None:
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError as e:
            log.warning("cannot pin to CPU %s: %s", cpu, e)
