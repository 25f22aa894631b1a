"""Venue name -> sans-IO protocol class and the options it gets unless told otherwise."""

from __future__ import annotations

import importlib

# venue -> (module, class name, default options).  Imported on first use: a process that feeds
# one venue does not load the others.
PROTOCOLS: dict[str, tuple[str, str, dict]] = {
    "binance": ("mantra.venues.binance.protocol", "BinanceProtocol", {}),
    "bitstamp": ("mantra.venues.bitstamp.protocol", "BitstampProtocol", {}),
    "coinbase": ("mantra.venues.coinbase.protocol", "CoinbaseProtocol", {"api": "advanced"}),
    "kraken": ("mantra.venues.kraken.protocol", "KrakenProtocol", {}),
    "bitfinex": ("mantra.venues.bitfinex.protocol", "BitfinexProtocol", {}),
}


def protocol_class(venue: str) -> type:
    try:
        module, name, _ = PROTOCOLS[venue.lower()]
    except KeyError:
        raise ValueError(f"unknown venue {venue!r}; known: {', '.join(PROTOCOLS)}") from None
    return getattr(importlib.import_module(module), name)


def make_protocol(venue: str, registry, symbols: list[str], **opts):
    """A ready protocol for ``venue``: the defaults above, overridden by ``opts``."""
    cls = protocol_class(venue)
    return cls(registry, symbols, **{**PROTOCOLS[venue.lower()][2], **opts})
