"""``_spine.text_frames``, the WebSocket client's common read in C, held to its reference
``WsClient._direct``: over any read (whole and partial text frames, binary and control frames,
fragments, masked frames, text that is not UTF-8, frames over the size limit) C then Python take
the same bytes and hand over the same messages, and C stops before anything it does not take."""

from collections import deque
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from mantra import _spine
from mantra.feeds.wsclient import WsClient

TS = 1_700_000_000_000_000_000


def head(op: int, n: int, fin=True, mask=False) -> bytes:
    b0 = (0x80 if fin else 0) | op
    m = 0x80 if mask else 0
    if n < 126:
        return bytes((b0, m | n))
    if n < 1 << 16:
        return bytes((b0, m | 126)) + n.to_bytes(2, "big")
    return bytes((b0, m | 127)) + n.to_bytes(8, "big")


@st.composite
def frame(draw):
    kind = draw(st.sampled_from(["text"] * 6 + ["bad_utf8", "binary", "ping", "fragment", "masked", "long", "huge"]))
    text = draw(st.text(max_size=40)).encode()
    if kind == "bad_utf8":
        text += b"\xff\xfe"
    elif kind == "long":
        text = b"x" * draw(st.integers(126, 400))
    elif kind == "huge":
        text = b"y" * 70000  # a 64-bit length
    op = {"binary": 2, "ping": 9}.get(kind, 1)
    return head(op, len(text), fin=kind != "fragment", mask=kind == "masked") + (b"\0" * 4 if kind == "masked" else b"") + text


def client(max_size: int) -> WsClient:
    c = WsClient.__new__(WsClient)  # no connection: _direct only needs these
    c.msgs, c.bad_frames, c.max_size = deque(), 0, max_size
    c.proto = SimpleNamespace(uri=SimpleNamespace(host="test"))
    return c


@settings(max_examples=300, deadline=None)
@given(st.lists(frame(), max_size=8), st.integers(0, 10), st.sampled_from([1 << 25, 100, 0]))
def test_c_then_python_read_as_python_alone(frames, cut, max_size):
    data = b"".join(frames)
    data = data[:max(len(data) - cut, 0)]  # the read may end inside a frame
    buf = bytearray(data) + b"\0" * 16  # the receive buffer is larger than the read
    ref = client(max_size)
    taken_ref = ref._direct(data, TS)
    fast = client(max_size)
    i, taken, chars = _spine.text_frames(memoryview(buf), len(data), TS, fast.msgs.append, max_size)
    assert taken == chars == 0
    assert i <= taken_ref
    taken = i + fast._direct(data[i:], TS)
    assert taken == taken_ref
    assert list(fast.msgs) == list(ref.msgs)
    assert fast.bad_frames == ref.bad_frames
    # C stops only where Python has something to say: a frame it did not take is not a plain text frame
    if i < taken_ref:
        nxt = data[i:]
        assert not (nxt[0] == 0x81 and nxt[1] < 0x80) or ref.bad_frames or max_size < len(nxt)


@settings(max_examples=200, deadline=None)
@given(st.lists(frame(), max_size=8), st.integers(0, 10), st.integers(0, 3))
def test_a_lane_takes_frames_until_it_declines_one_and_order_is_kept(frames, cut, declines_at):
    """With ``take`` (a Lane's), the frames it takes are not appended; from the first it declines
    on, every frame is appended, so taken + appended is the reference's sequence, in order."""
    data = b"".join(frames)
    data = data[:max(len(data) - cut, 0)]
    ref = client(1 << 25)
    ref._direct(data, TS)
    seen = []

    def take(text, ts):
        seen.append(text)
        return len(seen) <= declines_at

    fast = client(1 << 25)
    i, taken, chars = _spine.text_frames(memoryview(bytearray(data)), len(data), TS, fast.msgs.append, 1 << 25, take)
    fast._direct(data[i:], TS)
    got = [(t, TS) for t in seen[:taken]] + list(fast.msgs)
    assert got == list(ref.msgs)
    assert taken == min(declines_at, len(seen)) and chars == sum(len(t) for t in seen[:taken])
    assert len(seen) <= taken + 1  # nothing is offered after a decline
