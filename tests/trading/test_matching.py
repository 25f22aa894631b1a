"""The matching engine used directly, as a venue simulator uses it: no actor, no clock, the caller
applies levels to its books and hands it requests and trades with the time."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantra.spine.messages import (BalanceUpdate, Fill, Liquidity, OrderAction, OrderFlags, OrderRequest,
                                   OrderStatus as S, OrderUpdate, text)
from mantra.trading.accounts import Reject
from mantra.trading.matching import Matching, Venue

from .harness import INSTRUMENTS

BTC, KR = 1, 2  # binance BTCUSDT (price 0.01, size 0.001), kraken XBT/USDT (0.1 / 0.0001)
T0 = 1_000_000_000


def venues(**over):
    v = {"binance": {"maker_bps": 10, "taker_bps": 20, "amend": True, "balances": {"BTC": "1", "USDT": "10000"}},
         "kraken": {"maker_bps": 0, "taker_bps": 0, "amend": False, "balances": {"BTC": "1", "USDT": "10000"}}}
    for k, d in over.items():
        v[k] = {**v[k], **d}
    return v


class Engine:
    """A Matching and what it emitted, with the caller's side of the contract."""

    def __init__(self, **over):
        self.out = []
        self.t = T0
        self.m = Matching(INSTRUMENTS, venues(**over), lambda v, port, msg: self.out.append((v, port, msg)))
        self.m.flush_balances(self.t)
        self.levels(BTC, [(1, 10000, 1000), (-1, 10100, 500), (-1, 10200, 1000)])
        self.levels(KR, [(1, 1000, 1000), (-1, 1010, 1000)])
        self.take()

    def levels(self, iid, levels):
        book = self.m.books[iid]
        for side, price, size in levels:
            book.apply(side, price, size)
        self.m.book_moved(iid, self.tick())

    def tick(self):
        self.t += 1000
        return self.t

    def act(self, r):
        self.m.act(r, self.tick())
        return self.take()

    def trade(self, iid, side, price, size):
        self.m.trade(iid, side, price, size, self.tick())
        return self.take()

    def take(self):
        out, self.out = self.out, []
        return out


_ids = iter(range(1, 10**9))


def req(action=OrderAction.NEW, price=10000, size=100, side=1, iid=BTC, flags=0, ref=0, oid=None):
    return OrderRequest(oid or next(_ids), ref, price, size, iid, 7, 0, int(action), side, int(flags))


def of(out, cls):
    return [m for _, _, m in out if isinstance(m, cls)]


def test_emit_names_the_venue_and_port_and_starting_balances_go_out_on_flush():
    out = []
    m = Matching(INSTRUMENTS, venues(), lambda *a: out.append(a))
    assert out == []  # nothing before the caller asks
    ts = m.flush_balances(T0)
    assert ts == T0
    got = {(v, text(b.asset)): (b.total, b.available, b.scale, b.exch_ts) for v, port, b in out
           if port == "balances"}
    assert got == {("binance", "BTC"): (1000, 1000, 3, T0), ("binance", "USDT"): (1000000, 1000000, 2, T0),
                   ("kraken", "BTC"): (10000, 10000, 4, T0), ("kraken", "USDT"): (100000, 100000, 1, T0)}
    assert {(v, port, type(msg)) for v, port, msg in out} == {("binance", "balances", BalanceUpdate),
                                                              ("kraken", "balances", BalanceUpdate)}
    assert m.flush_balances(T0) == T0 + 1  # event times strictly increase, even within a clock tick
    assert len(out) == 4  # nothing changed since


def test_resting_order_fills_by_queue_position_when_trades_print_at_its_price():
    e = Engine()
    r = req(price=10000, size=300)  # joins the 1.000 bid: 1000 ahead of us
    out = e.act(r)
    assert [u.status for u in of(out, OrderUpdate)] == [S.ACK, S.OPEN]
    assert all(port == "updates" for _, port, m in out if isinstance(m, OrderUpdate))
    assert not of(e.trade(BTC, -1, 10000, 900), Fill)  # 100 still ahead
    assert not of(e.trade(BTC, 1, 10000, 500), Fill)  # a buyer's trade does not reach our bid
    out = e.trade(BTC, -1, 10000, 250)  # 100 to the queue, 150 to us
    f = of(out, Fill)
    assert [(x.price, x.size, x.liquidity, x.fee) for x in f] == [(10000, 150, Liquidity.MAKER, 2)]  # 10 bps of 15.00
    assert of(out, OrderUpdate)[-1].status == S.PARTIALLY_FILLED
    assert e.m.order(r.order_id).filled == 150
    # the queue is gone: the next trade at our price fills us first
    out = e.trade(BTC, -1, 10000, 1000)
    assert [x.size for x in of(out, Fill)] == [150]
    u = of(out, OrderUpdate)[-1]
    assert (u.status, u.filled) == (S.FILLED, 300)
    st_ = e.m.order(r.order_id)
    assert (st_.status, st_.filled, st_.quote, st_.fees) == (S.FILLED, 300, 3000, 3)
    assert e.m.balance("binance", "BTC") == (1300, 1300)
    assert e.m.balance("binance", "USDT") == (1000000 - 3000 - 3,) * 2


