"""The connection runner against local servers: timestamps, reconnects with backoff, REST retries,
watchdogs, stopping, the doorbell that lets one thread wait for several connections, and the
WebSocket wire itself (frames split or batched by TCP, pings, malformed frames, broken handshakes,
TLS), all read from the test's own thread."""

import array
import fcntl
import logging
import random
import shutil
import ssl
import subprocess
import sys
import termios
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import zstandard
from websockets.client import ClientProtocol
from websockets.frames import Opcode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feedkit import RawWsServer, RestServer, WsServer, frame  # noqa: E402

from mantra import _spine  # noqa: E402
from mantra.feeds import wsclient  # noqa: E402
from mantra.feeds.runner import Doorbell, FeedRunner  # noqa: E402
from mantra.feeds.wsclient import WsClient  # noqa: E402
from mantra.store.capture import CaptureReader, CaptureWriter, Kind  # noqa: E402
from mantra.venues.events import Fetch, Reconnect, Send  # noqa: E402
from waits import wait_for  # noqa: E402


class Script:
    """A stand-in protocol: records what the runner hands it; asks for what it is told to."""

    venue = "test"

    def __init__(self, url, subscribe="sub", fetch=None, reconnect_on=None):
        self.url = url
        self.events = []
        self.frames, self.rest, self.timers, self.log = [], [], [], []
        self.subscribe, self.fetch, self.reconnect_on = subscribe, fetch, reconnect_on

    def on_connect(self, ts):
        self.log.append(("connect", ts))
        if self.subscribe:
            self.events.append(Send(self.subscribe))
        if self.fetch:
            self.events.append(Fetch(self.fetch))

    def on_disconnect(self, ts):
        self.log.append(("disconnect", ts))

    def on_frame(self, data, ts):
        self.frames.append((data, ts))
        if data == self.reconnect_on:
            self.events.append(Reconnect("asked"))

    def on_rest(self, url, body, ts):
        self.rest.append((url, body, ts))

    def on_timer(self, ts):
        self.timers.append(ts)


