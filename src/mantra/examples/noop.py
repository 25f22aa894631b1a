"""A model that reads the market and does nothing: the floor of what a backtest costs."""

from ..runtime.actor import Actor


class NoopModel(Actor):
    inputs = ("l2", "trades")

    def on_l2(self, m) -> None:
        pass

    def on_trades(self, m) -> None:
        pass
