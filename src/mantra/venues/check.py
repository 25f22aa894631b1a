"""``mantra venues check``: replay recordings through a venue protocol and report book health.

Each WebSocket recording (one connection, possibly reopened) is replayed through a fresh protocol:
a connection-open line calls ``on_connect``, received frames go to ``on_frame`` with their receipt
times, and ``on_timer`` ticks every recorded second as the runner would.  When the protocol asks for
a URL (``Fetch``), the next recorded response for that URL is handed to ``on_rest`` at its receipt
time, or at once if it was recorded before the request was made (the recorder may have fetched
earlier than this protocol asks).  URLs match ignoring a trailing ``/`` of the path.  A fetch with
no recorded answer is counted as unanswered.  ``Send`` and ``Reconnect`` requests are counted; a
recording cannot act on them.

The symbols and options a recording was made with (book subscriptions, snapshot size, feed format)
are read from the recording itself unless given.  A recording with no order-book subscription is
listed as skipped with that reason.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
from collections import deque
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

from ..instruments import InstrumentRegistry
from ..store.cryptofeed import HTTP, OPEN, RECV, SENT, read_capture
from .events import Fetch, Reconnect, Send, Status
from .registry import PROTOCOLS, make_protocol

TICK_NS = 1_000_000_000


def _json(payload):
    try:
        return json.loads(payload)
    except (ValueError, TypeError):
        return None


# -- what a recording subscribed to ----------------------------------------------------------
def _binance(opened, sent, http):
    syms = []
    for url in opened:
        for s in parse_qs(urlsplit(url).query).get("streams", [""])[0].split("/"):
            if "@depth@" in s or s.endswith("@depth"):
                syms.append(s.split("@")[0].upper())
    for m in sent:
        if isinstance(m, dict) and m.get("method") == "SUBSCRIBE":
            syms += [p.split("@")[0].upper() for p in m.get("params", []) if "@depth@" in p or p.endswith("@depth")]
    opts = {}
    for url in http:
        q = parse_qs(urlsplit(url).query)
        if "limit" in q:
            opts["snapshot_limit"] = int(q["limit"][0])
    return syms, opts


def _bitstamp(opened, sent, http):
    syms = []
    for m in sent:
        ch = (m.get("data") or {}).get("channel", "") if isinstance(m, dict) else ""
        if ch.startswith("diff_order_book_"):
            syms.append(ch[len("diff_order_book_") :])
    return syms, {}


def _coinbase(opened, sent, http):
    syms, opts = [], {}
    for m in sent:
        if not isinstance(m, dict) or m.get("type") != "subscribe":
            continue
        if "channels" in m:  # the Exchange feed format
            opts["api"] = "exchange"
            names = [c if isinstance(c, str) else c.get("name") for c in m["channels"]]
            for n in names:
                if n and n.startswith("level2"):
                    opts["l2_channel"] = n
                    syms += m.get("product_ids", [])
        elif m.get("channel") == "level2":
            opts["api"] = "advanced"
            syms += m.get("product_ids", [])
    return syms, opts


def _kraken(opened, sent, http):
    syms, opts = [], {}
    for m in sent:
        if not isinstance(m, dict):
            continue
        sub = m.get("subscription") or {}
        if m.get("event") == "subscribe" and sub.get("name") == "book":  # v1
            syms += m.get("pair", [])
            opts["version"] = 1
            if "depth" in sub:
                opts["depth"] = sub["depth"]
        params = m.get("params") or {}
        if m.get("method") == "subscribe" and params.get("channel") == "book":  # v2
            syms += params.get("symbol", [])
            opts["version"] = 2
            if "depth" in params:
                opts["depth"] = params["depth"]
    return syms, opts


def _bitfinex(opened, sent, http):
    syms, opts = [], {}
    for m in sent:
        if isinstance(m, dict) and m.get("event") == "subscribe" and m.get("channel") == "book":
            syms.append(m["symbol"])
            if "len" in m:
                opts["depth"] = int(m["len"])
    return syms, opts


DISCOVER = {"binance": _binance, "bitstamp": _bitstamp, "coinbase": _coinbase, "kraken": _kraken, "bitfinex": _bitfinex}


def _norm(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path=parts.path.rstrip("/")).geturl()


def _symbol_key(url: str) -> str:
    """What a snapshot request asks for, whatever the host or API version: its symbol (a ``symbol``,
    ``pair`` or ``product_id`` query parameter, else the path's last segment)."""
    parts = urlsplit(url)
    q = parse_qs(parts.query)
    for k in ("symbol", "pair", "product_id"):
        if q.get(k):
            return q[k][-1]
    return parts.path.rstrip("/").rpartition("/")[2]


# -- replay ----------------------------------------------------------------------------------
class _Replay:
    def __init__(self, proto, bodies: dict[str, deque], sink=None):
        self.p = proto
        self.sink = sink  # sink(events, ts): sees every event batch (importing recordings)
        self.bodies = bodies  # normalised url -> deque of (ts, body)
        # the same deques by symbol: a recording's snapshots made at another host or API version
        self.by_symbol: dict[str, deque] = {}
        for u, q in bodies.items():
            self.by_symbol.setdefault(_symbol_key(u), q)
        self.by_symbol_used = 0
        self.due: list = []  # heap of (ts, n, url, body)
        self.n = 0
        self.fetches = self.unanswered = self.sends = self.reconnects = 0

    def drain(self, ts: int) -> None:
        ev = self.p.events
        if not ev:
            return
        if self.sink is not None:
            self.sink(ev, ts)
        for e in ev:
            t = type(e)
            if t is Fetch:
                self.fetches += 1
                q = self.bodies.get(_norm(e.url))
                if not q:
                    q = self.by_symbol.get(_symbol_key(e.url))
                    if not q:
                        self.unanswered += 1
                        continue
                    self.by_symbol_used += 1
                body_ts, body = q.popleft()
                self.n += 1
                heapq.heappush(self.due, (max(body_ts, ts), self.n, e.url, body))
            elif t is Send:
                self.sends += 1
            elif t is Reconnect:
                self.reconnects += 1
        ev.clear()

    def until(self, ts: int) -> None:
        """Deliver answers and timer ticks due up to ``ts``, in time order."""
        p = self.p
        while True:
            due = self.due[0][0] if self.due else None
            tick = self.tick
            nxt = min((x for x in (due, tick) if x is not None), default=None)
            if nxt is None or nxt > ts:
                return
            if due is not None and due == nxt:
                _, _, url, body = heapq.heappop(self.due)
                p.on_rest(url, body, due)
            else:
                p.on_timer(tick)
                self.tick += TICK_NS
            self.drain(nxt)

    def run(self, records) -> None:
        p = self.p
        self.tick = None
        connected = False
        for rec in records:
            self.until(rec.ts)
            kind = rec.kind
            if kind == RECV:
                p.on_frame(rec.payload, rec.ts)
            elif kind == OPEN:
                if connected:
                    p.on_disconnect(rec.ts)
                    self.drain(rec.ts)
                p.on_connect(rec.ts)
                connected = True
                if self.tick is None:
                    self.tick = rec.ts + TICK_NS
            else:
                continue
            self.drain(rec.ts)
        while self.due:  # answers recorded after the last frame still complete a sync
            t, _, url, body = heapq.heappop(self.due)
            p.on_rest(url, body, t)
            self.drain(t)


class Run(NamedTuple):
    """One WebSocket recording replayed: its protocol (None if skipped, and why) and its counts."""

    path: Path
    protocol: object = None
    replay: _Replay | None = None
    skipped: str = ""


def replay(venue: str, files, fmt: str = "cryptofeed", symbols: list[str] | None = None, sink=None,
           registry: InstrumentRegistry | None = None, **opts) -> tuple[list[Run], int]:
    """Replay ``files`` (WebSocket and REST recordings of one venue), each WebSocket recording
    through a fresh protocol: ``(runs, malformed lines)``.  ``sink(events, ts)`` sees every event
    batch (importing recordings, the simulators' replay market)."""
    venue = venue.lower()
    if venue not in PROTOCOLS:
        raise ValueError(f"unknown venue {venue!r}; known: {', '.join(PROTOCOLS)}")
    if fmt != "cryptofeed":
        raise ValueError(f"unsupported recording format {fmt!r} (supported: cryptofeed)")
    paths = [Path(f) for f in files]
    bodies: dict[str, list] = {}
    ws: list[tuple[Path, list, list]] = []  # path, opened urls, sent payloads
    bad_lines = 0
    for path in paths:
        reader = read_capture(path)
        opened, sent, is_ws = [], [], False
        for rec in reader:
            if rec.kind == HTTP:
                body = rec.payload if isinstance(rec.payload, bytes) else rec.payload.encode()
                bodies.setdefault(_norm(rec.url), []).append((rec.ts, body))
            elif rec.kind == OPEN:
                opened.append(rec.url)
                is_ws = True
            elif rec.kind == SENT:
                sent.append(_json(rec.payload))
            elif rec.kind == RECV:
                is_ws = True
        bad_lines += reader.malformed
        if is_ws:
            ws.append((path, opened, sent))
    http_urls = [u for u in bodies]

    registry = registry if registry is not None else InstrumentRegistry()
    runs = []
    for path, opened, sent in ws:
        found, found_opts = DISCOVER[venue](opened, sent, http_urls)
        syms = list(dict.fromkeys(symbols if symbols is not None else found))
        if not syms:
            runs.append(Run(path, skipped="no order-book subscription in the recording"))
            continue
        proto = make_protocol(venue, registry, syms, **{**found_opts, **opts})
        rep = _Replay(proto, {u: deque(b) for u, b in bodies.items()}, sink)
        rep.run(iter(read_capture(path)))
        runs.append(Run(path, proto, rep))
    return runs, bad_lines


def check(venue: str, files, fmt: str = "cryptofeed", symbols: list[str] | None = None, sink=None,
          registry: InstrumentRegistry | None = None, **opts) -> dict:
    """Replay ``files`` (WebSocket and REST recordings of one venue) and report per instrument."""
    registry = registry if registry is not None else InstrumentRegistry()
    runs, bad_lines = replay(venue, files, fmt, symbols, sink, registry, **opts)
    report = {"venue": venue.lower(), "frames": 0, "malformed": 0, "malformed_lines": bad_lines, "fetches": 0,
              "fetches_unanswered": 0, "fetches_matched_by_symbol": 0, "sends": 0, "reconnects": 0, "files": [],
              "instruments": {}}
    messages: dict[str, int] = {}
    for run in runs:
        entry = {"path": str(run.path)}
        report["files"].append(entry)
        if run.protocol is None:
            entry["skipped"] = run.skipped
            continue
        proto, rep = run.protocol, run.replay
        entry["frames"] = proto.frames
        for key, value in (("frames", proto.frames), ("malformed", proto.malformed), ("fetches", rep.fetches),
                           ("fetches_unanswered", rep.unanswered), ("sends", rep.sends),
                           ("reconnects", rep.reconnects), ("fetches_matched_by_symbol", rep.by_symbol_used)):
            report[key] += value
        for iid, book in proto.books.items():
            inst, st = registry[iid], proto.stats[iid]
            if messages.get(inst.symbol, -1) >= st.messages:
                continue  # the same instrument was better covered by another recording
            messages[inst.symbol] = st.messages
            bid, ask = book.best_bid(), book.best_ask()
            report["instruments"][inst.symbol] = {
                "status": Status(proto.status[iid]).name,
                "messages": st.messages,
                "checksum_ok": st.checksum_ok,
                "checksum_failed": st.checksum_failed,
                "gaps": st.gaps,
                "resyncs": st.resyncs,
                "crossed": st.crossed,
                "malformed": st.malformed,
                "best_bid": None if bid is None else inst.price_str(bid),
                "best_ask": None if ask is None else inst.price_str(ask),
                "bid_levels": len(book.bids),
                "ask_levels": len(book.asks),
            }
    return report


def problems(report: dict) -> list[str]:
    """What a user should look at: malformed input, gaps, checksum failures, crossed books."""
    out = []
    if not report["instruments"]:  # nothing checked is not a pass
        why = "; ".join(f"{f['path']}: {f['skipped']}" for f in report["files"] if "skipped" in f)
        out.append(f"no {report['venue']} book in the recording ({report['frames']} frames read"
                   + (f"; {why}" if why else "") + "): an empty file, or the wrong --venue?")
    if report["malformed"] or report["malformed_lines"]:
        out.append(f"{report['malformed']} malformed frames, {report['malformed_lines']} malformed lines")
    for sym, r in report["instruments"].items():
        for key in ("gaps", "checksum_failed", "crossed"):
            if r[key]:
                out.append(f"{sym}: {key}={r[key]}")
        if r["status"] not in ("SYNCED", "UNVERIFIED"):  # UNVERIFIED: the venue cannot prove it, not a fault
            why = ""
            if r["status"] == "SYNCING" and report["fetches_unanswered"]:
                why = (f" ({report['fetches_unanswered']} snapshot request(s) found no answer in the recording: "
                       "give its REST file, recorded from the same venue host and API version)")
            elif r["status"] == "SYNCING" and not r["messages"]:
                why = " (no book message for it in the recording)"
            out.append(f"{sym}: ends {r['status']}{why}")
    return out


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mantra venues check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--venue", required=True, choices=sorted(PROTOCOLS))
    ap.add_argument("--format", default="cryptofeed", choices=["cryptofeed"], dest="fmt")
    ap.add_argument("--symbols", help="comma-separated venue symbols (default: read from the recording)")
    ap.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                    help="protocol option, e.g. api=exchange (value parsed as JSON when it can be)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("files", nargs="+", help="recordings (WebSocket and REST files)")
    args = ap.parse_args(argv)
    opts = {}
    for kv in args.option:
        key, sep, value = kv.partition("=")
        if not sep:
            ap.error(f"--option wants KEY=VALUE, got {kv!r}")
        opts[key] = _value(value)
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        ap.error(f"no such file: {', '.join(missing)}")
    symbols = args.symbols.split(",") if args.symbols else None
    report = check(args.venue, args.files, args.fmt, symbols=symbols, **opts)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{report['venue']}: {report['frames']} frames, {report['malformed']} malformed")
        for f in report["files"]:
            if "skipped" in f:
                print(f"  {f['path']}: skipped, {f['skipped']}")
        for sym, r in report["instruments"].items():
            print(f"  {sym:<12} {r['status']:<9} bid {r['best_bid']} ask {r['best_ask']} "
                  f"levels {r['bid_levels']}/{r['ask_levels']} gaps {r['gaps']} resyncs {r['resyncs']} "
                  f"crossed {r['crossed']} checksum {r['checksum_ok']} ok/{r['checksum_failed']} failed")
    found = problems(report)
    for p in found:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
