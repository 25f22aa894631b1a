"""A system's configuration: checked whole before anything starts, and its instruments (listed
once in [system], or in an actor's own list) registered before any actor starts."""

import importlib
import pkgutil

import pytest

from mantra.cli import CONFIGS, main
from mantra.feeds.actor import system_registry
from mantra.runtime.actor import Actor
from mantra.runtime.config import ConfigError, load, parse
from mantra.runtime.supervisor import create_spine
from mantra.trading.common import load_registry, resolve
from mantra.venues.registry import make_protocol

BTC = {"venue": "coinbase", "symbol": "BTC-USD", "base": "BTC", "quote": "USD", "price_scale": 2, "size_scale": 8,
       "tick": "0.01", "lot": "0.00000001", "min_size": "0.0001", "min_notional": "1"}


def test_system_instruments_reach_every_actor_without_their_own_list(shm_root):
    spec = parse({"system": {"name": "insts", "instruments": [BTC]}})
    create_spine(spec).close()
    reg = load_registry((), "insts")  # an actor with no instruments param
    inst = resolve(reg, "coinbase:BTC-USD")
    assert (inst.tick, inst.lot, inst.min_notional) == (1, 1, 100)
    # an actor's own list adds to them; ids agree with the system's
    own = load_registry([{**BTC, "symbol": "ETH-USD", "base": "ETH"}], "insts")
    assert resolve(own, "coinbase:BTC-USD").id == inst.id and resolve(own, "coinbase:ETH-USD").id != inst.id


@pytest.mark.parametrize("bad", [[{"venue": "coinbase"}], ["BTC-USD"], 1])
def test_malformed_system_instruments_are_a_clear_error(bad):
    with pytest.raises(ConfigError, match="system.instruments"):
        parse({"system": {"name": "x", "instruments": bad}})


# ---------------------------------------------------------------------------------------------
# The whole system is checked before anything starts: one error naming the file, the key and
# what was expected.

HELLO = '''
[system]
name = "cfgcheck"

[queues.l2]
type = "L2Update"
capacity = 1024

[queues.top]
type = "L2Update"
capacity = 1024

[arrays.quotes]
type = "IdealOrder"
size = 2

[actors.ticker]
class = "mantra.examples.hello:Ticker"
params = { rate = 100 }
outputs = { out = "l2" }

[actors.book]
class = "mantra.examples.hello:BookKeeper"
inputs = { l2 = "l2" }
outputs = { top = "top" }
arrays = { quotes = "quotes" }

[processes.p]
actors = ["ticker", "book"]
mode = "park"
'''

ORDER_FLOW = '''
[system]
name = "cfgflow"

[[system.instruments]]
venue = "binance"
symbol = "BTCUSDT"
base = "BTC"
quote = "USDT"
price_scale = 2
size_scale = 3
tick = "0.01"
lot = "0.001"

[queues.requests]
type = "OrderRequest"
[queues.updates]
type = "OrderUpdate"
[queues.fills]
type = "Fill"
[queues.balances]
type = "BalanceUpdate"
[arrays.ideal]
type = "IdealOrder"
size = 2

[actors.overseer]
class = "mantra.trading.overseer:Overseer"
inputs = { updates = "updates", fills = "fills", balances = "balances" }
outputs = { requests = "requests" }
arrays = { m = "ideal" }

[actors.overseer.params]
models = ["m"]
kill_file = "/tmp/KILL"
venues = { binance = { fee_bps = 10 } }
'''


def _load(tmp_path, text, old=None, new=None):
    if old is not None:
        assert old in text
        text = text.replace(old, new)
    p = tmp_path / "system.toml"
    p.write_text(text)
    return load(p)


def _error(tmp_path, text, old=None, new=None) -> str:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text, old, new)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'system.toml'}: ") and "\n" not in msg
    return msg


def test_the_examples_load(tmp_path):
    assert set(_load(tmp_path, HELLO).actors) == {"ticker", "book"}
    assert _load(tmp_path, ORDER_FLOW).actors["overseer"].params["kill_file"] == "/tmp/KILL"


