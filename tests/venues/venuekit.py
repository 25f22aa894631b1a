"""Helpers every venue protocol test uses: drain a protocol's events, pick out what it sent and
its status changes, and show its book as exact decimals for comparison with plain replays; for the
order protocols (``venues/account.py``) the same: ``take`` their events, pick out the frames
``sent``, the ``https`` requests and the order ``updates``."""

import json
from decimal import Decimal

from mantra.spine.messages import OrderUpdate
from mantra.venues.account import Http, WsSend
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


# -- order protocols
def take(p, *types):
    """An order protocol's events (of ``types``, if named), cleared."""
    ev, p.events = p.events, []
    return [e for e in ev if not types or type(e) in types]


def sent(events):
    return [json.loads(e.text) for e in events if type(e) is WsSend]


def https(events, prefix=""):
    return [e for e in events if type(e) is Http and e.tag.startswith(prefix)]


def updates(events):
    return [e for e in events if type(e) is OrderUpdate]
