"""Bitstamp order entry as the hypothesis state machine every venue runs (``test_account_state_machine``):
random requests (new orders near the touch so that some fill, cancels, amends the venue refuses)
interleaved with a random schedule of the simulator's order-entry faults, through the real protocol
and runner over loopback.  Afterwards: every order has a known outcome, none was placed twice, every
fill the venue made arrived once, and balances (total and available) equal the simulator's truth.

The simulator answers an ``order_timeout`` after 1.5 s, past the handler's 1 s timeout: the request
is asked for by client id and the late answer applied once.  Request limits are lifted: refusals are
tested elsewhere."""

from __future__ import annotations

from bitstampkit import BitstampHarness
from mantra.sim.bitstamp import BitstampSimulator
from test_account_state_machine import RUNS, Account


class BitstampAccount(Account):
    def make(self):
        sim = BitstampSimulator(seed=11, rate=60, lifetime_s=120, rate_per_s=10**9, rate_per_10min=10**9,
                                timeout_answer_s=1.5).start()
        # The venue takes a signed request for 150 s; the simulator never delays one, so a NEW it
        # says it does not have after 2 s never arrives: a short window lets every outcome be
        # known before the teardown's deadline (as Binance's recvWindow and Kraken's deadline do).
        h = BitstampHarness(sim, timeout_s=1.0, rate_per_s=10**9, rate_per_10min=10**9, auth_window_s=2.0).start()
        return sim, h, 100_000 * h.btc.lot  # 0.001 BTC: above the 10 USD minimum order value


TestBitstampAccount = BitstampAccount.TestCase
TestBitstampAccount.settings = RUNS
