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

Order entry (the section at the end), Advanced Trade's: REST ``POST /api/v3/brokerage/orders``
(``limit_limit_gtc`` with ``post_only``, ``sor_limit_ioc``; a ``client_order_id`` already used places
nothing and answers with that order), ``.../orders/edit`` (a resting GTC limit's price and total
size), ``.../orders/batch_cancel``, ``GET .../orders/historical/batch`` (``order_status``,
``product_ids``, ``start_date``, ``limit``, ``cursor``), ``.../orders/historical/{order_id}``,
``.../orders/historical/fills``, ``.../accounts`` (``available_balance`` and ``hold``),
``.../key_permissions`` and the public ``.../time`` (ahead by ``clock_skew_ms``), and the WebSocket
``user`` channel on ``ws_url`` (a snapshot of the open orders in batches of 50, then an update per
change; every frame of the connection numbered by ``sequence_num``).  Every private call and the
``user`` subscribe carry a JWT checked with the real signing (``venues/coinbase/auth.py``) against
the public key of each accepted key (``credentials``: ``{key name: private key}``, EC P-256 PEM or
Ed25519; default the SDK's two test keys): a bad signature, an unknown key, an expired token or a
``uri`` not naming the request is a 401 (the subscribe an ``error``), a key without the permission
(``permissions``: view, trade) a 403.  The venue's failure reasons (``INSUFFICIENT_FUND``,
``INVALID_LIMIT_PRICE_POST_ONLY``, ``PREVIEW_INVALID_BASE_SIZE_TOO_SMALL``,
``PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL``, ``INVALID_PRICE_PRECISION``, ``UNKNOWN_CANCEL_ORDER``,
``ORDER_NOT_FOUND``, ``CANNOT_EDIT_TO_BELOW_FILLED_SIZE``); private REST requests beyond
``rest_rate_per_s`` per key in a second get a 429.  One account (its ``balances``), matched by
``trading.matching.Matching`` against the simulator's own book.
Order-entry faults (``faults.py``): ``order_5xx`` (the next order request is carried out, then
answered 503), ``order_timeout`` (carried out, answered 504), ``order_rate_limit`` (429, not carried
out), ``stream_duplicate`` (the next N user frames twice), ``stream_reorder`` (the next user frame
after the one that follows it), ``stream_disconnect`` (the next fill's user frame is lost with the
user connections, which are cut), ``ban`` (the next REST request answered 403), ``cancel_filled``
(the next cancel finds its order filled: ``UNKNOWN_CANCEL_ORDER``); ``rate_limit`` (429 with
``Retry-After``) as for every venue.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from urllib.parse import parse_qs

from ..fixed import FixedPointError, from_fixed, to_fixed
from ..runtime.clock import utc
from ..spine.messages import OrderAction, OrderFlags, OrderRequest, OrderStatus
from ..trading.accounts import Reject
from ..venues.coinbase import auth as coinbase_auth
from ..venues.coinbase.protocol import rfc3339_ns
from .account import AccountSim
from .market import ASK, BID, Listing
from .server import Reply, Request, RestError, VenueSimulator

LISTINGS = (
    Listing("BTC-USD", "BTC", "USD", "0.01", "0.00000001", "27000.00", "3", "0.00001", "1"),
    Listing("ETH-USD", "ETH", "USD", "0.01", "0.00000001", "1800.00", "40", "0.00022", "1"),
    Listing("SOL-USD", "SOL", "USD", "0.01", "0.001", "24.50", "500", "0.008", "1"),
)
ADVANCED = ("level2", "market_trades", "heartbeats")
EXCHANGE_L2 = ("level2", "level2_batch")

# -- order entry ---------------------------------------------------------------------------------
API = "/api/v3/brokerage"
# The official SDK's test keys (coinbase-advanced-py tests/constants.py; exchanges.md 4.3): anyone
# may read them, which is what a simulator's default key is for.
DEFAULT_KEY = "organizations/test-organization/apiKeys/test-api-key"
DEFAULT_SECRET = ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKwf3Uox30cRWzRBOPoPOH5p0Gpb0Dt8zUKXUEM5fMkGoAoGCCqGSM49\n"
                  "AwEHoUQDQgAEbAtpLlSZYVOwYICz+uEyxcS29vRIujiES/gQ1DC7FV4zK4JuYE9v\n"
                  "qDyGZQYjdXHLM7I6f/QnnOITL+dXYWBHRA==\n-----END EC PRIVATE KEY-----\n")
