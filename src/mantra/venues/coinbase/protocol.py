"""Coinbase market data, sans-IO, in either of Coinbase's two public feed formats.

``api="advanced"`` (Advanced Trade, ``wss://advanced-trade-ws.coinbase.com``): one channel per
subscribe; ``level2`` arrives as channel ``l2_data`` with ``snapshot``/``update`` events (ask side
spelled ``offer``), ``market_trades`` and ``heartbeats`` (subscribed so that quiet channels are not
closed).  ``sequence_num`` counts every message of the connection: a jump is a gap (every book of
the connection: GAP, then level2 is unsubscribed and subscribed again, which brings new snapshots);
a smaller number is late or repeated and is ignored.

``api="exchange"`` (the Exchange feed, ``wss://ws-feed.exchange.coinbase.com``, the format of the
recorded captures): ``snapshot`` / ``l2update`` (``changes`` of ``[buy|sell, price, size]``),
``match`` / ``last_match``.  Level2 messages carry no sequence number, so book gaps cannot be seen
on this feed: a book is SYNCED at its snapshot and UNVERIFIED from its first update on.  The
per-product ``sequence`` of matches only orders trades (an older or repeated one is dropped).  ``level2_batch`` is the default channel because plain ``level2`` requires
authentication there since 2023.

Trades: both formats give the *maker's* side, so the aggressor is the opposite one.  Trades that
happened before the subscription (the ``market_trades`` snapshot, ``last_match``) are not emitted.
"""

from __future__ import annotations

import calendar
import json
import logging

import msgspec

from ..._spine import Lane
from ...fixed import to_fixed as fx
from ..base import INT64_MAX, VenueProtocol
from ..events import Send, Side, Status

log = logging.getLogger(__name__)

ADVANCED_URL = "wss://advanced-trade-ws.coinbase.com"
EXCHANGE_URL = "wss://ws-feed.exchange.coinbase.com"


# -- Advanced Trade ---------------------------------------------------------------------------
class Envelope(msgspec.Struct):
    channel: str = ""
    sequence_num: int = -1
    timestamp: str = ""
    events: msgspec.Raw = msgspec.Raw()
    type: str = ""  # {"type": "error", "message": ...}
    message: str = ""


class L2Update(msgspec.Struct):
    side: str  # "bid" | "offer"
    price_level: str
    new_quantity: str  # (and "event_time", not decoded: the message's timestamp is the one used)


class L2Event(msgspec.Struct):
    type: str  # "snapshot" | "update"
    product_id: str
    updates: list[L2Update]


class MarketTrade(msgspec.Struct):
    product_id: str
    price: str
    size: str
    side: str  # maker side: BUY | SELL
    trade_id: str = "0"
    time: str = ""


class TradesEvent(msgspec.Struct):
    type: str
    trades: list[MarketTrade]


# -- Exchange ---------------------------------------------------------------------------------
class ExSnapshot(msgspec.Struct, tag="snapshot", tag_field="type"):
    product_id: str
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class ExL2Update(msgspec.Struct, tag="l2update", tag_field="type"):
    product_id: str
    changes: list[tuple[str, str, str]]
    time: str = ""


class ExMatch(msgspec.Struct, tag="match", tag_field="type"):
    product_id: str
    price: str
    size: str
    side: str  # maker side: buy | sell
    trade_id: int = 0
    sequence: int = -1
    time: str = ""


class ExLastMatch(ExMatch, tag="last_match"):
    pass


class ExOther(msgspec.Struct):
    type: str
    message: str = ""
    reason: str = ""
    product_id: str = ""
    sequence: int = -1


ExMessage = ExL2Update | ExSnapshot | ExMatch | ExLastMatch
_BOOK_TYPES = {"snapshot", "l2update"}

BID, ASK = int(Side.BID), int(Side.ASK)
_SIDES = {"bid": BID, "buy": BID, "offer": ASK, "ask": ASK, "sell": ASK}
_TAKER = {"BUY": ASK, "buy": ASK, "SELL": BID, "sell": BID}  # maker side -> aggressor side
_SYNCED, _UNVERIFIED = Status.SYNCED, Status.UNVERIFIED
_SECOND_CACHE: dict[str, int] = {}


def rfc3339_ns(text: str) -> int:
    """``"2023-02-09T20:32:50.714964855Z" -> ns since the epoch`` (UTC "Z" only; "" -> 0)."""
    if not text:
        return 0
    head = text[:19]
    secs = _SECOND_CACHE.get(head)
    if secs is None:
        # Messages of the same second share the calendar work; the cache is reset, not grown.
        if text[10] not in "T " or text[-1] != "Z" or not head[:4].isdigit():
            raise ValueError(f"unsupported time {text!r}")
        y, mo, d = int(head[:4]), int(head[5:7]), int(head[8:10])
        secs = calendar.timegm((y, mo, d, int(head[11:13]), int(head[14:16]), int(head[17:19])))
        if len(_SECOND_CACHE) > 4096:
            _SECOND_CACHE.clear()
        _SECOND_CACHE[head] = secs
    if len(text) > 21 and text[19] == ".":
        frac = text[20:-1]
        return secs * 1_000_000_000 + int(frac[:9]) * _POW10[9 - len(frac[:9])]
    return secs * 1_000_000_000


