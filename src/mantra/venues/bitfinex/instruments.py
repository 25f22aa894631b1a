"""Bitfinex instrument metadata from ``GET /v2/conf/pub:info:pair``.

The body is ``[[[PAIR, [_, _, _, MIN_ORDER_SIZE, MAX_ORDER_SIZE, ...]], ...]]`` (the field positions
are recalled, not documented verbatim: ../shared/research/exchanges.md 3.6).  Bitfinex prices have
5 significant digits (the venue's own checksum tests use a price of 1.7e-8, 9 decimals), amounts at
most 8 decimals: prices are kept with 10 decimals, amounts with 8.  The venue writes numbers trimmed
(JavaScript form), so there is no fixed number of written decimals.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation

import msgspec

PRICE_SCALE = 10  # 1e7 (e.g. a JPY price) * 1e10 still fits an int64
SIZE_SCALE = 8
_DECODER = msgspec.json.Decoder(float_hook=str)  # numbers as their exact text


def split_pair(pair: str) -> tuple[str, str]:
    """``"BTCUSD" -> ("BTC", "USD")``; ``"TESTBTC:TESTUSD"`` splits on the colon."""
    base, sep, quote = pair.partition(":")
    return (base, quote) if sep else (pair[:3], pair[3:])


def parse_instruments(body: bytes) -> list[dict]:
    """One spec per pair, symbol ``t<PAIR>``, ready for ``InstrumentRegistry.add("bitfinex", **spec)``."""
    data = _DECODER.decode(body)
    if not (isinstance(data, list) and data and isinstance(data[0], list)):
        raise ValueError("expected [[[PAIR, [...]], ...]]")
    out = []
    for row in data[0]:
        if not (isinstance(row, list) and len(row) >= 2 and isinstance(row[0], str) and isinstance(row[1], list)):
            raise ValueError(f"unexpected pair entry {row!r}")
        pair, info = row[0], row[1]
        min_size = info[3] if len(info) > 3 and info[3] is not None else "0"
        try:
            min_fixed = int(Decimal(str(min_size)).scaleb(SIZE_SCALE).to_integral_value(ROUND_CEILING))
        except InvalidOperation:
            raise ValueError(f"{pair}: minimum order size {min_size!r} is not a number") from None
        base, quote = split_pair(pair)
        out.append(dict(symbol="t" + pair, base=base, quote=quote, price_scale=PRICE_SCALE, size_scale=SIZE_SCALE,
                        tick=1, lot=1, min_size=min_fixed, min_notional=0))
    return out