DEFAULT_ED_KEY = "organizations/test-organization/apiKeys/test-ed25519-key"
DEFAULT_ED_SECRET = "k0BUni0p0vZG1BdpVjS6ogBJ7kxm630AJ2dN+tuputDOKsRAwgyrpEQLeBtS1znTmzPX6Xr2eOWpzx6nW8knkA=="
DEFAULT_BALANCES = {"USD": "1000000", "BTC": "10", "ETH": "100", "SOL": "10000"}
_S = OrderStatus
_ENDED = (_S.FILLED, _S.CANCELLED, _S.EXPIRED, _S.REJECTED)
STATUS_TEXT = {_S.ACK: "OPEN", _S.OPEN: "OPEN", _S.PARTIALLY_FILLED: "OPEN", _S.FILLED: "FILLED",
               _S.CANCELLED: "CANCELLED", _S.EXPIRED: "EXPIRED", _S.REJECTED: "FAILED"}
# the engine's refusal of a new order -> (error, preview_failure_reason, new_order_failure_reason, message)
NEW_REFUSALS = {
    Reject.INSUFFICIENT_BALANCE: ("INSUFFICIENT_FUND", "PREVIEW_INSUFFICIENT_FUND", "INSUFFICIENT_FUND",
                                  "Insufficient balance in source account"),
    Reject.TICK: ("INVALID_PRICE_PRECISION", "PREVIEW_INVALID_PRICE_PRECISION", "INVALID_PRICE_PRECISION",
                  "Invalid price precision"),
    Reject.LOT: ("INVALID_SIZE_PRECISION", "PREVIEW_INVALID_SIZE_PRECISION", "INVALID_SIZE_PRECISION",
                 "Invalid size precision"),
    Reject.MIN_SIZE: ("PREVIEW_INVALID_BASE_SIZE_TOO_SMALL", "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL",
                      "UNKNOWN_FAILURE_REASON", "Order size is too small"),
    Reject.MIN_NOTIONAL: ("PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL", "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL",
                          "UNKNOWN_FAILURE_REASON", "Order value is too small"),
    Reject.POST_ONLY: ("INVALID_LIMIT_PRICE_POST_ONLY", "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY",
                       "INVALID_LIMIT_PRICE_POST_ONLY", "Limit price would cross: post-only order"),
    Reject.BAD_REQUEST: ("INVALID_REQUEST", "UNKNOWN_PREVIEW_FAILURE_REASON", "UNKNOWN_FAILURE_REASON",
                         "Invalid order"),
}
# the engine's refusal of an amend -> edit_failure_reason / preview_failure_reason
EDIT_REFUSALS = {Reject.POST_ONLY: "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY",
                 Reject.INSUFFICIENT_BALANCE: "PREVIEW_INSUFFICIENT_FUND", Reject.TICK: "INVALID_EDITED_PRICE",
                 Reject.LOT: "INVALID_EDITED_SIZE", Reject.MIN_SIZE: "INVALID_EDITED_SIZE",
                 Reject.MIN_NOTIONAL: "INVALID_EDITED_SIZE", Reject.BAD_REQUEST: "CANNOT_EDIT_TO_BELOW_FILLED_SIZE"}
UNAUTHORIZED = Reply(401, b"Unauthorized\n", {"Content-Type": "text/plain"})
FORBIDDEN = {"error": "PERMISSION_DENIED", "error_details": "Missing required scopes",
             "message": "Missing required scopes"}
RATE_LIMITED = {"error": "RATE_LIMIT_EXCEEDED", "error_details": "Too many requests", "message": "Too many requests"}
ORDER_PATHS = (API + "/orders", API + "/orders/edit", API + "/orders/batch_cancel")


class _SimOrder:
    __slots__ = ("oid", "vid", "cid", "sym", "iid", "created", "conf", "nfills", "last_fill")

    def __init__(self, oid, vid, cid, sym, iid, created, conf):
        self.oid, self.vid, self.cid, self.sym, self.iid, self.created = oid, vid, cid, sym, iid, created
        self.conf = conf  # "limit_limit_gtc" / "sor_limit_ioc", with post_only
        self.nfills = 0
        self.last_fill = 0


