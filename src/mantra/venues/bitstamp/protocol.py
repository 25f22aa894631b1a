"""Bitstamp market data, sans-IO: REST snapshot + ``diff_order_book_<pair>``, ``live_trades_<pair>``.

Bitstamp sends no sequence numbers (../shared/research/exchanges.md 5.2), so:

* Sync: subscribe, and once ``bts:subscription_succeeded`` confirms the diff channel (diffs are then
  being buffered) GET ``/api/v2/order_book/<pair>/``.  Buffered diffs not newer than the
  snapshot's ``microtimestamp`` are dropped, the rest applied; afterwards a diff not newer than the
  last applied one is dropped (microtimestamps compared as integers).
* Gaps cannot be seen, so the book is audited: every ``audit_s`` seconds (``on_timer``) the snapshot
  is fetched again and compared with the local book *at the same point*: diffs received since the
  fetch that are newer than the snapshot are replayed onto it, and if the local book is still behind
  the snapshot the comparison waits for the first diff past it (or the next timer tick).  Every
  level down to the snapshot's deepest is compared; local levels beyond it cannot be checked and are
  dropped (deletions emitted).  A difference counts as ``checksum_failed`` (status CHECKSUM) and
  the fresh book replaces the local one; agreement counts as ``checksum_ok``.
* Trust: SYNCED after a snapshot or an audit that agreed; the first diff applied after it makes the
  book UNVERIFIED (a lost diff would not show) until the next audit agrees.
* Stale watchdog: a quiet pair sends nothing and the venue has no server heartbeat, so after
  ``probe_after_s`` of silence we send ``bts:heartbeat`` (answered at once); no frame at all for
  ``stale_after_s`` is a stalled feed.
* ``bts:request_reconnect`` asks for a ``Reconnect``.
"""

from __future__ import annotations

import json
import logging

import msgspec

from ...book import L2Book
from ...fixed import side_rows as _rows
from ...fixed import to_fixed as fx
from ..base import INT64_MAX, VenueProtocol, check_levels
from ..events import Fetch, Reconnect, Send, Side, Status

BID, ASK = int(Side.BID), int(Side.ASK)
_SYNCED, _UNVERIFIED = Status.SYNCED, Status.UNVERIFIED
_MAX_MICRO = INT64_MAX // 1000  # microtimestamps go out as ns
HEARTBEAT = json.dumps({"event": "bts:heartbeat"})

log = logging.getLogger(__name__)

WS_URL = "wss://ws.bitstamp.net"
REST_URL = "https://www.bitstamp.net"

Levels = list[tuple[str, str]]


class BookData(msgspec.Struct):
    """Body of a ``diff_order_book`` frame and of the REST snapshot alike."""

    microtimestamp: str
    bids: Levels
    asks: Levels
    timestamp: str = ""


class TradeData(msgspec.Struct):
    id: int
    amount_str: str
    price_str: str
    type: int  # taker side: 0 buy, 1 sell
    microtimestamp: str = "0"


# The two hot frame kinds decode in one pass, by their "event"; anything else falls back to Frame.
class DataFrame(msgspec.Struct, tag="data", tag_field="event"):
    channel: str
    data: BookData


class TradeFrame(msgspec.Struct, tag="trade", tag_field="event"):
    channel: str
    data: TradeData


class Frame(msgspec.Struct):
    event: str
    channel: str = ""
    data: msgspec.Raw = msgspec.Raw()

class _Sync:
    __slots__ = ("micro", "buffer", "fetching", "fetched_at", "audit", "audit_at", "audit_due")

    def __init__(self) -> None:
        self.micro: int | None = None  # microtimestamp of the last applied state; None until synced
        self.buffer: list[tuple[int, list]] | None = None  # (micro, levels) of diffs since a fetch
        self.fetching = False
        self.fetched_at = 0
        self.audit: tuple[L2Book, int] | None = None  # fresh book waiting for the local one to catch up
        self.audit_at = 0  # ts the audit snapshot arrived
        self.audit_due = 0  # ts of the next audit


