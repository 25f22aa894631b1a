"""Bitfinex order entry as the hypothesis state machine of ``test_account_state_machine.py``: random
new orders near the touch, amends, cancels and the simulator's order-entry faults, through the real
protocol and runner over loopback; afterwards every order has a known outcome, none was placed
twice, every fill arrived once and our balances equal the simulator's."""

from __future__ import annotations

from bitfinexkit import BitfinexHarness
from mantra.sim.bitfinex import BitfinexSimulator
from test_account_state_machine import RUNS, Account


class BitfinexAccount(Account):
    def make(self):
        sim = BitfinexSimulator(seed=11, rate=60, lifetime_s=120, orders_per_5min=10**9).start()
        h = BitfinexHarness(sim, timeout_s=1.0, orders_per_5min=10**9).start()
        return sim, h, 10 * h.btc.lot  # 0.0001 BTC: above the 0.00004 minimum


TestBitfinexAccount = BitfinexAccount.TestCase
TestBitfinexAccount.settings = RUNS