class _Refused(Exception):
    """A request the venue refuses with an HTTP status and its body."""

    def __init__(self, status: int, body):
        super().__init__(status)
        self.status, self.body = status, body


def _multi(req: Request) -> dict:
    """A query's parameters with every value (``product_ids=A&product_ids=B``)."""
    return parse_qs(req.target.partition("?")[2], keep_blank_values=True)


def _page(items: list, q: dict, default: int, top: int) -> tuple[list, bool, str]:
    """``(items of this page, has_next, cursor)``: the cursor is the offset of the next page."""
    try:
        start = int((q.get("cursor") or ["0"])[-1] or 0)
        limit = min(max(int((q.get("limit") or [str(default)])[-1]), 1), top)
    except ValueError:
        raise _Refused(400, {"error": "INVALID_ARGUMENT", "error_details": "bad limit or cursor",
                             "message": "bad limit or cursor"}) from None
    page = items[start:start + limit]
    more = start + limit < len(items)
    return page, more, str(start + limit) if more else ""


class CoinbaseSimulator(AccountSim, VenueSimulator):
    venue = "coinbase"
    LISTINGS = LISTINGS

    def __init__(self, source=None, *, credentials: dict | None = None, balances: dict | None = None,
                 maker_bps: int = 40, taker_bps: int = 60, clock_skew_ms: int = 0,
                 permissions=("view", "trade"), rest_rate_per_s: int = 30, **kw):
        super().__init__(source, **kw)
        self.product_seq = {s: 1_000 for s in self.instruments}  # Exchange: per-product sequence
        self.clock_skew_ns = int(clock_skew_ms) * 1_000_000  # the venue's clock runs this far ahead of ours
        self.permissions = frozenset(permissions)  # what the keys may do (the venue's key settings)
        self.rest_rate_per_s = int(rest_rate_per_s)
        self._init_orders(credentials, balances, maker_bps, taker_bps)

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
        c.user = None  # products of the user channel (order entry)
        c.held = None

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
        elif msg.get("channel") == "user":
            self._user_sub(c, kind, msg.get("jwt"), products)
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
            if c.held is not None and now - c.held[1] > 0.5:  # nothing came after it: send it late
                self.send(c, c.held[0])
                c.held = None
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
        if path.startswith(API) and not path.startswith(API + "/market/"):
            if path == API + "/time" and req.method == "GET":
                ns = time.time_ns() + self.clock_skew_ns
                return {"iso": utc(ns, 3), "epochSeconds": str(ns // 10**9), "epochMillis": str(ns // 10**6)}
            return self._private(req)
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
        if status == 403:
            return {"error": "PERMISSION_DENIED", "error_details": "Forbidden", "message": "Forbidden"}
        return {"message": "Public rate limit exceeded"}

    # -- order entry -----------------------------------------------------------------------
    def _init_orders(self, credentials, balances, maker_bps, taker_bps) -> None:
        self._init_account(credentials, {DEFAULT_KEY: DEFAULT_SECRET, DEFAULT_ED_KEY: DEFAULT_ED_SECRET}, balances,
                           DEFAULT_BALANCES, maker_bps, taker_bps)
        # the venue holds only the public half of each key
        self.public_keys = {k: coinbase_auth.public_key(v) for k, v in self.credentials.items()}
        self.by_vid: dict[str, _SimOrder] = {}  # sim_orders: engine order id -> _SimOrder; by_cid: client id
        self._calls: dict[str, deque] = {}  # key -> times of its private REST requests in the last second
        # trades: (REST fill record, ns)

    # the truth about the account (and account(), balance(), order_state(), the faults: sim/account.py)
    def open_orders(self) -> dict[str, object]:
        """Client order id -> the engine's state of each open order."""
        with self.lock:
            return {self.sim_orders[st.order_id].cid: st for st in self.engine.open_orders(self.venue)}

    def fills_of(self, cid: str) -> list[dict]:
        """The REST fill records of the order with client id ``cid``."""
        with self.lock:
            so = self.by_cid.get(cid)
            return [dict(rec) for rec, _ in self.trades if so is not None and rec["order_id"] == so.vid]

    def ban(self) -> None:
        self.rate_limit_next(1, status=403)

    def _now(self) -> int:
        """The venue's clock (``clock_skew_ms`` ahead of ours)."""
        return time.time_ns() + self.clock_skew_ns

    # engine in and out
    def _apply(self, step) -> None:
        super()._apply(step)
        now = self._feed_engine(step)
        if now is not None:
            self._stream(*self._collect())

    def _collect(self) -> tuple[list, bool]:
        """The engine's messages since the last call -> (orders that changed, whether one filled)."""
        out, self._engine_out = self._engine_out, []
        changed: dict[int, _SimOrder] = {}
        filled = False
        for port, m in out:
            if port == "balances":
                continue  # the accounts endpoint says them
            so = self.sim_orders.get(m.order_id)
            if so is None:
                continue
            if port == "fills":
                inst = self.engine.registry[m.instrument]
                so.nfills += 1
                so.last_fill = m.exch_ts
                self.trades.append(({
                    "entry_id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"entry-{m.trade_id}")),
                    "trade_id": str(uuid.UUID(int=m.trade_id)), "order_id": so.vid, "trade_time": utc(m.exch_ts, 6),
                    "trade_type": "FILL", "price": self._p(so.sym, m.price), "size": self._q(so.sym, m.size),
                    "commission": from_fixed(m.fee, inst.price_scale), "product_id": so.sym,
                    "sequence_timestamp": utc(m.exch_ts, 6), "liquidity_indicator": "MAKER" if m.liquidity == 1
                    else "TAKER", "size_in_quote": False, "user_id": "sim-user", "side": "BUY" if m.side > 0
                    else "SELL", "retail_portfolio_id": ""}, m.exch_ts))
                filled = True
            elif m.status == _S.REJECTED:
                continue
            changed[so.oid] = so
        return list(changed.values()), filled

    def _stream(self, changed: list, filled: bool) -> None:
        """One user-channel update per connection for the orders that changed; the stream faults apply."""
        if not changed:
            return
        if filled and self._cut:
            self._cut -= 1
            self.order_counts["stream_cut"] += 1
            for c in list(self.clients):
                if c.open and c.user is not None:  # the update is lost with the connection
                    c.open = False
                    self._close_later(c, 1011, "simulated user stream loss")
            return
        dup = reorder = False
        if self._dup:
            self._dup -= 1
            dup = True
        if self._reorder:
            self._reorder -= 1
            reorder = True
        docs = [(so.sym, self._user_doc(so)) for so in changed]
        for c in list(self.clients):
            if not c.open or c.user is None:
                continue
            orders = [d for sym, d in docs if sym in c.user]
            if not orders:
                continue
            frame = self._user_frame(c, "update", orders)
            if reorder and c.held is None:
                c.held = (frame, time.monotonic())
                continue
            self.send(c, frame)
            if dup:
                self.send(c, frame)
            if c.held is not None and c.held[0] is not frame:
                self.send(c, c.held[0])
                c.held = None

    def _user_frame(self, c, kind: str, orders: list) -> dict:
        c.seq += 1
        return {"channel": "user", "client_id": "", "timestamp": utc(time.time_ns()), "sequence_num": c.seq,
                "events": [{"type": kind, "orders": orders}]}

    def _user_sub(self, c, kind: str, token, products) -> None:
        err, _ = coinbase_auth.verify(self.public_keys, token, self._now() / 1e9)
        if err:
            self.order_counts[f"auth_ws_{err}"] += 1
            self._error(c, f"authentication failure: {err}")
            return
        if "view" not in self.permissions:
            self._error(c, "permission denied")
            return
        if kind == "unsubscribe":
            c.user = None
            c.subs.pop("user", None)
            self._envelope(c, "subscriptions", [{"subscriptions": {ch: sorted(ps) for ch, ps in c.subs.items() if ps}}])
            return
        c.user = set(products or self.instruments)
        c.subs["user"] = set(c.user)
        self._envelope(c, "subscriptions", [{"subscriptions": {ch: sorted(ps) for ch, ps in c.subs.items() if ps}}])
        docs = [self._user_doc(self.sim_orders[st.order_id]) for st in self.engine.open_orders(self.venue)
                if self.sim_orders[st.order_id].sym in c.user]
        for i in range(0, len(docs) + 1, 50):  # batches of 50; one shorter than 50 ends the snapshot
            self.send(c, self._user_frame(c, "snapshot", docs[i:i + 50]))

    # documents, as the venue writes them
    def _user_doc(self, so: _SimOrder) -> dict:
        st = self.engine.order(so.oid)
        inst = self.instruments[so.sym]
        live = st.status not in _ENDED
        avg = from_fixed(st.quote * 10**inst.size_scale // st.filled, inst.price_scale) if st.filled else "0"
        return {"avg_price": avg, "cancel_reason": "", "client_order_id": so.cid,
                "completion_percentage": f"{100 * st.filled / st.size:.2f}", "contract_expiry_type":
                "UNKNOWN_CONTRACT_EXPIRY_TYPE", "cumulative_quantity": self._q(so.sym, st.filled),
                "filled_value": from_fixed(st.quote, inst.price_scale),
                "leaves_quantity": self._q(so.sym, st.size - st.filled) if live else "0",
                "limit_price": self._p(so.sym, st.price), "number_of_fills": str(so.nfills), "order_id": so.vid,
                "order_side": "BUY" if st.side > 0 else "SELL", "order_type": "Limit",
                "outstanding_hold_amount": "0", "post_only": "true" if st.flags & OrderFlags.POST_ONLY else "false",
                "product_id": so.sym, "product_type": "SPOT", "reject_reason": "", "retail_portfolio_id": "",
                "risk_managed_by": "UNKNOWN_RISK_MANAGEMENT_TYPE", "status": STATUS_TEXT.get(_S(st.status), "OPEN"),
                "stop_price": "", "time_in_force": "IMMEDIATE_OR_CANCEL" if so.conf == "sor_limit_ioc"
                else "GOOD_UNTIL_CANCELLED", "total_fees": from_fixed(st.fees, inst.price_scale),
                "total_value_after_fees": from_fixed(st.quote + st.fees if st.side > 0 else st.quote - st.fees,
                                                     inst.price_scale),
                "trigger_status": "INVALID_ORDER_TYPE", "creation_time": utc(so.created, 6),
                "end_time": "0001-01-01T00:00:00Z", "start_time": "0001-01-01T00:00:00Z"}

    def _order_doc(self, so: _SimOrder) -> dict:
        st = self.engine.order(so.oid)
        inst = self.instruments[so.sym]
        conf = {"base_size": self._q(so.sym, st.size), "limit_price": self._p(so.sym, st.price)}
        if so.conf == "limit_limit_gtc":
            conf["post_only"] = bool(st.flags & OrderFlags.POST_ONLY)
        avg = from_fixed(st.quote * 10**inst.size_scale // st.filled, inst.price_scale) if st.filled else "0"
        ended = st.status in _ENDED
        return {"order_id": so.vid, "product_id": so.sym, "user_id": "sim-user", "order_configuration": {so.conf: conf},
                "side": "BUY" if st.side > 0 else "SELL", "client_order_id": so.cid,
                "status": STATUS_TEXT.get(_S(st.status), "OPEN"),
                "time_in_force": "IMMEDIATE_OR_CANCEL" if so.conf == "sor_limit_ioc" else "GOOD_UNTIL_CANCELLED",
                "created_time": utc(so.created, 6), "completion_percentage": f"{100 * st.filled / st.size:.2f}",
                "filled_size": self._q(so.sym, st.filled), "average_filled_price": avg, "fee": "",
                "number_of_fills": str(so.nfills), "filled_value": from_fixed(st.quote, inst.price_scale),
                "pending_cancel": False, "size_in_quote": False, "total_fees": from_fixed(st.fees, inst.price_scale),
                "size_inclusive_of_fees": False, "total_value_after_fees": from_fixed(
                    st.quote + st.fees if st.side > 0 else st.quote - st.fees, inst.price_scale),
                "trigger_status": "INVALID_ORDER_TYPE", "order_type": "LIMIT", "reject_reason":
                "REJECT_REASON_UNSPECIFIED", "settled": ended, "product_type": "SPOT", "reject_message": "",
                "cancel_message": "", "order_placement_source": "RETAIL_ADVANCED", "outstanding_hold_amount": "0",
                "is_liquidation": False, "last_fill_time": utc(so.last_fill, 6) if so.last_fill else None,
                "leverage": "", "margin_type": "UNKNOWN_MARGIN_TYPE", "retail_portfolio_id": ""}

    # the private REST calls
    def _private(self, req: Request):
        now = self._now()
        auth_header = req.headers.get("Authorization") or ""
        token = auth_header[7:] if auth_header.startswith("Bearer ") else ""
        uri = coinbase_auth.rest_uri(req.method, req.headers.get("Host") or "", req.path)
        err, claims = coinbase_auth.verify(self.public_keys, token, now / 1e9, uri)
        if err:
            self.order_counts[f"auth_{err}"] += 1
            return UNAUTHORIZED
        calls = self._calls.setdefault(claims["sub"], deque())
        while calls and calls[0] <= now - 1_000_000_000:
            calls.popleft()
        calls.append(now)
        if len(calls) > self.rest_rate_per_s:
            self.order_counts["rate_limited"] += 1
            return Reply(429, dict(RATE_LIMITED))
        path, method = req.path, req.method
        need = "trade" if method == "POST" else "view"
        if path != API + "/key_permissions" and need not in self.permissions:
            return Reply(403, dict(FORBIDDEN))
        fault = self._order_faults.popleft() if self._order_faults and path in ORDER_PATHS and method == "POST" \
            else None
        if fault == "rate":
            self.order_counts["rate_limited"] += 1
            return Reply(429, dict(RATE_LIMITED))
        try:
            out = self._call(method, path, req, now)
        except _Refused as e:
            return Reply(e.status, e.body)
        if fault == "5xx":
            self.order_counts["answered_5xx"] += 1
            return Reply(503, {"error": "UNAVAILABLE", "error_details": "service unavailable",
                               "message": "service unavailable"})
        if fault == "timeout":
            self.order_counts["not_answered"] += 1
            return Reply(504, b"gateway timeout", {"Content-Type": "text/plain"})
        return out

    def _call(self, method: str, path: str, req: Request, now: int):
        if method == "POST":
            body = req.json()
            if not isinstance(body, dict):
                raise _Refused(400, {"error": "INVALID_ARGUMENT", "error_details": "body must be an object",
                                     "message": "body must be an object"})
            if path == API + "/orders":
                return self._create(body, now)
            if path == API + "/orders/batch_cancel":
                return self._cancel_many(body, now)
            if path == API + "/orders/edit":
                return self._edit(body, now)
        elif method == "GET":
            q = _multi(req)
            if path == API + "/orders/historical/batch":
                return self._list_orders(q)
            if path == API + "/orders/historical/fills":
                return self._list_fills(q)
            if path.startswith(API + "/orders/historical/"):
                so = self.by_vid.get(path.rsplit("/", 1)[1])
                if so is None or self.engine.order(so.oid) is None:
                    raise _Refused(404, {"error": "NOT_FOUND", "error_details": "order with this id was not found",
                                         "message": "order with this id was not found"})
                return {"order": self._order_doc(so)}
            if path == API + "/accounts":
                return self._accounts(q)
            if path == API + "/key_permissions":
                return {"can_view": "view" in self.permissions, "can_trade": "trade" in self.permissions,
                        "can_transfer": False, "portfolio_uuid": "00000000-0000-0000-0000-000000000001",
                        "portfolio_type": "DEFAULT"}
        raise _Refused(404, {"error": "NOT_FOUND", "error_details": f"no {method} {path}", "message": "NotFound"})

    @staticmethod
    def _failure(error: str, preview: str, new: str, message: str) -> dict:
        return {"success": False, "failure_reason": "UNKNOWN_FAILURE_REASON", "order_id": "",
                "error_response": {"error": error, "message": message, "error_details": message,
                                   "preview_failure_reason": preview, "new_order_failure_reason": new}}

    def _create(self, body: dict, now: int) -> dict:
        cid = str(body.get("client_order_id") or "") or str(uuid.uuid4())
        old = self.by_cid.get(cid)
        if old is not None:  # not placed again: the order with that id is the answer
            self.order_counts["duplicate_cid"] += 1
            return {"success": True, "success_response": {"order_id": old.vid, "product_id": old.sym,
                                                          "side": body.get("side"), "client_order_id": cid}}
        sym = body.get("product_id")
        inst = self.instruments.get(sym) if isinstance(sym, str) else None
        if inst is None:
            return self._failure("INVALID_PRODUCT_ID", "PREVIEW_INVALID_PRODUCT_ID", "INVALID_PRODUCT_ID",
                                 "Invalid product_id")
        side = body.get("side")
        if side not in ("BUY", "SELL"):
            return self._failure("INVALID_SIDE", "PREVIEW_INVALID_SIDE", "INVALID_SIDE", "Invalid side")
        confs = body.get("order_configuration") if isinstance(body.get("order_configuration"), dict) else {}
        kind = next((k for k in confs if k in ("limit_limit_gtc", "sor_limit_ioc")), None)
        conf = confs.get(kind) if kind else None
        if not isinstance(conf, dict):
            return self._failure("UNSUPPORTED_ORDER_CONFIGURATION", "PREVIEW_INVALID_ORDER_CONFIG",
                                 "UNSUPPORTED_ORDER_CONFIGURATION", "Unsupported order configuration")
        try:
            size = to_fixed(str(conf.get("base_size")), inst.size_scale)
        except FixedPointError:
            return self._failure(*NEW_REFUSALS[Reject.LOT])
        try:
            price = to_fixed(str(conf.get("limit_price")), inst.price_scale)
        except FixedPointError:
            return self._failure(*NEW_REFUSALS[Reject.TICK])
        post_only = conf.get("post_only") in (True, "true")
        flags = (OrderFlags.POST_ONLY if post_only else 0) | (OrderFlags.IOC if kind == "sor_limit_ioc" else 0)
        self._next_oid += 1
        oid = self._next_oid
        so = _SimOrder(oid, str(uuid.uuid4()), cid, sym, inst.id, now, kind)
        self.sim_orders[oid] = so
        self.engine.act(OrderRequest(oid, 0, price, size, inst.id, 0, 0, OrderAction.NEW, 1 if side == "BUY" else -1,
                                     int(flags)), now)
        why = next((Reject(m.reason) for port, m in self._engine_out
                    if port == "updates" and m.order_id == oid and m.status == _S.REJECTED), None)
        streams = self._collect()
        if why is not None:
            del self.sim_orders[oid]
            self.order_counts["refused"] += 1
            return self._failure(*NEW_REFUSALS.get(why, NEW_REFUSALS[Reject.BAD_REQUEST]))
        self.by_vid[so.vid] = so
        self.by_cid[cid] = so
        self.placed[cid] += 1
        self.order_counts["placed"] += 1
        self._stream(*streams)
        return {"success": True, "success_response": {"order_id": so.vid, "product_id": sym, "side": side,
                                                      "client_order_id": cid},
                "order_configuration": {kind: conf}}

    def _cancel_many(self, body: dict, now: int) -> dict:
        ids = body.get("order_ids")
        if not isinstance(ids, list) or not ids:
            raise _Refused(400, {"error": "INVALID_ARGUMENT", "error_details": "order_ids is required",
                                 "message": "order_ids is required"})
        results = []
        for vid in ids:
            so = self.by_vid.get(str(vid))
            if so is not None and self._fill_before_cancel(so, now):
                self._stream(*self._collect())
            st = self.engine.order(so.oid) if so is not None else None
            if st is None or st.status in _ENDED:
                self.order_counts["refused"] += 1
                results.append({"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER", "order_id": str(vid)})
                continue
            self.engine.act(OrderRequest(self._oid(), so.oid, 0, 0, so.iid, 0, 0, OrderAction.CANCEL, 1, 0), now)
            self._stream(*self._collect())
            results.append({"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": so.vid})
        return {"results": results}

    def _oid(self) -> int:
        self._next_oid += 1
        return self._next_oid

    def _edit(self, body: dict, now: int) -> dict:
        def refused(reason: str, preview: str = "UNKNOWN_PREVIEW_FAILURE_REASON") -> dict:
            self.order_counts["refused"] += 1
            return {"success": False, "errors": [{"edit_failure_reason": reason, "preview_failure_reason": preview}]}

        so = self.by_vid.get(str(body.get("order_id")))
        st = self.engine.order(so.oid) if so is not None else None
        if st is None or st.status in _ENDED:
            return refused("ORDER_NOT_FOUND")
        if so.conf != "limit_limit_gtc":
            return refused("ONLY_LIMIT_ORDER_EDITS_SUPPORTED")
        inst = self.instruments[so.sym]
        try:
            price = to_fixed(str(body["price"]), inst.price_scale) if body.get("price") else st.price
        except FixedPointError:
            return refused("INVALID_EDITED_PRICE")
        try:
            size = to_fixed(str(body["size"]), inst.size_scale) if body.get("size") else st.size
        except FixedPointError:
            return refused("INVALID_EDITED_SIZE")
        if size <= st.filled:
            return refused("CANNOT_EDIT_TO_BELOW_FILLED_SIZE")
        self.engine.act(OrderRequest(self._oid(), so.oid, price, size, so.iid, 0, 0, OrderAction.AMEND, st.side, 0),
                        now)
        why = next((Reject(m.reason) for port, m in self._engine_out
                    if port == "updates" and m.order_id == so.oid and m.status == _S.CANCEL_REJECTED), None)
        self._stream(*self._collect())
        if why is not None:
            reason = EDIT_REFUSALS.get(why, "UNKNOWN_EDIT_ORDER_FAILURE_REASON")
            return refused(reason if not reason.startswith("PREVIEW") else "UNKNOWN_EDIT_ORDER_FAILURE_REASON",
                           reason if reason.startswith("PREVIEW") else "UNKNOWN_PREVIEW_FAILURE_REASON")
        self.order_counts["edited"] += 1
        return {"success": True, "errors": []}

    def _since(self, q: dict, name: str) -> int:
        text = (q.get(name) or [""])[-1]
        try:
            return rfc3339_ns(text) if text else 0
        except (ValueError, IndexError):
            raise _Refused(400, {"error": "INVALID_ARGUMENT", "error_details": f"bad {name}",
                                 "message": f"bad {name}"}) from None

    def _list_orders(self, q: dict) -> dict:
        statuses = set(q.get("order_status") or ())
        products = set(q.get("product_ids") or ())
        since = self._since(q, "start_date")
        out = []
        for so in sorted(self.sim_orders.values(), key=lambda so: so.created, reverse=True):  # newest first
            st = self.engine.order(so.oid)
            if st is None or so.created < since or (products and so.sym not in products):
                continue
            if statuses and STATUS_TEXT.get(_S(st.status), "OPEN") not in statuses:
                continue
            out.append(so)
        page, more, cursor = _page(out, q, 100, 1000)
        return {"orders": [self._order_doc(so) for so in page], "sequence": "0", "has_next": more, "cursor": cursor}

    def _list_fills(self, q: dict) -> dict:
        ids = set(q.get("order_ids") or ())
        products = set(q.get("product_ids") or ())
        since = self._since(q, "start_sequence_timestamp")
        out = [rec for rec, ns in reversed(self.trades)  # newest first
               if ns >= since and (not ids or rec["order_id"] in ids)
               and (not products or rec["product_id"] in products)]
        page, more, cursor = _page(out, q, 100, 1000)
        return {"fills": [dict(r) for r in page], "cursor": cursor}

    def _accounts(self, q: dict) -> dict:
        accounts = []
        for (venue, asset), scale in sorted(self.engine.scales.items()):
            total, avail = self.engine.balance(venue, asset)
            accounts.append({"uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, f"account-{asset}")), "name": f"{asset} Wallet",
                             "currency": asset,
                             "available_balance": {"value": from_fixed(avail, scale), "currency": asset},
                             "default": True, "active": True, "created_at": "2023-01-01T00:00:00Z",
                             "updated_at": utc(time.time_ns(), 6), "deleted_at": None,
                             "type": "ACCOUNT_TYPE_FIAT" if asset in ("USD", "EUR", "GBP") else "ACCOUNT_TYPE_CRYPTO",
                             "ready": True, "hold": {"value": from_fixed(total - avail, scale), "currency": asset},
                             "retail_portfolio_id": ""})
        page, more, cursor = _page(accounts, q, 49, 250)
        return {"accounts": page, "has_next": more, "cursor": cursor, "size": len(page)}

