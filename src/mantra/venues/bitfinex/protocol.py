"""Bitfinex market data over WebSocket v2, sans-IO: aggregated ``book`` (P0..P4) and ``trades``.

(../shared/research/exchanges.md 3.1-3.3.)  On connect we send ``conf`` with ``SEQ_ALL`` (every
message of the connection carries a sequence number that grows by 1) and ``OB_CHECKSUM`` (a
``[chan,"cs",crc]`` frame after each book change), then subscribe.  Which flags are in force is
read from the venue's ``conf`` answer, so a recording made with other flags replays correctly.

* Book entries ``[PRICE, COUNT, AMOUNT]``: COUNT > 0 sets the level (AMOUNT > 0 bid, < 0 ask);
  COUNT = 0 deletes it (AMOUNT 1 bid, -1 ask).  The first data message after ``subscribed`` is the
  snapshot; later array-of-arrays messages are bulk updates (``BULK_UPDATES`` flag).
* A sequence number other than last + 1 is a gap on the connection: every book is flagged GAP
  and resubscribed (unsubscribe, then subscribe when the venue confirms).
* Checksum: signed CRC32 of ``bid0.price:bid0.amount:ask0.price:ask0.amount:...`` over the top 25
  per side, numbers in JavaScript's form.  The venue's own number text is kept per level for this
  (prices in exponent form written out in fixed notation, as the venue's reference code does).
* Other flags: fields are read from the front of each array and the sequence number from its end,
  so a trailing timestamp (``TIMESTAMP``) is ignored; ``BULK_UPDATES`` is handled as above.
* Info codes: 20051 -> Reconnect; 20060 -> books untrusted (maintenance); 20061 -> resubscribe all.
* Trades: ``te`` is emitted, ``tu`` only if its id was not seen; the snapshot of a resubscription
  emits only the trades newer than the last one seen.

Prices and amounts are JSON numbers, read as their exact text (never float).  The frames are
decoded untyped, so every field is type-checked where it is read: ids, counts, times and sequence
numbers must be ints (not bools, not text), entries arrays of the right length.

Stale watchdog: an idle channel sends ``hb`` only after 15 s, so after ``probe_after_s`` of silence
we send ``ping`` (answered by ``pong`` at once); no frame at all for ``stale_after_s`` is a stall.
"""

from __future__ import annotations

import json
import logging
import zlib

import msgspec

from ...fixed import from_fixed
from ...fixed import to_fixed as fx
from ..base import INT64_MAX, VenueProtocol
from ..events import Reconnect, Send, Side, Status
from .instruments import PRICE_SCALE, SIZE_SCALE, split_pair

log = logging.getLogger(__name__)

BID, ASK = int(Side.BID), int(Side.ASK)
PUBLIC_URL = "wss://api-pub.bitfinex.com/ws/2"
SEQ_ALL = 65536
OB_CHECKSUM = 131072
TIMESTAMP = 32768
BULK_UPDATES = 536870912
LENGTHS = (1, 25, 100, 250)
CHECKSUM_LEVELS = 25
_MAX_MS = INT64_MAX // 1_000_000  # trade times go out as ns


def checksum_string(bids: list[str], asks: list[str]) -> str:
    """Interleave ``"price:amount"`` fragments (best first) as bid0, ask0, bid1, ... skipping missing ones."""
    n = min(len(bids), len(asks))
    parts = [""] * (2 * n)
    parts[0::2] = bids[:n]  # slice assignment: the interleave happens in C
    parts[1::2] = asks[:n]
    parts += bids[n:] or asks[n:]
    return ":".join(parts)


def signed_crc32(text: str) -> int:
    z = zlib.crc32(text.encode())
    return z - 0x100000000 if z >= 0x80000000 else z


def _txt(v) -> str:
    # JSON numbers arrive as their text (float_hook=str), integers as int; anything else (a bool,
    # a list) becomes text that to_fixed refuses.
    return v if type(v) is str else str(v)


