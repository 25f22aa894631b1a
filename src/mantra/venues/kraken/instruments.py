"""Kraken spot instrument metadata: REST ``AssetPairs`` and the WebSocket v2 ``instrument`` channel.

Kraken writes every book price with the pair's price precision and every quantity with its lot
precision, trailing zeros included, and its book checksum hashes exactly those digits.  So the
scales are those precisions: a checksum digit string is then just ``str(value)``.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

import msgspec


class _Pair(msgspec.Struct):
    wsname: str = ""
    altname: str = ""
    pair_decimals: int = 8
    lot_decimals: int = 8
    ordermin: str = "0"
    costmin: str = "0"
    tick_size: str = ""


class _AssetPairs(msgspec.Struct):
    result: dict[str, _Pair] = {}
    error: list[str] = []


def _ceil_fixed(text, scale: int) -> int:
    # Minimums may carry more decimals than the scale: round up, a minimum must stay a minimum.
    return int((Decimal(str(text)).scaleb(scale)).to_integral_value(ROUND_CEILING))


def _spec(symbol: str, pd: int, qd: int, tick, lot, min_size, min_cost) -> dict:
    base, _, quote = symbol.partition("/")
    return dict(
        symbol=symbol,
        base=base,
        quote=quote,
        price_scale=pd,
        size_scale=qd,
        tick=max(_ceil_fixed(tick, pd), 1) if tick not in (None, "") else 1,
        lot=max(_ceil_fixed(lot, qd), 1) if lot not in (None, "") else 1,
        min_size=_ceil_fixed(min_size or 0, qd),
        min_notional=_ceil_fixed(min_cost or 0, pd),
        price_decimals=pd,
        size_decimals=qd,
    )


def parse_instruments(body: bytes) -> list[dict]:
    """``GET /0/public/AssetPairs`` -> specs keyed by the v1 WebSocket name (``wsname``, e.g. ``XBT/USD``)."""
    msg = msgspec.json.decode(body, type=_AssetPairs)
    if msg.error:
        raise ValueError(f"AssetPairs error: {msg.error}")
    out = []
    for key, p in msg.result.items():
        name = p.wsname or p.altname or key
        out.append(_spec(name, p.pair_decimals, p.lot_decimals, p.tick_size, None, p.ordermin, p.costmin))
    return out


def spec_from_v2_pair(pair: dict) -> dict:
    """One ``data.pairs[]`` entry of the v2 ``instrument`` channel (numbers as raw text or ints)."""
    return _spec(
        pair["symbol"],
        int(pair["price_precision"]),
        int(pair["qty_precision"]),
        pair.get("price_increment"),
        pair.get("qty_increment"),
        pair.get("qty_min"),
        pair.get("cost_min"),
    )

