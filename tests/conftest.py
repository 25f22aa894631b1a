import shutil
import uuid
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", max_examples=60, deadline=None)
settings.load_profile("ci")


@pytest.fixture(autouse=True)
def shm_root(monkeypatch):
    """Each test gets its own spine root in /dev/shm, removed afterwards."""
    root = Path("/dev/shm") / f"mantra-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MANTRA_SHM", str(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sysdir(shm_root):
    d = shm_root / "t"
    d.mkdir(parents=True)
    return d