def _plain(text: str) -> bool:
    """A JSON number's text as ``fixed.from_fixed`` writes its value (no exponent, no trailing zero
    after a point): what ``Book.bitfinex_checksum`` hashes in place of the venue's own text."""
    return not ("e" in text or "E" in text or (text[-1] == "0" and "." in text))


def _trade_ok(t) -> None:
    """``[ID, MTS, AMOUNT, PRICE]``: ints checked before use (a text MTS times 10**6 is a huge string)."""
    if (type(t) is not list or len(t) < 4 or type(t[0]) is not int or type(t[1]) is not int
            or not 0 <= t[1] <= _MAX_MS):
        raise ValueError(f"trade {t!r} is not [ID, MTS, AMOUNT, PRICE]")


class BitfinexProtocol(VenueProtocol):
    venue = "bitfinex"
    default_depth = 25
    stale_after_s = 5.0  # the probe is answered at once, however quiet the channels
    probe_after_s = 2.0
    resync_timeout_s = 15.0

    def __init__(self, registry, symbols, depth: int | None = None, *, trades: bool = True,
                 checksum: bool = True, prec: str = "P0", freq: str = "F0", url: str = PUBLIC_URL):
        super().__init__(registry, symbols, depth)
        if self.depth not in LENGTHS:
            raise ValueError(f"Bitfinex book length must be one of {LENGTHS}, not {self.depth}")
        if prec not in ("P0", "P1", "P2", "P3", "P4"):
            raise ValueError(f"aggregated book precision P0..P4 expected, not {prec!r}")
        self.trades = trades
        self.checksum = checksum
        self.prec, self.freq, self.url = prec, freq, url
        self._iid = {self.registry[i].symbol: i for i in self.books}
        self._scales = {i: (self.registry[i].price_scale, self.registry[i].size_scale) for i in self.books}
        self._chan: dict[int, tuple[str, int]] = {}  # chanId -> ("book" | "trades", iid)
        self._book_chan: dict[int, int] = {}  # iid -> book chanId
        self._await_snapshot: set[int] = set()  # chanIds whose next data message is the snapshot
        self._frag: dict[int, tuple[dict, dict]] = {i: ({}, {}) for i in self.books}  # checksum text per level
        # Prices per side whose venue text is not what from_fixed writes: while a book holds none,
        # its checksum is computed in C from the ints (Book.bitfinex_checksum), else from _frag.
        self._odd: dict[int, tuple[set, set]] = {i: (set(), set()) for i in self.books}
        # iid -> what a checksum reads, in one lookup (the sets are updated in place)
        self._cs = {i: (self.books[i], *self._scales[i], *self._odd[i]) for i in self.books}
        self._live: set[int] = set()
        self._resub: dict[int, tuple[str, int, int]] = {}  # old chanId -> (channel, iid, ts asked)
        self._last_trade: dict[int, int] = {}
        self._flags = 0
        self._seq: int | None = None
        self._cid = 0
        self._dec = msgspec.json.Decoder(float_hook=str)

    def default_spec(self, symbol: str) -> dict:
        base, quote = split_pair(symbol[1:] if symbol[:1] in ("t", "f") else symbol)
        return dict(base=base, quote=quote, price_scale=PRICE_SCALE, size_scale=SIZE_SCALE)

    # -- connection -------------------------------------------------------------------------
    def on_connect(self, ts: int) -> None:
        super().on_connect(ts)
        self._chan.clear()
        self._book_chan.clear()
        self._await_snapshot.clear()
        self._live.clear()
        self._resub.clear()
        self._flags = 0
        self._seq = None
        self._send({"event": "conf", "flags": SEQ_ALL | (OB_CHECKSUM if self.checksum else 0)})
        for iid in self.books:
            self._subscribe("book", iid)
        if self.trades:
            for iid in self.books:
                self._subscribe("trades", iid)

    def _subscribe(self, channel: str, iid: int) -> None:
        msg = {"event": "subscribe", "channel": channel, "symbol": self.registry[iid].symbol}
        if channel == "book":
            msg.update(prec=self.prec, freq=self.freq, len=str(self.depth))
        self._send(msg)

    def probe(self, ts: int) -> None:
        self._cid += 1
        self._send({"event": "ping", "cid": self._cid})

    def _send(self, msg: dict) -> None:
        self.events.append(Send(json.dumps(msg, separators=(",", ":"))))

    def _unsubscribe(self, chan: int) -> None:
        kind, iid = self._chan.pop(chan)
        if kind == "book":
            self._book_chan.pop(iid, None)
        self._await_snapshot.discard(chan)
        self._resub[chan] = (kind, iid, self.last_ts)
        self._send({"event": "unsubscribe", "chanId": chan})

    def resync(self, iid: int, why: str) -> None:
        """Unsubscribe the book's channel; the confirmation triggers a new subscription (and snapshot)."""
        self.stats[iid].resyncs += 1
        self.set_status(iid, Status.RESYNCING, why)
        self._live.discard(iid)
        chan = self._book_chan.get(iid)
        if chan is not None and self.connected:
            self._unsubscribe(chan)
        # else: not subscribed (yet); its coming snapshot resynchronises it

    def on_timer(self, ts: int) -> None:
        super().on_timer(ts)
        if self._resub and self.connected:
            if ts - min(t for _, _, t in self._resub.values()) > self.resync_timeout_s * 1_000_000_000:
                self._resub.clear()
                self.events.append(Reconnect(f"bitfinex: resubscribe unanswered for {self.resync_timeout_s:.0f} s"))

    # -- frames -----------------------------------------------------------------------------
    def handle(self, data, ts: int) -> None:
        m = self._dec.decode(data)
        if type(m) is dict:
            self._event(m)
            return
        if type(m) is not list or len(m) < 2 or type(m[0]) is not int:
            raise ValueError("not a channel message")
        # Until the channel is known, an unreadable message may have been any live book's.
        self._busy = self._live
        flags = self._flags
        if flags & SEQ_ALL:
            seq = m[-1]
            if type(seq) is not int or not 0 <= seq <= INT64_MAX:
                raise ValueError("sequence number missing")
            last = self._seq
            self._seq = seq
            if last is not None and seq != last + 1:
                self._gap(f"sequence {seq} after {last}")
        body = m[1]
        if type(body) is str:
            if body == "hb":
                return
            sub = self._chan.get(m[0])
            if sub is None:
                return
            self._busy = sub[1] if sub[0] == "book" else None
            if body == "cs":
                if sub[0] == "book":
                    self._verify(sub[1], m[2])
            elif body == "te" or body == "tu":
                if sub[0] == "trades":
                    self._trade(sub[1], m[2], body == "te")
            else:
                raise ValueError(f"unknown message {body[:20]!r}")
            return
        sub = self._chan.get(m[0])
        if sub is None:
            if not 0 <= m[0] <= INT64_MAX:
                raise ValueError(f"channel id {m[0]}")
            return  # a channel we did not ask for (or are leaving)
        kind, iid = sub
        self._busy = iid if kind == "book" else None
        if type(body) is not list:
            raise ValueError("channel message body is neither text nor an array")
        if kind == "book":
            if m[0] in self._await_snapshot:
                self._await_snapshot.discard(m[0])
                self._snapshot(iid, body)
            elif iid in self._live:
                self._update(iid, body if body and type(body[0]) is list else (body,))
        elif kind == "trades":
            if body and type(body[0]) is list:
                self._trade_snapshot(iid, body)
            elif body:
                self._trade(iid, body, True)

    def _entry(self, e, ps: int, ss: int):
        """``[PRICE, COUNT, AMOUNT]`` -> (side, price, size, checksum fragment or None, whether the
        fragment is not what ``Book.bitfinex_checksum`` writes)."""
        if type(e) is not list or len(e) != 3:
            raise ValueError(f"book entry {e!r} is not [PRICE, COUNT, AMOUNT]")
        ptxt, count, atxt = e
        if type(count) is not int or not 0 <= count <= INT64_MAX:
            raise ValueError(f"book entry count {count!r}")
        ptxt, atxt = _txt(ptxt), _txt(atxt)
        price = fx(ptxt, ps)
        if count == 0:
            if atxt == "1":
                return BID, price, 0, None, False
            if atxt == "-1":
                return ASK, price, 0, None, False
            raise ValueError(f"delete with amount {atxt!r}")
        if atxt[0] == "-":
            side, size = ASK, fx(atxt[1:], ss)
        else:
            side, size = BID, fx(atxt, ss)
        if size == 0 or price <= 0:
            raise ValueError(f"level {e!r} has no size or price")
        if "e" in ptxt or "E" in ptxt:
            ptxt = from_fixed(price, ps)  # the reference checksum writes prices in fixed notation
        return side, price, size, f"{ptxt}:{atxt}", not (_plain(ptxt) and _plain(atxt))

    def _snapshot(self, iid: int, rows: list) -> None:
        ps, ss = self._scales[iid]
        bids, asks = [], []
        fb, fa = {}, {}
        ob, oa = set(), set()
        for e in rows:
            side, price, size, frag, odd = self._entry(e, ps, ss)
            if size:
                if side == BID:
                    bids.append((price, size))
                    fb[price] = frag
                else:
                    asks.append((price, size))
                    fa[price] = frag
                if odd:
                    (ob if side == BID else oa).add(price)
        self._frag[iid] = (fb, fa)
        odd_b, odd_a = self._odd[iid]
        odd_b.clear()
        odd_b.update(ob)
        odd_a.clear()
        odd_a.update(oa)
        ob, oa = odd_b, odd_a
        for side, price in self.apply_snapshot(iid, bids, asks, 0):
            (fb if side == BID else fa).pop(price, None)
            (ob if side == BID else oa).discard(price)
        if not self.check_crossed(iid):
            self._live.add(iid)
            self.set_status(iid, Status.SYNCED, "snapshot")

    def _update(self, iid: int, rows) -> None:
        ps, ss = self._scales[iid]
        fb, fa = self._frag[iid]
        ob, oa = self._odd[iid]
        levels = []
        for e in rows:
            side, price, size, frag, odd = self._entry(e, ps, ss)
            levels.append((side, price, size))
            if side == BID:
                f, o = fb, ob
            else:
                f, o = fa, oa
            if size:
                f[price] = frag
            else:
                f.pop(price, None)
            if odd:
                o.add(price)
            elif o:
                o.discard(price)
        for side, price in self.apply_levels(iid, levels, 0):
            (fb if side == BID else fa).pop(price, None)
            (ob if side == BID else oa).discard(price)
        self.check_crossed(iid)

    def _gap(self, why: str) -> None:
        # The lost message may have belonged to any book channel, its snapshot included.
        for iid in list(self._book_chan):
            self.stats[iid].gaps += 1
            self.set_status(iid, Status.GAP, why)
            self.resync(iid, why)

    # -- checksum ---------------------------------------------------------------------------
    def book_checksum(self, iid: int) -> int:
        """The book's checksum: in C from its ints (``Book.bitfinex_checksum``) while every level's
        venue text is what that writes, else from the venue's text (``checksum_reference``)."""
        book, ps, ss, ob, oa = self._cs[iid]
        if ob or oa:
            return self.checksum_reference(iid)
        return book.bitfinex_checksum(ps, ss)

    def checksum_reference(self, iid: int) -> int:
        """The checksum from the venue's own text of each of the top 25 levels per side."""
        book = self.books[iid]
        fb, fa = self._frag[iid]
        top_b = book.top_prices(BID, CHECKSUM_LEVELS)
        top_a = book.top_prices(ASK, CHECKSUM_LEVELS)
        return signed_crc32(checksum_string([fb[p] for p in top_b], [fa[p] for p in top_a]))

    def _verify(self, iid: int, expected) -> None:
        if iid not in self._live:
            return  # no snapshot yet (or being resynchronised): nothing to compare
        if type(expected) is not int:
            raise ValueError(f"checksum {expected!r} is not an integer")
        got = self.book_checksum(iid) if self.checksum_timer is None else self.timed(iid, self.book_checksum, iid)
        st = self.stats[iid]
        if got == expected:
            st.checksum_ok += 1
            return
        st.checksum_failed += 1
        why = f"checksum {got} != {expected}"
        self.set_status(iid, Status.CHECKSUM, why)
        self.resync(iid, why)

    # -- trades -----------------------------------------------------------------------------
    def _trade(self, iid: int, t: list, executed: bool) -> None:
        _trade_ok(t)
        tid = t[0]
        last = self._last_trade.get(iid, 0)
        if tid == last or (not executed and tid < last):
            return  # the "tu" of a "te" already emitted
        ps, ss = self._scales[iid]
        atxt = _txt(t[2])
        neg = atxt[:1] == "-"
        size = fx(atxt[1:] if neg else atxt, ss)
        self.trade(iid, ASK if neg else BID, fx(_txt(t[3]), ps), size, tid, t[1] * 1_000_000)
        if tid > last:
            self._last_trade[iid] = tid

    def _trade_snapshot(self, iid: int, rows: list) -> None:
        for r in rows:
            _trade_ok(r)
        last = self._last_trade.get(iid)
        if last is None:
            self._last_trade[iid] = max(r[0] for r in rows)  # history before we came: not re-emitted
            return
        for r in sorted((r for r in rows if r[0] > last), key=lambda r: r[0]):
            self._trade(iid, r, True)

    # -- events -----------------------------------------------------------------------------
    def _event(self, m: dict) -> None:
        ev = m.get("event")
        if type(ev) is not str:
            raise ValueError(f"event {ev!r}")
        if ev == "subscribed":
            iid = self._iid.get(m.get("symbol", ""))
            chan = m.get("chanId")
            if iid is None or type(chan) is not int:
                return
            kind = m.get("channel")
            if kind == "book":
                self._chan[chan] = ("book", iid)
                self._book_chan[iid] = chan
                self._await_snapshot.add(chan)
            elif kind == "trades":
                self._chan[chan] = ("trades", iid)
        elif ev == "unsubscribed":
            old = self._resub.pop(m.get("chanId"), None)
            if old is not None:
                self._subscribe(old[0], old[1])
        elif ev == "conf":
            if m.get("status", "OK") == "OK" and "flags" in m:
                if type(m["flags"]) is not int:
                    raise ValueError(f"conf flags {m['flags']!r}")
                self._flags = m["flags"]
                if self._flags & TIMESTAMP and self._flags & SEQ_ALL:
                    # No recording shows where the timestamp goes then; the venue's SDK reads seq last.
                    log.warning("bitfinex: TIMESTAMP with SEQ_ALL: sequence numbers assumed to come last")
            else:
                log.warning("bitfinex: conf refused: %s", m)
        elif ev == "info":
            self._info(m)
        elif ev == "error":
            log.warning("bitfinex: error %s: %s", m.get("code"), m.get("msg"))
        # pong and others: nothing to do

    def _info(self, m: dict) -> None:
        code = m.get("code")
        platform = m.get("platform") or {}
        if type(platform) is not dict:
            raise ValueError(f"info platform {platform!r}")
        if code == 20051:
            for iid in self.books:
                self.stats[iid].resyncs += 1
                self._live.discard(iid)
                self.set_status(iid, Status.RESYNCING, "venue restarts its server (20051)")
            self.events.append(Reconnect("bitfinex: server restart (20051)"))
        elif code == 20060 or platform.get("status") == 0:
            for iid in self.books:
                self._live.discard(iid)
                self.set_status(iid, Status.RESYNCING, "venue maintenance (20060)")
        elif code == 20061:
            for iid in self.books:
                self.stats[iid].resyncs += 1
                self.set_status(iid, Status.RESYNCING, "maintenance ended (20061)")
            for chan in list(self._chan):
                self._unsubscribe(chan)
