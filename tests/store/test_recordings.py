"""Venue recordings imported as backtest data rebuild the books the protocol had."""

from pathlib import Path

import numpy as np
import pytest

from fixtures import CAPTURES
from mantra import backtest
from mantra.book import L2Book
from mantra.instruments import InstrumentRegistry
from mantra.store import segments
from mantra.store.recordings import import_recording
from mantra.venues.check import check

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "mantra" / "configs"


@pytest.mark.parametrize("venue,files", [
    ("kraken", ["KRAKEN.ws.50.0"]),
    ("binance", ["BINANCE.ws.1.0", "BINANCE.http.0.0"]),
])
def test_imported_recording_rebuilds_the_protocol_books(venue, files, tmp_path):
    paths = [CAPTURES / f for f in files]
    info = import_recording(venue, paths, tmp_path / "data")
    assert info["l2"] > 1000 and info["malformed"] == 0
    reg = InstrumentRegistry.load(tmp_path / "data" / "instruments.json")
    l2 = segments.load(tmp_path / "data", "l2")
    assert (np.diff(l2["publish"].astype(np.int64)) >= 0).all()
    books: dict[int, L2Book] = {}
    for r in l2:
        b = books.setdefault(int(r["instrument"]), L2Book())
        if r["flags"] & 4:  # CLEAR: a snapshot starts
            b.clear()
        b.apply(int(r["side"]), int(r["price"]), int(r["size"]))
    report = check(venue, paths)
    for iid, book in books.items():
        inst = reg[iid]
        want = report["instruments"][inst.symbol]
        assert (len(book.bids), len(book.asks)) == (want["bid_levels"], want["ask_levels"])
        assert inst.price_str(book.best_bid()) == want["best_bid"]
        assert inst.price_str(book.best_ask()) == want["best_ask"]


def test_backtest_runs_on_an_imported_recording(tmp_path):
    info = import_recording("binance", [CAPTURES / "BINANCE.ws.1.0", CAPTURES / "BINANCE.http.0.0"], tmp_path / "d")
    r = backtest.run(CONFIGS / "backtest_noop.toml", tmp_path / "d", tmp_path / "out")
    assert r["events"] == info["l2"] + info["trades"]
