"""Coinbase Advanced Trade order entry, sans-IO: the JWT signing on the documented keys, request shapes,
answers, the user channel, UNKNOWN outcomes, rate limits, halts and reconciliation
(venues/coinbase/auth.py, venues/coinbase/orders.py)."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures import VECTORS
from mantra.instruments import Instrument
from mantra.spine.messages import (BalanceUpdate, Fill, OrderAction, OrderFlags, OrderRequest, OrderStatus,
                                   OrderUpdate, text)
from mantra.trading.accounts import Orders, Reject
from mantra.venues.account import Close, Credentials, Halt, Http, Open, client_id
from mantra.venues.coinbase import auth
from mantra.venues.coinbase.orders import CoinbaseOrders, _Order, reject_reason, trade_key
from venuekit import https, sent, take

CB = json.loads(VECTORS.read_text())["coinbase"]
KEYS = CB["signature_vectors"][0]
MSG = CB["messages"]
NAME = KEYS["api_key_name"]
EC_PEM = KEYS["ec_private_key_pem"]
CREDS = Credentials(NAME, EC_PEM)
BTC = Instrument(1, "coinbase", "BTC-USD", "BTC", "USD", price_scale=2, size_scale=8, tick=1, lot=1,
                 price_decimals=2, size_decimals=8)
ETH = Instrument(2, "coinbase", "ETH-USD", "ETH", "USD", price_scale=2, size_scale=8, tick=1, lot=1,
                 price_decimals=2, size_decimals=8)
T0 = 1_700_000_000_000_000_000
S = OrderStatus
SEC = 1_000_000_000
VID = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"

# DERIVED vectors (exchanges.md 4.3): the SDK's Ed25519 test key signing, at nbf 1700000000 with the
# nonce "0" * 64, the documented REST uri and a WebSocket token (no uri).  EdDSA is deterministic;
# these were computed with PyJWT 2.x (``jwt.encode(claims, key, algorithm="EdDSA", headers={"kid",
# "nonce"})``, the SDK's own call), independently of auth.py.
ED_REST_TOKEN = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6Im9yZ2FuaXphdGlvbnMvdGVzdC1vcmdhbml6YXRpb24vYXBpS2V5cy90ZXN0LWFwaS1rZXkiLCJub25jZSI6"
    "IjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAiLCJ0eXAiOiJKV1QifQ."
    "eyJzdWIiOiJvcmdhbml6YXRpb25zL3Rlc3Qtb3JnYW5pemF0aW9uL2FwaUtleXMvdGVzdC1hcGkta2V5IiwiaXNzIjoiY2RwIiwibmJmIjox"
    "NzAwMDAwMDAwLCJleHAiOjE3MDAwMDAxMjAsInVyaSI6IkdFVCBhcGkuY29pbmJhc2UuY29tL2FwaS92My9icm9rZXJhZ2UvYWNjb3VudHMifQ."
    "mzotK28Xii4EuzURc7DBeP1Xp7RKlamKqtWi2hEkA61-KO5MztIfYzA_F8DhZhb6tb1ypbl-0e-kWsXEKNypCg")
ED_WS_TOKEN = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6Im9yZ2FuaXphdGlvbnMvdGVzdC1vcmdhbml6YXRpb24vYXBpS2V5cy90ZXN0LWFwaS1rZXkiLCJub25jZSI6"
    "IjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAiLCJ0eXAiOiJKV1QifQ."
    "eyJzdWIiOiJvcmdhbml6YXRpb25zL3Rlc3Qtb3JnYW5pemF0aW9uL2FwaUtleXMvdGVzdC1hcGkta2V5IiwiaXNzIjoiY2RwIiwibmJmIjox"
    "NzAwMDAwMDAwLCJleHAiOjE3MDAwMDAxMjB9."
    "zG0F-4aEOYlfeN3HxlTffsDMq_ISdU41MNRWvc0zA-_NiejdG4xrGHEWnQwby-tijKz5wu5KL33L6pnUnjmbBg")


def new(oid, price=1000000, size=100_000, side=1, flags=0, inst=BTC):  # 10000.00 USD, 0.001 BTC
    return OrderRequest(oid, 0, price, size, inst.id, 1, 0, OrderAction.NEW, side, flags)


def amend(oid, ref, price, size, inst=BTC):
    return OrderRequest(oid, ref, price, size, inst.id, 1, 0, OrderAction.AMEND, 1, 0)


def cancel(oid, ref, inst=BTC):
    return OrderRequest(oid, ref, 0, 0, inst.id, 1, 0, OrderAction.CANCEL, 1, 0)


def answer(p, h: Http, doc, status=200, now=T0, headers=None):
    p.on_http(h.tag, status, headers or {}, json.dumps(doc).encode() if doc is not None else b"", now)


def query(h: Http) -> dict:
    return parse_qs(urlsplit(h.url).query)


def path(h: Http) -> str:
    return urlsplit(h.url).path


def body(h: Http) -> dict:
    return json.loads(h.body)


def frame(seq, *orders, kind="update", channel="user"):
    return json.dumps({"channel": channel, "client_id": "", "timestamp": "2023-11-14T22:13:20.000000Z",
                       "sequence_num": seq, "events": [{"type": kind, "orders": list(orders)}]})


def ack(seq, *channels):
    return json.dumps({"channel": "subscriptions", "client_id": "", "timestamp": "2023-11-14T22:13:20Z",
                       "sequence_num": seq, "events": [{"subscriptions": {c: ["BTC-USD"] for c in channels}}]})


def user_order(oid_or_cid, status="OPEN", cum="0", leaves="0.001", vid=VID, price="10000.00", side="BUY"):
    cid = client_id(oid_or_cid) if isinstance(oid_or_cid, int) else oid_or_cid
    return {"order_id": vid, "client_order_id": cid, "cumulative_quantity": cum, "leaves_quantity": leaves,
            "avg_price": "0", "total_fees": "0", "status": status, "product_id": "BTC-USD", "order_side": side,
            "order_type": "Limit", "limit_price": price, "time_in_force": "GOOD_UNTIL_CANCELLED",
            "creation_time": "2023-11-14T22:13:20.000000Z"}


def rest_order(oid_or_cid, status="OPEN", filled="0", vid=VID, price="10000.00", size="0.001", side="BUY"):
    cid = client_id(oid_or_cid) if isinstance(oid_or_cid, int) else oid_or_cid
    return {"order_id": vid, "product_id": "BTC-USD", "side": side, "client_order_id": cid, "status": status,
            "order_configuration": {"limit_limit_gtc": {"base_size": size, "limit_price": price, "post_only": False}},
            "filled_size": filled, "time_in_force": "GOOD_UNTIL_CANCELLED"}


def fill(trade_id, size="0.0005", price="10000.00", commission="0.031", vid=VID, maker=True,
         at="2023-11-14T22:13:21.123456Z"):
    return {"entry_id": "e-" + trade_id, "trade_id": trade_id, "order_id": vid, "trade_time": at, "trade_type": "FILL",
            "price": price, "size": size, "commission": commission, "product_id": "BTC-USD",
            "sequence_timestamp": at, "liquidity_indicator": "MAKER" if maker else "TAKER", "size_in_quote": False,
            "side": "BUY"}


def live(now=T0, **kw) -> CoinbaseOrders:
    """A protocol started, connected and subscribed, the start's fetches answered; events cleared."""
    p = CoinbaseOrders(CREDS, [BTC, ETH], **kw)
    p.start(now)
    for h in https(take(p)):
        answer(p, h, {"orders": [], "has_next": False, "cursor": ""} if "batch" in h.url else
               {"accounts": [], "has_next": False} if "accounts" in h.url else {"fills": [], "cursor": ""}, now=now)
    p.on_open("user", now)
    p.on_frame("user", ack(0, "user"), now)
    p.on_frame("user", frame(1, kind="snapshot"), now)
    take(p)
    return p


