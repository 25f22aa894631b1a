"""Segment integrity: damage anywhere costs only what it hits, is reported, and never yields a record
that was not written; sizes from a header are bounded before anything is allocated; format 1 files
still read."""

import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mantra.spine.messages import L2Update, TradeUpdate
from mantra.store import export, segments
from mantra.store.segments import CHUNK, SegmentWriter

CHUNKS, PER_CHUNK = 6, 40


def chunk_records(k, n=PER_CHUNK):
    r = np.zeros(n, L2Update.DTYPE)
    r["origin"] = r["publish"] = np.arange(k * n, k * n + n) + 1_000
    r["price"] = np.arange(k * n, k * n + n)  # each record's identity
    r["size"] = k + 1
    r["instrument"] = 7
    return r


def write(path, chunks=CHUNKS):
    """A segment of ``chunks`` chunks; returns the header copies' end and each chunk's byte span."""
    w = SegmentWriter(path, "q", L2Update)
    spans, head = [], w.bytes
    for k in range(chunks):
        a = w.bytes
        w.append(chunk_records(k))
        spans.append((a, w.bytes))
    w.close()
    return head, spans


def loaded(root):
    damage = []
    got = segments.load(root, "q", damage=damage)
    return got, damage


def chunks_of(got):
    """The chunk indexes returned, each checked to be whole and exactly as written."""
    if got.dtype.names is None:  # no file could say what its records are
        return []
    ks = sorted(set((got["size"] - 1).tolist()))
    for k in ks:
        want = chunk_records(k)
        mine = got[got["size"] == k + 1]
        assert len(mine) == PER_CHUNK
        for name in ("origin", "publish", "price", "instrument"):
            assert np.array_equal(mine[name], want[name]), name
    return ks


