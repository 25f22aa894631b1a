"""Binance order entry, sans-IO: signing vectors, request shapes, answers, the user stream, UNKNOWN
outcomes, rate limits, halts and reconciliation (venues/binance/auth.py, venues/binance/orders.py)."""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qsl, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures import VECTORS
from mantra.instruments import Instrument
from mantra.spine.messages import (BalanceUpdate, Fill, OrderAction, OrderFlags, OrderRequest, OrderStatus,
                                   OrderUpdate)
from mantra.trading.accounts import Reject
from mantra.venues.account import Credentials, Halt, Http, Open, WsSend, client_id
from mantra.venues.binance import auth
from mantra.venues.binance.orders import (REST_URL, WS_URL, BinanceOrders, cid_order, reject_reason,
                                          ws_api_url)
from venuekit import https, sent, take, updates

BN = json.loads(VECTORS.read_text())["binance"]
VEC = {v["id"]: v for v in BN["signature_vectors"]}
MSG = BN["messages"]
KEY, SECRET = VEC["bn-rest-1"]["apiKey"], VEC["bn-rest-1"]["secretKey"]
CREDS = Credentials(KEY, SECRET)
BTC = Instrument(1, "binance", "BTCUSDT", "BTC", "USDT", price_scale=2, size_scale=8, tick=1, lot=1000,
                 price_decimals=2, size_decimals=8)
ETH = Instrument(2, "binance", "ETHBTC", "ETH", "BTC", price_scale=8, size_scale=8, tick=1, lot=1,
                 price_decimals=8, size_decimals=8)
T0 = 1_700_000_000_000_000_000
MS0 = T0 // 1_000_000
S = OrderStatus
SEC = 1_000_000_000


def new(oid, price=5_200_000, size=1_000_000, side=-1, flags=0, inst=BTC):
    return OrderRequest(oid, 0, price, size, inst.id, 1, 0, OrderAction.NEW, side, flags)


def amend(oid, ref, price, size, inst=BTC):
    return OrderRequest(oid, ref, price, size, inst.id, 1, 0, OrderAction.AMEND, -1, 0)


def cancel(oid, ref, inst=BTC):
    return OrderRequest(oid, ref, 0, 0, inst.id, 1, 0, OrderAction.CANCEL, -1, 0)


def query(h: Http) -> dict:
    return dict(parse_qsl(urlsplit(h.url).query))


def answer(p, m, result=None, status=200, error=None, now=T0, limits=None):
    doc = {"id": m["id"], "status": status}
    if status == 200:
        doc["result"] = result if result is not None else {}
    else:
        doc["error"] = error
    if limits:
        doc["rateLimits"] = limits
    p.on_frame("api", json.dumps(doc), now)


def rest(p, h: Http, doc, status=200, now=T0, headers=None):
    p.on_http(h.tag, status, headers or {}, json.dumps(doc).encode(), now)


def live(now=T0, **kw) -> BinanceOrders:
    """A protocol started, connected and subscribed to the user stream; events cleared."""
    p = BinanceOrders(CREDS, [BTC, ETH], **kw)
    p.start(now)
    take(p)
    p.on_open("api", now)
    (m,) = sent(take(p))
    answer(p, m, {"subscriptionId": 0}, now=now)
    take(p)
    return p


def placed(p, oid=7, now=T0, vid=1001, **kw):
    """A NEW sent and acknowledged; returns its request."""
    p.submit(new(oid, **kw), now)
    (m,) = sent(take(p))
    answer(p, m, {"symbol": m["params"]["symbol"], "orderId": vid, "clientOrderId": client_id(oid),
                  "price": m["params"]["price"], "origQty": m["params"]["quantity"], "executedQty": "0.00000000",
                  "status": "NEW"}, now=now)
    take(p)
    return m


def report(cid, x, X, vid=1001, q="0.01000000", p="52000.00", z="0.00000000", t=-1, l="0.00000000",
           L="0.00000000", n="0", N=None, m=False, C="", sym="BTCUSDT", T=MS0):
    return json.dumps({"subscriptionId": 0, "event": {
        "e": "executionReport", "E": T, "s": sym, "c": cid, "S": "SELL", "o": "LIMIT", "f": "GTC", "q": q, "p": p,
        "C": C, "x": x, "X": X, "r": "NONE", "i": vid, "l": l, "z": z, "L": L, "n": n, "N": N, "T": T, "t": t,
        "m": m}})


