"""Bitfinex order entry, sans-IO: signing against the documented layouts and rule, client ids, request
shapes, notifications, the account stream, UNKNOWN outcomes, rate limits, halts and reconciliation
(venues/bitfinex/auth.py, venues/bitfinex/orders.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures import VECTORS
from mantra.instruments import Instrument
from mantra.spine.messages import BalanceUpdate, Fill, OrderAction, OrderFlags, OrderRequest, OrderStatus, OrderUpdate
from mantra.trading.accounts import Reject
from mantra.venues.account import Close, Credentials, Halt, Http, Open, WsSend
from mantra.venues.bitfinex import auth
from mantra.venues.bitfinex.orders import (CID_MASK, GID_BASE, BitfinexOrders, bfx_ids, order_id_of, order_status,
                                           reject_reason, utc_date)
from venuekit import https, take, updates

BF = json.loads(VECTORS.read_text())["bitfinex"]
MSG = BF["messages"]
SECRET = "bitfinex-test-secret"
CREDS = Credentials("bitfinex-test-key", SECRET)
BTC = Instrument(1, "bitfinex", "tBTCUSD", "BTC", "USD", price_scale=10, size_scale=8)
T0 = 1_700_000_000_000_000_000
MS0 = T0 // 1_000_000
S = OrderStatus
OID = 1_700_000_000_123_456_789  # an overseer's order id: its start time in ns, and onwards
GID, CID = bfx_ids(OID)
VID = 1185815098  # the venue's id of that order


def hmac384(key: str, msg: str) -> str:
    return hmac.new(key.encode(), msg.encode(), hashlib.sha384).hexdigest()


def new(oid=OID, price="27000", size="0.5", side=1, flags=0):
    return OrderRequest(oid, 0, BTC.price(price), BTC.size(size), BTC.id, 1, 0, OrderAction.NEW, side, flags)


def amend(ref, price, size, oid=OID + 100):
    return OrderRequest(oid, ref, BTC.price(price), BTC.size(size), BTC.id, 1, 0, OrderAction.AMEND, 1, 0)


def cancel(ref, oid=OID + 200):
    return OrderRequest(oid, ref, 0, 0, BTC.id, 1, 0, OrderAction.CANCEL, 1, 0)


def frames(events):
    return [json.loads(e.text) for e in events if type(e) is WsSend]


def order_arr(status="ACTIVE", amount="0.5", orig="0.5", price=27000, vid=VID, gid=GID, cid=CID, mts=MS0):
    """An order array as the docs list its fields (32 of them)."""
    a = [vid, gid, cid, "tBTCUSD", mts, mts + 15, amount, orig, "EXCHANGE LIMIT", None, None, None, 0, status,
         None, None, price, 0, 0, 0, None, None, None, 0, 0, None, None, None, "API>BFX", None, None, {}]
    return a


def acct(kind, data):
    return json.dumps([0, kind, data])


def notify(kind, arr, status="SUCCESS", text="ok"):
    return acct("n", [MS0, kind, None, None, arr, None, status, text])


def trade(tid, amount, price, fee=None, ccy=None, vid=VID, cid=CID, maker=-1):
    return [tid, "tBTCUSD", MS0 + 5, vid, amount, price, "EXCHANGE LIMIT", 27000, maker, fee, ccy, cid]


def answer(p, h: Http, doc, status=200, now=T0, headers=None):
    p.on_http(h.tag, status, headers or {}, json.dumps(doc).encode(), now)


def live(now=T0, **kw) -> BitfinexOrders:
    """A protocol started, its start-up REST answered, connected and logged on; events cleared."""
    p = BitfinexOrders(CREDS, [BTC], **kw)
    p.start(now)
    for h in https(take(p)):
        answer(p, h, [])
    p.on_open("private", now)
    take(p)
    p.on_frame("private", json.dumps({"event": "auth", "status": "OK", "chanId": 0, "userId": 1,
                                      "caps": {"orders": {"read": 1, "write": 1}}}), now)
    take(p)
    return p


def placed(p, r=None, now=T0):
    """``r`` sent and acknowledged (``on-req`` SUCCESS, then ``on``)."""
    r = r or new()
    p.submit(r, now)
    take(p)
    p.on_frame("private", notify("on-req", order_arr()), now)
    p.on_frame("private", acct("on", order_arr()), now)
    take(p)
    return r


# ---------------------------------------------------------------------------------------- signing
def test_auth_event_matches_the_documented_message_byte_for_byte():
    doc = MSG["auth_request"]["message"]
    nonce = int(doc["authNonce"])
    text = auth.ws_auth_text(doc["apiKey"], SECRET, nonce)
    want = dict(doc, authSig=hmac384(SECRET, doc["authPayload"]))  # the docs' rule, computed on its own
    assert text == json.dumps(want, separators=(",", ":"))  # same fields, same order, same values
    assert "dms" not in auth.ws_auth(doc["apiKey"], SECRET, nonce, dms=False)
    # documented: HMAC-SHA384 hex of "AUTH" + nonce with the secret as the key; 96 lowercase hex digits
    assert len(want["authSig"]) == 96 and want["authSig"] == want["authSig"].lower()


def test_rest_signature_follows_the_documented_rule():
    body = auth.rest_body({"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.1", "price": "10000",
                           "cid": None})
    assert body == b'{"type":"EXCHANGE LIMIT","symbol":"tBTCUSD","amount":"0.1","price":"10000"}'
    headers, wire = auth.rest_request("key", SECRET, "/v2/auth/w/order/submit", 1_700_000_000_000_000,
                                      {"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.1",
                                       "price": "10000"})
    h = dict(headers)
    assert wire == body and h["bfx-nonce"] == "1700000000000000" and h["bfx-apikey"] == "key"
    # "/api/" + apiPath + nonce + body (the official gist and SDK)
    assert h["bfx-signature"] == hmac384(SECRET, "/api/v2/auth/w/order/submit1700000000000000" + body.decode())
    _, empty = auth.rest_request("key", SECRET, "/v2/auth/r/wallets", 1)
    assert empty == b"{}"


def test_verify_gives_the_venues_errors():
    nonce = 1_700_000_000_000_000
    msg = auth.ws_auth("key", SECRET, nonce)
    assert auth.verify_ws({"key": SECRET}, msg, None) == (None, nonce)
    assert auth.verify_ws({"key": SECRET}, msg, nonce)[0] == auth.NONCE_SMALL
    assert auth.verify_ws({"key": "other"}, msg, None)[0] == auth.INVALID_SIGNATURE
    assert auth.verify_ws({"other": SECRET}, msg, None)[0] == auth.INVALID_KEY
    assert auth.verify_ws({"key": SECRET}, dict(msg, authPayload="AUTH1"), None)[0] == auth.BAD_PAYLOAD
    path = "/v2/auth/r/orders"
    headers, body = auth.rest_request("key", SECRET, path, nonce)
    assert auth.verify_rest({"key": SECRET}, path, dict(headers), body, None) == (None, nonce)
    assert auth.verify_rest({"key": SECRET}, path, dict(headers), body, nonce)[0] == auth.NONCE_SMALL
    assert auth.verify_rest({"key": SECRET}, "/v2/auth/r/wallets", dict(headers), body, None)[0] == \
        auth.INVALID_SIGNATURE  # another path with the same signature does not pass
    assert auth.verify_rest({"key": SECRET}, path, dict(headers), b'{"x":1}', None)[0] == auth.INVALID_SIGNATURE
    assert auth.verify_rest({"other": SECRET}, path, dict(headers), body, None)[0] == auth.INVALID_KEY


def test_nonce_always_increases_and_stays_below_the_limit():
    assert auth.next_nonce(0, T0) == T0 // 1000  # µs
    assert auth.next_nonce(T0 // 1000, T0) == T0 // 1000 + 1
    assert auth.next_nonce(T0 // 1000 + 5, T0 - 10**9) == T0 // 1000 + 6  # the clock stepped back
    with pytest.raises(ValueError):
        auth.next_nonce(auth.MAX_NONCE, T0)
    p = BitfinexOrders(CREDS, [BTC])
    p.start(T0)
    nonces = [int(dict(h.headers)["bfx-nonce"]) for h in https(take(p))]
    assert len(nonces) == 3 and nonces == sorted(set(nonces))


# ---------------------------------------------------------------------------------------- client ids
@given(st.integers(0, (1 << 64) - 1))
def test_client_ids_are_reversible_and_within_the_venues_ranges(order_id):
    gid, cid = bfx_ids(order_id)
    assert 0 <= cid <= CID_MASK < 2**45 and GID_BASE <= gid < 2**31
    assert order_id_of(gid, cid) == order_id


def test_orders_of_others_are_not_ours():
    assert order_id_of(None, 1575287436979) is None  # the venue's web site: no group
    assert order_id_of(1, 12345) is None  # the docs' example group
    assert order_id_of(GID, "12") is None and order_id_of(GID, -1) is None
    consecutive = [bfx_ids(OID + i)[1] for i in range(1000)]
    assert len(set(consecutive)) == 1000  # one day's orders never share a cid


# ---------------------------------------------------------------------------------------- start
def test_start_opens_the_socket_and_fetches_state_signed():
    p = BitfinexOrders(CREDS, [BTC])
    p.start(T0)
    ev = take(p)
    assert Open("private", "wss://api.bitfinex.com/ws/2") in ev
    assert [h.url for h in https(ev)] == ["https://api.bitfinex.com/v2/auth/r/" + x
                                         for x in ("orders", "wallets", "trades/hist")]
    last = None
    for h in https(ev):
        err, last = auth.verify_rest({CREDS.key: SECRET}, h.url[len("https://api.bitfinex.com"):], dict(h.headers),
                                     h.body, last)
        assert err is None and h.method == "POST"
    assert json.loads(https(ev)[2].body) == {"start": MS0 - 3_600_000, "limit": 2500, "sort": 1}
    assert not frames(ev)


def test_log_on_waits_for_rest_in_flight_and_arms_the_dead_man_switch():
    p = BitfinexOrders(CREDS, [BTC])
    p.start(T0)
    hs = https(take(p))
    p.on_open("private", T0)
    assert not frames(take(p)) and p.counts["auth_waits_for_rest"] == 1  # its nonce would overtake theirs
    for h in hs:
        answer(p, h, [])
    (m,) = frames(take(p))
    assert m["event"] == "auth" and m["dms"] == 4 and m["apiKey"] == CREDS.key
    assert m["authSig"] == hmac384(SECRET, m["authPayload"]) and m["authPayload"] == "AUTH" + m["authNonce"]
    assert int(m["authNonce"]) > max(int(dict(h.headers)["bfx-nonce"]) for h in hs)
    p.on_frame("private", json.dumps({"event": "auth", "status": "OK", "chanId": 0}), T0)
    assert p.ready and p.subscribed
    q = BitfinexOrders(CREDS, [BTC], dead_man=False)
    q.on_open("private", T0)
    assert "dms" not in frames(take(q))[0]


def test_refused_log_on_halts_and_a_small_nonce_is_retried():
    p = BitfinexOrders(CREDS, [BTC])
    p.on_open("private", T0)
    first = int(frames(take(p))[0]["authNonce"])
    p.on_frame("private", json.dumps({"event": "auth", "status": "FAILED", "chanId": 0, "code": 10114,
                                      "msg": "nonce: small"}), T0)
    again = frames(take(p))
    assert int(again[0]["authNonce"]) > first and not p.halted
    p.on_frame("private", json.dumps({"event": "auth", "status": "FAILED", "chanId": 0, "code": 10100,
                                      "msg": "apikey: invalid"}), T0)
    assert any(type(e) is Halt for e in take(p)) and "apikey: invalid" in p.halted
    q = BitfinexOrders(CREDS, [BTC])
    q.on_open("private", T0)
    q.on_frame("private", json.dumps({"event": "auth", "status": "OK", "chanId": 0,
                                      "caps": {"orders": {"read": 1, "write": 0}}}), T0)
    assert "may not write orders" in q.halted


# ---------------------------------------------------------------------------------------- requests
def test_new_is_an_on_input_with_exact_decimals_and_our_ids():
    p = live()
    p.submit(new(), T0)
    (m,) = frames(take(p))
    doc = MSG["new_order_input"]["message"]
    assert m[:3] == doc[:3] and list(m[3]) == list(doc[3])  # the documented form, field for field
    assert m[3] == {"gid": GID, "cid": CID, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.5",
                    "price": "27000", "flags": 0}
    p.submit(new(OID + 1, "26999.5", "0.00012345", side=-1, flags=OrderFlags.POST_ONLY), T0)
    p.submit(new(OID + 2, "27100", "0.1", flags=OrderFlags.IOC), T0)
    sell, ioc = frames(take(p))
    assert (sell[3]["amount"], sell[3]["price"], sell[3]["flags"]) == ("-0.00012345", "26999.5", 4096)
    assert ioc[3]["type"] == "EXCHANGE IOC"


def test_the_hot_path_frame_is_the_generic_encoding():
    p = live()
    for i, (price, size, side, flags) in enumerate([("27000", "0.5", 1, 0), ("0.000017", "12.5", -1, 1),
                                                     ("123.45", "0.00000001", 1, 2)]):
        p.submit(new(OID + i, price, size, side, flags), T0)
        (ws,) = [e for e in take(p) if type(e) is WsSend]
        assert ws.text == json.dumps(json.loads(ws.text), separators=(",", ":"))


def test_on_req_success_acks_and_error_rejects_with_the_reason():
    p = live()
    p.submit(new(), T0)
    take(p)
    p.on_frame("private", notify("on-req", order_arr(), text="Submitting exchange limit buy order for 0.5 BTC."), T0)
    (u,) = updates(take(p))
    assert (u.order_id, u.status, u.venue_id.rstrip(b"\0")) == (OID, S.ACK, str(VID).encode())
    p.on_frame("private", acct("on", order_arr()), T0)
    assert [u.status for u in updates(take(p))] == [S.OPEN]
    for i, text, why in [(1, "Invalid order: not enough exchange balance for 1000 BTCUSD at 27000",
                          Reject.INSUFFICIENT_BALANCE),
                         (2, "Invalid order: minimum size for BTC/USD is 0.00004", Reject.MIN_SIZE),
                         (3, "Invalid price.", Reject.TICK), (4, "something new", Reject.VENUE_ERROR)]:
        g, c = bfx_ids(OID + i)
        p.submit(new(OID + i), T0)
        take(p)
        p.on_frame("private", notify("on-req", order_arr(vid=None, gid=g, cid=c), "ERROR", text), T0)
        (u,) = updates(take(p))
        assert (u.order_id, u.status, u.reason) == (OID + i, S.REJECTED, why)
    assert not p.reqs


def test_stream_states_and_the_post_only_refusal():
    p = live()
    placed(p)
    p.on_frame("private", acct("ou", order_arr("PARTIALLY FILLED @ 27000(0.2)", amount="0.3")), T0)
    (u,) = updates(take(p))
    assert (u.status, u.filled) == (S.PARTIALLY_FILLED, BTC.size("0.2"))
    p.on_frame("private", acct("oc", order_arr("EXECUTED @ 27000(0.5)", amount="0")), T0)
    (u,) = updates(take(p))
    assert (u.status, u.filled) == (S.FILLED, BTC.size("0.5"))
    g, c = bfx_ids(OID + 1)
    p.submit(new(OID + 1, flags=OrderFlags.POST_ONLY), T0)
    p.on_frame("private", notify("on-req", order_arr(vid=VID + 1, gid=g, cid=c)), T0)
    p.on_frame("private", acct("oc", order_arr("POSTONLY CANCELED", vid=VID + 1, gid=g, cid=c)), T0)
    assert [(u.status, u.reason) for u in updates(take(p))] == [(S.ACK, 0), (S.REJECTED, Reject.POST_ONLY)]


def test_amend_is_an_ou_with_the_venue_id_and_a_signed_delta():
    p = live()
    r = placed(p)
    p.submit(amend(r.order_id, "26990", "0.7"), T0)
    (m,) = frames(take(p))
    assert m == [0, "ou", None, {"id": VID, "price": "26990", "delta": "0.2"}]
    p.on_frame("private", notify("ou-req", order_arr(amount="0.7", orig="0.7", price=26990)), T0)
    (u,) = updates(take(p))
    assert (u.order_id, u.price, u.size, u.status) == (OID, BTC.price("26990"), BTC.size("0.7"), S.OPEN)
    p.on_frame("private", acct("ou", order_arr(amount="0.7", orig="0.7", price=26990)), T0)
    assert not updates(take(p))  # nothing new
    # a sell grows with a negative delta
    g, c = bfx_ids(OID + 5)
    p.submit(new(OID + 5, side=-1), T0)
    p.on_frame("private", notify("on-req", order_arr(vid=VID + 5, gid=g, cid=c, amount="-0.5")), T0)
    take(p)
    p.submit(amend(OID + 5, "27000", "0.6", oid=OID + 6), T0)
    assert frames(take(p))[0][3] == {"id": VID + 5, "price": "27000", "delta": "-0.1"}
    # an order not acknowledged yet has no id to amend by
    p.submit(new(OID + 7), T0)
    take(p)
    p.submit(amend(OID + 7, "27000", "0.6", oid=OID + 8), T0)
    (u,) = updates(take(p))
    assert (u.order_id, u.status, u.reason) == (OID + 7, S.CANCEL_REJECTED, Reject.VENUE_ERROR)


def test_cancel_by_venue_id_or_by_client_id_and_date_and_cancel_all():
    p = live()
    r = placed(p)
    p.submit(cancel(r.order_id), T0)
    assert frames(take(p)) == [[0, "oc", None, {"id": VID}]]
    p.on_frame("private", notify("oc-req", order_arr()), T0)
    assert not updates(take(p))  # taken for cancellation: the oc says how it ended
    p.on_frame("private", acct("oc", order_arr("CANCELED")), T0)
    assert [u.status for u in updates(take(p))] == [S.CANCELLED]
    p.submit(new(OID + 1), T0)
    take(p)
    p.submit(cancel(OID + 1), T0)
    assert frames(take(p)) == [[0, "oc", None, {"cid": bfx_ids(OID + 1)[1], "cid_date": "2023-11-14"}]]
    p.cancel_all(T0)
    assert frames(take(p)) == [[0, "oc_multi", None, {"all": 1}]]
    p.on_frame("private", notify("oc_multi-req", [], "ERROR", "busy"), T0)  # the kill switch does not stop there
    assert [json.loads(h.body) for h in https(take(p))] == [{"all": 1}]


def test_cancel_of_a_filled_order_asks_how_it_ended():
    p = live()
    r = placed(p)
    p.submit(cancel(r.order_id), T0)
    take(p)
    p.on_frame("private", notify("oc-req", [VID] + [None] * 31, "ERROR", "Order not found."), T0)
    (q,) = https(take(p), "qa")
    answer(p, q, [])  # not open...
    (h,) = https(take(p), "qh")
    answer(p, h, [order_arr("EXECUTED @ 27000(0.5)", amount="0")])  # ...it was executed
    assert [(u.order_id, u.status) for u in updates(take(p))] == [(OID, S.FILLED)]
    assert not p.reqs


def test_pre_checks_refuse_before_sending_and_a_new_is_never_sent_twice():
    p = live()
    p.submit(new(price="0"), T0)
    p.submit(OrderRequest(OID + 1, 0, 1, 1, 99, 1, 0, OrderAction.NEW, 1, 0), T0)
    p.submit(cancel(424242), T0)
    ev = take(p)
    assert [u.reason for u in updates(ev)] == [Reject.BAD_REQUEST, Reject.UNKNOWN_INSTRUMENT]
    assert not frames(ev) and https(ev, "qa")  # the unknown order is looked for on the venue (our ids say where)
    p.submit(new(OID + 2), T0)
    p.submit(new(OID + 2), T0)
    assert len(frames(take(p))) == 1 and p.counts["duplicate_new"] == 1


# ---------------------------------------------------------------------------------------- unknown outcomes
def test_timeout_queries_by_our_ids_and_the_late_answer_applies_once():
    p = live(timeout_s=1)
    p.submit(new(), T0)
    take(p)
    p.on_timer(T0 + 2 * 10**9)
    (q,) = https(take(p), "qa")
    assert q.url.endswith("/v2/auth/r/orders") and p.counts["unknown_outcomes"] == 1
    answer(p, q, [order_arr(vid=77, gid=1, cid=CID), order_arr()])  # a stranger with our cid, then ours
    assert [(u.order_id, u.status) for u in updates(take(p))] == [(OID, S.ACK), (OID, S.OPEN)]
    assert not p.reqs
    p.on_frame("private", notify("on-req", order_arr()), T0)  # the late notification: nothing twice
    assert not updates(take(p)) and p.counts["late_answers"] == 1


def test_not_found_anywhere_is_never_placed_and_a_late_accept_is_cancelled():
    p = live(timeout_s=1)
    p.submit(new(), T0)
    take(p)
    p.on_timer(T0 + 2 * 10**9)
    answer(p, https(take(p), "qa")[0], [])
    (h,) = https(take(p), "qh")
    assert json.loads(h.body) == {"start": MS0 - 60_000, "limit": 2500}
    answer(p, h, [], now=T0 + 3 * 10**9)
    (u,) = updates(take(p))
    assert (u.status, u.reason) == (S.REJECTED, Reject.VENUE_ERROR) and p.counts["lost_new"] == 1
    p.on_frame("private", acct("on", order_arr()), T0 + 4 * 10**9)  # it shows up after all
    assert frames(take(p)) == [[0, "oc", None, {"id": VID}]] and p.counts["late_accept_cancelled"] == 1


def test_dropped_connection_failure_and_5xx_leave_the_outcome_unknown():
    p = live()
    p.submit(new(), T0)
    take(p)
    p.on_close("private", T0, "reset")
    assert https(take(p), "qa") and p.counts["unknown_outcomes"] == 1 and not p.ready
    p = live()
    p.submit(new(), T0)
    take(p)
    p.on_frame("private", notify("on-req", order_arr(), "FAILURE", "Internal error"), T0)
    assert https(take(p), "qa") and p.counts["unknown_outcomes"] == 1
    p.on_frame("private", acct("on", order_arr()), T0)  # the order shows up: that answers it
    assert [u.status for u in updates(take(p))] == [S.OPEN] and not p.reqs
    # REST (the socket is down): 503 unknown, a venue error a refusal
    p = live()
    p.on_close("private", T0, "gone")
    take(p)
    p.submit(new(), T0)
    (h,) = https(take(p), "req")
    assert h.url.endswith("/v2/auth/w/order/submit") and json.loads(h.body)["cid"] == CID
    p.on_http(h.tag, 503, {}, b"Service Unavailable", T0)
    assert https(take(p), "qa")
    p.submit(new(OID + 1), T0)
    (h,) = https(take(p), "req")
    answer(p, h, ["error", 10001, "Invalid order: minimum size for BTC/USD is 0.00004"], status=500)
    assert [(u.status, u.reason) for u in updates(take(p))] == [(S.REJECTED, Reject.MIN_SIZE)]


def test_rest_fallback_notification_acks():
    p = live()
    p.on_close("private", T0, "gone")
    take(p)
    p.submit(new(), T0)
    (h,) = https(take(p), "req")
    answer(p, h, [MS0, "on-req", None, None, [order_arr()], None, "SUCCESS", "Submitting"])
    (u,) = updates(take(p))
    assert (u.status, u.venue_id.rstrip(b"\0")) == (S.ACK, str(VID).encode())
    assert p.counts["rest_fallback"] == 1


def test_unknown_order_asked_by_the_overseer_is_found_and_cancelled():
    p = live(unknown_orders="adopt")
    p.submit(cancel(OID), T0)  # a restarted handler: the overseer still has this order
    answer(p, https(take(p), "qa")[0], [order_arr()])
    ev = take(p)
    assert [(u.order_id, u.status) for u in updates(ev)] == [(OID, S.OPEN)]
    assert frames(ev) == [[0, "oc", None, {"id": VID}]]
    p.submit(cancel(OID + 1, oid=OID + 300), T0)
    answer(p, https(take(p), "qa")[0], [])
    answer(p, https(take(p), "qh")[0], [])
    (u,) = updates(take(p))
    assert (u.order_id, u.status, u.reason) == (OID + 1, S.CANCEL_REJECTED, Reject.UNKNOWN_ORDER)


def test_amend_of_an_order_unknown_to_the_handler_waits_for_the_venue():
    p = live()
    p.submit(amend(OID, "26900", "0.5"), T0)  # a predecessor's order, partly filled meanwhile
    ev = take(p)
    assert not updates(ev) and not frames(ev)  # neither refused nor sent blind: the venue is asked
    (q,) = https(ev, "qa")
    p.submit(cancel(OID), T0)  # asked again before the venue said: refused for now, never left unanswered
    (u,) = updates(take(p))
    assert (u.order_id, u.status, u.reason) == (OID, S.CANCEL_REJECTED, Reject.VENUE_ERROR)
    answer(p, q, [order_arr("PARTIALLY FILLED @ 27000(0.2)", amount="0.3")], now=T0 + 10**9)
    ev = take(p)
    assert [(u.order_id, u.status, u.filled, u.reason) for u in updates(ev)] == [
        (OID, S.PARTIALLY_FILLED, BTC.size("0.2"), 0), (OID, S.CANCEL_REJECTED, BTC.size("0.2"), Reject.VENUE_ERROR)]
    assert not frames(ev)  # the amend was made without knowing that: not sent
    answer(p, https(ev, "trades")[0], [trade(401, "0.2", 27000, fee="-0.0108", ccy="USD")])
    assert [(f.order_id, f.size) for f in take(p, Fill)] == [(OID, BTC.size("0.2"))]  # its fill is reported
    p.submit(amend(OID, "26900", "0.5"), T0 + 2 * 10**9)  # asked again, now it is known: it goes out
    assert frames(take(p)) == [[0, "ou", None, {"id": VID, "price": "26900"}]]


# ---------------------------------------------------------------------------------------- fills, balances
def test_te_moves_the_filled_size_and_tu_emits_the_fill_once():
    p = live()
    placed(p)
    p.on_frame("private", acct("te", trade(401, "0.2", 27000)), T0)
    (u,) = updates(take(p))
    assert (u.filled, u.status) == (BTC.size("0.2"), S.PARTIALLY_FILLED)
    tu = trade(401, "0.2", 27000, fee="-0.0108", ccy="USD")
    p.on_frame("private", acct("tu", tu), T0)
    (f,) = [e for e in take(p) if type(e) is Fill]
    assert (f.order_id, f.trade_id, f.size, f.price, f.fee, f.fee_asset.rstrip(b"\0"), f.liquidity) == \
        (OID, 401, BTC.size("0.2"), BTC.price("27000"), BTC.price("0.0108"), b"USD", 2)
    p.on_frame("private", acct("tu", tu), T0)
    p.on_frame("private", acct("te", trade(401, "0.2", 27000)), T0)
    assert not [e for e in take(p) if type(e) is Fill]
    p._http_trades("", [tu], T0)  # the gap fetch brings it again
    assert not [e for e in take(p) if type(e) is Fill]
    assert p.counts["duplicate_fills"] == 2 and p.counts["duplicate_te"] == 1


def test_te_without_tu_is_fetched_from_rest():
    p = live(timeout_s=1)
    placed(p)
    p.on_frame("private", acct("te", trade(401, "0.2", 27000)), T0)
    take(p)
    p.on_timer(T0 + 2 * 10**9)
    (h,) = https(take(p), "trades")
    assert p.counts["te_without_tu"] == 1
    answer(p, h, [trade(401, "0.2", 27000, fee="-0.01", ccy="USD")])
    assert len([e for e in take(p) if type(e) is Fill]) == 1


def test_fills_of_an_order_whose_id_we_do_not_know_yet_are_found_by_cid():
    p = live()
    p.submit(new(), T0)  # no answer yet
    take(p)
    p.on_frame("private", acct("tu", trade(9, "0.5", 27000, fee="-0.01", ccy="USD")), T0)
    (f,) = [e for e in take(p) if type(e) is Fill]
    assert f.order_id == OID and p.orders[OID].oid == VID


def test_wallets_exchange_only_with_available_computed_when_missing():
    p = live()
    placed(p)  # a buy of 0.5 at 27000 holds 13500 USD
    p.on_frame("private", acct("ws", [["exchange", "USD", 20000, 0, None, None, None],
                                      ["margin", "USD", 5, 0, 5, None, None],
                                      ["exchange", "BTC", "1.5", 0, "1.25", None, None],
                                      ["exchange", "DOGE", 1, 0, 1, None, None]]), T0)
    bals = {b.asset.rstrip(b"\0"): b for b in take(p) if type(b) is BalanceUpdate}
    assert set(bals) == {b"USD", b"BTC"}
    assert (bals[b"USD"].total, bals[b"USD"].available) == (20000 * 10**10, 6500 * 10**10)
    assert (bals[b"BTC"].total, bals[b"BTC"].available, bals[b"BTC"].scale) == (15 * 10**9, 125 * 10**8, 10)
    assert p.counts["other_wallets"] == 1 and p.counts["other_assets"] == 1


def test_a_rest_balance_older_than_the_stream_is_not_applied_and_drift_is_reported():
    p = live()
    p._reconcile(T0 + 10)
    (w,) = https(take(p), "wallets")
    p.on_frame("private", acct("wu", ["exchange", "USD", 100, 0, 100, None, None]), T0 + 20)
    answer(p, w, [["exchange", "USD", 90, 0, 90, None, None], ["exchange", "BTC", 2, 0, 2, None, None]])
    bals = [b for b in take(p) if type(b) is BalanceUpdate]
    assert [(b.asset.rstrip(b"\0"), b.total) for b in bals] == [(b"USD", 100 * 10**10), (b"BTC", 2 * 10**10)]
    assert p.counts["rest_balance_older"] == 1
    p._reconcile(T0 + 30)
    answer(p, https(take(p), "wallets")[0], [["exchange", "USD", 95, 0, 95, None, None]])
    assert p.counts["drift_balances"] == 1


def test_a_late_stream_message_has_the_wallets_asked_for():
    """Wallet updates carry no time: when the stream shows it delivered something late, REST says
    what the balances are, once the stream has had its say."""
    p = live()
    placed(p)
    g, c = bfx_ids(OID + 1)
    p.submit(new(OID + 1), T0)
    p.on_frame("private", acct("on", order_arr(vid=VID + 1, gid=g, cid=c, mts=MS0 + 100)), T0)
    assert p.counts["stream_late"] == 0
    p.on_frame("private", acct("ou", order_arr("PARTIALLY FILLED @ 27000(0.1)", amount="0.4", mts=MS0 + 50)), T0)
    assert p.counts["stream_late"] == 1 and p.retry_at["wallets"] == T0 + 200_000_000
    p.on_frame("private", acct("ou", order_arr("ACTIVE", mts=MS0 + 10)), T0)  # older than its own last: ignored
    assert p.orders[OID].filled == BTC.size("0.1") and p.orders[OID].status == S.PARTIALLY_FILLED
    take(p)
    p.on_timer(T0 + 200_000_000)
    assert [h.tag for h in https(take(p))] == ["wallets"]


# ---------------------------------------------------------------------------------------- limits, halts
def test_new_orders_beyond_the_five_minute_limit_are_refused_before_sending():
    p = live(orders_per_5min=2)
    for i in range(3):
        p.submit(new(OID + i), T0 + i)
    ev = take(p)
    assert len(frames(ev)) == 2 and [(u.status, u.reason) for u in updates(ev)] == [(S.REJECTED, Reject.RATE_LIMITED)]
    p.submit(new(OID + 9), T0 + 301 * 10**9)  # the window moved on
    assert len(frames(take(p))) == 1


def test_venue_rate_limit_refusal_backs_off():
    p = live(rate_backoff_s=10)
    p.submit(new(), T0)
    take(p)
    p.on_frame("private", notify("on-req", order_arr(vid=None), "ERROR", "ratelimit: error"), T0)
    assert [u.reason for u in updates(take(p))] == [Reject.RATE_LIMITED]
    p.submit(new(OID + 1), T0 + 10**9)
    assert [u.reason for u in updates(take(p))] == [Reject.RATE_LIMITED] and p.counts["refused_rate_limited"] == 1
    p.submit(new(OID + 2), T0 + 11 * 10**9)
    assert frames(take(p))


def test_http_429_waits_retry_after_418_halts_and_the_endpoint_limit_defers():
    p = live()
    p._reconcile(T0)
    (o, w, t) = https(take(p))
    p.on_http(o.tag, 429, {"retry-after": "3"}, json.dumps(["error", 11010, "ratelimit: error"]).encode(), T0)
    assert p.counts["http_429"] == 1 and p.retry_at["open"] == T0 + 3 * 10**9
    p.on_timer(T0 + 10**9)
    assert not https(take(p))  # REST waits...
    p.submit(new(), T0 + 10**9)
    assert frames(take(p))  # ...orders on the socket do not
    p.on_timer(T0 + 3 * 10**9)
    assert [h.tag for h in https(take(p))] == ["open"]
    p.on_http(w.tag, 418, {}, b"", T0)
    assert any(type(e) is Halt for e in take(p)) and "418" in p.halted
    q = live(rest_per_min=2)
    t1 = T0 + 61 * 10**9  # the start's calls are out of the window
    for i in range(3):
        q._rest(f"qa:0:{i}", "/v2/auth/r/orders", None, t1 + i)
    assert len(https(take(q))) == 2 and q.retry_at["qa:0:2"] == t1 + 60 * 10**9 and q.counts["rest_deferred"] == 1


def test_rest_credentials_errors_halt_and_a_small_nonce_is_retried():
    p = live()
    p._reconcile(T0)
    (o, w, _) = https(take(p))
    answer(p, o, ["error", 10114, "nonce: small"], status=500)
    p.on_timer(T0 + 1)
    (again,) = https(take(p))
    assert again.tag == "open" and int(dict(again.headers)["bfx-nonce"]) > int(dict(o.headers)["bfx-nonce"])
    answer(p, w, ["error", 10100, "apikey: digest invalid"], status=500)
    assert "digest invalid" in p.halted


# ---------------------------------------------------------------------------------------- reconciliation
def test_reconcile_at_start_cancels_unknown_orders_of_ours_and_others():
    p = BitfinexOrders(CREDS, [BTC])
    p.start(T0)
    (o, _, _) = https(take(p))
    answer(p, o, [order_arr(), order_arr(vid=555, gid=None, cid=1575287436979)])
    assert p.counts["unknown_cancelled"] == 1 and p.counts["foreign_open"] == 1
    assert [json.loads(h.body) for h in https(take(p), "cancel_unknown")] == [{"id": VID}, {"id": 555}]


def test_reconcile_adopts_ours_and_leaves_foreign():
    p = live(unknown_orders="adopt")
    p.on_frame("private", acct("os", [order_arr(amount="0.3", orig="0.5"),
                                       order_arr(vid=555, gid=None, cid=1575287436979)]), T0)
    ev = take(p)
    (u,) = updates(ev)
    assert (u.order_id, u.status, u.size, u.filled) == (OID, S.OPEN, BTC.size("0.5"), BTC.size("0.2"))
    assert not frames(ev) and p.counts["adopted"] == 1 and p.counts["foreign_open"] == 1


def test_orders_gone_from_the_snapshot_after_a_gap_are_asked_about():
    p = live()
    placed(p)
    p.on_close("private", T0, "lost")
    p.on_open("private", T0)
    take(p)
    p.on_frame("private", json.dumps({"event": "auth", "status": "OK", "chanId": 0}), T0)
    (t,) = https(take(p), "trades")  # the gap's fills
    p.on_frame("private", acct("os", []), T0)  # the dead-man switch cancelled it
    answer(p, https(take(p), "qa")[0], [])
    answer(p, https(take(p), "qh")[0], [order_arr("CANCELED")])
    assert [u.status for u in updates(take(p))] == [S.CANCELLED]
    assert p.counts["closed_in_gap"] == 1 and p.counts["stream_gaps"] == 1


def test_periodic_reconcile_finds_drift():
    p = live(reconcile_s=60)
    placed(p)
    p.on_timer(T0 + 61 * 10**9)
    (o, w, t) = https(take(p))
    answer(p, o, [order_arr("PARTIALLY FILLED @ 27000(0.1)", amount="0.4")])
    (u,) = updates(take(p))
    assert (u.status, u.filled) == (S.PARTIALLY_FILLED, BTC.size("0.1")) and p.counts["drift_corrected"] == 1


def test_an_open_orders_answer_asked_before_an_amend_does_not_undo_it():
    """The amend came on the stream after the open orders were asked for: the snapshot's old price
    and size must not come back (until a reconcile with nothing newer says so)."""
    p = live()
    r = placed(p)
    p._reconcile(T0 + 10)
    (h,) = https(take(p), "open")
    p.submit(amend(r.order_id, "26990", "0.7"), T0 + 20)
    take(p)
    p.on_frame("private", notify("ou-req", order_arr(amount="0.7", orig="0.7", price=26990)), T0 + 30)
    assert updates(take(p))[-1].price == BTC.price("26990")
    answer(p, h, [order_arr()], now=T0 + 40)  # 0.5 at 27000, as placed
    assert not updates(take(p))
    assert p.counts["rest_order_older"] == 1 and p.counts["drift_corrected"] == 0
    p._reconcile(T0 + 50)  # nothing newer since this one went out: the venue's word stands
    answer(p, https(take(p), "open")[0], [order_arr()], now=T0 + 60)
    (u,) = updates(take(p))
    assert (u.price, u.size, u.filled) == (BTC.price("27000"), BTC.size("0.5"), 0)
    assert p.counts["drift_corrected"] == 1


def test_fills_of_orders_from_before_are_mapped_and_foreign_ones_ignored():
    p = live()
    p._http_trades("", [trade(7, "0.5", 27000, fee="-0.01", ccy="USD", vid=321, cid=CID),
                        trade(8, "1", 27000, fee="-0.01", ccy="USD", vid=654, cid=5)], T0)
    (m,) = https(take(p), "map")
    assert json.loads(m.body) == {"id": [321, 654]}
    answer(p, m, [])  # neither is open
    (mh,) = https(take(p), "maph")
    answer(p, mh, [order_arr("EXECUTED @ 27000(0.5)", amount="0", vid=321)])
    fills = [e for e in take(p) if type(e) is Fill]
    assert [(f.order_id, f.trade_id) for f in fills] == [(OID, 7)]
    assert p.counts["foreign_fills"] == 1 and 654 in p.known_foreign


def test_info_codes_restart_and_maintenance():
    p = live()
    p.on_frame("private", json.dumps({"event": "info", "code": 20051, "msg": "Stop/Restart"}), T0)
    ev = take(p)
    assert ev[:2] == [Close("private", "the venue restarts its WebSocket server (20051)"),
                      Open("private", "wss://api.bitfinex.com/ws/2")]
    p.on_frame("private", json.dumps(MSG["info_maintenance_start"]["message"]), T0)
    p.submit(new(), T0)
    assert [u.reason for u in updates(take(p))] == [Reject.VENUE_ERROR]
    p.on_frame("private", json.dumps(MSG["info_maintenance_end"]["message"]), T0)
    assert https(take(p), "open")
    p.submit(new(OID + 1), T0)
    assert frames(take(p))


def test_secrets_never_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="mantra")
    p = live()
    p.on_frame("private", json.dumps({"event": "error", "msg": f"bad {SECRET}", "code": 1}), T0)
    p.on_http("open", 500, {}, f"secret={SECRET} key={CREDS.key}".encode(), T0)
    p.on_frame("private", "[0,\"n\"" + SECRET, T0)
    assert caplog.records
    assert SECRET not in caplog.text and SECRET not in repr(p.creds)


def test_status_texts_and_reasons():
    assert [order_status(t) for t in ("ACTIVE", "EXECUTED @ 107.6(-0.2)", "PARTIALLY FILLED @ 107.6(-0.1)",
                                      "CANCELED", "CANCELED was: PARTIALLY FILLED @ 107.6(-0.1)",
                                      "POSTONLY CANCELED", "IOC CANCELED", "RSN_DUST", "???", None)] == \
        [(S.OPEN, False), (S.FILLED, False), (S.PARTIALLY_FILLED, False), (S.CANCELLED, False),
         (S.CANCELLED, False), (S.CANCELLED, True), (S.EXPIRED, False), (S.CANCELLED, False), (None, False),
         (None, False)]
    assert reject_reason("Order not found.") == Reject.UNKNOWN_ORDER
    assert utc_date(T0) == "2023-11-14"


# ---------------------------------------------------------------------------------------- properties
@settings(max_examples=150, deadline=None)
@given(data=st.data(), size_lots=st.integers(1, 40))
def test_any_duplicated_reordered_stream_never_double_counts(data, size_lots):
    """Trades partition (part of) the order; the stream delivers each ``te``/``tu`` one or more times,
    in any order, with order updates mixed in: the fills emitted are exactly the distinct trades."""
    lot = 1_000_000
    parts = data.draw(st.lists(st.integers(1, size_lots), max_size=8))
    trades, total = [], 0
    for n in parts:
        if total + n > size_lots:
            break
        total += n
        trades.append(n)
    p = live()
    placed(p, new(size=f"{size_lots / 100:.2f}"))
    events, cum = [], 0
    for i, n in enumerate(trades):
        cum += n
        rest = f"{(size_lots - cum) / 100:.2f}"
        status = "EXECUTED @ 27000" if cum == size_lots else "PARTIALLY FILLED @ 27000"
        events.append(acct("te", trade(100 + i, f"{n / 100:.2f}", 27000)))
        events.append(acct("tu", trade(100 + i, f"{n / 100:.2f}", 27000, fee="-0.01", ccy="USD")))
        events.append(acct("ou" if cum < size_lots else "oc", order_arr(status, amount=rest,
                                                                        orig=f"{size_lots / 100:.2f}")))
    stream = data.draw(st.lists(st.sampled_from(range(len(events))), max_size=30)) if events else []
    stream = data.draw(st.permutations(list(range(len(events))) + stream))
    fills = []
    for idx in stream:
        p.on_frame("private", events[idx], T0)
        fills += [e for e in take(p) if type(e) is Fill]
    assert len({f.trade_id for f in fills}) == len(fills) == len(trades)
    assert sum(f.size for f in fills) == total * lot
    assert p.orders[OID].filled == total * lot


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=8)
                    | st.floats(allow_nan=False),
                    lambda x: st.lists(x, max_size=6) | st.dictionaries(st.text(max_size=6), x, max_size=4),
                    max_leaves=30),
       st.sampled_from(["on", "ou", "oc", "te", "tu", "ws", "wu", "os", "n", "hb", "xx"]))
def test_bad_input_is_counted_never_raised(junk, kind):
    p = live()
    placed(p)
    for text in (json.dumps(junk), json.dumps([0, kind, junk]), json.dumps([0, kind, [junk]]),
                 json.dumps([0, kind, order_arr()[:5] + [junk]])):
        p.on_frame("private", text, T0)
    p.on_http("open", 200, {}, json.dumps(junk).encode(), T0)
    p.on_http("qa:0:1", 200, {}, json.dumps(junk).encode(), T0)
    p.on_http("wallets", 200, {}, json.dumps([junk]).encode(), T0)
    for e in take(p):
        assert type(e) in (OrderUpdate, Fill, BalanceUpdate, Http, WsSend)
