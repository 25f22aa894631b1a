"""Capture files: exact round trips, crash damage limited to the last chunk, redaction, import."""

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import zstandard

from fixtures import CAPTURES
from mantra.store import cryptofeed as cf
from mantra.store.capture import (
    CaptureError,
    CaptureReader,
    CaptureWriter,
    Kind,
    Record,
    Redactor,
    import_cryptofeed,
)

NO_REDACTION = Redactor(fields=(), headers=())
T0 = 1_700_000_000_000_000_000

texts = st.text(max_size=300)
blobs = st.binary(max_size=300)
record = st.one_of(
    st.builds(lambda c, d: (Kind.RECV, c, d, "", 0), st.integers(0, 2**32 - 1), texts | blobs),
    st.builds(lambda c, d: (Kind.SENT, c, d, "", 0), st.integers(0, 2**32 - 1), texts | blobs),
    st.builds(lambda c, d, m, s: (Kind.REST, c, d, m, s), st.integers(0, 9), blobs, texts, st.integers(0, 999)),
    st.builds(lambda c, m, d: (Kind.OPEN, c, d, m, 0), st.integers(0, 9), texts, texts),
    st.builds(lambda c, m: (Kind.CLOSE, c, "", m, 0), st.integers(0, 9), texts),
)


def write_all(path, items, **opts):
    """Write ``(kind, conn, data, meta, status)`` items 1 ms apart; returns the expected records."""
    w = CaptureWriter(path, "t", redactor=NO_REDACTION, **opts)
    expected = []
    for i, (kind, conn, data, meta, status) in enumerate(items):
        ts = T0 + i * 1_000_000
        w.write(kind, conn, ts, data, meta, status)
        expected.append(Record(ts, conn, int(kind), data, meta, status))
    w.close()
    return w, expected


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(record, max_size=60), flush_bytes=st.sampled_from([1, 200, 1 << 16]),
       rotate_bytes=st.sampled_from([300, 1 << 20]))
def test_round_trip_across_chunks_and_rotated_files(tmp_path_factory, items, flush_bytes, rotate_bytes):
    d = tmp_path_factory.mktemp("cap")
    w, expected = write_all(d, items, flush_bytes=flush_bytes, rotate_bytes=rotate_bytes)
    reader = CaptureReader(d)
    got = list(reader)
    assert got == expected
    assert [type(r.data) for r in got] == [type(r.data) for r in expected]  # text stays text, bytes bytes
    assert reader.truncated == reader.corrupt == 0 and reader.records == len(items)
    assert len(reader.meta) == len(w.files) and all(m["format"] == "mantra-capture" for m in reader.meta.values())


def test_several_writers_merge_in_receipt_time_order(tmp_path):
    a = CaptureWriter(tmp_path, "a", flush_bytes=1)
    b = CaptureWriter(tmp_path, "b", flush_bytes=1)
    for i in range(50):
        (a if i % 3 else b).recv(1, T0 + i, f"m{i}")
    a.close()
    b.close()
    assert [r.data for r in CaptureReader(tmp_path)] == [f"m{i}" for i in range(50)]


def test_time_based_flush_and_rotation(tmp_path):
    w = CaptureWriter(tmp_path, "t", flush_ms=100, rotate_s=1.0)
    for i in range(40):  # 50 ms apart: 2 s of records
        w.recv(1, T0 + i * 50_000_000, str(i))
    assert w.chunks >= 15  # flushed about every 100 ms of record time, not held back
    w.tick(T0 + 40 * 50_000_000)
    w.close()
    assert len(w.files) >= 2
    assert [r.data for r in CaptureReader(w.files)] == [str(i) for i in range(40)]


def _chunked(path, n_chunks, per_chunk=5):
    """A file of ``n_chunks`` chunks; returns (file, records, file size after each chunk)."""
    w = CaptureWriter(path, "t", redactor=NO_REDACTION, flush_bytes=1 << 30)
    recs, ends = [], []
    for c in range(n_chunks):
        for j in range(per_chunk):
            ts = T0 + c * 100 + j
            w.recv(c, ts, f"chunk {c} record {j} " + "x" * (c * 7 % 50))
            recs.append(Record(ts, c, int(Kind.RECV), f"chunk {c} record {j} " + "x" * (c * 7 % 50)))
        w.flush()
        ends.append(os.path.getsize(w.files[0]))
    w.close()
    return w.files[0], recs, ends


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_truncated_file_yields_every_whole_chunk_and_counts_the_cut(tmp_path_factory, data):
    path, recs, ends = _chunked(tmp_path_factory.mktemp("cut"), 6)
    size = data.draw(st.integers(ends[0], ends[-1] - 1), label="cut at")
    raw = path.read_bytes()[:size]
    path.write_bytes(raw)
    reader = CaptureReader(path)
    got = list(reader)
    whole = sum(1 for e in ends if e <= size)  # data chunks that survived whole
    assert got == recs[: whole * 5]
    assert reader.truncated == (0 if size in ends else 1) and reader.corrupt == 0


def test_a_damaged_chunk_in_the_middle_is_skipped_and_counted(tmp_path):
    path, recs, ends = _chunked(tmp_path, 5)
    raw = bytearray(path.read_bytes())
    mid = (ends[2] + ends[3]) // 2  # inside the fourth data chunk
    raw[mid] ^= 0xFF
    path.write_bytes(bytes(raw))
    reader = CaptureReader(path)
    got = list(reader)
    assert got == recs[:15] + recs[20:]
    assert reader.corrupt == 1 and reader.truncated == 0


