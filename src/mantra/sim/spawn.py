"""Simulators by venue name, as child processes, and ``python -m mantra.sim <venue>``.

The demo, the drill and a system's ``[simulators.<venue>]`` tables run simulators as processes of
their own (never threads of a process the supervisor forks); ``spawn`` starts them and reads back
the URLs each prints, ``feed_options`` points a Feed at one.
"""

from __future__ import annotations

import json
import logging

from .faults import FAULTS, fault_option
from .market import ReplayMarket
from .server import VenueSimulator

# -- by venue name ---------------------------------------------------------------------------------
SIMULATORS = {
    "binance": ("mantra.sim.binance", "BinanceSimulator"),
    "bitstamp": ("mantra.sim.bitstamp", "BitstampSimulator"),
    "bitfinex": ("mantra.sim.bitfinex", "BitfinexSimulator"),
    "coinbase": ("mantra.sim.coinbase", "CoinbaseSimulator"),
    "kraken": ("mantra.sim.kraken", "KrakenSimulator"),
}


def make_simulator(venue: str, replay=None, speed: float = 1.0, **opts) -> VenueSimulator:
    """A (not yet started) simulator for ``venue``: synthetic, or re-serving the ``replay`` files."""
    import importlib

    try:
        module, name = SIMULATORS[venue.lower()]
    except KeyError:
        raise ValueError(f"unknown venue {venue!r}; known: {', '.join(SIMULATORS)}") from None
    source = ReplayMarket(venue.lower(), replay, speed=speed) if replay else None
    return getattr(importlib.import_module(module), name)(source, **opts)


# -- as child processes (the demo, the drill, a system's [simulators]) ------------------------------
def spawn(venues: dict[str, dict], log_path=None) -> tuple[list, dict]:
    """One simulator process per venue: ``{venue: {seed, rate, levels, lifetime, faults, balances}}``
    (faults: ``[(seconds, name, arg or None), ...]``; balances: the account's, ``{asset: "amount"}``).
    A simulator with order entry accepts the key in ``MANTRA_<VENUE>_API_KEY`` / ``_API_SECRET`` of
    the environment (the variables the account handlers read), when set.  Returns (processes, venue -> {ws, rest, symbols}).
    Each dies with this process, however it ends (SIGKILL included); stop them with ``stop_spawned``.
    Their logs go to ``log_path`` (default: this process's stderr)."""
    import functools
    import os
    import subprocess
    import sys

    from ..runtime.supervisor import die_with_parent

    procs, urls = [], {}
    log = open(log_path, "ab") if log_path else None
    try:
        for venue, o in venues.items():
            cmd = [sys.executable, "-m", "mantra.sim", venue, "--port", "0",
                   "--seed", str(o.get("seed", 1)), "--rate", str(o.get("rate", 50.0)),
                   "--levels", str(o.get("levels", 20)), "--lifetime", str(o.get("lifetime", 3600.0))]
            for at, name, arg in o.get("faults", ()):
                cmd += ["--fault", f"{at}:{name}" + ("" if arg is None else f":{arg}")]
            for asset, amount in (o.get("balances") or {}).items():
                cmd += ["--balance", f"{asset}={amount}"]
            for name, value in (o.get("settings") or {}).items():
                cmd += ["--set", f"{name}={json.dumps(value)}"]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                                          start_new_session=True,  # Ctrl-C is the parent's to handle
                                          preexec_fn=functools.partial(die_with_parent, os.getpid())))
        for venue, p in zip(venues, procs):
            line = p.stdout.readline()  # "VENUE: ws URL  rest URL  instruments A, B, C"
            if not line.startswith(f"{venue}: ws "):
                raise RuntimeError(f"{venue} simulator did not start (see {log_path or 'its log'}): {line!r}")
            head, _, insts = line.strip().partition("  instruments ")
            parts = head.split()
            urls[venue] = {"ws": parts[2], "rest": parts[4], "symbols": insts.split(", ")}
    except BaseException:
        stop_spawned(procs)
        raise
    finally:
        if log:
            log.close()
    return procs, urls


def stop_spawned(procs: list) -> None:
    import subprocess

    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout:
            p.stdout.close()


def account_options(venue: str, urls: dict) -> dict:
    """A VenueAccount's protocol options pointing at a spawned simulator."""
    return {"ws_url": urls["ws"], "rest_url": urls["rest"]}


def feed_options(venue: str, urls: dict) -> dict:
    """A Feed's protocol options pointing at a spawned simulator."""
    if venue in ("binance", "bitstamp"):  # WebSocket diffs + REST snapshots
        return {"ws_url": urls["ws"], "rest_url": urls["rest"]}
    return {"url": urls["ws"]}


ORDER_ENTRY = ("binance", "kraken", "coinbase", "bitstamp", "bitfinex")  # simulators that take credentials and balances


def account_settings(venue: str, balances: list[str]) -> dict:
    """The account of a simulator with order entry: the key from the environment (if set) and
    ``ASSET=AMOUNT`` balances."""
    import os

    from ..execution.secrets import env_names

    if venue not in ORDER_ENTRY:
        if balances:
            raise SystemExit(f"--balance: the {venue} simulator has no order entry")
        return {}
    out: dict = {}
    k, s, _ = env_names(venue)
    if os.environ.get(k) and os.environ.get(s):
        out["credentials"] = {os.environ[k]: os.environ[s]}
    if balances:
        try:
            out["balances"] = dict(b.split("=", 1) for b in balances)
        except ValueError:
            raise SystemExit(f"--balance: expected ASSET=AMOUNT, not {balances}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mantra.sim",
                                 description="Serve a venue's market-data protocol on loopback.")
    ap.add_argument("venue", choices=sorted(SIMULATORS))
    ap.add_argument("--port", type=int, default=0, help="WebSocket port (default: any free port)")
    ap.add_argument("--rest-port", type=int, default=0, help="REST port (default: any free port)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=50.0, help="synthetic messages per second")
    ap.add_argument("--levels", type=int, default=20, help="synthetic levels per side")
    ap.add_argument("--replay", nargs="+", metavar="FILE", help="re-serve these recordings instead")
    ap.add_argument("--speed", type=float, default=1.0, help="replay speed factor")
    ap.add_argument("--lifetime", type=float, default=3600.0, help="stop after this many seconds")
    ap.add_argument("--fault", action="append", default=[], metavar="SECONDS:NAME[:ARG]",
                    help=f"inject a fault at that time after start (repeatable); names: {', '.join(FAULTS)}")
    ap.add_argument("--balance", action="append", default=[], metavar="ASSET=AMOUNT",
                    help="the account's balance of ASSET (repeatable; venues with order entry)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="another setting of the venue's simulator (VALUE as JSON), e.g. rate_threshold=1e9")
    args = ap.parse_args(argv)
    try:
        faults = [fault_option(f) for f in args.fault]
    except ValueError as e:
        ap.error(str(e))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    opts = account_settings(args.venue, args.balance)
    for item in args.set:
        name, eq, value = item.partition("=")
        try:
            opts[name] = json.loads(value) if eq else None
        except ValueError:
            ap.error(f"--set {item}: VALUE must be JSON (a number, true/false, or a quoted string)")
    sim = make_simulator(args.venue, args.replay, args.speed, seed=args.seed, rate=args.rate, levels=args.levels,
                         port=args.port, rest_port=args.rest_port, lifetime_s=args.lifetime, faults=faults, **opts)
    with sim:
        print(f"{args.venue}: ws {sim.ws_url}  rest {sim.rest_url}  instruments {', '.join(sim.instruments)}",
              flush=True)
        try:
            while not sim._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
    return 0

