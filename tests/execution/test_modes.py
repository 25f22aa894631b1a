"""Where orders go: paper, sim or live, checked before anything starts; live only with --live and
credentials; a backtest of a sim system trades on the mock exchange."""

import pytest

from mantra.backtest import _paper_venues
from mantra.cli import main
from mantra.runtime.config import ConfigError, parse

INST = [{"venue": "kraken", "symbol": "BTC/USD", "base": "BTC", "quote": "USD", "price_scale": 1, "size_scale": 8}]


def system(mode, *, sims=True, mock=False, clock="realtime"):
    doc = {"system": {"name": "modes", "mode": mode, "clock": clock, "instruments": INST},
           "queues": {"requests": {"type": "OrderRequest", "capacity": 64},
                      "updates": {"type": "OrderUpdate", "capacity": 64},
                      "fills": {"type": "Fill", "capacity": 64},
                      "balances": {"type": "BalanceUpdate", "capacity": 64},
                      "l2": {"type": "L2Update", "capacity": 64}, "trades": {"type": "TradeUpdate", "capacity": 64}},
           "actors": {"orders": {"class": "mantra.execution.actor:VenueAccount",
                                 "inputs": {"requests": "requests"},
                                 "outputs": {"updates": "updates", "fills": "fills", "balances": "balances"},
                                 "params": {"venue": "kraken", "paper": {"maker_bps": 1, "balances": {"USD": "100"}}}}},
           "processes": {"p": {"actors": ["orders"]}}}
    if sims:
        doc["simulators"] = {"kraken": {"seed": 1}}
    if mock:
        doc["actors"]["mock"] = {"class": "mantra.trading.mock_exchange:MockExchange",
                                 "inputs": {"requests": "requests", "l2": "l2", "trades": "trades"},
                                 "outputs": {"updates": "updates", "fills": "fills", "balances": "balances"},
                                 "params": {"venues": {"kraken": {}}}}
        doc["processes"]["p"]["actors"].append("mock")
        for q in ("updates", "fills", "balances"):
            doc["queues"][q]["mpmc"] = True
    return doc


def test_modes_are_checked_before_anything_starts():
    assert parse(system("sim")).mode == "sim"
    with pytest.raises(ConfigError, match="system.mode is \"paper\""):
        parse(system("paper"))
    with pytest.raises(ConfigError, match=r"needs a \[simulators.kraken\]"):
        parse(system("sim", sims=False))
    with pytest.raises(ConfigError, match="clock must be \"realtime\""):
        parse(system("sim", clock="deterministic"))
    with pytest.raises(ConfigError, match="cannot play a venue in live mode"):
        parse(system("live", sims=False, mock=True))
    with pytest.raises(ConfigError, match="expected one of paper, sim, live"):
        parse(system("real"))
    with pytest.raises(ConfigError, match="for the clock write clock = 'deterministic'"):
        parse(system("deterministic"))
    doc = system("sim")
    doc["actors"]["orders"]["params"]["live"] = True
    with pytest.raises(ConfigError, match="set by `mantra run --live` alone"):
        parse(doc)


LIVE = """
[system]
name = "modes"
mode = "MODE"
instruments = [{ venue = "kraken", symbol = "BTC/USD", base = "BTC", quote = "USD", price_scale = 1, size_scale = 8 }]
[queues.requests]
type = "OrderRequest"
capacity = 64
[queues.updates]
type = "OrderUpdate"
capacity = 64
[queues.fills]
type = "Fill"
capacity = 64
[queues.balances]
type = "BalanceUpdate"
capacity = 64
[actors.orders]
class = "mantra.execution.actor:VenueAccount"
inputs = { requests = "requests" }
outputs = { updates = "updates", fills = "fills", balances = "balances" }
params = { venue = "kraken" }
[simulators.kraken]
seed = 1
"""


def _write(tmp_path, mode):
    p = tmp_path / f"{mode}.toml"
    text = LIVE.replace("MODE", mode)
    p.write_text(text if mode == "sim" else text.split("[simulators")[0])
    return p


def test_live_needs_the_flag_and_credentials(tmp_path, capsys, monkeypatch):
    p = _write(tmp_path, "live")
    assert main(["run", str(p)]) == 2
    assert "start it with `mantra run --live`" in capsys.readouterr().err
    monkeypatch.delenv("MANTRA_KRAKEN_API_KEY", raising=False)
    monkeypatch.delenv("MANTRA_KRAKEN_API_SECRET", raising=False)
    assert main(["run", str(p), "--live"]) == 2
    assert "MANTRA_KRAKEN_API_KEY and MANTRA_KRAKEN_API_SECRET" in capsys.readouterr().err
    p2 = _write(tmp_path, "sim")
    assert main(["run", str(p2), "--live"]) == 2
    assert "--live runs only a system whose mode is \"live\"" in capsys.readouterr().err


def test_a_backtest_trades_the_handlers_venues_on_the_mock_exchange():
    doc = system("sim")
    _paper_venues(doc)
    assert "orders" not in doc["actors"]
    mock = doc["actors"]["paper_exchange"]
    assert mock["class"] == "mantra.trading.mock_exchange:MockExchange"
    assert mock["params"]["venues"] == {"kraken": {"maker_bps": 1, "balances": {"USD": "100"}}}
    assert mock["inputs"] == {"requests": "requests", "trades": "trades", "l2": "l2"}
    assert "paper_exchange" in doc["processes"]["p"]["actors"]


def test_live_refuses_a_key_without_the_permissions_it_needs(tmp_path, capsys, monkeypatch):
    """--live asks the venue first (the doctor's checks): a key that may not use the WebSocket API
    stops the start with the venue's reason."""
    import base64

    from mantra.sim.kraken import KrakenSimulator

    secret = base64.b64encode(b"s" * 64).decode()
    monkeypatch.setenv("MANTRA_KRAKEN_API_KEY", "k-live")
    monkeypatch.setenv("MANTRA_KRAKEN_API_SECRET", secret)
    with KrakenSimulator(rate=5, credentials={"k-live": secret}, permissions=("query", "trade")) as sim:
        p = _write(tmp_path, "live")
        p.write_text(p.read_text().replace('params = { venue = "kraken" }',
                                           f'params = {{ venue = "kraken", options = {{ rest_url = "{sim.rest_url}" }} }}'))
        assert main(["run", str(p), "--live"]) == 2
    err = capsys.readouterr().err
    assert "actors.orders: kraken: permissions: no WebSocket token" in err and secret not in err


@pytest.mark.parametrize("venue,symbol", [("coinbase", "BTC-USD"), ("bitstamp", "btcusd"), ("bitfinex", "tBTCUSD")])
def test_live_refuses_to_start_without_the_venues_key(venue, symbol, tmp_path, capsys, monkeypatch):
    """Every venue with order entry is armed the same way: no key, no start, and the variables named."""
    p = _write(tmp_path, "live")
    text = p.read_text().replace('venue = "kraken", symbol = "BTC/USD"', f'venue = "{venue}", symbol = "{symbol}"')
    p.write_text(text.replace('params = { venue = "kraken" }', f'params = {{ venue = "{venue}" }}'))
    for name in (f"MANTRA_{venue.upper()}_API_KEY", f"MANTRA_{venue.upper()}_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert main(["run", str(p), "--live"]) == 2
    err = capsys.readouterr().err
    assert f"actors.orders: {venue}: no API credentials: set MANTRA_{venue.upper()}_API_KEY and " \
           f"MANTRA_{venue.upper()}_API_SECRET" in err, err
