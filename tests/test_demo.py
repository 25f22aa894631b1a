"""`mantra demo` end to end: five simulators, the live system, the report and the replay, in a
subprocess as a user runs it; nothing left behind in shared memory."""

import base64
import json
import os
import re
import subprocess
import sys

from mantra.instruments import VENUE_IDS
from mantra.spine.messages import OrderStatus
from mantra.store import segments

VENUES = {"binance", "bitstamp", "coinbase", "kraken", "bitfinex"}


def _section(out: str, title: str) -> str:
    head = f"== {title} =="
    assert head in out, f"{head!r} missing from the output:\n{out[-3000:]}"
    return out.split(head, 1)[1].split("\n== ", 1)[0]


SECRETS = {"MANTRA_BINANCE_API_KEY": "demo-key-b1n", "MANTRA_BINANCE_API_SECRET": "B1N-SECRET-" + "x" * 40,
           "MANTRA_KRAKEN_API_KEY": "demo-key-kr4",
           "MANTRA_KRAKEN_API_SECRET": base64.b64encode(b"KR4-SECRET-" * 6).decode(),
           "MANTRA_BITSTAMP_API_KEY": "demo-key-b57", "MANTRA_BITSTAMP_API_SECRET": "B57-SECRET-" + "y" * 20,
           "MANTRA_BITFINEX_API_KEY": "demo-key-bfx", "MANTRA_BITFINEX_API_SECRET": "BFX-SECRET-" + "z" * 20,
           # Coinbase signs with an Ed25519 key: base64 of its 32-byte seed and public half
           "MANTRA_COINBASE_API_KEY": "organizations/demo/apiKeys/demo-key-cb",
           "MANTRA_COINBASE_API_SECRET": base64.b64encode(b"CB-SECRET-seed-" * 4 + b"pub!").decode()}


def test_demo_runs_live_records_reports_and_replays(tmp_path, shm_root):
    rec = tmp_path / "session"
    p = subprocess.run([sys.executable, "-m", "mantra.cli", "demo", "--duration", "8", "--out", str(rec)],
                       env={**os.environ, **SECRETS}, capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout
    assert re.match(r"UI: http://127\.0\.0\.1:\d+/ ", out), out[:300]  # the UI's URL comes first

    # Live status: every venue's books synced, market data flowing.
    blocks = out.split("mantra demo ")[1:]
    assert len(blocks) >= 5, out[:2000]
    def synced(block):  # venue -> (books synced, books subscribed)
        line = block.split("books synced", 1)[1].splitlines()[0]
        return {v: (int(a), int(b)) for v, a, b in re.findall(r"(\w+) (\d+)/(\d+)", line)}

    # (the last block is drawn after the feeds disconnected)
    assert any(set(s) == VENUES and all(0 < a == b for a, b in s.values()) for s in map(synced, blocks)), \
        [synced(b) for b in blocks]
    l2_rates = [float(m) for m in re.findall(r"msg/s +l2 (\d+)", out)]
    assert l2_rates and max(l2_rates) > 10, l2_rates

    # The report of the recorded session, then its replay: the replay consumed every recorded event.
    live = _section(out, "live session")
    replay = _section(out, "the same session replayed as a backtest")
    events = [int(re.search(r"events +([\d,]+)", s).group(1).replace(",", "")) for s in (live, replay)]
    assert events[0] > 100 and events[0] == events[1], events
    # Orders went to all five venues through their own handlers, and each venue answered them
    # with its own order ids; the venues' balances as the handlers read them are reported.
    rows = {}
    for line in _section(out, "per venue").strip().splitlines()[1:]:
        venue, *nums = line.split()[:6]
        rows[venue] = dict(zip(("orders", "cancels", "amends", "answered", "fills"), map(int, nums)))
        assert "BTC " in line and " USD" in line, line  # the venue's balances, not "none"
    assert set(rows) == VENUES, rows
    assert all(r["orders"] > 0 and r["answered"] > 0 for r in rows.values()), rows
    # the cross-venue model took liquidity on both of its legs: Coinbase and Bitfinex
    assert rows["coinbase"]["fills"] > 0 and rows["bitfinex"]["fills"] > 0, rows
    # Bitstamp has no amend: its market maker's quotes moved by cancel and new
    assert rows["bitstamp"]["amends"] == 0 and rows["bitstamp"]["cancels"] > 0, rows
    assert sum(r["fills"] for r in rows.values()) == int(re.search(r"fills +(\d+)", live).group(1)), (rows, live)
    table = _section(out, "live vs replay")
    for row in ("orders", "fills", "fees", "PnL"):
        assert re.search(rf"^{row} +\S+ +\S+$", table, re.M), table
    assert "simulated clock" in table

    # The recording: l2 segments of all five venues, every instrument id in the saved registry.
    assert list((rec / "l2").glob("*.seg"))
    l2 = segments.load(rec, "l2")
    known = {i["id"]: i["venue"] for i in json.loads((rec / "instruments.json").read_text())}
    ids = set(l2["instrument"].tolist())
    assert ids <= set(known) and {known[i] for i in ids} == VENUES

    # The real order path (mode "sim"): every handler reconciled balances with its venue, and the
    # venues answered orders (acknowledged by the venue, not by a mock: its order ids).
    bal = segments.load(rec, "balances")
    assert set(bal["venue"].tolist()) == {VENUE_IDS[v] for v in VENUES}
    upd = segments.load(rec, "updates")
    assert (upd["status"] == OrderStatus.OPEN).any()
    answered = upd["venue_id"][(upd["status"] == OrderStatus.OPEN) | (upd["status"] == OrderStatus.FILLED)]
    assert len(answered) and all(v and not v[:4] in (b"bin-", b"kra-", b"bit-", b"coi-") for v in answered)

    # The keys appear in no output: the status, the logs, the recording.
    for text in (out, p.stderr):
        assert not any(v in text for v in SECRETS.values())
    for f in rec.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert not any(v.encode() in data for v in SECRETS.values()), f
    for q in segments.queues(rec):
        data = segments.load(rec, q).tobytes()
        assert not any(v.encode() in data for v in SECRETS.values()), q

    # Shut down cleanly: no shared-memory files left behind.
    assert not shm_root.exists() or not any(shm_root.rglob("*")), list(shm_root.rglob("*"))
