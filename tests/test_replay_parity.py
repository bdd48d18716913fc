"""The parity proof: trades through the live path (simulator -> feed -> engine -> live rules -> paper
broker) equal the vectorbt backtest's, on real data with and without exchange outages: every column
of ``.trades`` (exit reasons, durations, excursions, an open position at the end), with fills at
the close or the next open, long/short reversals in every sizing mode, stops (distances, price levels,
trailing) and sizes per signal, and shorts on margin: liquidations and borrow interest."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

import kit.backtest as bt
from kit.broker import FillModel
from kit.indicators import spec
from kit.market.aggregate import resample
from kit.market.files import count_gaps, read_candles, to_ms
from kit.market.intervals import interval_ms
from kit.replay import replay
from kit.strategies import AtrTrend, BollingerBreakout, EmaCross, RsiReversion, TrendFilter, VolTrend
from kit.strategy import Columns, Signals, Strategy, crossed_above, crossed_below, on
from tests.fixtures.swing import SwingStops

# (file, first row, rows, real outages inside the slice)
SLICES = [
    ("BTCUSDT_1m_20230316_20230501", 9_000, 5_000, 1),  # the 2023-03-24 trading halt
    ("BTCUSDT_1m_20210402_20210514", 25_000, 5_000, 1),  # the 2021-04-20 outage
    ("BTCUSDT_5m_20210101_20210513", 10_000, 10_000, 2),
    ("BTCUSDT_15m_20230401_20240409", 0, 6_000, 0),
    ("BTCUSDT_1h_20170817_20240421", 0, 8_000, 6),
]

LONG_PERCENT = (
    FillModel(),
    [RsiReversion(), EmaCross(fast=8, slow=21), BollingerBreakout()],
)
SHORTS_VALUE_STOPS = (
    FillModel(fees=0.002, slippage=0.0005, size=1_000.0, size_type="value", init_cash=5_000.0),
    [
        RsiReversion(period=7, lower=25, upper=75, short=True, stop_loss=0.01),
        EmaCross(fast=5, slow=30, short=True, take_profit=0.02),
        BollingerBreakout(period=30, width=1.5, short=True, stop_loss=0.02, take_profit=0.03),
    ],
)

# The default sizing (all the cash) reverses long <-> short in one fill, both ways.
SHORTS_PERCENT_REVERSE = (
    FillModel(fees=0.001, slippage=0.0003),
    [
        EmaCross(fast=8, slow=21, short=True),
        RsiReversion(period=10, lower=30, upper=70, short=True, take_profit=0.03),
    ],
)
# Signals fill at the next candle's open (after an outage: the first candle that exists).
NEXT_OPEN = (
    FillModel(fees=0.001, slippage=0.0005, fill="next_open"),
    [
        EmaCross(fast=8, slow=21),
        RsiReversion(period=7, lower=25, upper=75, short=True, stop_loss=0.01),
        BollingerBreakout(period=30, width=1.5, short=True, stop_loss=0.02, take_profit=0.03),
    ],
)
NEXT_OPEN_VALUE = (
    FillModel(fees=0.002, size=1_000.0, size_type="value", init_cash=5_000.0, fill="next_open"),
    [EmaCross(fast=5, slow=30, short=True, take_profit=0.02)],
)
# Stops per signal (ATR multiples as price distances), trailing or fixed with a target.
ATR_STOPS = (
    FillModel(fees=0.001, slippage=0.0003),
    [AtrTrend(fast=8, slow=21), AtrTrend(fast=10, slow=30, trail=False, target_atr=3.0, short=False)],
)
ATR_STOPS_NEXT_OPEN = (
    FillModel(fees=0.002, size=1_000.0, size_type="value", init_cash=5_000.0, fill="next_open"),
    [AtrTrend(fast=8, slow=21, stop_atr=3.0, target_atr=6.0)],
)
# Sizes per signal from the ATR (each stop risks the same amount), in base units.
VOL_SIZED = (
    FillModel(fees=0.001, size=0.01, size_type="amount", init_cash=50_000.0),
    [VolTrend(fast=8, slow=21, risk=50.0), VolTrend(fast=10, slow=30, risk=80.0, trail=True, short=False)],
)
VOL_SIZED_NEXT_OPEN = (
    FillModel(fees=0.001, slippage=0.0005, size=0.01, size_type="amount", init_cash=50_000.0, fill="next_open"),
    [VolTrend(fast=8, slow=21, risk=50.0, target_atr=5.0)],
)
# Margin: shorts worth up to 4 x equity (initial margin 0.25), liquidated at the default maintenance
# margin, paying interest per day; a reversal out of a short is two fills (the close pays the interest).
MARGIN = (
    FillModel(fees=0.001, slippage=0.0003, size=40_000.0, size_type="value", initial_margin=0.25, borrow_rate=0.0005),
    [RsiReversion(period=10, lower=30, upper=70, short=True), EmaCross(fast=8, slow=21, short=True)],
)
MARGIN_NEXT_OPEN = (
    FillModel(fees=0.001, maintenance_margin=0.5, borrow_rate=0.0002, fill="next_open"),
    [RsiReversion(period=21, lower=20, upper=75, short=True), AtrTrend(fast=8, slow=21)],
)
# Percent sizes below 1 reverse too: the close, then the new side with that share of the cash.
PERCENT_HALF_REVERSE = (
    FillModel(fees=0.001, slippage=0.0003, size=0.5),
    [EmaCross(fast=8, slow=21, short=True), AtrTrend(fast=8, slow=21, stop_atr=3.0)],
)
# Stops as price levels per signal, and a trailing fraction set on the strategy.
LEVELS_TRAILING = (
    FillModel(fees=0.001, slippage=0.0003, size=1_000.0, size_type="value"),
    [SwingStops(), EmaCross(fast=8, slow=21, short=True, trailing_stop=0.01, take_profit=0.03)],
)
LEVELS_TRAILING_NEXT_OPEN = (
    FillModel(fees=0.001, fill="next_open"),
    [SwingStops(reward=3.0), EmaCross(fast=5, slow=30, trailing_stop=0.015)],
)
GROUPS = {
    "long-percent": LONG_PERCENT,
    "shorts-value-stops": SHORTS_VALUE_STOPS,
    "shorts-percent-reverse": SHORTS_PERCENT_REVERSE,
    "next-open": NEXT_OPEN,
    "next-open-value": NEXT_OPEN_VALUE,
    "atr-stops": ATR_STOPS,
    "atr-stops-next-open-value": ATR_STOPS_NEXT_OPEN,
    "vol-sized": VOL_SIZED,
    "vol-sized-next-open": VOL_SIZED_NEXT_OPEN,
    "margin": MARGIN,
    "margin-next-open": MARGIN_NEXT_OPEN,
    "percent-half-reverse": PERCENT_HALF_REVERSE,
    "levels-trailing": LEVELS_TRAILING,
    "levels-trailing-next-open": LEVELS_TRAILING_NEXT_OPEN,
}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "first", "rows", "outages"), SLICES, ids=[s[0] for s in SLICES])
@pytest.mark.parametrize("group", list(GROUPS.values()), ids=list(GROUPS))
def test_replayed_trades_equal_backtest_trades(shared_data_dir, name, first, rows, outages, group):
    model, strategies = group
    frame = read_candles(shared_data_dir / f"{name}.csv.gz").iloc[first : first + rows]
    interval = name.split("_")[1]
    assert count_gaps(frame, interval) > 0 if outages else count_gaps(frame, interval) == 0
    assert np.sum(np.diff(to_ms(frame.index)) > interval_ms(interval)) == outages

    run = replay(strategies, frame, symbol="BTCUSDT", interval=interval, model=model, timeout=300)
    assert run.candles == len(frame) and run.interval == interval

    for strategy, live in zip(strategies, run, strict=True):
        res = bt.run(strategy, frame, model=model)
        want = res.trades
        got = live.trades
        assert len(want) > 0, f"{strategy!r} made no trades: the comparison would be empty"
        if strategy.has_shorts:  # long/short alternate: reversals happen in every sizing mode
            assert {"long", "short"} <= set(want["side"])
        assert len(got) == len(want), f"{strategy!r}: replay {len(got)} trades, backtest {len(want)}"
        assert (got["entry_time"].to_numpy() == want["entry_time"].to_numpy()).all()
        assert (got["exit_time"].to_numpy() == want["exit_time"].to_numpy()).all()
        assert (got["side"].to_numpy() == want["side"].to_numpy()).all()
        for col in ("entry_price", "exit_price"):
            np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-9, atol=0)
        np.testing.assert_allclose(got["size"].to_numpy(), want["size"].to_numpy(), rtol=1e-9, atol=0)
        np.testing.assert_allclose(got["pnl"].to_numpy(), want["pnl"].to_numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(got["fees"].to_numpy(), want["fees"].to_numpy(), rtol=0, atol=1e-6)
        # the trade records people read: why each ended, how long, how far price went
        assert list(got["exit_reason"]) == list(want["exit_reason"])
        assert (got["duration"].to_numpy() == want["duration"].to_numpy()).all()
        for col in ("mae", "mfe", "return_pct", "mae_pct", "mfe_pct"):
            np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-9, atol=1e-9, err_msg=col)
        # every live signal fell on a candle where the batch rules signalled too
        sig = res.signals
        mask = sig.entries | sig.exits
        if sig.short_entries is not None:
            mask = mask | sig.short_entries | sig.short_exits
        batch_times = set(frame.index[mask].as_unit("ms").asi8.tolist())
        assert {s.time_ms for s in live.signals} == batch_times


# ----- strategies over several streams ------------------------------------------------------


class EthFilter(Strategy):
    """BTC entries taken only while ETH's last closed hour is above its EMA: another symbol's stream."""

    streams: ClassVar = {"eth": ("ETHUSDT", "1h")}
    lookback = 2

    def indicators(self) -> dict:
        return {
            "fast": spec("ema", 8),
            "slow": spec("ema", 21),
            "eth_close": on("eth", "close"),
            "eth_ema": on("eth", spec("ema", 10)),
            "eth_rsi": on("eth", spec("rsi", 14)),
        }

    def signals(self, d: Columns) -> Signals:
        with np.errstate(invalid="ignore"):
            eth_up = (d.eth_close > d.eth_ema) & (d.eth_rsi < 70)
        return Signals(crossed_above(d.fast, d.slow) & eth_up, crossed_below(d.fast, d.slow) | ~eth_up)


def _assert_same_trades(got, want, strategy):
    assert len(want) > 0, f"{strategy!r} made no trades: the comparison would be empty"
    assert len(got) == len(want), f"{strategy!r}: replay {len(got)} trades, backtest {len(want)}"
    for col in ("entry_time", "exit_time", "side", "exit_reason", "duration"):
        assert (got[col].to_numpy() == want[col].to_numpy()).all(), col
    for col in ("entry_price", "exit_price", "size", "mae", "mfe"):
        np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-9, atol=0, err_msg=col)
    for col in ("pnl", "fees"):
        np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=0, atol=1e-6, err_msg=col)


@pytest.mark.slow
@pytest.mark.parametrize("model", [FillModel(fees=0.001, slippage=0.0003), FillModel(fill="next_open")],
                         ids=["close", "next-open"])  # fmt: skip
def test_a_5m_entry_with_a_1h_trend_filter_replays_trade_for_trade_on_real_data_with_outages(shared_data_dir, model):
    # 5m candles with the 2021-02-11 and 2021-03-06 outages; the 1h stream is what the simulator
    # (like the exchange) builds from them, outages included
    frame = read_candles(shared_data_dir / "BTCUSDT_5m_20210101_20210513.csv.gz").iloc[8_000:20_000]
    assert np.sum(np.diff(to_ms(frame.index)) > interval_ms("5m")) == 2
    hours = resample(frame, "5m", "1h")
    strategies = [TrendFilter(), TrendFilter(fast=5, slow=30, trend=20, short=True)]
    run = replay(strategies, frame, symbol="BTCUSDT", interval="5m", model=model, timeout=300)
    assert run.candles == len(frame)
    for strategy, live in zip(strategies, run, strict=True):
        res = bt.run(strategy, frame, model=model, streams={"h1": hours})
        _assert_same_trades(live.trades, res.trades, strategy)
        if strategy.short:
            assert {"long", "short"} <= set(res.trades["side"])
        # the filter matters: without it the same crossovers trade more
        assert len(res.trades) < len(bt.run(EmaCross(fast=strategy.fast, slow=strategy.slow), frame).trades)


@pytest.mark.slow
def test_a_filter_on_another_symbols_stream_replays_trade_for_trade_over_both_outages(shared_data_dir):
    # BTC 1m through the 2023-03-24 trading halt, ETH 1h with its own two-hour hole that day
    frame = read_candles(shared_data_dir / "BTCUSDT_1m_20230316_20230501.csv.gz").iloc[9_000:14_000]
    eth = read_candles(shared_data_dir / "ETHUSDT_1h_20230101_20240110.csv.gz")
    eth = eth[(eth.index >= frame.index[0] - pd.Timedelta("4D")) & (eth.index <= frame.index[-1])]
    assert count_gaps(frame, "1m") > 0 and count_gaps(eth, "1h") > 0
    model = FillModel(fees=0.001)
    run = replay(EthFilter(), frame, symbol="BTCUSDT", interval="1m", model=model, streams={"eth": eth}, timeout=300)
    res = bt.run(EthFilter(), frame, model=model, streams={"eth": eth})
    _assert_same_trades(run[0].trades, res.trades, EthFilter())
