"""The live desk's rules with no I/O: sizing a signal, folding fills, comparing the ledger with the
exchange's record, and the shared request-weight budget."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from kit.broker import FillModel
from kit.daemon._live_core import PRICE_MARGIN, Holding, decide, mismatches
from kit.orders import State, SymbolFilters, Trade, client_order_id, intent
from kit.strategy import Signal
from kit.trading import WeightBudget

FILTERS = SymbolFilters("BTCUSDT", step_size=Decimal("0.00001"), min_qty=Decimal("0.00001"),
                        min_notional=Decimal("5"))  # fmt: skip
ENTRY, EXIT = Signal(0, entry=True), Signal(0, exit=True)


def _holding(cash="1000", qty="0") -> Holding:
    return Holding("BTC", "USDT", Decimal(cash), Decimal(qty))


def test_an_entry_buys_with_the_strategys_own_cash_rounded_down_to_the_lot():
    d = decide(ENTRY, 50_000.0, _holding(), FillModel(fees=0.001), FILTERS, busy=False)
    assert d is not None and (d.side, d.skip) == ("BUY", "")
    cost = Decimal(50_000) * (1 + Decimal("0.001") + PRICE_MARGIN)
    assert d.quantity == (Decimal(1000) / cost).quantize(Decimal("0.00001"), rounding="ROUND_FLOOR")
    assert d.quantity * cost <= 1000  # never more than the allocation, even if the next open is higher
    half = decide(ENTRY, 50_000.0, _holding(), FillModel(fees=0.001, size=0.5), FILTERS, busy=False)
    assert half is not None and abs(half.quantity * 2 - d.quantity) <= Decimal("0.00002")
    amount = decide(ENTRY, 50_000.0, _holding(), FillModel(size=0.01, size_type="amount"), FILTERS, busy=False)
    assert amount is not None and amount.quantity == Decimal("0.01")


def test_an_exit_sells_the_whole_position_and_signals_that_change_nothing_place_nothing():
    d = decide(EXIT, 50_000.0, _holding("0", "0.01234"), FillModel(), FILTERS, busy=False)
    assert d is not None and (d.side, d.quantity) == ("SELL", Decimal("0.01234"))
    assert decide(EXIT, 50_000.0, _holding(), FillModel(), FILTERS, busy=False) is None  # flat
    assert decide(ENTRY, 50_000.0, _holding("0", "0.01"), FillModel(), FILTERS, busy=False) is None  # in already
    assert decide(Signal(0, short_entry=True), 50_000.0, _holding(), FillModel(), FILTERS, busy=False) is None
    assert decide(None, 50_000.0, _holding(), FillModel(), FILTERS, busy=False) is None
    assert decide(ENTRY, 50_000.0, _holding("0"), FillModel(), FILTERS, busy=False) is None  # no cash


def test_an_order_under_notional_or_while_another_is_unfinished_is_skipped_with_the_reason():
    d = decide(ENTRY, 50_000.0, _holding("4"), FillModel(), FILTERS, busy=False)
    assert d is not None and d.side == "BUY" and "under NOTIONAL minNotional 5" in d.skip
    d = decide(ENTRY, 50_000.0, _holding(), FillModel(), FILTERS, busy=True)
    assert d is not None and d.skip.startswith("an earlier order of this strategy is not finished")


def test_fills_fold_into_position_cash_and_entry_price_whatever_asset_the_commission_is_in():
    h = _holding()
    h.fill("BUY", Trade(1, "0.01", "50000", "0.5", "USDT", 1), open_time=10)
    h.fill("BUY", Trade(2, "0.01", "52000", "0.00001", "BTC", 2), open_time=10)
    assert h.qty == Decimal("0.01999") and h.cash == Decimal("1000") - 500 - Decimal("0.5") - 520
    assert (h.entry_price, h.entry_time) == (Decimal("51000"), 10)
    h.fill("SELL", Trade(3, "0.01999", "53000", "1", "USDT", 3), open_time=20)
    assert h.qty == 0 and h.entry_price is None and h.entry_time is None
    assert h.cash == Decimal("1000") - 500 - Decimal("0.5") - 520 + Decimal("0.01999") * 53000 - 1
    row = h.row(53_000.0, 20)
    assert row["size"] == 0 and row["equity"] == pytest.approx(float(h.cash)) and row["updated_time"] == 20


def _ex(cid: str, oid: int, executed: str) -> dict:
    return {"clientOrderId": cid, "orderId": oid, "executedQty": executed}


def test_the_ledger_disagreeing_with_the_exchange_is_named_and_others_orders_are_ignored():
    o = intent(7, 60_000, "BUY", "0.01", "BTCUSDT")
    filled = replace(o, state=State.FILLED, order_id=11, executed_qty=Decimal("0.01"), filled_qty=Decimal("0.01"))
    h = _holding("500", "0.01")
    orders = [_ex(o.client_id, 11, "0.01000000"), _ex(client_order_id(8, 60_000), 12, "1"), _ex("by-hand", 13, "2")]
    trades = [
        {"id": 1, "orderId": 11, "qty": "0.01", "isBuyer": True, "commission": "0.5", "commissionAsset": "USDT"},
        {"id": 2, "orderId": 12, "qty": "1", "isBuyer": True, "commission": "0", "commissionAsset": "USDT"},
    ]
    assert mismatches(7, {o.client_id: filled}, h, orders, trades) == []
    lost = client_order_id(7, 120_000)
    out = mismatches(7, {o.client_id: filled}, h, [*orders, _ex(lost, 14, "0.02")],
                     [*trades, {"id": 3, "orderId": 14, "qty": "0.02", "isBuyer": True}])  # fmt: skip
    assert out == [f"the exchange has order {lost} that the ledger does not",
                   "position 0.01 in the ledger, 0.03 by the exchange's trades"]  # fmt: skip


def test_the_weight_budget_waits_for_the_next_minute_near_the_limit_and_after_a_429():
    b = WeightBudget(limit=100)
    t = 60 * 1000 + 1.0
    assert all(b.delay(20, t) == 0 for _ in range(4))  # 80 of the 90 usable
    assert b.delay(20, t) == pytest.approx(59.05)  # would cross 90 %: wait for the next minute
    assert b.delay(20, t + 59.1) == 0  # a new minute
    b.observe(85, t + 59.2)  # the exchange counts other processes of this IP too
    assert b.delay(10, t + 59.3) > 0 and b.headroom_left(t + 59.3) == 5
    b.refused(30, t + 70)  # a 429 with Retry-After: 30
    assert b.delay(1, t + 99) == pytest.approx(1) and b.delay(1, t + 100.5) == 0
    with pytest.raises(ValueError):
        WeightBudget(limit=0)


def test_a_burst_from_many_accounts_stays_under_the_limit_within_any_minute():
    b, t, sent = WeightBudget(limit=6000), 0.0, []
    while len(sent) < 20_000:  # orders of every account of the host, as fast as they come
        wait = b.delay(1, t)
        if wait:
            t += wait  # the sender waits, then tries again
            continue
        sent.append(t)
    per_minute: dict[int, int] = {}
    for s in sent:
        per_minute[int(s // 60)] = per_minute.get(int(s // 60), 0) + 1
    assert max(per_minute.values()) == 5400  # 90 % of the limit: never a 429, so never a 418