def run_for(runner, seconds):
    """Poll for a fixed time (what happens meanwhile is the test)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        runner.poll(64, 0.01)


def pump(runner, until, timeout_s=10.0):
    end = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < end, "timed out"
        runner.poll(64, 0.01)


def test_frames_reach_the_protocol_in_order_with_receipt_times_after_the_subscription():
    frames = [f'{{"n":{i}}}' for i in range(200)]
    with WsServer(frames, wait_for_client=1) as srv:
        proto = Script(srv.url)
        r = FeedRunner(proto, ping_interval=None)
        t0 = _spine.now()
        pump(r, lambda: len(proto.frames) == 200)
        t1 = _spine.now()
        r.close()
    assert srv.received[0] == "sub"  # sent on connect, before the server sent anything
    assert [d for d, _ in proto.frames] == frames
    ts = [t for _, t in proto.frames]
    assert ts == sorted(ts) and t0 <= ts[0] and ts[-1] <= t1
    assert proto.log[0][0] == "connect" and proto.log[0][1] <= ts[0]
    assert proto.log[-1][0] == "disconnect"
    assert r.frames == 200 and r.bytes == sum(map(len, frames)) and r.sent == 1


def test_reconnects_with_growing_backoff_and_resubscribes_when_the_server_drops():
    with WsServer(["a", "b", "c"], drop_after=1, wait_for_client=1) as srv:
        proto = Script(srv.url)
        r = FeedRunner(proto, ping_interval=None, backoff_s=0.04, backoff_max_s=0.4, stable_s=30, seed=1)
        pump(r, lambda: len(srv.connections) >= 6)
        r.close()
    starts = [t for t, _ in srv.connections]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # Jittered doubling: 0.02-0.04, 0.04-0.08, 0.08-0.16, 0.16-0.32, then capped at 0.2-0.4.
    assert gaps[0] < 0.2 and gaps[3] > 0.15 and gaps[3] > gaps[0]
    assert max(gaps) < 0.4 + 0.3  # bounded by backoff_max_s (plus scheduling slack)
    assert srv.received.count("sub") >= 6  # every connection subscribed again
    kinds = [k for k, _ in proto.log]
    assert kinds[:4] == ["connect", "disconnect", "connect", "disconnect"]
    assert [d for d, _ in proto.frames] == ["a"] * len(proto.frames) and len(proto.frames) >= 5
    assert r.reconnects >= 5 and r.drops >= 5


def test_a_protocol_reconnect_request_gives_a_new_connection():
    with WsServer(["x", "resync", "y"], wait_for_client=1) as srv:
        proto = Script(srv.url, reconnect_on="resync")
        r = FeedRunner(proto, ping_interval=None, backoff_s=0.01)
        pump(r, lambda: len(srv.connections) >= 2 and proto.frames[-1][0] == "resync" and len(proto.frames) >= 4)
        r.close()
    # "y" after the request was never handled on the old connection: the runner dropped it at once.
    assert [d for d, _ in proto.frames][:3] == ["x", "resync", "x"]
    assert r.reconnects >= 1


def test_connection_refused_is_retried_not_fatal():
    with WsServer() as srv:
        url = srv.url
    proto = Script(url)  # nothing listens there any more
    r = FeedRunner(proto, backoff_s=0.01, backoff_max_s=0.02)
    run_for(r, 0.5)
    assert r.connect_errors >= 5 and r.connects == 0 and proto.log == []


def test_rest_errors_are_counted_and_retried_with_backoff_then_the_body_is_delivered():
    with RestServer({"/snap?x=1": b'{"ok":1}'}, fail=3, status=429) as rest, WsServer() as srv:
        proto = Script(srv.url, fetch=rest.url + "/snap?x=1")
        r = FeedRunner(proto, ping_interval=None, fetch_backoff_s=0.05, fetch_backoff_max_s=1.0, seed=3)
        pump(r, lambda: proto.rest)
        r.close()
    assert [c for _, _, c in rest.requests] == [429, 429, 429, 200]
    assert [b for _, b, _ in proto.rest] == [b'{"ok":1}']  # error bodies never reach the protocol
    assert r.fetch_errors == 3 and r.http_status == {429: 3, 200: 1}
    t = [t for t, _, _ in rest.requests]
    assert t[3] - t[2] > t[1] - t[0] and t[3] - t[2] >= 0.1  # 0.025-0.05, ..., 0.1-0.2


def test_retry_after_is_honoured():
    with RestServer({"/s": b"{}"}, fail=1, status=418, retry_after="0.4") as rest, WsServer() as srv:
        proto = Script(srv.url, fetch=rest.url + "/s")
        r = FeedRunner(proto, ping_interval=None, fetch_backoff_s=0.01)
        pump(r, lambda: proto.rest)
        r.close()
    t = [t for t, _, _ in rest.requests]
    assert len(t) == 2 and t[1] - t[0] >= 0.39


def test_unreachable_rest_is_counted_and_retried():
    with WsServer() as srv:
        proto = Script(srv.url, fetch="http://127.0.0.1:9/none")  # discard port: refused
        r = FeedRunner(proto, ping_interval=None, fetch_backoff_s=0.01, fetch_backoff_max_s=0.02, fetch_timeout=1)
        run_for(r, 0.5)
        r.close()
    assert r.fetch_errors >= 3 and proto.rest == []


def test_timer_ticks_and_silent_socket_watchdog():
    with WsServer(["hello"]) as srv:
        proto = Script(srv.url)
        r = FeedRunner(proto, ping_interval=None, silent_s=0.3, timer_s=0.05, backoff_s=0.01)
        pump(r, lambda: len(srv.connections) >= 2)
        r.close()
    assert len(proto.timers) >= 4  # ~0.3 s of 50 ms ticks
    starts = [t for t, _ in srv.connections]
    assert starts[1] - starts[0] >= 0.3  # dropped for silence, not earlier


def test_keepalive_pings_keep_a_quiet_connection_alive():
    with WsServer(["hello"]) as srv:
        proto = Script(srv.url)
        r = FeedRunner(proto, ping_interval=0.05, ping_timeout=0.5, silent_s=0.3)
        run_for(r, 0.8)
        r.close()
    assert len(srv.connections) == 1  # the pongs count as traffic for the watchdog


def test_planned_reconnect_before_the_age_limit_is_immediate():
    with WsServer(["hello"]) as srv:
        proto = Script(srv.url)
        r = FeedRunner(proto, ping_interval=None, max_age_s=0.2, backoff_s=5.0)
        pump(r, lambda: len(srv.connections) >= 3)
        r.close()
    starts = [t for t, _ in srv.connections]
    assert all(0.19 <= b - a < 0.5 for a, b in zip(starts, starts[1:]))  # no backoff for planned ones


def _stops_promptly(r, ready) -> bool:
    """Run ``r`` in a thread until ``ready()``, stop it: did the thread end well before its 30 s backoff?"""
    th = threading.Thread(target=r.run)
    th.start()
    assert wait_for(ready, 15), "runner never reached the state to stop it in"
    t = time.monotonic()
    r.stop()
    th.join(10)
    return not th.is_alive() and time.monotonic() - t < 4.0


def test_run_in_a_thread_stops_promptly_connected_or_backing_off():
    with WsServer(["a"]) as srv:
        proto = Script(srv.url)
        r = FeedRunner(proto, ping_interval=None)
        assert _stops_promptly(r, lambda: any(e[0] == "connect" for e in proto.log))
        assert proto.log[-1][0] == "disconnect" and r.closed
        url = srv.url
    r = FeedRunner(Script(url), backoff_s=30.0, backoff_max_s=30.0)  # refused, then a long backoff
    assert _stops_promptly(r, lambda: r.connect_errors >= 1) and r.connect_errors >= 1


def _unread(runner) -> int:
    """Bytes waiting in the runner's socket, not yet read."""
    n = array.array("i", [0])
    fcntl.ioctl(runner.ws.sock.fileno(), termios.FIONREAD, n)
    return n[0]


