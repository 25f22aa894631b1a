"""Instrument registry: (venue, symbol) -> compact id, with exact price/size scales.

Prices and sizes travel the spine as fixed-point integers: ``price_int = price * 10**price_scale``.
``tick`` and ``lot`` are the venue's increments expressed in those integer units, so a valid price
satisfies ``price_int % tick == 0``.  Ids are stable for a registry: assigned in order of
registration, or loaded from a saved registry so every process of a system agrees.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .fixed import from_fixed, to_fixed

VENUES = ("binance", "bitstamp", "bitfinex", "coinbase", "kraken")
VENUE_IDS = {v: i + 1 for i, v in enumerate(VENUES)}


@dataclass(frozen=True)
class Instrument:
    id: int
    venue: str
    symbol: str  # the venue's own spelling, e.g. "BTCUSDT", "XBT/USD", "tBTCUSD", "BTC-USD"
    base: str = ""
    quote: str = ""
    price_scale: int = 8  # decimals kept in the fixed-point price
    size_scale: int = 8  # decimals kept in the fixed-point size
    tick: int = 1  # price increment, in price_scale units
    lot: int = 1  # size increment, in size_scale units
    min_size: int = 0  # in size_scale units
    min_notional: int = 0  # in price_scale units (price * size / 10**size_scale)
    price_decimals: int = -1  # decimals the venue writes (Kraken's checksum needs them); -1 unknown
    size_decimals: int = -1

    @property
    def key(self) -> tuple[str, str]:
        return (self.venue, self.symbol)

    def price(self, text: str) -> int:
        return to_fixed(text, self.price_scale)

    def size(self, text: str) -> int:
        return to_fixed(text, self.size_scale)

    def price_str(self, value: int) -> str:
        return from_fixed(value, self.price_scale, max(self.price_decimals, 0))

    def size_str(self, value: int) -> str:
        return from_fixed(value, self.size_scale, max(self.size_decimals, 0))


@dataclass
class InstrumentRegistry:
    """All instruments a system knows; ids are 1-based and dense."""

    by_id: dict[int, Instrument] = field(default_factory=dict)
    by_key: dict[tuple[str, str], Instrument] = field(default_factory=dict)

    def add(self, venue: str, symbol: str, **spec) -> Instrument:
        """Register (or return the existing) instrument; a conflicting spec is an error."""
        venue = venue.lower()
        old = self.by_key.get((venue, symbol))
        if old is not None:
            if spec and any(getattr(old, k) != v for k, v in spec.items()):
                raise ValueError(f"{venue}:{symbol} already registered with a different spec")
            return old
        inst = Instrument(id=len(self.by_id) + 1, venue=venue, symbol=symbol, **spec)
        self.by_id[inst.id] = inst
        self.by_key[inst.key] = inst
        return inst

    def get(self, venue: str, symbol: str) -> Instrument:
        try:
            return self.by_key[(venue.lower(), symbol)]
        except KeyError:
            raise KeyError(f"unknown instrument {venue}:{symbol}") from None

    def __getitem__(self, iid: int) -> Instrument:
        return self.by_id[iid]

    def __iter__(self):
        return iter(self.by_id.values())

    def __len__(self) -> int:
        return len(self.by_id)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps([asdict(i) for i in self.by_id.values()], indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "InstrumentRegistry":
        return cls.parse(Path(path).read_text())

    @classmethod
    def parse(cls, text: str) -> "InstrumentRegistry":
        reg = cls()
        for d in json.loads(text):
            inst = Instrument(**d)
            reg.by_id[inst.id] = inst
            reg.by_key[inst.key] = inst
        return reg
