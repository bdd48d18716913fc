"""The simulator's matching core, without sockets: every rule of kit/exchange/_matching.py's docstring."""

from __future__ import annotations

import pandas as pd
import pytest

from kit.exchange._accounts import AccountSpec
from kit.exchange._data import load
from kit.exchange._matching import Matcher, OrderRejected, OrderRequest, SymbolRules

T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC
M = 60_000
# open, high, low, close, volume per minute; minutes 5 and 6 are a real outage, minute 8 traded nothing.
ROWS = {
    0: (100.0, 101.0, 99.0, 100.5, 10.0),
    1: (100.5, 102.0, 100.0, 101.0, 10.0),
    2: (101.0, 103.0, 100.5, 102.0, 10.0),
    3: (102.0, 102.5, 98.0, 99.0, 10.0),
    4: (99.0, 100.0, 97.0, 98.0, 10.0),
    7: (105.0, 106.0, 104.0, 105.5, 10.0),
    8: (105.5, 107.0, 105.0, 106.0, 0.0),
    9: (106.0, 108.0, 105.0, 107.0, 10.0),
}
RULES = SymbolRules("BTCUSDT", "BTC", "USDT", tick=0.01, step=0.001, min_qty=0.001, max_qty=1000.0,
                    min_notional=5.0, max_notional=1e6, min_price=0.01, max_price=1e6, max_num_orders=3)  # fmt: skip


def _frame() -> pd.DataFrame:
    idx = pd.DatetimeIndex([pd.Timestamp(T0 + i * M, unit="ms", tz="UTC") for i in ROWS], name="open_time")
    return pd.DataFrame(list(ROWS.values()), index=idx, columns=["open", "high", "low", "close", "volume"])


def _matcher(balances: dict[str, float] | None = None, **kw: object) -> Matcher:
    spec = AccountSpec("alice", "secret-alice", balances=balances or {"USDT": 10_000.0, "BTC": 1.0})
    return Matcher(load({("BTCUSDT", "1m"): _frame()}), [spec], rules={"BTCUSDT": RULES}, **kw)  # type: ignore[arg-type]


def _req(side: str, typ: str, **kw: object) -> OrderRequest:
    return OrderRequest("BTCUSDT", side, typ, **kw)  # type: ignore[arg-type]


def test_market_buy_fills_at_the_open_in_progress_plus_half_spread_and_pays_commission_in_quote():
    m = _matcher(half_spread_bps=10)
    o = m.place("alice", _req("BUY", "MARKET", quantity=2.0), T0 + 1 * M + 30_000)
    assert o.status == "FILLED" and o.executed == 2.0
    (t,) = m.trades
    assert t.price == pytest.approx(100.5 * 1.001, rel=1e-15) and t.time == T0 + M + 30_000
    assert t.commission == pytest.approx(t.price * 2 * 0.001) and t.commission_asset == "USDT"
    acct = m.accounts["alice"]
    assert acct.free["BTC"] == 3.0
    assert acct.free["USDT"] == pytest.approx(10_000 - t.price * 2 * 1.001)
    sell = m.place("alice", _req("SELL", "MARKET", quantity=1.0), T0 + 2 * M + 1)
    assert m.trades[-1].price == pytest.approx(101.0 * 0.999) and sell.status == "FILLED"


def test_market_order_sent_at_a_close_fills_at_the_next_candles_open():
    m = _matcher()
    m.place("alice", _req("BUY", "MARKET", quantity=1.0), T0 + 3 * M)  # minute 2 closed just now
    assert m.trades[0].price == 102.0  # minute 3's open, not minute 2's close


def test_market_order_in_an_outage_fills_at_the_open_of_the_first_candle_that_exists():
    m = _matcher()
    o = m.place("alice", _req("BUY", "MARKET", quantity=1.0), T0 + 5 * M)  # minutes 5 and 6 do not exist
    assert o.status == "NEW" and not m.trades
    m.advance(T0 + 7 * M - 1)
    assert o.status == "NEW"
    m.advance(T0 + 7 * M)
    assert o.status == "FILLED" and m.trades[0].price == 105.0 and m.trades[0].time == T0 + 7 * M
    m.advance(T0 + 10 * M)
    assert len(m.trades) == 1  # advancing again never fills twice


def test_a_pending_market_order_that_cannot_be_paid_when_it_fills_expires():
    m = _matcher({"USDT": 100.0})
    o = m.place("alice", _req("BUY", "MARKET", quantity=0.96), T0 + 5 * M + 1)  # 0.96 x 105 > 100
    m.advance(T0 + 8 * M)
    assert o.status == "EXPIRED" and "insufficient" in o.reason and not m.trades
    assert m.accounts["alice"].free["USDT"] == 100.0


