"""Bitstamp order entry end to end: ``BitstampOrders`` through the shared ``AccountRunner`` against the
Bitstamp simulator over loopback sockets (signed HTTP API v2 on kept-alive connections, the private
WebSocket channels with their token).

Every test checks the invariants the issue asks for: no order placed twice (the simulator counts
NEWs per client id, and accepts a client id it has seen, as the venue does since 2023-11), every
fill counted once (the overseer's ``Orders`` book), balances (total and available) equal to the
simulator's truth.  The handler's process is also killed (SIGKILL) and restarted.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from urllib.parse import urlsplit

import pytest

import accountkit
from bitstampkit import BitstampHarness as Harness
from mantra.sim.bitstamp import DEFAULT_KEY, DEFAULT_SECRET, BitstampSimulator
from mantra.spine.messages import OrderAction, OrderFlags, OrderStatus, OrderUpdate
from mantra.trading.accounts import Reject
from mantra.venues.account import Credentials, client_id
from mantra.venues.bitstamp import auth, doctor
from waits import wait_for

S = OrderStatus
ASK, BID = -1, 1
CREDS = Credentials(DEFAULT_KEY, DEFAULT_SECRET)
UNIT = 100_000  # lots of 0.00000001 BTC: 0.001 BTC, above the 10 USD minimum order value


@pytest.fixture
def sim():
    s = BitstampSimulator(seed=5, rate=40, lifetime_s=120).start()
    yield s
    s.stop()


@pytest.fixture
def h(sim):
    x = Harness(sim, timeout_s=1.0).start()
    yield x
    x.close()


def test_place_fill_cancel_and_amend_refused(h, sim):
    r = h.new(h.far_bid(), 2 * UNIT)  # far below the market: rests
    assert h.pump(lambda: h.status(r.order_id) == S.OPEN)
    st = sim.order_state(client_id(r.order_id))
    assert st is not None and (st.price, st.size) == (r.price, r.size)
    # Bitstamp has no amend in place: refused, the order stands as it was
    h.request(OrderAction.AMEND, ref=r.order_id, price=r.price - h.btc.tick, size=3 * UNIT)
    assert h.reasons()[-1] == Reject.UNSUPPORTED and h.status(r.order_id) == S.OPEN
    assert (sim.order_state(client_id(r.order_id)).price, sim.order_state(client_id(r.order_id)).size) == \
        (r.price, r.size)
    h.request(OrderAction.CANCEL, ref=r.order_id)
    assert h.pump(lambda: h.status(r.order_id) == S.CANCELLED)
    assert client_id(r.order_id) not in sim.open_orders()
    # a marketable buy fills against the simulator's book
    t = h.new(h.book().best_ask() + 20 * h.btc.tick, UNIT, flags=OrderFlags.IOC)
    assert h.pump(lambda: h.done(t) and h.status(t.order_id) in (S.FILLED, S.CANCELLED))
    assert h.fills(t.order_id) and h.orders.get(t.order_id).fill_qty > 0
    h.check_invariants()


def test_rejects_carry_the_venues_reasons(h):
    tiny = h.new(h.far_bid(), UNIT // 10)  # 0.0001 BTC: below the 10 USD minimum order value
    huge = h.new(h.far_bid(), 10**8 * 1000)  # 1000 BTC: more USD than the account holds
    cross = h.new(h.book().best_ask() + h.btc.tick, UNIT, flags=OrderFlags.POST_ONLY)
    assert h.pump(lambda: h.status(tiny.order_id) == h.status(huge.order_id) == S.REJECTED
                  and h.status(cross.order_id) == S.CANCELLED)
    ups = {m.order_id: m.reason for m in h.out if type(m) is OrderUpdate and m.status in (S.REJECTED, S.CANCELLED)}
    # maker-or-cancel: the venue takes the order and cancels it at once
    assert [ups[r.order_id] for r in (tiny, huge, cross)] == [Reject.MIN_NOTIONAL, Reject.INSUFFICIENT_BALANCE,
                                                               Reject.POST_ONLY]
    h.check_invariants()


def _post(sim, path, headers, body):
    u = urlsplit(sim.rest_url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    c.request("POST", path, body=body or None, headers=dict(headers))
    r = c.getresponse()
    raw = r.read()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, raw
    c.close()
    return out


def test_signature_nonce_and_timestamp_checked_with_the_real_signing(sim):
    path = "/api/v2/account_balances/"
    host = urlsplit(sim.rest_url).netloc
    now = time.time_ns() // 1_000_000

    def call(key=DEFAULT_KEY, secret=DEFAULT_SECRET, nonce=None, ts=now):
        nonce = nonce or str(uuid.uuid4())
        headers, body = auth.rest_request(key, secret, "POST", host, path, nonce, ts)
        st, hdrs, raw = _post(sim, path, headers, body)
        return st, json.loads(raw), hdrs, raw, nonce

    st, doc, hdrs, raw, nonce = call()
    assert st == 200 and {"currency": "usd", "total": "1000000.00000", "available": "1000000.00000",
                          "reserved": "0.00000"} in doc
    assert auth.check_response(DEFAULT_SECRET, nonce, now, hdrs, raw) is True  # the venue signs its answers
    assert call(nonce=nonce)[:2] == (403, {"status": "error", "reason": "Invalid nonce", "code": "API0004"})
    assert call(secret="another-secret")[1]["code"] == "API0005"
    assert call(key="someone-else")[1]["code"] == "API0001"
    assert call(ts=now - 200_000)[1]["code"] == "API0017"
    assert sim.order_counts["auth_API0005"] == 1


def test_refused_credentials_halt(sim):
    accountkit.refused_credentials_halt(Harness, sim, Credentials(DEFAULT_KEY, "not-the-secret"),
                                        "Invalid signature")


def test_fault_5xx_after_accept_is_found_not_replaced(h, sim):
    accountkit.fault_5xx_after_accept(h, sim)


def test_fault_no_answer_is_queried_by_client_id(sim):
    sim.timeout_answer_s = 3.5  # past the runner's HTTP timeout (3 s here): no answer at all
    h = Harness(sim, timeout_s=1.0).start()
    sim.inject("order_timeout")
    r = h.new(h.far_bid(), 2 * UNIT)
    assert h.pump(lambda: h.status(r.order_id) == S.OPEN and not h.proto.reqs, 10)
    assert h.proto.counts["timeouts"] == 1 and sim.order_counts["not_answered"] == 1
    assert h.proto.counts["rest_order_status"] >= 1 and h.proto.counts["http_failed"] >= 1
    assert sim.placed[client_id(r.order_id)] == 1
    h.check_invariants()
    h.close()


def test_fault_duplicated_and_reordered_stream(h, sim):
    accountkit.fault_duplicated_and_reordered_stream(h, sim, "duplicate_fills")


def test_fault_stream_disconnect_during_fills(h, sim):
    sim.inject("stream_disconnect")
    r = h.take()
    assert h.pump(lambda: h.done(r) and h.proto.subscribed and h.proto.counts["subscribed"] >= 2, 15)
    assert sim.order_counts["stream_cut"] == 1 and h.proto.counts["disconnects"] >= 1
    assert h.fills(r.order_id)  # the fill lost with the connection came back with the gap's user_transactions
    h.check_invariants()


def test_reconnect_request_resubscribes_and_carries_on(h, sim):
    sim.inject("reconnect_request")
    assert h.pump(lambda: h.proto.counts["reconnect_requests"] == 1 and h.proto.counts["subscribed"] >= 2)
    r = h.take()
    assert h.pump(lambda: h.done(r))
    assert h.fills(r.order_id)
    h.check_invariants()


def test_fault_rate_limits(h, sim):
    # the venue's own refusal of an order (400.002): not carried out, then a back-off
    sim.inject("order_rate_limit")
    r = h.new(h.far_bid(), 2 * UNIT)
    assert h.pump(lambda: h.status(r.order_id) == S.REJECTED)
    r2 = h.new(h.far_bid(), 2 * UNIT)
    assert h.status(r2.order_id) == S.REJECTED  # refused before sending while backing off
    assert h.reasons()[-2:] == [Reject.RATE_LIMITED] * 2
    assert h.pump(lambda: time.time_ns() > h.proto.backoff_until, 5)
    # a 429 with Retry-After: back off that long
    sim.inject("rate_limit")
    r3 = h.new(h.far_bid(), 2 * UNIT)
    assert h.pump(lambda: h.proto.counts["http_429"] == 1 and h.status(r3.order_id) == S.REJECTED)
    r4 = h.new(h.far_bid(), 2 * UNIT)
    assert h.status(r4.order_id) == S.REJECTED and h.reasons()[-1] == Reject.RATE_LIMITED
    assert h.pump(lambda: time.time_ns() > h.proto.backoff_until + 10**8, 5)  # Retry-After: 1 (s)
    r5 = h.new(h.far_bid(), 2 * UNIT)
    assert h.pump(lambda: h.status(r5.order_id) == S.OPEN)
    assert sim.placed.get(client_id(r.order_id)) is None and sim.placed.get(client_id(r3.order_id)) is None
    h.check_invariants()


def test_request_limits_refused_before_sending(sim):
    """The handler counts the documented windows itself: past them a request is refused and never
    reaches the venue."""
    h = Harness(sim, rate_per_10min=20).start()
    used = sum(n for k, n in h.proto.counts.items() if k.startswith("rest_"))
    bid = h.far_bid()
    rs = [h.new(bid - i * h.btc.tick, 2 * UNIT) for i in range(30 - used)]
    refused = [r for r in rs if h.status(r.order_id) == S.REJECTED]
    assert refused and h.reasons()[-1] == Reject.RATE_LIMITED
    assert h.pump(lambda: all(h.status(r.order_id) == S.OPEN for r in rs if r not in refused))
    assert sim.order_counts["rate_limited"] == 0
    h.close()


def test_venue_request_limit_refusals_back_off(sim):
    """A handler that believes in a larger limit meets the venue's own 400.002."""
    sim.rate_per_s = 6
    h = Harness(sim, rate_backoff_s=0.5).start()
    assert h.pump(lambda: time.time() % 1 < 0.2, 3)  # a fresh second on the venue's clock
    bid = h.far_bid()
    rs = [h.new(bid - i * h.btc.tick, 2 * UNIT) for i in range(8)]
    assert h.pump(lambda: all(h.status(r.order_id) in (S.OPEN, S.REJECTED) for r in rs))
    refused = [r for r in rs if h.status(r.order_id) == S.REJECTED]
    assert refused and sim.order_counts["rate_limited"] >= 1
    assert h.proto.counts["rate_limited_by_venue"] >= 1
    assert all(sim.placed.get(client_id(r.order_id)) is None for r in refused)
    h.check_invariants()
    h.close()


def test_fault_ban_halts(h, sim):
    sim.inject("ban")
    r0 = h.new(h.far_bid(), 2 * UNIT)
    assert h.pump(lambda: h.runner.halted)
    assert "418" in h.runner.halted and h.status(r0.order_id) is not None
    r = h.new(h.far_bid(), 2 * UNIT)
    assert h.status(r.order_id) == S.REJECTED and sim.placed.get(client_id(r.order_id)) is None


def test_fault_cancel_of_an_already_filled_order(h, sim):
    accountkit.fault_cancel_filled(h, sim)


def test_kill_switch_cancels_everything(h, sim):
    accountkit.kill_switch_cancels_everything(h, sim)
    assert h.proto.counts["rest_cancel_all_orders"] == 1


def test_periodic_reconcile_finds_what_a_silent_stream_missed(sim):
    h = Harness(sim, reconcile_s=1.0).start()
    r = h.new(h.far_bid(), 2 * UNIT)
    assert h.pump(lambda: h.status(r.order_id) == S.OPEN)
    with sim.lock:  # the venue stops sending our channels without closing the connection
        for c in sim.clients:
            c.channels = {ch for ch in c.channels if not ch.startswith("private-")}
    headers, body = auth.rest_request(DEFAULT_KEY, DEFAULT_SECRET, "POST", urlsplit(sim.rest_url).netloc,
                                      "/api/v2/cancel_all_orders/", str(uuid.uuid4()), time.time_ns() // 1_000_000)
    assert _post(sim, "/api/v2/cancel_all_orders/", headers, body)[0] == 200  # someone else cancels it
    assert h.pump(lambda: h.status(r.order_id) == S.CANCELLED, 5)
    assert h.proto.counts["drift_orders"] == 1
    h.check_invariants()
    h.close()


def test_restart_reconciles_without_duplicates(sim):
    accountkit.restart_reconciles(Harness, sim)


@pytest.mark.parametrize("asked", [False, True])
def test_a_fill_made_while_the_handler_was_dead_is_reported(sim, asked):
    accountkit.fill_while_dead_is_reported(Harness, sim, asked)


# -- kill -9 of the handler's process ----------------------------------------------------------------
def test_kill_9_of_the_handler_and_restart_without_a_duplicate_order(sim):
    bid = sim.book("btcusd").best_bid() - 300  # far below the market: they rest
    first = accountkit.HandlerProcess("bitstamp", "btcusd", sim, CREDS, unknown_orders="adopt", timeout_s=1.0)
    try:
        assert first.wait(lambda ls: {"ready": True} in ls)
        first.send(*(f"new {1000 + i} 0 {bid - i} {2 * UNIT}" for i in range(4)))
        assert first.wait(lambda ls: sum("sent" in x for x in ls) == 4) and wait_for(lambda: len(sim.placed) >= 2, 10)
        first.kill()  # mid-flight: the last requests and answers may be on their way
    finally:
        first.stop()
    assert wait_for(lambda: len(sim.open_orders()) == len(sim.placed), 10)
    before = dict(sim.placed)
    second = accountkit.HandlerProcess("bitstamp", "btcusd", sim, CREDS, unknown_orders="adopt", timeout_s=1.0)
    try:
        assert second.wait(lambda ls: {"ready": True} in ls)
        # it reconciles: every order the venue holds is adopted, none is placed again
        assert second.wait(lambda ls: all(second.status(1000 + i) == S.OPEN for i in range(4)
                                          if client_id(1000 + i) in before))
        second.send(f"new 2000 0 {bid - 10} {2 * UNIT}", *(f"cancel {3000 + i} {1000 + i} 0 0" for i in range(4)))
        assert second.wait(lambda ls: second.status(2000) == S.OPEN and all(
            second.status(1000 + i) == S.CANCELLED for i in range(4) if client_id(1000 + i) in before))
    finally:
        second.stop()
    assert before and all(n == 1 for n in sim.placed.values()), sim.placed
    assert set(sim.placed) == set(before) | {client_id(2000)}
    assert list(sim.open_orders()) == [client_id(2000)]


# -- mantra venues doctor bitstamp ---------------------------------------------------------------------
def test_doctor_a_ready_key_passes_every_check():
    with BitstampSimulator(rate=5, balances={"USD": "100"}) as sim:
        out = doctor.check(Credentials(DEFAULT_KEY, DEFAULT_SECRET), sim.rest_url)
    assert [ok for ok, _ in out] == [True] * 5, out
    assert "credentials: accepted (balances: USD 100" in out[1][1]
    assert DEFAULT_SECRET not in repr(out)


def test_doctor_names_each_problem_in_one_line():
    with BitstampSimulator(rate=5) as sim:
        out = doctor.check(Credentials(DEFAULT_KEY, "wrong-secret"), sim.rest_url)
    assert [(ok, t) for ok, t in out if not ok] == [(False, "credentials: refused (403 API0005 Invalid signature): "
                                                            "check the secret")]
    with BitstampSimulator(rate=5, clock_skew_ms=5000) as sim:
        out = doctor.check(Credentials(DEFAULT_KEY, DEFAULT_SECRET), sim.rest_url)
    assert not out[0][0] and out[0][1].startswith("clock: ours is -") and all(ok for ok, _ in out[1:])
    with BitstampSimulator(rate=5, clock_skew_ms=200_000) as sim:
        out = doctor.check(Credentials(DEFAULT_KEY, DEFAULT_SECRET), sim.rest_url)
    assert out[0] == (False, "clock: the venue refused our timestamp (API0017): ours is more than 150 s off its "
                             "clock; synchronise the clock (NTP/chrony)")
    with BitstampSimulator(rate=5, permissions=("read", "trade")) as sim:
        out = doctor.check(Credentials(DEFAULT_KEY, DEFAULT_SECRET), sim.rest_url)
    assert [t.split(":")[0] for ok, t in out if not ok] == ["permissions"] and "WebSocket token" in out[2][1]
