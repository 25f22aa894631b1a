"""Kraken order entry end to end: ``KrakenOrders`` through the shared ``AccountRunner`` against the
Kraken simulator over loopback sockets (WebSocket v2 private methods and streams, signed REST).

Every test checks the invariants the issue asks for: no order placed twice (the simulator counts
NEWs per client id), every fill counted once (the overseer's ``Orders`` book), balances equal to
the simulator's truth.
"""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest

import accountkit
from accountkit import KRAKEN_SECRET as SECRET
from accountkit import KrakenHarness as Harness
from mantra.sim.kraken import DEFAULT_KEY, KrakenSimulator
from mantra.spine.messages import OrderAction, OrderFlags, OrderStatus, OrderUpdate
from mantra.trading.accounts import Reject
from mantra.venues.account import Credentials, client_id
from mantra.venues.kraken import auth
S = OrderStatus
ASK, BID = -1, 1


@pytest.fixture
def sim():
    s = KrakenSimulator(seed=5, rate=40, lifetime_s=120).start()
    yield s
    s.stop()


@pytest.fixture
def h(sim):
    x = Harness(sim, timeout_s=1.5, deadline_ms=1000).start()
    yield x
    x.close()


def test_place_amend_fill_cancel(h, sim):
    assert h.pump(lambda: sim.dead_man_at > 0)  # cancel_after armed (its answer may follow the log-on)
    lot = h.btc.lot
    r = h.new(h.far_bid(), 20_000 * lot)  # 0.0002 BTC, far below the market: rests
    assert h.pump(lambda: h.status(r.order_id) == S.OPEN)
    st = sim.order_state(client_id(r.order_id))
    assert st is not None and (st.price, st.size) == (r.price, r.size)
    # amend in place: new price and size, same order
    a = h.request(OrderAction.AMEND, ref=r.order_id, price=r.price - h.btc.tick, size=30_000 * lot)
    assert h.pump(lambda: h.orders.get(r.order_id).size == 30_000 * lot and not h.orders.get(r.order_id).pending)
    st = sim.order_state(client_id(r.order_id))
    assert (st.price, st.size) == (a.price, a.size)
    # cancel
    h.request(OrderAction.CANCEL, ref=r.order_id)
    assert h.pump(lambda: h.status(r.order_id) == S.CANCELLED)
    assert client_id(r.order_id) not in sim.open_orders()
    # a marketable buy fills against the simulator's book
    ask = h.book().best_ask()
    t = h.new(ask + 20 * h.btc.tick, 10_000 * lot, flags=OrderFlags.IOC)
    assert h.pump(lambda: h.status(t.order_id) in (S.FILLED, S.EXPIRED, S.CANCELLED)
                  and h.orders.get(t.order_id).fill_qty >= h.orders.get(t.order_id).filled)
    assert h.fills(t.order_id) and h.orders.get(t.order_id).fill_qty > 0
    h.check_invariants()


def test_rejects_carry_the_venues_reasons(h):
    lot, tick = h.btc.lot, h.btc.tick
    tiny = h.new(h.far_bid(), 100 * lot)  # 0.000001 BTC: below the minimum size
    huge = h.new(h.far_bid(), 10**8 * 1000)  # 1000 BTC: more USD than the account holds
    cross = h.new(h.book().best_ask() + tick, 20_000 * lot, flags=OrderFlags.POST_ONLY)
    assert h.pump(lambda: all(h.status(r.order_id) == S.REJECTED for r in (tiny, huge, cross)))
    reasons = [h.orders.get(r.order_id) for r in (tiny, huge, cross)]
    ups = {m.order_id: m.reason for m in h.out if type(m) is OrderUpdate and m.status == S.REJECTED}
    assert [ups[r.order_id] for r in (tiny, huge, cross)] == [Reject.MIN_SIZE, Reject.INSUFFICIENT_BALANCE,
                                                               Reject.POST_ONLY], reasons
    h.check_invariants()


