"""Exact conversion between venue decimal strings and fixed-point integers.

A value with scale ``s`` is stored as ``int(value * 10**s)``.  Venue strings never pass through
float: digits are spliced, and any non-zero digit beyond the scale is an error, not a rounding.
Exponent forms (``1e-08``) are exact too, whatever their digits or exponent (integer arithmetic,
never a decimal context).  Values must fit an int64 and scales lie in 0..18; anything else is a
:class:`FixedPointError`.
"""

from __future__ import annotations

import operator
import re

from . import _fixed


class FixedPointError(ValueError):
    """A decimal string that cannot be represented exactly at the requested scale (or within
    int64), a malformed one, or a scale outside 0..18."""


MAX_SCALE = 18  # 10**18 is the largest power of ten in an int64
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_POW10 = [10**i for i in range(MAX_SCALE + 1)]
# sign, whole digits, fraction digits, exponent: ASCII only (no "_", no other scripts' digits)
_NUMBER = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?")


def _scale(scale) -> int:
    scale = operator.index(scale)
    if not 0 <= scale <= MAX_SCALE:
        raise FixedPointError(f"scale {scale!r} is outside 0..{MAX_SCALE}")
    return scale


def _show(text) -> str:
    r = repr(text)
    return r if len(r) <= 40 else r[:37] + "..."


def _to_fixed_py(text: str, scale: int) -> int:
    """``to_fixed`` in Python: the reference, and what the C version hands anything but a plain
    decimal to (so both give the same value or the same error).

    Exact by construction: integer arithmetic on the digits and the exponent, no decimal context
    (which would round to its precision, flush tiny values to 0 and raise its own exceptions).
    """
    if type(scale) is not int or not 0 <= scale <= MAX_SCALE:
        scale = _scale(scale)
    m = _NUMBER.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise FixedPointError(f"{_show(text)} is not a decimal number")
    sign, whole, frac, exp = m.groups("")
    if not (whole or frac):
        raise FixedPointError(f"{_show(text)} is not a decimal number")
    digits = (whole + frac).lstrip("0")
    if not digits:
        return 0
    # value = int(digits) * 10**e, with digits free of trailing zeros
    kept = digits.rstrip("0")
    e = scale - len(frac) + len(digits) - len(kept)
    if exp:
        mag = exp.lstrip("+-").lstrip("0")
        if len(mag) > 20:  # beyond any text's length: only its sign matters
            mag = "1" + "0" * 20
        e += -int(mag or "0") if exp[0] == "-" else int(mag or "0")
    if e < 0:  # kept has no trailing zero, so 10**-e cannot divide it
        raise FixedPointError(f"{_show(text)} has more than {scale} significant decimals")
    if len(kept) + e > 19:  # at least 10**19: beyond int64 (and never a huge power of ten)
        raise FixedPointError(f"{_show(text)} at scale {scale} is outside int64")
    v = int(kept) * 10**e
    v = -v if sign == "-" else v
    if not INT64_MIN <= v <= INT64_MAX:
        raise FixedPointError(f"{_show(text)} at scale {scale} is outside int64")
    return v


def from_fixed(value: int, scale: int, min_decimals: int = 0) -> str:
    """``12345, 2 -> "123.45"``; trailing zeros trimmed down to ``min_decimals`` decimals."""
    if not 0 <= scale <= MAX_SCALE:
        _scale(scale)
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
    _scale(from_scale)
    _scale(to_scale)
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
_fixed.set_fallback(_to_fixed_py, FixedPointError)
# ``to_fixed("123.4500", 2) -> 12345``; raises FixedPointError on inexact, out-of-int64 or malformed
# input and on a scale outside 0..18.
to_fixed = _fixed.to_fixed
# ``side_rows(side, [[price, size], ...], price_scale, size_scale) -> [(side, price, size), ...]``:
# a venue's levels of one side, converted exactly (one C call per side).
side_rows = _fixed.side_rows
