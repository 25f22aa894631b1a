"""Bitfinex order entry end to end: ``BitfinexOrders`` through the shared ``AccountRunner`` against the
Bitfinex simulator over loopback sockets (the authenticated WebSocket with its account channel,
signed REST v2).

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
from websockets.sync.client import connect

import accountkit
from bitfinexkit import BitfinexHarness as Harness
from bitfinexkit import cid
from mantra.sim.bitfinex import DEFAULT_KEY, DEFAULT_SECRET, BitfinexSimulator
from mantra.spine.messages import OrderAction, OrderFlags, OrderStatus, OrderUpdate
from mantra.trading.accounts import Reject
from mantra.venues.account import Credentials
from mantra.venues.bitfinex import auth
from mantra.venues.bitfinex.doctor import check as doctor
from waits import wait_for

S = OrderStatus
ASK, BID = -1, 1


@pytest.fixture
def sim():
    s = BitfinexSimulator(seed=5, rate=40, lifetime_s=120).start()
    yield s
    s.stop()


@pytest.fixture
def h(sim):
    x = Harness(sim, timeout_s=1.5).start()
    yield x
    x.close()


def test_place_amend_fill_cancel(h, sim):
    assert any(c.dms for c in sim.clients)  # logged on with the dead-man switch
    lot, tick = h.btc.lot, h.btc.tick
    r = h.new(h.far_bid(), 20 * lot)  # 0.0002 BTC, far below the market: rests
    assert h.pump(lambda: h.status(r.order_id) == S.OPEN)
    st = sim.order_state(cid(r.order_id))
    assert st is not None and (st.price, st.size) == (r.price, r.size)
    # amend in place (ou): new price and size, same order
    a = h.request(OrderAction.AMEND, ref=r.order_id, price=r.price - tick, size=30 * lot)
    assert h.pump(lambda: h.orders.get(r.order_id).size == 30 * lot and not h.orders.get(r.order_id).pending)
    st = sim.order_state(cid(r.order_id))
    assert (st.price, st.size) == (a.price, a.size)
    # and down again
    h.request(OrderAction.AMEND, ref=r.order_id, price=r.price, size=10 * lot)
    assert h.pump(lambda: h.orders.get(r.order_id).size == 10 * lot and not h.orders.get(r.order_id).pending)
    assert sim.order_state(cid(r.order_id)).size == 10 * lot
    h.request(OrderAction.CANCEL, ref=r.order_id)
    assert h.pump(lambda: h.status(r.order_id) == S.CANCELLED)
    assert cid(r.order_id) not in sim.open_orders()
    # a marketable buy fills against the simulator's book; its fee comes with ``tu``
    t = h.new(h.book().best_ask() + 20 * tick, 10 * lot, flags=OrderFlags.IOC)
    assert h.pump(lambda: h.status(t.order_id) in (S.FILLED, S.EXPIRED, S.CANCELLED)
                  and h.orders.get(t.order_id).fill_qty >= h.orders.get(t.order_id).filled)
    fills = h.fills(t.order_id)
    assert fills and h.orders.get(t.order_id).fill_qty > 0 and all(f.fee > 0 and f.fee_asset == b"USD" for f in fills)
    h.check_invariants()


def test_rejects_carry_the_venues_reasons(h):
    lot, tick = h.btc.lot, h.btc.tick
    tiny = h.new(h.far_bid(), lot)  # 0.00001 BTC: below the 0.00004 minimum
    huge = h.new(h.far_bid(), 10**5 * 1000)  # 1000 BTC: more USD than the account holds
    cross = h.new(h.book().best_ask() + tick, 20 * lot, flags=OrderFlags.POST_ONLY)  # taken, then cancelled
    assert h.pump(lambda: all(h.status(r.order_id) == S.REJECTED for r in (tiny, huge, cross)))
    ups = {m.order_id: m.reason for m in h.out if type(m) is OrderUpdate and m.status == S.REJECTED}
    assert [ups[r.order_id] for r in (tiny, huge, cross)] == [Reject.MIN_SIZE, Reject.INSUFFICIENT_BALANCE,
                                                               Reject.POST_ONLY]
    h.check_invariants()


def _post(sim, path, headers, body):
    u = urlsplit(sim.rest_url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    c.request("POST", path, body=body, headers=dict(headers))
    r = c.getresponse()
    doc = json.loads(r.read())
    c.close()
    return r.status, doc


def _ws_auth(sim, msg):
    with connect(sim.ws_url, open_timeout=3) as ws:
        ws.recv(timeout=3)  # info
        ws.send(json.dumps(msg))
        while True:
            m = json.loads(ws.recv(timeout=3))
            if isinstance(m, dict) and m.get("event") == "auth":
                return m


def test_signature_and_nonce_checked_with_the_real_signing(sim):
    path = "/v2/auth/r/wallets"
    nonce = 1_700_000_000_000_000
    headers, body = auth.rest_request(DEFAULT_KEY, DEFAULT_SECRET, path, nonce)
    status, doc = _post(sim, path, headers, body)
    assert status == 200 and ["exchange", "USD", 1000000, 0, 1000000, None, None] in doc
    assert _post(sim, path, headers, body) == (500, ["error", 10114, "nonce: small"])  # replayed
    headers, body = auth.rest_request(DEFAULT_KEY, "another secret", path, nonce + 1)
    assert _post(sim, path, headers, body) == (500, ["error", 10100, "apikey: digest invalid"])
    headers, body = auth.rest_request("someone-else", DEFAULT_SECRET, path, nonce + 2)
    assert _post(sim, path, headers, body) == (500, ["error", 10100, "apikey: invalid"])
    # the socket's log-on shares the key's nonce
    m = _ws_auth(sim, auth.ws_auth(DEFAULT_KEY, DEFAULT_SECRET, nonce))
    assert (m["status"], m["code"], m["msg"]) == ("FAILED", 10114, "nonce: small")
    m = _ws_auth(sim, auth.ws_auth(DEFAULT_KEY, "another secret", nonce + 10))
    assert (m["status"], m["code"], m["msg"]) == ("FAILED", 10100, "apikey: digest invalid")
    m = _ws_auth(sim, auth.ws_auth(DEFAULT_KEY, DEFAULT_SECRET, nonce + 11))
    assert m["status"] == "OK" and m["caps"]["orders"] == {"read": 1, "write": 1}


def test_refused_credentials_halt(sim):
    accountkit.refused_credentials_halt(Harness, sim, Credentials(DEFAULT_KEY, "not the secret"), "digest invalid")


def test_a_key_that_may_not_trade_halts(sim):
    sim.permissions["orders"] = (True, False)
    h = Harness(sim)
    h.runner.start()
    assert h.pump(lambda: h.runner.halted)
    assert "may not write orders" in h.runner.halted
    h.close()


def test_fault_5xx_after_accept_is_found_not_replaced(h, sim):
    accountkit.fault_5xx_after_accept(h, sim)


def test_fault_timeout_is_queried_by_client_id(h, sim):
    sim.inject("order_timeout")
    r = h.new(h.far_bid(), 20 * h.btc.lot)
    assert h.pump(lambda: h.proto.counts["timeouts"] == 1 and not h.proto.reqs)
    assert h.status(r.order_id) == S.OPEN and sim.order_counts["not_answered"] == 1
    assert h.proto.counts["rest_auth/r/orders"] >= 2  # at start, then the question by client id
    # the order answers to its venue id now: it can be cancelled
    h.request(OrderAction.CANCEL, ref=r.order_id)
    assert h.pump(lambda: h.status(r.order_id) == S.CANCELLED)
    h.check_invariants()


def test_a_cancel_before_the_ack_goes_by_client_id_and_date(h, sim):
    r = h.new(h.far_bid(), 20 * h.btc.lot)
    h.request(OrderAction.CANCEL, ref=r.order_id)  # sent before the venue's id is known
    assert h.pump(lambda: h.status(r.order_id) == S.CANCELLED)
    assert not sim.open_orders()
    h.check_invariants()


def test_fault_duplicated_and_reordered_stream(h, sim):
    accountkit.fault_duplicated_and_reordered_stream(h, sim, "duplicate_fills", "duplicate_te")


def test_fault_stream_disconnect_during_fills(h, sim):
    resting = h.new(h.far_bid(), 20 * h.btc.lot)
    assert h.pump(lambda: h.status(resting.order_id) == S.OPEN)
    sim.inject("stream_disconnect")
    r = h.take()
    assert h.pump(lambda: h.done(r) and h.proto.subscribed and h.status(resting.order_id) == S.CANCELLED, 15)
    assert sim.order_counts["stream_cut"] == 1 and h.proto.counts["disconnects"] >= 1
    assert sim.order_counts["dead_man_fired"] == 1  # the venue cancelled what rested when the socket died
    assert h.fills(r.order_id)  # the fill lost with the connection came back by the gap reconciliation
    h.check_invariants()


def test_venue_restart_request_reconnects(h, sim):
    sim.reconnect_request()  # info 20051
    assert h.pump(lambda: h.proto.counts["connects"] == 2 and h.proto.subscribed)
    r = h.new(h.far_bid(), 20 * h.btc.lot)
    assert h.pump(lambda: h.status(r.order_id) == S.OPEN)
    h.check_invariants()


def test_fault_rate_limits(h, sim):
    # the venue's own refusal of an order: refused, then a back-off
    sim.inject("order_rate_limit")
    r = h.new(h.far_bid(), 20 * h.btc.lot)
    assert h.pump(lambda: h.status(r.order_id) == S.REJECTED)
    r2 = h.new(h.far_bid(), 20 * h.btc.lot)
    assert h.status(r2.order_id) == S.REJECTED  # refused before sending while backing off
    assert h.reasons()[-2:] == [Reject.RATE_LIMITED] * 2
    assert h.proto.counts["refused_rate_limited"] == 1 and h.proto.counts["rate_limited_by_venue"] == 1
    # a 429 with Retry-After on REST: REST waits that long (orders go on the socket meanwhile)
    h.proto.backoff_until = 0
    sim.inject("rate_limit")
    h.proto._reconcile(time.time_ns())  # the next REST call meets it
    h.runner._drain(0)
    assert h.pump(lambda: h.proto.counts["http_429"] == 1)
    assert h.proto.rest_backoff_until > time.time_ns() and h.proto.retry_at
    r3 = h.new(h.far_bid(), 20 * h.btc.lot)
    assert h.pump(lambda: h.status(r3.order_id) == S.OPEN)
    assert h.pump(lambda: not h.proto.retry_at, 5)  # redone once the venue's wait is over
    h.check_invariants()


def test_new_order_limit_refused_before_sending(sim):
    """Both sides count new orders in the venue's 5-minute window: the handler refuses the one past it."""
    sim.orders_per_5min = 3
    h = Harness(sim, orders_per_5min=3).start()
    rs = [h.new(h.far_bid() - i * h.btc.tick, 20 * h.btc.lot) for i in range(4)]
    assert h.status(rs[-1].order_id) == S.REJECTED and h.reasons()[-1] == Reject.RATE_LIMITED
    assert h.pump(lambda: all(h.status(r.order_id) == S.OPEN for r in rs[:3]))
    assert sim.order_counts["rate_limited"] == 0 and sim.order_counts["placed"] == 3
    h.close()
    # a handler that believes in a larger limit meets the venue's own refusal
    h = Harness(sim, first_id=5000).start()
    x = h.new(h.far_bid(), 20 * h.btc.lot)
    assert h.pump(lambda: h.status(x.order_id) == S.REJECTED)
    assert h.reasons()[-1] == Reject.RATE_LIMITED and sim.order_counts["rate_limited"] == 1
    h.check_invariants()
    h.close()


