"""What every trading actor shares: the instrument registry from params, fixed-point money, and
ports named by configuration.

Money is exact integer arithmetic.  A trade of ``size`` at ``price`` is worth
``price * size / 10**size_scale`` quote units at the instrument's price scale; when that is not a
whole unit the venue rounds in its own favour: a buyer pays the ceiling, a seller receives the
floor, fees are the ceiling.  Balances of an asset on a venue are kept at one scale per
(venue, asset): the widest scale any instrument of that venue uses for the asset.
"""

from __future__ import annotations

import json
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

    In a running system (``system`` set) inline specs are registered in the system's shared
    registry, the one the feeds use, so ids agree across actors and processes whatever the order
    they start in, and so are the system's own (``[system] instruments``, listed once for every
    actor); an empty list then means "those, and the instruments the feeds registered".  Without
    a system (unit tests), ids follow list order."""
    if isinstance(spec, InstrumentRegistry):
        return spec
    if isinstance(spec, (str, Path)):
        return InstrumentRegistry.load(spec)
    if system:
        from ..feeds.actor import system_registry
        from ..runtime import paths

        reg = system_registry(system)
        man = paths.manifest(paths.system_dir(system))
        shared = json.loads(man.read_text()).get("instruments", []) if man.exists() else []
    else:
        reg, shared = InstrumentRegistry(), []
    for d in list(shared) + list(spec or ()):
        d = dict(d)
        venue, symbol = d.pop("venue"), d.pop("symbol")
        for k, sk in _SPEC_SCALE.items():
            if isinstance(d.get(k), str):
                d[k] = to_fixed(d[k], int(d.get(sk, 8)))
        reg.add(venue, symbol, **d)
    return reg


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


def bind_ports(actor, ports, handler) -> tuple[str, ...]:
    """Declare input ports named by configuration (e.g. one per venue's L2 queue), all handled by
    ``handler``; returns them for the actor's ``inputs``."""
    ports = tuple(ports)
    for p in ports:
        if not p.isidentifier() or hasattr(type(actor), f"on_{p}"):
            raise ValueError(f"{type(actor).__name__}: port name {p!r} is not usable")
        setattr(actor, f"on_{p}", handler)
    return ports