def test_doorbell_sleeps_until_either_socket_has_bytes_and_not_while_messages_wait():
    bell = Doorbell()
    with WsServer(hold=True, wait_for_client=1) as quiet, WsServer(["late", "x", "y", "z"], wait_for_client=2) as loud:
        pa, pb = Script(quiet.url), Script(loud.url)
        ra = FeedRunner(pa, ping_interval=None, doorbell=bell, timer_s=10)
        rb = FeedRunner(pb, ping_interval=None, doorbell=bell, timer_s=10)
        ra.poll(64, 0)
        rb.poll(64, 0)  # both connected and subscribed; loud waits for one more message
        t = time.monotonic()
        assert bell.wait(0.2) is False and time.monotonic() - t >= 0.15  # nothing to do: it slept
        rb.ws.send_text("go")
        t = time.monotonic()
        assert bell.wait(2.0) is True and time.monotonic() - t < 1.0
        assert wait_for(lambda: _unread(rb) >= sum(2 + len(f) for f in loud.frames), 10)  # all four frames are in the socket
        assert ra.poll(64, 0) == 0 and rb.poll(1, 0) == 1
        # Read but not yet handled (max_frames): the doorbell must not sleep on them.
        assert rb.pending() and not ra.pending()
        t = time.monotonic()
        assert bell.wait(5.0) is True and time.monotonic() - t < 4.0  # not slept to its timeout
        rb.poll(64, 0)
        assert [d for d, _ in pb.frames] == ["late", "x", "y", "z"] and not rb.pending()
        ra.close()
        rb.close()
    # Closed runners no longer count: their stale timers must not turn the wait into a spin.
    time.sleep(0.05)
    t = time.monotonic()
    assert bell.wait(0.2) is False and time.monotonic() - t >= 0.15


