"""Accounts: the account-handler interface (one per venue) and the state kept from its responses.

An account handler takes ``OrderRequest``s for its venue(s) and answers with ``OrderUpdate``,
``Fill`` and ``BalanceUpdate``.  Real venue handlers subclass ``AccountHandler``; the mock exchange
does too, so paper trading and backtests exercise the same contract:

- NEW: answered about ``order_id``; CANCEL / AMEND: about ``ref_id`` (the order acted on), with a
  fresh ``order_id`` of their own.  AMEND carries the new limit price and new *total* size.
- A CANCEL or AMEND that fails answers ``CANCEL_REJECTED`` (the order stands as it was), except
  with reason ``UNKNOWN_ORDER``: the venue does not have the order, so it has ended for us too.
- ``OrderUpdate.filled`` is cumulative; ``reason`` is a ``Reject`` code on refusals.
- A venue's timestamps are ordered: a ``BalanceUpdate`` at ``exch_ts`` T covers every fill at <= T.

``Orders`` and ``Balances`` hold what the overseer and the models learn from those streams.  They
take messages in any order, duplicated or late, and never double count: fills are deduplicated by
(order_id, trade_id), ``filled`` never goes backwards, a terminal order stays terminal, and
positions move only with fills.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from enum import IntEnum

from ..instruments import VENUE_IDS, VENUES, Instrument
from ..runtime.actor import Actor
from ..spine.messages import BalanceUpdate, Fill, OrderAction, OrderRequest, OrderStatus, OrderUpdate, text
from .common import cost, load_registry, proceeds


class Reject(IntEnum):
    """``OrderUpdate.reason`` when a venue refuses a request."""

    NONE = 0
    INSUFFICIENT_BALANCE = 1
    TICK = 2
    LOT = 3
    MIN_SIZE = 4
    MIN_NOTIONAL = 5
    POST_ONLY = 6  # a post-only order would have crossed
    UNKNOWN_ORDER = 7
    UNKNOWN_INSTRUMENT = 8
    BAD_REQUEST = 9  # non-positive price/size, amend below the filled size, ...
    UNSUPPORTED = 10  # e.g. AMEND on a venue without it
    RATE_LIMITED = 11  # refused before sending: it would exceed the venue's rate limits
    VENUE_ERROR = 12  # the venue refused it for another reason (logged with the venue's own text)
    HALTED = 13  # order entry on the venue is stopped (banned, credentials refused): kill switch


S = OrderStatus
TERMINAL = frozenset((S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED))
_RANK = {0: 0, S.ACK: 1, S.OPEN: 2, S.PARTIALLY_FILLED: 3}
_CANCEL_REJECTED = int(S.CANCEL_REJECTED)
NEW, CANCEL, AMEND = OrderAction.NEW, OrderAction.CANCEL, OrderAction.AMEND


class Order:
    """One of our orders as its owner knows it."""

    __slots__ = ("order_id", "model", "slot", "instrument", "side", "price", "size", "flags", "status",
                 "filled", "fill_qty", "fees", "pending", "target", "amends", "version", "no_amend", "trades")

    def __init__(self, order_id, model, slot, instrument, side, price, size, flags):
        self.order_id, self.model, self.slot, self.instrument = order_id, model, slot, instrument
        self.side, self.price, self.size, self.flags = side, price, size, flags
        self.status = 0  # 0: sent, no answer yet
        self.filled = 0  # cumulative, max of what updates and fills say
        self.fill_qty = 0  # sum of the fills seen
        self.fees = 0
        self.pending = NEW  # request in flight: NEW / CANCEL / AMEND / 0
        self.target = None  # (price, size) of the newest AMEND in flight
        self.amends: list[tuple[int, int]] = []  # every AMEND in flight, oldest first (target is the last)
        self.version = 0  # the ideal-slot version this order implements (overseer)
        self.no_amend = False  # an amend was refused: replace by cancel + new instead
        self.trades: set[int] = set()

    @property
    def live(self) -> bool:
        return self.status not in TERMINAL

    @property
    def open_qty(self) -> int:
        """Size that may still execute (with an amend in flight, the larger of old and new)."""
        if not self.live:
            return 0
        return max(self.most - max(self.filled, self.fill_qty), 0)

    @property
    def lock_qty(self) -> int:
        """Size whose cost is not yet reflected by the fills seen: what may still execute plus
        executions reported by updates whose fills have not arrived."""
        if self.live:
            return max(self.most - self.fill_qty, 0)
        return max(self.filled - self.fill_qty, 0)

    @property
    def most(self) -> int:
        """The largest size the order may have at the venue: its own or an amend's in flight."""
        size = self.size
        for _, s in self.amends:
            if s > size:
                size = s
        return size

    def __repr__(self) -> str:
        st = S(self.status).name if self.status else "SENT"
        return (f"Order({self.order_id} m{self.model}/{self.slot} i{self.instrument} {self.side:+d} "
                f"{self.size}@{self.price} {st} filled={self.filled}/{self.fill_qty} pending={self.pending})")


