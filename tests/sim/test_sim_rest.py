"""The simulators' REST port: any method with headers and a body reaches the venue module (what
signed order entry needs), HTTP/1.1 keep-alive, answers with any status and headers, rate-limit
faults on every method, and the control paths beside the venue's endpoints."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

from mantra.sim import Reply, RestError
from mantra.sim.binance import BinanceSimulator


class OrderDesk(BinanceSimulator):
    """A venue module with one order endpoint, the way order entry will add them."""

    def rest(self, req):
        if req.path == "/api/v3/order" and req.method in ("POST", "DELETE"):
            if req.headers.get("x-mbx-apikey") != "key":  # header names: any case
                raise RestError(401, {"code": -2015, "msg": "Invalid API-key"}, {"X-Why": "no key"})
            return Reply(201 if req.method == "POST" else 200,
                         {"method": req.method, "form": req.form(), "query": req.query, "target": req.target,
                          "body": req.body.decode()}, {"X-Order-Count": "1"})
        if req.path == "/api/v3/json" and req.method == "PUT":
            return {"got": req.json()}
        return super().rest(req)


def _conn(sim) -> http.client.HTTPConnection:
    u = urlsplit(sim.rest_url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=5)


def _ask(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), json.loads(r.read() or b"null")


def test_a_post_with_headers_and_a_body_reaches_the_venue_module_over_one_kept_alive_connection():
    with OrderDesk(seed=1, rate=20) as sim:
        assert sim.rest_url != sim.ws_url.replace("ws://", "http://")  # REST has a port of its own
        conn = _conn(sim)
        try:
            status, headers, body = _ask(conn, "POST", "/api/v3/order?timestamp=5&signature=ab",
                                         "symbol=BTCUSDT&side=BUY&quantity=0.001",
                                         {"X-MBX-APIKEY": "key", "Content-Type": "application/x-www-form-urlencoded"})
            sock = conn.sock
            assert status == 201 and headers["X-Order-Count"] == "1"
            assert body == {"method": "POST", "form": {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.001"},
                            "query": {"timestamp": "5", "signature": "ab"},
                            "target": "/api/v3/order?timestamp=5&signature=ab",
                            "body": "symbol=BTCUSDT&side=BUY&quantity=0.001"}
            status, headers, body = _ask(conn, "DELETE", "/api/v3/order?orderId=7", headers={"X-MBX-APIKEY": "key"})
            assert status == 200 and body["method"] == "DELETE" and body["query"] == {"orderId": "7"}
            status, headers, body = _ask(conn, "POST", "/api/v3/order", "x=1")
            assert status == 401 and headers["X-Why"] == "no key" and body["code"] == -2015
            status, _, body = _ask(conn, "PUT", "/api/v3/json", b'{"a":[1,2]}', {"Content-Type": "application/json"})
            assert status == 200 and body == {"got": {"a": [1, 2]}}
            status, _, body = _ask(conn, "PUT", "/api/v3/json", b"{nope")
            assert status == 400 and body == {"error": "body is not JSON"}
            # the public GET endpoints answer as before, on the same connection
            status, headers, book = _ask(conn, "GET", "/api/v3/depth?symbol=BTCUSDT&limit=3")
            assert status == 200 and headers["Content-Type"] == "application/json" and len(book["bids"]) == 3
            # a public endpoint with another method is the venue's unknown endpoint
            status, _, body = _ask(conn, "POST", "/api/v3/depth?symbol=BTCUSDT")
            assert status == 404 and body["code"] == -1000
            assert conn.sock is sock  # every answer on the one connection: keep-alive
        finally:
            conn.close()
        assert sim.rest_requests["/api/v3/order"] == 3


def test_rate_limit_faults_answer_any_method_with_retry_after_and_control_paths_are_on_the_rest_port():
    with OrderDesk(seed=1, rate=20) as sim:
        conn = _conn(sim)
        try:
            sim.rate_limit_next(1, 418)
            status, headers, body = _ask(conn, "POST", "/api/v3/order", "x=1", {"X-MBX-APIKEY": "key"})
            assert status == 418 and headers["Retry-After"] == "1" and body["code"] == -1003
            status, _, _ = _ask(conn, "POST", "/api/v3/order", "x=1", {"X-MBX-APIKEY": "key"})
            assert status == 201
            status, _, body = _ask(conn, "POST", "/__sim/fault/drop?arg=2")  # control paths take any method
            assert status == 200 and body["injected"] == {"drop": 1} and sim._drop == 2
            status, _, body = _ask(conn, "GET", "/__sim/book/BTCUSDT")
            assert status == 200 and body["symbol"] == "BTCUSDT" and body["bids"]
        finally:
            conn.close()
        assert not any(p.startswith("/__sim") for p in sim.rest_requests)
