"""A touch quoter: every N exchange messages, one bid and one ask at the touch."""

from __future__ import annotations

from ...spine.messages import OrderFlags
from ..model import TradeModel

_POST_ONLY = int(OrderFlags.POST_ONLY)


class TouchQuoter(TradeModel):
    """Every ``every`` messages of its instrument's book, quotes ``size`` post-only at the best bid
    (slot 0) and the best ask (slot 1).  An unchanged quote keeps its order (and its queue place);
    a moved one is replaced by the overseer.  The simplest quoting workload, and the one the
    NautilusTrader side of ``mantra bench backtest`` runs (there: cancel all, then both quotes anew).

    Params: ``instrument``, ``size`` (decimal text), ``every`` (messages, default 200).
    """

    instrument = ""
    size = "0"
    every = 200

    def on_start(self) -> None:
        super().on_start()
        self.inst = self.follow(self.instrument)
        self.size_i = self.inst.size(str(self.size))
        self.every, self.messages = int(self.every), 0
        if self.size_i <= 0 or self.every <= 0:
            raise ValueError(f"{self.name}: size and every must be > 0")

    def on_book(self, iid: int, book, exch_ts: int) -> None:
        self.messages += 1
        if self.messages % self.every:
            return
        bb, ba = book.best_bid(), book.best_ask()
        if bb is None or ba is None:
            self.withdraw(0)
            self.withdraw(1)
            return
        self.quote(0, iid, 1, bb, self.size_i, _POST_ONLY)
        self.quote(1, iid, -1, ba, self.size_i, _POST_ONLY)
