"""System-level instruments: listed once in [system], known to every actor of the system."""

import pytest

from mantra.runtime.config import ConfigError, parse
from mantra.runtime.supervisor import create_spine
from mantra.trading.common import load_registry, resolve

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