@pytest.mark.parametrize("old,new,want", [
    ('[system]', '[sytem]\nname = "x"\n[system]',
     "sytem: unknown section (known: system, queues, arrays, actors, processes, simulators)"),
    ('name = "cfgcheck"', 'name = "cfgcheck"\nnmae = "x"', "system.nmae: unknown key (known: name, mode, clock, instruments)"),
    ('capacity = 1024\n\n[queues.top]', 'capacity = 1024\ncapacty = 8\n\n[queues.top]',
     "queues.l2.capacty: unknown key (known: type, capacity, mpmc)"),
    ('size = 2', 'size = 2\nsiz = 3', "arrays.quotes.siz: unknown key (known: type, size)"),
    ('outputs = { out = "l2" }', 'outputs = { out = "l2" }\noutput = { out = "l2" }',
     "actors.ticker.output: unknown key (known: class, params, inputs, outputs, arrays)"),
    ('mode = "park"', 'mode = "park"\nrestarts = 2', "processes.p.restarts: unknown key"),
    ('capacity = 1024\n\n[queues.top]', 'capacity = "1024"\n\n[queues.top]',
     "queues.l2.capacity: expected an integer, not '1024'"),
    ('size = 2', 'size = 2.5', "arrays.quotes.size: expected an integer, not 2.5"),
    ('[queues.top]\ntype = "L2Update"', '[queues.top]\ntype = "L2Update"\nmpmc = "yes"',
     "queues.top.mpmc: expected true or false, not 'yes'"),
    ('mode = "park"', 'mode = "park"\nmax_restarts = true', "processes.p.max_restarts: expected an integer, not True"),
    ('actors = ["ticker", "book"]', 'actors = "ticker"', "processes.p.actors: expected a list"),
    ('params = { rate = 100 }', 'params = "rate=100"', "actors.ticker.params: expected a table"),
    ('name = "cfgcheck"', 'name = 5', "system.name: expected a string, not 5"),
])
def test_misspelt_keys_and_wrong_types_are_one_clear_error(tmp_path, old, new, want):
    assert want in _error(tmp_path, HELLO, old, new)


def test_an_unknown_actor_param_is_an_error_naming_the_actor_key_and_known_params(tmp_path):
    msg = _error(tmp_path, ORDER_FLOW, 'kill_file = "/tmp/KILL"', 'kil_file = "/tmp/KILL"')
    assert "actors.overseer.params.kil_file: unknown param of mantra.trading.overseer:Overseer" in msg
    assert "known: answer_timeout_ms," in msg and "kill_file" in msg and "venues" in msg
    msg = _error(tmp_path, HELLO, "rate = 100", "rat = 100")
    assert "actors.ticker.params.rat: unknown param of mantra.examples.hello:Ticker (known: count, instrument, " \
           "rate, seed, stop_when_done)" in msg


def test_params_the_class_refuses_are_an_error_before_the_start(tmp_path):
    msg = _error(tmp_path, ORDER_FLOW, "fee_bps = 10", "fe_bps = 10")
    assert "actors.overseer.params: overseer: venues.binance: unknown settings ['fe_bps']" in msg
    msg = _error(tmp_path, ORDER_FLOW, 'models = ["m"]', 'models = ["m"]\nanswer_timeout_ms = "soon"')
    assert "actors.overseer.params: overseer: invalid literal for int()" in msg
    msg = _error(tmp_path, ORDER_FLOW, 'models = ["m"]', 'models = ["m"]\n'
                 'limits = { "binance:BTCUSDT" = { max_positon = "1", max_notional = "10" } }')
    assert "actors.overseer.params: overseer: limits for binance:BTCUSDT: expected { max_position, max_notional }" \
        in msg


def test_an_actor_class_that_does_not_import_is_an_error(tmp_path):
    msg = _error(tmp_path, HELLO, "mantra.examples.hello:Ticker", "mantra.examples.hello:Tickr")
    assert "actors.ticker.class: cannot load 'mantra.examples.hello:Tickr': AttributeError" in msg
    msg = _error(tmp_path, HELLO, "mantra.examples.hello:Ticker", "mantra.examples.nowhere:Ticker")
    assert "cannot load 'mantra.examples.nowhere:Ticker': ModuleNotFoundError" in msg
    msg = _error(tmp_path, HELLO, "mantra.examples.hello:Ticker", "mantra.examples.hello:IdealOrder")
    assert "actors.ticker.class: mantra.examples.hello:IdealOrder is not an Actor" in msg


def test_ports_bound_must_be_declared_and_declared_ports_bound(tmp_path):
    msg = _error(tmp_path, HELLO, 'outputs = { out = "l2" }', 'outputs = { out = "l2" }\ninputs = { extra = "top" }')
    assert "actors.ticker.inputs.extra: mantra.examples.hello:Ticker has no input port 'extra' " \
           "(its inputs: none)" in msg
    msg = _error(tmp_path, HELLO, 'arrays = { quotes = "quotes" }\n', '')
    assert "actors.book.arrays: array port 'quotes' of mantra.examples.hello:BookKeeper is not bound to an array" in msg
    msg = _error(tmp_path, HELLO, 'inputs = { l2 = "l2" }\noutputs = { top = "top" }',
                 'inputs = { l2 = "l2", top = "top" }')  # an output bound as an input
    assert "actors.book.inputs.top: mantra.examples.hello:BookKeeper has no input port 'top' (its inputs: l2)" in msg
    # ports an actor declares from its params (the overseer's one per model) count too
    msg = _error(tmp_path, ORDER_FLOW, 'arrays = { m = "ideal" }', 'arrays = { n = "ideal" }')
    assert "actors.overseer.arrays.n: mantra.trading.overseer:Overseer has no array port 'n' (its arrays: m)" in msg


