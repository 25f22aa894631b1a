"""`mantra bench feeds` on the recordings: it replays them faithfully (books synced, nothing
malformed, every Kraken checksum verified) and reports the figures it promises."""

import shutil
from pathlib import Path

import pytest

from fixtures import CAPTURES
from mantra.bench import feeds
from mantra.store import cryptofeed as cf



def test_bench_replays_recordings_faithfully(tmp_path, monkeypatch):
    names = ["KRAKEN.ws.48.0", "KRAKEN.ws.50.0", "BITFINEX.ws.11.0"]
    for n in names:
        shutil.copy(CAPTURES / n, tmp_path / n)
    monkeypatch.setenv("MANTRA_CAPTURES", str(tmp_path))  # the override the docs promise
    out = feeds.run(seconds=0.05, loopback=False)
    v = out["venues"]
    assert set(v) == set(feeds.VENUES) and "skipped" in v["binance"]
    kr, bf = v["kraken"], v["bitfinex"]
    assert kr["frames"] == sum(1 for r in cf.read_capture(tmp_path / "KRAKEN.ws.50.0") if r.kind == cf.RECV)
    for r in (kr, bf):
        assert r["malformed"] == 0 and r["synced"] == r["books"] > 0
        assert 0 < r["decode_apply_us"]["all"]["p50"] <= r["decode_apply_us"]["all"]["p99"]
        assert r["feed_us"]["all"]["p50"] > 0 and r["feed_frames_per_s"] > 0 and r["ratio_p50"]["all"] > 0
        assert r["checksum"]["per_update_us"]["p50"] > 0
    checksummed = sum(1 for r in cf.read_capture(tmp_path / "KRAKEN.ws.50.0") if r.kind == cf.RECV and '"c":"' in r.payload)
    assert kr["checksum"]["failed"] == 0 and kr["checksum"]["verified_ok"] == kr["checksum"]["updates"] == checksummed > 0


def test_recordings_come_from_the_option_the_environment_or_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MANTRA_CAPTURES", raising=False)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    with pytest.raises(FileNotFoundError, match="from the default .*--captures DIR or \\$MANTRA_CAPTURES"):
        feeds.captures_dir()
    default = tmp_path / "repo" / feeds.DEFAULT_CAPTURES  # beside the current directory, not the sources
    default.mkdir(parents=True)
    assert feeds.captures_dir().resolve() == default.resolve() and not default.resolve().is_relative_to(tmp_path / "repo")
    assert feeds.captures_dir(str(tmp_path)) == tmp_path
    with pytest.raises(SystemExit, match="no recordings directory .*nope \\(from --captures\\)"):
        feeds.run(captures=str(tmp_path / "nope"))
    monkeypatch.setenv("MANTRA_CAPTURES", str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match="from \\$MANTRA_CAPTURES"):
        feeds.captures_dir()
