"""Shared helpers for venue tests: where the recorded captures and documented vectors live."""

import json
from pathlib import Path

import pytest

from mantra.store.cryptofeed import read_capture

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CAPTURES = SHARED / "data" / "captures"


@pytest.fixture(scope="session")
def recording():
    """``recording(name)`` -> the capture's records (skips the test if the capture is absent)."""
    cache = {}

    def load(name):
        if name not in cache:
            path = CAPTURES / name
            if not path.exists():
                pytest.skip(f"capture {name} not available")
            reader = read_capture(path)
            cache[name] = list(reader)
            assert reader.malformed == 0, f"{name}: {reader.errors}"
        return cache[name]

    return load


@pytest.fixture(scope="session")
def vectors():
    """``vectors(venue)`` -> that venue's part of ../shared/research/exchange-vectors.json."""
    path = SHARED / "research" / "exchange-vectors.json"
    if not path.exists():
        pytest.skip("exchange-vectors.json not available")
    data = json.loads(path.read_text())
    return data.__getitem__
