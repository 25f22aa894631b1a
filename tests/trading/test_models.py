"""Models: books kept from L2 streams, the market maker's quotes, skew, inventory and refresh, the
cross-venue model's fee-aware edge, sizing across scales and inventory bounds."""

from mantra.spine.messages import (BookStatus, Fill, IdealOrder, L2Flags, L2Update, OrderAction, OrderFlags,
                                   OrderRequest, OrderStatus as S, OrderUpdate)
from mantra.trading.models.cross_venue import CrossVenue
from mantra.trading.models.market_maker import MarketMaker
from mantra.venues.events import Status

from .harness import INSTRUMENTS, Array, Clock, l2, make

BTC, KR = 1, 2
LAST, CLEAR = int(L2Flags.LAST), int(L2Flags.CLEAR | L2Flags.SNAPSHOT)
POST, IOC = int(OrderFlags.POST_ONLY), int(OrderFlags.IOC)


def book(m, iid, levels, clear=False):
    for j, (side, price, size) in enumerate(levels):
        flags = (LAST if j == len(levels) - 1 else 0) | (CLEAR if clear and j == 0 else 0)
        l2(m, L2Update(price, size, 1, iid, side, flags))


def slots(arr):
    return [arr.read(i)[1] for i in range(arr.size)]


def fill(m, slot, iid, side, price, size, oid, status=S.FILLED):
    m.on_requests(OrderRequest(oid, 0, price, size, iid, m.id, slot, int(OrderAction.NEW), side, 0))
    m.on_fills(Fill(oid, oid, price, size, 0, 2, iid, side, 1, b"USDT"))
    m.on_updates(OrderUpdate(oid, price, size, size, 2, iid, int(status), side, 0, b""))


def mm(**over):
    arr = Array(2)
    p = dict(instruments=INSTRUMENTS, instrument="binance:BTCUSDT", spread="0.40", size="0.5", skew="0.10",
             max_inventory="1", refresh="0.05")
    p.update(over)
    return make(MarketMaker, Clock(), actor_id=11, arrays={"ideal": arr}, **p), arr


def test_market_maker_quotes_around_the_mid_post_only():
    m, arr = mm()
    book(m, BTC, [(1, 10000, 1000), (-1, 10100, 1000)], clear=True)
    assert slots(arr) == [IdealOrder(10030, 500, BTC, 1, POST), IdealOrder(10070, 500, BTC, -1, POST)]


def test_market_maker_quotes_with_more_slots_than_it_uses():
    arr = Array(4)  # a configuration may give its array spare slots
    m = make(MarketMaker, Clock(), actor_id=11, arrays={"ideal": arr}, instruments=INSTRUMENTS,
             instrument="binance:BTCUSDT", spread="0.40", size="0.5", skew="0.10", max_inventory="1")
    book(m, BTC, [(1, 10000, 1000), (-1, 10100, 1000)], clear=True)
    assert slots(arr) == [IdealOrder(10030, 500, BTC, 1, POST), IdealOrder(10070, 500, BTC, -1, POST), None, None]


def test_inventory_skews_both_quotes_and_caps_the_side_that_adds():
    m, arr = mm()
    book(m, BTC, [(1, 10000, 1000), (-1, 10100, 1000)], clear=True)
    fill(m, 0, BTC, 1, 10030, 800, oid=1)  # long 0.8 BTC
    book(m, BTC, [(1, 10000, 900)])
    # shift 0.10 * 0.8 = 0.08 down; the bid may only add 0.2 more
    assert slots(arr) == [IdealOrder(10022, 200, BTC, 1, POST), IdealOrder(10062, 500, BTC, -1, POST)]
    fill(m, 0, BTC, 1, 10022, 200, oid=2)  # at the limit: no bid at all
    book(m, BTC, [(1, 10000, 800)])
    bid, ask = slots(arr)
    assert bid.size == 0 and ask == IdealOrder(10062, 500, BTC, -1, POST)  # 10060 is within the refresh


