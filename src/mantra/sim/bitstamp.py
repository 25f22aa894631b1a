"""Bitstamp simulator: ``bts:subscribe`` to ``diff_order_book_``/``order_book_``/``live_trades_<pair>``,
REST ``/api/v2/order_book/<pair>/``, ``trading-pairs-info`` and ``markets``.

Bitstamp has no sequence numbers: each diff carries a ``microtimestamp`` that grows strictly, and
the REST snapshot's ``microtimestamp`` is the time of the last change it contains, so a client can
drop the buffered diffs it already holds.  A lost diff is invisible on the wire; a client finds it
only by auditing against the REST book.  ``reconnect_request`` sends ``bts:request_reconnect``.
"""

from __future__ import annotations

from ..fixed import from_fixed
from .market import ASK, BID, Listing
from .server import Request, RestError, VenueSimulator, raw

LISTINGS = (
    Listing("btcusd", "BTC", "USD", "1", "0.00000001", "27000", "3", min_notional="10"),
    Listing("ethusd", "ETH", "USD", "0.1", "0.00000001", "1800.0", "40", min_notional="10"),
    Listing("xrpusd", "XRP", "USD", "0.00001", "0.00000001", "0.51000", "20000", min_notional="10"),
)
CHANNELS = ("diff_order_book_", "order_book_", "live_trades_")


class BitstampSimulator(VenueSimulator):
    venue = "bitstamp"
    LISTINGS = LISTINGS

    def __init__(self, source=None, **kw):
        super().__init__(source, **kw)
        self.micro = 0  # microtimestamp of the last change, strictly increasing
        self.pairs = {s.lower(): s for s in self.instruments}

    # Bitstamp writes every price and amount with the pair's decimals: our scales.
    def _p(self, inst, v: int) -> str:
        return from_fixed(v, inst.price_scale, inst.price_scale)

    def _q(self, inst, v: int) -> str:
        return from_fixed(v, inst.size_scale, inst.size_scale)

    def _book(self, sym: str, depth: int = 0) -> dict:
        inst, book = self.instruments[sym], self.books[sym]
        n = depth or len(book)
        return {"timestamp": str(self.micro // 1_000_000), "microtimestamp": str(self.micro),
                "bids": [[self._p(inst, p), self._q(inst, q)] for p, q in book.top(BID, n)],
                "asks": [[self._p(inst, p), self._q(inst, q)] for p, q in book.top(ASK, n)]}

    # -- connection ------------------------------------------------------------------------
    def on_open(self, c) -> None:
        c.channels = set()

    def on_message(self, c, msg) -> None:
        event = msg.get("event") if isinstance(msg, dict) else None
        channel = (msg.get("data") or {}).get("channel", "") if isinstance(msg, dict) else ""
        if event == "bts:heartbeat":
            self.send(c, {"event": "bts:heartbeat", "channel": "", "data": {"status": "success"}})
        elif event in ("bts:subscribe", "bts:unsubscribe") and self._known(channel):
            if event == "bts:subscribe":
                c.channels.add(channel)
                self.send(c, {"event": "bts:subscription_succeeded", "channel": channel, "data": {}})
            else:
                c.channels.discard(channel)
                self.send(c, {"event": "bts:unsubscription_succeeded", "channel": channel, "data": {}})
        else:
            self.on_bad_message(c, msg)

    def _known(self, channel: str) -> bool:
        return any(channel.startswith(p) and channel[len(p) :] in self.pairs for p in CHANNELS)

    def on_bad_message(self, c, text) -> None:
        self.send(c, {"event": "bts:error", "channel": "", "data": {"code": None, "message": "Bad subscription string."}})

    def reconnect_message(self, c):
        return {"event": "bts:request_reconnect", "channel": "", "data": ""}

    # -- market ----------------------------------------------------------------------------
    def publish(self, step) -> None:
        sym, inst = step.symbol, self.instruments[step.symbol]
        pair = sym.lower()
        self.micro = max(self.micro + 1, step.ts // 1000)
        ts = str(self.micro // 1_000_000)
        out = []
        for t in step.trades:
            p, q = self._p(inst, t.price), self._q(inst, t.size)
            out.append((f"live_trades_{pair}", {"data": {
                "id": t.trade_id, "timestamp": ts, "amount": raw(_trim(q)), "amount_str": q, "price": raw(_trim(p)),
                "price_str": p, "type": 0 if t.side > 0 else 1, "microtimestamp": str(self.micro),
                "buy_order_id": 2 * t.trade_id, "sell_order_id": 2 * t.trade_id + 1},
                "channel": f"live_trades_{pair}", "event": "trade"}, False))
        if step.levels:
            ordered = sorted(step.levels, key=lambda lv: -lv[0] * lv[1])  # bids high->low, then asks low->high
            data = {"timestamp": ts, "microtimestamp": str(self.micro),
                    "bids": [[self._p(inst, p), self._q(inst, q)] for s, p, q in ordered if s == BID],
                    "asks": [[self._p(inst, p), self._q(inst, q)] for s, p, q in ordered if s == ASK]}
            out.append((f"diff_order_book_{pair}", {"data": data, "channel": f"diff_order_book_{pair}",
                                                   "event": "data"}, True))
        top = None
        for c in self.clients:
            for channel, frame, book in out:
                if channel in c.channels:
                    self.send(c, frame, book=book)
            if step.levels and f"order_book_{pair}" in c.channels:  # top-100 snapshot on every change
                top = top or {"data": self._book(sym, 100), "channel": f"order_book_{pair}", "event": "data"}
                self.send(c, top)

    # -- REST ------------------------------------------------------------------------------
    def rest(self, req: Request):
        path, query = req.path, req.query
        if req.method == "GET":
            parts = [p for p in path.split("/") if p]
            if parts[:3] == ["api", "v2", "order_book"] and len(parts) == 4:
                sym = self.pairs.get(parts[3])
                if sym is None:
                    raise RestError(404, {"status": "error", "reason": "Not found", "code": "404.001"})
                return self._book(sym)
            if parts in (["api", "v2", "trading-pairs-info"], ["api", "v2", "markets"]):
                markets = parts[2] == "markets"
                return [self._pair_info(self.instruments[s], markets) for s in self.instruments]
        raise RestError(404, {"status": "error", "reason": f"Unknown endpoint {path}", "code": "404.002"})

    def _pair_info(self, inst, markets: bool) -> dict:
        name = f"{inst.base}/{inst.quote}"
        minimum = from_fixed(inst.min_notional, inst.price_scale)
        info = {"name": name, "base_decimals": inst.size_scale, "counter_decimals": inst.price_scale,
                "trading": "Enabled", "instant_and_market_orders": "Enabled", "description": name}
        if markets:
            info.update(market_symbol=inst.symbol.lower(), minimum_order_value=minimum)
        else:
            info.update(url_symbol=inst.symbol.lower(), minimum_order=f"{minimum} {inst.quote}")
        return info

    def rate_limit_body(self, status: int):
        # Newer Bitstamp error bodies carry a response_code; 400.002 is its rate limit.
        return {"status": "error", "reason": "Rate limit exceeded", "response_code": "400.002"}


def _trim(text: str) -> str:
    """The JSON number form of a decimal string (``"0.00280000"`` -> ``0.0028``)."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
