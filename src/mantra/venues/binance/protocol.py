"""Binance spot market data, sans-IO: REST depth snapshot + ``<symbol>@depth@100ms`` diffs, trades.

Book sync follows Binance's "How to manage a local order book correctly" (../shared/research/
exchanges.md 1.3): buffer diff events, GET the snapshot once the first event is in (or after
``sync_wait_s`` for a quiet symbol), drop buffered events with ``u <= lastUpdateId``; the first
applied event must straddle ``lastUpdateId + 1``; afterwards ``U > prev_u + 1`` is a gap (counted,
status GAP, snapshot fetched again) and ``u <= prev_u`` is an old or repeated event and is ignored.
A snapshot older than the first buffered event (``lastUpdateId < U``) is fetched again.

One connection carries every stream, combined (``/stream?streams=...``): the ``url`` attribute is
what the runner connects to, so nothing needs sending after connect.  WebSocket ping/pong is the
runner's job (the server pings every 20 s and drops a client that has not answered within 60 s).
``serverShutdown`` asks for a ``Reconnect``.

Stale watchdog: the server's pings prove only the socket, and a quiet symbol may send no diff for
long, so after ``probe_after_s`` of silence we send ``LIST_SUBSCRIPTIONS`` (answered at once, one
message in the venue's 5 per second); no frame at all for ``stale_after_s`` is a stalled feed.
"""

from __future__ import annotations

import json
import logging

import msgspec

from ...fixed import side_rows as _rows
from ...fixed import to_fixed as fx
from ..base import INT64_MAX, VenueProtocol, check_levels
from ..events import Fetch, Reconnect, Send, Side, Status

BID, ASK = int(Side.BID), int(Side.ASK)

log = logging.getLogger(__name__)

WS_URL = "wss://stream.binance.com:9443"
REST_URL = "https://api.binance.com"

Levels = list[tuple[str, str]]


class DepthUpdate(msgspec.Struct):
    s: str  # symbol
    U: int  # first update id in the event
    u: int  # last update id in the event
    b: Levels
    a: Levels
    E: int = 0  # event time, ms


class TradeMsg(msgspec.Struct):
    s: str
    p: str
    q: str
    m: bool  # buyer is the maker: the seller was the aggressor
    t: int = 0  # trade id (@trade)
    a: int = 0  # aggregate trade id (@aggTrade)
    T: int = 0  # trade time, ms


class Event(msgspec.Struct):
    e: str = ""


class Envelope(msgspec.Struct):
    """Combined-stream wrapper, or the fields of a raw event / control reply we look at."""

    stream: str = ""
    data: msgspec.Raw = msgspec.Raw()
    e: str = ""  # raw (uncombined) event type
    id: int | str | None = None  # reply to SUBSCRIBE & co.
    code: int | None = None  # control error
    msg: str = ""


class Snapshot(msgspec.Struct):
    lastUpdateId: int
    bids: Levels
    asks: Levels


class RestError(msgspec.Struct):
    code: int
    msg: str = ""

class _Sync:
    """Per-instrument sync state."""

    __slots__ = ("update_id", "buffer", "fetching", "fetched_at", "first_seen")

    def __init__(self) -> None:
        self.update_id: int | None = None  # last applied u; None until synced
        self.buffer: list[tuple] = []  # (U, u, levels, exch_ts), levels already converted
        self.fetching = False
        self.fetched_at = 0  # ts of the last Fetch, ns
        self.first_seen = 0  # ts the connection (re)started waiting for this book, ns


