"""Coinbase simulator, both public feed formats on one port.

* ``ws_url`` (path ``/``): Advanced Trade.  One channel per subscribe (``level2`` -> ``l2_data``
  snapshot/update events, ask side ``offer``; ``market_trades``; ``heartbeats`` once a second), a
  ``subscriptions`` message after each (un)subscribe, and ``sequence_num`` +1 on every message of
  the connection, so a lost frame is a gap.
* ``exchange_url`` (path ``/exchange``): the Exchange feed.  ``subscribe`` with ``channels``
  (``level2``/``level2_batch`` -> ``snapshot`` + ``l2update``; ``matches`` -> ``last_match`` +
  ``match``; ``heartbeat`` per product once a second).  Level2 carries no sequence number there.

REST: ``/api/v3/brokerage/market/products`` and ``.../product_book``, Exchange ``/products`` and
``/products/<id>/book``.  Coinbase has no reconnect request.
"""

from __future__ import annotations

import time

from ..fixed import from_fixed
from ..runtime.clock import utc
from .market import ASK, BID, Listing
from .server import Request, RestError, VenueSimulator

LISTINGS = (
    Listing("BTC-USD", "BTC", "USD", "0.01", "0.00000001", "27000.00", "3", "0.00001", "1"),
    Listing("ETH-USD", "ETH", "USD", "0.01", "0.00000001", "1800.00", "40", "0.00022", "1"),
    Listing("SOL-USD", "SOL", "USD", "0.01", "0.001", "24.50", "500", "0.008", "1"),
)
ADVANCED = ("level2", "market_trades", "heartbeats")
EXCHANGE_L2 = ("level2", "level2_batch")


