"""The Actor API.  Actors never call each other: they read their input queues and write outputs.

    class Counter(Actor):
        inputs = ("ticks",)            # handler: on_ticks(msg), called per message
        outputs = ("out",)             # self.out.send(msg): tracking stamped by the runtime

        def on_start(self): ...
        def on_ticks(self, msg): self.out.send(msg)
        def loop(self) -> bool: ...    # optional step each pass; True if it did work
        def on_stop(self): ...

Which queue a port reads or writes, which process runs the actor and how it waits are all
configuration (see runtime.config).  Params are the public class attributes an actor defines (their
defaults), or ``PARAMS`` if it declares one; any other param is an error, so a misspelt one never
silently leaves its default in place.  ``messages`` (port -> message type) declares what a port
carries; configuration binding it to a queue or array of another type is an error.

``self.wakeup`` (ns, 0 = none) asks to be stepped again by then, which bounds how long a parked
process sleeps and drives the simulated clock.
"""

from __future__ import annotations

import inspect
import logging

from .. import _spine


class Tracking:
    """Per-process tracking state: the origin of the message being handled."""

    __slots__ = ("origin",)

    def __init__(self):
        self.origin = 0


class Output:
    """An actor's output port: ``send(msg)`` publishes with origin, publish time and publisher
    filled in by the runtime.  ``send`` is one C call (``_spine.Port``): the fields are packed
    straight into the slot from the message type's layout."""

    __slots__ = ("send", "port", "_publish_record", "_publish_batch", "_clock", "queue", "ring")

    def __init__(self, producer, track: Tracking, clock, actor_id: int, queue: str):
        t = producer.msg_type
        self.port = _spine.Port(producer._w, t, t.FIELDS_AT, t.STRUCT.size, track,
                                clock if clock.simulated else None, actor_id)
        self.send = self.port.send
        self._publish_record = producer.publish_record
        self._publish_batch = producer._w.publish_batch
        self.ring = producer.ring
        self._clock, self.queue = clock, queue

    @property
    def sent(self) -> int:
        return self.port.sent

    def send_records(self, records, n: int) -> int:
        """Republish n recorded records verbatim (headers and publish times kept): replay bursts."""
        return self._publish_batch(records, n)

    def send_record(self, record, now: int = 0) -> int:
        """Republish a whole recorded record (tracking header kept: replay), stamped ``now``
        (default: the clock)."""
        return self._publish_record(record, now or self._clock.stamp())


class ArrayPort:
    """A seqlock-array port: ``write(i, msg)`` (tracked like Output.send, one C call) and ``read(i)``;
    ``quote``: TradeModel.quote in one C call (an IdealOrder array's)."""

    __slots__ = ("array", "write", "quote")

    def __init__(self, array, track: Tracking, clock, actor_id: int):
        self.array = array
        port = array.port(track, clock, actor_id)
        self.write, self.quote = port.write, port.quote

    def read(self, index: int):
        return self.array.read(index)

    def version(self, index: int) -> int:
        return self.array.version(index)

    @property
    def size(self) -> int:
        return self.array.size


class Actor:
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    arrays: tuple[str, ...] = ()

    background = False  # True: wake-ups alone do not keep a deterministic run going
    source = False  # True: feeds the system from outside (replayer)
    # Deterministic runs call loop() only when it has a reason: its wakeup is due, an array it reads
    # was written, or (if this is True) it handled input.  False for actors whose handlers do
    # everything due themselves and ask for wake-ups: their loop then costs nothing per message.
    loop_after_input = True
    # {input port: {instrument id: book.Book}}: L2Update ports whose records the runtime applies to
    # these books in C; the handler is called only for the record that ends an exchange message
    # (flags LAST), when the book holds the whole message.  Records of other instruments are skipped.
    book_ports: dict = {}
    # book ports whose handler is called as handler(instrument id, book, exch_ts) instead of with the
    # message (no message is built for what the book already holds), and only when the message left
    # the book uncrossed (the others are counted on the input: ``_Input.c.crossed``)
    book_calls: tuple = ()
    # {port: message type}: what each port carries (ports not listed take any type); checked
    # against the queue or array the configuration binds it to
    messages: dict = {}

    # Set by the runtime before on_start.
    system: str = ""  # the system's name
    name: str = ""
    id: int = 0
    clock = None
    log: logging.Logger
    wakeup: int = 0
    _track: Tracking

    def __init__(self, **params):
        unknown = sorted(set(params) - self.known_params())
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown param {', '.join(map(repr, unknown))} "
                             f"(known: {', '.join(sorted(self.known_params())) or 'none'})")
        for k, v in params.items():
            setattr(self, k, v)

    @classmethod
    def known_params(cls) -> frozenset:
        """The params this class takes: ``PARAMS`` if declared, else the public, non-callable class
        attributes its classes define below ``Actor`` (the runtime's own names excluded), and the
        named arguments of their ``__init__``."""
        if "PARAMS" in dir(cls):
            return frozenset(cls.PARAMS)
        names = set()
        for k in cls.__mro__:
            if k is Actor or not issubclass(k, Actor):
                continue
            for n, v in vars(k).items():
                if (n.startswith("_") or n in _RUNTIME or callable(v)
                        or isinstance(v, (property, classmethod, staticmethod))):
                    continue
                names.add(n)
            init = vars(k).get("__init__")
            if init is not None:
                names.update(n for n, p in list(inspect.signature(init).parameters.items())[1:]
                             if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        return frozenset(names)

    def on_start(self) -> None:
        pass

    def on_stop(self) -> None:
        pass

    def loop(self) -> bool:
        """Called every pass of the process loop; return True if it did work."""
        return False

    def set_origin(self, ts: int) -> None:
        """Ingestion actors: the data now being turned into messages entered the box at ``ts``."""
        self._track.origin = ts

    @property
    def origin(self) -> int:
        """Origin of the message being handled (copied into everything sent while handling it)."""
        return self._track.origin

    def stop_system(self) -> None:
        """Ask the whole system to stop (e.g. a replay reached its end)."""
        self._request_stop()

    def _request_stop(self) -> None:  # replaced by the runner
        raise SystemExit(0)


# Names the runtime owns (ports, flags, what it sets before on_start): never params.
_RUNTIME = frozenset(n for n in (*vars(Actor), *Actor.__annotations__) if not n.startswith("__"))