def placed(p, oid=7, now=T0, vid=VID, **kw):
    """``live`` with the NEW ``oid`` sent and acknowledged (venue id ``vid``)."""
    p.submit(new(oid, **kw), now)
    (h,) = https(take(p), "req")
    answer(p, h, {"success": True, "success_response": {"order_id": vid, "product_id": "BTC-USD", "side": "BUY",
                                                          "client_order_id": client_id(oid)}}, now=now)
    take(p)
    return p


# ---------------------------------------------------------------------------------------- signing
def test_ed25519_jwt_documented_key_byte_for_byte():
    for secret in (KEYS["ed25519_secret_b64_64bytes"], KEYS["ed25519_secret_seed_b64"]):
        uri = auth.rest_uri("GET", auth.REST_HOST, "/api/v3/brokerage/accounts")
        assert uri == KEYS["rest_uri_example"]
        assert auth.jwt(NAME, secret, 1_700_000_000, "0" * 64, uri) == ED_REST_TOKEN
        assert auth.jwt(NAME, secret, 1_700_000_000, "0" * 64) == ED_WS_TOKEN
    pub = auth.public_key(KEYS["ed25519_secret_b64_64bytes"])
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64encode(raw).decode() == KEYS["ed25519_public_raw_b64"]  # the documented public key
    assert auth.verify({NAME: pub}, ED_REST_TOKEN, 1_700_000_001, uri) == (None, auth.decode(ED_REST_TOKEN)[1])


def test_es256_jwt_is_randomized_and_verifies_with_the_public_key():
    uri = KEYS["rest_uri_example"]
    a = auth.jwt(NAME, EC_PEM, 1_700_000_000, "ab" * 32, uri)
    b = auth.jwt(NAME, EC_PEM, 1_700_000_000, "ab" * 32, uri)
    assert a != b and a.rsplit(".", 1)[0] == b.rsplit(".", 1)[0]  # same header and claims, another signature
    header, claims, sig, signing_input = auth.decode(a)
    assert header == {"alg": "ES256", "kid": NAME, "nonce": "ab" * 32, "typ": "JWT"}
    assert claims == {"sub": NAME, "iss": "cdp", "nbf": 1_700_000_000, "exp": 1_700_000_120, "uri": uri}
    head = b'{"alg":"ES256","kid":"' + NAME.encode() + b'","nonce":"' + b"ab" * 32 + b'","typ":"JWT"}'
    assert a.split(".")[0] == base64.urlsafe_b64encode(head).decode().rstrip("=")
    # the check: the documented key's public half, with an independent ECDSA verifier
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    pub = serialization.load_pem_private_key(EC_PEM.encode(), None).public_key()
    assert len(sig) == 64
    pub.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")), signing_input,
               ec.ECDSA(hashes.SHA256()))
    assert auth.verify({NAME: pub}, b, 1_700_000_060, uri)[0] is None


def test_verify_gives_the_venues_refusals():
    pub = auth.public_key(EC_PEM)
    uri = KEYS["rest_uri_example"]
    good = auth.jwt(NAME, EC_PEM, 1_700_000_000, "00" * 32, uri)
    keys = {NAME: pub}
    assert auth.verify(keys, good, 1_700_000_119.5, uri)[0] is None
    assert auth.verify(keys, good, 1_700_000_120, uri)[0] == auth.EXPIRED
    assert auth.verify(keys, good, 1_699_999_990, uri)[0] == auth.NOT_YET_VALID
    assert auth.verify(keys, good, 1_700_000_001, "POST api.coinbase.com/api/v3/brokerage/orders")[0] == auth.WRONG_URI
    assert auth.verify({"someone": pub}, good, 1_700_000_001, uri)[0] == auth.UNKNOWN_KEY
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert auth.verify({NAME: other}, good, 1_700_000_001, uri)[0] == auth.BAD_SIGNATURE
    head, claims, sig = good.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({**auth.decode(good)[1], "exp": 1_800_000_000}).encode()).decode()
    assert auth.verify(keys, f"{head}.{forged.rstrip('=')}.{sig}", 1_700_000_001, uri)[0] == auth.BAD_SIGNATURE
    assert auth.verify(keys, "a.b", 1_700_000_001, uri)[0] == auth.MALFORMED
    # an Ed25519 token is not checked against an EC key, nor the other way round
    ed = auth.jwt(NAME, KEYS["ed25519_secret_seed_b64"], 1_700_000_000, "00" * 32, uri)
    assert auth.verify(keys, ed, 1_700_000_001, uri)[0] == auth.BAD_SIGNATURE