def test_messages_split_across_reads_or_batched_in_one_read_arrive_whole_with_their_receipt_time():
    big = "B" * 300_000  # several reads of the socket
    part1, part2 = frame("frag-", fin=False), frame("mented", Opcode.CONT)
    one = frame(big)
    batch = frame("a") + frame("b") + frame(b"\x00c", Opcode.BINARY)
    script = [one[:3], 0.05, one[3:100_000], 0.05, one[100_000:], 0.05, part1, 0.05, part2, 0.05, batch]
    with RawWsServer(script) as srv:
        proto = Script(srv.url, subscribe=None)
        r = FeedRunner(proto, ping_interval=None)
        pump(r, lambda: len(proto.frames) == 5)
        r.close()
    assert [d for d, _ in proto.frames] == [big, "frag-mented", "a", "b", b"\x00c"]
    sent = [t for t, _ in srv.writes]
    ts = [t for _, t in proto.frames]
    # Stamped when the last piece arrived, not the first; one read, one stamp.
    assert sent[2] <= ts[0] < sent[3] and sent[4] <= ts[1] < sent[5] and sent[5] <= ts[2] == ts[3] == ts[4]
    assert r.frames == 5 and r.bad_frames == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_mix_of_frames_cut_anywhere_arrives_whole_and_in_order(seed):
    """Whole text frames are parsed directly, the rest by the protocol: cut at random points
    (inside headers, between frames, mid-payload), every message still arrives once, in order."""
    rng = random.Random(seed)
    wire, want, pings = b"", [], 0
    for k in range(60):
        kind = rng.choice(["small", "ext16", "ext64", "ping", "fragmented", "binary"])
        if kind == "small":
            want.append(f"m{k}")
            wire += frame(want[-1])
        elif kind == "ext16":
            want.append(f"m{k}" + "āa" * rng.randrange(50, 1000))  # 0x81 0x61 inside: looks like a frame
            wire += frame(want[-1])
        elif kind == "ext64":
            want.append(f"m{k}" + "āa" * 25_000)
            wire += frame(want[-1])
        elif kind == "ping":
            pings += 1
            wire += frame(f"p{k}".encode(), Opcode.PING)
        elif kind == "fragmented":
            want.append(f"m{k}-frag")
            wire += frame(f"m{k}-", fin=False) + frame("frag", Opcode.CONT)
        else:
            want.append(f"m{k}".encode())
            wire += frame(want[-1], Opcode.BINARY)
    cuts = sorted(rng.sample(range(1, len(wire)), 40))
    script = []
    for a, b in zip([0] + cuts, cuts + [len(wire)]):
        script += [wire[a:b], 0.002]
    with RawWsServer(script[2:], first=script[0]) as srv:  # the first piece comes with the handshake
        proto = Script(srv.url, subscribe=None)
        r = FeedRunner(proto, ping_interval=None)
        pump(r, lambda: len(proto.frames) == len(want) and
             sum(f.opcode is Opcode.PONG for f in srv.received) == pings, timeout_s=10)
        r.close()
    assert [d for d, _ in proto.frames] == want
    assert sum(f.opcode is Opcode.PONG for f in srv.received) == pings and r.bad_frames == 0


def test_receipt_is_stamped_before_the_bytes_are_parsed(monkeypatch):
    parsed_at = []
    receive = ClientProtocol.receive_data

    def timed(self, data):
        parsed_at.append(_spine.now())
        return receive(self, data)

    direct = WsClient._direct

    def timed_direct(self, data, ts):
        parsed_at.append(_spine.now())
        return direct(self, data, ts)

    monkeypatch.setattr(ClientProtocol, "receive_data", timed)
    monkeypatch.setattr(WsClient, "_direct", timed_direct)  # whole text frames are parsed here
    fast = wsclient._text_frames

    def timed_fast(*args):
        parsed_at.append(_spine.now())
        return fast(*args)

    monkeypatch.setattr(wsclient, "_text_frames", timed_fast)  # or here, in C
    with RawWsServer([frame('{"n":1}'), 0.05, frame('{"n":2}')]) as srv:
        proto = Script(srv.url, subscribe=None)
        r = FeedRunner(proto, ping_interval=None)
        pump(r, lambda: len(proto.frames) == 2)
        r.close()
    for (_, ts), (w, _) in zip(proto.frames, srv.writes):
        assert w <= ts <= min(p for p in parsed_at if p >= ts)


@pytest.mark.parametrize("when", ["with the handshake response", "later"])
def test_the_servers_pings_are_answered_from_the_polling_thread(when):
    ping = frame(b"hb-1", Opcode.PING) + frame("x")
    with (RawWsServer(first=ping) if when != "later" else RawWsServer([0.05, ping])) as srv:
        proto = Script(srv.url, subscribe=None)
        r = FeedRunner(proto, ping_interval=None)
        pump(r, lambda: any(f.opcode is Opcode.PONG for f in srv.received), timeout_s=3)
        r.close()
    assert [f.data for f in srv.received if f.opcode is Opcode.PONG] == [b"hb-1"]
    assert [d for d, _ in proto.frames] == ["x"]  # pings are not messages


def test_a_peer_that_stops_answering_pings_is_dropped_and_reconnected():
    with RawWsServer([frame("hello")]) as srv:  # never answers a ping
        proto = Script(srv.url, subscribe=None)
        r = FeedRunner(proto, ping_interval=0.05, ping_timeout=0.2, silent_s=None, backoff_s=0.01)
        pump(r, lambda: len(srv.connections) >= 2)
        r.close()
    assert 0.25 <= srv.connections[1] - srv.connections[0] < 1.0  # a ping, no pong within 0.2 s
    assert sum(f.opcode is Opcode.PING for f in srv.received) >= 1 and r.drops >= 1


