"""The UI's HTTP API over a real server: what the page reads, and what it must refuse."""

import http.client
import json
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

from mantra.instruments import InstrumentRegistry
from mantra.spine.messages import L2Update
from mantra.store.segments import SegmentWriter
from mantra.ui.recording import NotARecording, open_recording
from mantra.ui.series import decode, decode_all
from mantra.ui.server import RemoteRefused, Source, UiServer
from mantra.ui.view import View

from .test_ui_view import T0, recs


def l2_rows(n):
    """A book whose best bid walks up a tick per message (one bid level and one fixed ask)."""
    rows = [dict(instrument=1, side=-1, price=1000_00, size=5, flags=4 | 2)]
    rows += [dict(instrument=1, side=1, price=100_00 + i, size=1 + i % 3, flags=1) for i in range(n)]
    return recs(L2Update, rows)


@pytest.fixture
def server():
    reg = InstrumentRegistry()
    reg.add("binance", "BTCUSDT", price_scale=2, size_scale=5, base="BTC", quote="USDT")
    v = View(reg)
    v.ingest("l2", l2_rows(20_000), L2Update)
    s = UiServer(Source(v, "unit"), "127.0.0.1", 0).start()
    yield s
    s.close()


def get(url, headers=None):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
        return r.status, r.headers, r.read()


def test_meta_state_book_and_series(server):
    _, h, body = get(server.url + "api/meta")
    meta = json.loads(body)
    assert meta["mode"] == "recording" and meta["system"] == "unit"
    assert meta["instruments"][0]["symbol"] == "BTCUSDT" and {"key": "top/1", "kind": "line", "cols": ["bid", "ask"]} \
        in meta["series"]
    st = json.loads(get(server.url + "api/state")[2])
    assert st["t_max_ns_s"] == str(T0 + 20_000 * 1000) and st["books"][0]["updates"] == 20_001
    book = json.loads(get(server.url + "api/book?inst=1&depth=1")[2])
    assert book["bids"] == [["299.99", "0.00002"]] and book["asks"] == [["1000.00", "0.00005"]]
    # the whole series at 300 px: decimated, every pixel column's min and max
    _, h, raw = get(server.url + "api/series?key=top/1&width=300")
    head, t, (bid, ask) = decode(raw)
    assert h["Content-Type"] == "application/octet-stream" and head["decimated"] and head["total"] == 20_000
    assert len(t) <= 600 and bid.min() == 100_00 and bid.max() == 100_00 + 19_999 and (ask == 1000_00).all()
    # a zoom re-queries a range: finer data, the range's own rows only (one either side)
    t0, t1 = T0 + 1_000_000, T0 + 1_100_000
    head, t, (bid, _) = decode(get(server.url + f"api/series?key=top/1&t0={t0}&t1={t1}&width=300")[2])
    assert not head["decimated"] and len(t) == 103 and t[1] == t0 and t[-2] == t1
    head, t, cols = decode(get(server.url + "api/series?key=nothing/9")[2])
    assert head["n"] == 0 and cols == []


def test_several_series_in_one_request(server):
    """A panel asks for all its series over one range in one round trip: the answers concatenated,
    each as ``key=`` gives it (an unknown key answers empty)."""
    t0, t1 = T0 + 1_000_000, T0 + 1_100_000
    q = f"t0={t0}&t1={t1}&width=300"
    _, h, raw = get(server.url + f"api/series?keys=top/1,nothing/9,top/1&{q}")
    got = decode_all(raw)
    assert [head["key"] for head, _, _ in got] == ["top/1", "nothing/9", "top/1"]
    one = get(server.url + f"api/series?key=top/1&{q}")[2]
    assert raw.startswith(one) and got[1][0]["n"] == 0 and got[2][1].tolist() == got[0][1].tolist()
    # a live tail: each key from its own last row, at its own width
    late = T0 + 19_990 * 1000
    got = decode_all(get(server.url + f"api/series?keys=top/1,top/1&t0={late},{t0}&width=1000,5")[2])
    assert got[0][1][1] == late and got[0][0]["total"] == 12 and not got[0][0]["decimated"]
    assert got[1][0]["decimated"] and len(got[1][1]) <= 10 and got[1][0]["t0_ns_s"] == str(t0)
    with pytest.raises(urllib.error.HTTPError) as e:
        get(server.url + "api/series?keys=top/1,top/1,top/1&t0=1,2")
    assert e.value.code == 400
    st = json.loads(get(server.url + "api/state")[2])
    assert st["series_n"] == {"top/1": 20_000}