def test_a_level_shrinking_below_the_queue_clamps_it_and_the_book_moving_through_fills_as_maker():
    e = Engine()
    r = req(price=10000, size=300)
    e.act(r)
    e.levels(BTC, [(1, 10000, 100)])  # cancellations ahead of us: 100 left ahead
    assert [x.size for x in of(e.trade(BTC, -1, 10000, 150), Fill)] == [50]
    e.levels(BTC, [(-1, 10100, 0), (-1, 9990, 200)])  # an ask below our bid
    out = e.take()
    assert [(x.price, x.size, x.liquidity) for x in of(out, Fill)] == [(10000, 200, Liquidity.MAKER)]


def test_marketable_order_walks_levels_with_taker_fees():
    e = Engine()
    r = req(price=10200, size=1200)
    out = e.act(r)
    f = of(out, Fill)
    assert [(x.price, x.size, x.liquidity) for x in f] == [(10100, 500, Liquidity.TAKER),
                                                           (10200, 700, Liquidity.TAKER)]
    # 0.5 @ 101 + 0.7 @ 102 = 121.90 USDT; 20 bps = 0.2438 -> 0.25, rounded once per order
    assert sum(x.fee for x in f) == 25
    assert [x.trade_id for x in f] == sorted({x.trade_id for x in f})
    assert [u.status for u in of(out, OrderUpdate)] == [S.ACK, S.PARTIALLY_FILLED, S.FILLED]
    assert of(out, OrderUpdate)[-1].venue_id.rstrip(b"\0") == e.m.order(r.order_id).venue_id.encode()
    assert e.m.balance("binance", "USDT") == (1000000 - 12190 - 25,) * 2
    assert e.m.balance("binance", "BTC") == (2200, 2200)
    assert {m.exch_ts for m in of(out, Fill)} == {e.t}
    # what it took stays taken until the feed reports the level again
    out = e.act(req(price=10200, size=300, flags=OrderFlags.IOC))
    assert [x.size for x in of(out, Fill)] == [300] and of(out, OrderUpdate)[-1].status == S.FILLED
    out = e.act(req(price=10100, size=100, flags=OrderFlags.IOC))
    assert not of(out, Fill) and of(out, OrderUpdate)[-1].status == S.EXPIRED


def test_cancel_all_cancels_every_live_order_of_one_venue_only_answering_each():
    e = Engine()
    a, b = req(price=10000, size=100), req(price=10500, size=100, side=-1)
    k = req(price=1000, size=100, iid=KR)
    for r in (a, b, k):
        e.act(r)
    assert [o.order_id for o in e.m.open_orders("binance")] == [a.order_id, b.order_id]
    out = e.act(req(OrderAction.CANCEL_ALL))  # the request's instrument names the venue
    cancelled = [(v, u.order_id) for v, port, u in out if isinstance(u, OrderUpdate)]
    assert cancelled == [("binance", a.order_id), ("binance", b.order_id)]
    assert {u.status for u in of(out, OrderUpdate)} == {S.CANCELLED}
    assert e.m.open_orders("binance") == []
    assert [o.order_id for o in e.m.open_orders("kraken")] == [k.order_id]  # the other venue's stands
    assert e.m.order(a.order_id).status == S.CANCELLED
    assert e.m.balance("binance", "USDT") == (1000000, 1000000) and e.m.balance("binance", "BTC") == (1000, 1000)
    assert e.m.balance("kraken", "USDT") == (100000, 100000 - 10)  # 0.01 x 100.0: 1.0 USDT locked
    assert e.act(req(OrderAction.CANCEL_ALL)) == []  # nothing left to cancel: nothing to say


