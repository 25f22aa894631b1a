"""Exact conversion between venue decimal strings and fixed-point integers.

A value with scale ``s`` is stored as ``int(value * 10**s)``.  Venue strings never pass through
float: digits are spliced, and any non-zero digit beyond the scale is an error, not a rounding.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from . import _fixed


class FixedPointError(ValueError):
    """A decimal string that cannot be represented exactly at the requested scale."""


_POW10 = [10**i for i in range(40)]


def _to_fixed_py(text: str, scale: int) -> int:
    """``to_fixed`` in Python: the reference, and what the C version hands anything but a plain
    decimal to (so both raise the same errors)."""
    s = text.strip()
    if "e" in s or "E" in s:
        return _from_exponent(s, scale)
    whole, dot, frac = s.partition(".")
    if len(frac) > scale:
        extra = frac[scale:]
        if extra.strip("0"):
            raise FixedPointError(f"{text!r} has more than {scale} significant decimals")
        frac = frac[:scale]
    neg = whole.startswith("-")
    if neg or whole.startswith("+"):
        whole = whole[1:]
    digits = whole + frac
    if not digits or not digits.isdigit() or not digits.isascii():
        raise FixedPointError(f"{text!r} is not a decimal number")
    v = int(digits) * _POW10[scale - len(frac)]
    return -v if neg else v


def _from_exponent(s: str, scale: int) -> int:
    # Rare path (JSON numbers such as 1e-08): Decimal is exact, unlike float.
    try:
        d = Decimal(s).scaleb(scale)
    except InvalidOperation:
        raise FixedPointError(f"{s!r} is not a decimal number") from None
    if not d.is_finite() or d != d.to_integral_value():
        raise FixedPointError(f"{s!r} has more than {scale} significant decimals")
    return int(d)


def from_fixed(value: int, scale: int, min_decimals: int = 0) -> str:
    """``12345, 2 -> "123.45"``; trailing zeros trimmed down to ``min_decimals`` decimals."""
    neg = value < 0
    q, r = divmod(-value if neg else value, _POW10[scale])
    if scale == 0:
        out = str(q)
    else:
        frac = str(r).rjust(scale, "0").rstrip("0")
        if len(frac) < min_decimals:
            frac = frac.ljust(min_decimals, "0")
        out = f"{q}.{frac}" if frac else str(q)
    return "-" + out if neg else out


def rescale(value: int, from_scale: int, to_scale: int) -> int:
    """Change scale exactly; raises if precision would be lost."""
    if to_scale >= from_scale:
        return value * _POW10[to_scale - from_scale]
    q, r = divmod(value, _POW10[from_scale - to_scale])
    if r:
        raise FixedPointError(f"{value} at scale {from_scale} is not exact at scale {to_scale}")
    return q


def decimals_of(text: str) -> int:
    """Number of decimals written in a venue string (``"0.05000" -> 5``)."""
    return len(text.partition(".")[2])


# The venues' hot path: C for plain decimals, the Python above for the rest.
_fixed.set_fallback(_to_fixed_py)
# ``to_fixed("123.4500", 2) -> 12345``; raises FixedPointError on inexact or malformed input.
to_fixed = _fixed.to_fixed
# ``side_rows(side, [[price, size], ...], price_scale, size_scale) -> [(side, price, size), ...]``:
# a venue's levels of one side, converted exactly (one C call per side).
side_rows = _fixed.side_rows