def test_rest_calls_over_the_endpoint_limit_wait(sim):
    h = Harness(sim, rest_per_min=1).start()  # one call per endpoint and minute
    h.proto._reconcile(time.time_ns())
    h.runner._drain(0)
    assert h.proto.counts["rest_deferred"] == 3 and len(h.proto.retry_at) == 3
    assert sim.rest_requests["/v2/auth/r/orders"] == 1
    h.close()


def test_fault_ban_halts(h, sim):
    accountkit.fault_ban_halts(h, sim, "418")


def test_fault_cancel_of_an_already_filled_order(h, sim):
    accountkit.fault_cancel_filled(h, sim)


def test_kill_switch_cancels_everything(h, sim):
    accountkit.kill_switch_cancels_everything(h, sim)


def test_restart_reconciles_without_duplicates(sim):
    accountkit.restart_reconciles(Harness, sim, dead_man=False)


def test_killed_with_a_new_in_flight_restarts_without_a_duplicate(sim):
    """The handler dies right after writing a NEW: the restarted one finds that order by its ids
    (the overseer still waits for its answer) instead of anyone placing it again."""
    h = Harness(sim, unknown_orders="adopt", dead_man=False).start()
    r = h.new(h.far_bid(), 20 * h.btc.lot)
    assert wait_for(lambda: sim.placed.get(cid(r.order_id)), 5)  # the venue took it...
    h.close()  # ...and the handler dies before reading the answer
    assert h.status(r.order_id) == 0
    h2 = Harness(sim, unknown_orders="adopt", dead_man=False)
    h2.orders.sent(r)
    h2.runner.start()
    assert h2.pump(lambda: h2.status(r.order_id) == S.OPEN and h2.proto.subscribed)
    assert sim.placed[cid(r.order_id)] == 1 and h2.proto.counts["adopted"] == 1
    h2.request(OrderAction.CANCEL, ref=r.order_id)
    assert h2.pump(lambda: h2.status(r.order_id) == S.CANCELLED)
    h2.close()