# ---------------------------------------------------------------------------------------- signing
def test_documented_signing_vectors_byte_for_byte():
    for v in BN["signature_vectors"]:
        assert auth.sign(v["secretKey"], v["payload"]) == v["expected_signature"], v["id"]
    # REST: the query string as the protocol writes it, signature appended
    v = VEC["bn-rest-1"]
    params = [("symbol", "LTCBTC"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"), ("quantity", "1"),
              ("price", "0.1")]
    headers, q, body = auth.rest_request(KEY, SECRET, params, 1499827319559, 5000)
    assert q == v["payload"] + "&signature=" + v["expected_signature"] and body == b""
    assert headers == (("X-MBX-APIKEY", KEY),)
    # non-ASCII percent-encoded before signing
    v = VEC["bn-rest-2-nonascii"]
    _, q, _ = auth.rest_request(KEY, SECRET, [("symbol", "１２３４５６")] + params[1:], 1499827319559, 5000)
    assert q == v["payload"] + "&signature=" + v["expected_signature"]
    # mixed query + body: no separator at the join
    v = VEC["bn-rest-3-mixed"]
    _, q, body = auth.rest_request(KEY, SECRET, params[:4], 1499827319559, 5000, params[4:])
    assert q == v["query_string"]
    assert body == (v["request_body"] + "&signature=" + v["expected_signature"]).encode()
    assert auth.rest_payload(v["query_string"], v["request_body"]) == v["payload"]
    # WS API: sorted, no percent-encoding; the documented request, whole
    v = VEC["bn-wsapi-1"]
    assert auth.ws_payload(v["params"]) == v["payload"]
    doc = MSG["wsapi_order_place_request"]["message"]
    p = {k: x for k, x in doc["params"].items() if k not in ("apiKey", "timestamp", "recvWindow", "signature")}
    assert auth.ws_request("order.place", KEY, SECRET, p, 1645423376532, doc["id"], 100) == doc
    v = VEC["bn-wsapi-2-nonascii"]
    p2 = {"symbol": "１２３４５６", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
          "quantity": "1.00000000", "price": "0.10000000"}
    assert auth.ws_params(KEY, SECRET, p2, 1645423376532, 5000)["signature"] == v["expected_signature"]


def test_verify_gives_the_venues_errors():
    doc = MSG["wsapi_order_place_request"]["message"]["params"]
    ts = doc["timestamp"]
    assert auth.verify_ws({KEY: SECRET}, doc, ts + 50) is None
    assert auth.verify_ws({KEY: SECRET}, doc, ts + 101) == auth.INVALID_TIMESTAMP  # recvWindow 100 ms
    assert auth.verify_ws({KEY: SECRET}, doc, ts - 1001) == auth.AHEAD_TIMESTAMP
    assert auth.verify_ws({KEY: SECRET}, dict(doc, price="52000.01"), ts) == auth.INVALID_SIGNATURE
    assert auth.verify_ws({"other": SECRET}, doc, ts) == auth.REJECTED_MBX_KEY
    assert auth.INVALID_SIGNATURE[0] == -1022 and auth.INVALID_TIMESTAMP[0] == -1021
    headers, q, body = auth.rest_request(KEY, SECRET, [("symbol", "BTCUSDT")], MS0, 5000)
    assert auth.verify_rest({KEY: SECRET}, dict(headers), q, body, MS0)[0] is None
    assert auth.verify_rest({KEY: SECRET}, dict(headers), q, body, MS0 + 5001)[0] == auth.INVALID_TIMESTAMP
    assert auth.verify_rest({KEY: SECRET}, dict(headers), q.replace("BTCUSDT", "ETHBTC"), body,
                            MS0)[0] == auth.INVALID_SIGNATURE
    assert auth.verify_rest({KEY: SECRET}, {}, q, body, MS0)[0] == auth.BAD_API_KEY_FMT


# ---------------------------------------------------------------------------------------- start
def test_start_opens_the_ws_api_and_reconciles_signed():
    p = BinanceOrders(CREDS, [BTC, ETH])
    p.start(T0)
    ev = take(p)
    assert Open("api", WS_URL) in ev
    paths = [(h.method, urlsplit(h.url).path) for h in https(ev)]
    assert paths == [("GET", "/api/v3/openOrders"), ("GET", "/api/v3/account"), ("GET", "/api/v3/myTrades"),
                     ("GET", "/api/v3/myTrades")]
    for h in https(ev):
        assert h.url.startswith(REST_URL + "/api/v3/")
        assert dict(h.headers)["X-MBX-APIKEY"] == KEY
        q = urlsplit(h.url).query
        assert auth.verify_rest({KEY: SECRET}, dict(h.headers), q, h.body, MS0)[0] is None
    trades = https(ev, "trades")
    assert {query(h)["symbol"] for h in trades} == {"BTCUSDT", "ETHBTC"}
    assert int(query(trades[0])["startTime"]) <= MS0 - 3600 * 1000


def test_ws_url_of_a_simulator_gets_the_ws_api_path():
    assert ws_api_url("ws://127.0.0.1:9000") == "ws://127.0.0.1:9000/ws-api/v3"
    assert ws_api_url("ws://127.0.0.1:9000/ws") == "ws://127.0.0.1:9000/ws-api/v3"
    assert ws_api_url(WS_URL) == WS_URL
    p = BinanceOrders(CREDS, [BTC], ws_url="ws://127.0.0.1:9000/", rest_url="http://127.0.0.1:9001")
    p.start(T0)
    assert Open("api", "ws://127.0.0.1:9000/ws-api/v3") in take(p)


def test_subscribes_to_the_user_stream_signed_on_open():
    p = BinanceOrders(CREDS, [BTC])
    p.start(T0)
    take(p)
    p.on_open("api", T0)
    (m,) = sent(take(p))
    assert m["method"] == "userDataStream.subscribe.signature"
    assert set(m["params"]) == {"apiKey", "recvWindow", "timestamp", "signature"}
    assert m["params"]["signature"] == auth.sign(SECRET, f"apiKey={KEY}&recvWindow=5000&timestamp={MS0}")
    answer(p, m, {"subscriptionId": 0})
    assert p.subscribed and p.subscription == 0


def test_refused_credentials_halt():
    p = BinanceOrders(CREDS, [BTC])
    p.start(T0)
    take(p)
    p.on_open("api", T0)
    (m,) = sent(take(p))
    answer(p, m, status=401, error={"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
    assert Halt in {type(e) for e in take(p)} and p.halted
    p.submit(new(7), T0)
    (u,) = updates(take(p))
    assert (u.status, u.reason) == (S.REJECTED, Reject.HALTED)


# ---------------------------------------------------------------------------------------- requests
def test_new_is_a_signed_order_place_with_exact_decimals_and_client_id():
    p = live()
    p.submit(new(7), T0)
    (m,) = sent(take(p))
    assert m["method"] == "order.place"
    prm = m["params"]
    assert (prm["symbol"], prm["side"], prm["type"], prm["timeInForce"]) == ("BTCUSDT", "SELL", "LIMIT", "GTC")
    assert (prm["price"], prm["quantity"]) == ("52000.00", "0.01000000")
    assert prm["newClientOrderId"] == client_id(7) and cid_order(prm["newClientOrderId"]) == 7
    assert auth.verify_ws({KEY: SECRET}, prm, MS0) is None
    p.submit(new(8, flags=OrderFlags.POST_ONLY, side=1), T0)
    p.submit(new(9, flags=OrderFlags.IOC), T0)
    m8, m9 = sent(take(p))
    assert m8["params"]["type"] == "LIMIT_MAKER" and "timeInForce" not in m8["params"]
    assert m8["params"]["side"] == "BUY"
    assert (m9["params"]["type"], m9["params"]["timeInForce"]) == ("LIMIT", "IOC")


def test_answers_ack_and_documented_error_rejects_and_sets_rate_counts():
    p = live()
    placed(p, 7)
    p.submit(new(7), T0)
    assert take(p) == [] and p.counts["duplicate_new"] == 1  # never sent twice
    p.submit(new(8), T0)
    (m,) = sent(take(p))
    doc = MSG["wsapi_error_response"]["message"]
    p.on_frame("api", json.dumps({**doc, "id": m["id"]}), T0)
    (u,) = updates(take(p))
    assert (u.order_id, u.status, u.reason) == (8, S.REJECTED, Reject.INSUFFICIENT_BALANCE)
    assert p.rate.count("ORDERS", 10 * SEC, T0) == 13
    assert p.rate.count("REQUEST_WEIGHT", 60 * SEC, T0) == 322


def test_first_answer_is_an_open_update():
    p = live()
    p.submit(new(7), T0)
    (m,) = sent(take(p))
    answer(p, m, {"symbol": "BTCUSDT", "orderId": 1001, "clientOrderId": client_id(7), "price": "52000.00",
                  "origQty": "0.01000000", "executedQty": "0.00000000", "status": "NEW"})
    (u,) = updates(take(p))
    assert (u.order_id, u.status, u.price, u.size, u.filled) == (7, S.OPEN, 5_200_000, 1_000_000, 0)
    assert u.venue_id.rstrip(b"\0") == b"1001"


def test_error_codes_map_to_rejects():
    assert reject_reason(-1013, "Filter failure: PRICE_FILTER") == Reject.TICK
    assert reject_reason(-1013, "Filter failure: LOT_SIZE") == Reject.LOT
    assert reject_reason(-1013, "Filter failure: NOTIONAL") == Reject.MIN_NOTIONAL
    assert reject_reason(-2010, "Order would immediately match and take.") == Reject.POST_ONLY
    assert reject_reason(-2010, "Account has insufficient balance for requested action.") == \
        Reject.INSUFFICIENT_BALANCE
    assert reject_reason(-2011, "Unknown order sent.") == Reject.UNKNOWN_ORDER
    assert reject_reason(-1121, "Invalid symbol.") == Reject.UNKNOWN_INSTRUMENT
    assert reject_reason(-1003, "Too many requests") == Reject.RATE_LIMITED


def test_amend_down_keeps_priority_and_answers_about_ref_id():
    p = live()
    placed(p, 7)
    p.submit(amend(20, 7, 5_200_000, 600_000), T0)
    (m,) = sent(take(p))
    assert m["method"] == "order.amend.keepPriority"
    assert m["params"]["origClientOrderId"] == client_id(7) and m["params"]["newQty"] == "0.00600000"
    assert m["params"]["newClientOrderId"] == client_id(7)
    answer(p, m, {"transactTime": MS0, "executionId": 3, "amendedOrder": {
        "symbol": "BTCUSDT", "orderId": 1001, "clientOrderId": client_id(7), "origClientOrderId": client_id(7),
        "price": "52000.00", "qty": "0.00600000", "executedQty": "0.00000000", "status": "NEW"}})
    us = updates(take(p))
    assert us[-1].order_id == 7 and us[-1].size == 600_000 and us[-1].status == S.OPEN


def test_amend_price_is_a_cancel_replace_with_a_new_client_id_mapped_back():
    """A new price is a new venue order: cancelReplace, only while nothing of the order filled
    (ONLY_NEW), so the new order carries exactly the amend's size."""
    p = live()
    placed(p, 7)
    p.submit(amend(20, 7, 5_210_000, 1_000_000), T0)
    (m,) = sent(take(p))
    prm = m["params"]
    assert m["method"] == "order.cancelReplace"
    assert (prm["cancelReplaceMode"], prm["cancelOrigClientOrderId"], prm["cancelRestrictions"]) == \
        ("STOP_ON_FAILURE", client_id(7), "ONLY_NEW")
    assert (prm["price"], prm["quantity"]) == ("52100.00", "0.01000000")
    new_cid = prm["newClientOrderId"]
    assert new_cid != client_id(7) and cid_order(new_cid) == 7
    answer(p, m, {"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS",
                  "cancelResponse": {"symbol": "BTCUSDT", "origClientOrderId": client_id(7), "orderId": 1001,
                                     "executedQty": "0.00000000", "status": "CANCELED"},
                  "newOrderResponse": {"symbol": "BTCUSDT", "orderId": 1002, "clientOrderId": new_cid,
                                       "price": "52100.00", "origQty": "0.01000000", "executedQty": "0.00000000",
                                       "status": "NEW"}})
    us = updates(take(p))
    assert us[-1].order_id == 7 and (us[-1].price, us[-1].size, us[-1].filled) == (5_210_000, 1_000_000, 0)
    # the old order's CANCELED report does not end ours; the new one's fills are ours, cumulative
    p.on_frame("api", report(f"x{new_cid}", "CANCELED", "CANCELED", C=client_id(7), z="0.00000000"), T0)
    assert updates(take(p)) == []
    p.on_frame("api", report(new_cid, "TRADE", "FILLED", vid=1002, q="0.01000000", p="52100.00", z="0.01000000",
                             l="0.01000000", L="52100.00", t=56), T0)
    ev = take(p)
    (f,) = [e for e in ev if type(e) is Fill]
    assert (f.order_id, f.size, f.price) == (7, 1_000_000, 5_210_000)
    assert (updates(ev)[-1].status, updates(ev)[-1].filled) == (S.FILLED, 1_000_000)


def test_a_new_price_after_fills_is_not_a_replace():
    """Once part of the order filled, a replacement's size would race further fills (the venue's
    filled size at the moment it cancels is not ours to know): the amend is refused, the order
    stands, and the overseer cancels and places anew.  If a fill slips in before the venue acts, the
    venue refuses the replace (ONLY_NEW) and the order stands too."""
    p = live()
    placed(p, 7)
    p.on_frame("api", report(client_id(7), "TRADE", "PARTIALLY_FILLED", z="0.00200000", l="0.00200000",
                             L="52000.00", t=55, n="0.01", N="USDT"), T0)
    take(p)
    p.submit(amend(20, 7, 5_210_000, 1_000_000), T0)
    ev = take(p)
    assert sent(ev) == []
    (u,) = updates(ev)
    assert (u.order_id, u.status, u.reason) == (7, S.CANCEL_REJECTED, Reject.UNSUPPORTED)
    q = live()
    placed(q, 8)
    q.submit(amend(21, 8, 5_210_000, 1_000_000), T0)
    (m,) = sent(take(q))
    answer(q, m, status=400, error={"code": -2022, "msg": "Order cancel-replace failed.", "data": {
        "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
        "cancelResponse": {"code": -2011, "msg": "Order was not canceled due to cancel restrictions."},
        "newOrderResponse": None}})
    (u,) = updates(take(q))
    assert (u.order_id, u.status, u.reason) == (8, S.CANCEL_REJECTED, Reject.UNSUPPORTED)


def test_cancel_replace_partial_success_ends_the_order():
    p = live()
    placed(p, 7)
    p.submit(amend(20, 7, 5_210_000, 1_000_000), T0)
    (m,) = sent(take(p))
    answer(p, m, status=409, error={"code": -2021, "msg": "Order cancel-replace partially failed.", "data": {
        "cancelResult": "SUCCESS", "newOrderResult": "FAILURE",
        "cancelResponse": {"symbol": "BTCUSDT", "origClientOrderId": client_id(7), "orderId": 1001,
                           "executedQty": "0.00000000", "status": "CANCELED"},
        "newOrderResponse": {"code": -2010, "msg": "Account has insufficient balance for requested action."}}})
    (u,) = updates(take(p))
    assert (u.order_id, u.status, u.reason) == (7, S.CANCELLED, Reject.INSUFFICIENT_BALANCE)
    assert p.counts["replace_partial"] == 1


def test_cancel_by_client_id_and_cancel_all_per_symbol():
    p = live()
    placed(p, 7)
    p.submit(cancel(21, 7), T0)
    (m,) = sent(take(p))
    assert m["method"] == "order.cancel" and m["params"]["origClientOrderId"] == client_id(7)
    answer(p, m, {"symbol": "BTCUSDT", "origClientOrderId": client_id(7), "orderId": 1001,
                  "clientOrderId": "someCancelId", "executedQty": "0.00000000", "status": "CANCELED"})
    (u,) = updates(take(p))
    assert (u.order_id, u.status) == (7, S.CANCELLED)
    placed(p, 8, vid=1003)
    p.cancel_all(T0)
    ms = sent(take(p))
    assert {(m["method"], m["params"]["symbol"]) for m in ms} == {("openOrders.cancelAll", "BTCUSDT"),
                                                                 ("openOrders.cancelAll", "ETHBTC")}
    m = [m for m in ms if m["params"]["symbol"] == "BTCUSDT"][0]
    answer(p, m, [{"symbol": "BTCUSDT", "origClientOrderId": client_id(8), "orderId": 1003,
                   "clientOrderId": "c1", "executedQty": "0.00000000", "status": "CANCELED"}])
    (u,) = updates(take(p))
    assert (u.order_id, u.status) == (8, S.CANCELLED)


def test_cancel_all_lost_with_the_connection_goes_over_rest():
    p = live()
    placed(p, 7)
    p.cancel_all(T0)
    assert len(sent(take(p))) == 2
    p.on_close("api", T0, "reset")
    hs = https(take(p), "cancel_all")
    assert sorted((h.method, query(h)["symbol"]) for h in hs) == [("DELETE", "BTCUSDT"), ("DELETE", "ETHBTC")]
    h = [h for h in hs if query(h)["symbol"] == "BTCUSDT"][0]
    rest(p, h, [{"symbol": "BTCUSDT", "origClientOrderId": client_id(7), "orderId": 1001, "clientOrderId": "c9",
                 "executedQty": "0.00000000", "status": "CANCELED"}])
    (u,) = updates(take(p))
    assert (u.order_id, u.status) == (7, S.CANCELLED)


def test_cancel_replace_whose_cancel_failed_asks_how_the_order_ended():
    p = live()
    placed(p, 7)
    p.submit(amend(20, 7, 5_210_000, 1_000_000), T0)
    (m,) = sent(take(p))
    answer(p, m, status=400, error={"code": -2022, "msg": "Order cancel-replace failed.", "data": {
        "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
        "cancelResponse": {"code": -2011, "msg": "Unknown order sent."}, "newOrderResponse": None}})
    (q,) = sent(take(p))
    assert q["method"] == "order.status" and q["params"]["origClientOrderId"] == client_id(7)
    answer(p, q, {"symbol": "BTCUSDT", "orderId": 1001, "clientOrderId": client_id(7), "price": "52000.00",
                  "origQty": "0.01000000", "executedQty": "0.01000000", "status": "FILLED"})
    us = updates(take(p))
    assert (us[0].order_id, us[0].status) == (7, S.FILLED) and not p.orders[7].pending


def test_cancel_of_a_filled_order_reports_how_it_ended():
    p = live()
    placed(p, 7)
    p.submit(cancel(21, 7), T0)
    (m,) = sent(take(p))
    answer(p, m, status=400, error={"code": -2011, "msg": "Unknown order sent."})
    (q,) = sent(take(p))
    assert q["method"] == "order.status" and q["params"]["origClientOrderId"] == client_id(7)
    answer(p, q, {"symbol": "BTCUSDT", "orderId": 1001, "clientOrderId": client_id(7), "price": "52000.00",
                  "origQty": "0.01000000", "executedQty": "0.01000000", "status": "FILLED"})
    ev = take(p)
    assert (updates(ev)[0].order_id, updates(ev)[0].status) == (7, S.FILLED)
    assert https(ev, "trades")  # the fills it does not have yet are fetched


def test_amend_of_an_order_unknown_to_the_handler_waits_for_the_venue():
    p = live()
    p.submit(amend(21, 7, 5_200_000, 500_000), T0)  # a predecessor's order: asked about before any answer
    ev = take(p)
    (q,) = sent(ev)
    assert not updates(ev) and (q["method"], q["params"]["origClientOrderId"]) == ("order.status", client_id(7))
    p.submit(cancel(22, 7), T0)  # asked again before the venue said: refused for now
    assert [(u.order_id, u.status, u.reason) for u in updates(take(p))] == [
        (7, S.CANCEL_REJECTED, Reject.VENUE_ERROR)]
    answer(p, q, {"symbol": "BTCUSDT", "orderId": 1001, "clientOrderId": client_id(7), "price": "52000.00",
                  "origQty": "0.01000000", "executedQty": "0.00000000", "status": "NEW"})
    ev = take(p)
    # the order is reported as the venue has it; the amend, made without knowing that, is not sent
    assert [(u.order_id, u.status, u.size, u.reason) for u in updates(ev)] == [
        (7, S.OPEN, 1_000_000, 0), (7, S.CANCEL_REJECTED, 1_000_000, Reject.VENUE_ERROR)]
    assert not sent(ev)
    p.submit(amend(23, 7, 5_200_000, 500_000), T0)  # asked again, now it is known: it goes out
    assert [m["method"] for m in sent(take(p))] == ["order.amend.keepPriority"]
    p.submit(cancel(24, 8), T0)  # an order the venue does not know either
    (q,) = sent(take(p))
    answer(p, q, status=400, error={"code": -2013, "msg": "Order does not exist."})
    assert [(u.order_id, u.status, u.reason) for u in updates(take(p))] == [
        (8, S.CANCEL_REJECTED, Reject.UNKNOWN_ORDER)]
    assert not [q for q in p.reqs.values() if q.order.order_id == 8]  # nothing left waiting on it


def test_pre_checks_refuse_before_sending():
    p = live()
    for r, why in ((new(1, price=0), Reject.BAD_REQUEST), (new(2, size=1_000_001), Reject.LOT),
                   (new(3, inst=Instrument(9, "binance", "XYZ")), Reject.UNKNOWN_INSTRUMENT)):
        p.submit(r, T0)
        ev = take(p)
        assert not sent(ev)
        assert updates(ev)[0].reason == why
    # An order this handler does not know (a predecessor's?) is not refused: the venue is asked first.
    p.submit(cancel(4, 99), T0)
    assert not updates(take(p)) and p.counts["asked_unknown_order"] == 1


def test_rest_fallback_while_the_socket_is_down():
    p = BinanceOrders(CREDS, [BTC])
    p.start(T0)
    take(p)
    p.submit(new(7), T0)
    (h,) = https(take(p))
    assert (h.method, urlsplit(h.url).path) == ("POST", "/api/v3/order")
    assert query(h)["newClientOrderId"] == client_id(7)
    rest(p, h, {"symbol": "BTCUSDT", "orderId": 1001, "clientOrderId": client_id(7), "price": "52000.00",
                "origQty": "0.01000000", "executedQty": "0", "status": "NEW"},
         headers={"x-mbx-used-weight-1m": "77", "x-mbx-order-count-10s": "3"})
    (u,) = updates(take(p))
    assert u.status == S.OPEN
    assert p.rate.count("REQUEST_WEIGHT", 60 * SEC, T0) >= 77 and p.rate.count("ORDERS", 10 * SEC, T0) == 3


# ---------------------------------------------------------------------------------------- UNKNOWN outcomes
def test_timeout_queries_by_client_id_and_the_late_answer_applies_once():
    p = live()
    p.submit(new(7), T0)
    (m,) = sent(take(p))
    p.on_timer(T0 + 6 * SEC)
    (q,) = sent(take(p))
    assert q["method"] == "order.status" and q["params"]["origClientOrderId"] == client_id(7)
    assert p.counts["unknown_outcomes"] == 1
    p.submit(new(7), T0 + 6 * SEC)
    assert not sent(take(p))  # never placed twice
    d = {"symbol": "BTCUSDT", "orderId": 1001, "clientOrderId": client_id(7), "price": "52000.00",
         "origQty": "0.01000000", "executedQty": "0.00000000", "status": "NEW"}
    answer(p, q, d, now=T0 + 6 * SEC)
    (u,) = updates(take(p))
    assert (u.order_id, u.status) == (7, S.OPEN)
    answer(p, m, d, now=T0 + 7 * SEC)  # the late answer: matched, nothing new
    assert take(p) == [] and p.counts["late_answers"] == 1


def test_not_found_after_the_recv_window_is_rejected_and_a_late_accept_cancelled():
    p = live()
    p.submit(new(7), T0)
    (m,) = sent(take(p))
    p.on_timer(T0 + 3 * SEC)
    p.on_close("api", T0 + 3 * SEC, "reset")  # the question goes over REST now
    ev = take(p)
    (h,) = https(ev, "query")
    assert query(h)["origClientOrderId"] == client_id(7)
    rest(p, h, {"code": -2013, "msg": "Order does not exist."}, status=400, now=T0 + 3 * SEC)
    assert updates(take(p)) == []  # still within its recvWindow: asked again once it passed
    p.on_timer(T0 + 6 * SEC)
    (h,) = https(take(p), "query")
    rest(p, h, {"code": -2013, "msg": "Order does not exist."}, status=400, now=T0 + 6 * SEC)
    (u,) = updates(take(p))
    assert (u.order_id, u.status, u.reason) == (7, S.REJECTED, Reject.VENUE_ERROR)
    p.on_open("api", T0 + 7 * SEC)
    take(p)
    answer(p, m, {"symbol": "BTCUSDT", "orderId": 1001, "clientOrderId": client_id(7), "status": "NEW"},
           now=T0 + 7 * SEC)
    (c,) = sent(take(p))
    assert c["method"] == "order.cancel" and c["params"]["origClientOrderId"] == client_id(7)
    assert p.counts["late_accept_cancelled"] == 1


def test_dropped_connection_and_5xx_leave_the_outcome_unknown():
    p = live()
    p.submit(new(7), T0)
    take(p)
    p.on_close("api", T0, "reset")
    (h,) = https(take(p), "query")
    assert query(h)["origClientOrderId"] == client_id(7)
    p.on_open("api", T0)
    take(p)
    p.submit(new(8), T0)
    (m,) = sent(take(p))
    answer(p, m, status=503, error={"code": -1000,
                                    "msg": "An unknown error occurred while processing the request."})
    (q,) = sent(take(p))
    assert q["method"] == "order.status" and q["params"]["origClientOrderId"] == client_id(8)
    assert p.counts["unknown_outcomes"] == 2


# ---------------------------------------------------------------------------------------- user stream
def test_documented_execution_report_of_a_foreign_order_is_counted_not_emitted():
    p = live(unknown_orders="adopt")
    p.on_frame("api", json.dumps(MSG["uds_execution_report"]["message"]), T0)
    assert take(p) == [] and p.counts["foreign_events"] == 1
    q = live()  # cancel: the foreign open order is cancelled by its orderId
    q.on_frame("api", json.dumps(MSG["uds_execution_report"]["message"]), T0)
    (c,) = sent(take(q))
    assert c["method"] == "order.cancel" and c["params"]["orderId"] == 4293153
    assert not [e for e in q.events if type(e) in (OrderUpdate, Fill)]


def test_execution_reports_make_updates_and_fills_deduplicated():
    p = live()
    placed(p, 7)
    trade = report(client_id(7), "TRADE", "PARTIALLY_FILLED", z="0.00400000", l="0.00400000", L="52000.00", t=55,
                   n="0.2081", N="USDT", m=True, T=MS0 + 5)
    p.on_frame("api", trade, T0 + 1)
    ev = take(p)
    (f,) = [e for e in ev if type(e) is Fill]
    assert (f.order_id, f.trade_id, f.price, f.size, f.fee, f.liquidity) == (7, 55, 5_200_000, 400_000, 21, 1)
    assert f.fee_asset.rstrip(b"\0") == b"USDT" and f.exch_ts == (MS0 + 5) * 1_000_000
    (u,) = updates(ev)
    assert (u.status, u.filled) == (S.PARTIALLY_FILLED, 400_000)
    p.on_frame("api", trade, T0 + 2)  # duplicated
    assert take(p) == [] and p.counts["duplicate_fills"] == 1
    p.on_frame("api", report(client_id(7), "NEW", "NEW"), T0 + 3)  # stale, out of order
    assert take(p) == []
    p.on_frame("api", report(client_id(7), "TRADE", "FILLED", z="0.01000000", l="0.00600000", L="52000.00", t=56,
                             n="0.00000100", N="BTC"), T0 + 4)
    ev = take(p)
    (f,) = [e for e in ev if type(e) is Fill]
    assert f.fee == 1 and f.fee_asset.rstrip(b"\0") == b"BTC" and f.liquidity == 2  # rounded up to the price scale
    assert updates(ev)[-1].status == S.FILLED and updates(ev)[-1].filled == 1_000_000


def test_documented_account_position_is_a_balance_update():
    p = live()
    p.on_frame("api", json.dumps(MSG["uds_account_position"]["message"]), T0)
    (b,) = take(p)
    assert type(b) is BalanceUpdate
    assert (b.total, b.available, b.scale, b.asset.rstrip(b"\0")) == (10000 * 10**8, 10000 * 10**8, 8, b"ETH")
    assert b.exch_ts == 1564034571073 * 1_000_000


def test_stream_terminated_and_disconnect_resubscribe_and_fetch_the_gap():
    p = live()
    placed(p, 7)
    p.on_frame("api", report(client_id(7), "TRADE", "PARTIALLY_FILLED", z="0.00400000", l="0.00400000",
                             L="52000.00", t=55, T=MS0 + 10), T0)
    take(p)
    p.on_frame("api", json.dumps({"subscriptionId": 0, "event": {"e": "eventStreamTerminated", "E": MS0}}), T0)
    (m,) = sent(take(p))
    assert m["method"] == "userDataStream.subscribe.signature"
    p.on_close("api", T0 + SEC, "reset")
    p.on_open("api", T0 + 2 * SEC)
    (m,) = sent(take(p))
    answer(p, m, {"subscriptionId": 1}, now=T0 + 2 * SEC)
    ev = take(p)
    trades = https(ev, "trades:BTCUSDT")
    assert trades and int(query(trades[0])["startTime"]) <= MS0 + 10
    # the gap's fills: one already seen, one new
    rest(p, trades[0], [
        {"symbol": "BTCUSDT", "id": 55, "orderId": 1001, "price": "52000.00", "qty": "0.00400000",
         "commission": "0", "commissionAsset": "USDT", "time": MS0 + 10, "isBuyer": False, "isMaker": True},
        {"symbol": "BTCUSDT", "id": 57, "orderId": 1001, "price": "52000.00", "qty": "0.00100000",
         "commission": "0.052", "commissionAsset": "USDT", "time": MS0 + 900, "isBuyer": False, "isMaker": True}],
        now=T0 + 2 * SEC)
    fills = [e for e in take(p) if type(e) is Fill]
    assert [(f.trade_id, f.size, f.fee) for f in fills] == [(57, 100_000, 6)]
    assert p.counts["duplicate_fills"] == 1


# ---------------------------------------------------------------------------------------- rate limits
def test_rate_limits_refuse_before_sending():
    p = live(orders_10s=2)
    placed(p, 1)
    placed(p, 2, vid=1002)
    p.submit(new(3), T0)
    ev = take(p)
    assert not sent(ev) and updates(ev)[0].reason == Reject.RATE_LIMITED
    p.submit(new(3), T0 + 10 * SEC)  # the next 10 s window
    assert sent(take(p))[0]["method"] == "order.place"
    q = live()
    q.on_frame("api", json.dumps({"id": 999, "status": 200, "result": {}, "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000,
         "count": 6000}]}), T0)
    q.submit(new(5), T0)
    assert updates(take(q))[0].reason == Reject.RATE_LIMITED


def test_429_backs_off_until_retry_after_and_418_halts():
    p = live()
    p.submit(new(7), T0)
    (m,) = sent(take(p))
    until = MS0 + 30_000
    answer(p, m, status=429, error={"code": -1003, "msg": "Too much request weight used; current limit is 6000 "
                                    "request weight per 1 MINUTE.", "data": {"retryAfter": until}})
    (u,) = updates(take(p))
    assert (u.order_id, u.status, u.reason) == (7, S.REJECTED, Reject.RATE_LIMITED)
    p.submit(new(8), T0 + 29 * SEC)
    assert updates(take(p))[0].reason == Reject.RATE_LIMITED
    p.submit(new(8), T0 + 31 * SEC)
    assert sent(take(p))[0]["method"] == "order.place"
    # REST 429 with Retry-After (s)
    p.on_http("account", 429, {"retry-after": "12"}, b"", T0 + 40 * SEC)
    assert p.backoff_until == T0 + 52 * SEC
    p.on_frame("api", json.dumps({"id": 12345, "status": 418, "error": {
        "code": -1003, "msg": "Way too much request weight used; IP banned until 1659607405000."}}), T0 + 41 * SEC)
    assert any(type(e) is Halt for e in take(p)) and "418" in p.halted
    p2 = live()
    p2.on_http("open", 418, {}, b"", T0)
    assert p2.halted


# ---------------------------------------------------------------------------------------- reconciliation
def _open_order(cid, vid=2001, status="NEW", executed="0.00000000"):
    return {"symbol": "BTCUSDT", "orderId": vid, "clientOrderId": cid, "price": "52000.00", "origQty": "0.01000000",
            "executedQty": executed, "status": status, "timeInForce": "GTC", "type": "LIMIT", "side": "SELL"}


def test_reconcile_at_start_cancels_unknown_orders():
    p = BinanceOrders(CREDS, [BTC])
    p.start(T0)
    (h,) = https(take(p), "open")
    p.on_open("api", T0)
    take(p)
    rest(p, h, [_open_order(client_id(42)), _open_order("foreignXYZ", vid=2002)])
    ms = sent(take(p))
    assert {(m["params"].get("origClientOrderId"), m["params"].get("orderId")) for m in ms} == \
        {(client_id(42), None), (None, 2002)}
    assert p.counts["unknown_cancelled"] == 1 and p.counts["foreign_open"] == 1


def test_reconcile_at_start_adopts_ours_and_leaves_foreign():
    p = BinanceOrders(CREDS, [BTC], unknown_orders="adopt")
    p.start(T0)
    ev = take(p)
    rest(p, https(ev, "open")[0], [_open_order(client_id(42), executed="0.00200000", status="PARTIALLY_FILLED"),
                                   _open_order("foreignXYZ", vid=2002)])
    (u,) = updates(take(p))
    assert (u.order_id, u.status, u.filled, u.size) == (42, S.PARTIALLY_FILLED, 200_000, 1_000_000)
    assert p.counts["adopted"] == 1 and p.counts["foreign_open"] == 1
    rest(p, https(ev, "account")[0], {"updateTime": MS0, "balances": [
        {"asset": "BTC", "free": "1.5", "locked": "0.008"}, {"asset": "DOGE", "free": "5", "locked": "0"}]})
    (b,) = take(p)
    assert (b.total, b.available, b.asset.rstrip(b"\0")) == (150_800_000, 150_000_000, b"BTC")
    p.on_open("api", T0)
    take(p)
    p.submit(cancel(50, 42), T0)
    (m,) = sent(take(p))
    assert m["params"]["origClientOrderId"] == client_id(42)


def test_fills_of_an_order_unknown_at_start_are_mapped_by_asking_the_venue():
    p = BinanceOrders(CREDS, [BTC])
    p.start(T0)
    ev = take(p)
    rest(p, https(ev, "trades:BTCUSDT")[0], [
        {"symbol": "BTCUSDT", "id": 90, "orderId": 3001, "price": "52000.00", "qty": "0.01000000",
         "commission": "0", "commissionAsset": "USDT", "time": MS0 - 5000, "isMaker": False},
        {"symbol": "BTCUSDT", "id": 91, "orderId": 3002, "price": "52000.00", "qty": "0.01000000",
         "commission": "0", "commissionAsset": "USDT", "time": MS0 - 4000, "isMaker": False}])
    maps = https(take(p), "map")
    assert sorted(query(h)["orderId"] for h in maps) == ["3001", "3002"]
    rest(p, maps[0], {**_open_order(client_id(5), vid=3001), "status": "FILLED", "executedQty": "0.01000000"})
    rest(p, maps[1], {**_open_order("foreignXYZ", vid=3002), "status": "FILLED"})
    ev = take(p)
    fills = [e for e in ev if type(e) is Fill]
    assert [(f.order_id, f.trade_id) for f in fills] == [(5, 90)]
    assert p.counts["foreign_fills"] == 1


def test_periodic_reconcile_finds_drift():
    p = live(reconcile_s=60)
    placed(p, 7)
    p.on_timer(T0 + 61 * SEC)
    ev = take(p)
    assert {urlsplit(h.url).path for h in https(ev)} >= {"/api/v3/openOrders", "/api/v3/account",
                                                         "/api/v3/myTrades"}
    rest(p, https(ev, "open")[0], [], now=T0 + 61 * SEC)
    (q,) = sent(take(p))
    assert q["method"] == "order.status" and p.counts["drift_orders"] == 1
    answer(p, q, _open_order(client_id(7), vid=1001, status="CANCELED"), now=T0 + 61 * SEC)
    (u,) = updates(take(p))
    assert (u.order_id, u.status) == (7, S.CANCELLED)
    p.balances["BTC"] = 5
    rest(p, https(ev, "account")[0], {"balances": [{"asset": "BTC", "free": "1", "locked": "0"}]})
    assert p.counts["drift_balances"] == 1


def test_a_rest_balance_asked_before_a_stream_balance_is_not_applied():
    """outboundAccountPosition came after the account request went out: its answer may predate it."""
    p = live()
    take(p)
    p._reconcile(T0 + 10)
    (h,) = https(take(p), "account")
    p.on_frame("api", json.dumps(MSG["uds_account_position"]["message"]), T0 + 20)  # ETH 10000
    rest(p, h, {"balances": [{"asset": "ETH", "free": "9000", "locked": "0"},
                             {"asset": "BTC", "free": "1", "locked": "0"}]}, now=T0 + 30)
    bals = [(b.asset.rstrip(b"\0"), b.total) for b in take(p) if type(b) is BalanceUpdate]
    assert bals == [(b"ETH", 10000 * 10**8), (b"BTC", 10**8)]
    assert p.counts["rest_balance_older"] == 1 and p.counts["drift_balances"] == 0
    p._reconcile(T0 + 40)  # nothing from the stream since: the check says which figure is true
    rest(p, https(take(p), "account")[0], {"balances": [{"asset": "ETH", "free": "9000", "locked": "0"}]},
         now=T0 + 50)
    assert [b.total for b in take(p) if type(b) is BalanceUpdate] == [9000 * 10**8]
    assert p.counts["drift_balances"] == 1


def test_an_open_orders_answer_asked_before_an_amend_does_not_undo_it():
    """The amend down was answered after openOrders went out: the snapshot's larger size must not
    come back (until a reconcile with nothing newer says so)."""
    p = live()
    placed(p, 7)
    p._reconcile(T0 + 10)
    (h,) = https(take(p), "open")
    p.submit(amend(20, 7, 5_200_000, 600_000), T0 + 20)
    (m,) = sent(take(p))
    answer(p, m, {"transactTime": MS0, "executionId": 3, "amendedOrder": {
        "symbol": "BTCUSDT", "orderId": 1001, "clientOrderId": client_id(7), "origClientOrderId": client_id(7),
        "price": "52000.00", "qty": "0.00600000", "executedQty": "0.00000000", "status": "NEW"}}, now=T0 + 30)
    assert updates(take(p))[-1].size == 600_000
    old = [_open_order(client_id(7), vid=1001)]  # 0.01 as placed
    rest(p, h, old, now=T0 + 40)
    assert not updates(take(p))
    assert p.counts["rest_order_older"] == 1 and p.counts["drift_corrected"] == 0
    p._reconcile(T0 + 50)  # nothing newer since this one went out: the venue's word stands
    rest(p, https(take(p), "open")[0], old, now=T0 + 60)
    (u,) = updates(take(p))
    assert u.size == 1_000_000 and p.counts["drift_corrected"] == 1


def test_keepalive_ping_when_idle():
    p = live(keepalive_s=30)
    p.on_timer(T0 + 31 * SEC)
    (m,) = sent(take(p))
    assert m["method"] == "ping" and "params" not in m


def test_secrets_never_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="mantra")
    p = live()
    p.on_frame("api", "{not json " + SECRET, T0)
    p.on_http("account", 500, {}, f"secret={SECRET}".encode(), T0)
    p.submit(new(7), T0)
    (m,) = sent(take(p))
    answer(p, m, status=400, error={"code": -1100, "msg": f"Illegal characters found in {SECRET}"})
    assert caplog.records
    assert SECRET not in caplog.text
    assert SECRET not in repr(p.creds)


