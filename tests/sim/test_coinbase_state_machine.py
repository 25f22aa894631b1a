"""Coinbase order entry as the hypothesis state machine of ``test_account_state_machine.py``: random
requests (new orders near the touch so that some fill, edits, cancels) interleaved with a random
schedule of the simulator's order-entry faults, through the real protocol and runner over
loopback; afterwards every order has a known outcome, none was placed twice, every fill arrived
once and the balances equal the simulator's truth."""

from __future__ import annotations

from coinbasekit import CoinbaseHarness
from mantra.sim.coinbase import CoinbaseSimulator
from test_account_state_machine import RUNS, Account


class CoinbaseAccount(Account):
    def make(self):
        sim = CoinbaseSimulator(seed=11, rate=60, lifetime_s=120, rest_rate_per_s=10**9).start()
        h = CoinbaseHarness(sim, timeout_s=1.0, jwt_lifetime_s=3, rest_limit_per_s=10**9).start()
        return sim, h, 10_000 * h.btc.lot  # 0.0001 BTC: above the minimum size and the 1 USD minimum


TestCoinbaseAccount = CoinbaseAccount.TestCase
TestCoinbaseAccount.settings = RUNS
