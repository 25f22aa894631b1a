"""What a live run did, for the line `mantra run` prints when it stops: orders, cancels, fills,
fees, positions and a rough PnL per instrument, read by the supervisor from the system's own
OrderRequest and Fill queues (unregistered readers from the start, drained every supervision round
so they are never lapped in a normal run; what they lost is said).

Money is exact: fixed-point integers at each instrument's scales until the text.  PnL is marked at
the instrument's last fill price (the supervisor does not follow the market), so it is a rough
figure; a backtest's report marks at the last trade.
"""

from __future__ import annotations

from collections import defaultdict

from ..fixed import from_fixed
from ..spine import Ring
from ..spine.messages import Fill, OrderAction, OrderRequest
from . import paths


class RunSummary:
    def __init__(self, spec):
        d = paths.system_dir(spec.name)
        self.dir = d
        self.readers = []
        for q in spec.queues.values():
            if q.type in (OrderRequest, Fill):
                ring = Ring.attach(paths.queue(d, q.name))
                self.readers.append((q.type, ring, ring.reader("summary", start=0, register=False)))
        self.actions: dict[int, int] = defaultdict(int)
        self.fills = 0
        self.by_inst: dict[int, list] = defaultdict(lambda: [0, 0, defaultdict(int), 0])  # cash, position, fees by asset, last price
        self.registry = None
        self.lost = 0  # records the readers were lapped on (known at close)

    def drain(self) -> None:
        for typ, _, r in self.readers:
            while len(b := r.read_batch(4096)):
                if typ is OrderRequest:
                    for a in b["action"].tolist():
                        self.actions[a] += 1
                    continue
                self.fills += len(b)
                for iid, px, sz, side, fee, asset in zip(*(b[k].tolist() for k in ("instrument", "price", "size", "side", "fee", "fee_asset"))):
                    s = self.by_inst[iid]
                    s[0] -= side * px * sz  # at price scale + size scale: divided once, at the end
                    s[1] += side * sz
                    s[2][asset.rstrip(b"\0").decode(errors="replace")] += fee
                    s[3] = px

    def close(self) -> None:
        self.drain()
        self.lost = sum(r.lost for _, _, r in self.readers)
        try:
            from ..feeds.actor import SharedRegistry

            self.registry = SharedRegistry(self.dir / "instruments.json")
        except (OSError, ValueError):
            self.registry = None
        for _, ring, _ in self.readers:
            ring.close()
        self.readers = []

    def text(self) -> str:
        a = self.actions
        lines = [f"orders {a[OrderAction.NEW]}  cancels {a[OrderAction.CANCEL] + a[OrderAction.CANCEL_ALL]}  "
                 f"amends {a[OrderAction.AMEND]}  fills {self.fills}"]
        for iid, (cash, pos, fees, last) in sorted(self.by_inst.items()):
            inst = self.registry.by_id.get(iid) if self.registry is not None else None
            if inst is None:
                lines.append(f"  instrument {iid}: position {pos} (raw units: the instrument is not registered)")
                continue
            ps, ss = inst.price_scale, inst.size_scale
            # exact at the price scale but for its last digit (floor); fees paid in the quote count against it
            pnl = (cash + pos * last) // 10**ss - fees.get(inst.quote, 0)
            paid = ", ".join(f"{from_fixed(v, ps)} {k or '?'}" for k, v in sorted(fees.items())) or "0"
            lines.append(f"  {inst.venue}:{inst.symbol}  position {from_fixed(pos, ss)} {inst.base}  "
                         f"fees {paid}  PnL {from_fixed(pnl, ps)} {inst.quote} "
                         f"(marked at the last fill, {from_fixed(last, ps)})")
        if self.lost:
            lines.append(f"  (the summary missed {self.lost} records it was lapped on: counts are low)")
        return "\n".join(lines)
