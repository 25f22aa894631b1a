"""The test suite runs from a plain clone: its data lives in tests/fixtures, never in a folder
beside the repository (the benchmarks' ``../shared`` is for benchmarks only)."""

import re
from pathlib import Path

from fixtures import CAPTURES, FIXTURES, GEN_L2, VECTORS

TESTS = Path(__file__).resolve().parent
# A path to a folder called "shared": a quoted path part, or a relative ../shared in any string.
SHARED_PATH = re.compile(r"""["']shared["']|\.\./shared\b|[/\\]shared[/\\"']""")


def test_no_test_reads_the_shared_folder():
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path == Path(__file__).resolve() or FIXTURES in path.parents:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if SHARED_PATH.search(line):
                offenders.append(f"{path.relative_to(TESTS)}:{n}: {line.strip()}")
    assert offenders == [], "tests must take their data from tests/fixtures:\n" + "\n".join(offenders)


def test_the_pattern_catches_the_forms_it_must():
    for bad in ['SHARED = REPO.parent / "shared"', "p = root / 'shared' / 'data'", 'open("../shared/x")',
                'Path("/somewhere/shared/data/captures")']:
        assert SHARED_PATH.search(bad), bad
    for ok in ["a shared-memory ring", "shared memory", "test_shared_registry_gives_ids", "SharedMemory(name)"]:
        assert not SHARED_PATH.search(ok), ok


def test_the_fixtures_are_in_the_repository():
    assert GEN_L2.is_file() and VECTORS.is_file()
    names = {p.name for p in CAPTURES.iterdir()}
    assert {"BINANCE.ws.1.0", "BINANCE.http.0.0", "BITFINEX.ws.11.0", "BITSTAMP.ws.1.0", "BITSTAMP.http.0.0",
            "COINBASE.ws.28.0", "KRAKEN.ws.48.0", "KRAKEN.ws.49.0", "KRAKEN.ws.50.0"} <= names
    assert sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file()) < 2 << 20  # small fixtures only
