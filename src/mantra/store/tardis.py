"""Tardis.dev CSV files as backtest data (``mantra import --format tardis FILE...``).

Tardis's normalised CSV datasets, plain or gzip as shipped, one kind per file (told by its header):

* ``incremental_book_L2`` — ``exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount``:
  one row per changed level (amount 0 deletes it); rows of one instrument with one
  ``local_timestamp`` are one venue message; a run of ``is_snapshot=true`` rows after updates (or
  at the start) is a fresh snapshot: the book is cleared first.
* ``book_snapshot_<N>[_...]`` — ``exchange,symbol,timestamp,local_timestamp,asks[0].price,
  asks[0].amount,bids[0].price,...``: every row is the whole top N, so it becomes a snapshot.
* ``trades`` — ``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``; side is the
  aggressor (buy/sell/unknown).

Times are µs since the epoch: ``local_timestamp`` (when Tardis received the message) is the
record's origin and publish time, as a live frame's receipt stamp is; ``timestamp`` is the
exchange time.  Within one origin, each row is published one ns after the previous, so replay keeps
the rows' order.  Each (exchange, symbol) becomes an instrument whose scales are the most decimals
its prices and sizes use in the files (a first pass reads them).  A row that does not parse is
counted and logged (the first few), never imported half-way.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from ..fixed import FixedPointError, to_fixed
from ..instruments import InstrumentRegistry
from ..spine.messages import L2Flags, L2Update, TradeUpdate
from .reference import publish_times

log = logging.getLogger(__name__)

BOOK = ["exchange", "symbol", "timestamp", "local_timestamp", "is_snapshot", "side", "price", "amount"]
TRADES = ["exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"]
SNAPSHOT_HEAD = ["exchange", "symbol", "timestamp", "local_timestamp"]
LAST, SNAPSHOT, CLEAR = int(L2Flags.LAST), int(L2Flags.SNAPSHOT), int(L2Flags.CLEAR)
INT64 = 2**63 - 1
MAX_LOGGED = 10


class TardisError(ValueError):
    """A file that is not one of the Tardis CSV kinds this importer reads."""


def _open(path: Path) -> io.TextIOBase:
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", newline="") if gz else open(path, newline="")


def kind(header: list[str]) -> str:
    if header == BOOK:
        return "incremental_book_L2"
    if header == TRADES:
        return "trades"
    if header[:4] == SNAPSHOT_HEAD and len(header) > 4 and (len(header) - 4) % 4 == 0 \
            and header[4:8] == ["asks[0].price", "asks[0].amount", "bids[0].price", "bids[0].amount"]:
        return "book_snapshot"
    raise TardisError(f"not a Tardis incremental_book_L2, book_snapshot_* or trades CSV (header {','.join(header[:8])})")


def _decimals(text: str) -> int:
    return len(text.partition(".")[2].rstrip("0"))


class _Import:
    def __init__(self, out: Path):
        self.out = out
        self.registry = InstrumentRegistry()
        self.scales: dict[tuple[str, str], list[int]] = {}  # (venue, symbol) -> [price decimals, size decimals]
        self.l2: list[tuple] = []  # (origin, place, exch_ts, price, size, instrument, side, flags)
        self.trades: list[tuple] = []  # (origin, place, exch_ts, trade_id, price, size, instrument, side)
        self.malformed: Counter = Counter()
        self.next_trade_id = 1

    def bad(self, path: Path, line: int, why: str) -> None:
        n = sum(self.malformed.values())
        self.malformed[path.name] += 1
        if n < MAX_LOGGED:
            log.warning("%s line %d: %s; row skipped", path, line, why)

    # -- pass 1: instruments and their scales -------------------------------------------------
    def survey(self, path: Path) -> str:
        with _open(path) as f:
            rows = csv.reader(f)
            k = kind(next(rows, []))
            for row in rows:
                if k == "book_snapshot" and len(row) >= 8 and len(row) % 4 == 0:
                    sc = self.scales.setdefault((row[0].lower(), row[1]), [0, 0])
                    for i in range(4, len(row) - 1, 2):
                        sc[0], sc[1] = max(sc[0], _decimals(row[i])), max(sc[1], _decimals(row[i + 1]))
                elif k != "book_snapshot" and len(row) == 8:
                    sc = self.scales.setdefault((row[0].lower(), row[1]), [0, 0])
                    sc[0], sc[1] = max(sc[0], _decimals(row[6])), max(sc[1], _decimals(row[7]))
        return k

    def register(self) -> None:
        for (venue, symbol), (ps, ss) in sorted(self.scales.items()):
            if ps > 18 or ss > 18:
                raise TardisError(f"{venue}:{symbol}: {max(ps, ss)} decimals is beyond what int64 prices hold")
            self.registry.add(venue, symbol, price_scale=ps, size_scale=ss, tick=1, lot=1,
                              price_decimals=ps, size_decimals=ss)

    # -- pass 2: records ----------------------------------------------------------------------
    def read(self, path: Path, k: str) -> None:
        with _open(path) as f:
            rows = csv.reader(f)
            next(rows)
            getattr(self, f"_{k}")(path, rows)

    def _times(self, row) -> tuple[int, int]:
        exch, local = int(row[2]) * 1000, int(row[3]) * 1000
        if not (0 <= exch <= INT64 and 0 < local <= INT64):
            raise ValueError("timestamp out of range")
        return exch, local

    def _level_row(self, row, sides: dict, min_size: int):
        """(instrument, exchange ns, local ns, side, price, size) of an 8-field row (book or trade)."""
        if len(row) != 8:
            raise ValueError(f"{len(row)} fields, expected 8")
        inst = self.registry.get(row[0].lower(), row[1])
        exch, local = self._times(row)
        side = sides[row[5]]
        price, size = to_fixed(row[6], inst.price_scale), to_fixed(row[7], inst.size_scale)
        if price <= 0 or size < min_size:
            raise ValueError(f"price must be > 0 and amount >= {min_size}")
        return inst, exch, local, side, price, size

    def _incremental_book_L2(self, path: Path, rows) -> None:
        in_snapshot: dict[int, bool] = {}
        prev_key, pending = None, None  # the message being read, and the index of its latest row
        for line, row in enumerate(rows, 2):
            try:
                inst, exch, local, side, price, size = self._level_row(row, {"bid": 1, "ask": -1}, 0)
                snap = {"true": True, "false": False}[row[4]]
            except (ValueError, KeyError, FixedPointError) as e:
                self.bad(path, line, str(e) or f"bad value {e!r}")
                continue
            iid = inst.id
            key = (iid, local)
            if key != prev_key and pending is not None:  # the previous message ended
                self._end(pending)
            flags = 0
            if snap:
                flags = SNAPSHOT | (0 if in_snapshot.get(iid) else CLEAR)
            in_snapshot[iid] = snap
            self.l2.append((local, len(self.l2), exch, price, size, iid, side, flags))
            prev_key, pending = key, len(self.l2) - 1
        if pending is not None:
            self._end(pending)

    def _end(self, i: int) -> None:
        r = self.l2[i]
        self.l2[i] = (*r[:7], r[7] | LAST)

    def _book_snapshot(self, path: Path, rows) -> None:
        for line, row in enumerate(rows, 2):
            try:
                if len(row) < 8 or (len(row) - 4) % 4:
                    raise ValueError(f"{len(row)} fields")
                inst = self.registry.get(row[0].lower(), row[1])
                exch, local = self._times(row)
                levels = []
                for i in range(4, len(row), 4):
                    for side, p, q in ((-1, row[i], row[i + 1]), (1, row[i + 2], row[i + 3])):
                        if p == "" and q == "":
                            continue  # fewer levels than N on this side
                        price, size = to_fixed(p, inst.price_scale), to_fixed(q, inst.size_scale)
                        if price <= 0 or size <= 0:
                            raise ValueError("a level's price and amount must be > 0")
                        levels.append((side, price, size))
                if not levels:
                    raise ValueError("an empty snapshot")
            except (ValueError, KeyError, FixedPointError) as e:
                self.bad(path, line, str(e) or f"bad value {e!r}")
                continue
            for j, (side, price, size) in enumerate(levels):
                flags = SNAPSHOT | (CLEAR if j == 0 else 0) | (LAST if j == len(levels) - 1 else 0)
                self.l2.append((local, len(self.l2), exch, price, size, inst.id, side, flags))

    def _trades(self, path: Path, rows) -> None:
        for line, row in enumerate(rows, 2):
            try:
                inst, exch, local, side, price, size = self._level_row(row, {"buy": 1, "sell": -1, "unknown": 0}, 1)
            except (ValueError, KeyError, FixedPointError) as e:
                self.bad(path, line, str(e) or f"bad value {e!r}")
                continue
            tid = int(row[4]) if row[4].isdigit() and int(row[4]) <= INT64 else self._trade_id()
            self.trades.append((local, len(self.trades), exch, tid, price, size, inst.id, side))

    def _trade_id(self) -> int:  # venues whose trade ids are not numbers (or are missing)
        self.next_trade_id += 1
        return self.next_trade_id - 1

    # -- output -------------------------------------------------------------------------------
    def records(self) -> tuple[np.ndarray, np.ndarray]:
        l2 = np.zeros(len(self.l2), L2Update.DTYPE)
        tr = np.zeros(len(self.trades), TradeUpdate.DTYPE)
        if self.l2:
            a = np.array(self.l2, dtype=np.int64)
            a = a[np.lexsort((a[:, 1], a[:, 0]))]  # by receipt time, file order within it
            for k, col in (("origin", 0), ("exch_ts", 2), ("price", 3), ("size", 4), ("instrument", 5),
                           ("side", 6), ("flags", 7)):
                l2[k] = a[:, col]
        if self.trades:
            a = np.array(self.trades, dtype=np.int64)
            a = a[np.lexsort((a[:, 1], a[:, 0]))]
            for k, col in (("origin", 0), ("exch_ts", 2), ("trade_id", 3), ("price", 4), ("size", 5),
                           ("instrument", 6), ("side", 7)):
                tr[k] = a[:, col]
        # One origin's rows go out one ns apart, so replay keeps their order.
        for recs in (l2, tr):
            if len(recs):
                recs["publish"] = publish_times(recs["origin"])
        return l2, tr


def import_tardis(files, out: str | Path) -> dict:
    """Tardis CSV ``files`` -> ``l2``/``trades`` segments and ``instruments.json`` in ``out``."""
    from .segments import SegmentWriter

    out, imp = Path(out), _Import(Path(out))
    paths = [Path(f) for f in files]
    kinds = {}
    for p in paths:
        try:
            kinds[p] = imp.survey(p)
        except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile, csv.Error) as e:
            raise TardisError(f"{p}: cannot read it as a (gzipped) CSV file: {e}") from None
        except TardisError as e:
            raise TardisError(f"{p}: {e}") from None
    imp.register()
    for p in paths:
        imp.read(p, kinds[p])
    l2, tr = imp.records()
    written = {}
    for queue, recs, cls in (("l2", l2, L2Update), ("trades", tr, TradeUpdate)):
        if len(recs):
            w = SegmentWriter(out / queue / f"{int(recs['publish'][0])}.seg", queue, cls)
            for i in range(0, len(recs), 65536):
                w.append(recs[i:i + 65536])
            w.close()
        written[queue] = int(len(recs))
    out.mkdir(parents=True, exist_ok=True)
    imp.registry.save(out / "instruments.json")
    both = [r["origin"] for r in (l2, tr) if len(r)]
    span = [int(min(x[0] for x in both)), int(max(x[-1] for x in both))] if both else []
    return {**written, "instruments": [f"{i.venue}:{i.symbol}" for i in imp.registry],
            "files": {p.name: kinds[p] for p in paths}, "malformed": int(sum(imp.malformed.values())),
            "time_range_ns": span}
