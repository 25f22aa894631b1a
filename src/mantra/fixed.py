"""Exact conversion between venue decimal strings and fixed-point integers.

A value with scale ``s`` is stored as ``int(value * 10**s)``.  Venue strings never pass through
float: digits are spliced, and any non-zero digit beyond the scale is an error, not a rounding.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


class FixedPointError(ValueError):
    """A decimal string that cannot be represented exactly at the requested scale."""


_POW10 = [10**i for i in range(40)]


def to_fixed(text: str, scale: int) -> int:
    """``"123.4500", 2 -> 12345``; raises FixedPointError on inexact or malformed input."""
    whole, _, frac = text.partition(".")
    if len(frac) <= scale:  # hot path: a plain non-negative decimal that fits the scale
        digits = whole + frac
        if digits.isdigit() and digits.isascii():
            return int(digits) * _POW10[scale - len(frac)]
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


def side_rows(side: int, rows, price_scale: int, size_scale: int) -> list[tuple[int, int, int]]:
    """Venue ``[[price, size], ...]`` strings -> ``(side, price, size)`` ints, exactly.

    ``to_fixed`` inlined for the common case (no more decimals than the scale): one function call
    per side instead of two per level is a third of a typical book frame's cost.
    """
    out = []
    for p, q in rows:
        w, _, f = p.partition(".")
        d = w + f
        price = int(d) * _POW10[price_scale - len(f)] \
            if len(f) <= price_scale and d.isdigit() and d.isascii() else to_fixed(p, price_scale)
        w, _, f = q.partition(".")
        d = w + f
        size = int(d) * _POW10[size_scale - len(f)] \
            if len(f) <= size_scale and d.isdigit() and d.isascii() else to_fixed(q, size_scale)
        out.append((side, price, size))
    return out
