"""The overseer's native path (``Port.changed`` reads the written slots, ``Port.serve`` decides and
publishes the common AMEND / NEW) held to its Python reference (``_changed``, ``_read`` then
``_reconcile``): two overseers on the same seqlock arrays, one native, one with the reference only,
get the same writes and the same venue answers in any order and must publish the same records
(fields, origin, publisher, time) and keep the same state, slot by slot."""

import logging
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mantra import _spine
from mantra.runtime.actor import Tracking
from mantra.spine import Ring, SeqArray
from mantra.spine.messages import BalanceUpdate, Fill, IdealOrder, OrderAction as A, OrderRequest, OrderStatus as S
from mantra.trading import overseer as ov_mod
from mantra.trading.overseer import Overseer

from .harness import INSTRUMENTS, Clock
from .test_overseer import upd

BTC, KR = 1, 2
VENUES = {"binance": {"fee_bps": 20, "amend": True, "rate": 20, "rate_window_ms": 1000},
          "kraken": {"fee_bps": 26, "amend": False, "rate": 20, "rate_window_ms": 1000}}
LIMITS = {"binance:BTCUSDT": {"max_position": "2", "max_notional": "1000"},
          "kraken:XBT/USDT": {"max_position": "2", "max_notional": "1000"}}
BALANCES = (BalanceUpdate(5000, 5000, 1, 3, 1, b"BTC"), BalanceUpdate(100000, 100000, 1, 2, 1, b"USDT"),
            BalanceUpdate(50000, 50000, 1, 4, 5, b"BTC"), BalanceUpdate(10000, 10000, 1, 1, 5, b"USDT"))


class _Requests:
    """The requests output as the runtime wires it: a C port on a ring (``port``), no history."""

    def __init__(self, ring, track, clock):
        t = OrderRequest
        self.port = _spine.Port(ring.writer()._w, t, t.FIELDS_AT, t.STRUCT.size, track, clock, 3)
        self.send = self.port.send


def _overseer(arrays, ring, clock, native: bool) -> Overseer:
    names = ["m1", "m2"][:len(arrays)]
    ov = Overseer(models=names, instruments=INSTRUMENTS, venues=VENUES, limits=LIMITS)
    ov.clock, ov.id, ov.name = clock, 3, "overseer"
    ov.log = logging.getLogger("test.overseer.native" if native else "test.overseer.reference")
    ov._track = Tracking()
    ov.requests = _Requests(ring, ov._track, clock)
    for p, a in zip(names, arrays):
        # the reference reads through writes/version/latest only (no C port: _changed)
        arr = a if native else SimpleNamespace(writes=a.writes, version=a.version, latest=a.latest)
        setattr(ov, p, SimpleNamespace(array=arr, size=a.size))
    ov._request_stop = lambda: None
    ov.on_start()
    if not native:
        ov._serve = ov_mod._decline
    for b in BALANCES:
        ov.on_balances(b)
    return ov


def _slots(ov):
    return [(s.port, s.index, s.seen, s.placed, s.origin, s.model, s.ideal, s.refused,
             None if s.order is None else (s.order.order_id, s.order.version, s.order.pending))
            for slots in ov.slots for s in slots]


