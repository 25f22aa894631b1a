"""`mantra venues doctor coinbase|bitstamp|bitfinex` against each venue's simulator, as a user runs
it: a ready key passes every check, a wrong secret is named as the problem (never shown), and a
Coinbase key given as a PEM in the environment or a key file works like the venue's own."""

import json
import os

import pytest

from mantra.cli import main
from mantra.sim import bitfinex as bitfinex_sim, bitstamp as bitstamp_sim, coinbase as coinbase_sim

# venue -> (simulator class, a key the venue accepts, its secret, another secret, the line a wrong one gives)
VENUES = {
    "coinbase": (coinbase_sim.CoinbaseSimulator, coinbase_sim.DEFAULT_KEY, coinbase_sim.DEFAULT_SECRET,
                 coinbase_sim.DEFAULT_ED_SECRET, "PROBLEM  credentials: refused (401"),
    "bitstamp": (bitstamp_sim.BitstampSimulator, "doctor-key", "doctor-secret", "another-secret",
                 "PROBLEM  credentials: refused (403 API0005"),
    "bitfinex": (bitfinex_sim.BitfinexSimulator, "doctor-key", "doctor-secret", "another-secret",
                 "PROBLEM  credentials: refused (10100 bad signature: the secret does not match)"),
}


def doctor(capsys, venue, sim, *extra):
    code = main(["venues", "doctor", venue, "--rest-url", sim.rest_url, *extra])
    return code, capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("venue", sorted(VENUES))
def test_a_ready_key_passes_and_a_wrong_secret_is_named(venue, monkeypatch, capsys):
    cls, key, secret, other, refused = VENUES[venue]
    monkeypatch.setenv(f"MANTRA_{venue.upper()}_API_KEY", key)
    monkeypatch.setenv(f"MANTRA_{venue.upper()}_API_SECRET", secret)
    with cls(rate=5, credentials={key: secret}, balances={"USD": "100"}) as sim:
        code, out = doctor(capsys, venue, sim)
        assert code == 0 and out and all(line.startswith("ok ") for line in out), out
        assert any(line.startswith("ok       credentials: accepted") and "USD 100" in line for line in out), out
        monkeypatch.setenv(f"MANTRA_{venue.upper()}_API_SECRET", other)
        code, out = doctor(capsys, venue, sim)
    assert code == 1 and any(line.startswith(refused) for line in out), out
    line = next(line for line in out if line.startswith(refused))
    assert ("private key" if venue == "coinbase" else "secret") in line, line  # what to check is named
    text = "\n".join(out)
    assert secret not in text and other not in text


def test_coinbase_names_a_secret_that_is_no_key_and_takes_a_pem_from_a_key_file(monkeypatch, capsys, tmp_path):
    key, pem = coinbase_sim.DEFAULT_KEY, coinbase_sim.DEFAULT_SECRET
    monkeypatch.setenv("MANTRA_COINBASE_API_KEY", key)
    monkeypatch.setenv("MANTRA_COINBASE_API_SECRET", "not-a-key")
    with coinbase_sim.CoinbaseSimulator(rate=5, credentials={key: pem}) as sim:
        code, out = doctor(capsys, "coinbase", sim)
        assert code == 1 and out == [out[0]] and out[0].startswith(
            "PROBLEM  credentials: the secret is not a Coinbase key"), out
        # a PEM in one line with literal \n, as an environment variable often holds it
        monkeypatch.setenv("MANTRA_COINBASE_API_SECRET", pem.replace("\n", "\\n"))
        code, out = doctor(capsys, "coinbase", sim)
        assert code == 0, out
        # a key file (JSON, 0600, outside any repository) holding the PEM with its newlines
        f = tmp_path / "coinbase.json"
        f.write_text(json.dumps({"key": key, "secret": pem}))
        os.chmod(f, 0o600)
        monkeypatch.delenv("MANTRA_COINBASE_API_SECRET")
        code, out = doctor(capsys, "coinbase", sim, "--key-file", str(f))
    assert code == 0 and all(line.startswith("ok ") for line in out), out
    assert "PRIVATE KEY" not in "\n".join(out)