def test_key_formats():
    escaped = EC_PEM.replace("\n", "\\n")  # as an environment variable often holds it
    assert auth.load_key(escaped)[0] == "ES256"
    pkcs8 = serialization.load_pem_private_key(EC_PEM.encode(), None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    assert auth.load_key(pkcs8)[0] == "ES256"
    ed_pem = auth.load_key(KEYS["ed25519_secret_seed_b64"])[1].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    assert auth.jwt(NAME, ed_pem, 1_700_000_000, "0" * 64) == ED_WS_TOKEN
    rsa_pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    for bad in (rsa_pem, "not a key at all", base64.b64encode(b"x" * 40).decode(), "-----BEGIN EC PRIVATE KEY-----x"):
        with pytest.raises(auth.KeyFormatError) as e:
            auth.load_key(bad)
        assert bad[40:80] not in str(e.value) or not bad[40:80]
    with pytest.raises(auth.KeyFormatError):
        CoinbaseOrders(Credentials(NAME, "not a key at all"), [BTC])


# ---------------------------------------------------------------------------------------- start
def test_start_opens_the_user_socket_and_fetches_state_signed():
    p = CoinbaseOrders(CREDS, [BTC, ETH])
    p.start(T0)
    ev = take(p)
    assert Open("user", "wss://advanced-trade-ws-user.coinbase.com") in ev
    hs = https(ev)
    assert [(h.method, path(h)) for h in hs] == [("GET", "/api/v3/brokerage/orders/historical/batch"),
                                                 ("GET", "/api/v3/brokerage/accounts"),
                                                 ("GET", "/api/v3/brokerage/orders/historical/fills")]
    assert query(hs[0]) == {"order_status": ["OPEN"], "limit": ["250"], "product_ids": ["BTC-USD", "ETH-USD"]}
    assert query(hs[2])["start_sequence_timestamp"] == ["2023-11-14T21:12:20.000000Z"]  # an hour and a minute back
    pub = {NAME: auth.public_key(EC_PEM)}
    for h in hs:
        hd = dict(h.headers)
        assert hd["Authorization"].startswith("Bearer ") and h.url.startswith("https://api.coinbase.com/")
        err, claims = auth.verify(pub, hd["Authorization"][7:], T0 / 1e9, auth.rest_uri(h.method, "api.coinbase.com",
                                                                                         path(h)))
        assert err is None and claims["exp"] - claims["nbf"] == 120
    assert len({dict(h.headers)["Authorization"] for h in hs}) == 3  # a token per request
    assert not sent(ev)


def test_subscribes_to_user_and_heartbeats_with_jwts():
    p = CoinbaseOrders(CREDS, [BTC, ETH])
    p.start(T0)
    take(p)
    p.on_open("user", T0)
    subs = sent(take(p))
    doc = MSG["at_subscribe_heartbeats"]["message"]
    assert [(m["type"], m["channel"]) for m in subs] == [("subscribe", "user"), (doc["type"], doc["channel"])]
    assert subs[0]["product_ids"] == ["BTC-USD", "ETH-USD"]
    pub = {NAME: auth.public_key(EC_PEM)}
    for m in subs:
        err, claims = auth.verify(pub, m["jwt"], T0 / 1e9)
        assert err is None and "uri" not in claims
    assert not p.subscribed
    p.on_frame("user", ack(0, "user", "heartbeats"), T0)
    assert p.subscribed and p.counts["subscribed"] == 1
    # a refused subscription (its token) is asked again
    p2 = CoinbaseOrders(CREDS, [BTC])
    p2.on_open("user", T0)
    take(p2)
    p2.on_frame("user", json.dumps(MSG["at_error"]["message"]), T0)
    p2.on_timer(T0 + 3 * SEC)
    assert [m["channel"] for m in sent(take(p2))] == ["user", "heartbeats"]


# ---------------------------------------------------------------------------------------- requests
def test_new_is_the_documented_create_order_body():
    p = live()
    p.submit(new(7, price=1000000, size=100_000), T0)
    (h,) = https(take(p), "req")
    doc = MSG["at_rest_create_order_request"]["message"]
    b = body(h)
    assert (h.method, path(h)) == ("POST", "/api/v3/brokerage/orders")
    assert dict(h.headers)["Content-Type"] == "application/json"
    assert set(b) == set(doc) and b["product_id"] == doc["product_id"] and b["side"] == doc["side"]
    assert b["client_order_id"] == client_id(7)
    assert b["order_configuration"] == {"limit_limit_gtc": {"base_size": "0.00100000", "limit_price": "10000.00",
                                                            "post_only": False}}
    def values(conf):
        return {k: float(v) if isinstance(v, str) else v for k, v in conf["limit_limit_gtc"].items()}

    assert values(doc["order_configuration"]) == values(b["order_configuration"])  # the same numbers
    p.submit(new(8, flags=OrderFlags.POST_ONLY), T0)
    p.submit(new(9, flags=OrderFlags.IOC, side=-1), T0)
    post, ioc = https(take(p), "req")
    assert body(post)["order_configuration"]["limit_limit_gtc"]["post_only"] is True
    assert body(ioc)["side"] == "SELL" and body(ioc)["order_configuration"] == {
        "sor_limit_ioc": {"base_size": "0.00100000", "limit_price": "10000.00"}}


def test_create_answers_ack_and_failures_reject_with_reasons():
    p = live()
    p.submit(new(7), T0)
    (h,) = https(take(p), "req")
    ok = {"success": True, "success_response": {"order_id": VID, "product_id": "BTC-USD", "side": "BUY",
                                                "client_order_id": client_id(7)}}
    answer(p, h, ok)
    (u,) = take(p, OrderUpdate)
    assert (u.order_id, u.status, text(u.venue_id)) == (7, S.ACK, VID[:24])
    answer(p, h, ok)  # the same answer again: nothing more
    assert not take(p, OrderUpdate) and p.counts["late_answers"] == 1
    cases = [({"error": "INSUFFICIENT_FUND", "preview_failure_reason": "PREVIEW_INSUFFICIENT_FUND",
               "new_order_failure_reason": "INSUFFICIENT_FUND"}, Reject.INSUFFICIENT_BALANCE),
             ({"error": "INVALID_LIMIT_PRICE_POST_ONLY", "preview_failure_reason":
               "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY"}, Reject.POST_ONLY),
             ({"error": "UNKNOWN_FAILURE_REASON", "preview_failure_reason": "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL"},
              Reject.MIN_SIZE),
             ({"error": "UNKNOWN_FAILURE_REASON", "preview_failure_reason": "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL"},
              Reject.MIN_NOTIONAL),
             ({"error": "INVALID_PRICE_PRECISION"}, Reject.TICK), ({"error": "INVALID_SIZE_PRECISION"}, Reject.LOT),
             ({"error": "INVALID_PRODUCT_ID"}, Reject.UNKNOWN_INSTRUMENT),
             ({"error": "UNKNOWN_FAILURE_REASON", "message": "?"}, Reject.VENUE_ERROR)]
    for i, (er, why) in enumerate(cases):
        p.submit(new(100 + i), T0)
        (h,) = https(take(p), "req")
        answer(p, h, {"success": False, "failure_reason": "UNKNOWN_FAILURE_REASON", "error_response": er})
        (u,) = take(p, OrderUpdate)
        assert (u.order_id, u.status, u.reason) == (100 + i, S.REJECTED, why), er
    # a 400 with the gateway's error shape is a refusal too, not an unknown outcome
    p.submit(new(200), T0)
    (h,) = https(take(p), "req")
    answer(p, h, {"error": "INVALID_ARGUMENT", "error_details": "bad", "message": "bad"}, status=400)
    (u,) = take(p, OrderUpdate)
    assert (u.status, u.reason) == (S.REJECTED, Reject.BAD_REQUEST) and not p.reqs


def test_edit_in_place_answers_about_ref_id():
    p = placed(live())
    p.submit(amend(9, 7, 999900, 150_000), T0)
    (h,) = https(take(p), "req")
    assert (path(h), body(h)) == ("/api/v3/brokerage/orders/edit",
                                  {"order_id": VID, "price": "9999.00", "size": "0.00150000"})
    answer(p, h, {"success": True, "errors": []})
    (u,) = take(p, OrderUpdate)
    assert (u.order_id, u.price, u.size, u.status) == (7, 999900, 150_000, S.ACK)
    orders = Orders()  # the overseer's books take it as the amend it asked for
    orders.sent(new(7))
    orders.on_update(OrderUpdate(7, 1000000, 100_000, 0, T0, 1, S.ACK, 1, 0, b""))
    orders.sent(amend(9, 7, 999900, 150_000))
    assert orders.on_update(u) is not None and orders.get(7).size == 150_000
    # refused: the order stands as it was, with the venue's reason
    p.submit(amend(10, 7, 999900, 120_000), T0)
    (h,) = https(take(p), "req")
    answer(p, h, {"success": False, "errors": [{"edit_failure_reason": "UNKNOWN_EDIT_ORDER_FAILURE_REASON",
                                                "preview_failure_reason": "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY"}]})
    (u,) = take(p, OrderUpdate)
    assert (u.order_id, u.status, u.reason, u.size) == (7, S.CANCEL_REJECTED, Reject.POST_ONLY, 150_000)


def test_cancel_by_venue_id_and_a_filled_order_reports_how_it_ended():
    p = placed(live())
    p.submit(cancel(10, 7), T0)
    (h,) = https(take(p), "req")
    assert (path(h), body(h)) == ("/api/v3/brokerage/orders/batch_cancel", {"order_ids": [VID]})
    answer(p, h, {"results": [{"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER", "order_id": VID}]})
    (q,) = https(take(p), "query")
    assert path(q) == f"/api/v3/brokerage/orders/historical/{VID}"
    answer(p, q, {"order": rest_order(7, status="FILLED", filled="0.001")})
    ev = take(p)
    (u,) = [e for e in ev if type(e) is OrderUpdate]
    assert (u.status, u.filled) == (S.FILLED, 100_000) and not p.reqs
    (f,) = https(ev, "ofills")
    assert query(f)["order_ids"] == [VID]  # its fills are fetched
    p = placed(live())
    p.submit(cancel(10, 7), T0)
    (h,) = https(take(p), "req")
    answer(p, h, {"results": [{"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": VID}]})
    (u,) = take(p, OrderUpdate)
    assert (u.order_id, u.status) == (7, S.CANCELLED)


def test_cancel_waits_for_the_venue_id_and_amend_before_it_is_refused():
    p = live()
    p.submit(new(7), T0)
    (h,) = https(take(p), "req")
    p.submit(cancel(10, 7), T0 + 1)
    p.submit(amend(11, 7, 999900, 100_000), T0 + 1)
    (u,) = take(p)
    assert (u.order_id, u.status, u.reason) == (7, S.CANCEL_REJECTED, Reject.UNSUPPORTED)
    p.on_timer(T0 + 4 * SEC)  # the waiting cancel is no request on the wire: nothing to time out
    assert not take(p) and p.counts["deferred_cancels"] == 1
    assert [q.state for q in p.reqs.values()] == ["sent", "deferred"]
    answer(p, h, {"success": True, "success_response": {"order_id": VID}})
    ev = take(p)
    (c,) = https(ev, "req")
    assert body(c) == {"order_ids": [VID]}
    # a NEW refused: the waiting cancel is answered with how the order ended
    p.submit(new(8), T0)
    (h,) = https(take(p), "req")
    p.submit(cancel(12, 8), T0)
    answer(p, h, {"success": False, "error_response": {"error": "INSUFFICIENT_FUND"}})
    ups = take(p, OrderUpdate)
    assert [(u.order_id, u.status) for u in ups] == [(8, S.REJECTED), (8, S.REJECTED)]
    assert not [q for q in p.reqs.values() if q.order.order_id == 8]


def test_pre_checks_refuse_before_sending():
    p = live()
    p.submit(new(1, inst=Instrument(99, "coinbase", "DOGE-USD")), T0)
    p.submit(new(2, price=0), T0)
    p.submit(new(5), T0)
    p.submit(new(5), T0)  # the same NEW again
    ev = take(p)
    assert len(https(ev)) == 1 and p.counts["duplicate_new"] == 1
    assert [(u.order_id, u.status, u.reason) for u in ev if type(u) is OrderUpdate] == [
        (1, S.REJECTED, Reject.UNKNOWN_INSTRUMENT), (2, S.REJECTED, Reject.BAD_REQUEST)]
    # An order this handler does not know (a predecessor's?) is not refused: the venue is asked first.
    p.submit(cancel(4, 12345), T0)
    assert not [e for e in take(p) if type(e) is OrderUpdate] and p.counts["asked_unknown_order"] == 1


# ---------------------------------------------------------------------------------------- UNKNOWN outcomes
def _unknown_new(p, oid=7):
    p.submit(new(oid), T0)
    (h,) = https(take(p), "req")
    p.on_timer(T0 + 4 * SEC)
    assert not https(take(p))  # not yet
    p.on_timer(T0 + 6 * SEC)
    (q,) = https(take(p), "find")
    assert path(q) == "/api/v3/brokerage/orders/historical/batch"
    assert query(q) == {"product_ids": ["BTC-USD"], "start_date": ["2023-11-14T22:12:20.000000Z"], "limit": ["250"]}
    return h, q


def test_timeout_finds_the_order_by_client_id_and_the_late_answer_applies_once():
    p = live()
    h, q = _unknown_new(p)
    others = [rest_order("someone-else", vid="v-1"), rest_order(8, vid="v-2")]
    answer(p, q, {"orders": others, "has_next": True, "cursor": "250"}, now=T0 + 6 * SEC)
    (q2,) = https(take(p), "find")  # not on this page: the next one
    assert query(q2)["cursor"] == ["250"]
    answer(p, q2, {"orders": [rest_order(7)], "has_next": False, "cursor": ""}, now=T0 + 6 * SEC)
    (u,) = take(p, OrderUpdate)
    assert (u.order_id, u.status, text(u.venue_id)) == (7, S.OPEN, VID[:24]) and not p.reqs
    answer(p, h, {"success": True, "success_response": {"order_id": VID}}, now=T0 + 7 * SEC)  # the late answer
    assert not take(p) and p.counts["late_answers"] == 1


def test_not_found_within_the_token_window_is_asked_again_then_lost_and_a_late_one_cancelled():
    p = live(jwt_lifetime_s=10)
    h, q = _unknown_new(p)
    answer(p, q, {"orders": [], "has_next": False}, now=T0 + 6 * SEC)
    assert not take(p) and p.reqs  # its token lives until T0 + 10 s: the venue may still take it
    p.on_timer(T0 + 10 * SEC)
    assert not https(take(p))
    p.on_timer(T0 + 11 * SEC + 1)
    (q,) = https(take(p), "find")
    answer(p, q, {"orders": [], "has_next": False}, now=T0 + 12 * SEC)
    (u,) = take(p)
    assert (u.order_id, u.status, u.reason) == (7, S.REJECTED, Reject.VENUE_ERROR) and not p.reqs
    # it shows up after all: cancelled, once, and never reported as ours again
    p.on_frame("user", frame(2, user_order(7)), T0 + 13 * SEC)
    p.on_frame("user", frame(3, user_order(7)), T0 + 13 * SEC)
    ev = take(p)
    assert not [e for e in ev if type(e) is OrderUpdate]
    (c,) = https(ev)
    assert body(c) == {"order_ids": [VID]} and p.counts["late_accept_cancelled"] == 1


def test_5xx_and_transport_errors_leave_the_outcome_unknown():
    p = live()
    p.submit(new(7), T0)
    (h,) = https(take(p), "req")
    p.on_http(h.tag, 503, {}, b'{"error":"UNAVAILABLE"}', T0 + 1)
    (q,) = https(take(p), "find")
    p.on_http(q.tag, 0, {}, b"ConnectionResetError", T0 + 2)  # the question itself failed: asked again
    p.on_timer(T0 + 2 + 3 * SEC)
    (q,) = https(take(p), "find")
    # the user channel knew it first: the venue id is set, the answer finishes the request
    p.on_frame("user", frame(2, user_order(7)), T0 + 3 * SEC)
    (u,) = take(p, OrderUpdate)
    assert (u.order_id, u.status) == (7, S.OPEN)
    answer(p, q, {"orders": [rest_order(7)], "has_next": False}, now=T0 + 4 * SEC)
    assert [u.status for u in take(p, OrderUpdate)] == [S.OPEN] and not p.reqs


def test_unknown_cancel_and_edit_are_asked_by_venue_id():
    p = placed(live())
    p.submit(cancel(10, 7), T0 + SEC)
    (h,) = https(take(p), "req")
    p.on_http(h.tag, 0, {}, b"timeout", T0 + 2 * SEC)
    (q,) = https(take(p), "query")
    answer(p, q, {"order": rest_order(7, status="OPEN")})  # still open: the cancel did not happen
    u = take(p, OrderUpdate)[-1]
    assert (u.order_id, u.status, u.reason) == (7, S.CANCEL_REJECTED, Reject.VENUE_ERROR)
    p.submit(amend(11, 7, 999900, 150_000), T0 + 3 * SEC)
    (h,) = https(take(p), "req")
    p.on_http(h.tag, 502, {}, b"", T0 + 4 * SEC)
    (q,) = https(take(p), "query")
    answer(p, q, {"order": rest_order(7, price="9999.00", size="0.0015")})  # it did happen
    u = take(p, OrderUpdate)[-1]
    assert (u.order_id, u.price, u.size) == (7, 999900, 150_000) and not p.reqs


# ---------------------------------------------------------------------------------------- user channel
def test_documented_user_snapshot_of_a_foreign_order_is_counted_not_emitted():
    p = live(unknown_orders="adopt")
    p.on_frame("user", json.dumps(MSG["at_user_snapshot_order"]["message"]), T0)
    assert not take(p)
    assert p.counts["foreign_events"] == 1 and p.counts["malformed"] == 0


def test_user_updates_fetch_the_fills_which_are_deduplicated():
    p = placed(live())
    p.on_frame("user", frame(2, user_order(7)), T0)
    (u,) = take(p)
    assert (u.order_id, u.status) == (7, S.OPEN)
    p.on_frame("user", frame(3, user_order(7, cum="0.0005", leaves="0.0005")), T0)
    ev = take(p)
    (u,) = [e for e in ev if type(e) is OrderUpdate]
    assert (u.status, u.filled) == (S.PARTIALLY_FILLED, 50_000)
    (h,) = https(ev, "ofills")
    assert query(h) == {"order_ids": [VID], "limit": ["250"]}
    p.on_frame("user", frame(4, user_order(7, cum="0.0007", leaves="0.0003")), T0)  # one fetch at a time
    assert not https(take(p), "ofills")
    answer(p, h, {"fills": [fill("t-1", size="0.0005")], "cursor": ""})
    ev = take(p)
    (f,) = [e for e in ev if type(e) is Fill]
    assert (f.order_id, f.trade_id, f.price, f.size, f.fee, text(f.fee_asset), f.liquidity, f.side, f.exch_ts) == \
        (7, trade_key("t-1"), 1000000, 50_000, 4, "USD", 1, 1, 1_700_000_001_123_456_000)  # fee 0.031 rounded up
    p.on_timer(T0 + SEC)  # the venue listed fewer than the channel said: asked again shortly
    (h,) = https(take(p), "ofills")
    answer(p, h, {"fills": [fill("t-1", size="0.0005"), fill("t-2", size="0.0002", maker=False)], "cursor": ""})
    (f,) = take(p, Fill)
    assert (f.trade_id, f.size, f.liquidity) == (trade_key("t-2"), 20_000, 2) and p.counts["duplicate_fills"] == 1
    # the same trades from the gap reconciliation are the same trades
    p._fetch_fills(T0, T0)
    (h,) = https(take(p), "fills")
    answer(p, h, {"fills": [fill("t-2", size="0.0002"), fill("t-1", size="0.0005")], "cursor": ""})
    assert not take(p, Fill) and p.orders[7].fill_qty == 70_000
    # the whole size filled: FILLED whatever the channel says or lost
    p.on_frame("user", frame(5, user_order(7, status="FILLED", cum="0.001", leaves="0")), T0)
    (h,) = https(take(p), "ofills")
    answer(p, h, {"fills": [fill("t-3", size="0.0003")], "cursor": ""})
    assert p.orders[7].status == S.FILLED and p.orders[7].fill_qty == 100_000


def test_sequence_gap_resubscribes_and_reconciles():
    p = live()
    p.on_frame("user", frame(2), T0)
    assert not take(p)
    p.on_frame("user", frame(5), T0)
    ev = take(p)
    assert [(m["type"], m["channel"]) for m in sent(ev)] == [("unsubscribe", "user"), ("subscribe", "user")]
    assert p.counts["user_seq_gap"] == 1 and not p.subscribed
    p.on_frame("user", frame(4), T0)  # late or repeated: counted (its states applied, its sizes not)
    assert p.counts["user_seq_old"] == 1
    p.on_frame("user", ack(6), T0)  # the unsubscribe's answer
    assert not p.subscribed
    p.on_frame("user", ack(7, "user"), T0)
    assert p.subscribed
    assert {path(h).rsplit("/", 1)[1] for h in https(take(p))} == {"batch", "accounts", "fills"}


def test_closed_while_away_is_asked_for_and_stale_reconnects():
    p = placed(live())
    p.on_close("user", T0 + SEC, "reset")
    assert not p.subscribed and p.counts["stream_gaps"] == 1
    p.on_open("user", T0 + 2 * SEC)
    take(p)
    p.on_frame("user", ack(0, "user"), T0 + 2 * SEC)
    assert {path(h).rsplit("/", 1)[1] for h in https(take(p))} == {"batch", "accounts", "fills"}
    p.on_frame("user", frame(1, kind="snapshot"), T0 + 2 * SEC)  # our order is not open any more
    (q,) = https(take(p), "query")
    answer(p, q, {"order": rest_order(7, status="CANCELLED")})
    assert take(p, OrderUpdate)[0].status == S.CANCELLED and p.counts["closed_in_gap"] == 1
    p.on_timer(T0 + 6 * SEC)
    assert not take(p, Close)
    p.on_timer(T0 + 8 * SEC)  # 5 s without a heartbeat
    assert take(p, Close, Open) == [Close("user", "stale"), Open("user", p.ws_url)]


def test_balances_come_from_accounts_with_holds():
    p = CoinbaseOrders(CREDS, [BTC])
    p.start(T0)
    (h,) = https(take(p), "accounts")
    doc = {"accounts": [
        {"currency": "BTC", "available_balance": {"value": "1.23456789", "currency": "BTC"},
         "hold": {"value": "0.00500000", "currency": "BTC"}},
        {"currency": "USD", "available_balance": {"value": "10000.50", "currency": "USD"},
         "hold": {"value": "450.00", "currency": "USD"}}], "has_next": True, "cursor": "abc", "size": 2}
    answer(p, h, doc)
    ev = take(p)
    bal = {text(b.asset): b for b in ev if type(b) is BalanceUpdate}
    assert (bal["BTC"].total, bal["BTC"].available, bal["BTC"].scale) == (12_395_678_900, 12_345_678_900, 10)
    assert (bal["USD"].total, bal["USD"].available, bal["USD"].venue) == (104_505_000_000_000, 100_005_000_000_000, 4)
    (h,) = https(ev, "accounts")  # the next page
    assert query(h)["cursor"] == ["abc"]
    answer(p, h, {"accounts": [{"currency": "DOGE", "available_balance": {"value": "5"}}], "has_next": False})
    assert not take(p, BalanceUpdate) and p.counts["other_assets"] == 1
    # fills and order changes ask again, at most every balance_every_s
    p = placed(live())
    p.on_timer(T0 + SEC)
    assert https(take(p), "accounts")
    p.on_timer(T0 + SEC + 1)
    assert not https(take(p), "accounts")


# ---------------------------------------------------------------------------------------- rate limits, halts
def test_rest_window_refuses_before_sending():
    p = live(rest_limit_per_s=5)
    for i in range(5):  # the start's 3 fetches are a second old by now
        p.submit(new(100 + i), T0 + SEC)
    assert len(https(take(p), "req")) == 5
    p.submit(new(200), T0 + SEC)
    (u,) = take(p)
    assert (u.order_id, u.status, u.reason) == (200, S.REJECTED, Reject.RATE_LIMITED)
    p.submit(new(201), T0 + 2 * SEC + 1)
    assert len(https(take(p), "req")) == 1


def test_429_backs_off_for_retry_after_and_401_403_418_halt():
    p = live()
    p.submit(new(7), T0)
    (h,) = https(take(p), "req")
    p.on_http(h.tag, 429, {"retry-after": "3"}, b'{"error":"RATE_LIMIT_EXCEEDED"}', T0)
    (u,) = take(p)
    assert (u.order_id, u.status, u.reason) == (7, S.REJECTED, Reject.RATE_LIMITED)
    p.submit(new(8), T0 + 2 * SEC)
    assert take(p)[0].reason == Reject.RATE_LIMITED
    p.submit(new(9), T0 + 4 * SEC)
    assert https(take(p), "req")
    for status in (401, 403, 418):
        p = live()
        p.submit(new(7), T0)
        (h,) = https(take(p), "req")
        p.on_http(h.tag, status, {}, b"Unauthorized\n", T0 + SEC)
        ev = take(p)
        assert [type(e) for e in ev] == [Halt, OrderUpdate] and str(status) in p.halted
        assert (ev[1].status, ev[1].reason) == (S.REJECTED, Reject.HALTED)
        p.submit(new(10), T0 + 2 * SEC)
        assert take(p)[0].reason == Reject.HALTED


def test_a_401_after_the_token_lifetime_is_no_credentials_problem():
    p = live(jwt_lifetime_s=5)
    p.submit(new(7), T0)
    (h,) = https(take(p), "req")
    p.on_http(h.tag, 401, {}, b"Unauthorized\n", T0 + 5 * SEC)
    (u,) = take(p)
    assert not p.halted and (u.status, u.reason) == (S.REJECTED, Reject.VENUE_ERROR)
    assert p.counts["token_expired_in_flight"] == 1


# ---------------------------------------------------------------------------------------- reconciliation
OPEN = {"orders": [rest_order(42, vid="ours-42", side="SELL", price="27000.00", size="0.5", filled="0.1"),
                   rest_order("manual-1", vid="theirs-1", price="20000.00", size="1")],
        "has_next": False, "cursor": ""}


def test_reconcile_at_start_cancels_unknown_orders():
    p = live(unknown_orders="cancel")
    p._fetch_open(T0)
    (h,) = https(take(p), "open")
    answer(p, h, OPEN)
    ev = take(p)
    assert not [e for e in ev if type(e) is OrderUpdate]
    assert sorted(body(h)["order_ids"][0] for h in https(ev, "cancel_unknown")) == ["ours-42", "theirs-1"]


def test_reconcile_at_start_adopts_ours_and_leaves_foreign():
    p = live(unknown_orders="adopt")
    p._fetch_open(T0)
    (h,) = https(take(p), "open")
    answer(p, h, OPEN)
    ev = take(p)
    assert not https(ev, "cancel")
    (u,) = [e for e in ev if type(e) is OrderUpdate]
    assert (u.order_id, u.side, u.price, u.size, u.filled, u.status) == (42, -1, 2700000, 50_000_000, 10_000_000,
                                                                          S.PARTIALLY_FILLED)
    assert https(ev, "ofills") and p.counts["foreign_open"] == 1
    p.submit(cancel(50, 42), T0 + SEC)  # an adopted order is cancelled like any other
    (h,) = https(take(p), "req")
    assert body(h) == {"order_ids": ["ours-42"]}


def test_periodic_reconcile_finds_drift():
    p = placed(live(reconcile_s=60))
    p.on_timer(T0 + 61 * SEC)
    ev = take(p)
    assert {path(h).rsplit("/", 1)[1] for h in https(ev)} >= {"batch", "accounts", "fills"}
    (h,) = https(ev, "open")
    answer(p, h, {"orders": [], "has_next": False}, now=T0 + 61 * SEC)
    (q,) = https(take(p), "query")
    assert p.counts["drift_orders"] == 1
    answer(p, q, {"order": rest_order(7, status="CANCELLED")})
    (u,) = take(p, OrderUpdate)
    assert (u.order_id, u.status) == (7, S.CANCELLED)


def test_an_open_orders_answer_asked_before_an_edit_does_not_undo_it():
    """The edit was answered after the open orders were asked for: the snapshot's old price and
    size must not come back (until a reconcile with nothing newer says so)."""
    p = placed(live())
    p._reconcile(T0 + 10)
    (h,) = https(take(p), "open")
    p.submit(amend(9, 7, 999900, 150_000), T0 + 20)
    answer(p, https(take(p), "req")[0], {"success": True, "errors": []}, now=T0 + 30)
    (u,) = take(p, OrderUpdate)
    assert (u.price, u.size) == (999900, 150_000)
    answer(p, h, {"orders": [rest_order(7)], "has_next": False}, now=T0 + 40)  # 10000.00 x 0.001, as placed
    assert not take(p, OrderUpdate)
    assert p.counts["rest_order_older"] == 1 and p.counts["drift_corrected"] == 0
    p._reconcile(T0 + 50)  # nothing newer since this one went out: the venue's word stands
    answer(p, https(take(p), "open")[0], {"orders": [rest_order(7)], "has_next": False}, now=T0 + 60)
    (u,) = take(p, OrderUpdate)
    assert (u.price, u.size) == (1_000_000, 100_000) and p.counts["drift_corrected"] == 1


def test_fills_of_an_unknown_order_are_mapped():
    p = live(unknown_orders="cancel")
    p._fetch_fills(T0, T0)
    (h,) = https(take(p), "fills")
    answer(p, h, {"fills": [fill("t-9", vid="old-1"), fill("t-10", vid="their-2")], "cursor": ""})
    m1, m2 = https(take(p), "map")
    answer(p, m1, {"order": rest_order(55, vid="old-1", status="FILLED", filled="0.001")})
    ev = take(p)
    (f,) = [e for e in ev if type(e) is Fill]
    assert (f.order_id, f.trade_id) == (55, trade_key("t-9")) and p.counts["known_from_fills"] == 1
    answer(p, m2, {"order": rest_order("manual-2", vid="their-2", status="FILLED")})
    assert not take(p, Fill) and p.counts["foreign_fills"] == 1


# ---------------------------------------------------------------------------------------- kill switch
def test_kill_switch_cancels_known_listed_and_not_yet_acknowledged_orders():
    p = placed(live())
    p.submit(new(8), T0)
    (h8,) = https(take(p), "req")
    p.cancel_all(T0 + SEC)
    ev = take(p)
    (c,) = https(ev, "cancel_all")
    assert body(c) == {"order_ids": [VID]}
    (ko,) = https(ev, "killopen")
    answer(p, ko, {"orders": [rest_order(7), rest_order("manual-1", vid="theirs-1")], "has_next": False})
    (c2,) = https(take(p), "cancel_all")
    assert body(c2) == {"order_ids": ["theirs-1"]}  # ours was cancelled already
    answer(p, c, {"results": [{"success": True, "order_id": VID}]})
    assert take(p, OrderUpdate)[0].status == S.CANCELLED
    answer(p, h8, {"success": True, "success_response": {"order_id": "v-8"}})  # its id comes: cancelled at once
    (c3,) = https(take(p), "cancel_all")
    assert body(c3) == {"order_ids": ["v-8"]}
    # a batch_cancel takes at most 100 ids
    p = live()
    for i in range(250):
        o = p.orders[i] = _Order(i, client_id(i), BTC, 1, 100, 100, 0, T0)
        o.vid, o.status = f"v{i}", S.OPEN
    p.cancel_all(T0)
    assert [len(body(h)["order_ids"]) for h in https(take(p), "cancel_all")] == [100, 100, 50]


# ---------------------------------------------------------------------------------------- secrets, bad input
def test_secrets_never_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="mantra")
    p = placed(live())
    p.submit(new(8), T0)
    (h,) = https(take(p), "req")
    token = dict(h.headers)["Authorization"][7:]
    p.on_http(h.tag, 500, {}, f"Bearer {token} {EC_PEM}".encode(), T0)
    p.on_frame("user", "{not json " + token, T0)
    p.on_frame("user", json.dumps({"type": "error", "message": f"bad jwt {token}"}), T0)
    assert caplog.records
    assert token not in caplog.text and EC_PEM.splitlines()[1] not in caplog.text
    assert EC_PEM not in repr(p.creds) and EC_PEM not in str(CREDS)