class Orders:
    """Orders and positions from our requests and the venue's answers.

    ``active`` holds orders that are live or whose fills have not all arrived; finished orders move
    to a bounded ``done`` map so late duplicates are still recognised.
    """

    def __init__(self, retain: int = 10_000):
        self.active: dict[int, Order] = {}
        self.by_instrument: dict[int, dict[int, Order]] = {}
        self.done: OrderedDict[int, Order] = OrderedDict()
        self.retain = retain
        self.positions: dict[int, int] = {}
        self.counts: Counter = Counter()

    def get(self, order_id: int) -> Order | None:
        return self.active.get(order_id) or self.done.get(order_id)

    def sent(self, r: OrderRequest | tuple) -> Order | None:
        """Record a request we (or our overseer) sent: an ``OrderRequest`` or its fields."""
        order_id, ref_id, price, size, instrument, model, slot, action, side, flags = r
        if action == NEW:
            if order_id in self.active or order_id in self.done:
                self.counts["duplicate_request"] += 1
                return None
            o = Order(order_id, model, slot, instrument, side, price, size, flags)
            self.active[order_id] = o
            self.by_instrument.setdefault(instrument, {})[order_id] = o
            return o
        o = self.active.get(ref_id)
        if o is None or o.status in TERMINAL:
            return None
        o.pending = action if action in (CANCEL, AMEND) else CANCEL
        if action == AMEND:
            o.target = (price, size)
            o.amends.append(o.target)
        return o

    def on_update(self, u: OrderUpdate) -> Order | None:
        """Apply a venue update; returns the order if its state changed."""
        o = self.active.get(u.order_id)
        if o is None:
            self.counts["late_update" if u.order_id in self.done else "unknown_update"] += 1
            return None
        st = u.status
        if u.filled > o.filled:
            o.filled = u.filled
        if o.status in TERMINAL:
            self.counts["late_update"] += 1
            return None
        if st == _CANCEL_REJECTED:
            if o.pending not in (CANCEL, AMEND):
                self.counts["stray_cancel_reject"] += 1
                return None
            if u.reason == Reject.UNKNOWN_ORDER:
                # The venue does not know the order: a NEW lost on the way (never acknowledged), or
                # an order the venue forgot (a restarted venue or handler).  Either way it is not
                # there to cancel or amend, now or later: it ends, or we would ask about it forever.
                lost = o.status == 0
                o.status, o.pending, o.target = S.REJECTED if lost else S.CANCELLED, 0, None
                o.amends.clear()
                self.counts["lost_new" if lost else "unknown_to_venue"] += 1
                self._settle(o)
                return o
            if o.pending == AMEND:  # the order stands unchanged: it no longer implements the new wish
                o.no_amend, o.version = True, 0
                if len(o.amends) > 1:
                    # Several amends in flight and the answer does not say which one failed: each
                    # of the others may still land, so their sizes stay reserved until one is seen
                    # (or the order ends).
                    return o
            o.pending, o.target = 0, None
            o.amends.clear()
            return o
        changed = False
        # Any update at the amend's price and size says it took effect, a terminal one included (a
        # replacement that filled at once reports FILLED first): its fills are measured against it.
        # An update at the price and size of an amend in flight says it took effect (and any sent
        # before it); a cancel or a newer amend sent behind it does not stop it from landing.
        # An amend to what the order already is tells nothing while others are in flight.
        at = (u.price, u.size) if o.amends else None
        if at is not None and at in o.amends and (at != (o.price, o.size) or len(o.amends) == 1):
            del o.amends[:o.amends.index(at) + 1]
            o.price, o.size = at
            o.target, changed = (o.amends[-1] if o.amends else None), True
            if not o.amends and o.pending == AMEND:
                o.pending = 0
        if st in TERMINAL:
            o.status, o.pending, o.target = st, 0, None
            o.amends.clear()
            self._settle(o)
            return o
        if o.pending == NEW:
            o.pending, changed = 0, True
        if _RANK.get(st, 0) > _RANK[o.status]:
            o.status, changed = st, True
        return o if changed else None

    def on_fill(self, f: Fill) -> Order | None:
        o = self.active.get(f.order_id) or self.done.get(f.order_id)
        if o is None:
            self.counts["unknown_fill"] += 1
            return None
        if f.trade_id in o.trades:
            self.counts["duplicate_fill"] += 1
            return None
        o.trades.add(f.trade_id)
        o.fill_qty += f.size
        o.fees += f.fee
        if o.fill_qty > o.filled:
            o.filled = o.fill_qty
        if o.fill_qty > o.most:
            self.counts["overfill"] += 1  # a venue bug or a foreign fill: counted, still booked
        self.positions[o.instrument] = self.positions.get(o.instrument, 0) + o.side * f.size
        if not o.live:
            self._settle(o)
        return o

    def _settle(self, o: Order) -> None:
        """A terminal order leaves ``active`` once every fill it reported has arrived."""
        if o.fill_qty < o.filled or o.order_id not in self.active:
            return
        del self.active[o.order_id]
        inst = self.by_instrument.get(o.instrument)
        if inst is not None:
            inst.pop(o.order_id, None)
        self.done[o.order_id] = o
        if len(self.done) > self.retain:
            self.done.popitem(last=False)

    def live(self, instrument: int | None = None):
        src = self.active if instrument is None else self.by_instrument.get(instrument, {})
        return [o for o in src.values() if o.live]


