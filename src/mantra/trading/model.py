"""The trade-model API.

A model is an ``Actor`` (so where it runs is configuration).  It follows some instruments (the
runtime keeps their books from the ``L2Update`` ports, in C), and on each complete exchange
message (``L2Flags.LAST``) on a consistent book it decides its **ideal orders**: one
``IdealOrder`` per slot of its own seqlock array (slot -> instrument, side, price, size, flags;
size 0 = no order).  The overseer turns those
into requests.  A model reads what became of its orders from the request/update/fill streams.

    class MyModel(TradeModel):
        def on_start(self):
            super().on_start()
            self.inst = self.follow(self.instrument)        # "venue:symbol" or id
        def on_book(self, iid, book, exch_ts):              # book: book.Book, consistent
            self.quote(0, iid, +1, book.best_bid(), self.inst.size("0.01"), POST_ONLY)
        def on_order(self, o): ...                          # one of our orders changed (accounts.Order)

Writing a slot is a request: ``quote`` writes only when the content changes, and after the slot's
order filled or ended the next ``quote`` writes again even if identical (the overseer places each
write at most once, so this is how a model re-arms a slot after a fill).

Params: ``instruments`` (registry), ``l2_ports`` (input ports carrying L2Update, default
``["l2"]``), ``trade_ports`` (TradeUpdate, default none), ``status_ports`` (BookStatus, default
none: then every book is trusted), ``trust_unverified`` (with status ports: also trade on books the
venue cannot prove in step, ``Status.UNVERIFIED``; default no); ports ``requests``, ``updates``, ``fills`` and the array ``ideal`` are always bound.
"""

from __future__ import annotations

from types import MethodType

from ..book import Book
from ..instruments import Instrument
from ..runtime.actor import Actor
from ..spine.messages import BookStatus, Fill, IdealOrder, L2Update, OrderAction, OrderRequest, OrderUpdate, TradeUpdate
from ..venues.events import Status
from .accounts import Order, Orders
from .common import bind_ports, load_registry, resolve

_EMPTY = (0, 0, 0, 0, 0)  # an IdealOrder's fields: no order wanted
_STALE = object()  # the slot's order ended: rewrite even identical content


