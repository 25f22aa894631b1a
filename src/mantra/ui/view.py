"""What the UI knows: every series, table and latest value, built from spine records.

``View.ingest(queue, records)`` takes a batch of whole records (a numpy structured array, as
``Consumer.read_batch`` and the segment files give them) and files it by message type, with numpy
over the batch rather than Python per record: a live system and a recording go through the same
code.  Best bid/ask come from C books (``Book.tops``: one call per instrument per batch).  Every
method is called under the server's lock; queries return plain data.

Series (keys the page asks for): ``top/<inst>`` (bid, ask), ``trades/<inst>``, ``orders/<inst>``
(every order update: price, size, side, status, order id as an exact int64), ``fills/<inst>``, ``books/<inst>``
(book-state changes), ``position/<inst>``, ``pnl/<inst>`` (cash plus position marked at the mid,
in the quote currency), ``balance/<venue>/<asset>``, ``latency/requests`` (each OrderRequest's
origin → publish), ``rate/<queue>`` (messages/s).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .._spine import Book
from ..instruments import VENUES
from ..spine.messages import (BalanceUpdate, BookStatus, Fill, L2Update, OrderAction, OrderRequest, OrderStatus,
                              OrderUpdate, TradeUpdate, text)
from ..telemetry.hist import Hist
from ..venues.events import Status
from .series import LINE, POINTS, Series

# the page's book states, from the venues' trust status
BOOK_STATES = ("unknown", "synced", "gap", "resyncing", "stale", "unverified")
_UI_STATE = {Status.SYNCED: 1, Status.UNVERIFIED: 5, Status.GAP: 2, Status.CHECKSUM: 2, Status.CROSSED: 2,
             Status.MALFORMED: 2, Status.SYNCING: 3, Status.RESYNCING: 3, Status.STALE: 4, Status.DISCONNECTED: 4}
ROWS = 5000  # orders and requests kept for the tables (newest)


def dec(v: int, scale: int) -> str:
    """Exact decimal text of a fixed-point integer."""
    s = str(abs(int(v))).rjust(scale + 1, "0")
    out = f"{s[:-scale]}.{s[-scale:]}" if scale else s
    return "-" + out if v < 0 else out


class View:
    def __init__(self, registry, actors: dict[int, str] | None = None):
        self.reg = registry  # InstrumentRegistry (reg[id] -> Instrument)
        self.actors = actors or {}  # publisher id -> actor name
        self.series: dict[str, Series] = {}
        self.books: dict[int, Book] = {}
        self.book_state: dict[int, int] = {}
        self.book_updates: dict[int, int] = {}
        self.book_ts: dict[int, int] = {}
        self.orders: dict[int, dict] = {}
        self.requests: deque = deque(maxlen=ROWS)
        self.orders_version = 0
        self.balances: dict[tuple[str, str], tuple[int, int, int]] = {}
        self.pos: dict[int, int] = {}
        self.cash: dict[int, int] = {}  # at price_scale + size_scale: -side * price * size, less fees
        self.fill_hist: dict[int, tuple] = {}  # iid -> (times, cash, position) after each fill, for marks
        self.hops: dict[tuple[int, str], Hist] = {}  # (publisher, queue) -> publish - origin
        self.counts: dict[str, int] = {}
        self.bad_levels = 0
        self.t_min = self.t_max = 0

    # -- series
    def _series(self, key: str, kind: str, cols) -> Series:
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series(key, kind, cols)
        return s

    def _inst(self, iid: int):
        try:
            return self.reg[iid]
        except KeyError:
            return None

    def ingest(self, queue: str, recs: np.ndarray, msg_type) -> None:
        if not len(recs):
            return
        self.counts[queue] = self.counts.get(queue, 0) + len(recs)
        pub = recs["publish"].astype(np.int64)
        lo, hi = int(pub.min()), int(pub.max())
        self.t_min = min(self.t_min, lo) if self.t_min else lo
        self.t_max = max(self.t_max, hi)
        self._hops(queue, recs, pub)
        handler = _HANDLERS.get(msg_type)
        if handler is not None:
            handler(self, recs, pub)

    def _hops(self, queue: str, recs, pub) -> None:
        origin = recs["origin"].astype(np.int64)
        who = recs["publisher"]
        for p in np.unique(who).tolist():
            sel = who == p
            lat = pub[sel] - origin[sel]
            self.hops.setdefault((p, queue), Hist()).add(np.maximum(lat[origin[sel] > 0], 0))

    def _by_inst(self, recs):
        iids = recs["instrument"]
        for iid in np.unique(iids).tolist():
            inst = self._inst(iid)
            if inst is not None:
                yield iid, inst, recs[iids == iid] if len(iids) > 1 else recs

    def _l2(self, recs, pub) -> None:
        for iid, inst, sub in self._by_inst(recs):
            book = self.books.get(iid)
            if book is None:
                book = self.books[iid] = Book()
            raw, bad = book.tops(np.ascontiguousarray(sub), sub.dtype.itemsize)
            self.bad_levels += bad
            tops = np.frombuffer(raw, np.int64).reshape(-1, 3)
            self.book_updates[iid] = self.book_updates.get(iid, 0) + len(sub)
            if not len(tops):
                continue
            t = sub["publish"].astype(np.int64)[tops[:, 0]]
            self.book_ts[iid] = int(t[-1])
            s = self._series(f"top/{iid}", LINE, [("bid", inst.price_scale), ("ask", inst.price_scale)])
            bid, ask = tops[:, 1].astype(np.float64), tops[:, 2].astype(np.float64)
            bid[tops[:, 1] == 0], ask[tops[:, 2] == 0] = np.nan, np.nan
            # keep changes of the top only: most messages leave it as it was
            prev = s.last()
            keep = np.ones(len(t), bool)
            keep[1:] = (bid[1:] != bid[:-1]) | (ask[1:] != ask[:-1])
            if prev is not None:
                keep[0] = (bid[0], ask[0]) != tuple(prev[1])
            keep &= ~(np.isnan(bid) & np.isnan(ask))
            if keep.any():
                s.append(t[keep], bid[keep], ask[keep])
                self._mark(iid, inst, t[keep], bid[keep], ask[keep])

    def _mark(self, iid, inst, t, bid, ask) -> None:
        """PnL marked at the mid wherever the top moved, once the instrument has fills: cash and
        position at each time from the fills up to it (a recording files its fills first)."""
        hist = self.fill_hist.get(iid)
        if hist is None:
            return
        ft, cash, pos = hist
        i = np.searchsorted(ft, t, "right") - 1
        mid = (bid + ask) / 2
        ok = (i >= 0) & ~np.isnan(mid)
        if ok.any():
            k = 10.0 ** (inst.price_scale + inst.size_scale)
            self._series(f"pnl/{iid}", LINE, [("value", 0)]).append(t[ok], (cash[i[ok]] + pos[i[ok]] * mid[ok]) / k)

    def _trades(self, recs, pub) -> None:
        for iid, inst, sub in self._by_inst(recs):
            self._series(f"trades/{iid}", POINTS, [("price", inst.price_scale), ("size", inst.size_scale),
                                                   ("side", 0)]).append(sub["publish"], sub["price"], sub["size"],
                                                                        sub["side"])

    def _status(self, recs, pub) -> None:
        for iid, st, t in zip(recs["instrument"].tolist(), recs["status"].tolist(), pub.tolist()):
            ui = _UI_STATE.get(st, 0)
            if self.book_state.get(iid) != ui:
                self.book_state[iid] = ui
                self._series(f"books/{iid}", POINTS, [("status", 0)]).append([t], [ui])

    def _requests(self, recs, pub) -> None:
        lat = (pub - recs["origin"].astype(np.int64)).astype(np.float64)
        lat[recs["origin"] == 0] = np.nan
        self._series("latency/requests", POINTS, [("latency_ns", 0), ("action", 0), ("model", 0)]).append(
            pub, lat, recs["action"], recs["model"])
        for r, t, la in zip(recs.tolist(), pub.tolist(), lat.tolist()):
            row = dict(zip(recs.dtype.names, r))
            inst = self._inst(row["instrument"])
            ps, ss = (inst.price_scale, inst.size_scale) if inst else (0, 0)
            action = OrderAction(row["action"]).name if row["action"] in OrderAction._value2member_map_ else str(row["action"])
            self.requests.appendleft({
                "order_id": row["order_id"], "ref_id": row["ref_id"], "action": action, "inst": row["instrument"],
                "model": row["model"], "side": row["side"], "price": dec(row["price"], ps), "size": dec(row["size"], ss),
                "t_ns_s": str(t), "latency_ns": None if la != la else int(la)})
            if row["action"] == OrderAction.NEW:
                self.orders[row["order_id"]] = {
                    "order_id": row["order_id"], "model": row["model"], "inst": row["instrument"], "side": row["side"],
                    "price": dec(row["price"], ps), "size": dec(row["size"], ss), "filled": dec(0, ss),
                    "status": "SENT", "reason": 0, "t_ns_s": str(t), "flags": row["flags"]}
        if len(self.orders) > ROWS:
            for k in list(self.orders)[:len(self.orders) - ROWS]:
                del self.orders[k]
        self.orders_version += 1

    def _updates(self, recs, pub) -> None:
        for iid, inst, sub in self._by_inst(recs):
            self._series(f"orders/{iid}", POINTS, [("price", inst.price_scale), ("size", inst.size_scale),
                                                   ("side", 0), ("status", 0), ("order_id", 0, "i8")]).append(
                sub["publish"], sub["price"], sub["size"], sub["side"], sub["status"], sub["order_id"])
            for oid, px, sz, filled, st, side, reason, t in zip(
                    *(sub[k].tolist() for k in ("order_id", "price", "size", "filled", "status", "side", "reason")),
                    sub["publish"].tolist()):
                o = self.orders.get(oid)
                if o is None:  # placed before we attached: its request is not in the ring any more
                    o = self.orders[oid] = {"order_id": oid, "model": 0, "inst": iid, "side": side, "flags": 0,
                                            "t_ns_s": str(t)}
                name = OrderStatus(st).name if st in OrderStatus._value2member_map_ else str(st)
                if name != "CANCEL_REJECTED" and px:
                    o.update(price=dec(px, inst.price_scale), size=dec(sz, inst.size_scale))
                o.update(filled=dec(filled, inst.size_scale), status=name, reason=reason)
        self.orders_version += 1

    def _fills(self, recs, pub) -> None:
        for iid, inst, sub in self._by_inst(recs):
            self._series(f"fills/{iid}", POINTS, [("price", inst.price_scale), ("size", inst.size_scale),
                                                  ("side", 0)]).append(sub["publish"], sub["price"], sub["size"],
                                                                       sub["side"])
            side = sub["side"].astype(np.int64)
            dpos = np.cumsum(side * sub["size"].astype(np.int64))
            dcash = np.cumsum(-side * sub["price"].astype(object) * sub["size"].astype(object)
                              - sub["fee"].astype(object) * 10 ** inst.size_scale)
            p0, c0 = self.pos.get(iid, 0), self.cash.get(iid, 0)
            self.pos[iid], self.cash[iid] = p0 + int(dpos[-1]), c0 + int(dcash[-1])
            self._series(f"position/{iid}", LINE, [("qty", inst.size_scale)]).append(sub["publish"], p0 + dpos)
            b = self.books.get(iid)  # live, the book is there: mark each fill at the mid now
            if b is not None and b.best_bid() is not None and b.best_ask() is not None:
                k = 10.0 ** (inst.price_scale + inst.size_scale)
                mid = (b.best_bid() + b.best_ask()) / 2
                self._series(f"pnl/{iid}", LINE, [("value", 0)]).append(
                    sub["publish"], ((c0 + dcash).astype(np.float64) + (p0 + dpos) * mid) / k)
            ft, cash, pos = self.fill_hist.get(iid, (np.zeros(0, np.int64), np.zeros(0), np.zeros(0)))
            self.fill_hist[iid] = (np.maximum.accumulate(np.concatenate([ft, sub["publish"].astype(np.int64)])),
                                   np.concatenate([cash, (c0 + dcash).astype(np.float64)]),
                                   np.concatenate([pos, (p0 + dpos).astype(np.float64)]))

    def _balances(self, recs, pub) -> None:
        for v, a, total, avail, scale, t in zip(recs["venue"].tolist(), recs["asset"].tolist(), recs["total"].tolist(),
                                                recs["available"].tolist(), recs["scale"].tolist(), pub.tolist()):
            venue = VENUES[v - 1] if 0 < v <= len(VENUES) else str(v)
            asset = text(a)
            self.balances[(venue, asset)] = (total, avail, scale)
            self._series(f"balance/{venue}/{asset}", LINE, [("total", scale), ("available", scale)]).append(
                [t], [total], [avail])

    # -- what the page asks
    def rate(self, queue: str, t: int, rate: float) -> None:
        self._series(f"rate/{queue}", LINE, [("rate", 0)]).append([t], [rate])

    def meta(self) -> dict:
        insts = []
        for iid in sorted(set(self.books) | set(self.book_state) | {int(k.split("/")[1]) for k in self.series
                                                                      if k.split("/")[1:2] and k.split("/")[1].isdigit()}):
            inst = self._inst(iid)
            if inst is not None:
                insts.append({"id": iid, "venue": inst.venue, "symbol": inst.symbol, "base": inst.base,
                              "quote": inst.quote, "price_scale": inst.price_scale, "size_scale": inst.size_scale})
        return {"instruments": insts, "actors": {str(i): n for i, n in sorted(self.actors.items())},
                "series": [{"key": k, "kind": s.kind, "cols": s.cols} for k, s in sorted(self.series.items())]}

    def book(self, iid: int, depth: int = 20) -> dict:
        inst, b = self._inst(iid), self.books.get(iid)
        if inst is None or b is None:
            return {"inst": iid, "t_ns_s": None, "bids": [], "asks": []}
        ps, ss = inst.price_scale, inst.size_scale
        return {"inst": iid, "t_ns_s": str(self.book_ts.get(iid, 0)),
                "bids": [[dec(p, ps), dec(s, ss)] for p, s in b.levels(1, depth)],
                "asks": [[dec(p, ps), dec(s, ss)] for p, s in b.levels(-1, depth)]}

    def order_rows(self, inst=None, model=None, status=None, limit: int = 500) -> dict:
        def ok(r):
            return ((inst is None or r["inst"] == inst) and (model is None or r["model"] == model)
                    and (status is None or r.get("status") == status))
        orders = [r for r in reversed(self.orders.values()) if ok(r)][:limit]
        reqs = [r for r in self.requests if (inst is None or r["inst"] == inst)
                and (model is None or r["model"] == model)][:limit]
        return {"orders": orders, "requests": reqs,
                "models": sorted({r["model"] for r in self.orders.values()}),
                "statuses": ["SENT"] + [s.name for s in OrderStatus]}

    def state(self) -> dict:
        books = [{"inst": iid, "status": BOOK_STATES[self.book_state.get(iid, 0)],
                  "updates": self.book_updates.get(iid, 0)}
                 for iid in sorted(set(self.books) | set(self.book_state))]
        balances = [{"venue": v, "asset": a, "total": dec(t, s), "available": dec(av, s)}
                    for (v, a), (t, av, s) in sorted(self.balances.items())]
        positions, pnl = [], []
        for iid in sorted(self.cash):
            inst = self._inst(iid)
            positions.append({"inst": iid, "qty": dec(self.pos[iid], inst.size_scale)})
            b = self.books.get(iid)
            bid, ask = (b.best_bid(), b.best_ask()) if b is not None else (None, None)
            if bid is not None and ask is not None:  # cash + position at the mid, exact, floored to a tick
                value = self.cash[iid] * 10 + self.pos[iid] * (bid + ask) * 5  # at price + size scale + 1
                pnl.append({"inst": iid, "value": dec(value // 10 ** (inst.size_scale + 1), inst.price_scale),
                            "quote": inst.quote})
        return {"t_min_ns": self.t_min, "t_max_ns": self.t_max, "books": books, "balances": balances,
                "positions": positions, "pnl": pnl, "orders_version": self.orders_version,
                # rows per series: the page asks a series again only when its count moved
                "series_n": {k: s.n for k, s in self.series.items()},
                "hops": [{"actor": self.actors.get(p, f"#{p}"), "stream": q, "kind": "latency", "n": h.count,
                          "p50_ns": round(h.quantile(0.5)), "p99_ns": round(h.quantile(0.99)),
                          "p999_ns": round(h.quantile(0.999)),
                          "max_ns": h.max} for (p, q), h in sorted(self.hops.items(), key=lambda kv: kv[0][1])],
                "bad_levels": self.bad_levels}


_HANDLERS = {L2Update: View._l2, TradeUpdate: View._trades, BookStatus: View._status, OrderRequest: View._requests,
             OrderUpdate: View._updates, Fill: View._fills, BalanceUpdate: View._balances}