class Balances:
    """Per (venue, asset) balances: the venue's latest snapshot plus the fills it does not cover yet.

    The estimate moves with our own fills immediately (no window where a fill has released an
    order's reservation but the balance has not caught up) and snaps back to the venue's figure
    with each ``BalanceUpdate``.  Per-fill rounding here is conservative (a buyer's cost rounded
    up per fill); the venue's own figure takes over at the next snapshot.
    """

    def __init__(self, scales: dict[tuple[str, str], int]):
        self.scales = scales
        self.snap: dict[tuple[str, str], list[int]] = {}  # total, available, exch_ts
        self.later: dict[tuple[str, str], list[tuple[int, int]]] = {}  # (exch_ts, delta) after the snapshot
        self.totals: dict[tuple[str, str], int] = {}  # snapshot + later deltas: every check reads it
        self.counts: Counter = Counter()

    def on_balance(self, b: BalanceUpdate) -> tuple[str, str] | None:
        vid = b.venue
        if not 1 <= vid <= len(VENUES):
            self.counts["bad_venue"] += 1
            return None
        key = (VENUES[vid - 1], text(b.asset))
        s = self.scales.get(key)
        if s is None:
            self.counts["unknown_asset"] += 1
            return None
        old = self.snap.get(key)
        if old is not None and b.exch_ts < old[2]:
            self.counts["stale_balance"] += 1
            return None
        # an exact rescale up; a coarser figure than ours is floored (never overstate a balance)
        d = s - b.scale
        tot, av = (b.total * 10**d, b.available * 10**d) if d >= 0 else (b.total // 10**-d, b.available // 10**-d)
        self.snap[key] = [tot, av, b.exch_ts]
        later = self.later.get(key)
        if later:
            later = self.later[key] = [x for x in later if x[0] > b.exch_ts]
        self.totals[key] = tot + sum(a for _, a in later) if later else tot
        return key

    def on_fill(self, inst: Instrument, f: Fill) -> None:
        v, s = inst.venue, inst.size_scale
        base_key, quote_key = (v, inst.base), (v, inst.quote)
        if f.side > 0:
            self._delta(base_key, f.exch_ts, f.size, s)
            self._delta(quote_key, f.exch_ts, -cost(f.price, f.size, s), inst.price_scale)
        else:
            self._delta(base_key, f.exch_ts, -f.size, s)
            self._delta(quote_key, f.exch_ts, proceeds(f.price, f.size, s), inst.price_scale)
        if f.fee:
            self._delta((v, text(f.fee_asset) or inst.quote), f.exch_ts, -f.fee, inst.price_scale)

    def _delta(self, key, ts: int, amount: int, scale: int) -> None:
        s = self.scales.get(key)
        if s is None:
            self.counts["unknown_asset"] += 1
            return
        snap = self.snap.get(key)
        if snap is not None and ts <= snap[2]:
            return  # the snapshot already covers it
        d = s - scale
        amount = amount * 10**d if d >= 0 else -(-amount // 10**-d)  # floor: never overstate
        self.later.setdefault(key, []).append((ts, amount))
        self.totals[key] = self.totals.get(key, 0) + amount

    def total(self, venue: str, asset: str) -> int:
        return self.totals.get((venue, asset), 0)


class AccountHandler(Actor):
    """Order entry for one or more venues: ``OrderRequest`` in, ``OrderUpdate`` / ``Fill`` /
    ``BalanceUpdate`` out.  Requests for instruments of other venues are left to their handlers.

    Params: ``instruments`` (registry, see ``common.load_registry``), ``venues`` (names, or a dict
    keyed by name whose values are per-venue settings for the subclass).
    """

    inputs = ("requests",)
    outputs = ("updates", "fills", "balances")
    messages = {"requests": OrderRequest, "updates": OrderUpdate, "fills": Fill, "balances": BalanceUpdate}
    instruments = ()
    venues = ()

    def __init__(self, **params):
        super().__init__(**params)
        for v in self.venues:  # checked before the system starts
            if v not in VENUE_IDS:
                raise ValueError(f"{type(self).__name__}: unknown venue {v!r} (known: {', '.join(VENUES)})")

    def on_start(self) -> None:
        self.registry = load_registry(self.instruments, self.system)
        names = list(self.venues)
        self.served = {i.id for i in self.registry if i.venue in names}

    def on_requests(self, r: OrderRequest) -> None:
        if r.instrument in self.served:
            self.submit(r)
        elif r.instrument not in self.registry.by_id:
            self.unknown = getattr(self, "unknown", 0) + 1
            self.log.warning("%s: request %d for unknown instrument %d ignored (%d so far)", self.name,
                             r.order_id, r.instrument, self.unknown)

    def submit(self, r: OrderRequest) -> None:
        """Send the request to the venue; answers go out on ``updates``, ``fills``, ``balances``."""
        raise NotImplementedError
