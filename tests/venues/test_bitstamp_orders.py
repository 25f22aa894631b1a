"""Bitstamp order entry, sans-IO: signing vectors, request shapes, answers and refusals, the private
channels, UNKNOWN outcomes, rate limits, halts and reconciliation (venues/bitstamp/auth.py,
venues/bitstamp/orders.py).

Bitstamp documents no fixed signature vector (exchanges.md 5.4): the vectors here take the inputs
of the documentation's own authentication example (key ``api_key``, secret ``api_key_secret``,
``POST www.bitstamp.net/api/v2/user_transactions/`` with ``offset=1``) and two more calls, with a
fixed nonce and timestamp; the expected signatures were computed independently with ``openssl dgst
-sha256 -hmac``.  The documentation's example code itself is the oracle of a property test.

Frames and bodies follow the documented shapes (the vectors file's ``private_subscribe_request``,
``rest_error_invalid_signature``, ``request_reconnect``) and, where the venue's pages are not in
the research, the field lists clients record (order events with ``amount`` left and
``amount_at_create``; trades with ``id``, ``order_id``, ``client_order_id``, ``amount``, ``price``,
``fee``, ``microtimestamp``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures import VECTORS
from mantra.instruments import Instrument
from mantra.spine.messages import (BalanceUpdate, Fill, OrderAction, OrderFlags, OrderRequest, OrderStatus,
                                   OrderUpdate, text)
from mantra.trading.accounts import Reject
from mantra.venues.account import Close, Credentials, Halt, Http, Open, client_id
from mantra.venues.bitstamp import auth
from mantra.venues.bitstamp.orders import BitstampOrders, RateWindows, reject_reason, venue_error
from venuekit import https, sent, take, updates

BS = json.loads(VECTORS.read_text())["bitstamp"]["messages"]
KEY, SECRET = "api_key", "api_key_secret"  # the documentation's example credentials
CREDS = Credentials(KEY, SECRET)
BTC = Instrument(1, "bitstamp", "btcusd", "BTC", "USD", price_scale=0, size_scale=8, tick=1, lot=1,
                 min_notional=10, price_decimals=0, size_decimals=8)
ETH = Instrument(2, "bitstamp", "ethusd", "ETH", "USD", price_scale=1, size_scale=8, tick=1, lot=1,
                 price_decimals=1, size_decimals=8)
T0 = 1_700_000_000_000_000_000
S = OrderStatus
HOST = "www.bitstamp.net"
TOKEN = "kQz1vTFjMHGfUqmq7nJVyWZ3vZ2vY2cU"
UID = 123456
NONCE = "f93c979d-b00d-43a9-9b9c-fd4cd9547fa6"
NONCE2 = "2b8e4d2c-7e5f-4a3b-9c1d-0e6f7a8b9c0d"


def body(doc) -> bytes:
    return json.dumps(doc).encode()


def form(h: Http) -> dict:
    from urllib.parse import parse_qsl
    return dict(parse_qsl(h.body.decode()))


def path(h: Http) -> str:
    return h.url[len("https://www.bitstamp.net"):]


def new(oid, price=27000, size=100_000, side=1, flags=0, inst=BTC):
    return OrderRequest(oid, 0, price, size, inst.id, 1, 0, OrderAction.NEW, side, flags)


def cancel(oid, ref, inst=BTC):
    return OrderRequest(oid, ref, 0, 0, inst.id, 1, 0, OrderAction.CANCEL, 1, 0)


def answer(p, h: Http, doc, status=200, now=T0, headers=None):
    p.on_http(h.tag, status, headers or {}, body(doc), now)


def live(now=T0, **kw) -> BitstampOrders:
    """A protocol started, with its token, connected and subscribed; events cleared."""
    p = BitstampOrders(CREDS, [BTC, ETH], **kw)
    p.start(now)
    (tok,) = https(take(p), "token")
    answer(p, tok, {"token": TOKEN, "valid_sec": 60, "user_id": UID}, now=now)
    p.on_open("private", now)
    for m in sent(take(p)):
        p.on_frame("private", json.dumps({"event": "bts:subscription_succeeded", "channel": m["data"]["channel"],
                                          "data": {}}), now)
    take(p)
    return p


def placed(p, oid=7, vid=1762863651524616, now=T0, **kw) -> Http:
    """A NEW sent and accepted by the venue (its REST answer)."""
    p.submit(new(oid, **kw), now)
    (h,) = https(take(p), "req")
    answer(p, h, {"id": vid, "market": "BTC/USD", "datetime": "2023-11-14 22:13:20.000000", "type": "0",
                  "price": "27000", "amount": "0.00100000", "client_order_id": client_id(oid)}, now=now)
    take(p)
    return h


def order_event(event, oid, vid=1762863651524616, left="0.00100000", size="0.00100000", price="27000"):
    return json.dumps({"data": {"id": vid, "id_str": str(vid), "order_type": 0, "datetime": "1700000000",
                                "microtimestamp": "1700000000100000", "amount": float(left), "amount_str": left,
                                "amount_traded": "0", "amount_at_create": size, "price": float(price),
                                "price_str": price, "trade_account_id": 0, "client_order_id": client_id(oid)},
                       "channel": f"private-my_orders_btcusd-{UID}", "event": event})


def trade_event(tid, oid, amount="0.00040000", price="27000", fee="0.05", vid=1762863651524616):
    return json.dumps({"data": {"id": tid, "order_id": vid, "client_order_id": client_id(oid), "amount": amount,
                                "price": price, "fee": fee, "side": "buy", "microtimestamp": "1700000000200000",
                                "trade_account_id": 0},
                       "channel": f"private-my_trades_btcusd-{UID}", "event": "trade"})


# ---------------------------------------------------------------------------------------- signing
DOC_MESSAGE = (b"BITSTAMP api_keyPOSTwww.bitstamp.net/api/v2/user_transactions/application/x-www-form-urlencoded"
               b"f93c979d-b00d-43a9-9b9c-fd4cd9547fa61567755304968v2offset=1")
DOC_SIGNATURE = "526d7cd4184c381c21c2f8e6eeca15292edcc7ab8c4a188d68ee5c5ceb11b302"  # openssl, independently


def test_documentation_example_signed_byte_for_byte():
    assert auth.message(KEY, "POST", HOST, "/api/v2/user_transactions/", "", NONCE, "1567755304968",
                        b"offset=1") == DOC_MESSAGE
    headers, wire = auth.rest_request(KEY, SECRET, "POST", HOST, "/api/v2/user_transactions/", NONCE,
                                      1567755304968, [("offset", "1")])
    assert wire == b"offset=1"
    assert headers == (("X-Auth", "BITSTAMP api_key"), ("X-Auth-Signature", DOC_SIGNATURE), ("X-Auth-Nonce", NONCE),
                       ("X-Auth-Timestamp", "1567755304968"), ("X-Auth-Version", "v2"),
                       ("Content-Type", "application/x-www-form-urlencoded"))


def test_buy_limit_and_empty_body_vectors():
    headers, wire = auth.rest_request(KEY, SECRET, "POST", HOST, "/api/v2/buy/btcusd/", NONCE2, 1700000000123,
                                      [("amount", "0.00100000"), ("price", "27000"), ("client_order_id", "mtrs")])
    assert wire == b"amount=0.00100000&price=27000&client_order_id=mtrs"
    assert dict(headers)["X-Auth-Signature"] == "ae0dbebb596d8037653080b11f7f2a290cbe13814deda874e95f10d346184bd6"
    # an empty body: no Content-Type, neither in the headers nor in what is signed
    headers, wire = auth.rest_request(KEY, SECRET, "POST", HOST, "/api/v2/account_balances/", NONCE2, 1700000000123)
    assert wire == b"" and "Content-Type" not in dict(headers)
    assert auth.message(KEY, "POST", HOST, "/api/v2/account_balances/", "", NONCE2, 1700000000123) == \
        b"BITSTAMP api_keyPOSTwww.bitstamp.net/api/v2/account_balances/" + NONCE2.encode() + b"1700000000123v2"
    assert dict(headers)["X-Auth-Signature"] == "1ac79946b4144f03bc6a8bde467b166793be073a5400b43be8258a3c71239d8d"


def test_answer_signature_vector_and_check():
    answer_body = b'[{"currency":"usd","total":"100.00","available":"100.00","reserved":"0.00"}]'
    sig = "62a02bb5b53730a66e4a6fce6f5861bf6e23891cf578993970ca1253e4a076a0"  # openssl, independently
    assert auth.response_signature(SECRET, NONCE, "1567755304968", "application/json", answer_body) == sig
    h = {"content-type": "application/json", "x-server-auth-signature": sig}
    assert auth.check_response(SECRET, NONCE, "1567755304968", h, answer_body) is True
    assert auth.check_response(SECRET, NONCE, "1567755304969", h, answer_body) is False
    assert auth.check_response(SECRET, NONCE, "1567755304968", {}, answer_body) is None


def _documentation_example(api_key, secret: bytes, path, nonce, timestamp, payload_string):
    """The documentation's Python example, as it is written (content type always there)."""
    content_type = "application/x-www-form-urlencoded"
    message = "BITSTAMP " + api_key + "POST" + "www.bitstamp.net" + path + "" + content_type + nonce + timestamp + \
        "v2" + payload_string
    return hmac.new(secret, msg=message.encode("utf-8"), digestmod=hashlib.sha256).hexdigest()