def test_resting_limit_locks_funds_and_fills_at_its_price_at_most_a_volume_share_per_candle():
    m = _matcher(volume_share=0.1)  # at most 1.0 of each candle's 10.0 volume
    o = m.place("alice", _req("BUY", "LIMIT", quantity=2.5, price=98.5, time_in_force="GTC"), T0 + 2 * M + 10)
    acct = m.accounts["alice"]
    assert o.status == "NEW" and acct.locked["USDT"] == pytest.approx(2.5 * 98.5 * 1.001)
    m.advance(T0 + 3 * M)  # minute 2 (low 100.5) does not reach it; it was in progress anyway
    assert o.executed == 0
    m.advance(T0 + 5 * M)  # minute 3 (low 98) and minute 4 (low 97) reach it: 1.0 each
    assert [t.qty for t in m.trades] == [1.0, 1.0] and {t.price for t in m.trades} == {98.5}
    assert [t.time for t in m.trades] == [T0 + 4 * M - 1, T0 + 5 * M - 1] and m.trades[0].is_maker
    assert o.status == "PARTIALLY_FILLED" and o.executed == 2.0
    assert acct.locked["USDT"] == pytest.approx(0.5 * 98.5 * 1.001)
    m.cancel("alice", "BTCUSDT", o.order_id, None, T0 + 5 * M)
    assert o.status == "CANCELED" and acct.locked["USDT"] == 0
    assert acct.free["USDT"] == pytest.approx(10_000 - 2 * 98.5 * 1.001) and acct.free["BTC"] == 3.0


def test_a_candle_without_volume_fills_nothing():
    m = _matcher(volume_share=0.5)
    o = m.place("alice", _req("SELL", "LIMIT", quantity=1.0, price=106.5, time_in_force="GTC"), T0 + 8 * M)
    m.advance(T0 + 9 * M)  # minute 8 reaches 107 but traded nothing
    assert o.executed == 0
    m.advance(T0 + 10 * M)
    assert o.status == "FILLED" and m.trades[0].time == T0 + 10 * M - 1


def test_marketable_limits_take_at_once_ioc_and_fok_expire_and_limit_maker_is_rejected():
    m = _matcher()
    taker = m.place("alice", _req("BUY", "LIMIT", quantity=1.0, price=101.0, time_in_force="GTC"), T0 + 1)
    assert taker.status == "FILLED" and m.trades[0].price == 100.0 and not m.trades[0].is_maker
    ioc = m.place("alice", _req("BUY", "LIMIT", quantity=1.0, price=99.0, time_in_force="IOC"), T0 + 2)
    fok = m.place("alice", _req("SELL", "LIMIT", quantity=1.0, price=101.0, time_in_force="FOK"), T0 + 3)
    assert ioc.status == fok.status == "EXPIRED" and len(m.trades) == 1
    with pytest.raises(OrderRejected) as info:
        m.place("alice", _req("SELL", "LIMIT_MAKER", quantity=1.0, price=99.0), T0 + 4)
    assert info.value.code == -2010 and "immediately match" in info.value.msg
    maker = m.place("alice", _req("SELL", "LIMIT_MAKER", quantity=1.0, price=101.5), T0 + 5)
    assert maker.status == "NEW"


def test_stop_loss_limit_triggers_on_a_later_candle_then_rests_as_a_limit():
    m = _matcher()
    with pytest.raises(OrderRejected) as info:
        m.place("alice", _req("SELL", "STOP_LOSS_LIMIT", quantity=1.0, price=100.0, stop_price=101.0,
                              time_in_force="GTC"), T0 + 1)  # fmt: skip
    assert info.value.code == -2010 and "trigger immediately" in info.value.msg
    o = m.place("alice", _req("SELL", "STOP_LOSS_LIMIT", quantity=1.0, price=98.5, stop_price=99.0,
                              time_in_force="GTC"), T0 + 1)  # fmt: skip
    assert o.working_time == -1 and m.accounts["alice"].locked["BTC"] == 1.0
    m.advance(T0 + 4 * M)  # minute 3 (low 98) triggers it; it works from minute 4 on
    assert o.working_time == T0 + 4 * M - 1 and o.executed == 0
    m.advance(T0 + 5 * M)  # minute 4: high 100 >= 98.5
    assert o.status == "FILLED" and m.trades[0].price == 98.5


def test_take_profit_limit_buy_triggers_when_the_price_falls_to_the_stop():
    m = _matcher()
    o = m.place("alice", _req("BUY", "TAKE_PROFIT_LIMIT", quantity=1.0, price=98.0, stop_price=98.0,
                              time_in_force="GTC"), T0 + 1)  # fmt: skip
    m.advance(T0 + 5 * M)  # triggered by minute 3 (low 98), filled in minute 4 (low 97)
    assert o.status == "FILLED" and m.trades[0].price == 98.0