damage_kind = st.sampled_from(["flip", "overwrite", "truncate"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), kind=damage_kind)
def test_random_damage_costs_only_the_chunks_it_hits(tmp_path_factory, data, kind):
    root = tmp_path_factory.mktemp("dmg")
    p = root / "q" / "0.seg"
    head, spans = write(p)
    raw = bytearray(p.read_bytes())
    at = data.draw(st.integers(0, len(raw) - 1), label="at")
    if kind == "flip":
        raw[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        hit = (at, at + 1)
    elif kind == "overwrite":
        junk = data.draw(st.binary(min_size=1, max_size=64), label="bytes")
        raw[at:at + len(junk)] = junk[:len(raw) - at]
        hit = (at, at + len(junk))
    else:  # (cut to nothing, a file reads as one never written: empty files are skipped)
        del raw[max(at, 1):]
        hit = (max(at, 1), 1 << 62)
    p.write_bytes(bytes(raw))

    got, damage = loaded(root)  # never raises
    ks = chunks_of(got)  # nothing returned that was not written, chunks whole
    assert not ks or (np.diff(got["price"]) > 0).all()  # in order, nothing twice
    copy = head // 2
    headers_hit = hit[0] < copy and hit[1] > copy  # the damage spans both header copies
    if not headers_hit:
        untouched = [k for k, (a, b) in enumerate(spans) if b <= hit[0] or a >= hit[1]]
        assert set(untouched) <= set(ks), (untouched, ks, damage)
    clean_cut = kind == "truncate" and hit[0] in [head] + [b for _, b in spans]  # looks like a file's end
    if len(ks) < CHUNKS and not clean_cut:
        assert damage, "records went missing without a report"
        assert all(d.path == str(p) and d.bytes > 0 for d in damage)


def test_a_flipped_bit_in_a_chunk_header_never_returns_wrong_records(tmp_path):
    p = tmp_path / "q" / "0.seg"
    head, spans = write(p)
    for off in range(CHUNK.size):  # every byte of the third chunk's header
        raw = bytearray(p.read_bytes())
        raw[spans[2][0] + off] ^= 0x10
        q = tmp_path / f"f{off}"
        (q / "q").mkdir(parents=True)
        (q / "q" / "0.seg").write_bytes(bytes(raw))
        got, damage = loaded(q)
        assert chunks_of(got) == [0, 1, 3, 4, 5], off  # only the damaged chunk is missing
        assert len(damage) == 1 and damage[0].offset == spans[2][0]


def test_a_damaged_file_header_copy_costs_nothing(tmp_path):
    p = tmp_path / "q" / "0.seg"
    head, _ = write(p)
    good, copy = p.read_bytes(), head // 2
    for at, where in ((3, 0), (copy + 20, copy)):  # the first copy's magic, the second's descriptor
        raw = bytearray(good)
        raw[at] ^= 0xFF
        p.write_bytes(bytes(raw))
        got, damage = loaded(tmp_path)
        assert chunks_of(got) == list(range(CHUNKS))
        assert [(d.offset, d.bytes) for d in damage] == [(where, copy)]  # still reported
    raw = bytearray(good)
    raw[3] ^= 0xFF
    raw[copy + 20] ^= 0xFF
    p.write_bytes(bytes(raw))
    got, damage = loaded(tmp_path)  # both: the file cannot be decoded, and says so
    assert len(got) == 0 and [(d.offset, d.bytes) for d in damage] == [(0, len(good))]


def test_sizes_from_a_header_are_bounded_before_allocating(tmp_path):
    p = tmp_path / "q" / "0.seg"
    head, spans = write(p, 3)
    raw = bytearray(p.read_bytes())
    # a header with a valid checksum that claims 4G records of a 1 GiB payload
    a = spans[1][0]
    sync, plen, n, crc, t0, t1, ring, seq, _ = CHUNK.unpack_from(raw, a)
    h = CHUNK.pack(sync, 1 << 30, 0xFFFFFFFF, crc, t0, t1, ring, seq, 0)[:-4]
    raw[a:a + CHUNK.size] = h + struct.pack("<I", zlib.crc32(h))
    p.write_bytes(bytes(raw))
    got, damage = loaded(tmp_path)
    assert chunks_of(got) == [0, 2] and len(damage) == 1


def test_appends_after_a_torn_tail_are_read(tmp_path):
    p = tmp_path / "q" / "0.seg"
    head, spans = write(p, 3)
    with open(p, "r+b") as f:  # the process died while writing the third chunk
        f.truncate(spans[2][0] + CHUNK.size + 5)
    w = SegmentWriter(p, "q", L2Update)  # a writer that appends to that file
    w.append(chunk_records(3))
    w.append(chunk_records(4))
    w.close()
    got, damage = loaded(tmp_path)
    assert chunks_of(got) == [0, 1, 3, 4]
    assert len(damage) == 1 and damage[0].offset == spans[2][0] and damage[0].bytes == CHUNK.size + 5


def test_appending_another_layout_or_format_is_refused(tmp_path):
    p = tmp_path / "q" / "0.seg"
    write(p, 1)
    with pytest.raises(ValueError, match="cannot append"):
        SegmentWriter(p, "q", TradeUpdate)
    old = tmp_path / "old" / "q" / "0.seg"
    write_v1(old, [chunk_records(0)])
    with pytest.raises(ValueError, match="format 1"):
        SegmentWriter(old, "q", L2Update)


def test_export_reports_damage(tmp_path):
    p = tmp_path / "q" / "0.seg"
    head, spans = write(p, 3)
    raw = bytearray(p.read_bytes())
    raw[spans[1][1] - 3] ^= 1  # the second chunk's payload
    p.write_bytes(bytes(raw))
    damage = []
    t = export.table(tmp_path, "q", damage=damage)
    assert t.num_rows == 2 * PER_CHUNK and len(damage) == 1 and damage[0].records == PER_CHUNK
    rows = export.to_parquet(tmp_path, tmp_path / "pq", damage=damage)
    assert rows == {"q": 2 * PER_CHUNK} and len(damage) == 2
    assert json.loads((tmp_path / "pq" / "damage.json").read_text())["records"] == PER_CHUNK  # beside the data
    assert segments.summary(damage[:1]) == {"chunks": 1, "bytes": spans[1][1] - spans[1][0],
                                            "records": PER_CHUNK, "where": [str(damage[0])]}


# -- format 1, as the previous build wrote it ------------------------------------------------------
V1_HEAD = struct.Struct("<8sII")
V1_CHUNK = struct.Struct("<IIIIQQ")


def write_v1(path, batches):
    """The format 1 writer: one unchecked header, chunk headers without a checksum or marker."""
    desc = segments.descriptor("q", L2Update)
    d = json.dumps(desc).encode()
    out = V1_HEAD.pack(b"MANTRSEG", 1, len(d)) + d
    dt = segments.dtype_of(desc)
    spans = []
    for r in batches:
        r = r[list(dt.names)]
        payload = segments._encode(r, 3)
        a = len(out)
        out += V1_CHUNK.pack(0x4B4E4843, len(payload), len(r), zlib.crc32(payload),
                             int(r["publish"][0]), int(r["publish"][-1])) + payload
        spans.append((a, len(out)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out)
    return spans


def test_format_1_files_still_read(tmp_path):
    spans = write_v1(tmp_path / "q" / "0.seg", [chunk_records(k) for k in range(4)])
    info = segments.scan(tmp_path / "q" / "0.seg")
    assert info.version == 1 and len(info.chunks) == 4 and not info.damage
    got, damage = loaded(tmp_path)
    assert chunks_of(got) == [0, 1, 2, 3] and not damage
    # a format 1 chunk header has no checksum: a wrong count or time is caught by the payload
    for field_at, value in ((8, PER_CHUNK + 1), (8, 0xFFFFFFFF), (16, 999)):
        raw = bytearray((tmp_path / "q" / "0.seg").read_bytes())
        struct.pack_into("<I" if field_at == 8 else "<Q", raw, spans[1][0] + field_at, value)
        q = tmp_path / f"v{field_at}-{value}" / "q"
        q.mkdir(parents=True)
        (q / "0.seg").write_bytes(bytes(raw))
        got, damage = loaded(q.parent)
        assert chunks_of(got) == [0, 2, 3] and len(damage) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_format_1_damage_never_yields_wrong_records(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("v1")
    p = root / "q" / "0.seg"
    spans = write_v1(p, [chunk_records(k) for k in range(4)])
    raw = bytearray(p.read_bytes())
    at = data.draw(st.integers(spans[0][0], len(raw) - 1), label="at")
    raw[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    p.write_bytes(bytes(raw))
    got, damage = loaded(root)
    ks = chunks_of(got)
    assert [k for k, (a, b) in enumerate(spans) if not a <= at < b] == ks
    assert len(damage) == 1


def test_a_backtest_result_says_what_of_its_data_was_skipped(tmp_path):
    from pathlib import Path

    from mantra import backtest

    config = Path(backtest.__file__).parent / "configs" / "backtest_noop.toml"
    data = tmp_path / "data"
    head, spans = write(data / "l2" / "0.seg", 4)
    raw = bytearray((data / "l2" / "0.seg").read_bytes())
    raw[spans[2][0] + CHUNK.size + 4] ^= 1  # the third chunk's payload
    (data / "l2" / "0.seg").write_bytes(bytes(raw))
    r = backtest.run(config, data, tmp_path / "out")
    assert r["events"] == 3 * PER_CHUNK
    assert r["damage"]["chunks"] == 1 and r["damage"]["records"] == PER_CHUNK
    assert "DAMAGED DATA" in backtest.report(r)