def test_reject_reasons():
    assert reject_reason("UNKNOWN_CANCEL_ORDER") == Reject.UNKNOWN_ORDER
    assert reject_reason("ORDER_NOT_FOUND") == Reject.UNKNOWN_ORDER
    assert reject_reason("CANNOT_EDIT_TO_BELOW_FILLED_SIZE") == Reject.BAD_REQUEST
    assert reject_reason("PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY") == Reject.POST_ONLY
    assert reject_reason("INVALID_LIMIT_PRICE") == Reject.TICK


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                       lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=5),
                       max_leaves=20)
FIELDS = st.sampled_from(["order_id", "client_order_id", "status", "cumulative_quantity", "leaves_quantity",
                          "product_id", "limit_price", "order_side", "orders", "events", "sequence_num", "fills",
                          "trade_id", "size", "price", "order", "results", "accounts", "success"])


@settings(max_examples=300, deadline=None)
@given(doc=st.one_of(JSONISH, st.dictionaries(FIELDS, JSONISH, max_size=6)), kind=st.sampled_from(
    ["req", "find", "query", "open", "accounts", "fills", "ofills", "map", "cancel_all", "killopen"]),
    status=st.sampled_from([200, 400, 404]))
def test_bad_input_never_crashes(doc, kind, status):
    """Any frame or answer body: applied, or counted as malformed and logged; never an exception."""
    p = placed(live())
    p.submit(new(8), T0)
    (h,) = https(take(p), "req")
    p.on_frame("user", json.dumps(doc), T0)
    p.on_frame("user", json.dumps({"channel": "user", "sequence_num": 2, "events": [doc]}), T0)
    p.on_frame("user", json.dumps({"channel": "user", "sequence_num": 3, "events": [{"orders": [doc]}]}), T0)
    tag = {"req": h.tag, "find": "find:0:8", "query": "query:0:7", "ofills": f"ofills:{VID}", "map": "map:x"}.get(kind,
                                                                                                             kind)
    p.on_http(tag, status, {}, json.dumps(doc).encode(), T0)
    take(p)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), size_lots=st.integers(1, 40))
