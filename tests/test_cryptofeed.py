"""The cryptofeed capture reader: exact line format, exact times, bad lines counted not fatal."""

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures import CAPTURES
from mantra.store.cryptofeed import (
    HTTP,
    OPEN,
    RECV,
    SENT,
    MalformedLine,
    Record,
    format_record,
    parse_line,
    parse_time,
    read_capture,
)


urls = st.from_regex(r"(wss|https)://[a-z0-9.]{1,20}(:[0-9]{2,4})?/[A-Za-z0-9/?=&@._-]{0,40}", fullmatch=True)
payloads = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), max_size=80)
times = st.integers(min_value=0, max_value=4_102_444_800 * 10**9)


@st.composite
def records(draw):
    kind = draw(st.sampled_from([OPEN, SENT, RECV, HTTP]))
    url = draw(urls)
    payload = "" if kind == OPEN else draw(st.one_of(payloads, st.binary(max_size=40)))
    return Record(kind, url, draw(times), payload)


@settings(max_examples=300)
@given(records())
def test_line_round_trip(rec):
    line = format_record(rec)
    # A received line does not name its connection: the reader supplies the last opened url.
    back = parse_line(line, rec.url)
    assert back[:4] == rec[:4]


@settings(max_examples=300)
@given(st.integers(0, 10**10), st.text("0123456789", min_size=1, max_size=12))
def test_time_is_exact_decimal(sec, frac):
    text = f"{sec}.{frac}"
    expected = int(Decimal(text) * 10**9)  # truncation of sub-ns digits, computed independently
    assert parse_time(text) == expected


def test_float_repr_time_is_not_rounded_through_float():
    assert parse_time("1633998512.0633569") == 1633998512063356900
    assert parse_time("1641343696") == 1641343696 * 10**9


@pytest.mark.parametrize("bad", ["1633.9x: {}", "1633998512.06", "wss://a.b/ <=> 1.0", "wss://a.b/ <- 12", "-> 1.0: x", "1.: {}"])
def test_malformed_lines_raise_clear_error(bad):
    with pytest.raises(MalformedLine):
        parse_line(bad)


def test_payload_containing_separators_is_kept_whole():
    rec = parse_line('wss://x.y/ <- 12.5: {"a": "b <- 1: c -> 2"}')
    assert rec == Record(SENT, "wss://x.y/", 12_500_000_000, '{"a": "b <- 1: c -> 2"}', 0)


def test_bad_lines_are_counted_and_reading_continues(tmp_path):
    p = tmp_path / "X.ws.0.0"
    p.write_bytes(
        b"wss://x.y/ <-> 1.5\n"
        b"2.0: {\"ok\": 1}\n"
        b"garbage line\n"
        b"\xff\xfe: not utf8\n"
        b"\n"
        b"3.25: {\"ok\": 2}\n"
    )
    reader = read_capture(p)
    recs = list(reader)
    assert [r.payload for r in recs if r.kind == RECV] == ['{"ok": 1}', '{"ok": 2}']
    assert all(r.url == "wss://x.y/" for r in recs)
    assert recs[-1].ts == 3_250_000_000 and recs[-1].line == 6
    assert reader.malformed == 2
    assert [n for n, _ in reader.errors] == [3, 4]


def _count_lines(path):
    # Independent classification of the capture lines, by their leading characters only.
    kinds = {"open": 0, "sent": 0, "recv": 0, "http": 0}
    for line in path.read_text().splitlines():
        if not line:
            continue
        if line[0].isdigit():
            kinds["recv"] += 1
        elif " <-> " in line.split(": ", 1)[0]:
            kinds["open"] += 1
        elif " <- " in line.split(": ", 1)[0]:
            kinds["sent"] += 1
        elif " -> " in line.split(": ", 1)[0]:
            kinds["http"] += 1
    return kinds


@pytest.mark.parametrize("name", sorted(p.name for p in CAPTURES.glob("*.*.*")))
def test_every_capture_reads_cleanly_in_time_order(name):
    path = CAPTURES / name
    reader = read_capture(path)
    recs = list(reader)
    assert reader.malformed == 0
    got = {k: sum(r.kind == k for r in recs) for k in ("open", "sent", "recv", "http")}
    assert got == _count_lines(path)
    # Receipt times of a single recording never go backwards.
    ts = [r.ts for r in recs]
    assert ts == sorted(ts)
    if ".ws." in name:
        assert recs[0].kind == OPEN and all(r.url == recs[0].url for r in recs)