def test_refresh_threshold_keeps_quotes_until_the_price_moves_enough():
    m, arr = mm()
    book(m, BTC, [(1, 10000, 1000), (-1, 10100, 1000)], clear=True)
    v = [arr.version(0), arr.version(1)]
    book(m, BTC, [(1, 10000, 0), (1, 10004, 1000)])  # mid +0.02 < refresh 0.05
    assert [arr.version(0), arr.version(1)] == v
    book(m, BTC, [(1, 10004, 0), (1, 10010, 1000)])  # mid +0.05 from the quoted one
    assert slots(arr) == [IdealOrder(10035, 500, BTC, 1, POST), IdealOrder(10075, 500, BTC, -1, POST)]


def test_quotes_never_cross_the_touch_and_a_fill_rearms_the_slot():
    m, arr = mm(spread="0")
    book(m, BTC, [(1, 10000, 1000), (-1, 10001, 1000)], clear=True)
    assert [(q.price, q.side) for q in slots(arr)] == [(10000, 1), (10001, -1)]
    v = arr.version(1)
    fill(m, 1, BTC, -1, 10001, 1, oid=5, status=S.PARTIALLY_FILLED)
    m.on_requests(OrderRequest(9, 0, 1, 1, BTC, 99, 1, int(OrderAction.NEW), 1, 0))  # another model's: ignored
    book(m, BTC, [(1, 10000, 999)])
    assert arr.version(1) > v  # rewritten after the fill, so the overseer re-arms it
    assert m.position(BTC) == -1 and len(m.orders.active) == 1


def test_untrusted_book_withdraws_and_snapshots_rebuild_it():
    m, arr = mm(status_ports=["status"])
    assert not m.trusted[BTC]  # with a status stream, trust waits for SYNCED
    m.on_status(BookStatus(0, BTC, int(Status.SYNCED), 0, b""))
    book(m, BTC, [(1, 10000, 1000), (-1, 10100, 1000)], clear=True)
    assert all(q.size for q in slots(arr))
    m.on_status(BookStatus(0, BTC, int(Status.GAP), 0, b"gap"))
    assert [q.size for q in slots(arr)] == [0, 0]
    book(m, BTC, [(1, 20000, 1000)])  # ignored while untrusted
    m.on_status(BookStatus(0, BTC, int(Status.SYNCED), 0, b""))
    book(m, BTC, [(1, 11000, 100), (-1, 11100, 100)], clear=True)  # the stale 200.00 bid is gone
    assert [q.price for q in slots(arr)] == [11030, 11070]


def test_an_unverified_book_is_traded_only_by_a_model_that_says_so():
    for trust in (False, True):
        m, arr = mm(status_ports=["status"], trust_unverified=trust)
        m.on_status(BookStatus(0, BTC, int(Status.UNVERIFIED), 0, b"unaudited"))
        book(m, BTC, [(1, 10000, 1000), (-1, 10100, 1000)], clear=True)
        assert all(q is not None and q.size for q in slots(arr)) == trust
        assert m.trusted[BTC] == trust


def xv(**over):
    arr = Array(2)
    p = dict(instruments=INSTRUMENTS, a="binance:BTCUSDT", b="kraken:XBT/USDT", size="0.5", max_inventory="1",
             fee_bps_a=10, fee_bps_b=10, min_edge_bps=5)
    p.update(over)
    return make(CrossVenue, Clock(), actor_id=12, arrays={"ideal": arr}, **p), arr


def test_cross_venue_takes_a_gap_wider_than_fees_on_both_venues():
    m, arr = xv()
    book(m, BTC, [(1, 9990, 2000), (-1, 10000, 1234)], clear=True)  # binance ask 100.00 x 1.234
    book(m, KR, [(1, 1003, 20000), (-1, 1010, 20000)], clear=True)  # kraken bid 100.3: 30 bps > 10+10+5
    buy, sell = slots(arr)
    assert buy == IdealOrder(10000, 500, BTC, 1, IOC)  # 0.5 BTC at scale 3
    assert sell == IdealOrder(1003, 5000, KR, -1, IOC)  # the same 0.5 BTC at scale 4


