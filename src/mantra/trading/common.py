"""What every trading actor shares: the instrument registry from params, fixed-point money, and
ports named by configuration.

Money is exact integer arithmetic.  A trade of ``size`` at ``price`` is worth
``price * size / 10**size_scale`` quote units at the instrument's price scale; when that is not a
whole unit the venue rounds in its own favour: a buyer pays the ceiling, a seller receives the
floor, fees are the ceiling.  Balances of an asset on a venue are kept at one scale per
(venue, asset): the widest scale any instrument of that venue uses for the asset.
"""

from __future__ import annotations

from pathlib import Path

from ..fixed import to_fixed
from ..instruments import Instrument, InstrumentRegistry

_SPEC_SCALE = {"tick": "price_scale", "min_notional": "price_scale", "lot": "size_scale", "min_size": "size_scale"}
BPS = 10_000


def load_registry(spec, system: str = "") -> InstrumentRegistry:
    """The instruments an actor trades.  ``spec``: a saved registry (path), or a list of inline
    specs ``{venue, symbol, base, quote, price_scale, size_scale, tick, lot, ...}`` (tick, lot,
    min_size, min_notional may be decimal text such as "0.01", converted exactly at the
    instrument's scale).

    In a running system (``system`` set) the result is the system's shared registry, the one the
    feeds use: the system's instruments (``[system] instruments`` and every actor's inline list)
    were registered there when the spine was created, before any actor started, so ids and terms
    agree across actors and processes; an empty list means "those, and the instruments the feeds
    registered".  Without a system (unit tests), ids follow list order."""
    if isinstance(spec, InstrumentRegistry):
        return spec
    if isinstance(spec, (str, Path)):
        return InstrumentRegistry.load(spec)
    if system:
        from ..feeds.actor import system_registry

        reg = system_registry(system)
    else:
        reg = InstrumentRegistry()
    for d in spec or ():
        register_spec(reg, d)
    return reg


def register_spec(reg: InstrumentRegistry, d: dict) -> Instrument:
    """Register one inline spec (decimal-text increments converted at the instrument's scale); an
    instrument already there with other terms is an error naming both."""
    if not isinstance(d, dict):
        raise ValueError(f"expected a table with venue, symbol, ..., not {d!r}")
    d = dict(d)
    venue, symbol = d.pop("venue"), d.pop("symbol")
    for k, sk in _SPEC_SCALE.items():
        if isinstance(d.get(k), str):
            d[k] = to_fixed(d[k], int(d.get(sk, 8)))
    old = reg.by_key.get((venue.lower(), symbol))
    inst = old if old is not None else reg.add(venue, symbol, **d)
    differ = {k: (getattr(inst, k), v) for k, v in d.items() if getattr(inst, k) != v}
    if differ:  # another process registered it first with other terms
        raise ValueError(f"{venue}:{symbol} is registered with other terms: "
                         + ", ".join(f"{k} {a!r} there, {b!r} here" for k, (a, b) in differ.items()))
    return inst


def register_instruments(system: str, specs) -> None:
    """Register ``(where, inline spec)`` pairs in the system's shared registry, in order (ids
    follow): called when the spine is created, before any actor starts."""
    from ..feeds.actor import system_registry

    reg = system_registry(system)
    for where, d in specs:
        try:
            register_spec(reg, d)
        except (TypeError, ValueError, KeyError) as e:
            raise ValueError(f"{where}: {e}") from None


def resolve(reg: InstrumentRegistry, ref) -> Instrument:
    """An instrument by id or by ``"venue:symbol"``."""
    if isinstance(ref, int):
        return reg[ref]
    venue, sep, symbol = str(ref).partition(":")
    if not sep:
        raise ValueError(f"instrument {ref!r}: expected an id or 'venue:symbol'")
    return reg.get(venue, symbol)


def asset_scales(reg: InstrumentRegistry) -> dict[tuple[str, str], int]:
    """(venue, asset) -> the scale balances of that asset are kept at."""
    out: dict[tuple[str, str], int] = {}
    for i in reg:
        for asset, s in ((i.base, i.size_scale), (i.quote, i.price_scale)):
            k = (i.venue, asset)
            out[k] = max(out.get(k, 0), s)
    return out


def cost(price: int, size: int, size_scale: int) -> int:
    """What a buyer pays (quote, price scale): rounded up."""
    return -(-price * size // 10**size_scale)


def proceeds(price: int, size: int, size_scale: int) -> int:
    """What a seller receives (quote, price scale): rounded down."""
    return price * size // 10**size_scale


def fee(price: int, size: int, size_scale: int, bps: int) -> int:
    """Fee on a trade (quote, price scale): rounded up."""
    return -(-price * size * bps // (10**size_scale * BPS))


def buy_lock(price: int, size: int, size_scale: int, fee_bps: int) -> int:
    """Quote a buy of ``size`` at limit ``price`` can cost at most, fee included: ``cost`` plus
    ``fee``, inlined (the overseer's checks call this per open order)."""
    n, unit = price * size, 10**size_scale
    return -(-n // unit) - (-n * fee_bps // (unit * BPS))


def settings(what: str, cls, cfg, **fixed):
    """``cls(**fixed, **cfg)`` for one entry of a ``venues`` param: keys outside ``cls.KEYS`` are
    an error naming them (a misspelt setting never silently keeps its default)."""
    cfg = cfg or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{what}: expected a table of settings, not {cfg!r}")
    unknown = sorted(set(cfg) - set(cls.KEYS))
    if unknown:
        raise ValueError(f"{what}: unknown settings {unknown} (known: {', '.join(cls.KEYS)})")
    try:
        return cls(**fixed, **cfg)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: {e}") from None


def bind_ports(actor, ports, handler) -> tuple[str, ...]:
    """Declare input ports named by configuration (e.g. one per venue's L2 queue), all handled by
    ``handler``; returns them for the actor's ``inputs``."""
    ports = tuple(ports)
    for p in ports:
        if not isinstance(p, str) or not p.isidentifier() or hasattr(type(actor), f"on_{p}"):
            raise ValueError(f"{type(actor).__name__}: port name {p!r} is not usable")
        setattr(actor, f"on_{p}", handler)
    return ports