class BitstampProtocol(VenueProtocol):
    venue = "bitstamp"
    stale_after_s = 5.0  # the probe is answered at once, however quiet the pairs
    probe_after_s = 2.0

    def __init__(
        self,
        registry,
        symbols,
        depth: int | None = None,
        *,
        audit_s: float = 60.0,
        refetch_s: float = 10.0,
        trades: bool = True,
        ws_url: str = WS_URL,
        rest_url: str = REST_URL,
        max_buffer: int = 10_000,
    ):
        super().__init__(registry, symbols, depth)
        self.url = ws_url
        self.audit_ns = int(audit_s * 1e9)
        self.refetch_ns = int(refetch_s * 1e9)
        self.trades = trades
        self.max_buffer = max_buffer
        self._book_iid = {}  # "diff_order_book_btcusd" -> iid
        self._trade_iid = {}  # "live_trades_btcusd" -> iid
        self._url_iid = {}
        self._snap_url = {}
        self._sync = {}
        for iid in self.books:
            pair = self.registry[iid].symbol.lower()
            self._book_iid[f"diff_order_book_{pair}"] = iid
            self._trade_iid[f"live_trades_{pair}"] = iid
            url = f"{rest_url}/api/v2/order_book/{pair}/"
            self._url_iid[url] = iid
            self._snap_url[iid] = url
            self._sync[iid] = _Sync()
        # (price_scale, size_scale) per instrument, looked up once per message
        self._scales = {i: (self.registry[i].price_scale, self.registry[i].size_scale) for i in self.books}
        self._hot = msgspec.json.Decoder(DataFrame | TradeFrame)
        self._frame = msgspec.json.Decoder(Frame)
        self._book = msgspec.json.Decoder(BookData)

    def default_spec(self, symbol: str) -> dict:
        # Without pair metadata: Bitstamp writes at most 8 decimals for prices and amounts.
        return dict(price_scale=8, size_scale=8)

    # -- connection ---------------------------------------------------------------------------
    def on_connect(self, ts: int) -> None:
        super().on_connect(ts)
        channels = list(self._book_iid) + (list(self._trade_iid) if self.trades else [])
        for ch in channels:
            self.events.append(Send(json.dumps({"event": "bts:subscribe", "data": {"channel": ch}})))
        for st in self._sync.values():
            st.micro = None
            st.buffer = []  # buffer from the start: the subscription may be confirmed late
            st.fetching = False
            st.audit = None

    def on_timer(self, ts: int) -> None:
        super().on_timer(ts)
        if not self.connected:
            return
        for iid, st in self._sync.items():
            if st.audit is not None and ts > st.audit_at:
                self._compare(iid, *st.audit)  # no diff past the snapshot came: compare as we are
            elif st.fetching:
                if ts - st.fetched_at >= self.refetch_ns:
                    self._fetch(iid, ts)  # lost or failed answer
            elif st.micro is not None and self.audit_ns and ts >= st.audit_due:
                self._fetch(iid, ts)

    def probe(self, ts: int) -> None:
        self.events.append(Send(HEARTBEAT))

    def _fetch(self, iid: int, ts: int) -> None:
        st = self._sync[iid]
        st.fetching = True
        st.fetched_at = ts
        if st.buffer is None:
            st.buffer = []
        self.events.append(Fetch(self._snap_url[iid]))

    def resync(self, iid: int, why: str) -> None:
        st = self._sync[iid]
        self.stats[iid].resyncs += 1
        self.set_status(iid, Status.RESYNCING, why)
        st.micro = None
        st.audit = None
        st.buffer = []
        self._fetch(iid, self.last_ts)

    # -- frames -------------------------------------------------------------------------------
    def handle(self, data, ts: int) -> None:
        try:
            f = self._hot.decode(data)
        except msgspec.ValidationError:
            self._on_control(data, ts)
            return
        if type(f) is DataFrame:
            iid = self._book_iid.get(f.channel)
            if iid is not None:
                self._busy = iid  # a bad number: the book missed a change it cannot recover
                self._on_diff(iid, f.data, ts)
        else:
            iid = self._trade_iid.get(f.channel)
            if iid is not None:
                self._on_trade(iid, f.data)

    def _on_control(self, data, ts: int) -> None:
        f = self._frame.decode(data)
        ev = f.event
        if ev == "bts:subscription_succeeded":
            iid = self._book_iid.get(f.channel)
            if iid is not None and self._sync[iid].micro is None and not self._sync[iid].fetching:
                self._fetch(iid, ts)
        elif ev == "bts:request_reconnect":
            self.events.append(Reconnect("bitstamp bts:request_reconnect"))
        elif ev == "bts:error":
            log.warning("bitstamp error on %r: %s", f.channel, bytes(f.data).decode(errors="replace"))
        elif ev in ("data", "trade"):
            self._busy = self._book_iid.get(f.channel)
            raise ValueError(f"{ev} frame of an unexpected shape")

    def _on_diff(self, iid: int, d: BookData, ts: int) -> None:
        st = self._sync[iid]
        micro = int(d.microtimestamp)
        if not 0 <= micro <= _MAX_MICRO:
            raise ValueError(f"microtimestamp {d.microtimestamp!r}")
        levels = None
        if st.buffer is not None:  # a fetch is in flight: kept for on_rest, converted and checked now
            levels = _levels(d, *self._scales[iid])
            check_levels(levels)
            if len(st.buffer) >= self.max_buffer:
                st.buffer.clear()
                st.fetching = False
                if st.micro is None:
                    self._fetch(iid, ts)
            st.buffer.append((micro, levels))
        if st.micro is None:
            return
        if st.audit is not None and micro > st.audit[1]:
            self._compare(iid, *st.audit)  # the local book has reached the snapshot's point
            if st.micro is None:
                return
        if micro <= st.micro:
            return  # not newer than the state we hold
        if levels is None:
            ps, ss = self._scales[iid]
            levels = _rows(BID, d.bids, ps, ss)
            if d.asks:
                levels += _rows(ASK, d.asks, ps, ss)
        self.apply_levels(iid, levels, micro * 1000)
        st.micro = micro
        if not self.check_crossed(iid) and self.status[iid] is _SYNCED:
            self.set_status(iid, _UNVERIFIED, "diffs since the last audit")

    def _on_trade(self, iid: int, t: TradeData) -> None:
        if t.type != 0 and t.type != 1:
            raise ValueError(f"trade type {t.type}")
        inst = self.registry[iid]
        self.trade(iid, 1 if t.type == 0 else -1, fx(t.price_str, inst.price_scale), fx(t.amount_str, inst.size_scale),
                   t.id, _micro(t.microtimestamp) * 1000)

    # -- REST ---------------------------------------------------------------------------------
    def on_rest(self, url: str, body: bytes, ts: int) -> None:
        iid = self._url_iid.get(url)
        if iid is None:
            log.warning("bitstamp: REST body for an unknown url %s", url)
            return
        st = self._sync[iid]
        if not st.fetching:
            return  # an answer nobody is waiting for
        ps, ss = self._scales[iid]
        try:
            snap = self._book.decode(body)
            micro = _micro(snap.microtimestamp)
            levels = _rows(BID, snap.bids, ps, ss) + _rows(ASK, snap.asks, ps, ss)
            check_levels(levels)
            fresh = L2Book(self.depth)
            for side, p, q in levels:
                fresh.apply(side, p, q)
            # Replay the diffs that arrived since the fetch and are newer than the snapshot.
            at = micro
            for m, levels in st.buffer or ():
                if m > at:
                    for side, p, q in levels:
                        fresh.apply(side, p, q)
                    at = m
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
            self.bad_rest(iid, url, body, e)
            return  # still fetching: on_timer asks again after refetch_s
        st.fetching = False
        st.buffer = None
        st.audit_due = ts + self.audit_ns
        if st.micro is None:
            self._install(iid, fresh, at, f"snapshot {micro}")
        elif st.micro >= at:
            self._compare(iid, fresh, at)
        else:
            st.audit = (fresh, at)  # local book is behind the snapshot: compare once it catches up
            st.audit_at = ts

    def _install(self, iid: int, fresh: L2Book, micro: int, why: str) -> None:
        self.apply_snapshot(iid, fresh.levels(Side.BID), fresh.levels(Side.ASK), micro * 1000)
        self._sync[iid].micro = micro
        if not self.check_crossed(iid):
            self.set_status(iid, Status.SYNCED, why)

    def _compare(self, iid: int, fresh: L2Book, micro: int) -> None:
        st = self._sync[iid]
        st.audit = None
        local = self.books[iid]
        beyond = _audit(local, fresh, self.depth)
        if beyond is None:
            self.stats[iid].checksum_failed += 1
            self.set_status(iid, Status.CHECKSUM, "local book differs from the REST snapshot")
            self.stats[iid].resyncs += 1
            self._install(iid, fresh, max(micro, st.micro or 0), "replaced by the REST snapshot")
            return
        self.stats[iid].checksum_ok += 1
        if beyond:  # deeper than the snapshot reaches: cannot be checked, so not kept
            log.info("bitstamp %s: %d levels beyond the audit snapshot dropped", self.registry[iid].symbol, len(beyond))
            self.apply_levels(iid, [(side, p, 0) for side, p in beyond], (st.micro or 0) * 1000)
        if self.status[iid] is _UNVERIFIED:
            self.set_status(iid, _SYNCED, "audit agrees")


def _audit(local: L2Book, fresh: L2Book, depth: int) -> list[tuple[int, int]] | None:
    """Compare ``local`` with the snapshot ``fresh`` down to the snapshot's deepest level (or
    ``depth``).  ``None`` if they differ there, else the local ``(side, price)`` levels beyond it."""
    beyond = []
    for side in (BID, ASK):
        n = len(fresh.bids if side == BID else fresh.asks)
        if depth:
            n = min(n, depth)
        want = fresh.top(side, n)
        mine = local.top(side, n)
        if mine != want:
            return None
        prices = local.top_prices(side, len(local.bids if side == BID else local.asks))
        beyond += [(side, p) for p in prices[n:]]
    return beyond


def _levels(d: BookData, ps: int, ss: int) -> list:
    levels = _rows(BID, d.bids, ps, ss)
    if d.asks:
        levels += _rows(ASK, d.asks, ps, ss)
    return levels


def _micro(text: str) -> int:
    """A microtimestamp string -> int, within what its ns form can hold."""
    m = int(text)
    if not 0 <= m <= _MAX_MICRO:
        raise ValueError(f"microtimestamp {text!r}")
    return m
