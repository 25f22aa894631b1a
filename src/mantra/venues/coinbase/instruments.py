"""Coinbase instrument metadata: Advanced Trade ``GET /api/v3/brokerage/market/products``
(``{"products": [...]}``) or the Exchange ``GET /products`` (a list)."""

from __future__ import annotations

import msgspec

from ...fixed import decimals_of, to_fixed


class _Product(msgspec.Struct):
    product_id: str = ""  # Advanced Trade
    id: str = ""  # Exchange
    base_increment: str = "0.00000001"
    quote_increment: str = "0.01"
    price_increment: str = ""  # Advanced Trade; the tick when present
    base_min_size: str = "0"
    quote_min_size: str = ""  # Advanced Trade minimum notional
    min_market_funds: str = ""  # Exchange minimum notional
    base_currency_id: str = ""
    quote_currency_id: str = ""
    base_currency: str = ""
    quote_currency: str = ""


class _Products(msgspec.Struct):
    products: list[_Product]


def _step_decimals(text: str) -> int:
    return decimals_of(text.rstrip("0")) if "." in text else 0


def parse_instruments(body: bytes) -> list[dict]:
    """One spec per product, ready for ``InstrumentRegistry.add("coinbase", **spec)``."""
    raw = msgspec.json.decode(body)
    products = msgspec.convert(raw, list[_Product] if isinstance(raw, list) else _Products)
    if not isinstance(products, list):
        products = products.products
    out = []
    for p in products:
        symbol = p.product_id or p.id
        tick = p.price_increment or p.quote_increment
        price_scale, size_scale = _step_decimals(tick), _step_decimals(p.base_increment)
        base, _, quote = symbol.partition("-")
        out.append(
            dict(
                symbol=symbol,
                base=p.base_currency_id or p.base_currency or base,
                quote=p.quote_currency_id or p.quote_currency or quote,
                price_scale=price_scale,
                size_scale=size_scale,
                tick=to_fixed(tick, price_scale),
                lot=to_fixed(p.base_increment, size_scale),
                min_size=to_fixed(p.base_min_size or "0", size_scale),
                min_notional=to_fixed(p.quote_min_size or p.min_market_funds or "0", price_scale),
                price_decimals=price_scale,
                size_decimals=size_scale,
            )
        )
    return out