def test_balances_and_locks_are_exact():
    e = Engine()
    r = req(price=10000, size=100)  # 0.1 BTC at 100.00: 10.00 USDT, fee at the larger rate (20 bps) 0.02
    out = e.act(r)
    assert e.m.balance("binance", "USDT") == (1000000, 1000000 - 1002)
    b = [m for m in of(out, BalanceUpdate) if text(m.asset) == "USDT"]
    assert [(x.total, x.available) for x in b] == [(1000000, 1000000 - 1002)]
    s = req(price=10500, size=400, side=-1)  # a sell locks the base it delivers
    e.act(s)
    assert e.m.balance("binance", "BTC") == (1000, 600)
    assert rejected(e.act(req(price=10500, size=700, side=-1))) == Reject.INSUFFICIENT_BALANCE
    # a fill at the better maker rate releases the lock it no longer needs
    e.trade(BTC, -1, 9900, 10)  # printed through our bid: it fills fully at our price
    assert e.m.balance("binance", "USDT") == (1000000 - 1000 - 1,) * 2  # maker 10 bps of 10.00 = 0.01
    assert e.m.balance("binance", "BTC") == (1100, 700)
    e.act(req(OrderAction.CANCEL, iid=BTC, ref=s.order_id))
    assert e.m.balance("binance", "BTC") == (1100, 1100)
    # funding: decimal text or the asset's scale, published at the next event
    e.m.deposit("binance", "USDT", "0.5")
    e.m.deposit("kraken", "BTC", 5)
    assert e.m.balance("binance", "USDT") == (1000000 - 1001 + 50,) * 2
    e.m.flush_balances(e.tick())
    out = e.take()
    assert {(text(m.asset), m.venue, m.total) for m in of(out, BalanceUpdate)} == \
        {("USDT", 1, 1000000 - 1001 + 50), ("BTC", 5, 10005)}
    e.act(req(price=1000, size=10000, iid=KR))  # 1 BTC at 100.0: locks 100.0 USDT
    with pytest.raises(ValueError, match="below"):
        e.m.set_balance("kraken", "USDT", "99.9")
    e.m.set_balance("kraken", "USDT", "100")
    assert e.m.balance("kraken", "USDT") == (1000, 0)
    with pytest.raises(KeyError):
        e.m.balance("binance", "ETH")


def rejected(out):
    u = of(out, OrderUpdate)
    assert len(u) == 1 and u[0].status == S.REJECTED
    return Reject(u[0].reason)


def test_refusals_and_what_is_not_answered():
    e = Engine()
    assert rejected(e.act(req(price=10000, size=1))) == Reject.MIN_SIZE
    assert rejected(e.act(req(price=10100, size=100, flags=OrderFlags.POST_ONLY))) == Reject.POST_ONLY
    assert rejected(e.act(req(price=1001, size=100, iid=KR))) == Reject.TICK
    out = e.act(req(OrderAction.CANCEL, ref=424242))
    assert [(u.status, u.reason) for u in of(out, OrderUpdate)] == [(S.CANCEL_REJECTED, Reject.UNKNOWN_ORDER)]
    k = req(price=1000, size=100, iid=KR)
    e.act(k)
    out = e.act(req(OrderAction.AMEND, price=995, size=100, iid=KR, ref=k.order_id))
    assert [(u.status, u.reason) for u in of(out, OrderUpdate)] == [(S.CANCEL_REJECTED, Reject.UNSUPPORTED)]
    assert e.act(req(price=1000, size=100, iid=KR, oid=k.order_id)) == []  # duplicate id
    assert e.act(req(iid=99)) == []  # not an instrument of the engine's venues
    assert e.m.counts["duplicate order id"] == 1 and e.m.counts["unknown instrument"] == 1
    assert e.m.counts["MIN_SIZE"] == 1 and e.m.counts["cancel_rejected_UNSUPPORTED"] == 1


def test_views_of_orders():
    e = Engine()
    r = req(price=10000, size=300)
    e.act(r)
    o = e.m.order(r.order_id)
    assert (o.order_id, o.instrument, o.venue, o.side, o.price, o.size, o.filled, o.status) == \
        (r.order_id, BTC, "binance", 1, 10000, 300, 0, S.OPEN)
    assert o.venue_id.startswith("bin-") and e.m.order_id_of(o.venue_id) == r.order_id
    assert o.created == o.updated == e.t
    e.act(req(OrderAction.AMEND, price=9990, size=200, ref=r.order_id))
    o = e.m.order(r.order_id)
    assert (o.price, o.size, o.status) == (9990, 200, S.OPEN) and o.updated > o.created
    assert e.m.open_orders("binance", instrument=KR) == []
    assert e.m.order(10**12) is None


