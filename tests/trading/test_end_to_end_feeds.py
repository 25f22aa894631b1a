"""Feeds to fills: two venue simulators -> two Feeds -> books -> market maker + cross-venue model ->
overseer -> mock exchange, in one deterministic process.  The money must reconcile: positions
equal the fills, balances never go negative, and the overseer's view equals the venue's."""

import time
from collections import defaultdict
from dataclasses import replace

from mantra.bench.tick_to_trade import INSTRUMENT
from mantra.instruments import VENUES
from mantra.runtime.actor import Actor
from mantra.runtime.config import parse
from mantra.runtime.supervisor import run_deterministic
from mantra.spine.messages import OrderAction, text
from mantra.sim.coinbase import CoinbaseSimulator
from mantra.sim.coinbase import LISTINGS as CB
from mantra.sim.kraken import LISTINGS as KR
from mantra.sim.kraken import KrakenSimulator
from mantra.sim import SyntheticMarket

KRAKEN = {"venue": "kraken", "symbol": "BTC/USD", "base": "BTC", "quote": "USD", "price_scale": 1, "size_scale": 8,
          "tick": "0.1", "lot": "0.00000001", "min_size": "0.0001", "min_notional": "0.5"}
INSTS = [INSTRUMENT, KRAKEN]
START = {"BTC": "1", "USD": "100000"}
SIMS: list = []  # the running simulators, for the Recorder of this one-process run


class Recorder(Actor):
    """Keeps the order flow and the market-data origins.  Once both models have fills (or after a
    real-time deadline) it freezes the markets and stops the run when nothing has moved for
    ``quiet_s``, so every actor has seen every message before the books are compared."""

    inputs = ("l2", "requests", "fills", "balances")
    deadline_s = 15.0
    quiet_s = 0.3

    def on_start(self):
        self.frame_origins = set()
        self.requests, self.fills, self.balance_log = [], [], []
        self.request_origins = []
        self.model_of = {}  # order id -> model id
        self.deadline = time.monotonic() + self.deadline_s
        self.frozen = self.moved = 0.0
        self.wakeup = self.clock.now()

    def on_l2(self, m):
        self.frame_origins.add(self.origin)
        self.moved = time.monotonic()

    def on_requests(self, r):
        self.requests.append(r)
        self.moved = time.monotonic()
        self.request_origins.append(self.origin)
        if r.action == OrderAction.NEW:
            self.model_of[r.order_id] = r.model

    def on_fills(self, f):
        self.fills.append(f)
        self.moved = time.monotonic()

    def on_balances(self, b):
        self.balance_log.append(b)
        self.moved = time.monotonic()

    def loop(self):
        self.wakeup = self.clock.now() + 1_000_000
        now = time.monotonic()
        if self.frozen:
            if now - max(self.moved, self.frozen) > self.quiet_s:
                self.stop_system()
            return False
        models = {self.model_of.get(f.order_id) for f in self.fills}
        if len(models) >= 2 and len(self.fills) >= 8 or now > self.deadline:
            for sim in SIMS:
                sim.pause()
            self.frozen = now
        return False


