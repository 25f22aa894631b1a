"""The account runner against real loopback sockets: connections kept up, HTTP answers and
timeouts, halts, and the loopback guard."""

import http.server
import threading

import pytest
from websockets.sync.server import serve

from mantra.execution.runner import AccountRunner, LoopbackOnly
from mantra.instruments import Instrument
from mantra.spine.messages import OrderAction, OrderRequest, OrderStatus, OrderUpdate
from mantra.trading.accounts import Reject
from mantra.venues.account import Credentials, Halt, Http, Open, OrderProtocol, WsSend
from waits import wait_for

INST = Instrument(1, "binance", "BTCUSDT", "BTC", "USDT", 2, 5)


class Recorder(OrderProtocol):
    """A protocol that records what the runner tells it and does what the test asks."""

    venue = "binance"

    def __init__(self, ws_url, rest_url):
        super().__init__(Credentials("k", "s"), [INST])
        self.ws_url, self.rest_url = ws_url, rest_url
        self.log = []

    def start(self, now):
        self.events.append(Open("trade", self.ws_url))

    def on_open(self, conn, now):
        self.log.append(("open", conn))
        self.events.append(WsSend(conn, "hello"))

    def on_close(self, conn, now, reason):
        self.log.append(("close", conn))

    def on_frame(self, conn, text, now):
        self.log.append(("frame", text))
        if text == "halt":
            self.halt("banned")
        elif text.startswith("fill"):
            self.events.append(OrderUpdate(7, 100, 1, 1, now, 1, OrderStatus.FILLED, 1, 0, b""))

    def on_http(self, tag, status, headers, body, now):
        self.log.append(("http", tag, status, body))

    def on_timer(self, now):
        self.log.append(("timer",))

    def submit(self, r, now):
        self.events.append(WsSend("trade", f"order {r.order_id}"))
        self.events.append(Http("status", "POST", self.rest_url + "/order", (("X-Test", "1"),), b"id=%d" % r.order_id))

    def cancel_all(self, now):
        self.events.append(WsSend("trade", "cancel all"))


@pytest.fixture()
def venue():
    got, conns = [], []

    def handler(ws):
        conns.append(ws)
        for m in ws:
            got.append(m)
            if m.startswith("order"):
                ws.send("fill " + m)

    class Rest(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            out = b"ok " + body + b" " + self.headers["X-Test"].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    ws = serve(handler, "127.0.0.1", 0)
    rest = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Rest)
    for s in (ws, rest):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield f"ws://127.0.0.1:{ws.socket.getsockname()[1]}", f"http://127.0.0.1:{rest.server_address[1]}", got, conns
    ws.shutdown()
    rest.shutdown()


def test_requests_frames_http_and_reconnect(venue):
    ws_url, rest_url, got, conns = venue
    proto = Recorder(ws_url, rest_url)
    out = []
    r = AccountRunner(proto, lambda m, ts: out.append(m), loopback_only=True, backoff_s=0.01, timing=True)
    r.start()
    assert ("open", "trade") in proto.log
    r.submit(OrderRequest(7, 0, 100, 1, 1, 0, 0, int(OrderAction.NEW), 1, 0))
    wait_for(lambda: r.poll(0.05) >= 0 and any(type(m) is OrderUpdate for m in out)
             and any(e[0] == "http" for e in proto.log), timeout=10)
    assert got[:2] == ["hello", "order 7"]
    assert ("http", "status", 200, b"ok id=7 1") in proto.log
    assert len(r.handler_ns) == 1 and r.handler_ns[0] > 0
    assert ("timer",) in proto.log
    conns[0].close()  # the venue drops us: reported, then reopened, and the protocol says hello again
    wait_for(lambda: r.poll(0.05) >= 0 and proto.log.count(("open", "trade")) == 2, timeout=10)
    assert ("close", "trade") in proto.log
    wait_for(lambda: got.count("hello") == 2, timeout=10)
    r.close()


def test_http_without_answer_is_status_zero(venue):
    ws_url, _, _, _ = venue
    proto = Recorder(ws_url, "http://127.0.0.1:9")  # discard port: refused
    r = AccountRunner(proto, lambda m, ts: None, http_timeout=1.0)
    r.start()
    r.submit(OrderRequest(8, 0, 100, 1, 1, 0, 0, int(OrderAction.NEW), 1, 0))
    wait_for(lambda: r.poll(0.05) >= 0 and any(e[0] == "http" for e in proto.log), timeout=10)
    (tag, status) = next(e[1:3] for e in proto.log if e[0] == "http")
    assert (tag, status) == ("status", 0)
    r.close()


def test_halt_refuses_every_later_request(venue):
    ws_url, rest_url, got, conns = venue
    proto = Recorder(ws_url, rest_url)
    out, halted = [], []
    r = AccountRunner(proto, lambda m, ts: out.append(m), on_halt=halted.append)
    r.start()
    wait_for(lambda: r.poll(0.05) >= 0 and len(conns) == 1, timeout=10)
    conns[0].send("halt")
    wait_for(lambda: r.poll(0.05) >= 0 and halted, timeout=10)
    assert halted == ["banned"] and any(type(m) is Halt for m in out)
    r.submit(OrderRequest(9, 0, 100, 1, 1, 0, 0, int(OrderAction.NEW), 1, 0))
    refused = [m for m in out if type(m) is OrderUpdate]
    assert refused[-1].order_id == 9 and refused[-1].status == OrderStatus.REJECTED
    assert refused[-1].reason == Reject.HALTED
    assert not any(m.startswith("order 9") for m in got)
    r.close()


def test_loopback_guard_stops_a_real_venue_before_anything_leaves():
    proto = Recorder("wss://ws-api.binance.com/ws-api/v3", "https://api.binance.com")
    r = AccountRunner(proto, lambda m, ts: None, loopback_only=True)
    with pytest.raises(LoopbackOnly, match="ws-api.binance.com is a real venue"):
        r.start()
    assert not r.conns
    r.close()