def test_a_parked_loop_sleeps_while_a_ping_goes_unanswered():
    bell = Doorbell()
    with RawWsServer([frame("hello")]) as srv:  # never answers a ping
        r = FeedRunner(Script(srv.url, subscribe=None), ping_interval=0.05, ping_timeout=None, silent_s=None,
                       doorbell=bell)
        passes, end = 0, time.monotonic() + 0.5
        while time.monotonic() < end:  # an idle Feed's loop
            r.poll(64, 0)
            bell.wait(0.1)
            passes += 1
        r.close()
    assert sum(f.opcode is Opcode.PING for f in srv.received) == 1 and len(srv.connections) == 1
    assert passes < 30  # woken by the timer, not spinning on an overdue ping


def test_malformed_frames_are_counted_and_never_stop_the_feed():
    bad_utf8 = frame(b"\xff\xfe", Opcode.TEXT)
    reserved_opcode = bytes([0x83, 0])  # FIN + opcode 3: breaks the WebSocket protocol
    with RawWsServer([frame("a"), bad_utf8, frame("b"), 0.05, reserved_opcode]) as srv:
        proto = Script(srv.url, subscribe=None)
        r = FeedRunner(proto, ping_interval=None, backoff_s=0.01)
        pump(r, lambda: len(srv.connections) >= 2 and len(proto.frames) >= 4)
        r.close()
    # The undecodable message is skipped, the connection lives on until the broken frame.
    assert [d for d, _ in proto.frames][:4] == ["a", "b", "a", "b"]
    assert r.stats()["bad_frames"] >= 3 and r.drops >= 1  # 1 + 1 on the first connection, 1 more on the next


@pytest.mark.parametrize("answer", [b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
                                    b"\x00\x01 not HTTP at all\r\n\r\n", None],
                         ids=["status", "garbage", "silence"])
def test_broken_handshakes_are_counted_and_retried(answer):
    with RawWsServer(handshake=answer) as srv:
        proto = Script(srv.url)
        r = FeedRunner(proto, open_timeout=0.1, backoff_s=0.01, backoff_max_s=0.02)
        run_for(r, 0.5)
        r.close()
    assert r.connect_errors >= 2 and r.connects == 0 and proto.log == [] and len(srv.connections) >= 2


@pytest.fixture
def tls(tmp_path, monkeypatch):
    """A server context with a fresh self-signed certificate for localhost that clients trust."""
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # read by the default context the runner makes
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def test_wss_frames_larger_than_a_tls_record_and_many_per_read(tls):
    big = "T" * 100_000  # several 16 KB TLS records
    frames = [big] + [f'{{"n":{i}}}' for i in range(50)]
    with WsServer(frames, wait_for_client=1, ssl=tls) as srv:
        proto = Script(srv.url)
        r = FeedRunner(proto, ping_interval=None)
        pump(r, lambda: len(proto.frames) == 51)
        r.close()
    assert srv.received[0] == "sub" and [d for d, _ in proto.frames] == frames


def test_capture_records_both_directions_rest_and_connections(tmp_path):
    with RestServer({"/s?apiKey=k1": b'{"x":1}'}) as rest, WsServer(["f1", b"\x00bin"]) as srv:
        w = CaptureWriter(tmp_path, "t")
        proto = Script(srv.url, subscribe='{"op":"auth","signature":"s3cr3t"}', fetch=rest.url + "/s?apiKey=k1")
        r = FeedRunner(proto, capture=w, ping_interval=None, backoff_s=5)
        pump(r, lambda: len(proto.frames) == 2 and proto.rest)
        r.close()  # records the CLOSE
        w.close()
    recs = list(CaptureReader(tmp_path))
    kinds = [x.kind for x in recs]
    assert kinds[0] == Kind.OPEN and recs[0].meta == srv.url and Kind.CLOSE in kinds
    assert [x.data for x in recs if x.kind == Kind.RECV] == ["f1", b"\x00bin"]
    assert [x.ts for x in recs if x.kind == Kind.RECV] == [t for _, t in proto.frames]
    (sent,) = [x for x in recs if x.kind == Kind.SENT]
    assert "s3cr3t" not in sent.data and '"op":"auth"' in sent.data
    (got,) = [x for x in recs if x.kind == Kind.REST]
    assert got.data == b'{"x":1}' and got.status == 200 and "k1" not in got.meta
    assert {x.conn for x in recs} == {1}
    raw = b"".join(p.read_bytes() for p in w.files)
    assert b"s3cr3t" not in raw  # compressed bytes too (the chunks hold no plain copy)


