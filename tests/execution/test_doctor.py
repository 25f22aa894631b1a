"""`mantra venues doctor` against the Kraken simulator: one line per check, and each problem found
for the right reason (bad secret, a skewed clock, a key without WebSocket permission)."""

import base64
import re

import pytest

from mantra.cli import main
from mantra.sim.kraken import KrakenSimulator

KEY, SECRET = "doctor-key", base64.b64encode(b"k" * 64).decode()


@pytest.fixture()
def env(monkeypatch):
    monkeypatch.setenv("MANTRA_KRAKEN_API_KEY", KEY)
    monkeypatch.setenv("MANTRA_KRAKEN_API_SECRET", SECRET)


def doctor(capsys, sim):
    code = main(["venues", "doctor", "kraken", "--rest-url", sim.rest_url])
    out = capsys.readouterr().out.splitlines()
    return code, out


def test_a_ready_key_passes_every_check(env, capsys):
    with KrakenSimulator(rate=5, credentials={KEY: SECRET}, balances={"USD": "100"}) as sim:
        code, out = doctor(capsys, sim)
    assert code == 0, out
    assert [line.split()[0] for line in out] == ["ok"] * 4
    assert any("credentials: accepted (balances: ZUSD 100" in line for line in out), out
    assert SECRET not in "\n".join(out)


def test_problems_are_named_one_line_each(env, capsys):
    with KrakenSimulator(rate=5, credentials={KEY: base64.b64encode(b"x" * 64).decode()}) as sim:
        code, out = doctor(capsys, sim)
    assert code == 1 and any(line.startswith("PROBLEM  credentials: refused: EAPI:Invalid signature") for line in out), out
    with KrakenSimulator(rate=5, credentials={KEY: SECRET}, clock_skew_ms=5000) as sim:
        code, out = doctor(capsys, sim)
    # Kraken's time has whole seconds: 5 s ahead reads as 4 to 5 s
    assert code == 1 and any(re.match(r"PROBLEM  clock: ours is -[45]\.\d+ s off", line) for line in out), out
    with KrakenSimulator(rate=5, credentials={KEY: SECRET}, permissions=("query", "trade")) as sim:
        code, out = doctor(capsys, sim)
    assert code == 1 and any(line.startswith("PROBLEM  permissions: no WebSocket token") for line in out), out


def test_missing_credentials_are_one_line(monkeypatch, capsys):
    monkeypatch.delenv("MANTRA_KRAKEN_API_KEY", raising=False)
    monkeypatch.delenv("MANTRA_KRAKEN_API_SECRET", raising=False)
    assert main(["venues", "doctor", "kraken", "--rest-url", "http://127.0.0.1:9"]) == 1
    assert capsys.readouterr().out.startswith("PROBLEM  credentials: kraken: no API credentials")