# ---------------------------------------------------------------------------------------- property
@settings(max_examples=150, deadline=None)
@given(data=st.data(), size_lots=st.integers(1, 40))
def test_any_duplicated_reordered_stream_never_double_counts(data, size_lots):
    """Trades partition (part of) the order; the stream delivers each one or more times, in any order,
    with status reports mixed in: the fills emitted are exactly the distinct trades, never more than
    the order's size."""
    lot = 1000
    parts = data.draw(st.lists(st.integers(1, size_lots), min_size=0, max_size=8))
    trades, total = [], 0
    for n in parts:
        if total + n > size_lots:
            break
        total += n
        trades.append(n)
    p = live()
    placed(p, 7, size=size_lots * lot)
    cid = client_id(7)
    events, cum = [], 0
    for i, n in enumerate(trades):
        cum += n
        st_ = "FILLED" if cum == size_lots else "PARTIALLY_FILLED"
        events.append(report(cid, "TRADE", st_, q=f"{size_lots * lot / 1e8:.8f}", z=f"{cum * lot / 1e8:.8f}",
                             l=f"{n * lot / 1e8:.8f}", L="52000.00", t=100 + i))
    events.append(report(cid, "NEW", "NEW", q=f"{size_lots * lot / 1e8:.8f}"))
    stream = data.draw(st.lists(st.sampled_from(range(len(events))), min_size=0, max_size=30))
    stream = data.draw(st.permutations(list(range(len(events))) + stream))
    fills, ups = [], []
    for idx in stream:
        p.on_frame("api", events[idx], T0)
        ev = take(p)
        fills += [e for e in ev if type(e) is Fill]
        ups += updates(ev)
    assert len({f.trade_id for f in fills}) == len(fills) == len(trades)
    assert sum(f.size for f in fills) == total * lot <= size_lots * lot
    assert p.orders[7].filled == total * lot
    assert all(u.filled <= size_lots * lot for u in ups)
    assert [u.filled for u in ups] == sorted(u.filled for u in ups)  # cumulative never goes back


@given(side=st.sampled_from((1, -1)), flags=st.sampled_from((0, int(OrderFlags.POST_ONLY), int(OrderFlags.IOC))),
       ticks=st.integers(1, 10**7), lots=st.integers(1, 10**6), oid=st.integers(1, 2**63))
@settings(max_examples=60)
def test_the_direct_order_place_is_the_generic_signed_request(side, flags, ticks, lots, oid):
    """``_place`` writes order.place out by hand (the hot path): it must be exactly the request the
    generic WS-API signing builds, and verify as the venue checks it."""
    p = live()
    p.submit(new(oid, price=ticks * BTC.tick, size=lots * BTC.lot, side=side, flags=flags), T0)
    (m,) = sent(take(p, WsSend))
    params = {k: v for k, v in m["params"].items() if k != "signature"}
    want = auth.ws_params(KEY, SECRET, {k: v for k, v in params.items() if k not in ("apiKey", "recvWindow", "timestamp")},
                          T0 // 1_000_000, p.recv_window)
    assert m["params"] == want and m["method"] == "order.place"
    assert auth.verify_ws({KEY: SECRET}, m["params"], T0 // 1_000_000) is None
