"""Helpers every venue protocol test uses: drain a protocol's events, pick out what it sent and
its status changes, and show its book as exact decimals for comparison with plain replays."""

import json
from decimal import Decimal

from mantra.venues.events import BookState, Send, Status


def drain(p):
    ev = list(p.events)
    p.events.clear()
    return ev


def sends(ev):
    return [json.loads(e.text) for e in ev if type(e) is Send]


def statuses(ev):
    return [Status(e.status) for e in ev if type(e) is BookState]


def as_decimal(p, iid):
    """The protocol's book as {"b"|"a": {Decimal price: Decimal size}}."""
    inst = p.registry[iid]
    conv = lambda v, s: Decimal(v).scaleb(-s)  # noqa: E731
    return {
        "b": {conv(k, inst.price_scale): conv(v, inst.size_scale) for k, v in p.books[iid].bids.items()},
        "a": {conv(k, inst.price_scale): conv(v, inst.size_scale) for k, v in p.books[iid].asks.items()},
    }
