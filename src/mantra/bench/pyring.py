"""A plain-Python seqlock ring with the spine's slot layout: the baseline the C ring is measured
against in the same run (x86-64 only: it relies on TSO ordering, which Python cannot fence)."""

from __future__ import annotations

import mmap
import struct

HDR = 4096
SLOT = 64
_REC = struct.Struct("<QQQ")  # version, origin, publish


class PyRing:
    def __init__(self, mm: mmap.mmap, capacity: int):
        self.mm, self.cap, self.mask = mm, capacity, capacity - 1
        self.words = memoryview(mm).cast("Q")

    @classmethod
    def create(cls, capacity: int) -> "PyRing":
        return cls(mmap.mmap(-1, HDR + capacity * SLOT), capacity)

    def writer(self):
        words, mask, pack_into, mm = self.words, self.mask, struct.Struct("<QQ").pack_into, self.mm
        state = [0]

        def publish(origin: int, now: int) -> None:
            s = state[0]
            w = (HDR + (s & mask) * SLOT) >> 3
            words[w] = 2 * s + 1
            pack_into(mm, (w << 3) + 8, origin, now)
            words[w] = 2 * s + 2
            state[0] = s + 1
            words[8] = s + 1  # the counter at offset 64

        return publish

    def reader(self):
        words, mask, mm = self.words, self.mask, self.mm
        unpack = struct.Struct("<QQ").unpack
        state = [words[8], 0]  # next seq, lost

        def read():
            s = state[0]
            w = (HDR + (s & mask) * SLOT) >> 3
            v = words[w]
            want = 2 * s + 2
            if v < want:
                return None
            rec = mm[(w << 3) + 8:(w << 3) + 24]
            if v == want and words[w] == want:
                state[0] = s + 1
                return unpack(rec)
            head = words[8]
            to = max(head - (mask + 1) // 2, s + 1)
            state[1] += to - s
            state[0] = to
            return None

        return read, state
