"""Binance order entry end to end: ``BinanceOrders`` through the shared ``AccountRunner`` against the
Binance simulator over loopback sockets (the WebSocket API with its user stream, signed REST).

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
from accountkit import BinanceHarness as Harness
from mantra.sim.binance import DEFAULT_KEY, DEFAULT_SECRET, BinanceSimulator
from mantra.spine.messages import OrderAction, OrderFlags, OrderStatus, OrderUpdate
from mantra.trading.accounts import Reject
from mantra.venues.account import Credentials, client_id
from mantra.venues.binance import auth

S = OrderStatus
ASK, BID = -1, 1


@pytest.fixture
def sim():
    s = BinanceSimulator(seed=5, rate=40, lifetime_s=120).start()
    yield s
    s.stop()


@pytest.fixture
def h(sim):
    x = Harness(sim, timeout_s=1.5, recv_window_ms=1000).start()
    yield x
    x.close()


def test_place_amend_fill_cancel(h, sim):
    lot, tick = h.btc.lot, h.btc.tick
    r = h.new(h.far_bid(), 40 * lot)  # 0.0004 BTC, far below the market: rests
    assert h.pump(lambda: h.status(r.order_id) == S.OPEN)
    st = sim.order_state(client_id(r.order_id))
    assert st is not None and (st.price, st.size) == (r.price, r.size)
    # the quantity down, same price: amended in place, keeping priority
    a = h.request(OrderAction.AMEND, ref=r.order_id, price=r.price, size=30 * lot)
    assert h.pump(lambda: h.orders.get(r.order_id).size == 30 * lot and not h.orders.get(r.order_id).pending)
    st = sim.order_state(client_id(r.order_id))
    assert (st.price, st.size) == (a.price, a.size) and h.proto.counts["rest_keepPriority"] == 0
    # a new price: cancel-replace, the new venue order is still ours
    b = h.request(OrderAction.AMEND, ref=r.order_id, price=r.price - tick, size=50 * lot)
    assert h.pump(lambda: h.orders.get(r.order_id).price == b.price and not h.orders.get(r.order_id).pending)
    assert client_id(r.order_id) + "_1" in sim.open_orders() and client_id(r.order_id) not in sim.open_orders()
    assert sim.open_orders()[client_id(r.order_id) + "_1"].size == 50 * lot
    # cancel
    h.request(OrderAction.CANCEL, ref=r.order_id)
    assert h.pump(lambda: h.status(r.order_id) == S.CANCELLED)
    assert not sim.open_orders()
    # a marketable buy fills against the simulator's book
    ask = h.book().best_ask()
    t = h.new(ask + 20 * tick, 40 * lot, flags=OrderFlags.IOC)
    assert h.pump(lambda: h.status(t.order_id) in (S.FILLED, S.EXPIRED, S.CANCELLED)
                  and h.orders.get(t.order_id).fill_qty >= h.orders.get(t.order_id).filled)
    assert h.fills(t.order_id) and h.orders.get(t.order_id).fill_qty > 0
    h.check_invariants()


def test_rejects_carry_the_venues_reasons(h):
    lot, tick = h.btc.lot, h.btc.tick
    tiny = h.new(h.far_bid(), lot)  # 0.00001 BTC at ~27000: below the 5 USDT minimum notional
    huge = h.new(h.far_bid(), 10**5 * 1000)  # 1000 BTC: more USDT than the account holds
    cross = h.new(h.book().best_ask() + tick, 40 * lot, flags=OrderFlags.POST_ONLY)
    assert h.pump(lambda: all(h.status(r.order_id) == S.REJECTED for r in (tiny, huge, cross)))
    ups = {m.order_id: m.reason for m in h.out if type(m) is OrderUpdate and m.status == S.REJECTED}
    assert [ups[r.order_id] for r in (tiny, huge, cross)] == [Reject.MIN_NOTIONAL, Reject.INSUFFICIENT_BALANCE,
                                                               Reject.POST_ONLY]
    h.check_invariants()


def _get(sim, path, headers, query):
    u = urlsplit(sim.rest_url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    c.request("GET", f"{path}?{query}", headers=dict(headers))
    r = c.getresponse()
    doc = json.loads(r.read())
    c.close()
    return r.status, doc


def test_signature_and_timestamp_checked_with_the_real_signing(sim):
    path = "/api/v3/account"
    now = time.time_ns() // 1_000_000
    headers, q, _ = auth.rest_request(DEFAULT_KEY, DEFAULT_SECRET, {}, now, 5000)
    st, doc = _get(sim, path, headers, q)
    assert st == 200 and doc["canTrade"] and {b["asset"] for b in doc["balances"]} >= {"BTC", "USDT"}
    headers, q, _ = auth.rest_request(DEFAULT_KEY, DEFAULT_SECRET, {}, now - 10_000, 5000)
    assert _get(sim, path, headers, q) == (400, {"code": -1021, "msg": auth.INVALID_TIMESTAMP[1]})  # stale
    headers, q, _ = auth.rest_request(DEFAULT_KEY, "not-the-secret", {}, now, 5000)
    assert _get(sim, path, headers, q) == (400, {"code": -1022, "msg": auth.INVALID_SIGNATURE[1]})
    headers, q, _ = auth.rest_request("someone-else", DEFAULT_SECRET, {}, now, 5000)
    assert _get(sim, path, headers, q)[1]["code"] == -2015


def test_refused_credentials_halt(sim):
    accountkit.refused_credentials_halt(Harness, sim, Credentials(DEFAULT_KEY, "not-the-secret"), "-1022")


def test_fault_5xx_after_accept_is_found_not_replaced(h, sim):
    accountkit.fault_5xx_after_accept(h, sim)


def test_fault_timeout_is_queried_by_client_id(h, sim):
    sim.inject("order_timeout")
    r = h.new(h.far_bid(), 40 * h.btc.lot)
    assert h.pump(lambda: h.proto.counts["timeouts"] == 1 and not h.proto.reqs)
    assert h.status(r.order_id) == S.OPEN and sim.order_counts["not_answered"] == 1
    assert sim.placed[client_id(r.order_id)] == 1
    h.check_invariants()


def test_fault_duplicated_and_reordered_stream(h, sim):
    accountkit.fault_duplicated_and_reordered_stream(h, sim, "duplicate_fills")


def test_fault_stream_disconnect_during_fills(h, sim):
    sim.inject("stream_disconnect")
    r = h.take()
    assert h.pump(lambda: h.done(r) and h.proto.subscribed, 15)
    assert sim.order_counts["stream_cut"] == 1 and h.proto.counts["disconnects"] >= 1
    assert h.fills(r.order_id)  # the fills lost with the connection came back by the gap reconciliation
    h.check_invariants()


def test_fault_rate_limits(h, sim):
    # the venue's own rate-limit error on an order: refused, then a back-off until its retryAfter
    sim.inject("order_rate_limit")
    r = h.new(h.far_bid(), 40 * h.btc.lot)
    assert h.pump(lambda: h.status(r.order_id) == S.REJECTED)
    r2 = h.new(h.far_bid(), 40 * h.btc.lot)
    assert h.status(r2.order_id) == S.REJECTED  # refused before sending while backing off
    assert [m.reason for m in h.out if type(m) is OrderUpdate][-2:] == [Reject.RATE_LIMITED] * 2
    assert h.pump(lambda: time.time_ns() > h.proto.backoff_until + 10**8, 5)
    # a 429 with Retry-After on REST: back off that long
    sim.inject("rate_limit")
    h.proto._reconcile(time.time_ns())  # the next REST call meets it
    h.runner._drain(0)
    assert h.pump(lambda: h.proto.counts["http_429"] == 1)
    r3 = h.new(h.far_bid(), 40 * h.btc.lot)
    assert h.status(r3.order_id) == S.REJECTED and h.out[-1].reason == Reject.RATE_LIMITED
    assert h.pump(lambda: time.time_ns() > h.proto.backoff_until + 10**8, 5)  # Retry-After: 1 (s)
    r4 = h.new(h.far_bid(), 40 * h.btc.lot)
    assert h.pump(lambda: h.status(r4.order_id) == S.OPEN)
    assert sim.placed.get(client_id(r.order_id)) is None and sim.placed.get(client_id(r3.order_id)) is None
    h.check_invariants()


def test_orders_limit_refused_before_sending(sim):
    """The handler counts the venue's ORDERS per 10 s (here 5, as the simulator is told): the 6th
    order in a burst is refused by the handler and never reaches the venue."""
    sim.orders_10s = 5
    h = Harness(sim, orders_10s=5).start()
    if time.time() % 10 > 7:  # not across a window's end
        time.sleep(10 - time.time() % 10 + 0.05)
    bid = h.far_bid()
    rs = [h.new(bid - i * h.btc.tick, 40 * h.btc.lot) for i in range(6)]
    assert h.status(rs[-1].order_id) == S.REJECTED
    assert [m.reason for m in h.out if type(m) is OrderUpdate][-1] == Reject.RATE_LIMITED
    assert h.pump(lambda: all(h.status(r.order_id) == S.OPEN for r in rs[:5]))
    assert sim.order_counts["rate_limited"] == 0 and sim.order_counts["placed"] == 5
    h.check_invariants()
    h.close()


def test_fault_ban_halts(h, sim):
    accountkit.fault_ban_halts(h, sim, "418")


def test_fault_cancel_of_an_already_filled_order(h, sim):
    accountkit.fault_cancel_filled(h, sim)


def test_kill_switch_cancels_everything(h, sim):
    accountkit.kill_switch_cancels_everything(h, sim)


def test_restart_reconciles_without_duplicates(sim):
    accountkit.restart_reconciles(Harness, sim)


@pytest.mark.parametrize("asked", [False, True])
def test_a_fill_made_while_the_handler_was_dead_is_reported(sim, asked):
    accountkit.fill_while_dead_is_reported(Harness, sim, asked)


def test_ws_api_checks_signature_and_timestamp(sim):
    from websockets.sync.client import connect

    now = time.time_ns() // 1_000_000
    p = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01000",
         "price": "1000.00", "newClientOrderId": "mtws1"}
    with connect(sim.ws_api_url) as ws:
        def call(msg):
            ws.send(json.dumps(msg))
            return json.loads(ws.recv(timeout=5))
        stale = call(auth.ws_request("order.place", DEFAULT_KEY, DEFAULT_SECRET, p, now - 10_000, 1, 5000))
        assert (stale["status"], stale["error"]["code"]) == (400, -1021)
        bad = auth.ws_request("order.place", DEFAULT_KEY, DEFAULT_SECRET, p, now, 2, 5000)
        bad["params"]["price"] = "1000.01"  # changed after signing
        assert call(bad)["error"] == {"code": -1022, "msg": auth.INVALID_SIGNATURE[1]}
        stranger = call(auth.ws_request("order.place", "someone-else", DEFAULT_SECRET, p, now, 3, 5000))
        assert stranger["error"]["code"] == -2015
        assert not sim.placed
        ok = call(auth.ws_request("order.place", DEFAULT_KEY, DEFAULT_SECRET, p, now, 4, 5000))
        assert ok["status"] == 200 and ok["result"]["clientOrderId"] == "mtws1" and ok["result"]["status"] == "NEW"
        assert {x["rateLimitType"] for x in ok["rateLimits"]} == {"REQUEST_WEIGHT", "ORDERS"}
        again = call(auth.ws_request("order.place", DEFAULT_KEY, DEFAULT_SECRET, p, now, 5, 5000))
        assert again["error"] == {"code": -2010, "msg": "Duplicate order sent."} and sim.placed["mtws1"] == 1
        gone = call(auth.ws_request("order.status", DEFAULT_KEY, DEFAULT_SECRET,
                                    {"symbol": "BTCUSDT", "origClientOrderId": "nope"}, now, 6, 5000))
        assert gone["error"] == {"code": -2013, "msg": "Order does not exist."}