class TradeModel(Actor):
    arrays = ("ideal",)
    instruments = ()
    l2_ports = ("l2",)
    trade_ports = ()
    status_ports = ()
    trust_unverified = False  # trade on books a venue cannot prove in step (Bitstamp between audits)

    def __init__(self, **params):
        super().__init__(**params)
        self.books: dict[int, Book] = {}  # followed instruments; the runtime applies L2Updates in C
        self.book_ports = {p: self.books for p in self.l2_ports}
        self.book_calls = tuple(self.l2_ports)  # (instrument, book, exch_ts), on an uncrossed book
        # with no status ports every book is trusted: the runtime calls on_book itself (book_calls)
        on_l2 = self._on_l2 if self.status_ports else self.on_book
        self.inputs = (bind_ports(self, self.l2_ports, on_l2) + bind_ports(self, self.trade_ports, self._on_trade)
                       + bind_ports(self, self.status_ports, self._on_status) + ("requests", "updates", "fills"))
        self.messages = {**{p: L2Update for p in self.l2_ports}, **{p: TradeUpdate for p in self.trade_ports},
                         **{p: BookStatus for p in self.status_ports}, "requests": OrderRequest,
                         "updates": OrderUpdate, "fills": Fill, "ideal": IdealOrder}

    def on_start(self) -> None:
        self.registry = load_registry(self.instruments, self.system)
        self.trusted: dict[int, bool] = {}
        self.orders = Orders()
        self.slot_orders: dict[int, Order] = {}  # slot -> its latest order
        # per slot, what was written last: an IdealOrder's fields (price, size, instrument, side,
        # flags) as a plain tuple, None before the first write, _STALE once its order ended
        self.written: list = [None] * self.ideal.size
        self._write = self.ideal.write  # one C call: the fields go straight into the slot
        cq = getattr(self.ideal, "quote", None)
        if cq is not None and type(self).quote is TradeModel.quote:  # quote below, in one C call
            self.quote = MethodType(cq, self.written)  # (binds written with no copy of the arguments)
        for i in range(self.ideal.size):  # a restarted model must not leave its old wishes standing
            v, msg = self.ideal.read(i)
            if msg is not None and msg.size:
                self.ideal.write(i, _EMPTY)

    def follow(self, ref) -> Instrument:
        """Follow an instrument (id or "venue:symbol"): keep its book, call ``on_book`` for it."""
        inst = resolve(self.registry, ref)
        self.books.setdefault(inst.id, Book())
        self.trusted.setdefault(inst.id, not self.status_ports)
        return inst

    # ------------------------------------------------------------------ for subclasses
    def on_book(self, iid: int, book: Book, exch_ts: int) -> None:
        """A complete exchange message was applied to a followed, trusted, uncrossed book."""

    def on_trade(self, t: TradeUpdate) -> None:
        """A trade on a followed instrument."""

    def on_order(self, o: Order) -> None:
        """One of this model's orders changed state (after an update or a fill)."""

    def on_untrusted(self, iid: int) -> None:
        """The book of ``iid`` must not be traded on: by default, withdraw every slot on it."""
        for slot, w in enumerate(self.written):
            if type(w) is tuple and w[1] and w[2] == iid:
                self.withdraw(slot)

    def quote(self, slot: int, iid: int, side: int, price: int, size: int, flags: int = 0) -> bool:
        """Set the ideal order of ``slot``; True if written.  (The reference of the C ``Port.quote``
        that replaces it at start when the array is the runtime's.)"""
        msg = (price, size, iid, side, flags)
        if self.written[slot] == msg:
            return False
        self.written[slot] = msg
        self._write(slot, msg)
        return True

    def withdraw(self, slot: int) -> bool:
        """No order wanted in ``slot``."""
        w = self.written[slot]
        if w is None or (w is not _STALE and not w[1]):
            return False
        self.written[slot] = _EMPTY
        self._write(slot, _EMPTY)
        return True

    def position(self, iid: int) -> int:
        """Net position from this model's fills (base, size scale)."""
        return self.orders.positions.get(iid, 0)

    def open_orders(self, iid: int | None = None) -> list[Order]:
        return self.orders.live(iid)

    def busy(self, slot: int) -> bool:
        """The slot has an order that is live or not yet answered."""
        o = self.slot_orders.get(slot)
        return o is not None and (o.live or bool(o.pending))

    # ------------------------------------------------------------------ stream handlers
    def _on_l2(self, iid: int, book: Book, exch_ts: int) -> None:
        """The end of an exchange message on ``iid`` that left its book uncrossed (the runtime has
        applied the whole message and counts the crossed ones)"""
        if self.trusted[iid]:
            self.on_book(iid, book, exch_ts)

    def _on_trade(self, t: TradeUpdate) -> None:
        if t.instrument in self.books:
            self.on_trade(t)

    def _on_status(self, s: BookStatus) -> None:
        if s.instrument not in self.books:
            return
        ok = s.status == Status.SYNCED or (s.status == Status.UNVERIFIED and self.trust_unverified)
        was, self.trusted[s.instrument] = self.trusted[s.instrument], ok
        if was and not ok:
            self.on_untrusted(s.instrument)

    def on_requests(self, r: OrderRequest) -> None:
        if r.model != self.id:
            return
        o = self.orders.sent(r)
        if o is not None and r.action == OrderAction.NEW:
            self.slot_orders[r.slot] = o

    def on_updates(self, u: OrderUpdate) -> None:
        if u.order_id in self.orders.active:
            o = self.orders.on_update(u)
            if o is not None:
                self._changed(o)

    def on_fills(self, f: Fill) -> None:
        if f.order_id in self.orders.active or f.order_id in self.orders.done:
            o = self.orders.on_fill(f)
            if o is not None:
                self._changed(o, filled=True)

    def _changed(self, o: Order, filled: bool = False) -> None:
        if (filled or not o.live) and self.slot_orders.get(o.slot) is o:
            w = self.written[o.slot]
            if type(w) is tuple and w[1]:
                self.written[o.slot] = _STALE
        self.on_order(o)