@settings(max_examples=60, deadline=None)
@given(key=st.text("abcdefXYZ0123456789", min_size=1, max_size=40), secret=st.text(min_size=1, max_size=40),
       amount=st.decimals(min_value=0, max_value=10**6, places=8, allow_nan=False), ts=st.integers(0, 2**45),
       nonce=st.uuids(version=4))
def test_signing_equals_the_documentation_example(key, secret, amount, ts, nonce):
    params = [("amount", str(amount)), ("price", "27000")]
    headers, wire = auth.rest_request(key, secret, "POST", HOST, "/api/v2/sell/btcusd/", str(nonce), ts, params)
    assert dict(headers)["X-Auth-Signature"] == _documentation_example(key, secret.encode(), "/api/v2/sell/btcusd/",
                                                                       str(nonce), str(ts), wire.decode())


def test_verify_gives_the_venues_errors():
    p = "/api/v2/buy/btcusd/"
    headers, wire = auth.rest_request(KEY, SECRET, "POST", HOST, p, NONCE2, 1700000000123, [("amount", "1")])
    ok = dict(headers)
    now = 1700000000123

    def check(h=ok, b=wire, at=now, seen=(), secrets=None, host=HOST):
        return auth.verify(secrets or {KEY: SECRET}, "POST", host, p, "", h, b, at, set(seen))[0]

    assert check() is None
    assert check(seen={NONCE2}) == auth.INVALID_NONCE  # the same nonce within 150 s
    assert check(at=now + 150_001) == auth.TIMESTAMP_BOUNDS
    assert check(at=now - 150_001) == auth.TIMESTAMP_BOUNDS
    assert check(secrets={"other": SECRET}) == auth.KEY_NOT_FOUND
    assert check(b=b"amount=2") == auth.INVALID_SIGNATURE
    assert check(host="127.0.0.1:9") == auth.INVALID_SIGNATURE  # the host is signed
    assert check(h={**ok, "X-Auth-Version": "v1"}) == auth.INVALID_VERSION
    assert check(h={k: v for k, v in ok.items() if k != "X-Auth-Nonce"}) == ("API0014", "X-Auth-Nonce header is required")
    assert check(h={k: v for k, v in ok.items() if k != "Content-Type"}) == auth.CONTENT_TYPE_REFUSED
    empty_h, empty = auth.rest_request(KEY, SECRET, "POST", HOST, p, NONCE, now)
    assert check(h={**dict(empty_h), "Content-Type": auth.CONTENT_TYPE}, b=empty) == auth.CONTENT_TYPE_EXTRA
    assert check(h=dict(empty_h), b=empty) is None
    assert venue_error(BS["rest_error_invalid_signature"]["message"]) == ("API0005", "Invalid signature")


