"""Shared helpers for the simulator tests: the documented exchange test vectors."""

import json

import pytest

from fixtures import VECTORS


@pytest.fixture(scope="session")
def vectors():
    """``vectors(venue)`` -> that venue's part of the documented exchange test vectors."""
    data = json.loads(VECTORS.read_text())
    return data.__getitem__