def test_venue_terms_from_the_settings_tables():
    with pytest.raises(ValueError, match=r"venues.binance: unknown settings \['latency_ns'\]"):
        Matching(INSTRUMENTS, {"binance": {"latency_ns": 5}}, lambda *a: None)
    with pytest.raises(ValueError, match="balance of ETH on binance: no instrument uses it"):
        Matching(INSTRUMENTS, {"binance": {"balances": {"ETH": "1"}}}, lambda *a: None)
    v = Venue("kraken", maker_bps=2, taker_bps=3)
    m = Matching(INSTRUMENTS, {"kraken": v}, lambda *a: None)
    assert m.v["kraken"] is v and set(m.books) == {KR}


# ---------------------------------------------------------------------------- property
ops = st.lists(st.tuples(
    st.sampled_from(["buy", "sell", "buy", "sell", "cancel", "amend", "cancel_all", "trade", "trade", "trade", "level",
                     "level"]),
    st.sampled_from([BTC, KR]), st.integers(-30, 30), st.integers(0, 599), st.integers(0, 3)),
    min_size=1, max_size=60)

_MID = {BTC: 10050, KR: 1005}
_TICK = {BTC: 1, KR: 5}


def _qty(iid, n):
    """0.1 to 0.7 BTC on binance (above its min notional), 0.01 to 1.00 on kraken (its lot)."""
    return 100 + n if iid == BTC else (n % 100 + 1) * 100


@settings(max_examples=150, deadline=None)
@given(ops)
def test_random_requests_never_overdraw_nor_overfill_and_fills_add_up(seq):
    e = Engine()
    m = e.m
    sent, updates, fills = {}, {}, {}
    for kind, iid, dp, size, flag in seq:
        price = _MID[iid] + dp * _TICK[iid] * (3 if iid == BTC else 1)
        qty = _qty(iid, size)
        if kind in ("buy", "sell"):
            r = req(price=price, size=qty, side=1 if kind == "buy" else -1, iid=iid,
                    flags=(OrderFlags.IOC if flag == 1 else OrderFlags.POST_ONLY if flag == 2 else 0))
            sent[r.order_id] = r
            m.act(r, e.tick())
        elif kind in ("cancel", "amend") and sent:
            ref = list(sent)[size % len(sent)]
            if kind == "cancel":
                m.act(req(OrderAction.CANCEL, iid=sent[ref].instrument, ref=ref), e.tick())
            else:
                m.act(req(OrderAction.AMEND, price=price, size=qty, iid=sent[ref].instrument, ref=ref), e.tick())
        elif kind == "cancel_all":
            m.act(req(OrderAction.CANCEL_ALL, iid=iid), e.tick())
        elif kind == "trade":
            m.trade(iid, (-1, 0, 1, 1)[flag], price, qty, e.tick())
        else:
            e.levels(iid, [(1 if dp < 0 else -1, price, qty if flag else 0)])
        for v, port, msg in e.take():
            assert port == {OrderUpdate: "updates", Fill: "fills", BalanceUpdate: "balances"}[type(msg)]
            if isinstance(msg, OrderUpdate) and msg.status != S.CANCEL_REJECTED:
                updates[msg.order_id] = msg
            elif isinstance(msg, Fill):
                fills.setdefault(msg.order_id, []).append(msg)
        for (venue, asset), (total, locked) in m.bal.items():
            assert total >= 0 and 0 <= locked <= total, (venue, asset, total, locked)
            if venue in m.v:
                assert m.balance(venue, asset) == (total, total - locked)
        for o in m.orders.values():
            assert 0 <= o.filled < o.size
    m.act(req(OrderAction.CANCEL_ALL, iid=BTC), e.tick())
    m.act(req(OrderAction.CANCEL_ALL, iid=KR), e.tick())
    for v, port, msg in e.take():
        if isinstance(msg, OrderUpdate):
            updates[msg.order_id] = msg
        elif isinstance(msg, Fill):
            fills.setdefault(msg.order_id, []).append(msg)
    assert not m.orders and all(locked == 0 for _, locked in m.bal.values())
    for oid, u in updates.items():
        fs = fills.get(oid, [])
        filled = sum(f.size for f in fs)
        assert filled == u.filled == m.order(oid).filled <= m.order(oid).size
        assert u.status in (S.FILLED, S.CANCELLED, S.EXPIRED, S.REJECTED)
        assert (u.status == S.FILLED) == (filled == m.order(oid).size)
        assert sum(f.fee for f in fs) == m.order(oid).fees
    # the base moved by exactly the fills, per venue
    for venue, iid, start in (("binance", BTC, 1000), ("kraken", KR, 10000)):
        moved = sum(f.side * f.size for fs in fills.values() for f in fs if f.instrument == iid)
        assert m.bal[(venue, "BTC")] == [start + moved, 0]