def test_series_are_answered_while_the_view_grows(server):
    """Decimation runs outside the server's lock on a snapshot: answers taken while the actor
    appends (under the lock) are whole and consistent, and never wait for a long query."""
    import threading

    src, stop, seen = server.source, threading.Event(), []
    s = src.view.series["top/1"]

    def grow():
        t = int(s.t[s.n - 1])
        while not stop.is_set():
            with src.lock:  # as the actor's drain does
                s.append(np.arange(t + 1, t + 5001), np.full(5000, 7.0), np.full(5000, 8.0))
            t += 5000
            stop.wait(0.002)

    th = threading.Thread(target=grow)
    th.start()
    try:
        for _ in range(30):
            head, t, (bid, ask) = decode(get(server.url + "api/series?key=top/1&width=200")[2])
            assert head["decimated"] and (np.diff(t) >= 0).all() and len(t) <= 400 and len(bid) == len(t)
            assert bid.max() == 100_00 + 19_999 and ask.min() == 8.0 or head["total"] == 20_000
            seen.append(head["total"])
    finally:
        stop.set()
        th.join()
    assert seen[-1] > seen[0]


def test_the_ui_is_read_only_and_answers_bad_requests_clearly(server):
    for method in ("POST", "PUT", "DELETE"):
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        c.request(method, "/api/state", body=b"{}")
        assert c.getresponse().status == 405
    for path, code in (("api/series", 400), ("api/series?key=top/1&t0=abc", 400), ("api/nope", 404),
                       ("../../etc/passwd", 404), ("%2e%2e/%2e%2e/etc/passwd", 404), ("nothere.js", 404)):
        with pytest.raises(urllib.error.HTTPError) as e:
            get(server.url + path)
        assert e.value.code == code, path
        assert "error" in json.loads(e.value.read())


def test_a_page_elsewhere_cannot_read_it_through_a_rebound_name(server):
    with pytest.raises(urllib.error.HTTPError) as e:
        get(server.url + "api/state", {"Host": f"attacker.example:{server.port}"})
    assert e.value.code == 403
    assert get(server.url + "api/state", {"Host": f"localhost:{server.port}"})[0] == 200


def test_another_address_needs_the_flag_and_then_the_token():
    v = View(InstrumentRegistry())
    with pytest.raises(RemoteRefused, match="--remote"):
        UiServer(Source(v, "x"), "0.0.0.0", 0)
    s = UiServer(Source(v, "x"), "0.0.0.0", 0, remote=True).start()
    try:
        assert "?token=" in s.url and len(s.token) >= 20
        base = f"http://127.0.0.1:{s.port}/"
        for bad in ("api/state", "api/state?token=wrong", "index.html"):
            with pytest.raises(urllib.error.HTTPError) as e:
                get(base + bad)
            assert e.value.code == 403
        status, h, _ = get(base + f"api/state?token={s.token}")
        cookie = h["Set-Cookie"].split(";")[0]
        assert status == 200 and "HttpOnly" in h["Set-Cookie"]
        assert get(base + "api/meta", {"Cookie": cookie})[0] == 200  # the page's later requests
    finally:
        s.close()


def write_recording(root, rows, reg):
    w = SegmentWriter(root / "l2" / f"{T0}.seg", "l2", L2Update)
    for i in range(0, len(rows), 5000):
        w.append(rows[i:i + 5000])
    w.close()
    reg.save(root / "instruments.json")
    (root / "system.json").write_text(json.dumps({"name": "rec", "queues": {"l2": {"type": "L2Update"}},
                                                  "actors": {"feed": {"id": 1}}}))


def test_a_recording_opens_as_the_same_view_a_live_run_files(tmp_path):
    reg = InstrumentRegistry()
    reg.add("binance", "BTCUSDT", price_scale=2, size_scale=5, base="BTC", quote="USDT")
    rows = l2_rows(12_000)
    write_recording(tmp_path, rows, reg)
    view, info = open_recording(tmp_path)
    live = View(reg)
    live.ingest("l2", rows, L2Update)
    assert info == {"system": "rec", "queues": ["l2"], "records": 12_001, "damage": 0}
    a, b = view.series["top/1"], live.series["top/1"]
    assert a.n == b.n == 12_000 and (a.v[:, :a.n] == b.v[:, :b.n]).all() and (a.t[:a.n] == b.t[:b.n]).all()
    r = view.series["rate/l2"]
    assert r.v[0, :r.n].sum() == 12_001  # records per second add up to the recording
    with pytest.raises(NotARecording, match="no recorded queues"):
        open_recording(tmp_path / "l2")


def test_mantra_ui_serves_a_recording_and_refuses_a_remote_host_without_the_flag(tmp_path):
    reg = InstrumentRegistry()
    reg.add("binance", "BTCUSDT", price_scale=2, size_scale=5)
    write_recording(tmp_path, l2_rows(100), reg)
    bad = subprocess.run([sys.executable, "-m", "mantra.cli", "ui", "--data", str(tmp_path), "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--remote" in bad.stderr
    p = subprocess.Popen([sys.executable, "-m", "mantra.cli", "ui", "--data", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = p.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        assert json.loads(get(url + "api/meta")[2])["system"] == "rec"
        assert b"<html" in get(url)[2].lower()
    finally:
        p.terminate()
        p.wait(10)
    assert p.returncode in (0, -15)
