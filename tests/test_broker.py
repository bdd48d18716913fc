"""kit.broker: the fill model's rules, the paper broker's state machine, and restarts from its state."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kit.broker import (
    EXIT_REASONS,
    TRADE_COLUMNS,
    BrokerState,
    Fill,
    FillModel,
    PaperBroker,
    simulate,
    trades_frame,
)
from kit.market import Candle
from kit.strategy import Signal


def C(i: int, o: float, h: float, low: float, c: float) -> Candle:
    return Candle(i * 60_000, o, h, low, c, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"fees": -0.1}, "fees"),
        ({"fees": 1.0}, "fees"),
        ({"slippage": 2}, "slippage"),
        ({"init_cash": 0}, "init_cash"),
        ({"size": 1.5}, "size"),
        ({"size": 0, "size_type": "value"}, "size"),
        ({"size_type": "lots"}, "size_type"),
        ({"fees": float("nan")}, "fees"),
        ({"fees": True}, "fees"),
        ({"fill": "open"}, "fill"),
    ],
)
def test_fill_model_validates(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        FillModel(**kwargs)


def test_vectorbt_kwargs_are_plain_and_complete():
    kw = FillModel(fees=0.002, slippage=0.001, size=500, size_type="value").vectorbt_kwargs(0.05, None)
    assert kw["fees"] == 0.002 and kw["slippage"] == 0.001 and kw["size_type"] == "value"
    assert kw["upon_opposite_entry"] == "reverse" and kw["accumulate"] is False
    assert kw["sl_stop"] == 0.05 and math.isnan(kw["tp_stop"])
    assert kw["price"] == math.inf and kw["stop_entry_price"] == "close"
    assert FillModel(size=0.5).vectorbt_kwargs()["upon_opposite_entry"] == "close"
    full = FillModel().vectorbt_kwargs()
    assert full["upon_opposite_entry"] == "reversereduce" and full["accumulate"] == "removeonly"
    nxt = FillModel(fill="next_open").vectorbt_kwargs()
    assert nxt["price"] == -math.inf and nxt["stop_entry_price"] == "price"
    assert all(isinstance(v, bool | int | float | str) for v in kw.values())


def test_percent_entry_and_exit_follow_the_documented_formulas():
    fees, slip = 0.001, 0.0005
    m = FillModel(fees=fees, slippage=slip, size=1.0, size_type="percent", init_cash=1000.0)
    b = PaperBroker(m)
    assert b.on_bar(C(0, 10, 10, 10, 10)) == []
    [buy] = b.on_bar(C(1, 10, 11, 9, 10.5), Signal(60_000, entry=True))
    price_in = 10.5 * (1 + slip)
    qty = 1000.0 / (1 + fees) / price_in
    assert buy.side == "buy" and buy.reason == "entry" and buy.time_ms == 60_000
    assert buy.price == pytest.approx(price_in, rel=1e-15)
    assert buy.qty == pytest.approx(qty, rel=1e-12)
    assert buy.fee == pytest.approx(buy.qty * buy.price * fees, rel=1e-9)
    assert b.side == "long" and b.state.cash == pytest.approx(0.0, abs=1e-9)
    assert b.on_bar(C(2, 10, 13, 10, 12), Signal(120_000, entry=True)) == []  # no pyramiding
    [sell] = b.on_bar(C(3, 12, 12, 11, 11.75), Signal(180_000, exit=True))
    price_out = 11.75 * (1 - slip)
    assert sell.side == "sell" and sell.reason == "exit"
    assert sell.price == pytest.approx(price_out, rel=1e-15) and sell.qty == buy.qty
    [trade] = b.trades
    assert trade == b.new_trades[0]
    assert trade.side == "long" and trade.entry_time == 60_000 and trade.exit_time == 180_000
    assert trade.pnl == pytest.approx((price_out - price_in) * qty - buy.fee - sell.fee, rel=1e-9)
    assert trade.fees == pytest.approx(buy.fee + sell.fee, rel=1e-12)
    assert b.side == "flat"
    assert b.equity(11.75) == pytest.approx(1000.0 + trade.pnl, rel=1e-12)
    assert b.on_bar(C(4, 12, 12, 11, 11), Signal(240_000, exit=True)) == []  # exit while flat: ignored


def test_value_sizing_reverses_in_one_fill_and_splits_fees():
    m = FillModel(fees=0.01, size=100.0, size_type="value", init_cash=1000.0)
    b = PaperBroker(m)
    [f1] = b.on_bar(C(0, 10, 10, 10, 10), Signal(0, entry=True))
    assert f1.qty == pytest.approx(10.0)
    [f2] = b.on_bar(C(1, 20, 20, 20, 20), Signal(60_000, exit=True, short_entry=True))
    assert f2.side == "sell" and f2.reason == "reverse"
    assert f2.qty == pytest.approx(10.0 + 100.0 / 20)
    assert b.side == "short" and b.state.position == pytest.approx(-5.0)
    [t] = b.trades
    close_fee = f2.fee * 10.0 / f2.qty
    assert t.pnl == pytest.approx((20 - 10) * 10.0 - f1.fee - close_fee)
    [f3] = b.on_bar(C(2, 16, 16, 16, 16), Signal(120_000, short_exit=True))
    assert f3.side == "buy" and f3.qty == pytest.approx(5.0)
    assert b.trades[-1].side == "short"
    assert b.trades[-1].pnl == pytest.approx((20 - 16) * 5.0 - (f2.fee - close_fee) - f3.fee)


def test_percent_sizing_reverses_on_an_opposite_entry_symmetrically_for_both_sides():
    fees = 0.001
    b = PaperBroker(FillModel(fees=fees, init_cash=1000.0))
    [f0] = b.on_bar(C(0, 10, 10, 10, 10), Signal(0, entry=True))
    q = f0.qty
    # long -> short in one fill: close the long, then short all that the freed cash backs
    [f1] = b.on_bar(C(1, 11, 11, 11, 11), Signal(60_000, short_entry=True))
    freed = q * 11 * (1 - fees)
    assert f1.reason == "reverse" and f1.side == "sell" and b.side == "short"
    assert f1.qty == pytest.approx(q + freed / (11 * (1 + fees)), rel=1e-12)
    assert b.state.position == pytest.approx(-freed / (11 * (1 + fees)), rel=1e-12)
    [long_trade] = b.trades
    assert long_trade.side == "long" and long_trade.exit_price == 11
    # short -> long in one fill: cover, then go long with all the cash
    cash = b.state.cash
    [f2] = b.on_bar(C(2, 10, 10, 10, 10), Signal(120_000, entry=True))
    assert f2.reason == "reverse" and f2.side == "buy" and b.side == "long"
    assert f2.qty == pytest.approx(cash / (1 + fees) / 10, rel=1e-12)
    assert [t.side for t in b.trades] == ["long", "short"]


def test_percent_sizing_below_one_reverses_in_two_fills_symmetrically():
    fees = 0.001
    b = PaperBroker(FillModel(fees=fees, size=0.5, init_cash=1000.0))
    [f0] = b.on_bar(C(0, 10, 10, 10, 10), Signal(0, entry=True))
    assert f0.qty == pytest.approx(0.5 * 1000 / (1 + fees) / 10, rel=1e-12)
    # long -> short: the close, then a short of half of what the freed cash backs
    free = b.state.cash + f0.qty * 11 * (1 - fees)
    close, short = b.on_bar(C(1, 11, 11, 11, 11), Signal(60_000, short_entry=True))
    assert (close.side, close.reason, close.qty) == ("sell", "reverse", f0.qty)
    assert (short.side, short.reason) == ("sell", "entry") and b.side == "short"
    assert short.qty == pytest.approx(0.5 * free / (11 * (1 + fees)), rel=1e-12)
    assert [t.exit_reason for t in b.trades] == ["reverse"]
    # short -> long, the mirror image: cover all, then buy with half the cash left
    cover, long = b.on_bar(C(2, 10, 10, 10, 10), Signal(120_000, entry=True))
    assert (cover.side, cover.reason, cover.qty) == ("buy", "reverse", short.qty)
    left = b.state.cash + long.qty * 10 * (1 + fees)
    assert (long.side, long.reason) == ("buy", "entry") and b.side == "long"
    assert long.qty == pytest.approx(0.5 * left / (1 + fees) / 10, rel=1e-12)
    assert [(t.side, t.exit_reason) for t in b.trades] == [("long", "reverse"), ("short", "reverse")]


def test_a_short_is_liquidated_at_the_maintenance_margin_and_equity_stays_positive():
    m = FillModel(fees=0.001, maintenance_margin=0.1, init_cash=1000.0)
    b = PaperBroker(m)
    [f] = b.on_bar(C(0, 100, 100, 100, 100), Signal(0, short_entry=True))
    q, cash = f.qty, b.state.cash
    level = cash / (q * 1.1)  # equity = 10 % of the debt: margin level 1.1
    assert b.liquidation_price() == pytest.approx(level, rel=1e-12) and 180 < level < 182
    assert b.on_bar(C(1, 150, 180, 140, 170)) == []  # close, not there
    [x] = b.on_bar(C(2, 170, 190, 165, 185))
    assert (x.side, x.reason, x.qty) == ("buy", "liquidation", q) and x.price == pytest.approx(level, rel=1e-12)
    assert b.trades[-1].exit_reason == "liquidation" and b.side == "flat"
    assert b.state.cash == pytest.approx(q * level * (1.1 - 1.001), rel=1e-9) and b.state.cash > 0


def test_a_gap_beyond_bankruptcy_closes_at_zero_equity_and_nothing_trades_after():
    b = PaperBroker(FillModel(fees=0.001, maintenance_margin=0.1, init_cash=1000.0))
    [f] = b.on_bar(C(0, 100, 100, 100, 100), Signal(0, short_entry=True))
    cash = b.state.cash
    [x] = b.on_bar(C(1, 400, 410, 390, 400))  # opens far beyond where equity is 0
    assert x.reason == "liquidation" and x.qty == f.qty
    assert x.price == pytest.approx(cash / (f.qty * 1.001), rel=1e-12)  # the bankruptcy price, not 400
    assert b.state.cash == 0 and b.equity(400) == 0
    assert b.on_bar(C(2, 400, 400, 400, 400), Signal(120_000, entry=True)) == []
    assert b.on_bar(C(3, 400, 400, 400, 400), Signal(180_000, short_entry=True)) == []


def test_a_stop_loss_before_the_liquidation_price_exits_first_and_the_margin_can_be_off():
    b = PaperBroker(FillModel(fees=0.0, maintenance_margin=0.1), stop_loss=0.2)
    b.on_bar(C(0, 100, 100, 100, 100), Signal(0, short_entry=True))
    [x] = b.on_bar(C(1, 100, 300, 100, 250))  # both levels inside the candle: the nearer one fills
    assert x.reason == "stop_loss" and x.price == pytest.approx(120)
    off = PaperBroker(FillModel(fees=0.0, maintenance_margin=0.0))
    off.on_bar(C(0, 100, 100, 100, 100), Signal(0, short_entry=True))
    assert off.on_bar(C(1, 100, 300, 100, 250)) == [] and off.equity(250) < 0  # no margin model


def test_covering_a_short_pays_borrow_interest_per_day_on_its_entry_value():
    day = 1440  # one-minute candles
    m = FillModel(fees=0.0, size=1.0, size_type="amount", borrow_rate=0.001, init_cash=1000.0)
    b = PaperBroker(m)
    b.on_bar(C(0, 100, 100, 100, 100), Signal(0, short_entry=True))
    assert b.interest(3 * day * 60_000) == pytest.approx(0.001 * 3 * 100.0)
    [x] = b.on_bar(C(3 * day, 90, 90, 90, 90), Signal(3 * day * 60_000, short_exit=True))
    assert x.fee == pytest.approx(0.3) and b.trades[-1].pnl == pytest.approx(10.0 - 0.3)
    assert b.state.cash == pytest.approx(1000.0 + 10.0 - 0.3)
    # a reversal out of a short pays it on the close, and the new long is sized from what is left
    b.on_bar(C(3 * day + 1, 90, 90, 90, 90), Signal((3 * day + 1) * 60_000, short_entry=True))
    cover, entry = b.on_bar(C(5 * day + 1, 80, 80, 80, 80), Signal((5 * day + 1) * 60_000, entry=True))
    assert cover.reason == "reverse" and cover.fee == pytest.approx(0.001 * 2 * 90.0)
    assert entry.reason == "entry" and entry.fee == 0 and b.side == "long"


def test_initial_margin_caps_a_shorts_value_at_a_multiple_of_equity():
    b = PaperBroker(FillModel(fees=0.0, size=5_000.0, size_type="value", initial_margin=0.5, init_cash=1000.0))
    [f] = b.on_bar(C(0, 100, 100, 100, 100), Signal(0, short_entry=True))
    assert f.qty == pytest.approx(2_000.0 / 100)  # equity 1000 / 0.5
    with pytest.raises(ValueError, match="initial_margin"):
        FillModel(initial_margin=0.0)
    with pytest.raises(ValueError, match="maintenance_margin"):
        FillModel(maintenance_margin=1.0)
    with pytest.raises(ValueError, match="borrow_rate"):
        FillModel(borrow_rate=-0.1)


def test_stops_as_price_levels_and_a_trailing_fraction_set_on_the_strategy():
    b = PaperBroker(FillModel(fees=0.0, size=1.0, size_type="amount"))
    b.on_bar(C(0, 100, 100, 100, 100), Signal(0, entry=True, stop_loss_price=95.0, take_profit_price=110.0))
    assert (b.state.sl_stop, b.state.tp_stop) == (0.05, pytest.approx(0.1))
    [x] = b.on_bar(C(1, 100, 101, 94, 96))
    assert x.reason == "stop_loss" and x.price == pytest.approx(95.0)
    b.on_bar(C(2, 100, 100, 100, 100), Signal(120_000, short_entry=True, stop_loss_price=90.0, take_profit_price=80))
    assert b.state.sl_stop == 0.0 and b.state.tp_stop == pytest.approx(0.2)  # a level already passed: at the entry
    t = PaperBroker(FillModel(fees=0.0, size=1.0, size_type="amount"), stop_loss=0.5, trailing_stop=0.1)
    t.on_bar(C(0, 100, 100, 100, 100), Signal(0, entry=True))
    assert t.state.sl_trail and t.state.sl_stop == 0.1
    assert t.on_bar(C(1, 100, 120, 100, 118)) == []
    [x] = t.on_bar(C(2, 118, 118, 100, 105))  # 120 * 0.9 = 108
    assert x.reason == "trailing_stop" and x.price == pytest.approx(108.0)


def test_next_open_fills_the_signal_at_the_next_candles_open_and_persists_it():
    m = FillModel(fees=0.001, slippage=0.001, fill="next_open", init_cash=1000.0)
    b = PaperBroker(m, stop_loss=0.1)
    assert b.on_bar(C(0, 10, 10, 10, 10), Signal(0, entry=True)) == []  # decided, not yet filled
    assert b.state.pending == [True, False, False, False] and b.side == "flat"
    # a restart between the signal and the next candle keeps the pending signal
    b = PaperBroker(m, BrokerState.from_dict(json.loads(json.dumps(b.state.to_dict()))), stop_loss=0.1)
    # the next candle that exists (after an outage: candle 5) fills it at its open
    [f] = b.on_bar(C(5, 12, 13, 11, 12.5))
    assert f.time_ms == 5 * 60_000 and f.side == "buy" and f.reason == "entry"
    assert f.price == pytest.approx(12 * 1.001, rel=1e-15)
    assert f.qty == pytest.approx(1000.0 / 1.001 / (12 * 1.001), rel=1e-12)
    assert b.state.pending is None
    assert b.state.sl_price == 12  # the stop's reference is the open, without slippage
    # the stop is checked from the candle after the fill; it drops a signal due at the same open
    b.on_bar(C(6, 12, 12, 12, 12), Signal(6 * 60_000, exit=True))
    [s] = b.on_bar(C(7, 10, 10, 10, 10))
    assert s.reason == "stop_loss" and s.price == pytest.approx(10 * 0.999) and b.side == "flat"
    assert b.state.pending is None


def test_conflicting_signals_cancel():
    b = PaperBroker(FillModel())
    assert b.on_bar(C(0, 10, 10, 10, 10), Signal(0, entry=True, exit=True)) == []
    assert b.on_bar(C(1, 10, 10, 10, 10), Signal(60_000, entry=True, short_entry=True)) == []
    assert b.side == "flat"


def test_stops_fill_at_the_stop_price_or_the_gapped_open():
    m = FillModel(fees=0.0)
    b = PaperBroker(m, stop_loss=0.1, take_profit=0.2)
    b.on_bar(C(0, 100, 100, 100, 100), Signal(0, entry=True))
    assert b.on_bar(C(1, 100, 105, 95, 101)) == []  # inside both
    [f] = b.on_bar(C(2, 100, 101, 85, 90), Signal(120_000, entry=True))  # range reaches 90: stop
    assert f.reason == "stop_loss" and f.price == pytest.approx(90.0) and b.side == "flat"
    # the signal on the stop candle is not acted on
    assert b.side == "flat"
    b.on_bar(C(3, 100, 100, 100, 100), Signal(180_000, entry=True))
    [g] = b.on_bar(C(4, 130, 131, 125, 126))  # opens beyond the take-profit: fills at the open
    assert g.reason == "take_profit" and g.price == 130


def _random_run(n=3000, seed=0, **model):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    o = np.r_[close[0], close[:-1]]
    hi = np.maximum(o, close) * (1 + rng.uniform(0, 0.005, n))
    lo = np.minimum(o, close) * (1 - rng.uniform(0, 0.005, n))
    ohlc = np.column_stack([o, hi, lo, close])
    t = np.arange(n, dtype=np.int64) * 60_000
    sig = [rng.random(n) < 0.03 for _ in range(4)]
    return t, ohlc, sig


@pytest.mark.parametrize(
    "model",
    [
        FillModel(),
        FillModel(size=300, size_type="value", slippage=0.001),
        FillModel(fill="next_open", slippage=0.001),
    ],
)
def test_restart_from_serialised_state_continues_identically(model):
    t, ohlc, (e, x, se, sx) = _random_run()
    fills, trades, _ = simulate(model, t, ohlc, e, x, se, sx, stop_loss=0.02, take_profit=0.03)
    assert len(trades) > 20

    def drive(broker, lo, hi):
        out = []
        for i in range(lo, hi):
            s = Signal(int(t[i]), bool(e[i]), bool(x[i]), bool(se[i]), bool(sx[i]))
            out += broker.on_bar((int(t[i]), *ohlc[i]), s if s.any() else None)
        return out

    got: list[Fill] = []
    got_trades = []
    broker = PaperBroker(model, stop_loss=0.02, take_profit=0.03)
    for lo, hi in [(0, 700), (700, 701), (701, 2200), (2200, len(t))]:
        got += drive(broker, lo, hi)
        got_trades += broker.trades
        # a "process restart": only the JSON state survives
        state = json.loads(json.dumps(broker.state.to_dict()))
        broker = PaperBroker(model, BrokerState.from_dict(state), stop_loss=0.02, take_profit=0.03)
        # replaying the last candle after a restart never trades twice
        assert drive(broker, hi - 1, hi) == []
    assert got == fills
    assert got_trades == trades


def test_state_rejects_unknown_fields_and_reports_side():
    with pytest.raises(ValueError, match="bogus"):
        BrokerState.from_dict({"cash": 1.0, "bogus": 2})
    s = BrokerState(cash=5.0)
    assert s.side == "flat" and s.free_cash == 5.0 and s.entry_price is None


def test_trades_frame_columns():
    t, ohlc, (e, x, _, _) = _random_run(n=500, seed=4)
    _, trades, _ = simulate(FillModel(), t, ohlc, e, x)
    df = trades_frame(trades)
    assert list(df.columns) == list(TRADE_COLUMNS)
    assert df["duration"].dtype.kind == "m" and set(df["exit_reason"]) <= set(EXIT_REASONS)
    assert len(df) == len(trades) > 0
    assert str(df["entry_time"].dt.tz) == "UTC"
    assert (df["exit_time"] >= df["entry_time"]).all()
    assert trades_frame([]).empty


def test_for_strategy_takes_the_strategys_stops():
    from kit.strategies import EmaCross

    b = PaperBroker.for_strategy(EmaCross(stop_loss=0.02), FillModel(fees=0.0))
    assert (b.stop_loss, b.take_profit) == (0.02, None) and b.model.fees == 0.0


def test_trade_records_say_why_each_trade_ended_and_how_far_price_went():
    b = PaperBroker(FillModel(fees=0.0, size=1.0, size_type="amount"), stop_loss=0.2)
    b.on_bar(C(0, 100, 101, 99, 100), Signal(0, entry=True))  # long at 100 (its own candle does not count)
    b.on_bar(C(1, 100, 104, 97, 102))  # held fully: range 97..104
    b.on_bar(C(2, 102, 108, 101, 106), Signal(120_000, short_entry=True))  # reverse at the close: counts
    [long_trade] = b.trades
    assert long_trade.exit_reason == "reverse" and long_trade.side == "long"
    assert (long_trade.mae, long_trade.mfe) == (100 - 97, 108 - 100)
    b.on_bar(C(3, 106, 107, 103, 104))  # short from 106: range 103..107
    assert b.open_trade() == b.open_trade() and b.open_trade().exit_reason == "open"
    ot = b.open_trade()
    assert (ot.exit_time, ot.exit_price, ot.pnl, ot.mae, ot.mfe) == (180_000, 104, 2.0, 1.0, 3.0)
    [stop] = b.on_bar(C(4, 110, 130, 100, 125))  # stop-loss at 106 * 1.2 = 127.2: only the exit counts
    assert stop.reason == "stop_loss"
    short_trade = b.trades[-1]
    assert short_trade.exit_reason == "stop_loss" and short_trade.exit_price == pytest.approx(127.2)
    assert short_trade.mae == pytest.approx(127.2 - 106) and short_trade.mfe == pytest.approx(106 - 103)
    assert b.open_trade() is None
    df = trades_frame(b.trades)
    assert list(df["exit_reason"]) == ["reverse", "stop_loss"]
    assert list(df["duration"].dt.total_seconds()) == [120.0, 120.0]
    assert df["return_pct"].iloc[0] == pytest.approx(6 / 100)
    assert df["mae_pct"].iloc[0] == pytest.approx(0.03) and df["mfe_pct"].iloc[1] == pytest.approx(3 / 106)


def test_a_signals_own_trailing_stop_follows_the_best_price_and_survives_a_restart():
    m = FillModel(fees=0.0, size=1.0, size_type="amount", fill="next_open")
    b = PaperBroker(m, stop_loss=0.5)  # the strategy's own (wide) stop, replaced by the signal's
    b.on_bar(C(0, 100, 100, 100, 100), Signal(0, entry=True, trailing_stop=5.0))
    assert b.state.pending == [True, False, False, False, None, None, 5.0, None, None, None]
    b = PaperBroker(m, BrokerState.from_dict(json.loads(json.dumps(b.state.to_dict()))), stop_loss=0.5)
    [f] = b.on_bar(C(1, 100, 103, 99, 102))  # filled at the open; trailing from the next candle on
    assert f.price == 100 and b.state.sl_trail and b.state.sl_stop == 5.0 / 100 and b.state.sl_price == 100
    assert b.on_bar(C(2, 102, 110, 101, 109)) == [] and b.state.sl_price == 110  # moved up to the high
    [x] = b.on_bar(C(3, 108, 108, 100, 101))  # 110 * (1 - 0.05) = 104.5
    assert x.reason == "trailing_stop" and x.price == pytest.approx(104.5)
    assert b.trades[-1].exit_reason == "trailing_stop" and not b.state.sl_trail


def test_a_signals_own_stop_and_target_are_price_distances_from_the_fill():
    b = PaperBroker(FillModel(fees=0.0, size=1.0, size_type="amount"), take_profit=0.5)
    b.on_bar(C(0, 100, 100, 100, 200), Signal(0, short_entry=True, stop_loss=10.0, take_profit=20.0))
    assert (b.state.sl_stop, b.state.tp_stop) == (10.0 / 200, 20.0 / 200)
    [x] = b.on_bar(C(1, 195, 196, 179, 185))  # target 200 - 20 = 180 reached
    assert x.reason == "take_profit" and x.price == pytest.approx(180.0)
    b.on_bar(C(2, 100, 100, 100, 100), Signal(120_000, entry=True))  # no distances: the strategy's fractions
    assert (b.state.sl_stop, b.state.tp_stop) == (None, 0.5)
