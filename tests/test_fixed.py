"""Venue decimal strings <-> fixed-point integers, exactly (checked against Decimal, and against
Fraction as an oracle independent of both the C path and its Python reference)."""

import re
import sys
from decimal import Decimal
from fractions import Fraction

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
    if exact == exact.to_integral_value() and -(2**63) <= exact < 2**63:
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


# -- the exact oracle --------------------------------------------------------------------------
# The accepted grammar (ASCII digits, optional sign, point and exponent; surrounding whitespace),
# written independently of the implementation's; the value comes from Fraction, which parses
# decimal and exponent text exactly.
_GRAMMAR = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
INT64 = range(-(2**63), 2**63)


def oracle(text, scale):
    """The exact fixed-point value of ``text`` at ``scale``, or None if it must be refused."""
    if not isinstance(text, str) or not 0 <= scale <= 18 or not _GRAMMAR.fullmatch(text.strip()):
        return None
    mantissa, _, exp = text.strip().lower().partition("e")
    if len(exp.lstrip("+-").lstrip("0")) > 4 and len(mantissa) < 1000:  # |exponent| >= 10**4
        # Fraction would build 10**exp.  A non-zero mantissa of < 1000 digits is then either
        # beyond int64 or a non-zero fraction below 1: refused either way.
        return 0 if not mantissa.strip("+-.0") else None
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # for the oracle only: the code under test runs with the default
    try:
        v = Fraction(text.strip()) * 10**scale
    finally:
        sys.set_int_max_str_digits(limit)
    return v.numerator if v.denominator == 1 and v.numerator in INT64 else None


def _agree(text, scale):
    """C, the Python reference and the oracle give the same value, or all refuse (with the
    module's own error, never a decimal or other exception)."""
    from mantra.fixed import _to_fixed_py
    want = oracle(text, scale)
    for fn in (to_fixed, _to_fixed_py):
        if want is None:
            with pytest.raises(FixedPointError):
                fn(text, scale)
        else:
            assert fn(text, scale) == want, (fn, text, scale)


@st.composite
def decimal_texts(draw):
    """Decimal and exponent texts: signs, leading and trailing zeros, many digits, exponents tiny
    and huge, surrounding whitespace."""
    sign = draw(st.sampled_from(["", "-", "+"]))
    whole = "0" * draw(st.integers(0, 25)) + draw(st.from_regex(r"[0-9]{0,25}", fullmatch=True))
    frac = None
    if draw(st.booleans()):
        frac = draw(st.from_regex(r"[0-9]{0,30}", fullmatch=True)) + "0" * draw(st.integers(0, 25))
    exp = ""
    if draw(st.booleans()):
        e = draw(st.one_of(st.integers(-40, 40), st.integers(-5000, 5000),
                           st.sampled_from([10**6, -(10**6), 10**30, -(10**30), 10**200])))
        esign = "-" if e < 0 else draw(st.sampled_from(["", "+"]))
        exp = draw(st.sampled_from("eE")) + esign + "0" * draw(st.integers(0, 3)) + str(abs(e))
    pad = draw(st.sampled_from(["", " ", "\t", " \n"]))
    return pad + sign + whole + ("" if frac is None else "." + frac) + exp + pad


@st.composite
def exact_texts(draw):
    """(text, scale, value): a value near or beyond int64's ends, written with its point anywhere
    and the matching exponent, so the exact answer is known."""
    scale = draw(st.integers(0, 18))
    v = draw(st.one_of(st.integers(-(2**63) - 2, 2**63 + 1), st.integers(-(10**6), 10**6),
                       st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1])))
    digits = str(abs(v))
    at = draw(st.integers(0, len(digits)))
    pad = "0" * draw(st.integers(0, 20))  # trailing zeros after the point change nothing
    text = f"{'-' if v < 0 else ''}{digits[:at]}.{digits[at:]}{pad}e{len(digits) - at - scale}"
    return text, scale, v


@given(st.one_of(decimal_texts(), st.text(max_size=30), decimalish), st.integers(0, 18))
def test_c_and_the_reference_agree_with_an_exact_oracle(text, scale):
    _agree(text, scale)