class EchoingRest:
    """Refuses every GET with a venue-style error body that echoes the request's secrets back, and
    records the headers it was sent."""

    def __init__(self, body: bytes):
        self.headers: list = []  # each request's headers (names case-insensitive)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.headers.append(self.headers)
                self.send_response(400)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_secrets_never_reach_the_logs_the_capture_files_or_raised_errors(tmp_path, caplog):
    """A listenKey in the WebSocket URL's path, an API key header, a signed subscription and a signed
    GET the venue refuses (echoing the secrets), a connection refused at a secret URL, a fetch of a
    malformed secret URL, a client error carrying one: the venue gets the secrets, nothing written
    or raised shows them."""
    caplog.set_level(logging.DEBUG)  # the WebSocket request line and headers are logged too
    listen_key = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"
    api_key, sig, token = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zv", "c8db56825ae71d6d79447849e617115f", "G38a1tGFzqGiUCmne"
    secrets = (listen_key, api_key, sig, token)
    headers = {"X-MBX-APIKEY": api_key}
    subscribe = (f'{{"method":"userDataStream.subscribe.signature",'
                 f'"params":{{"apiKey":"{api_key}","signature":"{sig}"}}}}')
    echo = f'{{"code":-1022,"msg":"Signature for this request is not valid.","signature":"{sig}","token":"{token}"}}'
    w = CaptureWriter(tmp_path, "t")
    with EchoingRest(echo.encode()) as rest, WsServer(["f1"]) as srv:
        proto = Script(f"{srv.url}/ws/{listen_key}", subscribe=subscribe,
                       fetch=f"{rest.url}/api/v3/account?timestamp=1&signature={sig}")
        r = FeedRunner(proto, capture=w, headers=headers, ping_interval=None, fetch_backoff_s=0.01,
                       fetch_backoff_max_s=0.02)
        pump(r, lambda: r.fetch_errors >= 2 and proto.frames)
        r.close()
        bad = Script(srv.url, subscribe=None, fetch=f"nosuch://h/api?signature={sig}&listenKey={listen_key}")
        r = FeedRunner(bad, capture=w, ping_interval=None, fetch_backoff_s=0.01, fetch_backoff_max_s=0.02)
        pump(r, lambda: r.fetch_errors >= 1)
        r.close()
        dead = f"{srv.url}/ws/{listen_key}"
    assert srv.received[0] == subscribe and rest.headers[0]["X-MBX-APIKEY"] == api_key  # the venue got them
    r = FeedRunner(Script(dead), capture=w, headers=headers, backoff_s=0.01, backoff_max_s=0.02)
    run_for(r, 0.2)  # refused: logged with its URL, retried
    r.close()
    w.close()
    with pytest.raises(Exception) as raised:
        WsClient(f"nosuch://127.0.0.1/ws/{listen_key}?signature={sig}", headers=headers)
    assert r.connect_errors >= 1 and bad.rest == [] and proto.rest == []
    # Ours: the test's own servers log what they receive (websockets.server) and are no part of it.
    logged = "\n".join(caplog.handler.format(x) for x in caplog.records if x.name.startswith("mantra"))
    written = [logged, repr(list(CaptureReader(tmp_path))), str(raised.value), repr(raised.value)]
    for f in w.files:
        written.append(f.read_bytes().decode("latin-1"))
        with zstandard.ZstdDecompressor().stream_reader(f.open("rb"), read_across_frames=True) as z:
            written.append(z.read().decode("latin-1"))
    for text in written:
        for s in secrets:
            assert s not in text
    # Not vacuous: each path was taken, and logged what it should.
    assert "cannot connect to ws://127.0.0.1" in logged and "/ws/***" in logged and "> X-MBX-APIKEY: ***" in logged
    assert "GET http://127.0.0.1" in logged and "signature=***" in logged and "HTTP 400" in logged
    assert "unknown url type" in logged and "Signature for this request is not valid" in logged