def _post(sim, path, headers, body):
    u = urlsplit(sim.rest_url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    c.request("POST", path, body=body, headers=dict(headers))
    r = c.getresponse()
    doc = json.loads(r.read())
    c.close()
    return doc


def test_signature_and_nonce_checked_with_the_real_signing(sim):
    path = "/0/private/Balance"
    nonce = 1_700_000_000_000
    headers, body = auth.rest_request(DEFAULT_KEY, SECRET, path, nonce)
    assert _post(sim, path, headers, body)["error"] == []
    assert _post(sim, path, headers, body)["error"] == ["EAPI:Invalid nonce"]  # replayed
    headers, body = auth.rest_request(DEFAULT_KEY, SECRET, path, nonce - 5)
    assert _post(sim, path, headers, body)["error"] == ["EAPI:Invalid nonce"]  # older
    other = "A" * 86 + "=="
    headers, body = auth.rest_request(DEFAULT_KEY, other, path, nonce + 1)
    assert _post(sim, path, headers, body)["error"] == ["EAPI:Invalid signature"]
    headers, body = auth.rest_request("someone-else", SECRET, path, nonce + 2)
    assert _post(sim, path, headers, body)["error"] == ["EAPI:Invalid key"]


def test_refused_credentials_halt(sim):
    accountkit.refused_credentials_halt(Harness, sim, Credentials(DEFAULT_KEY, "A" * 86 + "=="),
                                        "Invalid signature")


def test_fault_5xx_after_accept_is_found_not_replaced(h, sim):
    accountkit.fault_5xx_after_accept(h, sim)


def test_fault_timeout_is_queried_by_client_id(h, sim):
    sim.inject("order_timeout")
    r = h.new(h.far_bid(), 20_000 * h.btc.lot)
    assert h.pump(lambda: h.proto.counts["timeouts"] == 1 and not h.proto.reqs)
    assert h.status(r.order_id) == S.OPEN and sim.order_counts["not_answered"] == 1
    assert h.proto.counts["rest_QueryOrders"] >= 1
    h.check_invariants()


def test_fault_duplicated_and_reordered_stream(h, sim):
    accountkit.fault_duplicated_and_reordered_stream(h, sim, "duplicate_fills", "executions_seq_old")


def test_fault_stream_disconnect_during_fills(h, sim):
    sim.inject("stream_disconnect")
    r = h.take()
    assert h.pump(lambda: h.done(r) and h.proto.subscribed, 15)
    assert sim.order_counts["stream_cut"] == 1 and h.proto.counts["disconnects"] >= 1
    assert h.fills(r.order_id)  # the fill lost with the connection came back by the gap reconciliation
    h.check_invariants()


def test_fault_rate_limits(h, sim):
    # the venue's own rate-limit error on an order: refused, then a back-off
    sim.inject("order_rate_limit")
    r = h.new(h.far_bid(), 20_000 * h.btc.lot)
    assert h.pump(lambda: h.status(r.order_id) == S.REJECTED)
    r2 = h.new(h.far_bid(), 20_000 * h.btc.lot)
    assert h.status(r2.order_id) == S.REJECTED  # refused before sending while backing off
    assert [m.reason for m in h.out if type(m) is OrderUpdate][-2:] == [Reject.RATE_LIMITED] * 2
    # a 429 with Retry-After on REST: back off that long
    sim.inject("rate_limit")
    h.proto._reconcile(h.proto.nonce * 1_000_000)  # the next REST call meets it
    h.runner._drain(0)
    assert h.pump(lambda: h.proto.counts["http_429"] == 1)
    r3 = h.new(h.far_bid(), 20_000 * h.btc.lot)
    assert h.status(r3.order_id) == S.REJECTED
    assert h.out[-1].reason == Reject.RATE_LIMITED
    assert h.pump(lambda: time.time_ns() > h.proto.backoff_until + 10**8, 5)  # Retry-After: 1 (s)
    r4 = h.new(h.far_bid(), 20_000 * h.btc.lot)
    assert h.pump(lambda: h.status(r4.order_id) == S.OPEN)
    h.check_invariants()


def test_rate_counter_refused_before_sending(h, sim):
    """Both sides count Kraken's per-pair trading counter (threshold 60): the 61st order in a burst is
    refused by the handler and never reaches the venue."""
    bid = h.far_bid()
    rs = [h.new(bid - i * h.btc.tick, 20_000 * h.btc.lot) for i in range(61)]
    assert h.status(rs[-1].order_id) == S.REJECTED
    assert [m.reason for m in h.out if type(m) is OrderUpdate][-1] == Reject.RATE_LIMITED
    assert h.pump(lambda: all(h.status(r.order_id) == S.OPEN for r in rs[:60]))
    assert sim.order_counts["rate_limited"] == 0 and sim.order_counts["placed"] == 60
    h.check_invariants()


def test_venue_rate_counter_and_ratecount(sim):
    """A handler that believes in a larger tier meets the venue's own refusal, and learns the venue's
    counter from ``ratecount``."""
    h = Harness(sim, rate_threshold=125).start()
    bid = h.far_bid()
    rs = [h.new(bid - i * h.btc.tick, 20_000 * h.btc.lot) for i in range(62)]
    assert h.pump(lambda: all(h.status(r.order_id) is not None and h.status(r.order_id) > 0 for r in rs))
    refused = [m for m in h.out if type(m) is OrderUpdate and m.reason == Reject.RATE_LIMITED]
    assert refused and sim.order_counts["rate_limited"] >= 1
    assert h.proto.rate.level("BTC/USD", time.time_ns()) > 50  # from the venue's ratecount
    h.check_invariants()
    h.close()


def test_fault_ban_halts(h, sim):
    def ask(h):  # Kraken's protocol reads its nonce as the time
        h.proto._reconcile(h.proto.nonce * 1_000_000)
        h.runner._drain(0)

    accountkit.fault_ban_halts(h, sim, "418", ask)


def test_fault_cancel_of_an_already_filled_order(h, sim):
    accountkit.fault_cancel_filled(h, sim)


def test_kill_switch_cancels_everything(h, sim):
    accountkit.kill_switch_cancels_everything(h, sim)


def test_restart_reconciles_without_duplicates(sim):
    accountkit.restart_reconciles(Harness, sim)


@pytest.mark.parametrize("asked", [False, True])
def test_a_fill_made_while_the_handler_was_dead_is_reported(sim, asked):
    accountkit.fill_while_dead_is_reported(Harness, sim, asked)