"""Exact fixed-point L2 book for one (venue, instrument).

Each side is a ``dict`` price -> size (public, for fast iteration and lookups) plus a sorted list
of its prices.  The list is touched only when a level appears or disappears (a C-level bisect and
memmove), never when a size changes, which is the common case.  It makes the best price O(1) with
no rescans, and ``top(n)`` a slice: Kraken and Bitfinex checksum the top 10/25 levels after every
update, which a dict-only book could only do by sorting up to 1000 keys each time.

``bids`` and ``asks`` are read-only for callers: change the book only through ``apply``.

This one is the reference for :data:`Book`, the same book in C: the venue protocols keep theirs in
it (``Book(depth)``: ``apply_levels``, ``truncate``, ``top_prices`` and the venues' checksums, with
the semantics defined here and in the venues' Python checksum code), and consumers of ``L2Update``
streams (models, the mock exchange) keep it too, filled by the runtime from their input ports
(``Actor.book_ports``).  The simulators keep this one (dict access).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator

from ._spine import Book  # noqa: F401  apply(_levels), clear, best_bid/ask, crossed, levels/top(_prices), size, take,
# truncate, bids/asks, kraken_checksum, bitfinex_checksum

_MAX = (1 << 63) - 1  # levels go out in int64 message fields


class L2Book:
    __slots__ = ("bids", "asks", "depth", "_bp", "_ap")

    def __init__(self, depth: int = 0):
        """``depth > 0``: ``truncate()`` (called at message boundaries) keeps the best ``depth`` levels."""
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.depth = depth
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bp: list[int] = []  # bid prices ascending: best is the last
        self._ap: list[int] = []  # ask prices ascending: best is the first

    def apply(self, side: int, price: int, size: int) -> None:
        """Set a level's size; size 0 deletes it (deleting a missing level is a no-op).

        ``ValueError`` (and nothing changed) for a negative size, or a price outside 1..int64 max
        (checked when a level is created: a held one was checked then).  Sizes are not bounded here:
        the venues' converter (``fixed.to_fixed``/``side_rows``) refuses anything beyond int64.
        """
        if side > 0:
            d, keys = self.bids, self._bp
        else:
            d, keys = self.asks, self._ap
        if size > 0:
            if price not in d:
                if not 0 < price <= _MAX:
                    raise ValueError(f"price {price} outside 1..int64")
                insort(keys, price)
            d[price] = size
        elif size == 0:
            if d.pop(price, None) is not None:
                del keys[bisect_left(keys, price)]
            elif not 0 < price <= _MAX:
                raise ValueError(f"price {price} outside 1..int64")
        else:
            raise ValueError(f"negative size {size} at price {price}")

    def apply_levels(self, levels) -> list[tuple[int, int]]:
        """One message's ``(side, price, size)`` levels in order, then ``truncate()`` if the book has
        a depth: the dropped ``(side, price)``.  A level ``apply`` refuses raises (those before it stay)."""
        for side, price, size in levels:
            self.apply(side, price, size)
        return self.truncate() if self.depth else []

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self._bp.clear()
        self._ap.clear()

    def best_bid(self) -> int | None:
        bp = self._bp
        return bp[-1] if bp else None

    def best_ask(self) -> int | None:
        ap = self._ap
        return ap[0] if ap else None

    def top(self, side: int, n: int) -> list[tuple[int, int]]:
        """The best ``n`` levels of a side, best first."""
        if n <= 0:
            return []
        if side > 0:
            d = self.bids
            return [(p, d[p]) for p in self._bp[: -n - 1 : -1]]
        d = self.asks
        return [(p, d[p]) for p in self._ap[:n]]

    def top_prices(self, side: int, n: int) -> list[int]:
        """Prices of the best ``n`` levels, best first (checksums read sizes from the dict)."""
        if n <= 0:
            return []
        return self._bp[: -n - 1 : -1] if side > 0 else self._ap[:n]

    def levels(self, side: int) -> Iterator[tuple[int, int]]:
        """All levels of a side, best first (a snapshot of the keys: safe while applying)."""
        if side > 0:
            d = self.bids
            return ((p, d[p]) for p in self._bp[::-1])
        d = self.asks
        return ((p, d[p]) for p in list(self._ap))

    def crossed(self) -> bool:
        bp, ap = self._bp, self._ap
        return bool(bp and ap and bp[-1] >= ap[0])

    def truncate(self, depth: int | None = None) -> list[tuple[int, int]]:
        """Drop levels beyond ``depth`` (default: the book's own) per side.

        Returns the removed ``(side, price)`` pairs so a protocol can emit their deletions: venues
        with a subscribed depth send no delete for a level that falls out of scope.
        """
        if depth is None:
            depth = self.depth
        bp, ap = self._bp, self._ap
        if depth <= 0 or (len(bp) <= depth and len(ap) <= depth):
            return []
        out: list[tuple[int, int]] = []
        if len(bp) > depth:
            cut = len(bp) - depth
            bids = self.bids
            for p in bp[:cut]:
                del bids[p]
                out.append((1, p))
            del bp[:cut]
        if len(ap) > depth:
            asks = self.asks
            for p in ap[depth:]:
                del asks[p]
                out.append((-1, p))
            del ap[depth:]
        return out

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)

    def __repr__(self) -> str:
        return f"L2Book(bids={len(self.bids)}, asks={len(self.asks)}, best={self.best_bid()}/{self.best_ask()})"