def test_a_queue_of_another_message_type_than_the_port_declares_is_an_error(tmp_path):
    msg = _error(tmp_path, ORDER_FLOW, 'inputs = { updates = "updates", fills = "fills"',
                 'inputs = { updates = "fills", fills = "updates"')
    assert "actors.overseer.inputs.updates: the port carries OrderUpdate, queue 'fills' holds Fill" in msg
    msg = _error(tmp_path, ORDER_FLOW, '[arrays.ideal]\ntype = "IdealOrder"', '[arrays.ideal]\ntype = "Fill"')
    assert "actors.overseer.arrays.m: the port carries IdealOrder, array 'ideal' holds Fill" in msg


def test_an_instrument_listed_twice_with_other_terms_is_an_error(tmp_path):
    msg = _error(tmp_path, ORDER_FLOW, 'models = ["m"]', 'models = ["m"]\ninstruments = [{ venue = "binance", '
                 'symbol = "BTCUSDT", base = "BTC", quote = "USDT", price_scale = 2, size_scale = 3, tick = "0.1" }]')
    assert "actors.overseer.params.instruments[0]: binance:BTCUSDT" in msg and "tick 1 there, 10 here" in msg
    msg = _error(tmp_path, ORDER_FLOW, 'tick = "0.01"', 'tik = "0.01"')
    assert "system.instruments[0]:" in msg and "tik" in msg


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file"):
        load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        _load(tmp_path, "[system\nname = 1")


def test_every_shipped_config_passes_its_checks():
    for path in sorted(CONFIGS.glob("*.toml")):
        load(path)


def _actor_classes():
    import mantra

    for m in pkgutil.walk_packages(mantra.__path__, "mantra."):
        if m.name.startswith("mantra.sim"):
            continue  # servers, no actors
        importlib.import_module(m.name)
    seen, todo = set(), [Actor]
    while todo:
        for c in todo.pop().__subclasses__():
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return sorted((c for c in seen if c.__module__.startswith("mantra.")), key=lambda c: c.__qualname__)


def test_every_actor_class_refuses_a_param_it_does_not_take():
    classes = _actor_classes()
    assert {"Overseer", "MockExchange", "MarketMaker", "Feed", "Persister", "Replayer", "Telemetry"} <= \
        {c.__name__ for c in classes}
    for cls in classes:
        with pytest.raises(ValueError, match=f"{cls.__name__}: unknown param 'kil_file'"):
            cls(kil_file="KILL")
        assert not cls.known_params() & {"inputs", "outputs", "arrays", "name", "id", "system", "clock", "wakeup"}
    from mantra.trading.overseer import Overseer
    from mantra.feeds.actor import Feed

    assert {"kill_file", "models", "venues", "limits", "answer_timeout_ms"} <= Overseer.known_params()
    assert {"venue", "symbols", "options", "connection"} <= Feed.known_params()


def test_mantra_run_prints_one_line_and_exits_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert err == f"mantra run: {tmp_path / 'nope.toml'}: no such file\n"
    p = tmp_path / "system.toml"
    p.write_text(ORDER_FLOW.replace("kill_file", "kil_file"))
    assert main(["run", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "actors.overseer.params.kil_file: unknown param" in err[0]


# ---------------------------------------------------------------------------------------------
# The system's instruments are registered before any actor starts: which process registers
# first no longer matters.

def test_a_feed_starting_first_finds_the_configured_instrument_not_its_default(shm_root, tmp_path):
    spec = _load(tmp_path, ORDER_FLOW)
    create_spine(spec).close()
    # the feed's process wins the race: its protocol registers what it does not find
    feed_reg = system_registry(spec.name)
    make_protocol("binance", feed_reg, ["BTCUSDT"])
    inst = feed_reg.get("binance", "BTCUSDT")
    assert (inst.base, inst.quote, inst.price_scale, inst.tick, inst.lot) == ("BTC", "USDT", 2, 1, 1)
    # then the trading actors: the same instrument, no conflict
    assert resolve(load_registry((), spec.name), "binance:BTCUSDT") == inst


def test_actors_own_instrument_lists_are_registered_before_the_start_too(shm_root):
    eth = {**BTC, "symbol": "ETH-USD", "base": "ETH"}
    doc = {"system": {"name": "ownlist"},
           "actors": {"mm": {"class": "mantra.trading.synthetic:SyntheticMarket", "params": {"instruments": [eth]},
                             "outputs": {"l2": "l2", "trades": "trades"}}},
           "queues": {"l2": {"type": "L2Update"}, "trades": {"type": "TradeUpdate"}}}
    create_spine(parse(doc)).close()
    assert system_registry("ownlist").get("coinbase", "ETH-USD").tick == 1
