"""Faults by name: what a schedule, the command line and the control paths may inject.

The faults themselves are the server's methods (``VenueSimulator.disconnect``, ``drop_next``...):
they act on its connections and queues.  Here is what names them, checks their arguments and runs
them, so that a ``[simulators.<venue>]`` table, ``--fault SECONDS:NAME[:ARG]`` and
``/__sim/fault/<name>?arg=`` are checked once, the same way, before anything is injected.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

FAULTS = {"disconnect": "disconnect", "drop": "drop_next", "corrupt_checksum": "corrupt_checksum_next",
          "malformed": "malformed_next", "slow": "slow", "reconnect_request": "reconnect_request",
          "rate_limit": "rate_limit_next",
          # order entry (the simulators that take orders: see their module docs)
          "order_5xx": "order_5xx", "order_timeout": "order_timeout", "order_rate_limit": "order_rate_limit",
          "stream_duplicate": "stream_duplicate", "stream_reorder": "stream_reorder",
          "stream_disconnect": "stream_disconnect", "ban": "ban", "cancel_filled": "cancel_filled"}
FAULT_ARGS = {"drop": 1, "slow": 1.0, "rate_limit": 1, "stream_duplicate": 1}  # the faults that take a number, and its type


def parse_fault(name: str, arg=None) -> tuple[str, float | None]:
    """Checks a fault's name and argument; an unknown one is an error naming the known ones."""
    if name not in FAULTS:
        raise ValueError(f"unknown simulator fault {name!r}; known: {', '.join(FAULTS)}")
    if arg is None or arg == "":
        return name, None
    if name not in FAULT_ARGS:
        raise ValueError(f"simulator fault {name!r} takes no argument (got {arg!r})")
    try:
        value = type(FAULT_ARGS[name])(arg)
    except (TypeError, ValueError):
        raise ValueError(f"simulator fault {name!r}: argument {arg!r} is not a number") from None
    if not 0 < value <= 1000:
        raise ValueError(f"simulator fault {name!r}: argument {arg!r} is out of range (0, 1000]")
    return name, value


def fault_option(text: str) -> tuple[float, str, str | None]:
    """``SECONDS:NAME[:ARG]`` from the command line -> a schedule entry."""
    at, _, rest = text.partition(":")
    name, _, arg = rest.partition(":")
    try:
        when = float(at)
    except ValueError:
        raise ValueError(f"--fault {text!r}: expected SECONDS:NAME[:ARG], e.g. 5:disconnect or 8:drop:3") from None
    return (when, *parse_fault(name, arg or None))


def schedule(faults) -> list[tuple[float, str, float | None]]:
    """``[(seconds after start, name, argument or None), ...]`` checked and in time order."""
    return sorted((float(at), *parse_fault(name, arg)) for at, name, arg in faults)


def inject(sim, name: str, arg=None) -> None:
    """Run the fault ``name`` on ``sim`` with its optional numeric argument, and count it."""
    name, arg = parse_fault(name, arg)
    method = getattr(sim, FAULTS[name], None)
    if method is None:
        raise NotImplementedError(f"the {sim.venue} simulator has no fault {name!r}")
    method() if arg is None else method(arg)
    sim.injected[name] += 1
    log.info("%s simulator: fault %s%s injected", sim.venue, name, "" if arg is None else f" ({arg})")