class CoinbaseSimulator(VenueSimulator):
    venue = "coinbase"
    LISTINGS = LISTINGS

    def __init__(self, source=None, **kw):
        super().__init__(source, **kw)
        self.product_seq = {s: 1_000 for s in self.instruments}  # Exchange: per-product sequence

    @property
    def exchange_url(self) -> str:
        return f"{self.ws_url}/exchange"

    def _p(self, sym: str, v: int) -> str:
        inst = self.instruments[sym]
        return from_fixed(v, inst.price_scale, inst.price_scale)

    def _q(self, sym: str, v: int) -> str:
        inst = self.instruments[sym]
        return from_fixed(v, inst.size_scale, inst.size_scale) if v else "0"

    # -- connection ------------------------------------------------------------------------
    def on_open(self, c) -> None:
        c.exchange = c.path.rstrip("/") == "/exchange"
        c.subs = {}  # channel -> set of products (heartbeats: {"heartbeats"})
        c.seq = -1
        c.hb_at, c.hb_count = time.monotonic(), 0

    def _envelope(self, c, channel: str, events: list, *, book: bool = False) -> None:
        c.seq += 1  # used up even if the frame is then lost
        self.send(c, {"channel": channel, "client_id": "", "timestamp": utc(time.time_ns()),
                      "sequence_num": c.seq, "events": events}, book=book)

    def _error(self, c, why: str) -> None:
        self.send(c, {"type": "error", "message": "failure to subscribe", "reason": why})

    def on_message(self, c, msg) -> None:
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind not in ("subscribe", "unsubscribe"):
            self._error(c, f"unknown message type {kind!r}")
            return
        products = msg.get("product_ids")
        unknown = [p for p in products or () if p not in self.instruments]
        if unknown:
            self._error(c, f"unknown product ids {unknown}")
        elif c.exchange:
            self._exchange_sub(c, kind, msg.get("channels") or [], products or [])
        else:
            self._advanced_sub(c, kind, msg.get("channel"), products)

    def on_bad_message(self, c, text) -> None:
        self.send(c, {"type": "error", "message": "Malformed JSON"})

    # -- Advanced Trade --------------------------------------------------------------------
    def _advanced_sub(self, c, kind: str, channel, products) -> None:
        if channel not in ADVANCED:
            self._error(c, f"channel {channel!r} not served")
            return
        products = ["heartbeats"] if channel == "heartbeats" else list(products or ())
        have = c.subs.setdefault(channel, set())
        if kind == "subscribe":
            new = [p for p in products if p not in have]
            have.update(products)
        else:
            new = []
            have.difference_update(products if products else set(have))
        self._envelope(c, "subscriptions", [{"subscriptions": {ch: sorted(ps) for ch, ps in c.subs.items() if ps}}])
        for product in new:
            if channel == "level2":
                updates = [self._l2(product, side, p, q, "") for side in (BID, ASK)
                           for p, q in self.books[product].top(side, len(self.books[product]))]
                self._envelope(c, "l2_data", [{"type": "snapshot", "product_id": product, "updates": updates}])
            elif channel == "market_trades":
                trades = [self._mt(product, t, ts) for t, ts in reversed(self.recent_trades[product])]
                self._envelope(c, "market_trades", [{"type": "snapshot", "trades": trades}])

    def _l2(self, sym: str, side: int, price: int, size: int, when: str) -> dict:
        return {"side": "bid" if side == BID else "offer", "event_time": when or utc(time.time_ns(), 6),
                "price_level": self._p(sym, price), "new_quantity": self._q(sym, size)}

    def _mt(self, sym: str, t, ts: int) -> dict:
        # ``side`` is the maker's: a buying aggressor met a resting SELL.
        return {"trade_id": str(t.trade_id), "product_id": sym, "price": self._p(sym, t.price),
                "size": self._q(sym, t.size), "side": "SELL" if t.side > 0 else "BUY", "time": utc(ts, 6)}

    # -- Exchange --------------------------------------------------------------------------
    def _exchange_sub(self, c, kind: str, channels: list, products: list) -> None:
        named = []
        for ch in channels:
            name, ps = (ch, products) if isinstance(ch, str) else (ch.get("name"), ch.get("product_ids", products))
            if name not in EXCHANGE_L2 + ("matches", "heartbeat"):
                self._error(c, f"channel {name!r} not served")
                return
            named.append((name, list(ps)))
        fresh = []
        for name, ps in named:
            have = c.subs.setdefault(name, set())
            if kind == "subscribe":
                fresh += [(name, p) for p in ps if p not in have]
                have.update(ps)
            else:
                have.difference_update(ps)
        self.send(c, {"type": "subscriptions", "channels": [{"name": n, "product_ids": sorted(ps)}
                                                          for n, ps in c.subs.items() if ps]})
        for name, product in fresh:
            if name in EXCHANGE_L2:
                book = self.books[product]
                self.send(c, {"type": "snapshot", "product_id": product,
                              "bids": [[self._p(product, p), self._q(product, q)] for p, q in book.top(BID, len(book))],
                              "asks": [[self._p(product, p), self._q(product, q)] for p, q in book.top(ASK, len(book))]})
            elif name == "matches" and self.recent_trades[product]:
                t, ts = self.recent_trades[product][-1]
                self.send(c, self._match("last_match", product, t, ts, self.product_seq[product]))

    def _match(self, kind: str, sym: str, t, ts: int, seq: int) -> dict:
        return {"type": kind, "trade_id": t.trade_id, "maker_order_id": f"m-{t.trade_id}",
                "taker_order_id": f"t-{t.trade_id}", "side": "sell" if t.side > 0 else "buy",
                "size": self._q(sym, t.size), "price": self._p(sym, t.price), "product_id": sym,
                "sequence": seq, "time": utc(ts, 6)}

    # -- market ----------------------------------------------------------------------------
    def publish(self, step) -> None:
        sym = step.symbol
        when = utc(step.ts, 6)
        matches = []
        for t in step.trades:
            self.product_seq[sym] += 1
            matches.append(self._match("match", sym, t, step.ts, self.product_seq[sym]))
        for c in self.clients:
            if c.exchange:
                if any(sym in c.subs.get(n, ()) for n in EXCHANGE_L2) and step.levels:
                    self.send(c, {"type": "l2update", "product_id": sym, "time": when, "changes": [
                        ["buy" if s == BID else "sell", self._p(sym, p), self._q(sym, q)] for s, p, q in step.levels]},
                        book=True)
                if sym in c.subs.get("matches", ()):
                    for m in matches:
                        self.send(c, m)
                continue
            if step.trades and sym in c.subs.get("market_trades", ()):
                self._envelope(c, "market_trades", [{"type": "update", "trades": [
                    self._mt(sym, t, step.ts) for t in step.trades]}])
            if step.levels and sym in c.subs.get("level2", ()):
                self._envelope(c, "l2_data", [{"type": "update", "product_id": sym, "updates": [
                    self._l2(sym, s, p, q, when) for s, p, q in step.levels]}], book=True)

    def idle(self, now: float) -> None:
        for c in self.clients:
            if now - c.hb_at < 1.0:
                continue
            c.hb_at = now
            c.hb_count += 1
            if c.exchange:
                for product in sorted(c.subs.get("heartbeat", ())):
                    last = self.recent_trades[product][-1][0].trade_id if self.recent_trades[product] else 0
                    self.send(c, {"type": "heartbeat", "last_trade_id": last, "product_id": product,
                                  "sequence": self.product_seq[product], "time": utc(time.time_ns(), 6)})
            elif c.subs.get("heartbeats"):
                ns = time.time_ns()
                self._envelope(c, "heartbeats", [{"current_time": utc(ns).replace("T", " ")[:-1] + " +0000 UTC",
                                                  "heartbeat_counter": c.hb_count}])

    # -- REST ------------------------------------------------------------------------------
    def rest(self, req: Request):
        path, query = req.path, req.query
        if req.method == "GET":
            if path == "/api/v3/brokerage/market/products":
                products = [self._product(i, advanced=True) for i in self.instruments.values()]
                return {"products": products, "num_products": len(products)}
            if path == "/products":
                return [self._product(i, advanced=False) for i in self.instruments.values()]
            if path == "/api/v3/brokerage/market/product_book":
                sym = self._known(query.get("product_id", ""))
                n = int(query.get("limit", 0)) or len(self.books[sym])
                book = self.books[sym]
                side = lambda s: [{"price": self._p(sym, p), "size": self._q(sym, q)} for p, q in book.top(s, n)]  # noqa: E731
                return {"pricebook": {"product_id": sym, "time": utc(time.time_ns(), 6),
                                      "bids": side(BID), "asks": side(ASK)}}
            parts = [p for p in path.split("/") if p]
            if len(parts) == 3 and parts[0] == "products" and parts[2] == "book":
                sym = self._known(parts[1])
                book = self.books[sym]
                n = len(book) if query.get("level", "1") != "1" else 1
                return {"bids": [[self._p(sym, p), self._q(sym, q), 1] for p, q in book.top(BID, n)],
                        "asks": [[self._p(sym, p), self._q(sym, q), 1] for p, q in book.top(ASK, n)],
                        "sequence": self.product_seq[sym], "auction_mode": False, "auction": None,
                        "time": utc(time.time_ns(), 6)}
        raise RestError(404, {"message": "NotFound"})

    def _known(self, sym: str) -> str:
        if sym not in self.instruments:
            raise RestError(404, {"message": "NotFound"})
        return sym

    def _product(self, inst, advanced: bool) -> dict:
        ps, ss = inst.price_scale, inst.size_scale
        tick, lot = from_fixed(inst.tick, ps, ps), from_fixed(inst.lot, ss, ss)
        minimum, notional = from_fixed(inst.min_size, ss), from_fixed(inst.min_notional, ps)
        if advanced:
            return {"product_id": inst.symbol, "price": self._p(inst.symbol, self.books[inst.symbol].best_bid() or 0),
                    "base_increment": lot, "quote_increment": tick, "price_increment": tick,
                    "base_min_size": minimum, "quote_min_size": notional, "base_currency_id": inst.base,
                    "quote_currency_id": inst.quote, "status": "online", "trading_disabled": False,
                    "product_type": "SPOT"}
        return {"id": inst.symbol, "base_currency": inst.base, "quote_currency": inst.quote,
                "base_increment": lot, "quote_increment": tick, "base_min_size": minimum,
                "min_market_funds": notional, "status": "online", "trading_disabled": False,
                "cancel_only": False, "limit_only": False, "post_only": False}

    def rate_limit_body(self, status: int):
        return {"message": "Public rate limit exceeded"}