def test_cross_venue_stays_out_when_fees_eat_the_edge_and_sizes_to_the_coarser_lot():
    m, arr = xv(fee_bps_a=15, fee_bps_b=15)
    book(m, BTC, [(1, 9990, 2000), (-1, 10000, 1234)], clear=True)
    book(m, KR, [(1, 1003, 20000), (-1, 1010, 20000)], clear=True)  # 30 bps < 15+15+5
    assert slots(arr) == [None, None]
    m, arr = xv(size="2")
    book(m, BTC, [(1, 9990, 2000), (-1, 10000, 1234)], clear=True)
    book(m, KR, [(1, 1003, 20000), (-1, 1010, 20000)], clear=True)
    assert [q.size for q in slots(arr)] == [1000, 10000]  # 1.234 available, inventory 1, kraken lot 0.01


def test_cross_venue_fires_again_only_after_both_legs_end_and_within_inventory():
    m, arr = xv(size="0.6")
    book(m, BTC, [(1, 9990, 2000), (-1, 10000, 5000)], clear=True)
    book(m, KR, [(1, 1003, 20000), (-1, 1010, 20000)], clear=True)
    buy, sell = slots(arr)
    m.on_requests(OrderRequest(1, 0, buy.price, buy.size, BTC, 12, 0, int(OrderAction.NEW), 1, IOC))
    m.on_requests(OrderRequest(2, 0, sell.price, sell.size, KR, 12, 1, int(OrderAction.NEW), -1, IOC))
    book(m, BTC, [(-1, 10000, 4000)])
    assert m.pairs == 1  # legs in flight: no new pair
    m.on_fills(Fill(1, 1, 10000, 600, 0, 2, BTC, 1, 2, b"USDT"))
    m.on_updates(OrderUpdate(1, 10000, 600, 600, 2, BTC, int(S.FILLED), 1, 0, b""))
    assert slots(arr)[0].size == 600  # the other leg is still out: nothing changes yet
    m.on_fills(Fill(2, 2, 1003, 6000, 0, 2, KR, -1, 2, b"USDT"))
    m.on_updates(OrderUpdate(2, 1003, 6000, 6000, 2, KR, int(S.FILLED), -1, 0, b""))
    assert [q.size for q in slots(arr)] == [0, 0]  # both legs done: withdrawn
    book(m, BTC, [(-1, 10000, 3000)])
    assert m.pairs == 2
    assert [(q.size, q.instrument) for q in slots(arr)] == [(400, BTC), (4000, KR)]  # 0.4 BTC of room left


def test_cross_venue_withdraws_a_leg_the_overseer_held_back_once_the_other_is_done():
    m, arr = xv()
    book(m, BTC, [(1, 9990, 2000), (-1, 10000, 1234)], clear=True)
    book(m, KR, [(1, 1003, 20000), (-1, 1010, 20000)], clear=True)
    buy, sell = slots(arr)
    m.on_requests(OrderRequest(1, 0, buy.price, buy.size, BTC, 12, 0, int(OrderAction.NEW), 1, IOC))
    m.on_updates(OrderUpdate(1, 10000, 500, 0, 2, BTC, int(S.EXPIRED), 1, 0, b""))  # nothing taken
    assert slots(arr)[1].size == 0  # the sell leg never went out: not left to go out later
    assert m.position(BTC) == m.position(KR) == 0


def test_touch_quoter_quotes_the_touch_every_n_messages_post_only():
    from mantra.trading.models.touch_quoter import TouchQuoter

    arr = Array(2)
    m = make(TouchQuoter, Clock(), arrays={"ideal": arr}, instruments=INSTRUMENTS, instrument="binance:BTCUSDT",
             size="0.005", every=3)
    book(m, BTC, [(1, 10000, 50), (-1, 10010, 50)], clear=True)
    book(m, BTC, [(1, 10001, 50)])
    assert slots(arr) == [None, None]  # two messages so far
    book(m, BTC, [(-1, 10008, 50)])
    assert [(o.side, o.price, o.size, o.flags) for o in slots(arr)] == [(1, 10001, 5, POST), (-1, 10008, 5, POST)]
    for _ in range(3):
        book(m, BTC, [(1, 10002, 50)])
    assert slots(arr)[0].price == 10002 and slots(arr)[1].price == 10008
