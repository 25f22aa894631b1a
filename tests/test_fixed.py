"""Venue decimal strings <-> fixed-point integers, exactly (checked against Decimal)."""

from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from mantra.fixed import FixedPointError, decimals_of, from_fixed, rescale, to_fixed
from mantra.instruments import InstrumentRegistry

scales = st.integers(0, 12)


@given(st.integers(-(10**15), 10**15), scales, st.integers(0, 6))
def test_round_trip_with_trailing_zeros(v, scale, pad):
    text = from_fixed(v, scale)
    if "." in text:
        text += "0" * pad
    assert to_fixed(text, scale) == v
    assert Decimal(text) * (Decimal(10) ** scale) == v


@given(st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-10**9, max_value=10**9), scales)
def test_matches_decimal_or_refuses(d, scale):
    text = format(d, "f")
    exact = d.scaleb(scale)
    if exact == exact.to_integral_value():
        assert to_fixed(text, scale) == int(exact)
    else:
        with pytest.raises(FixedPointError):
            to_fixed(text, scale)


@pytest.mark.parametrize("text,scale,want", [
    ("0.01000000", 2, 1), ("60000.00", 2, 6_000_000), ("-0.5", 1, -5), ("1e-08", 8, 1), ("1.5E2", 0, 150),
    ("00012.3400", 4, 123_400), ("+3", 0, 3),
])
def test_documented_forms(text, scale, want):
    assert to_fixed(text, scale) == want


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "--1", "1,5", "nan", "1e", "٣"])
def test_malformed_is_a_clear_error(bad):
    with pytest.raises(FixedPointError):
        to_fixed(bad, 4)


def test_display_and_rescale():
    assert from_fixed(12345, 2) == "123.45" and from_fixed(100, 2, 2) == "1.00" and from_fixed(-5, 3) == "-0.005"
    assert rescale(123, 2, 4) == 12300 and rescale(12300, 4, 2) == 123
    with pytest.raises(FixedPointError):
        rescale(12301, 4, 2)
    assert decimals_of("0.05000") == 5 and decimals_of("7") == 0


def test_registry_ids_scales_and_persistence(tmp_path):
    reg = InstrumentRegistry()
    btc = reg.add("binance", "BTCUSDT", price_scale=2, size_scale=5, tick=1, lot=1)
    eth = reg.add("kraken", "ETH/USD", price_scale=2, size_scale=8)
    assert (btc.id, eth.id) == (1, 2) and reg.add("binance", "BTCUSDT") is btc
    with pytest.raises(ValueError, match="different spec"):
        reg.add("binance", "BTCUSDT", price_scale=3)
    assert btc.price("60000.01") == 6_000_001 and btc.size_str(150_000) == "1.5"
    reg.save(tmp_path / "i.json")
    again = InstrumentRegistry.load(tmp_path / "i.json")
    assert again.get("kraken", "ETH/USD") == eth and again[1] == btc
    with pytest.raises(KeyError, match="unknown instrument"):
        reg.get("coinbase", "BTC-USD")


def _outcome(fn, text, scale):
    try:
        return fn(text, scale)
    except Exception as e:  # noqa: BLE001 - the kind and message are what is compared
        return type(e), str(e)


decimalish = st.text(alphabet="0123456789.-+eE _", max_size=24)


@given(st.one_of(decimalish, st.from_regex(r"-?[0-9]{0,22}(\.[0-9]{0,22})?", fullmatch=True)), st.integers(0, 20))
def test_c_conversion_agrees_with_the_python_reference(text, scale):
    """The C ``to_fixed`` (plain decimals) and its Python reference give the same value, or the
    same error, for any text: overflow, long fractions and odd forms all reach the reference."""
    from mantra.fixed import _to_fixed_py
    assert _outcome(to_fixed, text, scale) == _outcome(_to_fixed_py, text, scale)


@given(st.lists(st.tuples(st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False),
                          st.decimals(min_value=0, max_value=10**6, places=8, allow_nan=False)), max_size=20))
def test_side_rows_agrees_with_to_fixed(rows):
    from mantra.fixed import side_rows
    text = [[format(p, "f"), format(q, "f")] for p, q in rows]
    assert side_rows(-1, text, 6, 8) == [(-1, to_fixed(p, 6), to_fixed(q, 8)) for p, q in text]


def test_side_rows_refuses_what_is_not_a_level():
    from mantra.fixed import side_rows
    with pytest.raises(ValueError, match="level must be"):
        side_rows(1, [["1.0", "2.0", "3"]], 2, 2)
    with pytest.raises(FixedPointError):
        side_rows(1, [["1.0", "x"]], 2, 2)
    with pytest.raises(TypeError):
        side_rows(1, None, 2, 2)
