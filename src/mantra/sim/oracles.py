"""The checksums the simulators publish, written from the venues' documents.

Deliberately independent of the protocols' own (``venues/kraken``, ``venues/bitfinex``): a
simulator that computed its checksums with the code under test would agree with any bug in it.
The tests hold both these and the protocols to the venues' documented vectors.
"""

from __future__ import annotations

import zlib

from ..book import L2Book
from ..fixed import from_fixed
from .market import ASK, BID


def kraken_checksum(book: L2Book, price_decimals: int, size_decimals: int, price_scale: int | None = None,
                    size_scale: int | None = None) -> int:
    """CRC32 of the top 10 asks (ascending) then bids (descending): each price and quantity
    written with the pair's precision, ``.`` removed, leading zeros stripped."""
    ps = price_decimals if price_scale is None else price_scale
    ss = size_decimals if size_scale is None else size_scale

    def text(v: int, scale: int, decimals: int) -> str:
        return from_fixed(v, scale, decimals).replace(".", "").lstrip("0")

    parts = [text(p, ps, price_decimals) + text(s, ss, size_decimals)
             for side in (ASK, BID) for p, s in book.top(side, 10)]
    return zlib.crc32("".join(parts).encode())


def bitfinex_checksum(bids: list[str], asks: list[str]) -> int:
    """Signed CRC32 of ``bid0:ask0:bid1:ask1...`` (``"price:amount"`` fragments, best first, top 25)."""
    parts = []
    for i in range(25):
        if i < len(bids):
            parts.append(bids[i])
        if i < len(asks):
            parts.append(asks[i])
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc
