"""Coinbase order entry end to end: ``CoinbaseOrders`` through the shared ``AccountRunner`` against the
Coinbase simulator over loopback sockets (signed REST orders, the ``user`` channel with its JWT).

Every test checks the invariants the issue asks for: no order placed twice (the simulator counts
NEWs per client id), every fill counted once (the overseer's ``Orders`` book), balances equal to
the simulator's truth.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from urllib.parse import urlsplit

import pytest

import accountkit
from coinbasekit import ED_CREDS, EC_CREDS
from coinbasekit import CoinbaseHarness as Harness
from mantra.sim.coinbase import DEFAULT_KEY, DEFAULT_SECRET, CoinbaseSimulator
from mantra.spine.messages import OrderAction, OrderFlags, OrderRequest, OrderStatus, OrderUpdate
from mantra.trading.accounts import Reject
from mantra.venues.account import Credentials, client_id
from mantra.venues.coinbase import auth
from mantra.venues.coinbase import doctor as coinbase_doctor

S = OrderStatus
ASK, BID = -1, 1
# another EC P-256 key (PKCS#8), made for these tests: the venue does not know it
OTHER_EC = ("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxbay0Rx5aryIv6WX\n"
            "F5vM9osBxQ2GDhc1olvbSDVXNTyhRANCAAQrouxWi3d2dVQZ0+I02HVBFRQPAaPg\n"
            "2mh+kDXWq5q4xsEKGckNNLhZk8+soJqqnadfhnXCyDWKCwrkEr2s3MqN\n-----END PRIVATE KEY-----\n")


@pytest.fixture
def sim():
    s = CoinbaseSimulator(seed=5, rate=40, lifetime_s=120).start()
    yield s
    s.stop()


@pytest.fixture
def h(sim):
    x = Harness(sim, timeout_s=1.5, jwt_lifetime_s=3).start()
    yield x
    x.close()


def _call(sim, method, path, creds=EC_CREDS, body=None, token=None, host=None):
    """One REST call as a client writes it: (status, decoded body)."""
    u = urlsplit(sim.rest_url)
    host = host or u.netloc
    if token is None:
        token = auth.jwt(creds.key, creds.secret, int(time.time()), os.urandom(16).hex(),
                         auth.rest_uri(method, host, path))
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    data = json.dumps(body).encode() if body is not None else None
    c.request(method, path, body=data, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = c.getresponse()
    raw = r.read()
    c.close()
    try:
        return r.status, json.loads(raw)
    except ValueError:
        return r.status, raw


def _limit(cid, price, size, side="BUY", post_only=False):
    conf = {"base_size": size, "limit_price": price, "post_only": post_only}
    return {"client_order_id": cid, "product_id": "BTC-USD", "side": side,
            "order_configuration": {"limit_limit_gtc": conf}}


def test_place_amend_fill_cancel(h, sim):
    lot, tick = h.btc.lot, h.btc.tick
    r = h.new(h.far_bid(), 40_000 * lot)  # 0.0004 BTC, far below the market: rests
    assert h.pump(lambda: h.status(r.order_id) == S.OPEN)
    st = sim.order_state(client_id(r.order_id))
    assert st is not None and (st.price, st.size) == (r.price, r.size)
    # edited in place: new price and size, the same venue order
    a = h.request(OrderAction.AMEND, ref=r.order_id, price=r.price - tick, size=30_000 * lot)
    assert h.pump(lambda: h.orders.get(r.order_id).size == 30_000 * lot and not h.orders.get(r.order_id).pending)
    st = sim.order_state(client_id(r.order_id))
    assert (st.price, st.size) == (a.price, a.size) and sim.order_counts["edited"] == 1
    h.request(OrderAction.CANCEL, ref=r.order_id)
    assert h.pump(lambda: h.status(r.order_id) == S.CANCELLED)
    assert client_id(r.order_id) not in sim.open_orders()
    # a marketable buy (IOC) fills against the simulator's book; its fills come with the venue's trade ids
    t = h.new(h.book().best_ask() + 20 * tick, 40_000 * lot, flags=OrderFlags.IOC)
    assert h.pump(lambda: h.done(t))
    assert h.fills(t.order_id) and h.orders.get(t.order_id).fill_qty > 0
    h.check_invariants()


def test_rejects_carry_the_venues_reasons(h):
    lot, tick = h.btc.lot, h.btc.tick
    tiny = h.new(h.far_bid(), 100 * lot)  # 0.000001 BTC: below the minimum size
    cheap = h.new(h.far_bid(), 1000 * lot)  # 0.00001 BTC, about 0.27 USD: below the 1 USD minimum
    huge = h.new(h.far_bid(), 10**8 * 1000)  # 1000 BTC: more USD than the account holds
    cross = h.new(h.book().best_ask() + tick, 40_000 * lot, flags=OrderFlags.POST_ONLY)
    rs = (tiny, cheap, huge, cross)
    assert h.pump(lambda: all(h.status(r.order_id) == S.REJECTED for r in rs))
    ups = {m.order_id: m.reason for m in h.out if type(m) is OrderUpdate and m.status == S.REJECTED}
    assert [ups[r.order_id] for r in rs] == [Reject.MIN_SIZE, Reject.MIN_NOTIONAL, Reject.INSUFFICIENT_BALANCE,
                                              Reject.POST_ONLY]
    h.check_invariants()


def test_jwt_checked_with_the_real_signing(sim):
    path = "/api/v3/brokerage/accounts"
    assert _call(sim, "GET", path)[0] == 200
    assert _call(sim, "GET", path, ED_CREDS)[0] == 200  # both key types
    now = int(time.time())
    host = urlsplit(sim.rest_url).netloc

    def token(creds=EC_CREDS, at=now, uri=auth.rest_uri("GET", host, path), kid=None):
        return auth.jwt(kid or creds.key, creds.secret, at, "ab" * 32, uri)

    assert _call(sim, "GET", path, token=token(Credentials(DEFAULT_KEY, OTHER_EC)))[0] == 401  # another private key
    assert _call(sim, "GET", path, token=token(kid="organizations/x/apiKeys/nobody"))[0] == 401  # unknown key
    assert _call(sim, "GET", path, token=token(at=now - 130))[0] == 401  # expired (2 minutes)
    other = auth.rest_uri("GET", host, "/api/v3/brokerage/key_permissions")
    assert _call(sim, "GET", path, token=token(uri=other))[0] == 401  # signed for another request
    assert _call(sim, "GET", path, token=token(uri=auth.rest_uri("POST", host, path)))[0] == 401
    assert _call(sim, "GET", path, token="not.a.jwt")[0] == 401
    counts = {k for k in sim.order_counts if k.startswith("auth_")}
    assert {f"auth_{e}" for e in (auth.BAD_SIGNATURE, auth.UNKNOWN_KEY, auth.EXPIRED, auth.WRONG_URI,
                                  auth.MALFORMED)} <= counts
    # the user channel's subscribe: a token that does not verify is refused with the venue's error
    from websockets.sync.client import connect

    with connect(sim.ws_url) as ws:
        bad = auth.ws_subscribe("user", DEFAULT_KEY, OTHER_EC, now, "cd" * 32)
        ws.send(json.dumps(bad))
        err = json.loads(ws.recv(timeout=5))
        assert err["type"] == "error"
        ws.send(json.dumps(auth.ws_subscribe("user", DEFAULT_KEY, DEFAULT_SECRET, now, "cd" * 32, ["BTC-USD"])))
        ack = json.loads(ws.recv(timeout=5))
        snap = json.loads(ws.recv(timeout=5))
        assert ack["channel"] == "subscriptions" and ack["events"][0]["subscriptions"]["user"] == ["BTC-USD"]
        assert snap["channel"] == "user" and snap["events"][0] == {"type": "snapshot", "orders": []}
        assert snap["sequence_num"] == ack["sequence_num"] + 1


def test_an_ed25519_key_trades_too(sim):
    h = Harness(sim, creds=ED_CREDS, timeout_s=1.5, jwt_lifetime_s=3).start()
    r = h.new(h.far_bid(), 40_000 * h.btc.lot)
    assert h.pump(lambda: h.status(r.order_id) == S.OPEN)
    h.request(OrderAction.CANCEL, ref=r.order_id)
    assert h.pump(lambda: h.status(r.order_id) == S.CANCELLED)
    h.check_invariants()
    h.close()


def test_client_order_id_reused_places_nothing(sim):
    """The venue's idempotency: a client order id already used answers with that order."""
    cid = "mt-reuse-1"
    bid = sim.book("BTC-USD").best_bid() // 100 - 200
    st1, a = _call(sim, "POST", "/api/v3/brokerage/orders", body=_limit(cid, f"{bid}.00", "0.001"))
    st2, b = _call(sim, "POST", "/api/v3/brokerage/orders", body=_limit(cid, f"{bid - 1}.00", "0.002"))
    assert st1 == st2 == 200 and a["success"] and b["success"]
    assert a["success_response"]["order_id"] == b["success_response"]["order_id"]
    assert sim.placed[cid] == 1 and sim.order_counts["duplicate_cid"] == 1


def test_refused_credentials_halt(sim):
    accountkit.refused_credentials_halt(Harness, sim, Credentials(DEFAULT_KEY, OTHER_EC), "401")


def test_fault_5xx_after_accept_is_found_not_replaced(h, sim):
    accountkit.fault_5xx_after_accept(h, sim)


def test_fault_timeout_is_queried_by_client_id(h, sim):
    sim.inject("order_timeout")
    r = h.new(h.far_bid(), 40_000 * h.btc.lot)
    assert h.pump(lambda: h.status(r.order_id) == S.OPEN and not h.proto.reqs)
    assert sim.order_counts["not_answered"] == 1 and h.proto.counts["unknown_outcomes"] == 1
    assert sim.placed[client_id(r.order_id)] == 1
    h.check_invariants()


def test_cancel_before_the_venue_id_is_known_waits_for_it(h, sim):
    sim.inject("order_timeout")  # the NEW's answer is lost: its venue id comes from the stream or the query
    r = h.new(h.far_bid(), 40_000 * h.btc.lot)
    h.request(OrderAction.CANCEL, ref=r.order_id)
    assert h.proto.counts["deferred_cancels"] == 1
    assert h.pump(lambda: h.status(r.order_id) == S.CANCELLED and not h.proto.reqs)
    assert not sim.open_orders() and sim.placed[client_id(r.order_id)] == 1
    h.check_invariants()


def test_fault_duplicated_and_reordered_stream(h, sim):
    # the repeated frames (and the late one, if it came after another) are dropped by their sequence
    accountkit.fault_duplicated_and_reordered_stream(h, sim, "user_seq_old")


def test_fault_stream_disconnect_during_fills(h, sim):
    sim.inject("stream_disconnect")
    r = h.take()
    assert h.pump(lambda: h.done(r) and h.proto.subscribed, 15)
    assert sim.order_counts["stream_cut"] == 1 and h.proto.counts["disconnects"] >= 1
    assert h.proto.counts["subscribed"] >= 2  # re-subscribed, and the gap reconciled
    assert h.fills(r.order_id)  # the fills lost with the connection came back
    h.check_invariants()


def test_fault_rate_limits(h, sim):
    # the venue's 429 on an order: refused (not carried out), then a back-off
    sim.inject("order_rate_limit")
    r = h.new(h.far_bid(), 40_000 * h.btc.lot)
    assert h.pump(lambda: h.status(r.order_id) == S.REJECTED)
    r2 = h.new(h.far_bid(), 40_000 * h.btc.lot)
    assert h.status(r2.order_id) == S.REJECTED  # refused before sending while backing off
    assert [m.reason for m in h.out if type(m) is OrderUpdate][-2:] == [Reject.RATE_LIMITED] * 2
    assert h.pump(lambda: time.time_ns() > h.proto.backoff_until + 10**8, 5)
    # a 429 with Retry-After on a reconciliation fetch: back off that long
    sim.inject("rate_limit")
    h.proto._reconcile(time.time_ns())
    h.runner._drain(0)
    assert h.pump(lambda: h.proto.counts["http_429"] == 2)
    r3 = h.new(h.far_bid(), 40_000 * h.btc.lot)
    assert h.status(r3.order_id) == S.REJECTED and h.out[-1].reason == Reject.RATE_LIMITED
    assert h.pump(lambda: time.time_ns() > h.proto.backoff_until + 10**8, 5)  # Retry-After: 1 (s)
    r4 = h.new(h.far_bid(), 40_000 * h.btc.lot)
    assert h.pump(lambda: h.status(r4.order_id) == S.OPEN)
    assert sim.placed.get(client_id(r.order_id)) is None and sim.placed.get(client_id(r3.order_id)) is None
    h.check_invariants()


def test_rest_limit_refused_before_sending(sim):
    """The handler counts the venue's private REST limit (here 8 a second): in a burst, the orders
    beyond it are refused by the handler and never reach the venue."""
    h = Harness(sim, rest_limit_per_s=8, reconcile_s=600).start()
    assert h.pump(lambda: h.proto.rate.room(time.time_ns()) == 8 and not h.proto.inflight)
    bid = h.far_bid()
    rs = [h.new(bid - i * h.btc.tick, 40_000 * h.btc.lot) for i in range(10)]
    refused = [r for r in rs if h.status(r.order_id) == S.REJECTED]
    assert len(refused) == 2 and [m.reason for m in h.out if type(m) is OrderUpdate][-2:] == [Reject.RATE_LIMITED] * 2
    assert h.pump(lambda: all(h.status(r.order_id) == S.OPEN for r in rs if r not in refused))
    assert sim.order_counts["rate_limited"] == 0 and sim.order_counts["placed"] == 8
    h.check_invariants()
    h.close()


def test_venue_rest_limit_refuses_and_the_handler_backs_off(sim):
    """A handler that believes in a larger limit meets the venue's own 429 and backs off."""
    sim.rest_rate_per_s = 6
    h = Harness(sim, rest_limit_per_s=100, rate_backoff_s=0.5, reconcile_s=600).start()
    assert h.pump(lambda: not h.proto.inflight and h.proto.rate.room(time.time_ns()) == 100)
    bid = h.far_bid()
    rs = [h.new(bid - i * h.btc.tick, 40_000 * h.btc.lot) for i in range(10)]
    assert h.pump(lambda: all(h.status(r.order_id) in (S.OPEN, S.REJECTED) for r in rs))
    refused = [m for m in h.out if type(m) is OrderUpdate and m.reason == Reject.RATE_LIMITED]
    assert refused and sim.order_counts["rate_limited"] >= 1 and h.proto.counts["http_429"] >= 1
    assert sim.order_counts["placed"] == sum(h.status(r.order_id) == S.OPEN for r in rs)
    sim.rest_rate_per_s = 30
    h.check_invariants()
    h.close()


def test_fault_ban_halts(h, sim):
    accountkit.fault_ban_halts(h, sim, "403")


def test_fault_cancel_of_an_already_filled_order(h, sim):
    accountkit.fault_cancel_filled(h, sim)


def test_kill_switch_cancels_everything(h, sim):
    rs = [h.new(h.far_bid() - i * h.btc.tick, 40_000 * h.btc.lot) for i in range(3)]
    assert h.pump(lambda: all(h.status(r.order_id) == S.OPEN for r in rs))
    # an order someone else placed on the account (a client id not ours): the kill switch takes it too
    bid = h.far_bid() // 100 - 300
    assert _call(sim, "POST", "/api/v3/brokerage/orders", body=_limit("manual-1", f"{bid}.00", "0.001"))[1]["success"]
    late = h.new(h.far_bid() - 10 * h.btc.tick, 40_000 * h.btc.lot)  # its answer still on the way
    h.runner.cancel_all()
    assert h.pump(lambda: all(h.status(r.order_id) == S.CANCELLED for r in rs + [late]) and not sim.open_orders())
    h.check_invariants()


def test_restart_reconciles_without_duplicates(sim):
    accountkit.restart_reconciles(Harness, sim)


@pytest.mark.parametrize("asked", [False, True])
def test_a_fill_made_while_the_handler_was_dead_is_reported(sim, asked):
    accountkit.fill_while_dead_is_reported(Harness, sim, asked)


# The handler's process, as a system runs it: its own process, killed with SIGKILL mid-run.
def test_kill_9_of_the_handler_process_then_restart_without_a_duplicate_order(sim):
    h0 = Harness(sim)  # for the instrument and prices only
    price, size = h0.far_bid(), 40_000 * h0.btc.lot
    h0.close()
    prices = {2000 + i: price - i * 100 for i in range(12)}
    child = accountkit.HandlerProcess("coinbase", "BTC-USD", sim, EC_CREDS, unknown_orders="adopt")
    try:
        assert child.wait(lambda ls: {"ready": True} in ls)
        child.send(*(f"new {oid} 0 {px} {size}" for oid, px in prices.items()))
        # a few orders acknowledged, more on the way (orders go over REST one at a time)
        assert child.wait(lambda ls: sum(child.status(oid) == S.OPEN for oid in prices) >= 5)
        child.kill()
        sent = child.sent()
        opened = {oid for oid in prices if child.status(oid) == S.OPEN}
    finally:
        child.stop()
    time.sleep(0.2)  # what the dead process had sent reaches the venue (or never will)
    # the restarted handler: the overseer still knows what it asked for
    h = Harness(sim, unknown_orders="adopt", first_id=3000)
    requests = [OrderRequest(oid, 0, prices[oid], size, h.btc.id, 1, 0, OrderAction.NEW, 1, 0) for oid in sent]
    for r in requests:
        h.orders.sent(r)
    h.start()
    placed = {oid for oid in sent if client_id(oid) in sim.placed}
    assert placed >= opened
    assert h.pump(lambda: all(h.status(oid) == S.OPEN for oid in placed))  # adopted, all of them
    # the overseer asks again for everything it sent: what the venue has is never sent twice
    for r in requests:
        h.runner.submit(r)
    assert h.proto.counts["duplicate_new"] == len(placed)
    assert h.pump(lambda: all(h.status(oid) == S.OPEN for oid in sent))
    assert all(n == 1 for n in sim.placed.values()) and sim.order_counts["duplicate_cid"] == 0
    assert set(sim.open_orders()) == {client_id(oid) for oid in sent}
    h.runner.cancel_all()
    assert h.pump(lambda: not sim.open_orders() and all(h.status(oid) == S.CANCELLED for oid in sent))
    h.check_invariants()
    h.close()


# -- mantra venues doctor coinbase ---------------------------------------------------------------------
def test_doctor_a_ready_key_passes_every_check():
    with CoinbaseSimulator(rate=5, balances={"USD": "100", "BTC": "0"}) as sim:
        out = coinbase_doctor.check(EC_CREDS, sim.rest_url)
    assert [ok for ok, _ in out] == [True] * 4, out
    assert any(text.startswith("credentials: accepted (balances: USD 100") for _, text in out), out
    assert DEFAULT_SECRET not in repr(out)


def test_doctor_names_each_problem():
    with CoinbaseSimulator(rate=5) as sim:
        out = coinbase_doctor.check(Credentials(DEFAULT_KEY, OTHER_EC), sim.rest_url)
    assert [ok for ok, _ in out][:2] == [True, False] and out[1][1].startswith("credentials: refused (401 "), out
    with CoinbaseSimulator(rate=5, clock_skew_ms=5000) as sim:
        out = coinbase_doctor.check(EC_CREDS, sim.rest_url)
    assert not out[0][0] and out[0][1].startswith("clock: ours is -5.0"), out
    with CoinbaseSimulator(rate=5, permissions=("view",)) as sim:
        out = coinbase_doctor.check(EC_CREDS, sim.rest_url)
    assert any(not ok and text.startswith("permissions: the key cannot trade") for ok, text in out), out
    out = coinbase_doctor.check(Credentials(DEFAULT_KEY, "bm90IGEga2V5"), "http://127.0.0.1:9")
    assert out == [(False, "credentials: the secret is not a Coinbase key: a base64 Ed25519 secret is 32 or 64 "
                           "bytes, not 9")]