def test_not_a_capture_is_a_clear_error(tmp_path):
    p = tmp_path / "x.cap.zst"
    p.write_bytes(b"hello world")
    with pytest.raises(CaptureError, match="not a mantra-capture"):
        list(CaptureReader(p))
    empty = tmp_path / "e.cap.zst"
    empty.write_bytes(b"")
    assert list(CaptureReader(empty)) == []


secret = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789", min_size=10, max_size=40)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=secret, sig=secret, token=secret, spaced=st.booleans())
def test_secrets_never_reach_the_file(tmp_path_factory, key, sig, token, spaced):
    d = tmp_path_factory.mktemp("red")
    sep = ": " if spaced else ":"
    w = CaptureWriter(d, "t")
    c = w.open(T0, f"wss://x/ws?listenKey={token}&stream=a", {"X-MBX-APIKEY": key, "Accept": "json"})
    w.sent(c, T0 + 1, f'{{"event"{sep}"auth","apiKey"{sep}"{key}","authSig"{sep}"{sig}","nonce"{sep}1}}')
    w.sent(c, T0 + 2, f'{{"method":"subscribe","params":{{"channel":"executions","token"{sep}"{token}"}}}}')
    w.rest(c, T0 + 3, f"https://x/api?symbol=A&signature={sig}&timestamp=1", b"{}")
    w.recv(c, T0 + 4, '{"market":"data"}')
    w.close()
    recs = list(CaptureReader(d))
    text = repr(recs).encode()
    for s in (key, sig, token):
        assert s.encode() not in text
    assert '"event"' in recs[1].data and '"nonce"' in recs[1].data and "Accept: json" in recs[0].data
    assert "symbol=A" in recs[3].meta and "timestamp=1" in recs[3].meta and recs[4].data == '{"market":"data"}'


@pytest.mark.parametrize("venue", ["BITSTAMP", "BINANCE"])
def test_cryptofeed_recordings_import_exactly(tmp_path, venue):
    files = sorted(CAPTURES.glob(f"{venue}.*"))
    assert files
    counts = import_cryptofeed(files, tmp_path, venue.lower())
    got = list(CaptureReader(tmp_path))
    src = [r for f in files for r in cf.read_capture(f) if r.kind != cf.CONFIG]
    src.sort(key=lambda r: r.ts)
    assert counts["records"] == len(got) == len(src) and counts["malformed_lines"] == 0
    kind = {cf.OPEN: Kind.OPEN, cf.RECV: Kind.RECV, cf.SENT: Kind.SENT, cf.HTTP: Kind.REST}
    for a, b in zip(got, src):
        assert a.ts == b.ts and a.kind == kind[b.kind]
        if b.kind == cf.HTTP:
            assert a.data == b.payload.encode() and a.meta == b.url and a.conn == 0
        elif b.kind == cf.OPEN:
            assert a.meta == b.url
        else:
            assert a.data == b.payload and a.conn >= 1
    assert sum(1 for r in got if r.kind == Kind.OPEN) == sum(1 for r in src if r.kind == cf.OPEN)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damaged_byte_never_yields_garbage_nor_raises(tmp_path_factory, data):
    path, recs, ends = _chunked(tmp_path_factory.mktemp("flip"), 5)
    raw = bytearray(path.read_bytes())
    at = data.draw(st.integers(ends[0] - 1, len(raw) - 1), label="byte")
    raw[at] ^= data.draw(st.integers(1, 255), label="xor")
    path.write_bytes(bytes(raw))
    reader = CaptureReader(path)
    got = list(reader)
    assert all(r in recs for r in got) and got == sorted(got, key=recs.index)  # a subsequence of what was written
    assert len(got) >= len(recs) - 10  # at most the damaged chunk and (when its header broke) the next one
    assert reader.corrupt + reader.truncated >= (len(got) < len(recs))


def _bomb(size: int, declared: bool) -> bytes:
    """A zstd frame of ``size`` zero bytes (a few KB on disk), declaring its size or not."""
    c = zstandard.ZstdCompressor(level=1, write_content_size=declared).compressobj(size=size if declared else -1)
    zeros = bytes(1 << 20)
    return b"".join(c.compress(zeros) for _ in range(size >> 20)) + c.flush()


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared"])
def test_a_decompression_bomb_is_refused_quickly_and_the_rest_still_reads(tmp_path, declared):
    path, recs, ends = _chunked(tmp_path, 3)
    raw = path.read_bytes()
    bomb = _bomb(1 << 30, declared)
    assert len(bomb) < 64 << 10
    path.write_bytes(raw[:ends[1]] + bomb + raw[ends[1]:])  # a 1 GiB chunk between the second and third
    t = time.perf_counter()
    reader = CaptureReader(path)
    got = list(reader)
    assert time.perf_counter() - t < 2.0
    assert got == recs  # every real chunk, none of the bomb
    assert reader.oversized == 1 and reader.corrupt == 1


def test_the_chunk_limit_is_a_reader_setting(tmp_path):
    path, recs, _ = _chunked(tmp_path, 2)
    assert list(CaptureReader(path, max_chunk=1 << 20)) == recs
    small = CaptureReader(path, max_chunk=100)  # every chunk (header and two data) is larger
    assert list(small) == [] and small.oversized == 3
