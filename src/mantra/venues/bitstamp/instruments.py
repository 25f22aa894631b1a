"""Bitstamp instrument metadata from ``GET /api/v2/trading-pairs-info/`` or ``GET /api/v2/markets/``."""

from __future__ import annotations

import msgspec

from ...fixed import to_fixed


class _Pair(msgspec.Struct):
    name: str  # "BTC/USD"
    base_decimals: int
    counter_decimals: int
    url_symbol: str = ""  # trading-pairs-info
    market_symbol: str = ""  # markets
    minimum_order: str = ""  # trading-pairs-info: "10.0 USD"
    minimum_order_value: str = ""  # markets: "10"
    trading: str = "Enabled"


def parse_instruments(body: bytes) -> list[dict]:
    """One spec per pair, ready for ``InstrumentRegistry.add("bitstamp", **spec)``.

    Bitstamp gives decimals, not increments: tick and lot are one unit of the last decimal.
    """
    out = []
    for p in msgspec.json.decode(body, type=list[_Pair]):
        base, _, quote = p.name.partition("/")
        minimum = p.minimum_order_value or p.minimum_order.split(" ")[0] or "0"
        out.append(
            dict(
                symbol=p.url_symbol or p.market_symbol,
                base=base,
                quote=quote,
                price_scale=p.counter_decimals,
                size_scale=p.base_decimals,
                tick=1,
                lot=1,
                min_size=0,
                min_notional=to_fixed(minimum, p.counter_decimals),
                price_decimals=p.counter_decimals,
                size_decimals=p.base_decimals,
            )
        )
    return out
