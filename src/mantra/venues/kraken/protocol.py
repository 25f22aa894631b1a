"""Kraken spot market data, sans-IO: ``book`` and ``trade`` over WebSocket v2 or v1.

Both versions: the venue sends a book snapshot, then updates; a level of size 0 is deleted; after
every message each side is truncated to the subscribed depth (Kraken sends no delete for a level
pushed out of scope); then a CRC32 over the top 10 levels (asks ascending, then bids descending,
each price and quantity written with the pair's full precision, ``.`` and leading zeros removed)
must equal the message's checksum (../shared/research/exchanges.md 2.3, 2.6).  A mismatch sets
CHECKSUM and resubscribes the book (unsubscribe, then subscribe once the venue confirms).

* v2 (``version=2``, ``wss://ws.kraken.com/v2``): JSON objects, prices and quantities are JSON
  numbers, read as their exact text.  The pair precisions come from the registry, or else from the
  ``instrument`` channel, which is then subscribed first; books are subscribed once it answered.
  Snapshots carry a checksum too.
* v1 (``version=1``, ``wss://ws.kraken.com``): arrays ``[channelID, payload..., channelName, pair]``,
  quoted decimal strings with full precision; snapshots ``as``/``bs`` carry no checksum, updates
  ``a``/``b`` (one or two objects, the last holding ``c``).  A level's optional 4th element ``"r"``
  (republished) is applied like any other.  Precisions missing from the registry are learned from
  the strings of the first snapshot (or trade).

Incoming frames of either version are understood whatever ``version`` says (a recording replays
the same); ``version`` chooses what is sent.  Symbols use the version's own names (v1 ``XBT/USD``,
v2 ``BTC/USD``).
"""

from __future__ import annotations

import json
import logging
import zlib
from datetime import datetime, timezone

import msgspec

from ...fixed import decimals_of
from ...fixed import to_fixed as fx
from ..base import VenueProtocol
from ..events import Reconnect, Send, Side, Status
from .instruments import spec_from_v2_pair

log = logging.getLogger(__name__)

BID, ASK = int(Side.BID), int(Side.ASK)
V1_URL = "wss://ws.kraken.com"
V2_URL = "wss://ws.kraken.com/v2"
DEPTHS = (10, 25, 100, 500, 1000)
CHECKSUM_LEVELS = 10
_POW10 = [10**i for i in range(40)]


def side_text(book, side: int, pdiv: int = 1, sdiv: int = 1) -> tuple[bytes, int | None]:
    """One side's part of Kraken's checksum text, and the price of its 10th level (None if fewer).

    Ints at the pair's precision (divisors 1) are exactly the digits Kraken hashes: the written
    number without its ``.`` and leading zeros.
    """
    d = book.asks if side == ASK else book.bids
    top = book.top_prices(side, CHECKSUM_LEVELS)
    if pdiv == 1 and sdiv == 1:
        text = "".join([f"{p}{d[p]}" for p in top])
    else:
        text = "".join([f"{p // pdiv}{d[p] // sdiv}" for p in top])
    return text.encode(), (top[-1] if len(top) == CHECKSUM_LEVELS else None)


def book_checksum(book, pdiv: int = 1, sdiv: int = 1) -> int:
    """Kraken's CRC32 of a book: asks ascending, then bids descending, top 10 each.

    The reference for ``Book.kraken_checksum(pdiv, sdiv)``, which the protocol uses (in C)."""
    return zlib.crc32(side_text(book, BID, pdiv, sdiv)[0], zlib.crc32(side_text(book, ASK, pdiv, sdiv)[0]))


def _v1_time(text: str) -> int:
    """``"1534614248.456738"`` -> ns, exactly (beyond 9 decimals, cut)."""
    if type(text) is not str:
        raise ValueError(f"time {text!r} is not a string")
    if len(text) > 7 and text[-7] == "." and text[0] != "-":  # the usual microseconds: in C
        return fx(text, 9)
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


_second_cache: dict[str, int] = {}


