"""What `mantra tail` shows people: exact decimals at each instrument's scales, UTC times, names."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from mantra.instruments import InstrumentRegistry
from mantra.runtime.inspect import readable


def _registry():
    reg = InstrumentRegistry()
    reg.add("binance", "BTCUSDT", price_scale=2, size_scale=5)
    reg.add("kraken", "XRP/USD", price_scale=5, size_scale=8)
    return reg


@given(st.integers(-10**15, 10**15), st.integers(0, 10**15), st.sampled_from([1, 2]))
def test_prices_and_sizes_read_exactly_at_their_instruments_scales(price, size, iid):
    reg = _registry()
    inst = reg[iid]
    r = readable("L2Update", {"price": price, "size": size, "instrument": iid, "exch_ts": 0, "flags": 5,
                              "side": 1, "origin": 1_700_000_000_000_000_001}, reg)
    assert Decimal(r["price"]) == Decimal(price).scaleb(-inst.price_scale)
    assert Decimal(r["size"]) == Decimal(size).scaleb(-inst.size_scale)
    assert r["instrument"] == f"{inst.venue}:{inst.symbol}" and r["flags"] == "LAST|CLEAR"
    assert r["origin"] == "2023-11-14T22:13:20.000000001Z" and r["exch_ts"] is None


def test_orders_fills_and_balances_read_by_name():
    reg = _registry()
    u = readable("OrderUpdate", {"status": 5, "instrument": 1, "price": 3000012, "size": 150000, "filled": 50000,
                                 "exch_ts": 0}, reg)
    assert (u["status"], u["price"], u["size"], u["filled"]) == ("FILLED", "30000.12", "1.5", "0.5")
    b = readable("BalanceUpdate", {"total": 123456789, "available": 100000000, "scale": 8, "exch_ts": 0}, reg)
    assert (b["total"], b["available"]) == ("1.23456789", "1")
    assert readable("OrderRequest", {"action": 4, "instrument": 99, "price": 5}, reg) == \
        {"action": "CANCEL_ALL", "instrument": 99, "price": 5}  # unknown instrument: left as it is
    assert readable("Fill", {"exch_ts": 0}, reg) == {"exch_ts": None}  # no time, not 1970
