"""Venue simulators driven from outside their process: a fault schedule (the command line's
``--fault``) and the loopback control paths a drill uses (faults, pause/resume, the truth)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from urllib.error import HTTPError

import pytest

from mantra.fixed import to_fixed
from mantra.sim import fault_option, make_simulator, parse_fault
from waits import wait_for


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_scheduled_fault_is_injected_at_its_time():
    with make_simulator("coinbase", seed=2, rate=50, faults=[(0.2, "drop", "3"), (0.3, "malformed", None)]) as sim:
        assert wait_for(lambda: sim.injected == {"drop": 1, "malformed": 1})
        assert sim._drop == 3  # nobody subscribed: the three frames are still to be lost


def test_control_paths_inject_pause_and_show_the_truth():
    with make_simulator("kraken", seed=3, rate=100) as sim:
        assert get(f"{sim.rest_url}/__sim/fault/disconnect")[0] == 200
        assert sim.injected["disconnect"] == 1
        status, body = get(f"{sim.rest_url}/__sim/pause")
        assert status == 200
        steps = sim.steps
        status, book = get(f"{sim.rest_url}/__sim/book/BTC/USD")
        assert status == 200 and book["steps"] == steps
        inst = sim.instruments["BTC/USD"]
        truth = sim.book("BTC/USD")
        assert [(to_fixed(p, inst.price_scale), to_fixed(q, inst.size_scale)) for p, q in book["bids"]] \
            == truth.top(1, 10**9)
        assert [(to_fixed(p, inst.price_scale), to_fixed(q, inst.size_scale)) for p, q in book["asks"]] \
            == truth.top(-1, 10**9)
        assert get(f"{sim.rest_url}/__sim/resume")[0] == 200
        assert wait_for(lambda: sim.steps > steps)
        # control requests are never rate limited nor counted as the venue's REST traffic
        assert not any(p.startswith("/__sim") for p in sim.rest_requests)


@pytest.mark.parametrize("path,why", [("fault/nope", "unknown simulator fault"),
                                      ("fault/drop?arg=x", "not a number"),
                                      ("fault/disconnect?arg=2", "takes no argument"),
                                      ("fault/reconnect_request", "no reconnect request"),
                                      ("book/NOPE", "NOPE"),
                                      ("explode", "no control path")])
def test_bad_control_requests_get_a_clear_error(path, why):
    with make_simulator("coinbase", seed=1, rate=10) as sim:
        status, body = get(f"{sim.rest_url}/__sim/{path}")
        assert status in (400, 404) and why in body["error"]
        assert sim.injected == {}


def test_fault_options_are_checked():
    assert fault_option("5:drop:3") == (5.0, "drop", 3)
    assert fault_option("1.5:disconnect") == (1.5, "disconnect", None)
    assert parse_fault("slow", "0.5") == ("slow", 0.5)
    for bad in ("x:drop", "5:nope", "5:drop:-1", "5:drop:99999", "5:malformed:2"):
        with pytest.raises(ValueError):
            fault_option(bad)


def test_the_command_line_schedule_reaches_the_simulator():
    p = subprocess.run([sys.executable, "-m", "mantra.sim", "bitfinex", "--fault", "nonsense"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "SECONDS:NAME" in p.stderr
    p = subprocess.Popen([sys.executable, "-m", "mantra.sim", "bitfinex", "--rate", "20",
                          "--lifetime", "30", "--fault", "0.1:corrupt_checksum"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        rest = line.split()[4]
        assert wait_for(lambda: get(f"{rest}/__sim/pause")[1]["injected"] == {"corrupt_checksum": 1}, 10)
    finally:
        p.terminate()
        p.wait(10)
        p.stdout.close()
        p.stderr.close()
