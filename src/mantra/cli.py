"""The `mantra` command."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"


def cmd_run(a) -> int:
    from .runtime.config import ConfigError, load
    from .runtime.supervisor import Supervisor, run_deterministic

    try:
        spec = load(a.config)  # the whole system checked before anything starts
    except ConfigError as e:
        print(f"mantra run: {e}", file=sys.stderr)
        return 2
    if spec.mode == "live" and not a.live:
        print("mantra run: system.mode is \"live\": it places real orders on real venues; start it with "
              "`mantra run --live`", file=sys.stderr)
        return 2
    if a.live:
        from .execution import live

        err = live.arm(spec)  # credentials checked before anything starts
        if err:
            print(f"mantra run: {err}", file=sys.stderr)
            return 2
    if a.deterministic or spec.clock == "deterministic":
        # --duration is simulated time here; Ctrl-C or SIGTERM stop the run with its summary
        runner = run_deterministic(spec, keep=a.keep, duration_s=a.duration)
        print(f"simulated time: {(runner.clock.now() - 1) / 1e9:.3f} s")
        for s in runner.slots:
            print(f"{s.spec.name}: handled {s.handled}, loops {s.loops}, errors {s.errors}")
        return 128 + runner.signal if runner.signal else 0
    sup = Supervisor(spec, keep=a.keep)
    failures = sup.run(duration=a.duration)
    print(sup.summary.text())
    return 1 if failures else 0


def cmd_demo(a) -> int:
    from . import demo

    return demo.run(duration=a.duration, out=a.out, ui_port=a.port or 0)


def cmd_drill(a) -> int:
    from . import drill

    r = drill.run(a.steps or None, a.out, step_deadline_s=a.deadline)
    print(json.dumps(r, indent=1) if a.json else drill.report(r))
    return 0 if r["ok"] else 1


def cmd_clean(a) -> int:
    """Remove what systems no longer running left in shared memory (a running one is kept)."""
    from .spine import shm

    removed, running = [], []
    for name in shm.systems():
        (removed if shm.remove_system(name) else running).append(name)
    print(f"removed {len(removed)} stopped system(s) from {shm.root()}" + (f": {', '.join(removed)}" if removed else "")
          + (f"; kept running: {', '.join(running)}" if running else ""))
    return 0


def cmd_inspect(a) -> int:
    from .runtime import inspect

    s = inspect.snapshot(inspect.find_system(a.system), sample=a.sample)
    print(json.dumps(s, indent=1) if a.json else inspect.render(s))
    return 0


def cmd_tail(a) -> int:
    from .runtime import inspect

    inspect.tail(inspect.find_system(a.system), a.stream, limit=a.n, timeout=a.timeout, raw=a.raw)
    return 0


def cmd_top(a) -> int:
    from .runtime.inspect import find_system
    from .telemetry import top

    system = find_system(a.system)
    if a.json:
        print(json.dumps(top.read(system)))
    elif a.once:
        print(top.render(system, top.read(system)))
    else:
        top.watch(system, a.interval)
    return 0


def cmd_bench(a) -> int:
    from importlib import import_module

    mod = import_module(f"mantra.bench.{a.what.replace('-', '_')}")
    result = mod.run(**{k: v for k, v in vars(a).items() if k in mod.OPTIONS and v is not None})
    print(json.dumps(result, indent=None if a.json else 1))
    return 0


def cmd_backtest(a) -> int:
    from . import backtest
    from .runtime.config import ConfigError

    try:
        r = backtest.run(a.config, a.data, a.out, progress=not a.json and sys.stderr.isatty(), mark_s=a.mark_every)
    except (ConfigError, backtest.BacktestError) as e:
        print(f"mantra backtest: {e}", file=sys.stderr)
        return 2
    print(json.dumps(r) if a.json else backtest.report(r))
    if a.ui:
        return serve_recording(r["out"], port=a.port or 0)
    return 0


def serve_recording(path, host: str = "127.0.0.1", port: int = 0, remote: bool = False, announce=print) -> int:
    """Serve a recording's UI until Ctrl-C (``mantra ui --data``, ``mantra backtest --ui``)."""
    import time

    from .ui.recording import NotARecording, open_recording
    from .ui.server import RemoteRefused, Source, UiServer

    try:
        view, info = open_recording(path)
        server = UiServer(Source(view, info["system"]), host, port, remote).start()
    except (NotARecording, RemoteRefused) as e:
        print(f"mantra ui: {e}", file=sys.stderr)
        return 2
    announce(server.url)
    print(f"{info['records']} records of {len(info['queues'])} queues from {path}; Ctrl-C stops", file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.close()


def cmd_ui(a) -> int:
    if a.data:
        return serve_recording(a.data, a.host, a.port, a.remote)
    from .runtime.inspect import find_system
    from .ui import actor
    from .ui.server import RemoteRefused

    try:
        ui = actor.attach(find_system(a.system), a.host, a.port, a.remote)
    except RemoteRefused as e:
        print(f"mantra ui: {e}", file=sys.stderr)
        return 2
    print(ui.url, flush=True)
    actor.serve(ui)
    return 0


def cmd_import(a) -> int:
    out = Path(a.out)
    old = [q for q in ("l2", "trades") if any((out / q).glob("*.seg"))]
    if old and not a.overwrite:
        raise SystemExit(f"mantra import: {out} already holds {' and '.join(old)} data; importing again would "
                         "mix two copies. Choose another --out, or pass --overwrite to replace it.")
    for q in old:
        for f in (out / q).glob("*.seg"):
            f.unlink()
    if a.format == "tardis":
        from .store.tardis import TardisError, import_tardis

        try:
            print(json.dumps(import_tardis(a.files, a.out)))
        except TardisError as e:
            raise SystemExit(f"mantra import: {e}") from None
        return 0
    if a.venue:
        from .store.recordings import import_recording

        print(json.dumps(import_recording(a.venue, a.files, a.out, a.format)))
        return 0
    from .store import reference

    f = Path(a.files[0])
    if len(a.files) != 1 or f.suffix != ".npy":
        raise SystemExit(
            f"mantra import: {' '.join(a.files)}: not the reference stream (one .npy file from "
            "gen_l2_dataset.py). Venue recordings need --venue NAME; Tardis.dev CSV files --format tardis; "
            "a .parquet is not importable (use the .npy written beside it)")
    try:
        print(json.dumps(reference.write_segments(f, a.out)))
    except (OSError, ValueError, KeyError) as e:  # numpy refuses pickles and other arrays with ValueError
        raise SystemExit(f"mantra import: {f}: not a readable reference stream: {e}") from None
    return 0


def cmd_export(a) -> int:
    from .store import segments
    from .store.export import to_parquet

    have = segments.queues(Path(a.data)) if Path(a.data).is_dir() else []
    if not have:
        raise SystemExit(f"mantra export: {a.data} holds no recorded queues (a recording or backtest --out directory)")
    unknown = sorted(set(a.queues or ()) - set(have))
    if unknown:
        raise SystemExit(f"mantra export: no queue {', '.join(unknown)} in {a.data}; it has {', '.join(have)}")

    damage: list = []
    print(json.dumps(to_parquet(a.data, a.out, a.queues or None, damage=damage)))
    if damage:  # exported all the same: what was readable is worth having, but say what was not
        print(f"mantra export: damaged data skipped: {json.dumps(segments.summary(damage))}", file=sys.stderr)
        return 1
    return 0


def cmd_venues(rest: list[str]) -> int:
    from .venues import check

    return check.main(rest)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["venues", "check"]:
        return cmd_venues(argv[2:])
    if argv[:2] == ["venues", "doctor"]:
        from .execution import doctor

        return doctor.main(argv[2:])
    ap = argparse.ArgumentParser(prog="mantra", description="Low-latency crypto trading engine")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("run", help="run a system described in TOML")
    p.add_argument("config")
    p.add_argument("--duration", type=float, help="stop after this many seconds (simulated ones with --deterministic)")
    p.add_argument("--deterministic", action="store_true", help="one process, simulated clock")
    p.add_argument("--live", action="store_true", help="place real orders (a system whose mode is \"live\")")
    p.add_argument("--keep", action="store_true", help="keep the shared-memory files after stopping")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("demo", help="the live demo on local simulators")
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--out", help="where the session is recorded (default: data/demo/<UTC time>)")
    p.add_argument("--port", type=int, help="the UI's port (default: a free one)")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("drill", help="kill each process and inject each venue fault into the live demo system; "
                                     "check nothing is lost or duplicated and every book ends equal to its venue's")
    p.add_argument("steps", nargs="*", help="only these steps (kill:PROCESS, VENUE:FAULT; default: all)")
    p.add_argument("--out", help="where the session is recorded (default: data/drill/<UTC time>)")
    p.add_argument("--deadline", type=float, default=30.0, help="seconds each step may take to recover")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_drill)

    p = sub.add_parser("clean", help="remove what stopped or crashed systems left in shared memory")
    p.set_defaults(fn=cmd_clean)

    p = sub.add_parser("inspect", help="queues and actors of a running system")
    p.add_argument("system", nargs="?")
    p.add_argument("--json", action="store_true")
    p.add_argument("--sample", type=float, default=0.5, help="seconds between the two rate samples")
    p.set_defaults(fn=cmd_inspect)

    p = sub.add_parser("tail", help="decoded messages of one queue as they arrive")
    p.add_argument("system")
    p.add_argument("stream")
    p.add_argument("-n", type=int, default=0, help="stop after n messages")
    p.add_argument("--timeout", type=float, default=0.0, help="stop after this many idle seconds")
    p.add_argument("--raw", action="store_true", help="fixed-point integers and ns, as on the spine")
    p.set_defaults(fn=cmd_tail)

    p = sub.add_parser("top", help="live per-actor timing histograms")
    p.add_argument("system", nargs="?")
    p.add_argument("--json", action="store_true", help="print one snapshot as JSON")
    p.add_argument("--once", action="store_true")
    p.add_argument("--interval", type=float, default=1.0)
    p.set_defaults(fn=cmd_top)

    p = sub.add_parser("bench", help="benchmarks (print JSON)")
    p.add_argument("what", help="ring, telemetry, persist, feeds, backtest, tick-to-trade, throughput, order-entry, ui")
    p.add_argument("--json", action="store_true")
    p.add_argument("--messages", type=int, help="ui: points per series (default 5,000,000)")
    p.add_argument("--rate", type=int)
    p.add_argument("--dataset", help="backtest: the reference stream (.npy)")
    p.add_argument("--captures", help="feeds: directory of recordings (default: ../shared/data/captures)")
    p.add_argument("--seconds", type=float, help="feeds: time budget per measurement; ui: the window over which "
                   "the UI actor's CPU is measured on the live demo (default 10)")
    p.add_argument("--loopback", action="store_const", const=True, help="feeds: also measure over a loopback socket")
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("backtest", help="run a system deterministically on recorded market data")
    p.add_argument("config")
    p.add_argument("--data", required=True, help="segments directory (mantra import, or a recorded session)")
    p.add_argument("--out", help="where the run's messages, result.json and fills.csv go "
                   "(default: a new data/backtests/<UTC time>/)")
    p.add_argument("--mark-every", type=float, default=60.0, metavar="SECONDS",
                   help="PnL marks for the curve, Sharpe and drawdown (default 60)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--ui", action="store_true", help="when the run ends, serve its result in the UI (prints the URL)")
    p.add_argument("--port", type=int, help="--ui: the UI's port (default: a free one)")
    p.set_defaults(fn=cmd_backtest)

    p = sub.add_parser("ui", help="the realtime UI over a running system or a recording (prints its URL)")
    p.add_argument("system", nargs="?", help="a running system (default: the only one)")
    p.add_argument("--data", help="a recorded session or a backtest's output instead")
    p.add_argument("--host", default="127.0.0.1", help="address to serve (default loopback)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--remote", action="store_true",
                   help="allow a non-loopback --host; the URL then carries a random token, required")
    p.set_defaults(fn=cmd_ui)

    p = sub.add_parser("import", help="backtest data from the reference L2 stream (.npy) or venue recordings")
    p.add_argument("files", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--venue", help="the files are this venue's recordings")
    p.add_argument("--overwrite", action="store_true", help="replace the data already in --out")
    p.add_argument("--format", default="cryptofeed",
                   help="cryptofeed (venue recordings, with --venue) or tardis (Tardis.dev CSV files, .csv or .csv.gz)")
    p.set_defaults(fn=cmd_import)

    p = sub.add_parser("export", help="persisted streams -> Parquet files")
    p.add_argument("data")
    p.add_argument("--out", required=True)
    p.add_argument("--queues", nargs="*")
    p.set_defaults(fn=cmd_export)

    sub.add_parser("venues", help="venue tools: `mantra venues check --venue NAME --format cryptofeed FILE... --json`")

    a = ap.parse_args(argv)
    from . import logs

    logs.setup(a.verbose)
    from .spine.shm import Refused

    try:
        try:
            return a.fn(a)
        finally:
            logs.flush()  # the counts of repeated warnings that were not shown
    except Refused as e:  # unsafe shared memory, or the system already runs: the message says what to do
        print(f"mantra: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `mantra inspect --json | head`: the reader left; so do we, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