def _rfc3339(text: str) -> int:
    """``"2023-10-06T17:35:55.440295Z"`` -> ns since the epoch (UTC), without float.

    The whole-second prefix is parsed once and remembered: one message after another shares it.
    """
    if type(text) is not str or len(text) < 20 or text[-1] != "Z":
        raise ValueError(f"not an RFC3339 UTC time: {text!r}")
    key = text[:19]
    base = _second_cache.get(key)
    if base is None:
        d = datetime.strptime(key, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
        if len(_second_cache) > 10_000:
            _second_cache.clear()
        base = _second_cache[key] = int(d.timestamp()) * 1_000_000_000
    frac = text[20:-1]
    if text[19] == "." and frac.isdigit() and len(frac) <= 9:
        return base + int(frac) * _POW10[9 - len(frac)]
    if len(text) == 20:
        return base
    raise ValueError(f"not an RFC3339 UTC time: {text!r}")


def _txt(v) -> str:
    # JSON numbers arrive as their text (float_hook=str); integers as int.  Anything else (a bool,
    # a list) becomes text that to_fixed refuses.
    return v if type(v) is str else str(v)


_SEQ = (list, tuple)
_V1_OTHER = ("ticker", "spread", "ohlc")  # public v1 channels that are not ours to interpret
_TRADE_SIDE = {"b": BID, "s": ASK, "buy": BID, "sell": ASK}
_V1_UPDATE_SIDES = ((ASK, "a"), (BID, "b"))
_ABSENT = object()  # a key not there (a null one is malformed)


def _rows_ok(rows) -> None:
    """v1 levels and trades are arrays of arrays (indexing a string would read its characters)."""
    if type(rows) not in _SEQ or any(type(r) is not list for r in rows):
        raise ValueError("expected an array of arrays")


class KrakenProtocol(VenueProtocol):
    venue = "kraken"
    default_depth = 10
    stale_after_s = 5.0  # heartbeats come about once a second when nothing else does
    resync_timeout_s = 15.0  # an unanswered resubscribe ends in a reconnect

    def __init__(self, registry, symbols, depth: int | None = None, *, version: int = 2,
                 trades: bool = True, url: str | None = None):
        if version not in (1, 2):
            raise ValueError(f"version must be 1 or 2, not {version!r}")
        super().__init__(registry, symbols, depth)
        if self.depth not in DEPTHS:
            raise ValueError(f"Kraken book depth must be one of {DEPTHS}, not {self.depth}")
        self.version = version
        self.trades = trades
        self.url = url or (V2_URL if version == 2 else V1_URL)
        self._wanted = set(self.symbols)
        self._iid: dict[str, int] = {}  # symbol -> iid
        self._scales: dict[int, tuple[int, int]] = {}
        self._ck: dict[int, tuple[int, int]] = {}  # iid -> checksum divisors (scale - precision)
        self._prec: dict[str, tuple[int, int]] = {}  # v2 instrument channel: symbol -> precisions
        for iid in self.books:
            self._index(iid)
        self._live: set[int] = set()  # books holding a snapshot whose updates we apply
        self._resub: dict[str, int] = {}  # symbol -> ts an unsubscribe for a resync was sent
        self._waiting_instruments = False
        self._system = "online"
        self._req = 0
        self._dec = msgspec.json.Decoder(float_hook=str)

    # -- instruments ------------------------------------------------------------------------
    def default_spec(self, symbol: str) -> dict | None:
        return None  # precision unknown: registered from the instrument channel or the first strings

    def _index(self, iid: int) -> None:
        inst = self.registry[iid]
        self._iid[inst.symbol] = iid
        self._scales[iid] = (inst.price_scale, inst.size_scale)
        if inst.price_decimals >= 0 and inst.size_decimals >= 0:
            self._ck[iid] = (_POW10[inst.price_scale - inst.price_decimals], _POW10[inst.size_scale - inst.size_decimals])

    def _learn(self, symbol: str, prices: list[str], sizes: list[str]) -> int | None:
        """The iid of a wanted symbol, registering it if needed: with the precisions of the v2
        instrument channel, or else with the most decimals its first strings show (v1 strings all
        carry full precision; trimmed v2 numbers may fool the guess, which the checksum catches)."""
        iid = self._iid.get(symbol)
        if iid is not None or symbol not in self._wanted:
            return iid
        try:  # registered since we started (another connection sharing the registry, metadata)
            iid = self.track(self.registry.get(self.venue, symbol))
            self._index(iid)
            return iid
        except KeyError:
            pass
        prec = self._prec.get(symbol)
        if prec is None:
            if not prices or not sizes:
                return None
            prec = (max(map(decimals_of, prices)), max(map(decimals_of, sizes)))
        pd, qd = prec
        base, _, quote = symbol.partition("/")
        inst = self.registry.add(self.venue, symbol, base=base, quote=quote, price_scale=pd, size_scale=qd,
                                 price_decimals=pd, size_decimals=qd)
        iid = self.track(inst)
        self._index(iid)
        return iid

    def _checksum_divisors(self, iid: int, prices: list[str], sizes: list[str]) -> None:
        if iid in self._ck or not prices or not sizes:
            return
        # Registered elsewhere without precisions: the v2 instrument channel or the strings tell.
        ps, ss = self._scales[iid]
        pd, qd = self._prec.get(self.registry[iid].symbol) or (max(map(decimals_of, prices)), max(map(decimals_of, sizes)))
        if pd > ps or qd > ss:
            raise ValueError(f"precision {pd}/{qd} finer than the instrument's scales {ps}/{ss}")
        self._ck[iid] = (_POW10[ps - pd], _POW10[ss - qd])

    # -- connection -------------------------------------------------------------------------
    def on_connect(self, ts: int) -> None:
        super().on_connect(ts)
        self._live.clear()
        self._resub.clear()
        self._system = "online"
        if self.version == 2 and any(s not in self._iid or self._iid[s] not in self._ck for s in self.symbols):
            self._waiting_instruments = True
            self._send_v2("subscribe", {"channel": "instrument", "snapshot": True})
        else:
            self._subscribe_all()

    def _subscribe_all(self) -> None:
        self._waiting_instruments = False
        self._book_sub("subscribe", self.symbols)
        if self.trades:
            if self.version == 2:
                self._send_v2("subscribe", {"channel": "trade", "symbol": self.symbols, "snapshot": False})
            else:
                self._send({"event": "subscribe", "pair": self.symbols, "subscription": {"name": "trade"}})

    def _book_sub(self, method: str, symbols: list[str]) -> None:
        if self.version == 2:
            params = {"channel": "book", "symbol": symbols, "depth": self.depth}
            if method == "subscribe":
                params["snapshot"] = True
            self._send_v2(method, params)
        else:
            self._send({"event": method, "pair": symbols, "subscription": {"name": "book", "depth": self.depth}})

    def _send_v2(self, method: str, params: dict) -> None:
        self._req += 1
        self._send({"method": method, "params": params, "req_id": self._req})

    def _send(self, msg: dict) -> None:
        self.events.append(Send(json.dumps(msg, separators=(",", ":"))))

    def resync(self, iid: int, why: str) -> None:
        """Unsubscribe the book; the venue's confirmation triggers the new subscription (and snapshot)."""
        self.stats[iid].resyncs += 1
        self.set_status(iid, Status.RESYNCING, why)
        self._live.discard(iid)
        sym = self.registry[iid].symbol
        if sym not in self._resub and self.connected:
            self._resub[sym] = self.last_ts
            self._book_sub("unsubscribe", [sym])

    def _resubscribed(self, symbol: str) -> None:
        if self._resub.pop(symbol, None) is not None:
            self._book_sub("subscribe", [symbol])

    def on_timer(self, ts: int) -> None:
        super().on_timer(ts)
        if self._resub and self.connected:
            oldest = min(self._resub.values())
            if ts - oldest > self.resync_timeout_s * 1_000_000_000:
                self._resub.clear()
                self.events.append(Reconnect(f"kraken: resubscribe unanswered for {self.resync_timeout_s:.0f} s"))

    def _system_status(self, status: str) -> None:
        old, self._system = self._system, status
        if status == "maintenance" and old != status:
            for iid in self.books:
                self._live.discard(iid)
                self.set_status(iid, Status.RESYNCING, "venue in maintenance")
        elif old == "maintenance" and status != old:
            for iid in list(self.books):
                self.resync(iid, f"venue back from maintenance ({status})")

    # -- frames -----------------------------------------------------------------------------
    def handle(self, data, ts: int) -> None:
        m = self._dec.decode(data)
        if type(m) is list:
            self._v1_data(m, ts)
        elif type(m) is not dict:
            raise ValueError("neither an array nor an object")
        elif "channel" in m:
            self._v2_channel(m)
        elif "event" in m:
            self._v1_event(m)
        elif "method" in m:
            self._v2_method(m)
        else:
            raise ValueError("unknown message")

    # v1 ------------------------------------------------------------------------------------
    def _v1_data(self, m: list, ts: int) -> None:
        if len(m) < 4:
            raise ValueError("v1 array too short")
        name, pair = m[-2], m[-1]
        if type(name) is not str or type(pair) is not str:
            raise ValueError("v1 channel name or pair is not a string")
        if name == "trade":
            self._v1_trades(pair, m[1])
        elif name.startswith("book"):
            first = m[1]
            if type(first) is not dict:
                self._busy = self._iid.get(pair)
                raise ValueError("v1 book payload is not an object")
            if "as" in first or "bs" in first:
                self._v1_snapshot(pair, m)
            else:
                self._v1_update(pair, m)
        elif not name.startswith(_V1_OTHER):
            raise ValueError(f"unknown channel {name[:20]!r}")  # it may have been a book's update

    def _v1_snapshot(self, pair: str, m: list) -> None:
        asks = bids = ()
        for part in m[1:-2]:
            asks = part.get("as", asks)
            bids = part.get("bs", bids)
        _rows_ok(asks)
        _rows_ok(bids)
        prices = [r[0] for r in asks[:1]] + [r[0] for r in bids[:1]]
        sizes = [r[1] for r in asks[:1]] + [r[1] for r in bids[:1]]  # v1: every string has full precision
        iid = self._learn(pair, prices, sizes)
        if iid is None:
            return
        self._busy = iid
        ps, ss = self._scales[iid]
        self._checksum_divisors(iid, prices, sizes)
        b = [(fx(r[0], ps), fx(r[1], ss)) for r in bids]
        a = [(fx(r[0], ps), fx(r[1], ss)) for r in asks]
        stamps = [r[2] for r in bids] + [r[2] for r in asks]
        self.apply_snapshot(iid, b, a, _v1_time(max(stamps)) if stamps else 0)
        self._resub.pop(pair, None)
        if not self.check_crossed(iid):
            self._live.add(iid)
            self.set_status(iid, Status.SYNCED, "snapshot")

    def _v1_update(self, pair: str, m: list) -> None:
        iid = self._iid.get(pair)
        if iid is None or iid not in self._live:
            if pair not in self._wanted:  # the venue sends only what we subscribed to
                raise ValueError(f"update for a pair not subscribed: {pair[:20]!r}")
            return  # waiting for the snapshot of a (re)subscription
        self._busy = iid
        ps, ss = self._scales[iid]
        levels = []
        checksum = stamp = None
        # One object per changed side, [chan, {"a": [...]}, {"b": [...], "c": crc}, name, pair]: each
        # side's key looked up, not every key walked (most messages change one level of one side).
        for part in (m[1],) if len(m) == 4 else m[1:-2]:
            for side, key in _V1_UPDATE_SIDES:
                rows = part.get(key, _ABSENT)
                if rows is _ABSENT:
                    continue
                if type(rows) is not list:
                    raise ValueError(f"{key!r} is not an array")
                for r in rows:
                    if type(r) is not list:
                        raise ValueError(f"level {r!r} is not an array")
                    levels.append((side, fx(r[0], ps), fx(r[1], ss)))
                    stamp = r[2]
            if "c" in part:
                checksum = part["c"]
        self.apply_levels(iid, levels, _v1_time(stamp) if stamp else 0)
        if checksum is not None and not self._verify(iid, int(checksum)):
            return
        if self.books[iid].crossed():
            self.check_crossed(iid)

    def _v1_trades(self, pair: str, rows: list) -> None:
        if not rows:
            return
        _rows_ok(rows)
        iid = self._learn(pair, [rows[0][0]], [rows[0][1]])
        if iid is None:
            return
        ps, ss = self._scales[iid]
        for r in rows:
            side = _TRADE_SIDE.get(r[3]) if type(r[3]) is str else None
            if side is None:
                raise ValueError(f"trade side {r[3]!r}")
            self.trade(iid, side, fx(r[0], ps), fx(r[1], ss), 0, _v1_time(r[2]))

    def _v1_event(self, m: dict) -> None:
        ev = m["event"]
        if type(ev) is not str:
            raise ValueError(f"event {ev!r}")
        if ev == "heartbeat" or ev == "pong":
            return
        if ev == "systemStatus":
            self._system_status(m.get("status", ""))
        elif ev == "subscriptionStatus":
            sub = m.get("subscription") or {}
            status, pair = m.get("status"), m.get("pair", "")
            if status == "unsubscribed" and sub.get("name") == "book":
                self._resubscribed(pair)
            elif status == "error":
                log.warning("kraken: subscription error for %s: %s", pair, m.get("errorMessage"))
        elif ev == "error":
            log.warning("kraken: error event: %s", m.get("errorMessage"))

    # v2 ------------------------------------------------------------------------------------
    def _v2_channel(self, m: dict) -> None:
        ch = m["channel"]
        if type(ch) is not str:
            raise ValueError("channel is not a string")
        if ch == "book":
            kind = m.get("type")
            if kind != "snapshot" and kind != "update":
                raise ValueError(f"book message type {kind!r}")
            snapshot = kind == "snapshot"
            for d in m["data"]:
                self._v2_book(d, snapshot)
        elif ch == "trade":
            for d in m["data"]:
                self._v2_trade(d)
        elif ch == "heartbeat":
            return
        elif ch == "status":
            for d in m.get("data", ()):
                self._system_status(d.get("system", ""))
        elif ch == "instrument":
            self._v2_instruments(m.get("data") or {})

    def _v2_book(self, d: dict, snapshot: bool) -> None:
        sym = d["symbol"]
        bids, asks = d.get("bids", ()), d.get("asks", ())
        if type(sym) is not str or type(bids) not in _SEQ or type(asks) not in _SEQ:
            raise ValueError("book symbol, bids or asks of the wrong type")
        if snapshot:
            prices = [_txt(x["price"]) for x in bids] + [_txt(x["price"]) for x in asks]
            sizes = [_txt(x["qty"]) for x in bids] + [_txt(x["qty"]) for x in asks]
            iid = self._learn(sym, prices, sizes)
            if iid is None:
                return
            self._busy = iid
            self._checksum_divisors(iid, prices, sizes)
        else:
            iid = self._iid.get(sym)
            if iid is None or iid not in self._live:
                return
            self._busy = iid
        ps, ss = self._scales[iid]
        checksum = d.get("checksum")
        stamp = _rfc3339(d["timestamp"]) if "timestamp" in d else 0
        if snapshot:
            b = [(fx(_txt(x["price"]), ps), fx(_txt(x["qty"]), ss)) for x in bids]
            a = [(fx(_txt(x["price"]), ps), fx(_txt(x["qty"]), ss)) for x in asks]
            self.apply_snapshot(iid, b, a, stamp)
            self._resub.pop(sym, None)
            if checksum is not None and not self._verify(iid, int(checksum)):
                return
            if not self.check_crossed(iid):
                self._live.add(iid)
                self.set_status(iid, Status.SYNCED, "snapshot")
            return
        levels = [(BID, fx(_txt(x["price"]), ps), fx(_txt(x["qty"]), ss)) for x in bids]
        levels += [(ASK, fx(_txt(x["price"]), ps), fx(_txt(x["qty"]), ss)) for x in asks]
        self.apply_levels(iid, levels, stamp)
        if checksum is not None and not self._verify(iid, int(checksum)):
            return
        self.check_crossed(iid)

    def _v2_trade(self, d: dict) -> None:
        iid = self._learn(d["symbol"], [_txt(d["price"])], [_txt(d["qty"])])
        if iid is None:
            return
        ps, ss = self._scales[iid]
        side = d.get("side")
        side = _TRADE_SIDE.get(side, 0) if type(side) is str or side is None else None
        if side is None:
            raise ValueError(f"trade side {d.get('side')!r}")
        stamp = _rfc3339(d["timestamp"]) if "timestamp" in d else 0
        self.trade(iid, side, fx(_txt(d["price"]), ps), fx(_txt(d["qty"]), ss), d.get("trade_id", 0), stamp)

    def _v2_instruments(self, data: dict) -> None:
        for pair in data.get("pairs", ()):
            sym = pair.get("symbol")
            if sym not in self._wanted:
                continue
            spec = spec_from_v2_pair(pair)
            self._prec[sym] = (spec["price_decimals"], spec["size_decimals"])
            if sym not in self._iid:
                try:
                    inst = self.registry.get(self.venue, sym)
                except KeyError:
                    inst = self.registry.add(self.venue, **spec)
                self._index(self.track(inst))
            if self._iid[sym] not in self._ck:
                iid = self._iid[sym]
                ps, ss = self._scales[iid]
                self._ck[iid] = (_POW10[ps - spec["price_decimals"]], _POW10[ss - spec["size_decimals"]])
        if self._waiting_instruments:
            self._subscribe_all()

    def _v2_method(self, m: dict) -> None:
        method = m["method"]
        if type(method) is not str:
            raise ValueError(f"method {method!r}")
        if method == "pong":
            return
        res = m.get("result") or {}
        if not m.get("success", True):
            log.warning("kraken: %s failed: %s", method, m.get("error"))
            return
        if method == "unsubscribe" and res.get("channel") == "book":
            self._resubscribed(res.get("symbol", ""))

    # -- checksum ---------------------------------------------------------------------------
    def _verify(self, iid: int, expected: int) -> bool:
        """Compare the book with the venue's checksum after a message: ``Book.kraken_checksum``
        computes ``book_checksum`` (the reference, above) in C from the book's ints."""
        ck = self.books[iid].kraken_checksum
        got = ck(*self._ck[iid]) if self.checksum_timer is None else self.timed(iid, ck, *self._ck[iid])
        st = self.stats[iid]
        if got == expected:
            st.checksum_ok += 1
            return True
        st.checksum_failed += 1
        why = f"checksum {got} != {expected}"
        self.set_status(iid, Status.CHECKSUM, why)
        self.resync(iid, why)
        return False
