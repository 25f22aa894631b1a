"""The UI's view of a system, filed from record batches as the spine or a recording gives them."""

import numpy as np

from mantra.instruments import InstrumentRegistry
from mantra.spine.messages import (BalanceUpdate, BookStatus, Fill, L2Update, OrderAction, OrderRequest, OrderStatus,
                                   OrderUpdate, TradeUpdate)
from mantra.ui.view import View
from mantra.venues.events import Status

T0 = 1_796_000_000_000_000_000


def recs(cls, rows, start=0):
    a = np.zeros(len(rows), cls.DTYPE)
    for i, r in enumerate(rows):
        for k, v in r.items():
            a[i][k] = v
        a[i]["publish"] = a[i]["publish"] or T0 + (start + i) * 1000
    return a


def view():
    reg = InstrumentRegistry()
    reg.add("binance", "BTCUSDT", price_scale=2, size_scale=5, base="BTC", quote="USDT")
    return View(reg, {3: "feed_binance", 5: "overseer"})


def test_tops_follow_the_book_and_only_changes_are_kept():
    v = view()
    l2 = [dict(instrument=1, side=1, price=100_00, size=5, flags=4 | 2),
          dict(instrument=1, side=-1, price=101_00, size=5, flags=2 | 1),
          dict(instrument=1, side=1, price=99_00, size=5, flags=1),  # top unchanged: no row
          dict(instrument=1, side=1, price=100_50, size=1, flags=1),
          dict(instrument=1, side=1, price=100_50, size=0, flags=0),
          dict(instrument=1, side=-1, price=100_90, size=2, flags=1)]
    v.ingest("l2", recs(L2Update, l2[:3]), L2Update)
    v.ingest("l2", recs(L2Update, l2[3:], 3), L2Update)  # a second batch continues the same book
    s = v.series["top/1"]
    assert s.v[:, :s.n].T.tolist() == [[100_00, 101_00], [100_50, 101_00], [100_00, 100_90]]
    assert s.t[:s.n].tolist() == [T0 + 1000, T0 + 3000, T0 + 5000]
    assert v.book(1, 2) == {"inst": 1, "t_ns_s": str(T0 + 5000), "bids": [["100.00", "0.00005"], ["99.00", "0.00005"]],
                            "asks": [["100.90", "0.00002"], ["101.00", "0.00005"]]}
    st = v.state()
    assert st["books"] == [{"inst": 1, "status": "unknown", "updates": 6}]
    assert st["hops"][0]["actor"] == "#0" and st["t_min_ns"] == T0


def test_orders_fills_balances_and_pnl():
    v = view()
    v.ingest("book_status", recs(BookStatus, [dict(instrument=1, status=int(Status.SYNCED))]), BookStatus)
    v.ingest("l2", recs(L2Update, [dict(instrument=1, side=1, price=100_00, size=5, flags=4),
                                   dict(instrument=1, side=-1, price=102_00, size=5, flags=1)]), L2Update)
    v.ingest("requests", recs(OrderRequest, [dict(order_id=7, price=101_00, size=200, instrument=1, model=5,
                                                  action=int(OrderAction.NEW), side=1, origin=T0 - 5000,
                                                  publisher=5)]), OrderRequest)
    v.ingest("updates", recs(OrderUpdate, [dict(order_id=7, price=101_00, size=200, filled=200, instrument=1,
                                                status=int(OrderStatus.FILLED), side=1)], 2), OrderUpdate)
    v.ingest("fills", recs(Fill, [dict(order_id=7, trade_id=1, price=101_00, size=200, fee=3, instrument=1,
                                       side=1)], 3), Fill)
    v.ingest("balances", recs(BalanceUpdate, [dict(total=5 * 10**8, available=4 * 10**8, scale=8, venue=1,
                                                   asset=b"USDT")]), BalanceUpdate)
    v.ingest("l2", recs(L2Update, [dict(instrument=1, side=-1, price=102_00, size=0, flags=0),
                                   dict(instrument=1, side=-1, price=104_00, size=5, flags=1)], 4), L2Update)
    rows = v.order_rows()
    assert rows["orders"][0] | {"t_ns_s": None} == {
        "order_id": 7, "model": 5, "inst": 1, "side": 1, "price": "101.00", "size": "0.00200", "filled": "0.00200",
        "status": "FILLED", "reason": 0, "t_ns_s": None, "flags": 0}
    assert rows["requests"][0]["action"] == "NEW" and rows["requests"][0]["latency_ns"] == 5000 + 1000 * 0
    assert v.order_rows(status="OPEN")["orders"] == [] and v.order_rows(model=9)["requests"] == []
    lat = v.series["latency/requests"]
    assert lat.v[0, :lat.n].tolist() == [5000.0]
    st = v.state()
    assert st["books"][0]["status"] == "synced"
    assert st["balances"] == [{"venue": "binance", "asset": "USDT", "total": "5.00000000", "available": "4.00000000"}]
    assert st["positions"] == [{"inst": 1, "qty": "0.00200"}]
    # cash -101.00 * 0.002 - 0.03 fee = -0.232; marked at the mid (100 + 104) / 2 = 102: +0.204 -> -0.028
    assert st["pnl"] == [{"inst": 1, "value": "-0.03", "quote": "USDT"}]  # floored to a cent
    pnl = v.series["pnl/1"]
    # marked at the fill (mid 101: -0.03) and when the top moved (mid 102)
    assert np.allclose(pnl.v[0, :pnl.n], [-0.03, -0.028])
    assert v.series["orders/1"].n == 1 and v.series["fills/1"].n == 1
    assert st["series_n"]["orders/1"] == 1 and st["series_n"]["top/1"] == v.series["top/1"].n


def test_order_ids_past_2_53_stay_exact_in_the_orders_series():
    v = view()
    big = 2**62 + 12345  # ids derived from venue ids are wide: a float64 would round it
    v.ingest("updates", recs(OrderUpdate, [dict(order_id=big, price=101_00, size=200, instrument=1,
                                                status=int(OrderStatus.OPEN), side=1)]), OrderUpdate)
    s = v.series["orders/1"]
    tt, cols, _, _ = s.query()
    assert s.dtypes[s.cols.index("order_id")] == "i8" and cols[s.cols.index("order_id")].tolist() == [big]


def test_unknown_instruments_and_bad_levels_are_counted_not_filed():
    v = view()
    v.ingest("l2", recs(L2Update, [dict(instrument=9, side=1, price=1, size=1, flags=1),
                                   dict(instrument=1, side=1, price=1, size=-5, flags=1)]), L2Update)
    v.ingest("trades", recs(TradeUpdate, [dict(instrument=9, price=1, size=1)]), TradeUpdate)
    assert "top/9" not in v.series and "trades/9" not in v.series
    assert v.state()["bad_levels"] == 1 and v.counts == {"l2": 2, "trades": 1}