_POW10 = [10**i for i in range(10)]


class CoinbaseProtocol(VenueProtocol):
    venue = "coinbase"
    stale_after_s = 5.0  # heartbeats arrive every second on both feeds

    def __init__(
        self,
        registry,
        symbols,
        depth: int | None = None,
        *,
        api: str = "advanced",
        url: str | None = None,
        trades: bool = True,
        l2_channel: str | None = None,
    ):
        if api not in ("advanced", "exchange"):
            raise ValueError(f"api must be 'advanced' or 'exchange', not {api!r}")
        super().__init__(registry, symbols, depth)
        self.api = api
        self.url = url or (ADVANCED_URL if api == "advanced" else EXCHANGE_URL)
        self.trades = trades
        self.l2_channel = l2_channel or ("level2" if api == "advanced" else "level2_batch")
        self._iid = {self.registry[i].symbol: i for i in self.books}
        self.products = list(self._iid)
        self._seq = -1  # last sequence_num of this connection (advanced)
        self._trade_seq: dict[int, int] = {}  # per product (exchange)
        self._synced = set()  # iids that have had their snapshot on this subscription
        # (price_scale, size_scale) per instrument, looked up once per message
        self._scales = {i: (self.registry[i].price_scale, self.registry[i].size_scale) for i in self.books}
        self._env = msgspec.json.Decoder(Envelope)
        self._l2 = msgspec.json.Decoder(list[L2Event])
        self._trades = msgspec.json.Decoder(list[TradesEvent])
        self._ex = msgspec.json.Decoder(ExMessage)
        self._ex_other = msgspec.json.Decoder(ExOther)

    def default_spec(self, symbol: str) -> dict:
        # Without product metadata: Coinbase writes at most 8 decimals for prices and sizes.
        return dict(price_scale=8, size_scale=8)

    # -- connection ---------------------------------------------------------------------------
    def on_connect(self, ts: int) -> None:
        super().on_connect(ts)
        self._seq = -1
        self._trade_seq.clear()
        self._synced.clear()
        if self.api == "advanced":
            self._subscribe("subscribe", self.l2_channel)
            if self.trades:
                self._subscribe("subscribe", "market_trades")
            self._subscribe("subscribe", "heartbeats")
        else:
            channels = [self.l2_channel, "heartbeat"] + (["matches"] if self.trades else [])
            msg = {"type": "subscribe", "product_ids": self.products, "channels": channels}
            self.events.append(Send(json.dumps(msg)))

    def _subscribe(self, kind: str, channel: str, products: list[str] | None = None) -> None:
        msg = {"type": kind, "channel": channel}
        if channel != "heartbeats":
            msg["product_ids"] = self.products if products is None else products
        self.events.append(Send(json.dumps(msg)))

    def resync(self, iid: int, why: str) -> None:
        """Ask for a fresh snapshot of this product: unsubscribe and subscribe its level2 again."""
        self._resubscribe([iid], why)

    def _resubscribe(self, iids: list[int], why: str) -> None:
        products = []
        for iid in iids:
            self.stats[iid].resyncs += 1
            self.set_status(iid, Status.RESYNCING, why)
            self._synced.discard(iid)
            products.append(self.registry[iid].symbol)
        # One unsubscribe and one subscribe for all of them: the venue limits client messages.
        for kind in ("unsubscribe", "subscribe"):
            if self.api == "advanced":
                self._subscribe(kind, self.l2_channel, products)
            else:
                self.events.append(Send(json.dumps({"type": kind, "product_ids": products, "channels": [self.l2_channel]})))

    # -- frames -------------------------------------------------------------------------------
    def fast_lane(self, port, track, snap: dict):
        """Advanced Trade's ``l2_data`` updates in C (``_lane.c``), on books without a depth limit.
        The lane reads ``_seq`` and ``_synced`` (never rebound) and moves ``_seq``, ``frames``,
        ``last_ts`` and the book's ``messages`` as ``on_frame`` would."""
        if self.api != "advanced" or self.depth:
            return None
        books = [(self.registry[i].symbol, i, self.books[i], *self._scales[i], self.stats[i]) for i in self.books]
        return Lane(self, port, track, snap, books)

    def handle(self, data, ts: int) -> None:
        if self.api == "advanced":
            self._on_advanced(data, ts)
        else:
            self._on_exchange(data, ts)

    def _on_advanced(self, data, ts: int) -> None:
        env = self._env.decode(data)
        seq = env.sequence_num
        if seq > INT64_MAX or seq < -1:
            raise ValueError(f"sequence_num {seq}")  # taken as the last one, it would hide every later message
        if seq >= 0:
            if self._seq >= 0:
                if seq <= self._seq:
                    return  # late or repeated
                if seq > self._seq + 1:
                    self._connection_gap(f"sequence_num {seq} after {self._seq}")
            self._seq = seq
        ch = env.channel
        if ch == "l2_data":
            try:
                exch_ts = rfc3339_ns(env.timestamp)
                for ev in self._l2.decode(env.events):
                    self._on_l2_event(ev, exch_ts)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError, KeyError):
                if self._busy is None:
                    # Some book missed this update and we cannot tell which: resync them all.
                    hit = [iid for iid in self.books if iid in self._synced]
                    if hit:
                        self._resubscribe(hit, "unreadable l2_data message")
                raise
        elif ch == "market_trades":
            for ev in self._trades.decode(env.events):
                if ev.type == "update":
                    for t in ev.trades:
                        self._trade(t.product_id, t.price, t.size, t.side, _int(t.trade_id), rfc3339_ns(t.time))
        elif env.type == "error":
            log.warning("coinbase error: %s", env.message)
        # subscriptions, heartbeats: nothing to do beyond the sequence check

    def _connection_gap(self, why: str) -> None:
        hit = [iid for iid in self.books if iid in self._synced]
        for iid in hit:
            self.stats[iid].gaps += 1
            self.set_status(iid, Status.GAP, why)
        if hit:
            self._resubscribe(hit, why)

    def _on_l2_event(self, ev: L2Event, exch_ts: int) -> None:
        iid = self._iid.get(ev.product_id)
        if iid is None:
            return
        self._busy = iid
        ps, ss = self._scales[iid]
        levels = [(_SIDES[u.side], fx(u.price_level, ps), fx(u.new_quantity, ss)) for u in ev.updates]
        if ev.type == "snapshot":
            self._snapshot(iid, levels, exch_ts)
        elif iid in self._synced:
            self._apply(iid, levels, exch_ts)
        # updates before the (re)subscription's snapshot belong to the old state: skipped

    def _on_exchange(self, data, ts: int) -> None:
        try:
            msg = self._ex.decode(data)
        except msgspec.ValidationError:
            # A type we do not interpret (ticker, heartbeat, subscriptions, error) is not malformed.
            other = self._ex_other.decode(data)
            if other.type in _BOOK_TYPES or other.type in ("match", "last_match"):
                self._busy = self._iid.get(other.product_id) if other.type in _BOOK_TYPES else None
                raise
            if other.type == "error":
                log.warning("coinbase error: %s %s", other.message, other.reason)
            return
        iid = self._iid.get(msg.product_id)
        if iid is None:
            return
        ps, ss = self._scales[iid]
        if type(msg) is ExL2Update:
            if iid in self._synced:
                self._busy = iid
                levels = [(_SIDES[s], fx(p, ps), fx(q, ss)) for s, p, q in msg.changes]
                self._apply(iid, levels, rfc3339_ns(msg.time))
                if self.status[iid] is _SYNCED:  # no sequence: a lost update would not show
                    self.set_status(iid, _UNVERIFIED, "level2 has no sequence numbers")
        elif type(msg) is ExSnapshot:
            self._busy = iid
            levels = [(BID, fx(p, ps), fx(q, ss)) for p, q in msg.bids]
            levels += [(ASK, fx(p, ps), fx(q, ss)) for p, q in msg.asks]
            self._snapshot(iid, levels, 0)
        else:
            last = self._trade_seq.get(iid, -1)
            if msg.sequence > INT64_MAX or msg.sequence < -1:
                raise ValueError(f"sequence {msg.sequence}")
            if msg.sequence >= 0:
                if msg.sequence <= last:
                    return  # older or repeated trade
                self._trade_seq[iid] = msg.sequence
            if type(msg) is ExMatch:
                self._trade(msg.product_id, msg.price, msg.size, msg.side, msg.trade_id, rfc3339_ns(msg.time))

    # -- book ---------------------------------------------------------------------------------
    def _snapshot(self, iid: int, levels, exch_ts: int) -> None:
        bids = [(p, q) for s, p, q in levels if s == BID]
        asks = [(p, q) for s, p, q in levels if s == ASK]
        self.apply_snapshot(iid, bids, asks, exch_ts)
        self._synced.add(iid)
        if not self.check_crossed(iid):
            self.set_status(iid, Status.SYNCED, "snapshot")

    def _apply(self, iid: int, levels, exch_ts: int) -> None:
        self.apply_levels(iid, levels, exch_ts)
        self.check_crossed(iid)

    def _trade(self, product: str, price: str, size: str, maker_side: str, trade_id: int, exch_ts: int) -> None:
        iid = self._iid.get(product)
        if iid is None:
            return
        inst = self.registry[iid]
        side = _TAKER.get(maker_side)
        if side is None:
            raise ValueError(f"trade side {maker_side!r}")
        self.trade(iid, side, fx(price, inst.price_scale), fx(size, inst.size_scale), trade_id, exch_ts)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0  # Advanced Trade ids are strings; a non-numeric one has no integer form
