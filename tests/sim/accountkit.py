"""The harness the order-entry tests share: a venue's order protocol through the shared
``AccountRunner`` against that venue's simulator over loopback, what they publish landing in an
overseer's books, and the invariants every test checks (no order placed twice, every fill counted
once, balances equal to the simulator's truth), the scenarios every venue runs alike (refused
credentials halt, a 5xx after the venue accepted, the kill switch, a restart that reconciles), and
the handler in a process of its own for the kill -9 tests (``HandlerProcess``).  ``BinanceHarness``
and ``KrakenHarness`` (and each venue's ``<venue>kit.py``) name the venue: its protocol class, its
simulator's credentials, the symbol traded and the sizes used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fixtures import VECTORS
from mantra.execution.runner import AccountRunner
from mantra.sim import binance as binance_sim
from mantra.sim import kraken as kraken_sim
from mantra.spine.messages import BalanceUpdate, Fill, OrderAction, OrderFlags, OrderRequest, OrderStatus, OrderUpdate
from mantra.trading.accounts import Orders, Reject
from mantra.venues.account import Credentials, Halt, client_id
from mantra.venues.binance.orders import BinanceOrders
from mantra.venues.kraken.orders import KrakenOrders, trade_key
from waits import wait_for

KRAKEN_SECRET = json.loads(VECTORS.read_text())["kraken"]["signature_vectors"][0]["private_key"]


class Harness:
    """The protocol and runner against a simulator; what they publish lands in an overseer's books.

    ``protocol``: the venue's ``OrderProtocol`` class; ``symbol``: the instrument the tests trade
    (``btc``; its base and quote are the balances compared); ``creds``: the simulator's key;
    ``venue_trade_id``: the spine's ``trade_id`` of one of the simulator's fills; ``check_available``:
    compare the available balance too, not only the total.  ``rest_lots`` / ``take_lots``: the size,
    in lots, of an order that rests far below the market / of a marketable buy (each venue's
    minimums differ)."""

    rest_lots = 40
    take_lots = 40

    def __init__(self, sim, protocol, symbol: str, creds, venue_trade_id, *, first_id: int = 1000,
                 check_available: bool = True, **settings):
        self.sim = sim
        self.symbol = symbol
        self.insts = {i.symbol: i for i in sim.instruments.values()}
        self.btc = self.insts[symbol]
        self.assets = (self.btc.quote, self.btc.base)
        self.venue_trade_id = venue_trade_id
        self.check_available = check_available
        settings.setdefault("reconcile_s", 30)
        self.proto = protocol(creds, list(self.insts.values()), ws_url=sim.ws_url, rest_url=sim.rest_url,
                              **settings)
        self.out: list = []
        self.orders = Orders()
        self.runner = AccountRunner(self.proto, self._sink, loopback_only=True, timer_s=0.05, backoff_s=0.05,
                                    backoff_max_s=0.2, http_timeout=3.0)
        self.next_id = first_id  # order ids never repeat across handlers (the overseer's are unique)

    def _sink(self, m, ts) -> None:
        self.out.append(m)
        if type(m) is OrderUpdate:
            self.orders.on_update(m)
        elif type(m) is Fill:
            self.orders.on_fill(m)

    def pump(self, cond, timeout: float = 10.0) -> bool:
        def step():
            self.runner.poll(0.02)
            return cond()
        return wait_for(step, timeout, step=0)

    def start(self) -> "Harness":
        self.runner.start()
        assert self.pump(lambda: self.proto.subscribed and self.balance_seen(self.btc.quote)), self.proto.counts
        return self

    def close(self) -> None:
        self.runner.close()

    def request(self, action, ref=0, price=0, size=0, side=1, flags=0, inst=None) -> OrderRequest:
        self.next_id += 1
        r = OrderRequest(self.next_id, ref, price, size, (inst or self.btc).id, 1, 0, action, side, flags)
        self.orders.sent(r)
        self.runner.submit(r)
        return r

    def new(self, price, size, side=1, flags=0):
        return self.request(OrderAction.NEW, price=price, size=size, side=side, flags=flags)

    def status(self, oid):
        o = self.orders.get(oid)
        return o.status if o else None

    def sim_cid(self, oid) -> object:
        """What the simulator knows our order ``oid`` by (``placed``, ``fills_of``, ``order_state``)."""
        return client_id(oid)

    def rest(self, below: int = 0) -> OrderRequest:
        """A buy that rests, ``below`` ticks under the far bid."""
        return self.new(self.far_bid() - below * self.btc.tick, self.rest_lots * self.btc.lot)

    def take(self, lots: int | None = None) -> OrderRequest:
        """A marketable buy (IOC) that fills against the book, maybe in several trades."""
        ask = self.book().top(-1, 3)[-1][0]
        return self.new(ask, (lots or self.take_lots) * self.btc.lot, flags=OrderFlags.IOC)

    def done(self, r) -> bool:
        """``r``'s order ended and every fill it reported arrived."""
        o = self.orders.get(r.order_id)
        return o is not None and not o.live and o.fill_qty >= o.filled

    def reasons(self) -> list[int]:
        return [m.reason for m in self.out if type(m) is OrderUpdate]

    def balance_seen(self, asset: str) -> BalanceUpdate | None:
        last = None
        for m in self.out:
            if type(m) is BalanceUpdate and m.asset.rstrip(b"\0").decode() == asset:
                last = m
        return last

    def fills(self, oid) -> list[Fill]:
        return [m for m in self.out if type(m) is Fill and m.order_id == oid]

    def book(self):
        return self.sim.book(self.symbol)

    def far_bid(self) -> int:
        return (self.book().best_bid() // self.btc.tick - 200) * self.btc.tick

    def fills_settled(self) -> bool:
        """Every fill the venue made for our orders has reached us (a reordered or cut stream
        delivers some late: held back, or fetched by the reconciliation)."""
        return all(sorted(f.trade_id for f in self.fills(oid)) == sorted(self.venue_trade_id(v)
                                                                         for v in self.sim.fills_of(self.sim_cid(oid)))
                   for oid in list(self.orders.active) + list(self.orders.done))

    def check_invariants(self) -> None:
        """No order placed twice; every fill the venue made arrived once; balances equal the truth."""
        assert all(n == 1 for n in self.sim.placed.values()), self.sim.placed
        assert self.sim.order_counts["duplicate_cid"] == 0
        self.pump(self.fills_settled, 5.0)
        for oid, o in list(self.orders.active.items()) + list(self.orders.done.items()):
            venue = self.sim.fills_of(self.sim_cid(oid))
            assert sorted(f.trade_id for f in self.fills(oid)) == sorted(self.venue_trade_id(v) for v in venue), oid
            assert o.fill_qty == sum(f.size for f in self.fills(oid)) <= max(o.size, o.filled)
        assert self.orders.counts["overfill"] == 0
        assert self.pump(self._balances_match, 5.0), [(a, self.balance_seen(a), self.sim.balance(a))
                                                      for a in self.assets]

    def _balances_match(self) -> bool:
        for asset in self.assets:
            b = self.balance_seen(asset)
            total, avail, scale = self.sim.balance(asset)
            k = 10 ** (b.scale - scale) if b is not None else 0
            if b is None or b.total != total * k or (self.check_available and b.available != avail * k):
                return False
        return True


# -- the scenarios every venue runs alike ------------------------------------------------------------
S = OrderStatus


def refused_credentials_halt(harness, sim, creds, said: str) -> None:
    """A key the venue refuses halts order entry with the venue's reason (``said``); every later
    request is refused HALTED (the overseer's kill switch trips on it)."""
    h = harness(sim, creds=creds)
    h.runner.start()
    assert h.pump(lambda: h.runner.halted)
    assert any(type(m) is Halt for m in h.out) and said in h.runner.halted, h.runner.halted
    r = h.new(h.btc.tick * 1000, h.rest_lots * h.btc.lot)
    assert h.status(r.order_id) == S.REJECTED and h.reasons()[-1] == Reject.HALTED
    h.close()


def fault_5xx_after_accept(h, sim) -> None:
    """The venue accepted the NEW and answered 5xx: the order is found by its client id, never sent again."""
    sim.inject("order_5xx")
    r = h.rest()
    assert h.pump(lambda: h.status(r.order_id) == S.OPEN and not h.proto.reqs)
    assert sim.order_counts["answered_5xx"] == 1 and h.proto.counts["unknown_outcomes"] == 1
    assert sim.placed[h.sim_cid(r.order_id)] == 1
    h.check_invariants()


def _reconcile_now(h) -> None:
    h.proto._reconcile(time.time_ns())
    h.runner._drain(0)


def fault_ban_halts(h, sim, status: str, ask=_reconcile_now) -> None:
    """The venue bans the key (``status``: its 418 or 403): order entry halts at the venue's next
    answer (``ask(h)`` makes the handler call it) and nothing more is sent."""
    sim.inject("ban")
    ask(h)
    assert h.pump(lambda: h.runner.halted)
    assert status in h.runner.halted, h.runner.halted
    r = h.rest()
    assert h.status(r.order_id) == S.REJECTED and sim.placed.get(h.sim_cid(r.order_id)) is None


def fault_cancel_filled(h, sim) -> None:
    """A cancel that arrives as the order fills: it ends FILLED, with every fill."""
    r = h.rest()
    assert h.pump(lambda: h.status(r.order_id) == S.OPEN)
    sim.inject("cancel_filled")
    h.request(OrderAction.CANCEL, ref=r.order_id)
    assert h.pump(lambda: h.done(r))
    assert h.status(r.order_id) == S.FILLED and sim.order_counts["filled_before_cancel"] == 1
    assert sum(f.size for f in h.fills(r.order_id)) == r.size
    h.check_invariants()


def fault_duplicated_and_reordered_stream(h, sim, *counters: str) -> None:
    """The private stream repeats messages, then sends two out of order: fills still count once
    (``counters``: the venue's counts of what it dropped as repeated or late, one at least)."""
    sim.inject("stream_duplicate", 3)
    r1 = h.take()
    assert h.pump(lambda: h.done(r1))
    sim.inject("stream_reorder")
    r2 = h.take()
    assert h.pump(lambda: h.done(r2))
    r3 = h.take()
    assert h.pump(lambda: h.done(r3))
    assert h.fills(r1.order_id) and h.fills(r2.order_id)
    assert sum(h.proto.counts[c] for c in counters) >= 1, h.proto.counts
    h.check_invariants()


def kill_switch_cancels_everything(h, sim) -> None:
    rs = [h.rest(below=i) for i in range(3)]
    assert h.pump(lambda: all(h.status(r.order_id) == S.OPEN for r in rs))
    h.runner.cancel_all()
    assert h.pump(lambda: all(h.status(r.order_id) == S.CANCELLED for r in rs))
    assert not sim.open_orders()
    h.check_invariants()


def restart_reconciles(harness, sim, **settings) -> None:
    """A handler that died leaves an order on the venue: its successor (``unknown_orders="adopt"``)
    finds it, adopts it and can cancel it, and nothing is placed twice; with ``"cancel"``, an
    order it does not know is cancelled at start.  ``settings``: the venue's own for every handler."""
    h = harness(sim, unknown_orders="adopt", **settings).start()
    r = h.rest()
    assert h.pump(lambda: h.status(r.order_id) == S.OPEN)
    h.close()
    h2 = harness(sim, unknown_orders="adopt", **settings)
    h2.orders.sent(r)  # the overseer still knows what it asked for
    h2.runner.start()
    assert h2.pump(lambda: h2.status(r.order_id) == S.OPEN and h2.proto.subscribed)
    h2.request(OrderAction.CANCEL, ref=r.order_id)
    assert h2.pump(lambda: h2.status(r.order_id) == S.CANCELLED)
    assert sim.placed[h2.sim_cid(r.order_id)] == 1
    h2.close()
    h3 = harness(sim, first_id=5000, **settings).start()
    x = h3.rest()
    assert h3.pump(lambda: h3.status(x.order_id) == S.OPEN)
    h3.close()
    h4 = harness(sim, first_id=9000, unknown_orders="cancel", **settings).start()
    assert h4.pump(lambda: not sim.open_orders())
    assert h4.proto.counts["unknown_cancelled"] >= 1
    h4.close()


def fill_while_dead_is_reported(harness, sim, asked: bool, **settings) -> None:
    """The handler dies right after writing a marketable NEW and the venue fills it meanwhile: its
    successor reports how the order ended and every fill of it, whether it learns of the order
    from its own reconciliation or because the overseer, tired of waiting, asks to cancel it
    (``asked``).  Nothing placed twice, balances as the venue's."""
    h = harness(sim, unknown_orders="adopt", **settings).start()
    r = h.take()
    assert wait_for(lambda: sim.fills_of(h.sim_cid(r.order_id)), 5)  # it traded...
    h.close()  # ...and the handler dies before reading a word about it
    h2 = harness(sim, unknown_orders="adopt", first_id=5000, **settings)
    h2.orders.sent(r)  # the overseer still waits for its answer
    h2.runner.start()
    if asked:
        h2.request(OrderAction.CANCEL, ref=r.order_id)
    ended = (S.FILLED, S.CANCELLED, S.EXPIRED)
    assert h2.pump(lambda: h2.status(r.order_id) in ended, 15), (h2.status(r.order_id), h2.proto.counts)
    assert h2.pump(h2.fills_settled, 15), (h2.fills(r.order_id), h2.proto.counts)
    assert h2.fills(r.order_id)
    h2.check_invariants()
    h2.close()


# -- the handler in a process of its own (kill -9) ----------------------------------------------------
HANDLER = r"""
import json, os, select, sys
from importlib import import_module
from mantra.execution.actor import protocol_class
from mantra.execution.runner import AccountRunner
from mantra.instruments import InstrumentRegistry
from mantra.spine.messages import Fill, OrderAction, OrderRequest, OrderUpdate
from mantra.venues.account import Credentials

venue, symbol, ws, rest, settings = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
reg = InstrumentRegistry()
insts = [x.instrument(venue, reg) for x in import_module(f"mantra.sim.{venue}").LISTINGS]
inst = next(i for i in insts if i.symbol == symbol)
creds = Credentials(os.environ["HANDLER_KEY"], os.environ["HANDLER_SECRET"])
p = protocol_class(venue)(creds, insts, ws_url=ws, rest_url=rest, **settings)

def out(m, ts):
    if type(m) is OrderUpdate:
        print(json.dumps({"update": m.order_id, "status": int(m.status)}), flush=True)
    elif type(m) is Fill:
        print(json.dumps({"fill": m.order_id, "trade": m.trade_id}), flush=True)

run = AccountRunner(p, out, loopback_only=True, timer_s=0.05, backoff_s=0.05, http_timeout=3.0)
run.start()
while not p.subscribed:
    run.poll(0.02)
print(json.dumps({"ready": True}), flush=True)
buf = b""
while True:
    if select.select([0], [], [], 0.01)[0]:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            act, oid, ref, price, size = line.decode().split()
            action = OrderAction.NEW if act == "new" else OrderAction.CANCEL
            run.submit(OrderRequest(int(oid), int(ref), int(price), int(size), inst.id, 1, 0, action, 1, 0))
            print(json.dumps({"sent": int(oid)}), flush=True)
    run.poll(0.01)
"""


class HandlerProcess:
    """A venue's handler (its order protocol under the ``AccountRunner``) in a process of its own, as
    a system runs it: driven through its stdin (``new OID 0 PRICE SIZE``, ``cancel OID REF 0 0``), its
    answers read line by line as JSON (``ready``, ``sent``, ``update`` with ``status``, ``fill``)."""

    def __init__(self, venue: str, symbol: str, sim, creds: Credentials, **settings):
        env = dict(os.environ, HANDLER_KEY=creds.key, HANDLER_SECRET=creds.secret,
                   PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
        self.p = subprocess.Popen([sys.executable, "-c", HANDLER, venue, symbol, sim.ws_url, sim.rest_url,
                                   json.dumps(settings)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, bufsize=1, env=env)
        os.set_blocking(self.p.stdout.fileno(), False)
        self.lines: list[dict] = []
        self._buf = ""

    def read(self) -> list[dict]:
        try:
            chunk = self.p.stdout.read()
        except (BlockingIOError, TypeError):
            chunk = None
        if chunk:
            self._buf += chunk
            *done, self._buf = self._buf.split("\n")
            self.lines += [json.loads(x) for x in done if x.strip()]
        return self.lines

    def wait(self, cond, timeout=20.0) -> bool:
        return wait_for(lambda: cond(self.read()), timeout)

    def send(self, *cmds: str) -> None:
        self.p.stdin.write("".join(c + "\n" for c in cmds))
        self.p.stdin.flush()

    def status(self, oid):
        st = [x["status"] for x in self.read() if x.get("update") == oid]
        return st[-1] if st else None

    def sent(self) -> list[int]:
        return [x["sent"] for x in self.read() if "sent" in x]

    def kill(self) -> None:
        """SIGKILL, as a crash: whatever it had on its way may or may not reach the venue."""
        self.p.kill()
        self.p.wait()
        self.read()

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        for f in (self.p.stdin, self.p.stdout):
            f.close()


class BinanceHarness(Harness):
    def __init__(self, sim, creds=None, first_id: int = 1000, **settings):
        super().__init__(sim, BinanceOrders, "BTCUSDT",
                         creds or Credentials(binance_sim.DEFAULT_KEY, binance_sim.DEFAULT_SECRET),
                         lambda v: v["id"], first_id=first_id, **settings)


class KrakenHarness(Harness):
    """Kraken reports totals only: the available balance is ours (``venues/kraken/orders.py``)."""

    rest_lots = 20_000  # lots of 0.00000001 BTC
    take_lots = 40_000

    def __init__(self, sim, creds=None, first_id: int = 1000, **settings):
        super().__init__(sim, KrakenOrders, "BTC/USD", creds or Credentials(kraken_sim.DEFAULT_KEY, KRAKEN_SECRET),
                         lambda v: trade_key(v["exec_id"]), first_id=first_id, check_available=False, **settings)
