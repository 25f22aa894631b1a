"""Fixed-size, C-layout message types and their registry.

Every record in a slot is ``tracking header | payload``; the tracking header (origin ns, publish ns,
publisher actor id, flags) is written by the runtime, never by actor code.  A message class is a
NamedTuple of its payload fields with class attributes for the wire: ``STRUCT`` (payload
``struct.Struct``), ``DTYPE`` (numpy dtype of a whole record, for ``read_batch``), ``SLOT_SIZE``,
``TYPE_ID`` and ``TYPE_HASH`` (changes whenever the layout does, checked when attaching).
"""

from __future__ import annotations

import hashlib
import struct
from collections import namedtuple
from enum import IntEnum, IntFlag

import numpy as np

TRACK = struct.Struct("<QQII")  # origin_ns, publish_ns, publisher, flags
TRACK_DTYPE = [("origin", "<u8"), ("publish", "<u8"), ("publisher", "<u4"), ("tflags", "<u4")]

_NP = {"q": "<i8", "Q": "<u8", "i": "<i4", "I": "<u4", "h": "<i2", "H": "<u2", "b": "i1", "B": "u1"}

REGISTRY: dict[int, type] = {}
BY_NAME: dict[str, type] = {}


def message(name: str, type_id: int, fields: str, slot: int = 64, doc: str = ""):
    """Define a message: ``fields`` is ``"price:q size:q instrument:I side:b"`` (struct codes;
    ``Ns`` for fixed text).  Fields must be naturally aligned: list the wide ones first."""
    names, codes, layout = [], [], []
    for f in fields.split():
        n, _, c = f.rpartition(":")
        if n:
            names.append(n)
            codes.append(c)
        layout.append((n, c))  # unnamed "Nx" tokens are padding
    st = struct.Struct("<" + "".join(c for _, c in layout))
    off, dt, fields_at = TRACK.size, list(TRACK_DTYPE), []
    for n, c in layout:
        size = struct.calcsize("<" + c)
        if not n:
            dt.append((f"_pad{off}", f"V{size}"))
            off += size
            continue
        if c[-1] != "s" and off % size:
            raise TypeError(f"{name}.{n} at offset {off} is not aligned to {size}")
        dt.append((n, f"S{size}" if c[-1] == "s" else _NP[c]))
        fields_at.append((off, size, c[-1]))
        off += size
    if off > slot - 8:
        raise TypeError(f"{name} needs {off + 8} bytes, slot is {slot}")
    pad = slot - 8 - off
    if pad:
        dt.append(("_pad", f"V{pad}"))
    base = namedtuple(name, names)
    text_fields = tuple(i for i, c in enumerate(codes) if c[-1] == "s")
    cls = type(name, (base,), {
        "__slots__": (),
        "__doc__": doc or base.__doc__,
        "TYPE_ID": type_id,
        "STRUCT": st,
        "SLOT_SIZE": slot,
        "DTYPE": np.dtype(dt),
        "TEXT_FIELDS": text_fields,
        "FIELDS_AT": fields_at,  # (offset in the record, size, struct code) per field: the C dispatcher
        "TYPE_HASH": int.from_bytes(hashlib.blake2b(f"{name}|{fields}|{slot}".encode(), digest_size=8).digest(), "little"),
    })
    if type_id in REGISTRY:
        raise TypeError(f"type id {type_id} used by {REGISTRY[type_id].__name__} and {name}")
    REGISTRY[type_id] = cls
    BY_NAME[name] = cls
    return cls


def decode(cls, record) -> tuple:
    """(tracking, message) from a whole record (bytes/bytearray/memoryview)."""
    return TRACK.unpack_from(record, 0), cls._make(cls.STRUCT.unpack_from(record, TRACK.size))


def text(b: bytes) -> str:
    """Fixed text fields travel NUL-padded."""
    return b.rstrip(b"\0").decode(errors="replace")


# ------------------------------------------------------------------------------------------ enums

class ActorState(IntEnum):
    STOPPED = 0
    STARTING = 1
    RUNNING = 2
    STOPPING = 3
    CRASHED = 4


class L2Flags(IntFlag):
    LAST = 1  # last level of an exchange message: the book is consistent after it
    SNAPSHOT = 2  # level belongs to a snapshot
    CLEAR = 4  # the book was cleared before this level (snapshot start)


class OrderAction(IntEnum):
    NEW = 1
    CANCEL = 2
    AMEND = 3
    CANCEL_ALL = 4


class OrderStatus(IntEnum):
    ACK = 1  # venue accepted the request
    REJECTED = 2
    OPEN = 3
    PARTIALLY_FILLED = 4
    FILLED = 5
    CANCELLED = 6
    CANCEL_REJECTED = 7
    EXPIRED = 8


class OrderFlags(IntFlag):
    POST_ONLY = 1
    IOC = 2
    REDUCE_ONLY = 4


class Liquidity(IntEnum):
    MAKER = 1
    TAKER = 2


# ------------------------------------------------------------------------------------------ types

L2Update = message(
    "L2Update", 1, "price:q size:q exch_ts:q instrument:I side:b flags:B", 64,
    "One price level's new size (0 removes it); flags: L2Flags.")
TradeUpdate = message(
    "TradeUpdate", 2, "price:q size:q exch_ts:q trade_id:q instrument:I side:b", 128,
    "A venue trade; side is the aggressor (+1 buyer, -1 seller, 0 unknown).")
BookStatus = message(
    "BookStatus", 3, "exch_ts:q instrument:I status:B x code:H reason:16s", 64,
    "A book's trust status (venues.events.Status) with a short reason.")
IdealOrder = message(
    "IdealOrder", 4, "price:q size:q instrument:I side:b flags:B", 64,
    "A model's wish for one order slot; size 0 = no order in this slot.")
OrderRequest = message(
    "OrderRequest", 5,
    "order_id:Q ref_id:Q price:q size:q instrument:I model:H slot:H action:B side:b flags:B x", 128,
    "Overseer -> venue: new / cancel / amend (ref_id = the order acted on).")
OrderUpdate = message(
    "OrderUpdate", 6,
    "order_id:Q price:q size:q filled:q exch_ts:q instrument:I status:B side:b reason:B x venue_id:24s",
    128, "Venue -> overseer: the state of one order (filled is cumulative).")
Fill = message(
    "Fill", 7, "order_id:Q trade_id:Q price:q size:q fee:q exch_ts:q instrument:I side:b liquidity:B fee_asset:8s",
    128, "One execution of one of our orders; fee in fee_asset at the instrument's price scale.")
BalanceUpdate = message(
    "BalanceUpdate", 8, "total:q available:q exch_ts:q scale:I venue:B 3x asset:8s", 128,
    "A venue balance for one asset, fixed-point at `scale` decimals.")
ActorStatus = message(
    "ActorStatus", 10, "handled:Q loops:Q busy_ns:Q since_ns:Q errors:Q updated_ns:Q pid:I state:B", 128,
    "Runtime: one actor's counters, in the system's `status` array at the actor's id.")
Timing = message(
    "Timing", 9, "key:I 4x start:Q end:Q", 64,
    "Runtime timing record: key = actor << 16 | stream; origin is in the tracking header.")