def doc(cb_url: str, kr_url: str) -> dict:
    feed = lambda venue, sym, url: {  # noqa: E731
        "class": "mantra.feeds.actor:Feed",
        "params": {"venue": venue, "symbols": [sym], "options": {"url": url}, "wait_ms": 1.0},
        "outputs": {"l2": "l2", "trades": "trades", "status": "status"}}
    model_inputs = {"l2": "l2", "requests": "requests", "updates": "updates", "fills": "fills"}
    return {
        # the simulators' listings, registered before any actor starts: the feeds use these terms
        "system": {"name": "e2efeeds", "clock": "deterministic", "instruments": INSTS},
        "queues": {"l2": {"type": "L2Update", "capacity": 1 << 17, "mpmc": True},  # both feeds write
                   "trades": {"type": "TradeUpdate", "capacity": 1 << 14, "mpmc": True},
                   "status": {"type": "BookStatus", "capacity": 1 << 10, "mpmc": True},
                   **{q: {"type": t, "capacity": 1 << 14} for q, t in (
                       ("requests", "OrderRequest"), ("updates", "OrderUpdate"), ("fills", "Fill"),
                       ("balances", "BalanceUpdate"))}},
        "arrays": {"mm_ideal": {"type": "IdealOrder", "size": 2}, "xv_ideal": {"type": "IdealOrder", "size": 2}},
        "actors": {
            "cb": feed("coinbase", "BTC-USD", cb_url),
            "kr": feed("kraken", "BTC/USD", kr_url),
            "mm": {"class": "mantra.trading.models.market_maker:MarketMaker", "inputs": model_inputs,
                   "arrays": {"ideal": "mm_ideal"},
                   "params": {"instrument": "coinbase:BTC-USD", "spread": "0.02", "size": "0.002", "skew": "0",
                              "max_inventory": "0.01", "refresh": "0.01"}},
            "xv": {"class": "mantra.trading.models.cross_venue:CrossVenue", "inputs": model_inputs,
                   "arrays": {"ideal": "xv_ideal"},
                   "params": {"a": "coinbase:BTC-USD", "b": "kraken:BTC/USD", "size": "0.001",
                              "max_inventory": "0.004", "fee_bps_a": 5, "fee_bps_b": 5, "min_edge_bps": 2,
                              "cooldown_ms": 50}},
            "overseer": {"class": "mantra.trading.overseer:Overseer",
                         "inputs": {"updates": "updates", "fills": "fills", "balances": "balances"},
                         "outputs": {"requests": "requests"}, "arrays": {"mm": "mm_ideal", "xv": "xv_ideal"},
                         "params": {"models": ["mm", "xv"],
                                    "venues": {"coinbase": {"fee_bps": 5, "amend": True, "rate": 1000},
                                               "kraken": {"fee_bps": 5, "amend": False, "rate": 1000}},
                                    "limits": {"coinbase:BTC-USD": {"max_position": "0.05", "max_notional": "5000"},
                                               "kraken:BTC/USD": {"max_position": "0.05", "max_notional": "5000"}}}},
            "exchange": {"class": "mantra.trading.mock_exchange:MockExchange",
                         "inputs": {"requests": "requests", "l2": "l2", "trades": "trades"},
                         "outputs": {"updates": "updates", "fills": "fills", "balances": "balances"},
                         "params": {"venues": {
                             v: {"maker_bps": 2, "taker_bps": 5, "amend": v == "coinbase", "balances": START}
                             for v in ("coinbase", "kraken")}}},
            "recorder": {"class": f"{__name__}:Recorder",
                         "inputs": {q: q for q in ("l2", "requests", "fills", "balances")}},
        },
    }


def test_feeds_to_fills_reconcile(shm_root):
    cb_src = SyntheticMarket("coinbase", [ls for ls in CB if ls.symbol == "BTC-USD"], seed=3, rate=400.0)
    # Kraken trades ~0.4% higher: the cross-venue model has an edge well beyond fees from the start.
    kr = [ls for ls in KR if ls.symbol == "BTC/USD"][0]
    kr_src = SyntheticMarket("kraken", [replace(kr, start="27100.0")], seed=4, rate=200.0)
    with CoinbaseSimulator(cb_src) as cb, KrakenSimulator(kr_src) as kr_sim:
        SIMS[:] = [cb, kr_sim]
        try:
            runner = run_deterministic(parse(doc(cb.ws_url, kr_sim.ws_url)))
        finally:
            SIMS.clear()
    a = {s.spec.name: s.actor for s in runner.slots}
    rec, ov, ex, mm, xv = a["recorder"], a["overseer"], a["exchange"], a["mm"], a["xv"]
    reg = ov.registry

    # both models traded, through the whole chain, on prices the feeds delivered
    by_model = defaultdict(int)
    for f in rec.fills:
        by_model[rec.model_of[f.order_id]] += 1
    assert by_model[mm.id] > 0 and by_model[xv.id] > 0, (dict(by_model), ov.refusals, ex.counts)
    assert len(rec.requests) == sum(ov.sent.values())
    # every request answers market data: its origin is the receipt stamp of a venue frame
    assert rec.request_origins and all(o in rec.frame_origins for o in rec.request_origins)
    assert not [k for k in ex.counts if "INSUFFICIENT_BALANCE" in k]

    # positions: the sum of fills, for the overseer, the models and the venue's base balance
    pos = defaultdict(int)
    for f in rec.fills:
        pos[f.instrument] += f.side * f.size
    for iid, p in pos.items():
        inst = reg[iid]
        assert ov.orders.positions[iid] == p
        assert mm.position(iid) + xv.position(iid) == p
        assert ex.bal[(inst.venue, inst.base)][0] == inst.size(START[inst.base]) + p

    # balances never negative, at any time they were published
    assert rec.balance_log
    assert all(b.total >= 0 and b.available >= 0 for b in rec.balance_log)
    # what was published last is what the venue holds, and the overseer's view agrees
    last = {(VENUES[b.venue - 1], text(b.asset)): b for b in rec.balance_log}
    for key, (total, locked) in ex.bal.items():
        assert total >= 0 and locked >= 0
        if key in last:
            assert (last[key].total, last[key].available) == (total, total - locked)
        assert ov.balances.total(*key) == total
    assert {o.order_id for o in ov.orders.live()} == set(ex.orders)
