"""Tardis.dev CSV import: files generated in Tardis's documented formats (incremental_book_L2,
book_snapshot_N, trades; gzip as shipped) become backtest data whose book, rebuilt from the records,
is exactly the one the rows describe; bad rows are counted, never imported half-way."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import subprocess
import sys
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantra.book import L2Book
from mantra.instruments import InstrumentRegistry
from mantra.spine.messages import L2Flags
from mantra.store import segments
from mantra.store.tardis import BOOK, TRADES, TardisError, import_tardis

T0 = 1_700_000_000_000_000  # µs


def write(path, header, rows, gz=True):
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *rows])  # quotes a cell holding a line break
    text = buf.getvalue()
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def synthetic_book(seed: int, messages: int = 300):
    """Rows of an incremental_book_L2 file for two symbols, and each symbol's final book (Decimal)."""
    rnd = random.Random(seed)
    rows, books = [], {"BTCUSDT": ({}, {}), "ETHUSDT": ({}, {})}
    t = T0
    for sym, (bids, asks) in books.items():  # initial snapshots
        for i in range(5):
            p, q = Decimal(100 + i) / 10 + 50, Decimal(rnd.randint(1, 999)) / 1000
            asks[p] = q
            rows.append(["binance", sym, t, t + 5, "true", "ask", p, q])
            p = Decimal(100 - i) / 10 + 40
            bids[p] = q
            rows.append(["binance", sym, t, t + 5, "true", "bid", p, q])
    for m in range(messages):
        t += rnd.randint(1, 500)
        sym = rnd.choice(list(books))
        bids, asks = books[sym]
        if m == messages // 2:  # a fresh snapshot mid-file: whatever was there goes
            bids.clear(), asks.clear()
            for i in range(3):
                p, q = Decimal(95 + i) / 10 + 40, Decimal("0.5")
                bids[p] = q
                rows.append(["binance", sym, t, t + 5, "true", "bid", p, q])
            continue
        for _ in range(rnd.randint(1, 4)):
            side = rnd.choice(["bid", "ask"])
            d = bids if side == "bid" else asks
            base = 40 if side == "bid" else 50
            p = Decimal(rnd.randint(90, 110)) / 10 + base
            q = Decimal(0) if (d and rnd.random() < 0.3 and p in d) else Decimal(rnd.randint(1, 99999)) / 100000
            if q == 0:
                d.pop(p, None)
            else:
                d[p] = q
            rows.append(["binance", sym, t, t + 5, "false", side, p, "0" if q == 0 else q])
    return rows, books


def rebuild(out):
    reg = InstrumentRegistry.load(out / "instruments.json")
    books = {}
    for r in segments.load(out, "l2"):
        b = books.setdefault(int(r["instrument"]), L2Book())
        if r["flags"] & L2Flags.CLEAR:
            b.clear()
        b.apply(int(r["side"]), int(r["price"]), int(r["size"]))
    return reg, books


def test_incremental_book_rebuilds_exactly(tmp_path):
    rows, books = synthetic_book(7)
    f = write(tmp_path / "binance_incremental_book_L2_2023-11-14_BTCUSDT.csv.gz", BOOK, rows)
    res = import_tardis([f], tmp_path / "out")
    assert res["malformed"] == 0 and res["l2"] == len(rows) and res["files"] == {f.name: "incremental_book_L2"}
    reg, got = rebuild(tmp_path / "out")
    for sym, (bids, asks) in books.items():
        inst = reg.get("binance", sym)
        b = got[inst.id]
        for side, d in ((1, bids), (-1, asks)):
            want = sorted(((inst.price(str(p)), inst.size(str(q))) for p, q in d.items()), reverse=side > 0)
            assert b.top(side, 100) == want, (sym, side)
    l2 = segments.load(tmp_path / "out", "l2")
    # one message per (symbol, local_timestamp): LAST closes each; publish times never go back
    msgs = {(r[1], r[3]) for r in rows}
    assert int((l2["flags"] & L2Flags.LAST).astype(bool).sum()) == len(msgs)
    assert (l2["publish"][1:] >= l2["publish"][:-1]).all()
    assert res["time_range_ns"] == [(T0 + 5) * 1000, int(l2["origin"].max())]


