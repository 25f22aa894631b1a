"""The overseer: turns every model's ideal orders into requests, within balances and risk limits.

Each pass it looks at the ideal slots whose seqlock version changed (and at slots whose order just
changed state) and compares them with our orders there, open or in flight:

- one order per slot at a time; nothing is sent for a slot while a request for it is in flight;
- a new ideal (any write, even of the same content) is placed at most once: fills consume it, the
  model re-arms a slot by writing it again.  So an IOC is sent once, and a fully filled quote is
  not silently re-placed before the model has seen the fill;
- a changed price/size is an AMEND where the venue has it (new total = filled + ideal size), else
  a CANCEL, and the NEW follows once the cancel is confirmed (never two live orders per slot);
- size 0 cancels the slot's order.

A request the venue never answers (``answer_timeout_ms``) is counted and logged, and the order is
cancelled (again): a NEW the venue never received comes back as an unknown order and the slot is
free again; nothing stays pending for ever.  A CANCEL or AMEND the venue answers with "unknown
order" ends the order (a lost NEW, or a venue or handler that restarted and forgot it): the slot is
free, counted and logged once.  A cancel of an order that was cancelled before (no answer, or
refused) is a retry: it waits ``cancel_retry_ms``, doubled with each retry of that order up to
``cancel_retry_max_ms`` (an unanswered one waits the answer timeout, doubled likewise), and the
venue's rate window, so a venue that keeps refusing is never flooded.

Before a NEW or an AMEND that adds exposure: kill switch, venue filters, no crossing one of our own
orders (self-trade), position and notional limits on the worst case, balance free of every order
we have out (in flight included) and the venue's order-rate limit.  A refusal is counted per
reason and logged when a slot's reason changes; the slot is retried when the account changes
(rate refusals: when the window frees).  Cancels are never held back (risk reduction first) but
count toward the rate window.

Params: ``models`` (array ports, one per model, bound in config), ``instruments``,
``venues = { binance = { fee_bps = 10, amend = true, rate = 10, rate_window_ms = 1000 } }``
(``fee_bps``: the venue's highest fee, reserved on buys), ``limits = { "binance:BTCUSDT" =
{ max_position = "0.5", max_notional = "30000" } }``, ``kill_file`` (path; its existence trips the
kill switch, which cancels everything and refuses every new order), ``order_id_base``, ``poll_ns``,
``answer_timeout_ms`` (default 5000), ``cancel_retry_ms`` (100), ``cancel_retry_max_ms`` (30000).

Placement: seqlock writes ring no doorbell.  Put the overseer after the models in their process
(it then runs in the same pass as the handler that wrote the ideal) or in a spinning process; in
a parked process of its own, set ``poll_ns`` or it sees new ideals only when an answer or the
park timeout wakes it.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter

from .. import _risk
from ..instruments import Instrument
from ..spine.messages import BalanceUpdate, Fill, IdealOrder, OrderAction, OrderFlags, OrderRequest, OrderStatus
from ..spine.messages import OrderUpdate, text
from ..runtime import paths
from ..runtime.actor import Actor
from ..spine import Ring, shm
from .accounts import TERMINAL, Balances, Order, Orders, Reject
from .common import asset_scales, buy_lock, load_registry, settings
from .risk import Exposure, Extremes, KillSwitch, Limits, RateLimit, Refusal

_NEW, _CANCEL, _AMEND = int(OrderAction.NEW), int(OrderAction.CANCEL), int(OrderAction.AMEND)
_FLAGS = int(OrderFlags.POST_ONLY | OrderFlags.IOC | OrderFlags.REDUCE_ONLY)
_ACTION = {int(a): a.name for a in OrderAction}
_HALTED, _REJECTED, _CANCEL_REJECTED = int(Reject.HALTED), int(OrderStatus.REJECTED), int(OrderStatus.CANCEL_REJECTED)
_REFUSAL = {int(r): r for r in Refusal}


class _Venue:
    __slots__ = ("fee_bps", "amend", "rate", "rate_id")
    KEYS = ("fee_bps", "amend", "rate", "rate_window_ms")

    def __init__(self, fee_bps=0, amend=False, rate=10, rate_window_ms=1000):
        self.fee_bps, self.amend = int(fee_bps), bool(amend)
        self.rate = RateLimit(int(rate), int(rate_window_ms) * 1_000_000)
        self.rate_id = -1  # its window in the C check (set on start)


def _history(ring, upto: int, order: int, handler) -> tuple[list, bool]:
    """Records [0, upto) of a ring still in it, as (publish, order, k, handler, message); and
    whether none of them was overwritten already."""
    c = ring.reader("", start=max(upto - ring.capacity, 0), register=False)
    out = []
    for k in range(upto - c.seq):
        m = c.read()
        if m is None:
            break
        out.append((c.tracking()[1], order, k, handler, m))
    return out, upto <= ring.capacity and c.lost == 0


class _Terms:
    """An instrument as the checks see it: filters, venue, limits, and per side the balance a
    buy / sell locks ``(venue, asset)`` with the factor from the instrument's scale to its.
    ``venue`` / ``lim`` are None when not configured (such orders are refused)."""

    __slots__ = ("inst", "venue", "lim", "tick", "lot", "min_size", "min_notional", "unit", "buy_key",
                 "sell_key", "buy_shift", "sell_shift")

    def __init__(self, inst: Instrument, venue: _Venue | None, lim, quote_scale: int, base_scale: int):
        self.inst, self.venue, self.lim = inst, venue, lim
        self.tick, self.lot, self.min_size, self.min_notional = inst.tick, inst.lot, inst.min_size, inst.min_notional
        self.unit = 10**inst.size_scale
        self.buy_key, self.sell_key = (inst.venue, inst.quote), (inst.venue, inst.base)
        self.buy_shift = 10**(quote_scale - inst.price_scale)
        self.sell_shift = 10**(base_scale - inst.size_scale)


def _slot_order(st) -> tuple[int, int]:
    return st.port, st.index


def _changed(arr, seen: list, tags: list | None = None) -> list:
    """The slots of ``arr`` written since ``seen``, read: ``[(tag, version, message or None, origin,
    publisher), ...]`` in index order (tag: ``tags[i]``, or ``i`` when tags is None), ``seen`` (the
    array's write count, -1 before the first look, then the version seen of each watched slot)
    brought up to date.  The reference of ``_spine.Port.changed``, which the overseer uses on the
    spine's arrays (held equal by a hypothesis test); this runs on arrays without it (test doubles)."""
    w = arr.writes()
    if w == seen[0]:
        return []  # nothing written since
    out = []
    for i in range(len(seen) - 1):
        if arr.version(i) != seen[i + 1]:
            v, msg, origin, publisher = arr.latest(i)
            if v != seen[i + 1]:  # else read back at the version seen after all: not moved
                seen[i + 1] = v
                out.append((i if tags is None else tags[i], v, msg, origin, publisher))
    seen[0] = w
    return out


def _decline(ctx, item, now):
    """``Port.serve`` where requests go to a port without it (test doubles): the Python decides."""
    return None


class _Slot:
    __slots__ = ("port", "index", "seen", "ideal", "model", "order", "placed", "refused", "origin")

    def __init__(self, port: int, index: int):
        self.port, self.index = port, index
        self.seen = 0  # seqlock version last read
        self.ideal: IdealOrder | None = None  # None: no order wanted
        self.model = 0  # the writing model's actor id
        self.order: Order | None = None  # the slot's live (or in-flight) order
        self.placed = 0  # the version an order was placed for (consumed)
        self.refused: Refusal | None = None
        self.origin = 0  # origin of the ideal last read: the market data its requests answer


class Overseer(Actor):
    inputs = ("updates", "fills", "balances")
    outputs = ("requests",)
    models = ()
    instruments = ()
    venues: dict = {}
    limits: dict = {}
    kill_file = ""
    order_id_base = 0
    poll_ns = 0
    answer_timeout_ms = 5000
    cancel_retry_ms = 100
    cancel_retry_max_ms = 30_000

    def __init__(self, **params):
        super().__init__(**params)
        self.models = tuple(self.models)
        for p in self.models:
            if not isinstance(p, str) or not p.isidentifier() or hasattr(self, p):
                raise ValueError(f"overseer: model port name {p!r} is not usable")
        self.arrays = self.models
        self.messages = {"updates": OrderUpdate, "fills": Fill, "balances": BalanceUpdate,
                         "requests": OrderRequest, **{p: IdealOrder for p in self.models}}
        # settings checked here, before the system starts, not in a forked process
        try:
            self.v = {name: settings(f"venues.{name}", _Venue, cfg) for name, cfg in dict(self.venues).items()}
            self.timeout_ns = int(self.answer_timeout_ms) * 1_000_000
            self.retry_ns = int(self.cancel_retry_ms) * 1_000_000
            self.retry_max_ns = int(self.cancel_retry_max_ms) * 1_000_000
            self.poll_ns = int(self.poll_ns)
        except (TypeError, ValueError) as e:
            raise ValueError(f"overseer: {e}") from None
        for ref, d in dict(self.limits).items():  # the instruments themselves are resolved on start
            if not isinstance(d, dict) or set(d) != {"max_position", "max_notional"}:
                raise ValueError(f"overseer: limits for {ref}: expected {{ max_position, max_notional }}, not {d!r}")
        if self.timeout_ns <= 0 or self.retry_ns <= 0 or self.retry_max_ns < self.retry_ns:
            raise ValueError("overseer: answer_timeout_ms and cancel_retry_ms must be > 0, "
                             "cancel_retry_max_ms >= cancel_retry_ms")

    def on_start(self) -> None:
        self.registry = reg = load_registry(self.instruments, self.system)
        self.lim = Limits.parse(reg, self.limits)
        self._terms_of: dict[int, _Terms] = {}
        self.orders = Orders()
        self.exposure = Exposure()  # what our orders hold, kept as they change: O(1) checks
        self.extremes = Extremes()  # our highest buy / lowest sell per instrument (self-trade), likewise
        # the check in C (_risk.c), fed the numbers above as they change; _check_py is its reference
        self.risk = _risk.Risk()
        self._key_ids: dict[tuple[str, str], int] = {}  # (venue, asset) -> its id in the C check
        for k, v in enumerate(self.v.values()):
            v.rate_id = k
            self.risk.rate(k, v.rate.count, v.rate.window)
        self.balances = Balances(asset_scales(reg))
        self.kill_switch = KillSwitch(self.kill_file)
        self.refusals: Counter = Counter()  # Refusal name -> count
        self.venue_rejects: Counter = Counter()  # Reject name -> count
        self.sent: Counter = Counter()  # NEW / CANCEL / AMEND -> count
        self.ports = [getattr(self, p) for p in self.models]
        self.slots = [[_Slot(m, i) for i in range(p.size)] for m, p in enumerate(self.ports)]
        # per model: its array's scan (C: Port.changed; else the reference _changed), what was seen
        # of it (write count, then each slot's version), its slots
        self._watch = []
        for p, slots in zip(self.ports, self.slots):
            port = getattr(p.array, "_port", None)  # the spine's SeqArray: its C port
            scan = port.changed if port is not None else functools.partial(_changed, p.array)
            self._watch.append(functools.partial(scan, [-1] + [0] * len(slots), slots))
        if len(self._watch) == 1:
            self._scan = self._watch[0]  # one model: its scan is the pass's, no loop
        self.by_key: dict[tuple[int, int], _Slot] = {}  # (model id, slot) -> slot
        self.dirty: set[_Slot] = set()
        self.refused: set[_Slot] = set()
        self.retry_at = 0
        self._logged: dict[Refusal, int] = {}  # reason -> when it may be logged again
        self.next_id = max(int(self.order_id_base), self.clock.now())
        self._adopt: dict[tuple[int, int], Order] = {}  # (model id, slot) -> live order found on restart
        self._asked: dict[int, int] = {}  # order id -> when its pending request is given up on
        self._cancels: dict[int, tuple[int, int]] = {}  # order id -> (cancels sent, when the last went out)
        self._held: dict[int, Order] = {}  # order id -> order whose cancel retry waits (backoff, rate)
        self.cancel_at = 0  # when the earliest held cancel may go
        self.lost_answers: Counter = Counter()  # action that got no answer -> count
        if hasattr(self.requests, "ring"):  # wired to the spine (not a bare test double)
            self._recover()
        # the common case of a written slot in C (Port.serve: _read then _reconcile, which it is
        # held equal to), on what it reads of this overseer (objects kept for its life)
        port = getattr(self.requests, "port", None)
        self._serve = port.serve if hasattr(port, "serve") else _decline
        self._serve_ctx = (self, self.kill_switch, self._adopt, self.by_key, self._terms_of, self.exposure.of,
                           self._key_ids, self.risk.check, self._track, TERMINAL, _FLAGS, _NEW, _AMEND)

    # ------------------------------------------------------------------ restart
    def _recover(self) -> None:
        """Rebuild orders, positions and balances from the queues' history, so a restarted overseer
        never places an order twice.  The rings keep their recent records in shared memory: every
        request we sent, and every answer up to where our predecessor had read (our inputs resume
        there, by label).  Replayed in publish-time order through the normal handlers.  If a ring
        has overwritten part of that history, positions and open orders cannot be known: the kill
        switch trips (cancel every order rebuilt, in flight or not, also with CANCEL_ALL per venue;
        refuse new ones)."""
        d = paths.system_dir(self.system)
        me = json.loads(shm.read_text(paths.manifest(d)))["actors"].get(self.name, {})
        ring = self.requests.ring
        records, complete = _history(ring, ring.count(), 0, None)
        for order, (port, handler) in enumerate((("updates", self.on_updates), ("fills", self.on_fills),
                                                 ("balances", self.on_balances)), 1):
            q = me.get("inputs", {}).get(port)
            if q is None:
                continue
            r = Ring.attach(paths.queue(d, q))
            mine = [x["seq"] for x in r.consumers() if x["label"] == f"{self.name}.{port}" and x["pid"] == os.getpid()]
            got, ok = _history(r, mine[0] if mine else 0, order, handler)
            records += got
            complete &= ok
            r.close()
        if not records:
            return
        records.sort(key=lambda x: x[:3])
        for _, _, _, handler, m in records:
            if handler is None:
                self.orders.sent(m)
                self._account(m.order_id if m.action == _NEW else m.ref_id)
                self.next_id = max(self.next_id, m.order_id)
            else:
                handler(m)
        live = self.orders.live()
        self._adopt = {(o.model, o.slot): o for o in sorted(live, key=lambda o: o.order_id)}
        now = self.clock.now()
        self._asked.update((o.order_id, now + self.timeout_ns) for o in live if o.pending)  # their clock starts now
        sent = sum(1 for x in records if x[3] is None)
        if sent:
            self.log.warning("%s: restarted: %d requests and %d answers replayed, %d orders live", self.name,
                             sent, len(records) - sent, len(live))
        else:  # a first start: what the venues said before we were up (starting balances)
            self.log.info("%s: %d answers published before the start read", self.name, len(records))
        if not complete:
            self.kill("restarted without the full order history: open orders and positions unknown")
            for o in live:  # their answers may be among what was lost: ask now, not after a timeout
                if o.pending:
                    self._cancel(o, now)
            for venue in self.v:
                iid = next((i for i in self.lim if self.registry.by_id[i].venue == venue), None)
                if iid is not None:
                    self._send((self._id(), 0, 0, 0, iid, 0, 0, int(OrderAction.CANCEL_ALL), 1, 0),
                               self.clock.now())

    # ------------------------------------------------------------------ venue answers
    def on_updates(self, u: OrderUpdate) -> None:
        if u.reason == _HALTED and not self.kill_switch.reason:
            inst = self.registry.by_id.get(u.instrument)
            self.kill(f"order entry halted on {inst.venue if inst else 'a venue'}")
        o = self.orders.on_update(u)
        self._account(u.order_id)  # a late update may still raise what a finished order filled
        if o is None:
            return
        if not o.pending:
            self._asked.pop(o.order_id, None)
        if o.status in TERMINAL:
            self._cancels.pop(o.order_id, None)
            self._held.pop(o.order_id, None)
        if u.status == _REJECTED or u.status == _CANCEL_REJECTED:
            why = Reject(u.reason).name if u.reason in Reject._value2member_map_ else str(u.reason)
            what = "order" if u.status == OrderStatus.REJECTED else "change of order"
            self.venue_rejects[why if u.status == OrderStatus.REJECTED else f"CANCEL_{why}"] += 1
            if u.status == OrderStatus.CANCEL_REJECTED and not o.live:
                self.log.warning("%s: order %d is unknown to the venue: ended, its slot is free (%d so far)",
                                 self.name, o.order_id, self.venue_rejects[f"CANCEL_{why}"])
            else:
                self.log.warning("%s: %s %d rejected by the venue: %s", self.name, what, o.order_id, why)
        self._touched(o)

    def on_fills(self, f: Fill) -> None:
        o = self.orders.on_fill(f)
        if o is None:
            return
        inst = self.registry.by_id[o.instrument]
        self.balances.on_fill(inst, f)
        self._account(f.order_id, True)  # the position moved too
        for key in {(inst.venue, inst.base), (inst.venue, inst.quote), (inst.venue, text(f.fee_asset) or inst.quote)}:
            self._push_asset(key)
        self._touched(o)

    def on_balances(self, b: BalanceUpdate) -> None:
        key = self.balances.on_balance(b)
        if key is not None:
            self._push_asset(key)
            self.dirty |= self.refused

    def _touched(self, o: Order) -> None:
        st = self.by_key.get((o.model, o.slot))
        if st is not None:
            self.dirty.add(st)
        self.dirty |= self.refused

    # ------------------------------------------------------------------ the pass
    def loop(self) -> bool:
        now = self.clock.now()
        if self.kill_switch.path is not None and self.kill_switch.check(now):
            self._killed()
        # written: (slot, version, ideal, origin, writer) of each slot whose version moved, in slot
        # order, read in one call per model; each is taken in (_read) just before it is reconciled
        written = self._scan()
        # with slots to redo, or timers: merged with what was written, in slot order
        changed = self._merge(now, written) if self.dirty or self.retry_at or self.cancel_at else written
        serve, ctx = self._serve, self._serve_ctx
        for x in changed:
            r = serve(ctx, x, now)  # a written slot's common case, published at once
            if r is None:  # the rest: in Python
                st = x[0]
                if x[1] is not None:
                    self._read(*x)
                self._reconcile(st, now)
            elif r:  # published (its fields), or refused (the check's answer)
                self._served(x[0], r, now)
        if self._asked:
            due = min(self._asked.values())
            if now >= due:
                self._sweep(now)
                due = min(self._asked.values()) if self._asked else 0
        else:
            due = 0
        w = self.retry_at
        for x in (now + self.poll_ns if self.poll_ns else 0, due, self.cancel_at):
            if x:
                w = min(w, x) if w else x
        self.wakeup = w
        return bool(changed)

    def _scan(self) -> list:
        """What every model wrote since the last pass, read: its _watch scans' lists, in order."""
        written = []
        for scan in self._watch:
            got = scan()
            if got:
                written += got
        return written

    def _merge(self, now: int, written: list) -> list:
        """The pass's slots: ``written`` (as _scan gives them) and those to redo (answered,
        refused and due again, held cancels released), each once, in slot order; a slot to redo
        only is ``(slot, None, None, 0, 0)``."""
        dirty = self.dirty
        if self.retry_at and now >= self.retry_at:
            self.retry_at = 0
            dirty |= self.refused
        if self.cancel_at and now >= self.cancel_at:
            for x in written:  # _release finds slots by their writer: taken in first, redone below
                self._read(*x)
                dirty.add(x[0])
            written = ()
            self._release(now)
        if not dirty:
            return written
        self.dirty = set()
        if not written:
            return [(st, None, None, 0, 0) for st in sorted(dirty, key=_slot_order)]
        new = {x[0]: x for x in written}
        for st in dirty:  # (a loop: cheaper than a set or a generator for the few slots here)
            if st not in new:  # merge, in a fixed order: deterministic
                return [new.get(st) or (st, None, None, 0, 0) for st in sorted(dirty.union(new), key=_slot_order)]
        return written

    def _read(self, st: _Slot, v: int, msg: IdealOrder | None, origin: int, model: int) -> None:
        """Take in what written slot ``st`` was read to hold: version, ideal, origin, writer."""
        st.seen, st.origin, st.model = v, origin, model
        st.ideal = msg if msg is not None and msg.size > 0 else None
        self.by_key[(model, st.index)] = st
        if st.order is None and self._adopt:
            st.order = self._adopt.pop((model, st.index), None)  # ours from before a restart

    def _served(self, st: _Slot, fields: tuple | int, now: int) -> None:
        """What _reconcile does after its _send, for the AMEND or NEW ``Port.serve`` published; or
        after its check refused one (``fields``: the C check's answer)."""
        if fields.__class__ is int:
            why = _REFUSAL[fields]
            self._refuse(st, why, now)
            if st.order is not None and why != Refusal.RATE:  # an AMEND's: never keep an order the model
                self._cancel(st.order, now)  # no longer wants
            return
        o = self._book(fields, now)
        if fields[7] == _NEW:
            st.order = o
        else:
            o = st.order
        o.version = st.placed = st.seen
        self._clear_refusal(st)

    def _sweep(self, now: int) -> None:
        """Requests the venue has not answered in time: cancel (again) what they were about."""
        for oid, t in list(self._asked.items()):
            o = self.orders.active.get(oid)
            if o is None or not o.pending or not o.live:
                del self._asked[oid]
                continue
            if now < t:
                continue
            del self._asked[oid]  # asked again below (or once the retry's backoff allows)
            what = _ACTION.get(int(o.pending), str(o.pending))
            n = self.lost_answers[what] = self.lost_answers[what] + 1
            if n <= 10 or n % 1000 == 0:
                self.log.warning("%s: no answer to the %s of order %d (%d so far): cancelling it",
                                 self.name, what, oid, n)
            self._track.origin = 0
            self._cancel(o, now)

    def _release(self, now: int) -> None:
        """Held cancel retries whose time has come: a slot's order goes back to its slot (the
        model may want it again by now), the rest are cancelled."""
        self.cancel_at = 0
        for oid, o in list(self._held.items()):
            del self._held[oid]
            if not o.live:
                continue
            st = self.by_key.get((o.model, o.slot))
            if st is not None and st.order is o and not o.pending:
                self.dirty.add(st)
            else:
                self._track.origin = 0
                self._cancel(o, now)

    def _reconcile(self, st: _Slot, now: int) -> None:
        self._track.origin = st.origin  # requests carry the origin of the ideal they serve (tick to trade)
        o = st.order
        if o is not None and o.status in TERMINAL:
            o = st.order = None
        if o is not None and o.pending:
            return  # wait for the venue's answer
        ideal = st.ideal
        if self.kill_switch.reason or ideal is None:
            if o is not None:
                self._cancel(o, now)
            elif ideal is not None and st.placed != st.seen:
                self._refuse(st, Refusal.KILLED, now)
                return
            self._clear_refusal(st)
            return
        if o is not None:
            if o.version == st.seen:
                return
            if ideal.instrument == o.instrument and ideal.side == o.side and ideal.flags & _FLAGS == o.flags:
                done = o.filled if o.filled > o.fill_qty else o.fill_qty
                if ideal.price == o.price and ideal.size == o.size - done:
                    o.version = st.placed = st.seen
                    return
                t = self._terms_of.get(o.instrument) or self._terms(o.instrument)
                venue = t.venue if t is not None else None
                if venue is not None and venue.amend and not o.no_amend:
                    size = done + ideal.size
                    why = self._check(o.instrument, o.side, ideal.price, size, o, now)
                    if why is not None:
                        self._refuse(st, why, now)
                        if why != Refusal.RATE:  # never keep an order the model no longer wants
                            self._cancel(o, now)
                        return
                    self.next_id += 1
                    self._send((self.next_id, o.order_id, ideal.price, size, o.instrument, o.model,
                                o.slot, _AMEND, o.side, o.flags), now)
                    o.version = st.placed = st.seen
                    self._clear_refusal(st)
                    return
            st.placed = 0  # the NEW for this wish follows once the cancel is confirmed
            self._cancel(o, now)
            return
        if st.placed == st.seen:
            return  # this ideal was placed already: fills consumed it
        why = self._check(ideal.instrument, ideal.side, ideal.price, ideal.size, None, now)
        if why is not None:
            return self._refuse(st, why, now)
        self.next_id += 1
        o = self._send((self.next_id, 0, ideal.price, ideal.size, ideal.instrument, st.model, st.index, _NEW,
                        ideal.side, ideal.flags & _FLAGS), now)
        o.version = st.placed = st.seen
        st.order = o
        self._clear_refusal(st)

    # ------------------------------------------------------------------ requests
    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _send(self, fields: tuple, now: int, wait: int = 0) -> Order:
        """Publish an OrderRequest (its fields, in order), then book it."""
        self.requests.send(fields)  # first: the bookkeeping below is not on the way to the venue
        return self._book(fields, now, wait)

    def _book(self, fields: tuple, now: int, wait: int = 0) -> Order:
        """Book a request just published: the venue's rate window, counts, the order."""
        iid = fields[4]
        t = self._terms_of.get(iid) or self._terms(iid)
        if t is not None and t.venue is not None:
            t.venue.rate.record(now)
            self.risk.record(t.venue.rate_id, now)
        self.sent[_ACTION[fields[7]]] += 1
        o = self.orders.sent(fields)
        if o is not None:
            self._account(o.order_id)
            self._asked[o.order_id] = now + (wait or self.timeout_ns)
        return o

    def _account(self, oid: int, moved: bool = False) -> None:
        """Keep what order ``oid`` holds and our extreme prices current in ``exposure``,
        ``extremes`` and the C check (after a request, update or fill; ``moved``: a fill moved the
        position).  Many answers change none of it (an ack, an order open, a cancel in flight):
        then nothing is pushed."""
        o = self.orders.active.get(oid) or self.orders.done.get(oid)
        if o is None:
            return
        iid, side, target = o.instrument, o.side, o.target
        # with an amend in flight an order counts at the worse price (self-trade): a buy the higher
        # (also what it locks), a sell the lower
        price = o.price if target is None else max(o.price, target[0]) if side > 0 else min(o.price, target[0])
        push = self.extremes.set(oid, iid, 1 if side > 0 else -1, None if o.status in TERMINAL else price) or moved
        t = self._terms_of.get(iid) or self._terms(iid)
        q = o.lock_qty
        if t is None:  # an instrument whose assets are not among our balances
            key, held = None, 0
        elif side > 0:
            key = t.buy_key
            held = buy_lock(price, q, t.inst.size_scale, t.venue.fee_bps if t.venue is not None else 0) * t.buy_shift
        else:
            key, held = t.sell_key, q * t.sell_shift
        ex = self.exposure
        old = ex.of.get(oid)
        if (old is None) if not q else (old is not None and old[2:] == (q, key, held)):
            keys = ()  # unchanged
        else:
            ex.account(o, q, key, held)
            push, keys = True, {old[3] if old else None, key} - {None}
        if t is None:
            return
        if push:
            self._push_exposure(iid)
        for k in keys:
            self._push_asset(k)

    def _push_exposure(self, iid: int) -> None:
        """An instrument's position, open size per side and our extreme prices, to the C check."""
        ex, xs = self.exposure, self.extremes
        self.risk.exposure(iid, self.orders.positions.get(iid, 0), ex.open.get((iid, 1), 0),
                           ex.open.get((iid, -1), 0), xs.best(iid, 1), xs.best(iid, -1))

    def _push_asset(self, key) -> None:
        kid = self._key_ids.get(key)
        if kid is not None:
            self.risk.asset(kid, self.balances.totals.get(key, 0), self.exposure.held.get(key, 0))

    def _cancel(self, o: Order, now: int) -> None:
        """Cancel ``o``.  The first cancel goes at once (risk reduction first); a retry (the
        last was refused or not answered) waits its backoff and the venue's rate window."""
        n, last = self._cancels.get(o.order_id, (0, 0))
        if n:
            due = last + min(self.retry_ns << min(n - 1, 40), self.retry_max_ns)
            t = self._terms(o.instrument)
            rate = t.venue.rate if t is not None and t.venue is not None else None
            if now >= due and rate is not None and not rate.allows(now):
                due = rate.next_free(now)
            if now < due:
                self._held[o.order_id] = o
                self.cancel_at = min(self.cancel_at, due) if self.cancel_at else due
                return
        self._held.pop(o.order_id, None)
        self._cancels[o.order_id] = (n + 1, now)
        # an unanswered cancel is given up on after the answer timeout, doubled with each retry
        wait = min(self.timeout_ns << min(n, 40), max(self.retry_max_ns, self.timeout_ns))
        self._send((self._id(), o.order_id, o.price, o.size, o.instrument, o.model, o.slot, _CANCEL,
                    o.side, o.flags), now, wait)

    def _refuse(self, st: _Slot, why: Refusal, now: int) -> None:
        n = self.refusals[why.name] = self.refusals[why.name] + 1
        i = st.ideal
        # a line when a slot's reason changes, at most one a second per reason: a model
        # oscillating around a limit must not flood the log (the counters keep every refusal)
        if st.refused != why and now >= self._logged.get(why, 0):
            self._logged[why] = now + 1_000_000_000
            self.log.warning("%s: %s slot %d: %s %d@%d on instrument %d refused: %s (%d so far)", self.name,
                             self.models[st.port], st.index, "buy" if i.side > 0 else "sell", i.size, i.price,
                             i.instrument, why.name, n)
        st.refused = why
        self.refused.add(st)
        if why == Refusal.RATE:
            # the C check refused: the Python window (the one that schedules) is purged here too
            t = self.v[self.registry.by_id[i.instrument].venue].rate.next_free(now) or now + 1
            self.retry_at = min(self.retry_at, t) if self.retry_at else t

    def _clear_refusal(self, st: _Slot) -> None:
        if st.refused is not None:
            st.refused = None
            self.refused.discard(st)

    # ------------------------------------------------------------------ checks
    def _terms(self, iid: int) -> "_Terms | None":
        """What the checks need of an instrument, kept per instrument (a registered instrument, its
        venue and limits never change); None for one unknown here, or one whose assets came after
        our balances (their scale is not known)."""
        t = self._terms_of.get(iid)
        if t is None:
            inst = self.registry.by_id.get(iid)
            if inst is None:
                try:
                    inst = self.registry[iid]  # a shared registry re-reads its file on a miss
                except KeyError:
                    return None
            scales = self.balances.scales
            bq, bb = scales.get((inst.venue, inst.quote), -1), scales.get((inst.venue, inst.base), -1)
            if bq < inst.price_scale or bb < inst.size_scale:
                return None
            t = self._terms_of[iid] = _Terms(inst, self.v.get(inst.venue), self.lim.get(iid), bq, bb)
            ids = [self._key_ids.setdefault(k, len(self._key_ids)) for k in (t.buy_key, t.sell_key)]
            v, lim = t.venue, t.lim
            self.risk.terms(iid, v is not None, lim is not None, t.tick, t.lot, t.min_size, t.min_notional, t.unit,
                            lim.max_position if lim else 0, lim.max_notional if lim else 0, v.fee_bps if v else 0,
                            t.buy_shift, t.sell_shift, ids[0], ids[1], v.rate_id if v else -1)
            self._push_exposure(iid)
            for k in (t.buy_key, t.sell_key):
                self._push_asset(k)
        return t

    def _check(self, iid: int, side: int, price: int, size: int, amended: Order | None, now: int) -> Refusal | None:
        """Refusal for a NEW (``amended`` None) or an AMEND to total ``size`` at ``price``: the C
        check (``_risk.c``) on the numbers this overseer keeps, ``_check_py`` where it declines."""
        if self.kill_switch.reason:
            return Refusal.KILLED
        if amended is None:
            why = self.risk.check(iid, side, price, size, 0, 0, -1, 0, 0, now)
        else:
            mine = self.exposure.of.get(amended.order_id)
            if mine is None:
                why = self.risk.check(iid, side, price, size, 0, 0, -1, 0, amended.fill_qty, now)
            else:
                why = self.risk.check(iid, side, price, size, mine[1], mine[2], self._key_ids.get(mine[3], -1),
                                      mine[4], amended.fill_qty, now)
        if why < 0:
            return self._check_py(iid, side, price, size, amended, now)
        return _REFUSAL[why] if why else None

    def _check_py(self, iid: int, side: int, price: int, size: int, amended: Order | None, now: int) -> Refusal | None:
        """The reference check (the C one answers the same, held equal by the state machine test)."""
        if self.kill_switch.reason:
            return Refusal.KILLED
        t = self._terms_of.get(iid) or self._terms(iid)
        if t is None or (side != 1 and side != -1):
            return Refusal.UNKNOWN_INSTRUMENT
        if t.venue is None:
            return Refusal.NO_VENUE
        if t.lim is None:
            return Refusal.NO_LIMITS
        if (price <= 0 or size <= 0 or price % t.tick or size % t.lot or size < t.min_size
                or price * size // t.unit < t.min_notional):
            return Refusal.FILTER
        venue = t.venue
        if not venue.rate.allows(now):
            return Refusal.RATE  # transient, and cheap to tell
        for o in self.orders.by_instrument[iid].values() if iid in self.orders.by_instrument else ():
            if o.side == -side and o.status not in TERMINAL:  # self-trade: our orders here only
                p = o.price if o.target is None else (min if side > 0 else max)(o.price, o.target[0])
                if (p <= price) if side > 0 else (p >= price):
                    return Refusal.SELF_TRADE
        # Open size per side on this instrument, and what our orders hold of the asset this one
        # would lock (at the balance's scale), kept as orders change; an amended order's new size
        # replaces what it counts now and frees its lock.
        key = t.buy_key if side > 0 else t.sell_key
        ex = self.exposure
        buys, sells, held = ex.open.get((iid, 1), 0), ex.open.get((iid, -1), 0), ex.held.get(key, 0)
        if amended is not None:
            mine = ex.of.get(amended.order_id)
            if mine is not None:
                if mine[1] > 0:
                    buys -= mine[2]
                else:
                    sells -= mine[2]
                if mine[3] == key:
                    held -= mine[4]
        add = size - (amended.fill_qty if amended else 0)
        if side > 0:
            buys += add
        else:
            sells += add
        fee_bps = venue.fee_bps
        pos = self.orders.positions.get(iid, 0)
        long_, short, lim = pos + buys, pos - sells, t.lim  # the worst case: every order of a side fills
        if long_ > lim.max_position or -short > lim.max_position:
            return Refusal.POSITION
        if max(abs(long_), abs(short)) * price // t.unit > lim.max_notional:
            return Refusal.NOTIONAL
        if side > 0:
            need, shift = buy_lock(price, add, t.inst.size_scale, fee_bps), t.buy_shift
        else:
            need, shift = add, t.sell_shift
        if need > (self.balances.totals.get(key, 0) - held) // shift:
            return Refusal.BALANCE
        return None

    @staticmethod
    def _lock(o: Order, inst: Instrument, fee_bps: int) -> int:
        """What an order of ours holds, in the locked asset at the instrument's scale (the
        reference ``_account``'s figure is held to by the state machine test's walk)."""
        q = o.lock_qty
        if o.side < 0:
            return q
        price = o.price if o.target is None else max(o.price, o.target[0])
        return buy_lock(price, q, inst.size_scale, fee_bps)

    # ------------------------------------------------------------------ kill switch
    def kill(self, reason: str) -> None:
        """Cancel everything and refuse every new order from now on (latched)."""
        if self.kill_switch.trip(reason):
            self._killed()

    def _killed(self) -> None:
        self.log.error("%s: KILL SWITCH: %s: cancelling every order", self.name, self.kill_switch.reason)
        for slots in self.slots:
            self.dirty.update(slots)
        now = self.clock.now()
        for o in self.orders.live():  # orders of slots not seen since a restart, too
            if not o.pending and self.by_key.get((o.model, o.slot)) is None:
                self._cancel(o, now)
