"""Shared helpers for venue tests: where the recorded captures and documented vectors live."""

import json

import pytest

from fixtures import CAPTURES, VECTORS
from mantra.store.cryptofeed import read_capture


@pytest.fixture(scope="session")
def recording():
    """``recording(name)`` -> the capture's records (from the recordings shipped in tests/fixtures)."""
    cache = {}

    def load(name):
        if name not in cache:
            reader = read_capture(CAPTURES / name)
            cache[name] = list(reader)
            assert reader.malformed == 0, f"{name}: {reader.errors}"
        return cache[name]

    return load


@pytest.fixture(scope="session")
def vectors():
    """``vectors(venue)`` -> that venue's part of the documented exchange test vectors."""
    data = json.loads(VECTORS.read_text())
    return data.__getitem__