def test_snapshots_and_trades_become_backtest_data(tmp_path):
    head = ["exchange", "symbol", "timestamp", "local_timestamp"]
    for i in range(3):
        head += [f"asks[{i}].price", f"asks[{i}].amount", f"bids[{i}].price", f"bids[{i}].amount"]
    snaps = [["coinbase", "BTC-USD", T0, T0 + 9, "30001.5", "0.2", "30000.25", "1.5", "30002", "0.1", "29999", "2",
              "", "", "29998", "3"],
             ["coinbase", "BTC-USD", T0 + 100, T0 + 109, "30001", "0.4", "30000", "1", "", "", "", "", "", "", "", ""]]
    trades = [["coinbase", "BTC-USD", T0 + 50, T0 + 59, "123456", "buy", "30001.5", "0.01"],
              ["coinbase", "BTC-USD", T0 + 60, T0 + 69, "abc-def", "sell", "30000.25", "0.5"],
              ["coinbase", "BTC-USD", T0 + 70, T0 + 79, "9", "unknown", "30000.25", "0.5"]]
    fs = [write(tmp_path / "snap.csv.gz", head, snaps), write(tmp_path / "trades.csv", TRADES, trades, gz=False)]
    p = subprocess.run([sys.executable, "-m", "mantra.cli", "import", *map(str, fs), "--format", "tardis",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["l2"] == 5 + 2 and res["trades"] == 3 and res["instruments"] == ["coinbase:BTC-USD"]
    reg, books = rebuild(tmp_path / "out")
    inst = reg.get("coinbase", "BTC-USD")
    assert (inst.price_scale, inst.size_scale) == (2, 2)
    b = books[inst.id]  # the second snapshot replaced the first entirely
    assert b.top(1, 9) == [(3000000, 100)] and b.top(-1, 9) == [(3000100, 40)]
    tr = segments.load(tmp_path / "out", "trades")
    assert tr["side"].tolist() == [1, -1, 0] and tr["trade_id"][0] == 123456
    assert len(set(tr["trade_id"].tolist())) == 3  # a non-numeric id gets one of its own
    assert tr["exch_ts"][0] == (T0 + 50) * 1000 and tr["origin"][0] == (T0 + 59) * 1000


def test_not_a_tardis_file_is_a_clear_error(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(TardisError, match="not a Tardis"):
        import_tardis([f], tmp_path / "out")
    f = tmp_path / "x.csv.gz"
    f.write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(TardisError, match="cannot read"):
        import_tardis([f], tmp_path / "out")


CELLS = st.one_of(st.text(max_size=12), st.sampled_from(["", "nan", "1e999", "-1", "9" * 30, "true", "bid", "0"]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 299), st.integers(0, 7), CELLS), min_size=1, max_size=8))
def test_damaged_rows_are_counted_and_skipped(tmp_path_factory, damage):
    tmp = tmp_path_factory.mktemp("tardis")
    rows, _ = synthetic_book(3, messages=60)
    rows = [list(map(str, r)) for r in rows]
    broken = set()
    for i, col, cell in damage:
        i %= len(rows)
        if rows[i][col] != cell:
            rows[i][col] = cell
            broken.add(i)
    f = write(tmp / "b.csv.gz", BOOK, rows)
    try:
        res = import_tardis([f], tmp / "out")
    except TardisError:
        return  # e.g. a damaged value gives a symbol more decimals than int64 holds: refused whole
    assert res["l2"] + res["malformed"] == len(rows)
    assert res["malformed"] <= len(broken)


def test_importing_twice_into_one_place_is_refused_unless_overwritten(tmp_path):
    rows, _ = synthetic_book(5, messages=20)
    f = write(tmp_path / "b.csv.gz", BOOK, rows)
    cmd = [sys.executable, "-m", "mantra.cli", "import", str(f), "--format", "tardis", "--out", str(tmp_path / "o")]
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "already holds l2" in p.stderr and "--overwrite" in p.stderr
    p = subprocess.run(cmd + ["--overwrite"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert len(segments.load(tmp_path / "o", "l2")) == len(rows)  # one copy, not two