class BinanceProtocol(VenueProtocol):
    venue = "binance"
    stale_after_s = 5.0  # 100 ms diffs; a quiet connection still answers the probe within a second
    probe_after_s = 2.0

    def __init__(
        self,
        registry,
        symbols,
        depth: int | None = None,
        *,
        snapshot_limit: int = 1000,
        ws_url: str = WS_URL,
        rest_url: str = REST_URL,
        speed: str = "100ms",
        trades: str = "trade",
        sync_wait_s: float = 3.0,
        refetch_s: float = 10.0,
        max_buffer: int = 10_000,
    ):
        super().__init__(registry, symbols, depth)
        self.snapshot_limit = snapshot_limit
        self.sync_wait_ns = int(sync_wait_s * 1e9)
        self.refetch_ns = int(refetch_s * 1e9)
        self.max_buffer = max_buffer
        self._iid = {}  # "BTCUSDT" -> iid
        self._url_iid = {}  # snapshot url -> iid
        self._snap_url = {}  # iid -> snapshot url
        self._sync = {}
        self._req = 0
        self._stream_iid = {}  # "btcusdt@depth@100ms" -> iid: a diff that fails to decode still names its book
        streams = []
        for iid in self.books:
            sym = self.registry[iid].symbol
            self._iid[sym.upper()] = iid
            url = f"{rest_url}/api/v3/depth?symbol={sym.upper()}&limit={snapshot_limit}"
            self._url_iid[url] = iid
            self._snap_url[iid] = url
            self._sync[iid] = _Sync()
            low = sym.lower()
            streams.append(f"{low}@depth@{speed}" if speed else f"{low}@depth")
            self._stream_iid[streams[-1]] = iid
            if trades:
                streams.append(f"{low}@{trades}")
        self.url = f"{ws_url}/stream?streams={'/'.join(streams)}"
        # (price_scale, size_scale) per instrument, looked up once per message
        self._scales = {i: (self.registry[i].price_scale, self.registry[i].size_scale) for i in self.books}
        self._env = msgspec.json.Decoder(Envelope)
        self._depth = msgspec.json.Decoder(DepthUpdate)
        self._trade = msgspec.json.Decoder(TradeMsg)
        self._event = msgspec.json.Decoder(Event)
        self._snapshot = msgspec.json.Decoder(Snapshot)

    def default_spec(self, symbol: str) -> dict:
        # Without exchangeInfo: Binance writes every price and quantity with 8 decimals.
        return dict(price_scale=8, size_scale=8, price_decimals=8, size_decimals=8)

    # -- connection ---------------------------------------------------------------------------
    def on_connect(self, ts: int) -> None:
        super().on_connect(ts)
        for st in self._sync.values():
            st.update_id = None
            st.buffer.clear()
            st.fetching = False
            st.first_seen = ts

    def on_timer(self, ts: int) -> None:
        super().on_timer(ts)
        for iid, st in self._sync.items():
            if st.update_id is not None or not self.connected:
                continue
            # A quiet symbol may send no diff for a long time: fetch anyway after sync_wait_s.
            # A failed or unanswered fetch is retried every refetch_s.
            if not st.fetching and ts - st.first_seen >= self.sync_wait_ns:
                self._fetch(iid, ts)
            elif st.fetching and ts - st.fetched_at >= self.refetch_ns:
                self._fetch(iid, ts)

    def probe(self, ts: int) -> None:
        self._req += 1
        self.events.append(Send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": self._req})))

    def _fetch(self, iid: int, ts: int) -> None:
        st = self._sync[iid]
        st.fetching = True
        st.fetched_at = ts
        self.events.append(Fetch(self._snap_url[iid]))

    # -- frames -------------------------------------------------------------------------------
    def handle(self, data, ts: int) -> None:
        env = self._env.decode(data)
        if env.stream:
            stream, raw = env.stream, env.data
            iid = self._stream_iid.get(stream)  # our diff streams by name: no scan of the name
            if iid is not None:
                self._busy = iid  # a field that fails to decode: that book missed a diff
                self._on_depth(self._depth.decode(raw), ts)
            elif "@depth@" in stream or stream.endswith("@depth"):  # not the partial "@depth5"
                self._busy = self._stream_iid.get(stream)  # a field that fails to decode: that book missed a diff
                self._on_depth(self._depth.decode(raw), ts)
            elif stream.endswith("@trade") or stream.endswith("@aggTrade"):
                self._on_trade(self._trade.decode(raw))
            elif stream[0] == "!" and self._event.decode(raw).e == "serverShutdown":
                self._shutdown()
            # other streams (bookTicker, kline, ...) are not ours to interpret
        elif env.e:
            self._on_raw(env.e, data, ts)
        elif env.code is not None:
            log.warning("binance control error %s: %s", env.code, env.msg)
        # else: {"result": null, "id": n} acknowledges a SUBSCRIBE

    def _on_raw(self, kind: str, data, ts: int) -> None:
        if kind == "depthUpdate":
            self._on_depth(self._depth.decode(data), ts)
        elif kind in ("trade", "aggTrade"):
            self._on_trade(self._trade.decode(data))
        elif kind == "serverShutdown":
            self._shutdown()

    def _shutdown(self) -> None:
        self.events.append(Reconnect("binance serverShutdown"))

    def _on_depth(self, ev: DepthUpdate, ts: int) -> None:
        iid = self._iid.get(ev.s)
        if iid is None:
            return  # a stream we did not ask for
        st = self._sync[iid]
        self._busy = iid
        ps, ss = self._scales[iid]
        # Convert every level first: a bad string must not leave a half-applied message.
        levels = _rows(BID, ev.b, ps, ss)
        if ev.a:
            levels += _rows(ASK, ev.a, ps, ss)
        item = (ev.U, ev.u, levels, ev.E * 1_000_000)
        if not 0 <= ev.U <= ev.u <= INT64_MAX:
            raise ValueError(f"update ids U={ev.U} u={ev.u}")
        if st.update_id is None or ev.U > st.update_id + 1:
            check_levels(levels, item[3])  # to be buffered and applied from on_rest: checked now
        if st.update_id is None:
            if len(st.buffer) >= self.max_buffer:
                # The snapshot is not coming; start over rather than grow without bound.
                st.buffer.clear()
                st.fetching = False
            st.buffer.append(item)
            if not st.fetching:
                self._fetch(iid, ts)
            return
        if ev.u <= st.update_id:
            return  # already applied (repeated or old event)
        if ev.U > st.update_id + 1:
            self._gap(iid, item, f"U={ev.U} > last u+1={st.update_id + 1}")
            return
        self.apply_levels(iid, levels, item[3])
        st.update_id = ev.u
        self.check_crossed(iid)

    def _gap(self, iid: int, item: tuple, why: str) -> None:
        self.stats[iid].gaps += 1
        self.set_status(iid, Status.GAP, why)
        self.resync(iid, why)
        self._sync[iid].buffer.append(item)  # the event after the gap is the first of the next sync

    def resync(self, iid: int, why: str) -> None:
        """Forget the book's sync point and fetch a new snapshot (gap, crossed book, bad frame)."""
        st = self._sync[iid]
        self.stats[iid].resyncs += 1
        self.set_status(iid, Status.RESYNCING, why)
        st.update_id = None
        st.buffer.clear()
        self._fetch(iid, self.last_ts)

    def _on_trade(self, t: TradeMsg) -> None:
        iid = self._iid.get(t.s)
        if iid is None:
            return
        inst = self.registry[iid]
        side = -1 if t.m else 1
        self.trade(iid, side, fx(t.p, inst.price_scale), fx(t.q, inst.size_scale), t.t or t.a, t.T * 1_000_000)

    # -- REST ---------------------------------------------------------------------------------
    def on_rest(self, url: str, body: bytes, ts: int) -> None:
        iid = self._url_iid.get(url)
        if iid is None:
            log.warning("binance: REST body for an unknown url %s", url)
            return
        st = self._sync[iid]
        st.fetching = False
        try:
            snap = self._snapshot.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            try:  # Binance's own error body says more than the decode failure
                err = msgspec.json.decode(body, type=RestError)
                e = f"Binance error {err.code}: {err.msg}"
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
            self.bad_rest(iid, url, body, e)
            return  # on_timer fetches again after refetch_s
        if st.update_id is not None or not self.connected:
            return  # a late answer to a fetch we no longer need
        if st.buffer and snap.lastUpdateId < st.buffer[0][0]:
            self._fetch(iid, ts)  # the snapshot predates the first buffered event: too old
            return
        inst = self.registry[iid]
        try:
            if not 0 <= snap.lastUpdateId <= INT64_MAX:
                raise ValueError(f"lastUpdateId {snap.lastUpdateId}")
            self.apply_snapshot(iid, _levels(snap.bids, inst), _levels(snap.asks, inst), 0)
        except ValueError as e:
            self.bad_rest(iid, url, body, e)
            return
        last = st.update_id = snap.lastUpdateId
        buffered, st.buffer = st.buffer, []
        for i, (U, u, levels, exch_ts) in enumerate(buffered):
            if u <= st.update_id:
                continue
            if U > st.update_id + 1:
                self._gap(iid, buffered[i], f"event U={U} after snapshot {last} (applied to {st.update_id})")
                st.buffer += buffered[i + 1 :]  # still needed after the next snapshot
                return
            self.apply_levels(iid, levels, exch_ts)
            st.update_id = u
        if not self.check_crossed(iid):
            self.set_status(iid, Status.SYNCED, f"snapshot {last}")


def _levels(rows: Levels, inst) -> list[tuple[int, int]]:
    ps, ss = inst.price_scale, inst.size_scale
    return [(fx(p, ps), fx(q, ss)) for p, q in rows]
