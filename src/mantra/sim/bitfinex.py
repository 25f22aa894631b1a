"""Bitfinex WebSocket v2 simulator: ``conf`` flags, aggregated ``book`` (P0) and ``trades`` channels,
info codes, ``hb``; REST ``conf/pub:info:pair``, ``conf/pub:list:pair:exchange``, ``book/<symbol>/P0``.

Per connection: ``SEQ_ALL`` appends a sequence number (+1 per channel message, so a lost frame is a
gap), ``OB_CHECKSUM`` sends ``[chanId,"cs",crc]`` after the snapshot and after each book message
(signed CRC32 of the top 25 interleaved, computed on what the client holds), ``BULK_UPDATES`` sends
one book message per step instead of one per level, ``TIMESTAMP`` appends a ms time (before the
sequence number).  Numbers are JSON numbers in JavaScript's form.  Only the ``P0`` precision is
served (other ``prec`` values are refused with 10011); ``freq`` F1 is accepted and served in real time.
``reconnect_request`` sends info 20051.
"""

from __future__ import annotations

import time

from ..fixed import from_fixed
from .market import ASK, BID, DepthView, Listing
from .oracles import bitfinex_checksum
from .server import Request, RestError, VenueSimulator, raw

LISTINGS = (
    Listing("tBTCUSD", "BTC", "USD", "1", "0.00001", "27000", "3", "0.00004"),
    Listing("tETHUSD", "ETH", "USD", "0.1", "0.0001", "1800.0", "40", "0.0008"),
    Listing("tXRPUSD", "XRP", "USD", "0.00001", "0.01", "0.51000", "20000", "4"),
)
TIMESTAMP, SEQ_ALL, OB_CHECKSUM, BULK_UPDATES = 32768, 65536, 131072, 536870912
LENGTHS = ("1", "25", "100", "250")


def js_number(value: int, scale: int) -> str:
    """A fixed-point value as JavaScript writes the number: trimmed, exponent form below 1e-6."""
    a = abs(value)
    if scale > 6 and 0 < a < 10 ** (scale - 6):
        digits = str(a)
        exp = len(digits) - 1 - scale
        d = digits.rstrip("0")
        out = f"{d[0]}.{d[1:]}e{exp}" if len(d) > 1 else f"{d}e{exp}"
    else:
        out = from_fixed(a, scale)
    return "-" + out if value < 0 else out


class _Chan:
    __slots__ = ("kind", "symbol", "view", "last")

    def __init__(self, kind: str, symbol: str, view: DepthView | None):
        self.kind, self.symbol, self.view = kind, symbol, view
        self.last = time.monotonic()  # last message on the channel, for "hb"


