"""Kraken order entry, sans-IO: signing vectors, request shapes, answers, the user stream, UNKNOWN
outcomes, rate limits, halts and reconciliation (venues/kraken/auth.py, venues/kraken/orders.py)."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures import VECTORS
from mantra.instruments import Instrument
from mantra.spine.messages import (BalanceUpdate, Fill, OrderAction, OrderFlags, OrderRequest, OrderStatus,
                                   OrderUpdate, text)
from mantra.trading.accounts import Orders, Reject
from mantra.venues.account import Credentials, Halt, Http, Open, WsSend, client_id
from mantra.venues.kraken import auth
from mantra.venues.kraken.orders import KrakenOrders, RateCounter, trade_key, venue_asset
from venuekit import https, sent, take

KR = json.loads(VECTORS.read_text())["kraken"]
SIG = KR["signature_vectors"][0]
MSG = KR["messages"]
SECRET = SIG["private_key"]
CREDS = Credentials("kraken-test-key", SECRET)
BTC = Instrument(1, "kraken", "BTC/USD", "BTC", "USD", price_scale=1, size_scale=8, tick=1, lot=1,
                 price_decimals=1, size_decimals=8)
ETH = Instrument(2, "kraken", "ETH/USD", "ETH", "USD", price_scale=2, size_scale=8, tick=5, lot=1,
                 price_decimals=2, size_decimals=8)
T0 = 1_700_000_000_000_000_000
S = OrderStatus
TOKEN = MSG["rest_ws_token"]["message"]["result"]["token"]


def body(doc) -> bytes:
    return json.dumps(doc).encode()


def new(oid, price=265004, size=120_000_000, side=1, flags=0, inst=BTC):
    return OrderRequest(oid, 0, price, size, inst.id, 1, 0, OrderAction.NEW, side, flags)


def amend(oid, ref, price, size, inst=BTC):
    return OrderRequest(oid, ref, price, size, inst.id, 1, 0, OrderAction.AMEND, 1, 0)


def cancel(oid, ref, inst=BTC):
    return OrderRequest(oid, ref, 0, 0, inst.id, 1, 0, OrderAction.CANCEL, 1, 0)


def form(h: Http) -> dict:
    from urllib.parse import parse_qsl
    return dict(parse_qsl(h.body.decode()))


def answer_rest(p, h: Http, result=None, error=(), status=200, now=T0, headers=None):
    p.on_http(h.tag, status, headers or {}, body({"error": list(error), "result": result or {}}), now)


def live(now=T0, **kw) -> KrakenOrders:
    """A protocol started, with its token, connected and subscribed; events cleared."""
    p = KrakenOrders(CREDS, [BTC, ETH], **kw)
    p.start(now)
    ev = take(p)
    answer_rest(p, https(ev, "token")[0], MSG["rest_ws_token"]["message"]["result"], now=now)
    p.on_open("private", now)
    for m in sent(take(p)):
        if m["method"] == "subscribe":
            p.on_frame("private", json.dumps({"method": "subscribe", "result": {"channel": m["params"]["channel"]},
                                              "success": True, "req_id": m["req_id"]}), now)
    take(p)
    return p


def exec_msg(seq, *items, type_="update"):
    return json.dumps({"channel": "executions", "type": type_, "data": list(items), "sequence": seq})


def trade_item(txid, cid, exec_id, qty, price, cum, status="partially_filled", ts="2023-09-22T10:33:06.000000Z"):
    return {"order_id": txid, "cl_ord_id": cid, "symbol": "BTC/USD", "exec_type": "trade", "exec_id": exec_id,
            "last_qty": qty, "last_price": price, "cum_qty": cum, "order_status": status, "side": "buy",
            "liquidity_ind": "m", "fees": [{"asset": "USD", "qty": 0.0123}], "timestamp": ts}


# ---------------------------------------------------------------------------------------- signing
def test_documented_signing_vector_byte_for_byte():
    assert auth.api_sign(SECRET, SIG["uri_path"], SIG["nonce"], SIG["encoded_payload"]) == SIG["expected_api_sign"]
    params = [("ordertype", "limit"), ("pair", "XBTUSD"), ("price", "37500"), ("type", "buy"), ("volume", "1.25")]
    headers, wire = auth.rest_request("key", SECRET, SIG["uri_path"], int(SIG["nonce"]), params)
    assert wire == SIG["encoded_payload"].encode()
    assert dict(headers)["API-Sign"] == SIG["expected_api_sign"]
    assert dict(headers)["API-Key"] == "key"


def test_verify_gives_the_venues_errors():
    headers, wire = auth.rest_request("key", SECRET, SIG["uri_path"], int(SIG["nonce"]), [("pair", "XBTUSD")])
    assert auth.verify({"key": SECRET}, SIG["uri_path"], dict(headers), wire, None) == (None, int(SIG["nonce"]))
    # the same nonce again, or an older one: stale
    assert auth.verify({"key": SECRET}, SIG["uri_path"], dict(headers), wire, int(SIG["nonce"]))[0] == auth.INVALID_NONCE
    bad = dict(headers, **{"API-Sign": auth.api_sign(SECRET, SIG["uri_path"], SIG["nonce"], b"nonce=1")})
    assert auth.verify({"key": SECRET}, SIG["uri_path"], bad, wire, None)[0] == auth.INVALID_SIGNATURE
    assert auth.verify({"other": SECRET}, SIG["uri_path"], dict(headers), wire, None)[0] == auth.INVALID_KEY
    # another path signed with the same body does not pass
    assert auth.verify({"key": SECRET}, "/0/private/CancelAll", dict(headers), wire, None)[0] == auth.INVALID_SIGNATURE


def test_nonce_always_increases():
    assert auth.next_nonce(0, T0) == T0 // 1_000_000
    assert auth.next_nonce(T0 // 1_000_000, T0) == T0 // 1_000_000 + 1  # same ms
    assert auth.next_nonce(T0 // 1_000_000 + 5, T0 - 10**9) == T0 // 1_000_000 + 6  # clock stepped back
    p = KrakenOrders(CREDS, [BTC])
    p.start(T0)
    nonces = [int(form(h)["nonce"]) for h in https(take(p))]
    assert len(nonces) == 4 and nonces == sorted(set(nonces))


# ---------------------------------------------------------------------------------------- start
def test_start_opens_the_auth_socket_and_fetches_token_and_state_signed():
    p = KrakenOrders(CREDS, [BTC])
    p.start(T0)
    ev = take(p)
    assert Open("private", "wss://ws-auth.kraken.com/v2") in ev
    paths = [h.url for h in https(ev)]
    assert paths == ["https://api.kraken.com/0/private/" + m
                     for m in ("GetWebSocketsToken", "OpenOrders", "Balance", "TradesHistory")]
    last = None
    for h in https(ev):
        path = h.url[len("https://api.kraken.com"):]
        err, last = auth.verify({CREDS.key: SECRET}, path, dict(h.headers), h.body, last)
        assert err is None and h.method == "POST"
    # nothing is sent on the socket before it is open and the token known
    assert not sent(ev)


def test_subscribes_with_token_and_arms_dead_man_switch():
    p = KrakenOrders(CREDS, [BTC], cancel_after_s=60)
    p.start(T0)
    tok = https(take(p), "token")[0]
    p.on_open("private", T0)
    assert not sent(take(p))  # waits for the token
    answer_rest(p, tok, MSG["rest_ws_token"]["message"]["result"])
    msgs = sent(take(p))
    subs = {m["params"]["channel"]: m["params"] for m in msgs if m["method"] == "subscribe"}
    assert subs["executions"] == {"channel": "executions", "snap_orders": True, "snap_trades": True,
                                  "ratecounter": True, "token": TOKEN}
    assert subs["balances"]["token"] == TOKEN
    ca = [m for m in msgs if m["method"] == "cancel_after"]
    assert ca and ca[0]["params"] == {"timeout": 60, "token": TOKEN}
    # kept armed: again after cancel_after_every_s
    p.on_timer(T0 + 19 * 10**9)
    assert not [m for m in sent(take(p)) if m["method"] == "cancel_after"]
    p.on_timer(T0 + 21 * 10**9)
    assert [m for m in sent(take(p)) if m["method"] == "cancel_after"]


def test_refused_credentials_on_the_token_halt():
    for error in ("EAPI:Invalid key", "EAPI:Invalid signature", "EGeneral:Temporary lockout"):
        p = KrakenOrders(CREDS, [BTC])
        p.start(T0)
        answer_rest(p, https(take(p), "token")[0], error=[error])
        assert Halt in map(type, take(p)) and p.halted
        p.submit(new(1), T0)
        (u,) = take(p, OrderUpdate)
        assert u.status == S.REJECTED and u.reason == Reject.HALTED


def test_invalid_nonce_on_the_token_retries_with_a_fresh_nonce():
    p = KrakenOrders(CREDS, [BTC])
    p.start(T0)
    h = https(take(p), "token")[0]
    answer_rest(p, h, error=["EAPI:Invalid nonce"])
    assert not p.halted and p.counts["invalid_nonce"] == 1
    p.on_timer(T0 + 1)
    (h2,) = https(take(p), "token")
    assert int(form(h2)["nonce"]) > int(form(h)["nonce"])


# ---------------------------------------------------------------------------------------- requests
def test_new_is_a_ws_add_order_with_exact_decimals_and_client_id():
    p = live()
    p.submit(new(7, price=265004, size=120_000_000, flags=OrderFlags.POST_ONLY), T0)
    (m,) = sent(take(p))
    doc = MSG["v2_add_order_request"]["message"]["params"]
    assert m["method"] == "add_order"
    prm = m["params"]
    assert prm["order_type"] == doc["order_type"] and prm["side"] == doc["side"] and prm["symbol"] == doc["symbol"]
    assert prm["cl_ord_id"] == client_id(7) and prm["post_only"] is True and prm["token"] == TOKEN
    assert "order_userref" not in prm  # cl_ord_id and order_userref are mutually exclusive
    assert prm["deadline"] == "2023-11-14T22:13:23.000Z"  # now + deadline_ms (3 s)
    # numbers written from the fixed-point ints, exactly (the documented 26500.4 and 1.2)
    p.submit(new(8, price=265004, size=120_000_000, flags=OrderFlags.IOC), T0)
    (w,) = take(p, WsSend)
    assert '"limit_price":26500.4' in w.text and '"order_qty":1.20000000,' in w.text and '"time_in_force":"ioc"' in w.text


def test_add_order_answer_acks_and_error_rejects():
    p = live()
    p.submit(new(7), T0)
    (m,) = sent(take(p))
    ok = dict(MSG["v2_add_order_response"]["message"], req_id=m["req_id"])
    p.on_frame("private", json.dumps(ok), T0 + 1)
    (u,) = take(p)
    assert (u.order_id, u.status, text(u.venue_id)) == (7, S.ACK, "AA5JGQ-SBMRC-SCJ7J7")
    p.on_frame("private", json.dumps(ok), T0 + 2)  # a duplicate answer: nothing more
    assert not take(p) and p.counts["late_answers"] == 1

    p.submit(new(8), T0)
    (m,) = sent(take(p))
    p.on_frame("private", json.dumps(dict(MSG["v2_add_order_error"]["message"], req_id=m["req_id"])), T0 + 1)
    (u,) = take(p)
    assert (u.order_id, u.status, u.reason) == (8, S.REJECTED, Reject.INSUFFICIENT_BALANCE)


def test_amend_keeps_the_order_and_answers_about_ref_id():
    p = live()
    p.submit(new(7), T0)
    (m,) = sent(take(p))
    p.on_frame("private", json.dumps(dict(MSG["v2_add_order_response"]["message"], req_id=m["req_id"])), T0)
    take(p)
    p.submit(amend(9, 7, 265010, 100_000_000), T0 + 20 * 10**9)
    (m,) = sent(take(p))
    assert m["method"] == "amend_order" and m["params"]["cl_ord_id"] == client_id(7)
    p.on_frame("private", json.dumps(dict(MSG["v2_amend_order_response"]["message"], req_id=m["req_id"])), T0)
    (u,) = take(p)
    assert (u.order_id, u.price, u.size) == (7, 265010, 100_000_000)
    # the overseer's books accept it as the amend it asked for
    orders = Orders()
    orders.sent(new(7))
    orders.on_update(OrderUpdate(7, 265004, 120_000_000, 0, T0, 1, S.ACK, 1, 0, b""))
    orders.sent(amend(9, 7, 265010, 100_000_000))
    assert orders.on_update(u) is not None and orders.get(7).size == 100_000_000


def test_cancel_by_client_id_and_cancel_all():
    p = live()
    p.submit(new(7), T0)
    (m,) = sent(take(p))
    p.on_frame("private", json.dumps(dict(MSG["v2_add_order_response"]["message"], req_id=m["req_id"])), T0)
    take(p)
    p.submit(cancel(10, 7), T0 + 10**9)
    (m,) = sent(take(p))
    assert m["method"] == "cancel_order" and m["params"]["cl_ord_id"] == [client_id(7)]
    p.on_frame("private", json.dumps({"method": "cancel_order", "req_id": m["req_id"], "success": True,
                                      "result": {"cl_ord_id": client_id(7)}}), T0)
    (u,) = take(p)
    assert (u.order_id, u.status) == (7, S.CANCELLED)
    p.cancel_all(T0)
    (m,) = sent(take(p))
    assert m["method"] == "cancel_all" and m["params"] == {"token": TOKEN}
    # CANCEL_ALL as a request does the same
    p.submit(OrderRequest(11, 0, 0, 0, 1, 1, 0, OrderAction.CANCEL_ALL, 0, 0), T0)
    assert [m["method"] for m in sent(take(p))] == ["cancel_all"]


def test_cancel_of_a_filled_order_reports_how_it_ended():
    p = live()
    p.submit(new(7), T0)
    (m,) = sent(take(p))
    p.on_frame("private", json.dumps(dict(MSG["v2_add_order_response"]["message"], req_id=m["req_id"])), T0)
    take(p)
    p.submit(cancel(10, 7), T0 + 10**9)
    (m,) = sent(take(p))
    p.on_frame("private", json.dumps({"method": "cancel_order", "req_id": m["req_id"], "success": False,
                                      "error": "EOrder:Unknown order"}), T0)
    (q,) = https(take(p), "query")
    assert form(q)["cl_ord_id"] == client_id(7)
    answer_rest(p, q, {"AA5JGQ-SBMRC-SCJ7J7": {"cl_ord_id": client_id(7), "status": "closed", "vol": "1.20000000",
                                                "vol_exec": "1.20000000", "descr": {"pair": "XBTUSD", "type": "buy",
                                                                                    "price": "26500.4"}}})
    ev = take(p)
    ups = [e for e in ev if type(e) is OrderUpdate]
    assert ups and ups[-1].status == S.FILLED and ups[-1].filled == 120_000_000
    assert https(ev, "trades")  # its fills are fetched


def test_pre_checks_refuse_before_sending():
    p = live()
    p.submit(new(1, inst=Instrument(99, "kraken", "DOGE/USD")), T0)
    p.submit(new(2, price=0), T0)
    p.submit(new(3, inst=ETH, price=12343), T0)  # tick 0.05
    ev = take(p)
    assert not sent(ev)
    assert [(u.order_id, u.status, u.reason) for u in ev] == [
        (1, S.REJECTED, Reject.UNKNOWN_INSTRUMENT), (2, S.REJECTED, Reject.BAD_REQUEST),
        (3, S.REJECTED, Reject.TICK)]
    # An order this handler does not know (a predecessor's?) is not refused: the venue is asked first.
    p.submit(cancel(4, 12345), T0)
    assert not [e for e in take(p) if type(e) is OrderUpdate] and p.counts["asked_unknown_order"] == 1


def test_same_new_is_never_sent_twice():
    p = live()
    p.submit(new(7), T0)
    p.submit(new(7), T0 + 1)
    assert len(sent(take(p))) == 1 and p.counts["duplicate_new"] == 1


def test_rest_fallback_while_the_socket_is_down():
    p = live()
    p.on_close("private", T0, "test")
    take(p)
    p.submit(new(7), T0)
    (h,) = https(take(p), "req")
    f = form(h)
    assert h.url.endswith("/0/private/AddOrder")
    assert (f["ordertype"], f["type"], f["volume"], f["pair"], f["price"], f["cl_ord_id"]) == \
        ("limit", "buy", "1.20000000", "XBTUSD", "26500.4", client_id(7))
    assert auth.verify({CREDS.key: SECRET}, "/0/private/AddOrder", dict(h.headers), h.body, None)[0] is None
    answer_rest(p, h, {"descr": {"order": "buy 1.2 XBTUSD @ limit 26500.4"}, "txid": ["OUF4EM-FRGI2-MQMWZD"]})
    (u,) = take(p)
    assert (u.order_id, u.status, text(u.venue_id)) == (7, S.ACK, "OUF4EM-FRGI2-MQMWZD")


# ---------------------------------------------------------------------------------------- UNKNOWN outcomes
def _unknown_new(p, oid=7):
    p.submit(new(oid), T0)
    (m,) = sent(take(p))
    p.on_timer(T0 + 4 * 10**9)
    assert not take(p)  # not yet
    p.on_timer(T0 + 6 * 10**9)
    (q,) = https(take(p), "query")
    assert form(q)["cl_ord_id"] == client_id(oid) and q.url.endswith("/QueryOrders")
    return m, q


def test_timeout_queries_by_client_id_and_the_late_answer_applies_once():
    p = live()
    m, q = _unknown_new(p)
    answer_rest(p, q, {"OK4GJX-KSTLS-7DZZO5": {"cl_ord_id": client_id(7), "status": "open", "vol": "1.2",
                                                "vol_exec": "0", "descr": {"pair": "XBTUSD", "type": "buy",
                                                                           "price": "26500.4"}}},
                now=T0 + 6 * 10**9)
    (u,) = take(p)
    assert (u.order_id, u.status, text(u.venue_id)) == (7, S.OPEN, "OK4GJX-KSTLS-7DZZO5")
    late = dict(MSG["v2_add_order_response"]["message"], req_id=m["req_id"],
                result={"order_id": "OK4GJX-KSTLS-7DZZO5", "cl_ord_id": client_id(7)})
    p.on_frame("private", json.dumps(late), T0 + 7 * 10**9)
    assert not take(p) and p.counts["late_answers"] == 1
    assert not any(mm["method"] == "add_order" for mm in sent(p.events))  # never sent again


def test_timeout_not_found_after_deadline_is_rejected_and_a_late_accept_cancelled():
    p = live()
    m, q = _unknown_new(p)
    answer_rest(p, q, {}, now=T0 + 6 * 10**9)
    (u,) = take(p)
    assert (u.order_id, u.status, u.reason) == (7, S.REJECTED, Reject.VENUE_ERROR)
    late = {"method": "add_order", "req_id": m["req_id"], "success": True,
            "result": {"order_id": "OLATE1-AAAAA-BBBBBB", "cl_ord_id": client_id(7)}}
    p.on_frame("private", json.dumps(late), T0 + 7 * 10**9)
    ev = take(p)
    assert not [e for e in ev if type(e) is OrderUpdate]
    (c,) = sent(ev)
    assert c["method"] == "cancel_order" and c["params"]["cl_ord_id"] == [client_id(7)]
    p.on_frame("private", json.dumps(late), T0 + 8 * 10**9)  # once only
    assert not sent(take(p))


def test_dropped_connection_and_5xx_leave_the_outcome_unknown():
    p = live()
    p.submit(new(7), T0)
    take(p)
    p.on_close("private", T0 + 1, "reset")
    (q,) = https(take(p), "query")
    assert form(q)["cl_ord_id"] == client_id(7)
    # a 5xx on a REST order: the same
    p.submit(new(8), T0 + 2)
    (h,) = https(take(p), "req")
    p.on_http(h.tag, 502, {}, b"bad gateway", T0 + 3)
    (q,) = https(take(p), "query")
    assert form(q)["cl_ord_id"] == client_id(8)
    # the query itself failing is retried
    p.on_http(q.tag, 0, {}, b"timeout", T0 + 4)
    p.on_timer(T0 + 4 + 3 * 10**9)
    assert [form(x)["cl_ord_id"] for x in https(take(p), "query")] == [client_id(8)]


# ---------------------------------------------------------------------------------------- user stream
def test_documented_executions_of_a_foreign_order_are_counted_not_emitted():
    p = live(unknown_orders="adopt")
    p.on_frame("private", MSG["v2_executions_update"]["json_text"], T0)
    p.on_frame("private", json.dumps(MSG["v2_executions_new"]["message"]), T0)
    assert not take(p)
    assert p.counts["foreign_events"] == 2 and p.counts["malformed"] == 0


def test_executions_make_updates_and_fills_deduplicated():
    p = live()
    p.submit(new(7), T0)
    take(p)
    cid = client_id(7)
    p.on_frame("private", exec_msg(1, {"order_id": "OK4GJX-KSTLS-7DZZO5", "cl_ord_id": cid, "exec_type": "new",
                                       "order_status": "new", "timestamp": "2023-09-22T10:33:05.709982Z"}), T0)
    (u,) = take(p)
    assert (u.order_id, u.status) == (7, S.OPEN)
    f1 = trade_item("OK4GJX-KSTLS-7DZZO5", cid, "TJKLXX-AAAAA-BBBBBB", 0.5, 26500.4, 0.5)
    p.on_frame("private", exec_msg(2, f1), T0)
    ev = take(p)
    (f,) = [e for e in ev if type(e) is Fill]
    assert (f.order_id, f.trade_id, f.price, f.size, f.fee, text(f.fee_asset), f.liquidity, f.side) == \
        (7, trade_key("TJKLXX-AAAAA-BBBBBB"), 265004, 50_000_000, 1, "USD", 1, 1)  # fee 0.0123 rounded up at 0.1
    (u,) = [e for e in ev if type(e) is OrderUpdate]
    assert (u.status, u.filled) == (S.PARTIALLY_FILLED, 50_000_000)
    p.on_frame("private", exec_msg(2, f1), T0)  # duplicated message
    assert not [e for e in take(p) if type(e) is Fill] and p.counts["duplicate_fills"] == 1
    # the same trade from REST TradesHistory (gap reconciliation) is the same trade
    p._rest("trades", "TradesHistory", (), T0)
    (h,) = https(take(p), "trades")
    answer_rest(p, h, {"trades": {"TJKLXX-AAAAA-BBBBBB": {"ordertxid": "OK4GJX-KSTLS-7DZZO5", "pair": "XBTUSD",
                                                           "time": 1695378786.0, "type": "buy", "price": "26500.4",
                                                           "vol": "0.5", "fee": "0.0123", "maker": True}},
                       "count": 1})
    assert not [e for e in take(p) if type(e) is Fill]


def test_sequence_gap_resubscribes_and_fetches_fills():
    p = live()
    p.on_frame("private", exec_msg(1, type_="snapshot"), T0)
    p.on_frame("private", exec_msg(2), T0)
    assert not take(p)
    p.on_frame("private", exec_msg(5), T0)
    ev = take(p)
    methods = [(m["method"], m["params"].get("channel")) for m in sent(ev)]
    assert methods == [("unsubscribe", "executions"), ("subscribe", "executions")]
    assert https(ev, "trades")
    p.on_frame("private", exec_msg(6, type_="snapshot"), T0)  # the new subscription's snapshot
    p.on_frame("private", exec_msg(7), T0)
    p.on_frame("private", exec_msg(6), T0)  # duplicated / out of order: counted, applied idempotently
    assert not sent(take(p))
    assert p.counts["executions_seq_old"] == 1 and p.counts["executions_seq_gap"] == 1


def test_balances_map_kraken_asset_names():
    p = KrakenOrders(CREDS, [BTC])
    p.start(T0)
    (h,) = https(take(p), "balance")
    answer_rest(p, h, {"ZUSD": "1000.5", "XXBT": "0.0100000000", "XETH": "3"})
    bal = {text(b.asset): b for b in take(p) if type(b) is BalanceUpdate}
    assert set(bal) == {"USD", "BTC"}
    assert (bal["USD"].total, bal["USD"].scale, bal["USD"].venue) == (10_005_000_000_000, 10, 5)
    assert bal["BTC"].total == bal["BTC"].available == 100_000_000
    # the WebSocket channel, with an open buy holding USD
    p = live()
    p.submit(new(7, price=265000, size=100_000_000), T0)  # 1 BTC at 26500.0 holds 26500 USD
    take(p)
    snap = {"channel": "balances", "type": "snapshot", "sequence": 1,
            "data": [{"asset": "USD", "asset_class": "currency", "balance": 80595.4943,
                      "wallets": [{"type": "spot", "id": "main", "balance": 80595.4943}]}]}
    p.on_frame("private", json.dumps(snap), T0)
    (b,) = take(p)
    assert (b.total, b.available) == (805_954_943_000_000, 540_954_943_000_000)


def test_a_rest_balance_asked_before_a_stream_balance_is_not_applied():
    """The stream spoke of USD after the periodic check went out: the check's figure may predate a
    fill the stream already counted, and nothing would correct it until the next check."""
    p = live()
    take(p)
    p._reconcile(T0 + 10)
    (h,) = https(take(p), "balance")
    upd = {"channel": "balances", "type": "update", "sequence": 1,
           "data": [{"asset": "USD", "asset_class": "currency", "balance": 100.5, "type": "trade"}]}
    p.on_frame("private", json.dumps(upd), T0 + 20)
    answer_rest(p, h, {"ZUSD": "90", "XXBT": "2"}, now=T0 + 30)
    bal = [(text(b.asset), b.total) for b in take(p) if type(b) is BalanceUpdate]
    assert bal == [("USD", 1_005_000_000_000), ("BTC", 20_000_000_000)]
    assert p.counts["rest_balance_older"] == 1 and p.counts["drift_balances"] == 0
    p._reconcile(T0 + 40)  # nothing from the stream since: the check says which figure is true
    answer_rest(p, https(take(p), "balance")[0], {"ZUSD": "95"}, now=T0 + 50)
    assert [(text(b.asset), b.total) for b in take(p) if type(b) is BalanceUpdate] == [("USD", 950_000_000_000)]
    assert p.counts["drift_balances"] == 1


# ---------------------------------------------------------------------------------------- rate limits
def test_rate_counter_refuses_before_sending_and_decays():
    p = live(rate_threshold=60, rate_decay=1.0)
    for i in range(60):
        p.submit(new(100 + i), T0)
    assert len(sent(take(p))) == 60
    p.submit(new(200), T0)
    (u,) = take(p)
    assert (u.order_id, u.status, u.reason) == (200, S.REJECTED, Reject.RATE_LIMITED)
    p.submit(new(201), T0 + 2 * 10**9)  # decayed by 2
    assert len(sent(take(p))) == 1
    # a young order costs 8 to cancel: refused while the counter is near the threshold
    p.submit(cancel(300, 100), T0 + 2 * 10**9)
    (u,) = take(p)
    assert (u.order_id, u.status, u.reason) == (100, S.CANCEL_REJECTED, Reject.RATE_LIMITED)
    assert RateCounter.age_cost(((5, 8), (10, 6)), 7 * 10**9) == 6


def test_venue_ratecount_sets_the_counter():
    p = live(rate_threshold=60)
    p.submit(new(7), T0)
    take(p)
    item = {"order_id": "OX", "cl_ord_id": client_id(7), "symbol": "BTC/USD", "exec_type": "new",
            "order_status": "new", "ratecount": 60, "timestamp": "2023-09-22T10:33:05Z"}
    p.on_frame("private", exec_msg(1, item), T0)
    take(p)
    p.submit(new(8), T0)
    (u,) = take(p)
    assert u.reason == Reject.RATE_LIMITED


def test_venue_rate_limit_error_backs_off():
    p = live(rate_backoff_s=2.0)
    p.submit(new(7), T0)
    (m,) = sent(take(p))
    p.on_frame("private", json.dumps({"method": "add_order", "req_id": m["req_id"], "success": False,
                                      "error": "EOrder:Rate limit exceeded"}), T0)
    (u,) = take(p)
    assert (u.status, u.reason) == (S.REJECTED, Reject.RATE_LIMITED)
    p.submit(new(8, inst=ETH, price=180000), T0 + 10**9)  # any pair: we wait
    assert take(p)[0].reason == Reject.RATE_LIMITED
    p.submit(new(9, inst=ETH, price=180000), T0 + 3 * 10**9)
    assert len(sent(take(p))) == 1


def test_http_429_waits_retry_after_and_418_halts():
    p = live()
    p.on_close("private", T0, "x")
    take(p)
    p.submit(new(7), T0)
    (h,) = https(take(p), "req")
    p.on_http(h.tag, 429, {"retry-after": "5"}, b"", T0)
    (u,) = take(p)
    assert (u.order_id, u.status, u.reason) == (7, S.REJECTED, Reject.RATE_LIMITED)
    p.submit(new(8), T0 + 4 * 10**9)
    assert take(p)[0].reason == Reject.RATE_LIMITED
    p.submit(new(9), T0 + 6 * 10**9)
    (h,) = https(take(p), "req")
    p.on_http(h.tag, 418, {}, b"", T0 + 6 * 10**9)
    assert [type(e) for e in take(p)] == [Halt] and p.halted
    p.submit(new(10), T0 + 7 * 10**9)
    assert take(p)[0].reason == Reject.HALTED


# ---------------------------------------------------------------------------------------- reconciliation
OPEN_ORDERS = {"open": {
    "OUR111-AAAAA-AAAAAA": {"cl_ord_id": client_id(42), "status": "open", "vol": "0.50000000", "vol_exec": "0.10000000",
                            "descr": {"pair": "XBTUSD", "type": "sell", "ordertype": "limit", "price": "27000.0"}},
    "FOR222-BBBBB-BBBBBB": {"userref": 3, "status": "open", "vol": "1.0", "vol_exec": "0",
                            "descr": {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "20000.0"}},
}}


def test_reconcile_at_start_cancels_unknown_orders():
    p = live(unknown_orders="cancel")
    p._rest("open", "OpenOrders", (), T0)
    (h,) = https(take(p), "open")
    answer_rest(p, h, OPEN_ORDERS)
    ev = take(p)
    assert not [e for e in ev if type(e) is OrderUpdate]
    cancels = sorted(json.dumps(m["params"], sort_keys=True) for m in sent(ev) if m["method"] == "cancel_order")
    assert len(cancels) == 2 and client_id(42) in cancels[0] + cancels[1] and "FOR222" in cancels[0] + cancels[1]


def test_reconcile_at_start_adopts_ours_and_leaves_foreign():
    p = live(unknown_orders="adopt")
    p._rest("open", "OpenOrders", (), T0)
    (h,) = https(take(p), "open")
    answer_rest(p, h, OPEN_ORDERS)
    ev = take(p)
    assert not sent(ev)
    (u,) = [e for e in ev if type(e) is OrderUpdate]
    assert (u.order_id, u.side, u.price, u.size, u.filled, u.status) == (42, -1, 270000, 50_000_000, 10_000_000,
                                                                          S.OPEN)
    assert p.counts["foreign_open"] == 1
    # an adopted order can be cancelled like any other
    p.submit(cancel(50, 42), T0 + 400 * 10**9)
    (m,) = sent(take(p))
    assert m["params"]["cl_ord_id"] == [client_id(42)]


def test_periodic_reconcile_finds_drift():
    p = live(reconcile_s=60)
    p.submit(new(7), T0)
    (m,) = sent(take(p))
    p.on_frame("private", json.dumps({"method": "add_order", "req_id": m["req_id"], "success": True,
                                      "result": {"order_id": "OGONE1-AAAAA-AAAAAA"}}), T0)
    take(p)
    p.on_timer(T0 + 61 * 10**9)
    ev = take(p)
    assert {h.url.rsplit("/", 1)[1] for h in https(ev)} >= {"OpenOrders", "Balance", "TradesHistory"}
    (h,) = https(ev, "open")
    answer_rest(p, h, {"open": {}}, now=T0 + 61 * 10**9)
    (q,) = https(take(p), "query")
    assert p.counts["drift_orders"] == 1
    answer_rest(p, q, {"OGONE1-AAAAA-AAAAAA": {"cl_ord_id": client_id(7), "status": "canceled", "vol": "1.2",
                                                "vol_exec": "0", "descr": {"pair": "XBTUSD", "type": "buy",
                                                                           "price": "26500.4"}}})
    (u,) = [e for e in take(p) if type(e) is OrderUpdate]
    assert (u.order_id, u.status) == (7, S.CANCELLED)


def test_an_open_orders_answer_asked_before_an_amend_does_not_undo_it():
    """The amend was acknowledged after OpenOrders went out: the snapshot may show the old price and
    size, which must not come back (until a reconcile with nothing newer says so)."""
    p = live()
    p.submit(new(7), T0)
    (m,) = sent(take(p))
    p.on_frame("private", json.dumps({"method": "add_order", "req_id": m["req_id"], "success": True,
                                      "result": {"order_id": "OGONE1-AAAAA-AAAAAA"}}), T0)
    take(p)
    p._reconcile(T0 + 10)
    (h,) = https(take(p), "open")
    p.submit(amend(9, 7, 265010, 100_000_000), T0 + 20)
    (m,) = sent(take(p))
    p.on_frame("private", json.dumps(dict(MSG["v2_amend_order_response"]["message"], req_id=m["req_id"])), T0 + 30)
    (u,) = take(p)
    assert (u.price, u.size) == (265010, 100_000_000)
    old = {"OGONE1-AAAAA-AAAAAA": {"cl_ord_id": client_id(7), "status": "open", "vol": "1.2", "vol_exec": "0",
                                   "descr": {"pair": "XBTUSD", "type": "buy", "price": "26500.4"}}}
    answer_rest(p, h, {"open": old}, now=T0 + 40)
    assert not [e for e in take(p) if type(e) is OrderUpdate]
    assert p.counts["rest_order_older"] == 1 and p.counts["drift_corrected"] == 0
    p._reconcile(T0 + 50)  # nothing newer since this one went out: the venue's word stands
    answer_rest(p, https(take(p), "open")[0], {"open": old}, now=T0 + 60)
    (u,) = [e for e in take(p) if type(e) is OrderUpdate]
    assert (u.price, u.size) == (265004, 120_000_000) and p.counts["drift_corrected"] == 1


def test_secrets_never_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="mantra")
    p = live()
    p.on_frame("private", json.dumps({"method": "subscribe", "success": False, "error": f"bad token {TOKEN}"}), T0)
    p.on_http("token", 500, {}, f"token={TOKEN} secret={SECRET}".encode(), T0)
    p.on_frame("private", "{not json " + TOKEN, T0)
    assert caplog.records
    assert TOKEN not in caplog.text and SECRET not in caplog.text
    assert SECRET not in repr(p.creds) and SECRET not in str(CREDS)


def test_asset_names():
    assert [venue_asset(a) for a in ("XXBT", "XBT", "ZUSD", "XETH", "USDT", "BTC")] == \
        ["BTC", "BTC", "USD", "ETH", "USDT", "BTC"]


# ---------------------------------------------------------------------------------------- property
@settings(max_examples=150, deadline=None)
@given(data=st.data(), size_lots=st.integers(1, 40))
def test_any_duplicated_reordered_stream_never_double_counts(data, size_lots):
    """Trades partition (part of) the order; the stream delivers each one or more times, in any order,
    with status updates mixed in: the fills emitted are exactly the distinct trades."""
    lot = 1_000_000
    parts = data.draw(st.lists(st.integers(1, size_lots), min_size=0, max_size=8))
    trades, total = [], 0
    for n in parts:
        if total + n > size_lots:
            break
        total += n
        trades.append(n)
    p = live()
    p.submit(new(7, size=size_lots * lot), T0)
    take(p)
    cid = client_id(7)
    events, cum = [], 0
    for i, n in enumerate(trades):
        cum += n
        st_ = "filled" if cum == size_lots else "partially_filled"
        events.append(trade_item("OX1", cid, f"T{i}", f"{n / 100:.2f}", 26500.4, f"{cum / 100:.2f}", st_))
    events.append({"order_id": "OX1", "cl_ord_id": cid, "exec_type": "new", "order_status": "new",
                   "timestamp": "2023-09-22T10:33:05Z"})
    stream = data.draw(st.lists(st.sampled_from(range(len(events))), min_size=0, max_size=30))
    stream = list(range(len(events))) + stream  # every event at least once, then repeats
    stream = data.draw(st.permutations(stream))
    fills = []
    for k, idx in enumerate(stream):
        p.on_frame("private", exec_msg(k + 1, events[idx]), T0)
        fills += [e for e in take(p) if type(e) is Fill]
    assert len({f.trade_id for f in fills}) == len(fills) == len(trades)
    assert sum(f.size for f in fills) == total * lot <= size_lots * lot
    assert p.orders[7].filled == total * lot
