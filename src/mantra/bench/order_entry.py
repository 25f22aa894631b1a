"""`mantra bench order-entry`: what an order costs in the account handler, and its round trip.

Per venue with order entry, its simulator runs as a child process on loopback (its rate limits
raised so the run measures the handler, not the venue's throttle) and the real handler — the
venue's order protocol under the shared ``AccountRunner`` — places ``messages`` post-only orders
below the market and cancels each once acknowledged, one at a time:

- ``handler_p50_us`` / ``handler_p99_us``: ``OrderRequest`` handed to the runner → its bytes
  written to the socket, signing included (``AccountRunner.handler_ns``);
- ``round_trip_p50_us`` / ``_p99_us``: the same start → the venue's acknowledgement received (its
  receipt stamp), through the simulator's WebSocket, matching engine and back;
- ``burst_handler_p50_us`` / ``_p99_us``: the handler's time when requests come back to back
  (``BURST`` new orders, then their cancels, as a model re-quoting several levels sends them): the
  path warm in the caches.  One request at a time after an idle wait costs about twice as much
  (caches and the branch predictor gone cold); over loopback, the ``send`` itself also runs the
  receiving side's TCP stack on our core, which a real network interface does not;
- baseline, measured in the same run: ``hmac_sha256_us``, one HMAC-SHA256 hex digest of a
  200-byte order payload (what signing a request costs at the least on an HMAC venue), and
  ``handler_vs_hmac``, the handler's p50 over it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time

import numpy as np

from ..execution import secrets
from ..execution.actor import PROTOCOLS, protocol_class
from ..execution.runner import AccountRunner
from ..instruments import InstrumentRegistry
from ..spine.messages import OrderAction, OrderFlags, OrderRequest, OrderStatus, OrderUpdate
from ..sim import account_options, spawn, stop_spawned

OPTIONS = {"messages"}
BURST = 20
# the venue throttles we lift for the measurement (simulator settings, protocol settings)
UNLIMITED = {"kraken": ({"rate_threshold": 1e9}, {"rate_threshold": 1e9}),
             "binance": ({"orders_10s": 10**9, "weight_limit": 10**9}, {"orders_10s": 10**9, "orders_day": 10**9,
                                                                        "weight_limit": 10**9}),
             "coinbase": ({"rest_rate_per_s": 10**9}, {"rest_limit_per_s": 10**9}),
             "bitstamp": ({"rate_per_s": 10**9, "rate_per_10min": 10**9},) * 2,
             "bitfinex": ({"orders_per_5min": 10**9}, {"orders_per_5min": 10**9, "rest_per_min": 10**9})}


def _pct(ns: list[int]) -> tuple[float, float]:
    a = np.array(ns, dtype=np.float64) / 1000
    return round(float(np.percentile(a, 50)), 2), round(float(np.percentile(a, 99)), 2)


def _hmac_us(n: int = 20_000) -> float:
    key, msg = os.urandom(64), os.urandom(200)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        hmac.new(key, msg, hashlib.sha256).hexdigest()
    return (time.perf_counter_ns() - t0) / n / 1000


def _venue(venue: str, n: int) -> dict:
    from importlib import import_module

    secrets.for_simulator(venue)
    sim_settings, proto_settings = UNLIMITED.get(venue, ({}, {}))
    listing = import_module(f"mantra.sim.{venue}").LISTINGS[0]
    inst = listing.instrument(venue, InstrumentRegistry())
    procs, urls = spawn({venue: {"seed": 1, "rate": 20, "settings": sim_settings,
                                 "balances": {inst.base: "1000", inst.quote: "100000000"}}})
    got: dict[int, int] = {}  # order id -> receipt ns of its first acknowledgement

    def sink(m, ts):
        if type(m) is OrderUpdate and m.status in (OrderStatus.ACK, OrderStatus.OPEN, OrderStatus.CANCELLED):
            got.setdefault((m.order_id, m.status == OrderStatus.CANCELLED), ts)

    try:
        proto = protocol_class(venue)(secrets.load(venue), [inst], **account_options(venue, urls[venue]),
                                      **proto_settings)
        runner = AccountRunner(proto, sink, timing=True, loopback_only=True)
        runner.start()
        end = time.monotonic() + 10
        while time.monotonic() < end and not runner.conns or any(c.ws is None for c in runner.conns.values()):
            runner.poll(0.01)
        deadline = time.monotonic() + 3  # the start's reconciliation answers
        while time.monotonic() < deadline:
            runner.poll(0.01)
        price = int(inst.price(listing.start) * 0.9) // inst.tick * inst.tick  # rests, never fills
        # the smallest size the venue takes at that price (min size, lot, min notional)
        size = max(inst.min_size, inst.lot, -(-inst.min_notional * 10**inst.size_scale // price))
        size = -(-size // inst.lot) * inst.lot
        rtt, lost = [], 0
        oid = 1_000_000
        runner.handler_ns.clear()
        for i in range(n):
            oid += 2
            t0 = _now()
            runner.submit(OrderRequest(oid, 0, price, size, inst.id, 0, 0, int(OrderAction.NEW), 1,
                                       int(OrderFlags.POST_ONLY)))
            if not _wait(runner, got, (oid, False)):
                lost += 1
                continue
            rtt.append(got[(oid, False)] - t0)
            runner.submit(OrderRequest(oid + 1, oid, 0, 0, inst.id, 0, 0, int(OrderAction.CANCEL), 1, 0))
            _wait(runner, got, (oid, True))
        single = list(runner.handler_ns)
        # bursts: BURST orders back to back (a model re-quoting several levels), then their cancels
        runner.handler_ns.clear()
        for b in range(max(n // BURST, 1)):
            ids = [oid + 2 * (i + 1) for i in range(BURST)]
            oid = ids[-1]
            for i in ids:
                runner.submit(OrderRequest(i, 0, price, size, inst.id, 0, 0, int(OrderAction.NEW), 1,
                                           int(OrderFlags.POST_ONLY)))
            for i in ids:
                _wait(runner, got, (i, False))
            for i in ids:
                runner.submit(OrderRequest(i + 1, i, 0, 0, inst.id, 0, 0, int(OrderAction.CANCEL), 1, 0))
            for i in ids:
                _wait(runner, got, (i, True))
        burst = list(runner.handler_ns)
        runner.close()
    finally:
        stop_spawned(procs)
    h50, h99 = _pct(single)
    b50, b99 = _pct(burst)
    r50, r99 = _pct(rtt) if rtt else (None, None)
    return {"orders": n, "answered": len(rtt), "unanswered": lost, "handler_p50_us": h50, "handler_p99_us": h99,
            "round_trip_p50_us": r50, "round_trip_p99_us": r99,
            "burst_handler_p50_us": b50, "burst_handler_p99_us": b99}


def _wait(runner: AccountRunner, got: dict, key, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while key not in got and time.monotonic() < end:
        runner.poll(0.005)
    return key in got


def _now() -> int:
    from .. import _spine

    return _spine.now()


def run(messages: int = 2000) -> dict:
    base = _hmac_us()
    out = {"bench": "order-entry", "hmac_sha256_us": round(base, 3), "target_handler_p50_us": 25}
    for venue in PROTOCOLS:
        r = _venue(venue, messages)
        r["handler_vs_hmac"] = round(r["handler_p50_us"] / base, 2)
        out[venue] = r
    return out
