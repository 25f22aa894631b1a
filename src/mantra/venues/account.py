"""What a sans-IO order protocol takes and emits: a venue's account side (orders, fills, balances).

Same shape as the market-data protocols (``base.py``, ``events.py``): a venue's ``orders.py`` holds
an ``OrderProtocol`` subclass that never touches a socket or a clock.  The one blocking runner
(``execution/runner.py``) feeds it and carries out what it appends to ``events``:

- ``Open(conn, url)`` — open the WebSocket named ``conn`` ("trade", "user", ...) and keep it up:
  the runner calls ``on_open(conn, now)`` once it is connected and ``on_close(conn, now, reason)``
  when it drops, then reconnects by itself (with back-off) and calls ``on_open`` again, where the
  protocol logs on / re-subscribes.  ``Open`` with another url moves the connection; ``Close(conn,
  reason)`` drops it for good (until the next ``Open``).
- ``WsSend(conn, text)`` — send a text frame on that connection.
- ``Http(tag, method, url, headers, body)`` — make an HTTP request; the answer comes back as
  ``on_http(tag, status, headers, body, now)`` (headers lower-cased; status 0 = no answer: timeout or
  transport error, the outcome is unknown).
- ``OrderUpdate`` / ``Fill`` / ``BalanceUpdate`` (the spine's message types) — publish as they are.
- ``Halt(reason)`` — order entry on this venue must stop (banned, credentials refused): the runner
  refuses every later request and the overseer's kill switch trips.

Signing lives in the venue's ``auth.py`` (pure functions: credentials, request, clock/nonce in;
exactly what goes on the wire out).  ``now`` is ns since the epoch, given by the caller everywhere.

Request contract (``trading/accounts.py``): a NEW is answered about its ``order_id``; CANCEL and
AMEND about ``ref_id``.  Every NEW carries ``client_id(order_id)`` so that an answer lost to a
timeout, a dropped connection or a 5xx can be found again by asking the venue: the request's outcome
is UNKNOWN until then, and it is never sent twice.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, NamedTuple

from ..instruments import VENUE_IDS, Instrument
from ..spine.messages import OrderRequest, OrderStatus, OrderUpdate
from ..trading.accounts import Reject

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
CLIENT_PREFIX = "mt"  # ours: every venue accepts [0-9a-z] ids of this length (Kraken: at most 18)


def client_id(order_id: int) -> str:
    """The client order id a request carries: ``mt`` + base-36 ``order_id`` (at most 15 chars)."""
    if order_id < 0:
        raise ValueError(f"order id must be >= 0, got {order_id}")
    digits = ""
    while True:
        order_id, r = divmod(order_id, 36)
        digits = _B36[r] + digits
        if not order_id:
            return CLIENT_PREFIX + digits


def order_id_of(cid: str | None) -> int | None:
    """Our ``order_id`` from a client order id, or None when it is not one of ours."""
    if not cid or not cid.startswith(CLIENT_PREFIX) or len(cid) > 15:
        return None
    try:
        v = int(cid[len(CLIENT_PREFIX):], 36)
    except ValueError:
        return None
    return v if cid == client_id(v) else None


class Credentials(NamedTuple):
    """An API key.  ``repr`` never shows the secret (exceptions and logs print reprs)."""

    key: str
    secret: str
    passphrase: str = ""

    def __repr__(self) -> str:
        return f"Credentials(key={self.key[:4]}…, secret=<hidden>)"

    __str__ = __repr__


class Open(NamedTuple):
    conn: str
    url: str


class Close(NamedTuple):
    conn: str
    reason: str


class WsSend(NamedTuple):
    conn: str
    text: str


class Http(NamedTuple):
    tag: str  # the protocol's own name for the answer it waits for
    method: str
    url: str
    headers: tuple  # ((name, value), ...)
    body: bytes = b""


class Halt(NamedTuple):
    reason: str


class OrderProtocol:
    """Base of the venues' order protocols: instruments by id and symbol, counters, the rules
    every venue shares.  Subclasses implement ``start``, ``on_open``, ``on_close``, ``on_frame``,
    ``on_http``, ``on_timer``, ``submit``, ``cancel_all``."""

    venue = ""

    def __init__(self, creds: Credentials, instruments: Iterable[Instrument], **settings):
        self.creds = creds
        self.by_id = {i.id: i for i in instruments if i.venue == self.venue}
        self.by_symbol = {i.symbol: i for i in self.by_id.values()}
        self.venue_id = VENUE_IDS[self.venue]
        self.events: list = []
        self.counts: Counter = Counter()
        self.halted = ""
        self.settings = settings

    # -- what subclasses call
    def reject(self, r: OrderRequest, why: Reject, now: int) -> None:
        """Answer a request the venue will never see (bad instrument, rate limit, halted)."""
        self.counts[f"refused_{Reject(why).name.lower()}"] += 1
        if r.action == 1:  # NEW: the order is refused
            oid, st = r.order_id, OrderStatus.REJECTED
        else:  # CANCEL / AMEND: the order stands as it was
            oid, st = r.ref_id, OrderStatus.CANCEL_REJECTED
        self.events.append(OrderUpdate(oid, r.price, r.size, 0, now, r.instrument, st, r.side, int(why), b""))

    def halt(self, reason: str) -> None:
        if not self.halted:
            self.halted = reason
            self.events.append(Halt(reason))

    # -- the interface the runner drives
    def start(self, now: int) -> None:
        raise NotImplementedError

    def on_open(self, conn: str, now: int) -> None:
        raise NotImplementedError

    def on_close(self, conn: str, now: int, reason: str) -> None:
        raise NotImplementedError

    def on_frame(self, conn: str, text: str, now: int) -> None:
        raise NotImplementedError

    def on_http(self, tag: str, status: int, headers: dict, body: bytes, now: int) -> None:
        raise NotImplementedError

    def on_timer(self, now: int) -> None:
        raise NotImplementedError

    def submit(self, r: OrderRequest, now: int) -> None:
        raise NotImplementedError

    def cancel_all(self, now: int) -> None:
        raise NotImplementedError
