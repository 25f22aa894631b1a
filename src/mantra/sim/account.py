"""The order-entry side every venue simulator with an account shares (a mixin ahead of
``VenueSimulator``): the matching engine that is the account's truth, what the checks from
outside read (``account()``, ``balance``, ``order_state``), the order-entry fault methods
(``faults.py`` names them; each venue module acts on them in its own formats) and the market's
steps fed to the engine.  The venue module keeps everything it formats: its messages, ids and
REST records."""

from __future__ import annotations

import time
from collections import Counter, deque

from ..fixed import from_fixed
from ..spine.messages import OrderStatus
from ..trading.matching import Matching

_ENDED = (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED)


class AccountSim:
    """Mixed into a ``VenueSimulator`` (before it): ``venue``, ``lock``, ``instruments`` and
    ``source`` are the simulator's."""

    def _init_account(self, credentials, default_credentials: dict, balances, default_balances: dict,
                      maker_bps, taker_bps) -> None:
        """The engine holding the account (its balances limited to the assets listed) and the
        bookkeeping every venue keeps about its orders."""
        self.credentials = dict(credentials or default_credentials)
        assets = {a for i in self.instruments.values() for a in (i.base, i.quote)}
        start = {a: v for a, v in (default_balances if balances is None else balances).items() if a in assets}
        self._engine_out: list = []
        self.engine = Matching(self.source.registry, {self.venue: {"maker_bps": maker_bps, "taker_bps": taker_bps,
                                                                   "balances": start}}, self._engine_emit,
                               name=f"{self.venue}-sim")
        self.sim_orders: dict = {}  # engine order id (= the venue's order id) -> the venue's record
        self.by_cid: dict = {}
        self.trades: deque = deque(maxlen=10_000)  # the account's fills, as the venue module records them
        self.placed: Counter = Counter()  # client order id -> NEWs accepted (never above 1)
        self.order_counts: Counter = Counter()
        self._next_oid = 0
        self._order_faults: deque[str] = deque()
        self._dup = self._reorder = self._cut = self._cancel_filled = 0

    def account(self) -> dict:
        e, reg = self.engine, self.source.registry
        balances = {}
        for (venue, asset), scale in sorted(e.scales.items()):
            total, avail = e.balance(venue, asset)
            balances[asset] = {"total": from_fixed(total, scale), "available": from_fixed(avail, scale)}
        open_ = []
        for o in e.open_orders(self.venue):
            inst = reg.by_id[o.instrument]
            so = self.sim_orders.get(o.order_id)
            open_.append({"cid": so.cid if so else "", "symbol": inst.symbol, "side": o.side,
                          "price": from_fixed(o.price, inst.price_scale), "size": from_fixed(o.size, inst.size_scale),
                          "filled": from_fixed(o.filled, inst.size_scale)})
        return {"placed": dict(self.placed), "open": open_, "balances": balances, "fills": len(self.trades)}

    # faults (named in faults.py)
    def order_5xx(self) -> None:
        with self.lock:
            self._order_faults.append("5xx")

    def order_timeout(self) -> None:
        with self.lock:
            self._order_faults.append("timeout")

    def order_rate_limit(self) -> None:
        with self.lock:
            self._order_faults.append("rate")

    def stream_duplicate(self, n: int = 1) -> None:
        with self.lock:
            self._dup += int(n)

    def stream_reorder(self) -> None:
        with self.lock:
            self._reorder += 1

    def stream_disconnect(self) -> None:
        with self.lock:
            self._cut += 1

    def ban(self) -> None:
        self.rate_limit_next(1, status=418)

    def cancel_filled(self) -> None:
        with self.lock:
            self._cancel_filled += 1

    # the truth about the account
    def balance(self, asset: str) -> tuple[int, int, int]:
        """(total, available, scale) of the account's ``asset``."""
        with self.lock:
            total, avail = self.engine.balance(self.venue, asset)
            return total, avail, self.engine.scales[(self.venue, asset)]

    def order_state(self, cid: str):
        with self.lock:
            so = self.by_cid.get(cid)
            return None if so is None else self.engine.order(so.oid)

    # engine in and out
    def _feed_engine(self, step) -> int | None:
        """The market's ``step`` into the engine (trades, then the book): the time it happened, or
        None before the engine exists (the first steps come from the base constructor)."""
        eng = getattr(self, "engine", None)
        if eng is None:
            return None
        inst = self.instruments[step.symbol]
        now = step.ts or time.time_ns()
        for t in step.trades:
            eng.trade(inst.id, t.side, t.price, t.size, now)
        book = eng.books[inst.id]
        for side, price, size in step.levels:
            book.apply(side, price, size)
        if step.levels:
            eng.book_moved(inst.id, now)
        return now

    def _fill_before_cancel(self, so, now: int) -> bool:
        """The ``cancel_filled`` fault, as a cancel of ``so`` arrives: a trade prints through the order
        (and nothing else resting) so that it fills first.  True if it did: the venue streams it."""
        st = self.engine.order(so.oid) if self._cancel_filled else None
        if st is None or st.status in _ENDED:
            return False
        self._cancel_filled -= 1
        self.order_counts["filled_before_cancel"] += 1
        rest = self.engine.resting[so.iid]
        others = {k: v for k, v in rest.items() if k != so.oid}
        for k in others:
            del rest[k]
        tick = self.instruments[so.sym].tick
        self.engine.trade(so.iid, -st.side, st.price - st.side * tick, st.size, now)  # prints through it
        rest.update(others)
        return True

    def _engine_emit(self, venue: str, port: str, m) -> None:
        self._engine_out.append((port, m))
