"""Exports a person can read: decimal prices and sizes at each instrument's own scale, venue and
symbol, UTC timestamps, and the scales in the Parquet metadata; the exact integers kept."""

import json
from datetime import datetime, timezone
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mantra.instruments import InstrumentRegistry
from mantra.spine.messages import BalanceUpdate, Fill, TradeUpdate
from mantra.store import export
from mantra.store.segments import SegmentWriter

T0 = 1_717_200_000_123_456_789  # 2024-06-01T00:00:00.123456789Z


def recording(root, registry=True):
    """Trades of two instruments with different scales, a fill, a balance."""
    reg = InstrumentRegistry()
    reg.add("binance", "BTCUSDT", base="BTC", quote="USDT", price_scale=2, size_scale=3)
    reg.add("kraken", "ETH/XBT", base="ETH", quote="XBT", price_scale=8, size_scale=8)
    root.mkdir()
    if registry:
        reg.save(root / "instruments.json")
    t = np.zeros(3, TradeUpdate.DTYPE)
    t["origin"] = t["publish"] = t["exch_ts"] = T0 + np.arange(3)
    t["instrument"] = [1, 2, 1]
    t["price"] = [6_000_001, 5_123_456, 5_999_999]  # 60000.01 | 0.05123456 | 59999.99
    t["size"] = [1_500, 2_000_000_000, 7]  # 1.5 | 20 | 0.007
    f = np.zeros(1, Fill.DTYPE)
    f["publish"] = f["exch_ts"] = T0
    f["instrument"], f["price"], f["size"], f["fee"], f["side"] = 2, 5_123_456, 10**8, 513, 1
    b = np.zeros(1, BalanceUpdate.DTYPE)
    b["publish"], b["total"], b["available"], b["scale"], b["asset"] = T0, 123_456_789, 100_000_000, 8, b"XBT"
    for q, cls, recs in (("trades", TradeUpdate, t), ("fills", Fill, f), ("balances", BalanceUpdate, b)):
        w = SegmentWriter(root / q / "0.seg", q, cls)
        w.append(recs)
        w.close()
    return t


def test_parquet_has_decimals_at_each_instruments_scale(tmp_path):
    t = recording(tmp_path / "data")
    assert export.to_parquet(tmp_path / "data", tmp_path / "pq") == {"balances": 1, "fills": 1, "trades": 3}
    got = pq.read_table(tmp_path / "pq" / "trades.parquet")
    # the exact integers, as recorded
    assert got.column("price").to_pylist() == t["price"].tolist()
    # the same values as decimals, one column, each row at its own instrument's scale
    assert got.schema.field("price_dec").type == pa.decimal128(38, 8)
    assert got.column("price_dec").to_pylist() == [Decimal("60000.01"), Decimal("0.05123456"), Decimal("59999.99")]
    assert got.column("size_dec").to_pylist() == [Decimal("1.5"), Decimal("20"), Decimal("0.007")]
    assert got.column("venue").to_pylist() == ["binance", "kraken", "binance"]
    assert got.column("symbol").to_pylist() == ["BTCUSDT", "ETH/XBT", "BTCUSDT"]
    # times in UTC, to the nanosecond
    assert got.schema.field("publish").type == pa.timestamp("ns", tz="UTC")
    assert got.column("exch_ts").cast(pa.int64()).to_pylist() == (T0 + np.arange(3)).tolist()
    first = got.column("publish")[0].as_py()
    assert first.tzinfo is not None and first.replace(nanosecond=0) == datetime(2024, 6, 1, 0, 0, 0, 123456,
                                                                              tzinfo=timezone.utc)
    # the scales travel with the file
    meta = json.loads(pq.read_schema(tmp_path / "pq" / "trades.parquet").metadata[b"mantra"])
    scales = {(i["venue"], i["symbol"]): (i["price_scale"], i["size_scale"]) for i in meta["instruments"]}
    assert scales == {("binance", "BTCUSDT"): (2, 3), ("kraken", "ETH/XBT"): (8, 8)}
    fills = pq.read_table(tmp_path / "pq" / "fills.parquet")
    assert fills.column("fee_dec").to_pylist() == [Decimal("0.00000513")]
    bal = pq.read_table(tmp_path / "pq" / "balances.parquet")
    assert bal.column("total_dec").to_pylist() == [Decimal("1.23456789")]


def test_dataframe_reads_decimals_and_unknown_instruments_are_null(tmp_path):
    recording(tmp_path / "data")
    reg = InstrumentRegistry()
    reg.add("binance", "BTCUSDT", price_scale=2, size_scale=3)  # the kraken instrument unknown here
    df = export.frame(tmp_path / "data", "trades", instruments=reg)
    assert df["price_dec"].tolist()[0] == Decimal("60000.01")
    assert df["price_dec"].isna().tolist() == [False, True, False]
    assert str(df["publish"].dtype) == "datetime64[ns, UTC]"


def test_without_instruments_the_integers_remain(tmp_path):
    t = recording(tmp_path / "data", registry=False)
    got = export.table(tmp_path / "data", "trades")
    assert "price_dec" not in got.column_names and got.column("price").to_pylist() == t["price"].tolist()
    assert json.loads(got.schema.metadata[b"mantra"])["instruments"] == []