def test_any_duplicated_reordered_fill_pages_never_double_count(data, size_lots):
    """Trades partition (part of) the order; user updates and fill pages arrive any number of times,
    in any order: the fills emitted are exactly the distinct trades."""
    lot = 10_000
    parts = data.draw(st.lists(st.integers(1, size_lots), max_size=8))
    trades, total = [], 0
    for n in parts:
        if total + n > size_lots:
            break
        total += n
        trades.append(n)
    p = placed(live(), size=size_lots * lot)
    recs, cum = [], 0
    for i, n in enumerate(trades):
        cum += n
        recs.append((fill(f"t{i}", size=f"{n * lot / 1e8:.8f}"), cum))
    steps = data.draw(st.lists(st.tuples(st.sampled_from(range(len(recs))) if recs else st.just(-1),
                                         st.booleans()), max_size=30))
    fills, seq = [], 1
    for idx, as_update in steps + [(i, False) for i in range(len(recs))]:
        if idx < 0:
            continue
        rec, c = recs[idx]
        seq += 1
        if as_update:
            p.on_frame("user", frame(seq, user_order(7, cum=f"{c * lot / 1e8:.8f}",
                                                     leaves=f"{(size_lots - c) * lot / 1e8:.8f}")), T0)
        page = data.draw(st.permutations([r for r, _ in recs[:idx + 1]]))
        p.on_http(f"ofills:{VID}", 200, {}, json.dumps({"fills": page, "cursor": ""}).encode(), T0)
        fills += [e for e in take(p) if type(e) is Fill]
    assert len({f.trade_id for f in fills}) == len(fills) == len(trades)
    assert sum(f.size for f in fills) == total * lot <= size_lots * lot
