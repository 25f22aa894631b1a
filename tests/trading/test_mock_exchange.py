"""Mock exchange: crossing, partial and queued passive fills, fees, every reject, latency, amend,
and balances that always reconcile with the fills."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantra.spine.messages import (BalanceUpdate, Fill, L2Flags, L2Update, Liquidity, OrderAction, OrderFlags,
                                   OrderRequest, OrderStatus as S, OrderUpdate, TradeUpdate, text)
from mantra.trading.accounts import Reject
from mantra.trading.mock_exchange import MockExchange

from .harness import INSTRUMENTS, Clock, l2, make

BTC, KR = 1, 2  # instrument ids: binance BTCUSDT (price 0.01, size 0.001), kraken XBT/USDT (0.1 / 0.0001)
LAST = int(L2Flags.LAST)


def venues(**over):
    v = {"binance": {"maker_bps": 10, "taker_bps": 20, "amend": True, "balances": {"BTC": "1", "USDT": "10000"}},
         "kraken": {"maker_bps": 0, "taker_bps": 0, "amend": False, "balances": {"BTC": "1", "USDT": "10000"}}}
    for k, d in over.items():
        v[k] = {**v[k], **d}
    return v


def exchange(**over):
    clock = Clock()
    ex = make(MockExchange, clock, instruments=INSTRUMENTS, venues=venues(**over))
    book(ex, BTC, [(1, 10000, 1000), (-1, 10100, 500), (-1, 10200, 1000)])
    take(ex)
    return ex


def book(ex, iid, levels):
    for j, (side, price, size) in enumerate(levels):
        l2(ex, L2Update(price, size, ex.clock.now(), iid, side, LAST if j == len(levels) - 1 else 0))


def take(ex):
    ex.loop()
    return ex.updates.take() + ex.fills.take() + ex.balances.take()


_ids = iter(range(1, 10**9))


def req(action=OrderAction.NEW, price=10000, size=100, side=1, iid=BTC, flags=0, ref=0, oid=None):
    return OrderRequest(oid or next(_ids), ref, price, size, iid, 7, 0, int(action), side, int(flags))


def send(ex, r):
    ex.on_requests(r)
    return take(ex)


def of(msgs, cls):
    return [m for m in msgs if isinstance(m, cls)]


def bal(msgs, asset, venue=1):
    b = [m for m in of(msgs, BalanceUpdate) if text(m.asset) == asset and m.venue == venue]
    return (b[-1].total, b[-1].available) if b else None


def test_starting_balances_are_published():
    clock = Clock()
    ex = make(MockExchange, clock, instruments=INSTRUMENTS, venues=venues())
    got = {(m.venue, text(m.asset)): (m.total, m.scale) for m in ex.balances.take()}
    assert got[(1, "BTC")] == (1000, 3) and got[(1, "USDT")] == (1000000, 2)
    assert got[(5, "BTC")] == (10000, 4) and got[(5, "USDT")] == (100000, 1)


def test_marketable_buy_walks_levels_with_partial_fills_and_taker_fee():
    ex = exchange()
    out = send(ex, req(price=10200, size=1000))
    fills = of(out, Fill)
    assert [(f.price, f.size, f.liquidity) for f in fills] == [(10100, 500, Liquidity.TAKER),
                                                               (10200, 500, Liquidity.TAKER)]
    # 0.5 @ 101 + 0.5 @ 102 = 101.50 USDT; 20 bps = 0.203 -> 0.21 (rounded up, once per order)
    assert sum(f.fee for f in fills) == 21
    assert [u.status for u in of(out, OrderUpdate)] == [S.ACK, S.PARTIALLY_FILLED, S.FILLED]
    assert of(out, OrderUpdate)[-1].filled == 1000
    assert bal(out, "USDT") == (1000000 - 10150 - 21,) * 2
    assert bal(out, "BTC") == (2000, 2000)


def test_taken_liquidity_is_not_taken_twice_until_the_feed_reports_the_level():
    ex = exchange()
    send(ex, req(price=10100, size=500))  # takes the whole 101 level
    out = send(ex, req(price=10100, size=200))
    assert not of(out, Fill) and of(out, OrderUpdate)[-1].status == S.OPEN
    book(ex, BTC, [(-1, 10100, 300)])  # the feed reports the level again: the resting buy is crossed
    out = take(ex)
    f = of(out, Fill)
    assert [(x.price, x.size, x.liquidity) for x in f] == [(10100, 200, Liquidity.MAKER)]
    assert f[0].fee == 3  # maker 10 bps of 20.20 USDT = 0.0202, rounded up to the cent


def test_resting_order_queue_shrinks_with_trades_and_level_clamps_then_fills():
    ex = exchange()
    book(ex, BTC, [(-1, 10300, 500)])
    take(ex)
    sell = req(price=10300, size=200, side=-1)
    out = send(ex, sell)
    assert of(out, OrderUpdate)[-1].status == S.OPEN
    # the level shrinks 500 -> 400: worst case, cancellations were behind us; queue clamps to 400
    book(ex, BTC, [(-1, 10300, 400)])
    ex._on_trade(TradeUpdate(10300, 350, 0, 1, BTC, 1))  # a buyer lifts 350: still 50 ahead of us
    assert not of(take(ex), Fill)
    ex._on_trade(TradeUpdate(10300, 100, 0, 2, BTC, 1))  # 50 to the queue, 50 to us
    out = take(ex)
    assert [(f.size, f.price, f.liquidity) for f in of(out, Fill)] == [(50, 10300, Liquidity.MAKER)]
    assert of(out, OrderUpdate)[-1].status == S.PARTIALLY_FILLED and of(out, OrderUpdate)[-1].filled == 50
    ex._on_trade(TradeUpdate(10300, 10, 0, 3, BTC, -1))  # a seller's trade cannot fill our sell
    assert not of(take(ex), Fill)
    ex._on_trade(TradeUpdate(10400, 5, 0, 4, BTC, 1))  # a trade through our price: the rest fills
    out = take(ex)
    assert [f.size for f in of(out, Fill)] == [150]
    assert of(out, OrderUpdate)[-1].status == S.FILLED


def test_a_joined_level_shrinks_our_queue_only_by_trades():
    ex = exchange()
    send(ex, req(price=10000, size=100))  # joins 1000 on the bid
    ex._on_trade(TradeUpdate(10000, 999, 0, 1, BTC, -1))
    assert not of(take(ex), Fill)
    ex._on_trade(TradeUpdate(10000, 51, 0, 2, BTC, -1))
    assert [f.size for f in of(take(ex), Fill)] == [50]


def test_book_moving_through_a_resting_order_fills_it_as_maker_at_its_price():
    ex = exchange()
    send(ex, req(price=10050, size=300))
    book(ex, BTC, [(-1, 10100, 0), (-1, 10040, 200)])  # an ask appears below our bid
    out = take(ex)
    f = of(out, Fill)
    assert [(x.price, x.size, x.liquidity) for x in f] == [(10050, 200, Liquidity.MAKER)]


def test_sell_proceeds_and_fee_reconcile():
    ex = exchange()
    out = send(ex, req(price=9900, size=700, side=-1))  # 0.7 into the 100.00 bid (1.0 there)
    f = of(out, Fill)
    assert [(x.price, x.size) for x in f] == [(10000, 700)]
    assert f[0].fee == 14  # 20 bps of 70.00 = 0.14
    assert bal(out, "USDT") == (1000000 + 7000 - 14,) * 2
    assert bal(out, "BTC") == (300, 300)


def test_ioc_remainder_expires_and_releases_its_lock():
    ex = exchange()
    out = send(ex, req(price=10100, size=800, flags=OrderFlags.IOC))
    assert [x.size for x in of(out, Fill)] == [500]
    u = of(out, OrderUpdate)[-1]
    assert u.status == S.EXPIRED and u.filled == 500
    total, avail = bal(out, "USDT")
    assert total == avail == 1000000 - 5050 - 11  # 50.50 + 20 bps (0.101 -> 0.11)


def rejected(out):
    u = of(out, OrderUpdate)
    assert len(u) == 1 and u[0].status == S.REJECTED
    return Reject(u[0].reason)


def test_each_reject_a_venue_gives():
    ex = exchange()
    assert rejected(send(ex, req(price=10000, size=0))) == Reject.BAD_REQUEST
    assert rejected(send(ex, req(price=10000, size=1))) == Reject.MIN_SIZE
    assert rejected(send(ex, req(price=10000, size=5))) == Reject.MIN_NOTIONAL  # 0.005 x 100 = 0.50 < 10
    assert rejected(send(ex, req(price=10000, size=200_000))) == Reject.INSUFFICIENT_BALANCE  # 20000 USDT
    assert rejected(send(ex, req(price=10000, size=1001, side=-1))) == Reject.INSUFFICIENT_BALANCE  # 1.001 BTC
    assert rejected(send(ex, req(price=10100, size=100, flags=OrderFlags.POST_ONLY))) == Reject.POST_ONLY
    book(ex, KR, [(1, 1000, 100), (-1, 1010, 100)])
    take(ex)
    assert rejected(send(ex, req(price=1001, size=100, iid=KR))) == Reject.TICK  # tick 0.5
    assert rejected(send(ex, req(price=1000, size=150, iid=KR))) == Reject.LOT  # lot 0.01
    assert rejected(send(ex, req(price=1000, size=50, iid=KR, side=-1))) == Reject.LOT
    # a post-only order that does not cross is fine
    assert of(send(ex, req(price=10050, size=100, flags=OrderFlags.POST_ONLY)), OrderUpdate)[-1].status == S.OPEN


def change_refused(out):
    u = of(out, OrderUpdate)
    assert len(u) == 1 and u[0].status == S.CANCEL_REJECTED
    return Reject(u[0].reason)


def test_cancel_and_amend_refusals_and_duplicates():
    ex = exchange()
    assert change_refused(send(ex, req(OrderAction.CANCEL, ref=424242))) == Reject.UNKNOWN_ORDER
    book(ex, KR, [(1, 1000, 100), (-1, 1010, 100)])
    r = req(price=1000, size=100, iid=KR)
    send(ex, r)
    assert change_refused(send(ex, req(OrderAction.AMEND, price=995, size=100, iid=KR, ref=r.order_id))) == \
        Reject.UNSUPPORTED
    out = send(ex, req(price=1000, size=100, iid=KR, oid=r.order_id))  # duplicate id: not answered, counted
    assert out == [] and ex.counts["duplicate order id"] == 1
    out = send(ex, req(OrderAction.CANCEL, iid=KR, ref=r.order_id))
    assert of(out, OrderUpdate)[-1].status == S.CANCELLED and bal(out, "USDT", venue=5) == (100000, 100000)
    assert change_refused(send(ex, req(OrderAction.CANCEL, iid=KR, ref=r.order_id))) == Reject.UNKNOWN_ORDER


def test_amend_keeps_queue_when_shrinking_requeues_on_price_and_crosses_when_marketable():
    ex = exchange()
    r = req(price=10000, size=300)
    send(ex, r)  # queue 1000
    ex._on_trade(TradeUpdate(10000, 600, 0, 1, BTC, -1))  # queue 400
    out = send(ex, req(OrderAction.AMEND, price=10000, size=200, ref=r.order_id))
    u = of(out, OrderUpdate)[-1]
    assert (u.order_id, u.status, u.size) == (r.order_id, S.OPEN, 200)
    ex._on_trade(TradeUpdate(10000, 450, 0, 2, BTC, -1))  # kept its place: 50 beyond the queue fill us
    assert [f.size for f in of(take(ex), Fill)] == [50]
    out = send(ex, req(OrderAction.AMEND, price=10100, size=300, ref=r.order_id))  # now marketable
    f = of(out, Fill)
    assert [(x.price, x.size, x.liquidity) for x in f] == [(10100, 250, Liquidity.TAKER)]
    assert of(out, OrderUpdate)[-1].status == S.FILLED
    assert change_refused(send(ex, req(OrderAction.AMEND, price=10000, size=300, ref=r.order_id))) == \
        Reject.UNKNOWN_ORDER


def test_amend_below_filled_or_beyond_balance_is_refused_and_the_order_stands():
    ex = exchange()
    r = req(price=10000, size=300)
    send(ex, r)
    ex._on_trade(TradeUpdate(10000, 1100, 0, 1, BTC, -1))  # 1000 ahead, 100 to us
    assert [f.size for f in of(take(ex), Fill)] == [100]
    assert change_refused(send(ex, req(OrderAction.AMEND, price=10000, size=100, ref=r.order_id))) == \
        Reject.BAD_REQUEST
    assert change_refused(send(ex, req(OrderAction.AMEND, price=10000, size=200_000, ref=r.order_id))) == \
        Reject.INSUFFICIENT_BALANCE
    out = send(ex, req(OrderAction.CANCEL, ref=r.order_id))
    u = of(out, OrderUpdate)[-1]
    assert (u.status, u.size, u.filled) == (S.CANCELLED, 300, 100)


def test_cancel_all_cancels_every_order_of_the_venue():
    ex = exchange()
    a, b = req(price=10000, size=100), req(price=10500, size=100, side=-1)
    send(ex, a)
    send(ex, b)
    book(ex, KR, [(1, 1000, 100), (-1, 1010, 100)])
    k = req(price=1000, size=100, iid=KR)
    send(ex, k)
    out = send(ex, req(OrderAction.CANCEL_ALL))
    cancelled = sorted(u.order_id for u in of(out, OrderUpdate) if u.status == S.CANCELLED)
    assert cancelled == sorted([a.order_id, b.order_id])
    assert k.order_id in ex.orders  # the other venue's order stands
    assert bal(out, "USDT") == (1000000, 1000000) and bal(out, "BTC") == (1000, 1000)


def test_latency_delays_the_effect_and_the_answer_on_the_actors_clock():
    ex = exchange(binance={"latency_ns": 5_000_000, "response_ns": 3_000_000})
    ex.clock.t += 3_000_000
    assert of(take(ex), BalanceUpdate)  # the starting balances, answered late too
    t0 = ex.clock.t
    ex.on_requests(req(price=10100, size=100))
    assert ex.wakeup == t0 + 5_000_000
    book(ex, BTC, [(-1, 10100, 50)])  # before the request acts: it meets this book
    assert take(ex) == []
    ex.clock.t = t0 + 5_000_000
    assert take(ex) == [] and ex.wakeup == t0 + 8_000_000  # acted, answer not yet out
    ex.clock.t = t0 + 8_000_000
    out = take(ex)
    assert [f.size for f in of(out, Fill)] == [50]
    assert {m.exch_ts for m in of(out, Fill)} == {t0 + 5_000_000}
    assert ex.wakeup == 0


# ---------------------------------------------------------------------------- property
actions = st.lists(st.tuples(
    st.sampled_from(["buy", "sell", "cancel", "amend", "trade", "level"]),
    st.integers(9800, 10300), st.integers(1, 1500), st.booleans()), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(actions)
def test_balances_never_negative_and_reconcile_with_fills(acts):
    ex = exchange()
    live, fills, tid = [], [], 0
    for kind, price, size, flag in acts:
        if kind in ("buy", "sell"):
            r = req(price=price, size=size, side=1 if kind == "buy" else -1, flags=OrderFlags.IOC if flag else 0)
            live.append(r.order_id)
            ex.on_requests(r)
        elif kind == "cancel" and live:
            ex.on_requests(req(OrderAction.CANCEL, ref=live[size % len(live)]))
        elif kind == "amend" and live:
            ex.on_requests(req(OrderAction.AMEND, price=price, size=size, ref=live[size % len(live)]))
        elif kind == "trade":
            tid += 1
            ex._on_trade(TradeUpdate(price, size, 0, tid, BTC, 1 if flag else -1))
        else:
            book(ex, BTC, [(1 if price < 10050 else -1, price, size if flag else 0)])
        fills += of(take(ex), Fill)
        for (venue, asset), (total, locked) in ex.bal.items():
            assert total >= 0 and 0 <= locked <= total, (venue, asset, total, locked)
    ex.on_requests(req(OrderAction.CANCEL_ALL))
    fills += of(take(ex), Fill)
    assert ex.bal[("binance", "BTC")] == [1000 + sum(f.side * f.size for f in fills), 0]
    # quote: per order, cost rounded up / proceeds rounded down once, on the exact sum; minus fees
    by_order = {}
    for f in fills:
        by_order.setdefault(f.order_id, []).append(f)
    quote = 1000000
    for fs in by_order.values():
        exact = sum(f.price * f.size for f in fs)
        quote += -(-exact // 1000) * -1 if fs[0].side > 0 else exact // 1000
        quote -= sum(f.fee for f in fs)
        fee_exact = sum(f.price * f.size * (20 if f.liquidity == Liquidity.TAKER else 10) for f in fs)
        fee_up = -(-fee_exact // 10_000_000)
        assert sum(f.fee for f in fs) == (fee_up if fs[0].side > 0 else min(fee_up, exact // 1000))
    assert ex.bal[("binance", "USDT")] == [quote, 0]


@pytest.mark.parametrize("venues,want", [
    ({"binance": {"maker_bp": 1}}, r"venues.binance: unknown settings \['maker_bp'\] \(known: maker_bps, "),
    ({"binanse": {}}, "unknown venue 'binanse'"),
    ({"binance": {"balances": ["BTC"]}}, "balances: expected a table"),
])
def test_misspelt_venue_settings_are_refused_when_the_exchange_is_built(venues, want):
    """Checked by the constructor, so a system with them never starts (not a crash after the fork)."""
    with pytest.raises(ValueError, match=want):
        MockExchange(instruments=INSTRUMENTS, venues=venues)