def test_filters_and_balances_refuse_with_binances_codes():
    m = _matcher({"USDT": 50.0})

    def refused(req: OrderRequest) -> tuple[int, str]:
        with pytest.raises(OrderRejected) as info:
            m.place("alice", req, T0 + 1)
        return info.value.code, info.value.msg

    assert refused(_req("BUY", "MARKET", quantity=0.0105)) == (-1013, "Filter failure: LOT_SIZE")
    assert refused(_req("BUY", "LIMIT", quantity=0.1, price=99.005, time_in_force="GTC")) == (
        -1013, "Filter failure: PRICE_FILTER")  # fmt: skip
    assert refused(_req("BUY", "MARKET", quantity=0.01)) == (-1013, "Filter failure: NOTIONAL")
    assert refused(_req("BUY", "MARKET", quantity=1.0))[0] == -2010
    assert refused(_req("SELL", "MARKET", quantity=1.0))[0] == -2010  # no BTC at all
    assert refused(_req("BUY", "LIMIT", quantity=1.0, price=90.0))[0] == -1102  # no timeInForce
    assert refused(_req("BUY", "MARKET"))[0] == -1102
    for _ in range(3):
        m.place("alice", _req("BUY", "LIMIT", quantity=0.1, price=90.0, time_in_force="GTC"), T0 + 1)
    assert refused(_req("BUY", "LIMIT", quantity=0.1, price=90.0, time_in_force="GTC")) == (
        -1013, "Filter failure: MAX_NUM_ORDERS")  # fmt: skip
    assert len(m.orders) == 3 and not m.trades


def test_cancelling_an_unknown_or_finished_order_is_minus_2011_and_finding_none_is_minus_2013():
    m = _matcher()
    o = m.place("alice", _req("BUY", "MARKET", quantity=0.1), T0 + 1)
    for args in ((o.order_id, None), (99, None), (None, "nope")):
        with pytest.raises(OrderRejected) as info:
            m.cancel("alice", "BTCUSDT", *args, T0 + 2)
        assert info.value.code in (-2011, -2013)
    with pytest.raises(OrderRejected) as info:
        m.find("alice", "BTCUSDT", None, "nope")
    assert info.value.code == -2013


def test_client_order_ids_are_unique_among_open_orders_only():
    m = _matcher()
    a = m.place("alice", _req("BUY", "LIMIT", quantity=0.1, price=90.0, time_in_force="GTC", client_id="x1"), T0)
    with pytest.raises(OrderRejected) as info:
        m.place("alice", _req("BUY", "LIMIT", quantity=0.1, price=91.0, time_in_force="GTC", client_id="x1"), T0)
    assert info.value.code == -2010 and info.value.msg == "Duplicate order sent."
    m.cancel("alice", "BTCUSDT", None, "x1", T0)
    # Once the first is no longer open the id is free again: a blind resend trades twice.
    b = m.place("alice", _req("BUY", "MARKET", quantity=0.1, client_id="x1"), T0 + 1)
    c = m.place("alice", _req("BUY", "MARKET", quantity=0.1, client_id="x1"), T0 + 2)
    assert len(m.trades) == 2 and m.find("alice", "BTCUSDT", None, "x1") is c
    assert a.order_id < b.order_id < c.order_id


def test_quote_order_qty_spends_about_that_much_rounded_down_to_the_step():
    m = _matcher()
    o = m.place("alice", _req("BUY", "MARKET", quote_qty=50.0), T0 + 1)
    assert o.orig_qty == 0.5 and m.trades[0].quote_qty == 50.0  # 50 / 100 = 0.5
    o = m.place("alice", _req("BUY", "MARKET", quote_qty=10.0), T0 + M + 1)
    assert o.orig_qty == 0.099  # 10 / 100.5 = 0.0995..., down to the 0.001 step


def test_the_same_requests_give_the_same_record():
    def run() -> list[tuple[object, ...]]:
        m = _matcher(volume_share=0.05, half_spread_bps=3)
        m.place("alice", _req("BUY", "LIMIT", quantity=1.2, price=98.2, time_in_force="GTC"), T0 + 100)
        m.place("alice", _req("SELL", "MARKET", quantity=0.3), T0 + 2 * M)
        m.place("alice", _req("BUY", "MARKET", quantity=0.3), T0 + 5 * M + 7)
        for t in range(0, 11 * M, 7_000):
            m.advance(T0 + t)
        return [(t.trade_id, t.order_id, t.price, t.qty, t.time) for t in m.trades]

    first = run()
    assert first == run() and len(first) >= 4