class BitfinexSimulator(VenueSimulator):
    venue = "bitfinex"
    LISTINGS = LISTINGS
    hb_s = 15.0  # an idle channel sends "hb" after this long

    def __init__(self, source=None, **kw):
        super().__init__(source, **kw)
        self.next_chan = 17_000

    # -- numbers ---------------------------------------------------------------------------
    def _entry(self, sym: str, side: int, price: int, size: int) -> list:
        inst = self.instruments[sym]
        p = raw(js_number(price, inst.price_scale))
        if not size:
            return [p, 0, side]  # COUNT 0 deletes: AMOUNT 1 from the bids, -1 from the asks
        count = 1 + (size // max(inst.lot, 1)) % 4  # orders at the level: any positive number
        return [p, count, raw(js_number(side * size, inst.size_scale))]

    def _checksum(self, sym: str, view: DepthView) -> int:
        inst = self.instruments[sym]
        ps, ss = inst.price_scale, inst.size_scale
        # Prices in fixed notation, amounts as sent, asks negative (the venue's reference code).
        frags = [[f"{from_fixed(p, ps)}:{js_number(side * q, ss)}" for p, q in view.book.top(side, 25)]
                 for side in (BID, ASK)]
        crc = bitfinex_checksum(*frags)
        return crc ^ 1 if self.corrupt() else crc

    def _send(self, c, chan_id: int, *body, book: bool = False) -> None:
        msg = [chan_id, *body]
        if c.flags & TIMESTAMP:
            msg.append(time.time_ns() // 1_000_000)
        if c.flags & SEQ_ALL:
            c.seq += 1  # used up even if the frame is then lost
            msg.append(c.seq)
        c.chans[chan_id].last = time.monotonic()
        self.send(c, msg, book=book)

    # -- connection ------------------------------------------------------------------------
    def on_open(self, c) -> None:
        c.flags, c.seq = 0, 0
        c.chans = {}  # chanId -> _Chan
        self.send(c, {"event": "info", "version": 2, "serverId": f"sim-{self.port}", "platform": {"status": 1}})

    def on_message(self, c, msg) -> None:
        ev = msg.get("event") if isinstance(msg, dict) else None
        if ev == "conf":
            c.flags = int(msg.get("flags", 0))
            self.send(c, {"event": "conf", "status": "OK", "flags": c.flags})
        elif ev == "ping":
            self.send(c, {"event": "pong", "ts": time.time_ns() // 1_000_000, "cid": msg.get("cid")})
        elif ev == "subscribe":
            self._subscribe(c, msg)
        elif ev == "unsubscribe":
            chan = msg.get("chanId")
            if c.chans.pop(chan, None) is None:
                self.send(c, {"event": "error", "msg": "unsubscribe: invalid", "code": 10400})
            else:
                self.send(c, {"event": "unsubscribed", "status": "OK", "chanId": chan})
        else:
            self.send(c, {"event": "error", "msg": "unknown event", "code": 10000})

    def on_bad_message(self, c, text) -> None:
        self.send(c, {"event": "error", "msg": "unknown event", "code": 10000})

    def _subscribe(self, c, msg: dict) -> None:
        kind, sym = msg.get("channel"), msg.get("symbol", "")
        if sym not in self.instruments and "t" + sym in self.instruments:
            sym = "t" + sym
        fail = None
        if kind not in ("book", "trades"):
            fail = (10300, "subscribe: failed (channel not served by the simulator)")
        elif sym not in self.instruments:
            fail = (10300, "subscribe: failed (symbol: invalid)")
        elif kind == "book" and msg.get("prec", "P0") != "P0":
            fail = (10011, "subscribe: invalid prec (the simulator serves P0)")
        elif kind == "book" and str(msg.get("len", "25")) not in LENGTHS:
            fail = (10012, "subscribe: invalid len")
        elif any(ch.kind == kind and ch.symbol == sym for ch in c.chans.values()):
            fail = (10301, "subscribe: dup")
        if fail:
            self.send(c, {"event": "error", "msg": fail[1], "code": fail[0], "channel": kind, "symbol": sym})
            return
        self.next_chan += 1
        chan_id = self.next_chan
        ack = {"event": "subscribed", "channel": kind, "chanId": chan_id, "symbol": sym}
        if kind == "book":
            depth = str(msg.get("len", "25"))
            ack.update(prec="P0", freq=msg.get("freq", "F0"), len=depth)
            view = DepthView(int(depth), self.books[sym])
        else:
            view = None
        ack["pair"] = sym[1:]
        if "subId" in msg:
            ack["subId"] = msg["subId"]
        c.chans[chan_id] = _Chan(kind, sym, view)
        self.send(c, ack)
        if view is not None:
            rows = [self._entry(sym, side, p, q) for side in (BID, ASK) for p, q in view.book.top(side, view.book.depth)]
            self._send(c, chan_id, rows)
            if c.flags & OB_CHECKSUM:
                self._send(c, chan_id, "cs", self._checksum(sym, view))
        else:
            self._send(c, chan_id, [self._trade(sym, t, ts) for t, ts in reversed(self.recent_trades[sym])])

    def _trade(self, sym: str, t, ts: int) -> list:
        inst = self.instruments[sym]
        return [t.trade_id, ts // 1_000_000, raw(js_number(t.side * t.size, inst.size_scale)),
                raw(js_number(t.price, inst.price_scale))]

    def reconnect_message(self, c):
        return {"event": "info", "code": 20051, "msg": "Stop/Restart Websocket Server (please reconnect)"}

    # -- market ----------------------------------------------------------------------------
    def publish(self, step) -> None:
        sym = step.symbol
        changed = {(s, p) for s, p, _ in step.levels}
        trades = [self._trade(sym, t, step.ts) for t in step.trades]
        for c in self.clients:
            for chan_id, ch in list(c.chans.items()):
                if ch.symbol != sym:
                    continue
                if ch.kind == "trades":
                    for t in trades:
                        self._send(c, chan_id, "te", t)
                        self._send(c, chan_id, "tu", t)
                elif step.levels:
                    self._book_update(c, chan_id, ch, changed)

    def _book_update(self, c, chan_id: int, ch: _Chan, changed: set) -> None:
        levels = ch.view.diff(self.books[ch.symbol], changed)
        if not levels:
            return  # nothing changed inside the subscribed length
        entries = [self._entry(ch.symbol, s, p, q) for s, p, q, _ in levels]
        batches = [(entries, levels)] if c.flags & BULK_UPDATES else [([e], [lv]) for e, lv in zip(entries, levels)]
        for body, lvs in batches:
            self._send(c, chan_id, body if len(body) > 1 else body[0], book=True)
            ch.view.apply(lvs)  # as the client applies (and truncates) this message
            if c.flags & OB_CHECKSUM:
                self._send(c, chan_id, "cs", self._checksum(ch.symbol, ch.view))

    def idle(self, now: float) -> None:
        for c in self.clients:
            for chan_id, ch in c.chans.items():
                if now - ch.last >= self.hb_s:
                    self._send(c, chan_id, "hb")

    # -- REST ------------------------------------------------------------------------------
    def rest(self, req: Request):
        path, query = req.path, req.query
        if req.method == "GET":
            if path == "/v2/conf/pub:info:pair":
                rows = []
                for inst in self.instruments.values():
                    info = [None] * 12
                    info[3] = js_number(max(inst.min_size, inst.lot), inst.size_scale)
                    info[4] = "2000.0"
                    rows.append([inst.symbol[1:], info])
                return [rows]
            if path == "/v2/conf/pub:list:pair:exchange":
                return [[s[1:] for s in self.instruments]]
            parts = [p for p in path.split("/") if p]
            if parts[:2] == ["v2", "book"] and len(parts) == 4:
                sym, prec = parts[2], parts[3]
                if sym not in self.instruments or prec != "P0":
                    raise RestError(500, ["error", 10020, "symbol: invalid" if prec == "P0" else "prec: invalid"])
                n = int(query.get("len", 25))
                book = self.books[sym]
                return [self._entry(sym, side, p, q) for side in (BID, ASK) for p, q in book.top(side, n)]
        raise RestError(404, ["error", 10020, f"unknown endpoint {path}"])

    def rate_limit_body(self, status: int):
        return ["error", 11010, "ratelimit: error"]