@given(exact_texts())
def test_exponent_forms_are_exact_up_to_the_ends_of_int64(case):
    text, scale, v = case
    assert oracle(text, scale) == (v if v in INT64 else None)
    _agree(text, scale)


@pytest.mark.parametrize("text,scale,want", [
    ("1.000000000000000000000000000001e0", 8, None),  # a decimal context of 28 digits rounded this to 1
    ("123456789012345678901234567890.5e-22", 8, None),
    ("1234567890123456789.01234567890e-1", 0, None),
    ("1e-2000000", 8, None),  # underflowed to 0
    ("-1E-30", 18, None),
    ("1e999999", 0, None),  # decimal.Overflow leaked
    ("1e" + "9" * 5000, 2, None),  # an exponent too long for int()
    ("0e999999999999", 4, 0), ("-0.000e-99999999999", 2, 0),
    ("9223372036854775807", 0, 2**63 - 1), ("9223372036854775808", 0, None),  # int64's ends, plain
    ("-9223372036854775808", 0, -(2**63)), ("-9223372036854775809", 0, None),
    ("92233720368547758.07", 2, 2**63 - 1), ("92233720368547758.08", 2, None),
    ("9.223372036854775807e18", 0, 2**63 - 1), ("9.223372036854775808E+18", 0, None),
    ("1e18", 0, 10**18), ("10", 18, None), ("1", 18, 10**18),
    ("0" * 5000 + "1.5", 1, 15), ("1" + "0" * 5000, 0, None), ("0." + "0" * 5000 + "1", 18, None),
    ("1" + "0" * 5000 + "e-5000", 3, 1000), ("0." + "0" * 4990 + "25e4993", 2, 25000),
])
def test_exactness_at_the_edges(text, scale, want):
    assert oracle(text, scale) == want
    _agree(text, scale)


@pytest.mark.parametrize("scale", [-1, 19, 40, 10**30, -(10**30)])
def test_a_scale_outside_0_to_18_is_a_clear_error_everywhere(scale):
    from mantra.fixed import _to_fixed_py, side_rows
    for call in (lambda: to_fixed("1", scale), lambda: _to_fixed_py("1", scale), lambda: to_fixed("1e0", scale),
                 lambda: side_rows(1, [], scale, 2), lambda: side_rows(1, [["1", "1"]], 2, scale),
                 lambda: from_fixed(1, scale), lambda: rescale(1, scale, 2), lambda: rescale(1, 2, scale)):
        with pytest.raises(FixedPointError, match="outside 0..18"):
            call()
    with pytest.raises(TypeError):
        to_fixed("1", 2.0)


@pytest.mark.parametrize("bad", [None, b"1", 1, 1.5, "1_000", "1e1_0", "١", "0x10", "inf", "NaN", "1e", "e1", ".",
                                 "+-1", "1 2", "1.5e2.5"])
def test_anything_else_is_a_fixed_point_error(bad):
    from mantra.fixed import _to_fixed_py
    for fn in (to_fixed, _to_fixed_py):
        with pytest.raises(FixedPointError, match="not a decimal number"):
            fn(bad, 4)


def test_plain_decimals_padded_beyond_the_scale_stay_in_c():
    """Venues pad to 8 decimals ("60000.01000000" at a price scale of 2): zeros beyond the scale
    must not cost a trip to the Python reference."""
    from mantra import _fixed
    from mantra.fixed import _to_fixed_py, side_rows

    def no_fallback(text, scale):
        raise AssertionError(f"{text!r} left the C path")

    _fixed.set_fallback(no_fallback, FixedPointError)
    try:
        assert to_fixed("60000.01000000", 2) == 6_000_001 and to_fixed("-0.50", 1) == -5
        assert to_fixed("7.000", 0) == 7 and to_fixed("9223372036854775807.000", 0) == 2**63 - 1
        assert side_rows(1, [["60000.01000000", "0.00150000"]], 2, 5) == [(1, 6_000_001, 150)]
    finally:
        _fixed.set_fallback(_to_fixed_py, FixedPointError)
    with pytest.raises(FixedPointError, match="significant decimals"):
        to_fixed("60000.01000001", 2)