class NativeVsReference(RuleBasedStateMachine):
    MODELS = 2

    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ovnative"))
        self.clock = Clock(1_000_000_000)
        self.arrays = [SeqArray.create(self.dir / "m1", IdealOrder, 3),
                       SeqArray.create(self.dir / "m2", IdealOrder, 2)][:self.MODELS]
        self.rings = [Ring.create(self.dir / q, OrderRequest, 1 << 12) for q in ("fast", "ref")]
        self.readers = [r.reader("", start=0, register=False) for r in self.rings]
        self.fast = _overseer(self.arrays, self.rings[0], self.clock, True)
        self.ref = _overseer(self.arrays, self.rings[1], self.clock, False)
        self.sent: list[OrderRequest] = []  # requests not yet answered
        self.trade = 0

    def teardown(self):
        for x in self.arrays + self.rings:
            x.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _both(self, f):
        f(self.fast)
        f(self.ref)

    @rule(m=st.integers(0, 1), i=st.integers(0, 2), price=st.sampled_from([9990, 9995, 10000, 10005, 10010]),
          size=st.sampled_from([0, 1, 200, 500, 500, 700, 3000]), flip=st.integers(0, 9),
          iid=st.sampled_from([BTC, BTC, BTC, BTC, KR]), flags=st.sampled_from([0, 0, 0, 0, 0, 1, 4, 8]),
          origin=st.integers(0, 2**40), writer=st.sampled_from([11, 11, 11, 12]))
    def write(self, m, i, price, size, flip, iid, flags, origin, writer):
        a = self.arrays[m % len(self.arrays)]
        i %= a.size
        side = (1 if i % 2 else -1) * (-1 if flip == 0 else 1)  # mostly one side per slot: amends
        a.write(i, IdealOrder(price, size, iid, side, flags), origin, writer)

    @rule(k=st.integers(0, 9), price=st.sampled_from([9990, 9995, 10000, 10005, 10010]),
          size=st.sampled_from([200, 500, 700]), origin=st.integers(0, 2**40))
    def requote(self, k, price, size, origin):
        """A model moving its quote: a slot whose order is open gets the same order at another price."""
        live = [s for slots in self.ref.slots for s in slots if s.order is not None and s.ideal is not None]
        if live:
            s = live[k % len(live)]
            i = s.ideal
            self.arrays[s.port].write(s.index, IdealOrder(price, size, i.instrument, i.side, i.flags), origin, s.model)

    @rule()
    def run(self):
        self._both(lambda ov: ov.loop())
        got = []
        for c in self.readers:
            recs = []
            while c.read() is not None:
                recs.append((bytes(c.record), c.tracking()))
            got.append(recs)
        assert got[0] == got[1]
        self.sent += [OrderRequest._make(OrderRequest.STRUCT.unpack_from(r, 24)) for r, _ in got[1]]

    @precondition(lambda self: self.sent)
    @rule(k=st.integers(0, 50), what=st.sampled_from(["ack", "open", "open", "open", "fill", "partial", "cancelled",
                                                       "rejected", "cancel_rejected", "drop"]))
    def answer(self, k, what):
        r = self.sent.pop(k % len(self.sent))
        if what == "drop":
            return
        msgs = []
        if r.action == A.NEW:
            if what == "fill":
                self.trade += 1
                msgs = [Fill(r.order_id, self.trade, r.price, r.size, 0, 6, r.instrument, r.side, 1, b"USDT"),
                        upd(r, S.FILLED, r.size)]
            elif what == "partial":
                self.trade += 1
                q = max(r.size // 2, 1)
                msgs = [Fill(r.order_id, self.trade, r.price, q, 0, 6, r.instrument, r.side, 1, b"USDT"),
                        upd(r, S.PARTIALLY_FILLED, q)]
            elif what in ("rejected", "cancel_rejected"):
                msgs = [upd(r, S.REJECTED)]
            else:
                msgs = [upd(r, {"ack": S.ACK, "open": S.OPEN, "cancelled": S.CANCELLED}[what])]
        elif r.action in (A.AMEND, A.CANCEL):
            o = self.ref.orders.get(r.ref_id)
            filled = o.filled if o is not None else 0
            if what == "cancel_rejected" or what == "rejected":
                msgs = [upd(r, S.CANCEL_REJECTED, filled)]
            elif r.action == A.CANCEL or what == "cancelled":
                msgs = [upd(r, S.CANCELLED, filled)]
            else:
                msgs = [upd(r, S.OPEN, filled)]
        for m in msgs:
            self._both(lambda ov: (ov.on_fills if isinstance(m, Fill) else ov.on_updates)(m))

    @rule(dt=st.sampled_from([1_000, 50_000_000, 400_000_000, 1_100_000_000]))
    def tick(self, dt):
        self.clock.t += dt

    @rule(go=st.integers(0, 15))
    def kill(self, go):
        if go == 0:  # rarely: after it every order is refused
            self._both(lambda ov: ov.kill("test"))

    @invariant()
    def same_state(self):
        f, r = self.fast, self.ref
        assert _slots(f) == _slots(r)
        assert (f.next_id, f.refusals, f.sent, f._track.origin) == (r.next_id, r.refusals, r.sent, r._track.origin)
        assert sorted(f.by_key) == sorted(r.by_key)
        assert sorted(f.orders.active) == sorted(r.orders.active)
        assert f.orders.positions == r.orders.positions and f.exposure.of == r.exposure.of


class OneModel(NativeVsReference):
    MODELS = 1  # the pass's scan is the model's own, no loop over models


NativeVsReference.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
OneModel.TestCase.settings = settings(max_examples=100, stateful_step_count=60, deadline=None)
test_native_is_the_reference = NativeVsReference.TestCase
test_native_is_the_reference_with_one_model = OneModel.TestCase


def test_the_native_path_serves_the_common_case(tmp_path):
    """The common case is served in C, the rest declined to the reference: an AMEND and a NEW are
    published by ``serve``; a slot with a request in flight is only taken in."""
    d = tmp_path
    clock = Clock(1_000_000_000)
    arrays = [SeqArray.create(d / "m1", IdealOrder, 3), SeqArray.create(d / "m2", IdealOrder, 2)]
    ring = Ring.create(d / "q", OrderRequest, 64)
    ov = _overseer(arrays, ring, clock, True)
    calls = []
    serve = ov._serve
    ov._serve = lambda ctx, x, now: calls.append(serve(ctx, x, now)) or calls[-1]
    arrays[0].write(0, IdealOrder(10000, 500, BTC, 1, 0), 77, 11)
    ov.loop()
    assert calls == [None]  # the instrument's first order: the reference makes its terms
    new = ov.orders.get(ov.next_id)
    ov.on_updates(upd(OrderRequest(new.order_id, 0, 10000, 500, BTC, 11, 0, int(A.NEW), 1, 0), S.OPEN))
    ov.loop()
    arrays[0].write(0, IdealOrder(9990, 500, BTC, 1, 0), 78, 11)
    ov.loop()
    assert calls[-1][7] == A.AMEND and calls[-1][1:4] == (new.order_id, 9990, 500) and ov._track.origin == 78
    arrays[0].write(0, IdealOrder(9980, 500, BTC, 1, 0), 79, 11)
    ov.loop()
    assert calls[-1] is False  # in flight: taken in, nothing sent
    ov.on_updates(upd(OrderRequest(0, new.order_id, 9990, 500, BTC, 11, 0, int(A.AMEND), 1, 0), S.OPEN))
    ov.loop()  # redone from the answer: the reference's path
    assert calls[-1] is None and ov.sent["AMEND"] == 2 and ov.orders.get(new.order_id).target == (9980, 500)
    arrays[1].write(1, IdealOrder(10010, 300, BTC, -1, 0), 80, 12)
    ov.loop()
    assert calls[-1][7] == A.NEW and calls[-1][4:7] == (BTC, 12, 1) and ov.slots[1][1].order.order_id == calls[-1][0]
    c = ring.reader("", start=0, register=False)
    recs = []
    while c.read() is not None:
        recs.append((OrderRequest._make(OrderRequest.STRUCT.unpack_from(c.record, 24)), c.tracking()[0]))
    assert [(r.action, r.price, o) for r, o in recs] == [(A.NEW, 10000, 77), (A.AMEND, 9990, 78), (A.AMEND, 9980, 79),
                                                         (A.NEW, 10010, 80)]
