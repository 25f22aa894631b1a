"""Binance spot instrument metadata from ``GET /api/v3/exchangeInfo``."""

from __future__ import annotations

import msgspec

from ...fixed import decimals_of, to_fixed


class _Symbol(msgspec.Struct):
    symbol: str
    baseAsset: str
    quoteAsset: str
    status: str = "TRADING"
    baseAssetPrecision: int = 8
    quoteAssetPrecision: int = 8
    filters: list[dict] = []


class _Info(msgspec.Struct):
    symbols: list[_Symbol]


def _step_decimals(text: str) -> int:
    # "0.01000000" -> 2: the increment's significant decimals, not the padding Binance writes.
    return decimals_of(text.rstrip("0")) if "." in text else 0


def parse_instruments(body: bytes) -> list[dict]:
    """One spec per symbol, ready for ``InstrumentRegistry.add("binance", **spec)``."""
    out = []
    for s in msgspec.json.decode(body, type=_Info).symbols:
        f = {x.get("filterType"): x for x in s.filters}
        tick_text = f.get("PRICE_FILTER", {}).get("tickSize", "0")
        step_text = f.get("LOT_SIZE", {}).get("stepSize", "0")
        # A filter value of 0 disables that rule; fall back to the asset precision for the scale.
        price_scale = _step_decimals(tick_text) if tick_text.strip("0.") else s.quoteAssetPrecision
        size_scale = _step_decimals(step_text) if step_text.strip("0.") else s.baseAssetPrecision
        notional = f.get("NOTIONAL", f.get("MIN_NOTIONAL", {})).get("minNotional", "0")
        out.append(
            dict(
                symbol=s.symbol,
                base=s.baseAsset,
                quote=s.quoteAsset,
                price_scale=price_scale,
                size_scale=size_scale,
                tick=to_fixed(tick_text, price_scale) or 1,
                lot=to_fixed(step_text, size_scale) or 1,
                min_size=to_fixed(f.get("LOT_SIZE", {}).get("minQty", "0"), size_scale),
                min_notional=to_fixed(notional, price_scale),
                # Binance writes every price and quantity with the asset precision (8 decimals).
                price_decimals=s.quoteAssetPrecision,
                size_decimals=s.baseAssetPrecision,
            )
        )
    return out