@pytest.mark.parametrize("asked", [False, True])
def test_a_fill_made_while_the_handler_was_dead_is_reported(sim, asked):
    accountkit.fill_while_dead_is_reported(Harness, sim, asked)


def test_dead_man_switch_cancels_when_the_handler_dies(sim):
    h = Harness(sim).start()
    rs = [h.new(h.far_bid() - i * h.btc.tick, 20 * h.btc.lot) for i in range(2)]
    assert h.pump(lambda: all(h.status(r.order_id) == S.OPEN for r in rs))
    h.close()  # killed: the venue sees the socket close
    assert h.pump(lambda: not sim.open_orders() and sim.order_counts["dead_man_fired"] == 1)
    h2 = Harness(sim, unknown_orders="adopt")
    for r in rs:
        h2.orders.sent(r)
    h2.start()
    for r in rs:  # the overseer, still waiting for their answers, cancels them: the venue says how they ended
        h2.request(OrderAction.CANCEL, ref=r.order_id)
    assert h2.pump(lambda: all(h2.status(r.order_id) == S.CANCELLED for r in rs))
    assert h2.proto.counts["asked_unknown_order"] == 2 and all(sim.placed[cid(r.order_id)] == 1 for r in rs)
    assert all(cid(r.order_id) not in sim.open_orders() for r in rs)
    h2.close()


def test_doctor_checks_against_the_simulator():
    key, secret = "doctor-key", "doctor-secret"
    with BitfinexSimulator(rate=5, credentials={key: secret}, balances={"USD": "100"}) as sim:
        out = doctor(Credentials(key, secret), sim.rest_url)
        assert [ok for ok, _ in out] == [True] * 4, out
        assert any("credentials: accepted (exchange wallets: USD 100" in line for _, line in out), out
        assert secret not in repr(out)
        out = doctor(Credentials(key, "wrong"), sim.rest_url)
        assert any(not ok and line.startswith("credentials: refused (10100 bad signature: the secret does not match)")
                   for ok, line in out), out
    with BitfinexSimulator(rate=5, credentials={key: secret}, clock_skew_ms=5000,
                           permissions={"orders": (1, 0), "wallets": (1, 0)}) as sim:
        out = dict((line.split(":")[0], ok) for ok, line in doctor(Credentials(key, secret), sim.rest_url))
        assert out == {"clock": False, "credentials": True, "permissions": False, "rate limits": True}, out