# ---------------------------------------------------------------------------------------- start
def test_start_opens_the_socket_and_fetches_token_and_state_signed():
    p = BitstampOrders(CREDS, [BTC])
    p.start(T0)
    ev = take(p)
    assert Open("private", "wss://ws.bitstamp.net") in ev
    assert [path(h) for h in https(ev)] == ["/api/v2/" + x for x in ("websockets_token/", "open_orders/all/",
                                                                     "account_balances/", "user_transactions/")]
    seen: set = set()
    for h in https(ev):
        err, key = auth.verify({KEY: SECRET}, "POST", HOST, path(h), "", dict(h.headers), h.body, T0 // 10**6, seen)
        assert err is None and key == KEY and h.method == "POST"
        seen.add(dict(h.headers)["X-Auth-Nonce"])
    trades = https(ev, "trades")[0]
    assert form(trades) == {"since_timestamp": str(T0 // 10**9 - 3600 - 1), "limit": "1000", "sort": "asc"}
    assert not sent(ev)  # nothing on the socket before it is open and the token known


def test_subscribes_both_private_channels_of_every_pair_with_the_token():
    # ETH as a feed registers it, by symbol alone: its pair is still named right
    bare = Instrument(2, "bitstamp", "ethusd", price_scale=1, size_scale=8, tick=1, lot=1)
    p = BitstampOrders(CREDS, [BTC, bare])
    p.start(T0)
    (tok,) = https(take(p), "token")
    p.on_open("private", T0)
    assert not sent(take(p))  # the token is not there yet
    answer(p, tok, {"token": TOKEN, "valid_sec": 60, "user_id": UID})
    subs = sent(take(p))
    shape = BS["private_subscribe_request"]["message"]
    assert all(set(m) == set(shape) and set(m["data"]) == set(shape["data"]) for m in subs)
    assert sorted(m["data"]["channel"] for m in subs) == sorted(
        f"private-{k}_{pair}-{UID}" for k in ("my_orders", "my_trades") for pair in ("btcusd", "ethusd"))
    assert {m["data"]["auth"] for m in subs} == {TOKEN}
    for m in subs[:-1]:
        p.on_frame("private", json.dumps({"event": "bts:subscription_succeeded", "channel": m["data"]["channel"],
                                          "data": {}}), T0)
    assert not p.subscribed
    p.on_frame("private", json.dumps({"event": "bts:subscription_succeeded", "channel": subs[-1]["data"]["channel"],
                                      "data": {}}), T0)
    assert p.subscribed
    # subscribed: what the channels held before is fetched (orders may have gone out already)
    assert {path(h) for h in https(take(p))} == {"/api/v2/open_orders/all/", "/api/v2/user_transactions/"}


# ---------------------------------------------------------------------------------------- orders
def test_new_is_a_signed_post_with_exact_decimals_and_client_id():
    p = live()
    p.submit(new(7, price=27001, size=123_456), T0)
    (h,) = https(take(p), "req")
    assert path(h) == "/api/v2/buy/btcusd/"
    assert form(h) == {"amount": "0.00123456", "price": "27001", "client_order_id": client_id(7)}
    assert auth.verify({KEY: SECRET}, "POST", HOST, path(h), "", dict(h.headers), h.body, T0 // 10**6, set())[0] is None
    p.submit(new(8, price=18005, side=-1, flags=OrderFlags.IOC, inst=ETH), T0)
    p.submit(new(9, flags=OrderFlags.POST_ONLY), T0)
    ioc, moc = https(take(p), "req")
    assert path(ioc) == "/api/v2/sell/ethusd/" and form(ioc)["price"] == "1800.5" and form(ioc)["ioc_order"] == "True"
    assert form(moc)["moc_order"] == "True" and "ioc_order" not in form(moc)


def test_answers_ack_and_refusals_carry_the_venues_reasons():
    p = live()
    placed(p, 7)
    assert p.orders[7].vid == "1762863651524616" and p.orders[7].status == S.ACK
    refusals = [
        ({"status": "error", "reason": {"__all__": ["You have only 1.00 USD available. Check your account balance "
                                                    "for details."]}, "response_code": "400.009"},
         Reject.INSUFFICIENT_BALANCE),
        ({"status": "error", "reason": {"__all__": ["Minimum order size is 10.0 USD."]}}, Reject.MIN_NOTIONAL),
        ({"status": "error", "reason": {"amount": ["Ensure that there are no more than 8 decimal places."]},
          "response_code": "400.026"}, Reject.LOT),
        ({"status": "error", "reason": "Provided price is out of range.", "response_code": "400.021"},
         Reject.BAD_REQUEST),
        ({"status": "error", "reason": "Order rejected by matching engine.", "response_code": "500.017"},
         Reject.VENUE_ERROR),
    ]
    for i, (doc, why) in enumerate(refusals):
        p.submit(new(20 + i), T0)
        (h,) = https(take(p), "req")
        answer(p, h, doc, status=500 if doc.get("response_code") == "500.017" else 400)
        (u,) = take(p)
        assert (u.order_id, u.status, u.reason) == (20 + i, S.REJECTED, why), doc
    assert reject_reason("", "Order not found.") == Reject.UNKNOWN_ORDER
    assert reject_reason("", "price: Ensure that there are no more than 0 decimal places.") == Reject.TICK


def test_amend_is_unsupported_and_the_same_new_is_never_sent_twice():
    p = live()
    placed(p, 7)
    p.submit(OrderRequest(8, 7, 26999, 100_000, BTC.id, 1, 0, OrderAction.AMEND, 1, 0), T0)
    (u,) = take(p)
    assert (u.order_id, u.status, u.reason) == (7, S.CANCEL_REJECTED, Reject.UNSUPPORTED)
    p.submit(new(7), T0)
    assert not take(p) and p.counts["duplicate_new"] == 1


def test_cancel_by_venue_id_or_client_id():
    p = live()
    p.submit(new(7), T0)
    p.submit(cancel(8, 7), T0)  # the NEW's answer is not in yet: by client id
    h_new, h_cancel = https(take(p), "req")
    assert path(h_cancel) == "/api/v2/cancel_order/" and form(h_cancel) == {"client_order_id": client_id(7)}
    answer(p, h_new, {"id": 55, "client_order_id": client_id(7)})
    answer(p, h_cancel, {"id": 55, "amount": "0.00100000", "price": "27000", "type": 0, "market": "BTC/USD"})
    ups = updates(take(p))
    assert [(u.order_id, u.status) for u in ups] == [(7, S.ACK), (7, S.CANCELLED)]
    assert text(ups[-1].venue_id) == "55"
    placed(p, 9, vid=56)
    p.submit(cancel(10, 9), T0)
    (h,) = https(take(p), "req")
    assert form(h) == {"id": "56"}


def test_cancel_of_a_filled_order_finds_how_it_ended():
    p = live()
    placed(p, 7)
    p.submit(cancel(8, 7), T0)
    (h,) = https(take(p), "req")
    answer(p, h, {"status": "error", "reason": "Order not found.", "response_code": "404.002"}, status=404)
    (q,) = https(take(p), "query")
    assert path(q) == "/api/v2/order_status/" and form(q) == {"client_order_id": client_id(7)}
    answer(p, q, {"id": 1762863651524616, "datetime": "2023-11-14 22:13:20", "type": "0", "status": "Finished",
                  "market": "BTC/USD", "amount_remaining": "0.00000000", "client_order_id": client_id(7),
                  "transactions": [{"tid": 901, "price": "27000", "btc": "0.00100000", "usd": "27.00",
                                    "fee": "0.10800", "datetime": "2023-11-14 22:13:21.500000", "type": 2}]})
    ev = take(p)
    (f,) = [e for e in ev if type(e) is Fill]
    assert (f.order_id, f.trade_id, f.price, f.size, f.fee, text(f.fee_asset)) == (7, 901, 27000, 100_000, 1, "USD")
    assert f.exch_ts == 1_700_000_001_500_000_000  # 2023-11-14 22:13:21.5 UTC
    assert [(u.status, u.filled) for u in updates(ev)] == [(S.FILLED, 100_000)]


def test_kill_switch_cancels_everything_and_never_gives_up():
    p = live(rate_per_s=1)
    placed(p, 7, vid=61, now=T0 + 10**9)
    placed(p, 8, vid=62, now=T0 + 2 * 10**9)
    p.cancel_all(T0 + 2 * 10**9)
    p.cancel_all(T0 + 2 * 10**9)  # not held back by the local rate limit
    h1, h2 = https(take(p), "cancel_all")
    assert path(h1) == "/api/v2/cancel_all_orders/" and h1.body == b""
    p.on_http(h1.tag, 0, {}, b"timeout", T0)
    p.on_timer(T0 + 5 * 10**9)
    assert https(take(p), "cancel_all")  # retried
    answer(p, h2, {"canceled": [{"id": 61, "amount": "0.001", "price": "27000", "type": 0, "currency_pair": "BTC/USD"},
                                {"id": 62, "amount": "0.001", "price": "27000", "type": 0,
                                 "currency_pair": "BTC/USD"}], "success": True})
    assert sorted((u.order_id, u.status) for u in updates(take(p))) == [(7, S.CANCELLED), (8, S.CANCELLED)]


# ---------------------------------------------------------------------------------------- unknown outcomes
def _unknown_new(p, oid=7):
    p.submit(new(oid), T0)
    (h,) = https(take(p), "req")
    p.on_timer(T0 + 6 * 10**9)
    (q,) = https(take(p), "query")
    assert form(q) == {"client_order_id": client_id(oid)}
    return h, q


def test_timeout_queries_by_client_id_and_the_late_answer_applies_once():
    p = live()
    h, q = _unknown_new(p)
    assert p.counts["timeouts"] == 1 and p.counts["unknown_outcomes"] == 1
    answer(p, h, {"id": 71, "client_order_id": client_id(7)}, now=T0 + 7 * 10**9)  # late
    (u,) = take(p)
    assert (u.order_id, u.status, text(u.venue_id)) == (7, S.ACK, "71")
    answer(p, q, {"id": 71, "status": "Open", "amount_remaining": "0.00100000", "client_order_id": client_id(7),
                  "transactions": []}, now=T0 + 7 * 10**9)
    (u,) = take(p)
    assert u.status == S.OPEN
    assert not [x for x in https(p.events) if x.tag.startswith("req")]  # never sent again


def test_not_found_is_asked_again_until_the_signature_expires_then_rejected_and_a_late_accept_cancelled():
    p = live(auth_window_s=10, timeout_s=5)
    h, q = _unknown_new(p)
    not_found = {"status": "error", "reason": "Order not found.", "response_code": "404.002"}
    answer(p, q, not_found, status=404, now=T0 + 6 * 10**9)
    assert not take(p)
    p.on_timer(T0 + 9 * 10**9)
    (q,) = https(take(p), "query")  # asked again: the venue may still take it
    answer(p, q, not_found, status=404, now=T0 + 16 * 10**9)
    (u,) = take(p)
    assert (u.order_id, u.status, u.reason) == (7, S.REJECTED, Reject.VENUE_ERROR)
    answer(p, h, {"id": 72, "client_order_id": client_id(7)}, now=T0 + 17 * 10**9)  # it was placed after all
    ev = take(p)
    assert not updates(ev)
    (c,) = https(ev, "cancel_unknown")
    assert form(c) == {"id": "72"} and p.counts["late_accept_cancelled"] == 1


def test_5xx_and_transport_errors_leave_the_outcome_unknown():
    p = live()
    p.submit(new(7), T0)
    (h,) = https(take(p), "req")
    p.on_http(h.tag, 500, {}, body({"status": "error", "reason": "Unknown server error.",
                                    "response_code": "500.001"}), T0)
    (q,) = https(take(p), "query")
    assert form(q)["client_order_id"] == client_id(7)
    p.submit(new(8), T0)
    (h,) = https(take(p), "req")
    p.on_http(h.tag, 0, {}, b"TimeoutError: timed out", T0)
    (q,) = https(take(p), "query")
    # the query failing is retried
    p.on_http(q.tag, 502, {}, b"<html>bad gateway</html>", T0)
    p.on_timer(T0 + 3 * 10**9)
    assert [form(x)["client_order_id"] for x in https(take(p), "query")] == [client_id(8)]


def test_a_wrongly_signed_answer_is_not_believed():
    p = live()
    p.submit(new(7), T0)
    (h,) = https(take(p), "req")
    answer(p, h, {"id": 1, "client_order_id": client_id(7)},
           headers={"content-type": "application/json", "x-server-auth-signature": "0" * 64})
    assert p.counts["bad_server_signature"] == 1
    assert https(take(p), "query")  # as if unanswered: asked by client id


# ---------------------------------------------------------------------------------------- private channels
def test_order_and_trade_events_make_updates_and_fills_deduplicated():
    p = live()
    placed(p, 7)
    p.on_frame("private", order_event("order_created", 7), T0)
    (u,) = take(p)
    assert (u.order_id, u.status, u.filled) == (7, S.OPEN, 0)
    p.on_frame("private", trade_event(501, 7), T0)
    p.on_frame("private", order_event("order_changed", 7, left="0.00060000"), T0)
    ev = take(p)
    (f,) = [e for e in ev if type(e) is Fill]
    assert (f.trade_id, f.price, f.size, f.fee, f.liquidity, f.exch_ts) == (501, 27000, 40_000, 1, 1,
                                                                           1_700_000_000_200_000_000)
    assert [(u.status, u.filled) for u in updates(ev)] == [(S.PARTIALLY_FILLED, 40_000)]
    p.on_frame("private", trade_event(501, 7), T0)  # duplicated
    assert not take(p) and p.counts["duplicate_fills"] == 1
    # the same trade from user_transactions (a gap fetch) is the same trade
    p._fetch("trades:0", T0)
    (h,) = https(take(p), "trades")
    answer(p, h, [{"id": 501, "datetime": "2023-11-14 22:13:20.200000", "type": "2", "fee": "0.05",
                   "btc": "0.00040000", "usd": "-10.80", "btc_usd": 27000.0, "order_id": 1762863651524616},
                  {"id": 9, "datetime": "2023-11-14 22:00:00", "type": "0", "fee": "0", "usd": "100.00"}])
    assert not [e for e in take(p) if type(e) is Fill]
    p.on_frame("private", order_event("order_deleted", 7, left="0.00000000"), T0)
    p.on_frame("private", trade_event(502, 7, amount="0.00060000"), T0)  # its trade after the end: still counted
    ev = take(p)
    assert [u.status for u in updates(ev)] == [S.FILLED]
    assert sum(e.size for e in ev if type(e) is Fill) == 60_000 and p.orders[7].fill_qty == 100_000


def test_a_post_only_order_the_venue_cancels_says_why():
    p = live()
    placed(p, 7, flags=OrderFlags.POST_ONLY)
    p.on_frame("private", order_event("order_deleted", 7), T0)
    (u,) = take(p)
    assert (u.status, u.reason) == (S.CANCELLED, Reject.POST_ONLY)


def test_public_and_foreign_events_are_counted_not_emitted():
    p = live(unknown_orders="adopt")
    for name in ("live_order_created", "live_trade", "heartbeat_response", "subscription_succeeded"):
        p.on_frame("private", json.dumps(BS[name]["message"]), T0)
    foreign = json.loads(order_event("order_created", 7, vid=99))
    foreign["data"]["client_order_id"] = "someone-else"
    p.on_frame("private", json.dumps(foreign), T0)
    assert not take(p)
    assert p.counts["foreign_events"] == 1 and p.counts["malformed"] == 0
    placed(p, 7)
    p.on_frame("private", "{not json", T0)
    broken = json.loads(trade_event(501, 7))
    del broken["data"]["amount"]
    p.on_frame("private", json.dumps(broken), T0)
    assert p.counts["malformed"] == 2 and not take(p)


def test_reconnect_resubscribes_with_a_fresh_token_and_fetches_the_gap():
    p = live()
    placed(p, 7)
    p.on_frame("private", trade_event(501, 7), T0)
    take(p)
    p.on_close("private", T0 + 10**9, "reset")
    assert p.counts["stream_gaps"] == 1 and not p.subscribed
    p.on_open("private", T0 + 2 * 10**9)
    (tok,) = https(take(p), "token")  # a token serves one connection
    answer(p, tok, {"token": "fresh", "valid_sec": 60, "user_id": UID})
    subs = sent(take(p))
    assert {m["data"]["auth"] for m in subs} == {"fresh"}
    for m in subs:
        p.on_frame("private", json.dumps({"event": "bts:subscription_succeeded", "channel": m["data"]["channel"],
                                          "data": {}}), T0)
    (tr,) = https(take(p), "trades")
    assert int(form(tr)["since_timestamp"]) == 1_700_000_000 - 1  # from the newest trade seen
    # the venue asks for a reconnect
    p.on_frame("private", json.dumps(BS["request_reconnect"]["message"]), T0)
    assert take(p) == [Close("private", "the venue asked to reconnect"), Open("private", "wss://ws.bitstamp.net")]
    # a refused subscription (a stale token): a fresh token, then again
    p.on_close("private", T0, "x")
    p.on_open("private", T0)
    answer(p, https(take(p), "token")[0], {"token": "t3", "valid_sec": 60, "user_id": UID})
    take(p)
    p.on_frame("private", json.dumps({"event": "bts:error", "channel": "", "data": {"code": None,
                                                                                    "message": "Invalid token"}}), T0)
    assert https(take(p), "token")


def test_balances_come_from_account_balances_with_the_venues_available():
    p = BitstampOrders(CREDS, [BTC])
    p.start(T0)
    (h,) = https(take(p), "balance")
    answer(p, h, [{"currency": "usd", "total": "1000.50", "available": "973.50", "reserved": "27.00"},
                  {"currency": "btc", "total": "0.01000000", "available": "0.01000000", "reserved": "0"},
                  {"currency": "eth", "total": "3.0", "available": "3.0", "reserved": "0"}])
    bal = {text(b.asset): b for b in take(p) if type(b) is BalanceUpdate}
    assert set(bal) == {"USD", "BTC"}
    assert (bal["USD"].total, bal["USD"].available, bal["USD"].scale, bal["USD"].venue) == \
        (10_005_000_000_000, 9_735_000_000_000, 10, 2)
    # after our orders change, balances are fetched again (at most every balance_every_s)
    p = live(balance_every_s=1.0)
    placed(p, 7)
    p.on_frame("private", trade_event(501, 7), T0)
    take(p)
    p.on_timer(T0)
    assert https(take(p), "balance")
    p.on_frame("private", trade_event(502, 7), T0)
    p.on_timer(T0 + 5 * 10**8)
    assert not https(take(p), "balance")
    p.on_timer(T0 + 10**9)
    assert https(take(p), "balance")


# ---------------------------------------------------------------------------------------- rate limits, halts
def test_rate_windows_refuse_before_sending_and_defer_fetches():
    p = live(rate_per_s=5)
    t = T0 + 10 * 10**9  # a fresh second
    for i in range(6):
        p.submit(new(100 + i), t)
    ev = take(p)
    assert len(https(ev, "req")) == 5
    (u,) = updates(ev)
    assert (u.order_id, u.reason) == (105, Reject.RATE_LIMITED)
    assert len(https((p.submit(new(106), t + 10**9), take(p))[1], "req")) == 1  # the next second
    # the 10 minutes: the start's 6 calls count too
    p = live(rate_per_10min=10)
    for i in range(5):
        p.submit(new(100 + i), t)
    assert [len(https(ev, "req")) for ev in [take(p)]] == [4] and p.counts["refused_rate_limited"] == 1
    # a background fetch is deferred, never dropped
    p.on_timer(t + 61 * 10**9)
    assert not https(take(p)) and {"open", "balance:check"} <= set(p.retry_at)
    p.on_timer(t + 600 * 10**9)
    assert {path(h) for h in https(take(p))} >= {"/api/v2/open_orders/all/", "/api/v2/account_balances/"}
    w = RateWindows(2, 100)
    assert [w.take(T0) for _ in range(3)] == [True, True, False] and w.take(T0 + 10**9)
    assert w.take(T0, force=True)


def test_venue_rate_limit_and_429_back_off_418_halts():
    p = live(rate_backoff_s=2.0)
    p.submit(new(7), T0)
    (h,) = https(take(p), "req")
    answer(p, h, {"status": "error", "reason": "Rate limit exceeded", "response_code": "400.002"}, status=400)
    (u,) = take(p)
    assert (u.status, u.reason) == (S.REJECTED, Reject.RATE_LIMITED)
    p.submit(new(8, inst=ETH), T0 + 10**9)  # any pair: we wait
    assert take(p)[0].reason == Reject.RATE_LIMITED
    p.submit(new(9), T0 + 3 * 10**9)
    (h,) = https(take(p), "req")
    p.on_http(h.tag, 429, {"retry-after": "5"}, b"", T0 + 3 * 10**9)
    (u,) = take(p)
    assert (u.order_id, u.reason) == (9, Reject.RATE_LIMITED)
    p.submit(new(10), T0 + 7 * 10**9)
    assert take(p)[0].reason == Reject.RATE_LIMITED
    p.submit(new(11), T0 + 9 * 10**9)
    (h,) = https(take(p), "req")
    p.on_http(h.tag, 418, {}, b"", T0 + 9 * 10**9)
    assert [type(e) for e in take(p)] == [Halt] and "418" in p.halted
    p.submit(new(12), T0 + 10 * 10**9)
    assert take(p)[0].reason == Reject.HALTED


def test_refused_credentials_and_clock_halt_a_reused_nonce_is_sent_again():
    p = live()
    p.submit(new(7), T0)
    (h,) = https(take(p), "req")
    answer(p, h, {"status": "error", "reason": "Invalid nonce", "code": "API0004"}, status=403)
    (again,) = https(take(p), "req")
    assert again.body == h.body and dict(again.headers)["X-Auth-Nonce"] != dict(h.headers)["X-Auth-Nonce"]
    answer(p, again, BS["rest_error_invalid_signature"]["message"], status=403)
    assert [type(e) for e in take(p)] == [Halt] and "API0005 Invalid signature" in p.halted
    p = live()
    p.submit(new(7), T0)
    (h,) = https(take(p), "req")
    answer(p, h, {"status": "error", "reason": "X-Auth-Timestamp header is out of boundaries", "code": "API0017"},
           status=403)
    assert "clock" in p.halted


# ---------------------------------------------------------------------------------------- reconciliation
OPEN_ORDERS = [
    {"id": "1762863651524001", "datetime": "2023-11-14 22:00:00", "type": "1", "price": "28000",
     "amount": "0.40000000", "amount_at_create": "0.50000000", "currency_pair": "BTC/USD", "market": "BTC/USD",
     "client_order_id": client_id(42)},
    {"id": "1762863651524002", "datetime": "2023-11-14 22:00:00", "type": "0", "price": "20000",
     "amount": "1.00000000", "amount_at_create": "1.00000000", "currency_pair": "BTC/USD", "market": "BTC/USD",
     "client_order_id": ""},
]


def test_reconcile_at_start_cancels_unknown_orders():
    p = live(unknown_orders="cancel")
    p._fetch("open", T0)
    answer(p, https(take(p), "open")[0], OPEN_ORDERS)
    ev = take(p)
    assert not updates(ev)
    assert sorted(form(h)["id"] for h in https(ev, "cancel_unknown")) == ["1762863651524001", "1762863651524002"]
    assert p.counts["unknown_cancelled"] == 1 and p.counts["foreign_open"] == 1


def test_reconcile_at_start_adopts_ours_and_leaves_foreign():
    p = live(unknown_orders="adopt")
    p._fetch("open", T0)
    answer(p, https(take(p), "open")[0], OPEN_ORDERS)
    ev = take(p)
    assert not https(ev, "cancel")
    (u,) = updates(ev)
    assert (u.order_id, u.side, u.price, u.size, u.filled, u.status) == (42, -1, 28000, 50_000_000, 10_000_000,
                                                                          S.PARTIALLY_FILLED)
    p.submit(cancel(50, 42), T0)
    assert form(https(take(p), "req")[0]) == {"id": "1762863651524001"}


def test_periodic_reconcile_finds_drift():
    p = live(reconcile_s=60)
    placed(p, 7, vid=77)
    p.on_timer(T0 + 61 * 10**9)
    ev = take(p)
    assert {path(h) for h in https(ev)} >= {"/api/v2/open_orders/all/", "/api/v2/account_balances/",
                                            "/api/v2/user_transactions/"}
    answer(p, https(ev, "open")[0], [], now=T0 + 61 * 10**9)
    (q,) = https(take(p), "query")
    assert p.counts["drift_orders"] == 1
    answer(p, q, {"id": 77, "status": "Canceled", "amount_remaining": "0.00100000", "client_order_id": client_id(7),
                  "transactions": []})
    (u,) = updates(take(p))
    assert (u.order_id, u.status) == (7, S.CANCELLED)


def test_trades_of_orders_we_lost_track_of_are_mapped_by_order_status():
    p = live(unknown_orders="cancel")
    p._fetch("trades:0", T0)
    answer(p, https(take(p), "trades")[0], [
        {"id": 801, "datetime": "2023-11-14 22:13:20", "type": "2", "fee": "0.1", "btc": "-0.00100000",
         "usd": "27.00", "btc_usd": "27000", "order_id": 91}])
    (m,) = https(take(p), "map")
    assert form(m) == {"id": "91"}
    answer(p, m, {"id": 91, "status": "Finished", "type": "1", "market": "BTC/USD", "price": "27000",
                  "amount": "0.00100000", "amount_remaining": "0", "client_order_id": client_id(3), "transactions": []})
    (f,) = [e for e in take(p) if type(e) is Fill]
    assert (f.order_id, f.trade_id, f.side, f.size) == (3, 801, -1, 100_000)


def test_secrets_never_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="mantra")
    p = live()
    p.on_http("token", 500, {}, f"token={TOKEN} secret={SECRET}".encode(), T0)
    p.on_frame("private", json.dumps({"event": "bts:error", "data": {"message": f"bad auth {TOKEN}"}}), T0)
    p.on_frame("private", "{not json " + TOKEN, T0)
    assert caplog.records
    assert TOKEN not in caplog.text and SECRET not in caplog.text
    assert SECRET not in repr(p.creds) and SECRET not in str(CREDS)


# ---------------------------------------------------------------------------------------- property
@settings(max_examples=120, deadline=None)
@given(data=st.data(), size_lots=st.integers(1, 40))
def test_any_duplicated_reordered_stream_never_double_counts(data, size_lots):
    """Trades partition (part of) the order; the channels and the REST fetches deliver each one or
    more times, in any order, with order events mixed in: the fills emitted are exactly the trades."""
    lot = 1_000_000
    parts = data.draw(st.lists(st.integers(1, size_lots), min_size=0, max_size=8))
    trades, total = [], 0
    for n in parts:
        if total + n > size_lots:
            break
        total += n
        trades.append(n)
    p = live()
    placed(p, 7, size=size_lots * lot)
    events, left = [], size_lots
    for i, n in enumerate(trades):
        left -= n
        events.append(("ws", trade_event(600 + i, 7, amount=f"{n / 100:.8f}")))
        events.append(("ws", order_event("order_deleted" if left == 0 else "order_changed", 7,
                                         left=f"{left / 100:.8f}", size=f"{size_lots / 100:.8f}")))
        events.append(("rest", {"id": 600 + i, "datetime": "2023-11-14 22:13:20", "type": "2", "fee": "0",
                                "btc": f"{n / 100:.8f}", "usd": "-1", "btc_usd": "27000",
                                "order_id": 1762863651524616}))
    stream = data.draw(st.lists(st.sampled_from(range(len(events))), max_size=30)) if events else []
    stream = data.draw(st.permutations(list(range(len(events))) + stream))
    fills = []
    for idx in stream:
        src, ev = events[idx]
        if src == "ws":
            p.on_frame("private", ev, T0)
        else:
            p._fetch("trades:0", T0)
            answer(p, https(take(p), "trades")[0], [ev])
        fills += [e for e in take(p) if type(e) is Fill]
    assert len({f.trade_id for f in fills}) == len(fills) == len(trades)
    assert sum(f.size for f in fills) == total * lot <= size_lots * lot
    assert p.orders[7].filled == total * lot and p.counts["malformed"] == 0


@settings(max_examples=200, deadline=None)
@given(frame=st.one_of(
    st.text(max_size=80),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
                 lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                     ["event", "channel", "data", "id", "amount", "amount_str", "price", "order_id",
                      "client_order_id", "microtimestamp", "amount_at_create", "fee"]), c, max_size=6), max_leaves=12)
    .map(json.dumps)))
def test_any_frame_is_handled_or_counted_never_raised(frame):
    p = live()
    placed(p, 7)
    p.on_frame("private", frame, T0)
    for e in take(p):
        assert type(e) in (OrderUpdate, Fill, BalanceUpdate, Http, Close, Open) or hasattr(e, "text")


@settings(max_examples=150, deadline=None)
@given(status=st.sampled_from([0, 200, 400, 403, 404, 429, 500, 502]), tag=st.sampled_from(
    ["req:1", "query:1:7", "open", "balance", "trades:0", "token", "map:5", "cancel_all", "cancel_unknown:5"]),
    doc=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
                         ["status", "reason", "code", "response_code", "id", "token", "user_id", "canceled",
                          "amount", "amount_remaining", "transactions", "currency", "total", "market"]), c,
                         max_size=5), max_leaves=10))
def test_any_rest_answer_is_handled_or_counted_never_raised(status, tag, doc):
    p = live()
    p.submit(new(7), T0)
    take(p)
    p.on_http(tag, status, {}, body(doc), T0)
    p.on_timer(T0 + 10**10)
