"""A system in sim mode: the real Kraken account handler against the local Kraken simulator, under
the supervisor.  The handler's process is killed (SIGKILL) mid-run and restarted: it reconciles with
the venue and carries on, and no order is ever placed twice; what we recorded equals the venue's
truth."""

import base64
import json
import os
import signal
import time
import urllib.request
from decimal import Decimal

import numpy as np

from mantra.cli import main
from mantra.runtime.config import parse
from mantra.runtime.supervisor import Supervisor
from mantra.spine.messages import OrderAction, OrderStatus
from mantra.store import segments
from mantra.venues.account import client_id

INST = {"venue": "kraken", "symbol": "BTC/USD", "base": "BTC", "quote": "USD", "price_scale": 1, "size_scale": 8,
        "tick": "0.1", "lot": "0.00000001", "min_size": "0.0001", "min_notional": "0.5"}


def system(out):
    q = lambda t, c=4096: {"type": t, "capacity": c}  # noqa: E731
    return {
        "system": {"name": "simmode", "mode": "sim", "instruments": [INST]},
        "simulators": {"kraken": {"seed": 7, "rate": 40, "balances": {"BTC": "0.5", "USD": "20000"}}},
        "queues": {"l2": {**q("L2Update", 1 << 15), "mpmc": True}, "trades": q("TradeUpdate"),
                   "book_status": q("BookStatus"), "requests": q("OrderRequest"), "updates": q("OrderUpdate"),
                   "fills": q("Fill"), "balances": q("BalanceUpdate")},
        "arrays": {"mm_ideal": {"type": "IdealOrder", "size": 2}},
        "actors": {
            "feed": {"class": "mantra.feeds.actor:Feed", "params": {"venue": "kraken", "symbols": ["BTC/USD"]},
                     "outputs": {"l2": "l2", "trades": "trades", "status": "book_status"}},
            # quotes at the touch so that the market's trades fill it
            "mm": {"class": "mantra.trading.models.market_maker:MarketMaker",
                   "inputs": {"l2": "l2", "requests": "requests", "updates": "updates", "fills": "fills"},
                   "arrays": {"ideal": "mm_ideal"},
                   "params": {"instrument": "kraken:BTC/USD", "spread": "0.2", "size": "0.001", "skew": "0",
                              "max_inventory": "0.01", "refresh": "0.5", "instruments": []}},
            "overseer": {"class": "mantra.trading.overseer:Overseer",
                         "inputs": {"updates": "updates", "fills": "fills", "balances": "balances"},
                         "outputs": {"requests": "requests"}, "arrays": {"mm": "mm_ideal"},
                         "params": {"models": ["mm"], "instruments": [],
                                    "venues": {"kraken": {"fee_bps": 26, "amend": True, "rate": 1,
                                                          "rate_window_ms": 1000}},
                                    "limits": {"kraken:BTC/USD": {"max_position": "0.01", "max_notional": "1000"}}}},
            "orders": {"class": "mantra.execution.actor:VenueAccount",
                       "inputs": {"requests": "requests"},
                       "outputs": {"updates": "updates", "fills": "fills", "balances": "balances"},
                       "params": {"venue": "kraken", "instruments": [], "wait_ms": 1.0,
                                  "options": {"unknown_orders": "adopt"}}},
            "persister": {"class": "mantra.store.persister:Persister", "params": {"dir": str(out), "flush_ms": 50}},
        },
        "processes": {"md": {"actors": ["feed", "mm", "overseer"]},
                      "orders": {"actors": ["orders"], "restart": "on-failure", "max_restarts": 3},
                      "back": {"actors": ["persister"]}},
    }


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


# A known key: after the session, no output may contain it (logs, the recording, inspect, tail).
KEY = "KNOWN-KEY-4f1c9e"
SECRET = base64.b64encode(b"KNOWN-SECRET-" * 5).decode()


def test_sim_mode_places_real_orders_and_survives_kill_9_of_the_handler(tmp_path, shm_root, monkeypatch, capfd):
    monkeypatch.setenv("MANTRA_KRAKEN_API_KEY", KEY)
    monkeypatch.setenv("MANTRA_KRAKEN_API_SECRET", SECRET)
    spec = parse(system(tmp_path / "rec"))
    sup = Supervisor(spec)
    state = {"t0": time.monotonic(), "killed": 0, "truth": None, "looked": False}

    def tick():
        t = time.monotonic() - state["t0"]
        if not state["looked"] and t > 10:
            state["looked"] = True
            for cmd in (["inspect", "simmode"], ["tail", "simmode", "updates", "-n", "20", "--timeout", "2"],
                        ["tail", "simmode", "balances", "-n", "5", "--timeout", "2", "--raw"]):
                assert main(cmd) == 0
        if not state["killed"] and t > 6:
            pr = sup.procs.get("orders")
            if pr is not None and pr.pid:
                state["killed"] = pr.pid
                os.kill(pr.pid, signal.SIGKILL)
        if state["truth"] is None and t > 15:
            rest = spec.actors["orders"].params["options"]["rest_url"]
            _get(rest + "/__sim/pause")
            time.sleep(1.0)  # the last answers reach us and the persister
            state["truth"] = _get(rest + "/__sim/account")
            sup.stopping = True

    sup.on_tick = tick
    failures = sup.run(duration=17.5)
    assert state["killed"], "the handler's process never ran"
    assert failures <= 1  # the kill, restarted
    truth = state["truth"]
    assert truth is not None
    # nothing the venue accepted was placed twice, and every order it holds is one of ours
    assert truth["placed"] and max(truth["placed"].values()) == 1, truth["placed"]
    rec = tmp_path / "rec"
    req = segments.load(rec, "requests")
    news = req["order_id"][req["action"] == OrderAction.NEW]
    assert len(news) == len(np.unique(news))
    ours = {client_id(int(i)) for i in news}
    assert set(truth["placed"]) <= ours
    # the venue answered: orders acknowledged by the real handler, before and after the restart
    upd = segments.load(rec, "updates")
    assert (upd["status"] == OrderStatus.OPEN).sum() > 0
    assert (upd["status"] == OrderStatus.OPEN)[upd["origin"] > 0].any()
    # every fill recorded once, and our position is the venue's: BTC moved by exactly our fills
    fills = segments.load(rec, "fills")
    keys = {(int(f["order_id"]), int(f["trade_id"])) for f in fills}
    assert len(keys) == len(fills)
    pos = sum(int(f["side"]) * int(f["size"]) for f in fills)
    assert Decimal(truth["balances"]["BTC"]["total"]) - Decimal("0.5") == Decimal(pos) / 10**8
    assert len(fills) == truth["fills"]
    # the secret (and the key) appear nowhere: stdout/stderr of every process, the recording's records
    out, err = capfd.readouterr()
    assert "system simmode" in out  # inspect printed
    for text in (out, err):
        assert SECRET not in text and KEY not in text
    for q in segments.queues(rec):
        raw = segments.load(rec, q).tobytes()
        assert SECRET.encode() not in raw and KEY.encode() not in raw
    for f in rec.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes()
