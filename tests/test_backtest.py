"""kit.backtest: run() and sweep() on vectorbt, and the paper broker equal to vectorbt fill by fill."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import kit.backtest as bt
from kit.broker import FillModel, simulate, trades_frame
from kit.errors import ConfigError, DataError
from kit.market.files import read_candles
from kit.strategies import BollingerBreakout, EmaCross, RsiReversion
from kit.strategy import Signals

COLUMNS = [
    "entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "pnl", "fees",
    "exit_reason", "duration", "return_pct", "mae", "mae_pct", "mfe", "mfe_pct",
]  # fmt: skip


@pytest.fixture(scope="module")
def frame(shared_data_dir) -> pd.DataFrame:
    # 1h candles over a stretch with real exchange outages
    df = read_candles(shared_data_dir / "BTCUSDT_1h_20170817_20240421.csv.gz")
    return df.iloc[:8000]


def assert_same_trades(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert len(a) == len(b)
    assert (a["entry_time"].to_numpy() == b["entry_time"].to_numpy()).all()
    assert (a["exit_time"].to_numpy() == b["exit_time"].to_numpy()).all()
    assert (a["side"].to_numpy() == b["side"].to_numpy()).all()
    for c in ("entry_price", "exit_price", "size"):
        np.testing.assert_allclose(a[c].to_numpy(), b[c].to_numpy(), rtol=1e-9, atol=0)
    np.testing.assert_allclose(a["pnl"].to_numpy(), b["pnl"].to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(a["fees"].to_numpy(), b["fees"].to_numpy(), rtol=0, atol=1e-6)
    assert list(a["exit_reason"]) == list(b["exit_reason"])
    assert (a["duration"].to_numpy() == b["duration"].to_numpy()).all()
    for c in ("mae", "mfe", "return_pct", "mae_pct", "mfe_pct"):
        np.testing.assert_allclose(a[c].to_numpy(), b[c].to_numpy(), rtol=1e-9, atol=1e-9, err_msg=c)


MODELS = [
    FillModel(),
    FillModel(fees=0.002, slippage=0.001, size=0.5),
    FillModel(size=2000.0, size_type="value", slippage=0.0005),
    FillModel(size=0.05, size_type="amount", fees=0.0),
]


# vectorbt sizes a percent reversal below 1.0 in no single order: the paper broker runs those
# (two fills), compared with the replay in tests/test_replay_parity.py
VBT_CASES = [(m, shorts) for m in MODELS for shorts in (False, True) if not shorts or m.reverses]


@pytest.mark.parametrize("fill", ["close", "next_open"])
@pytest.mark.parametrize(
    ("model", "shorts"), VBT_CASES, ids=[f"{m.size_type}-{m.size}-{'shorts' if s else 'long'}" for m, s in VBT_CASES]
)
@pytest.mark.parametrize(("sl", "tp"), [(None, None), (0.01, 0.02)])
def test_paper_broker_equals_vectorbt(frame, model, shorts, sl, tp, fill):
    model = model.replace(fill=fill)
    rng = np.random.default_rng(hash((model.size_type, shorts, sl)) % 2**32)
    n = len(frame)
    e, x = rng.random(n) < 0.03, rng.random(n) < 0.03
    se, sx = (rng.random(n) < 0.03, rng.random(n) < 0.03) if shorts else (None, None)
    pf = bt.from_signals(frame, Signals(e, x, se, sx), model, stop_loss=sl, take_profit=tp)
    want = bt.trades_from_portfolio(pf, frame, model, stop_loss=sl, take_profit=tp)
    t = frame.index.as_unit("ms").asi8
    ohlc = frame[["open", "high", "low", "close"]].to_numpy()
    fills, trades, broker = simulate(model, t, ohlc, e, x, se, sx, stop_loss=sl, take_profit=tp)
    still_open = broker.open_trade()
    got = trades_frame([*trades, *([still_open] if still_open else [])])
    assert len(want) > 50
    assert_same_trades(want, got)
    # every way a trade can end shows up (stop exits only with stops, reversals only with shorts)
    reasons = set(want["exit_reason"])
    assert "signal" in reasons and ("stop_loss" in reasons) == bool(sl) and ("take_profit" in reasons) == bool(tp)
    assert ("reverse" in reasons) == (shorts and model.reverses)
    assert (want["mae"] >= 0).all() and (want["mfe"] >= 0).all()
    # and the account: orders, final cash and position
    orders = pf.orders.values
    assert len(orders) == len(fills)
    np.testing.assert_allclose(orders["price"], [f.price for f in fills], rtol=1e-12)
    np.testing.assert_allclose(orders["size"], [f.qty for f in fills], rtol=1e-9)
    assert broker.state.cash == pytest.approx(float(pf.cash().iloc[-1]), rel=1e-9, abs=1e-6)
    assert broker.state.position == pytest.approx(float(pf.assets().iloc[-1]), rel=1e-9, abs=1e-12)
    assert broker.equity(ohlc[-1, 3]) == pytest.approx(float(pf.value().iloc[-1]), rel=1e-9)


@pytest.mark.parametrize(
    "strategy",
    [RsiReversion(), EmaCross(fast=8, slow=30), BollingerBreakout(stop_loss=0.03, take_profit=0.06)],
    ids=repr,
)
def test_run_returns_trades_equity_and_stats(frame, strategy):
    res = bt.run(strategy, frame, fees=0.001, slippage=0.0002)
    tr = res.trades
    assert list(tr.columns) == COLUMNS
    assert len(tr) > 5
    assert set(tr["side"]) == {"long"}
    assert (tr["exit_time"] > tr["entry_time"]).all()
    assert str(tr["entry_time"].dt.tz) == "UTC"
    assert res.equity.index.equals(frame.index) and res.equity.iloc[0] == pytest.approx(10_000)
    assert res.drawdown.max() <= 0
    st = res.stats()
    closed = tr[tr["exit_reason"] != "open"]
    assert st["Total Closed Trades"] == len(closed)
    # a position still open at the end is the last row, valued at the last close, not dropped
    assert (res.open_position != 0) == (tr["exit_reason"].iloc[-1] == "open")
    if res.open_position != 0:
        last = tr.iloc[-1]
        assert last["exit_time"] == frame.index[-1] and last["exit_price"] == frame["close"].iloc[-1]
        assert last["size"] == pytest.approx(abs(res.open_position), rel=1e-12)
        assert closed["pnl"].sum() + last["pnl"] == pytest.approx(res.equity.iloc[-1] - 10_000, rel=1e-9)
    # entries happen only on candles where the strategy signalled
    sig_times = set(frame.index[res.signals.entries])
    assert set(tr["entry_time"]) <= sig_times
    # P&L adds up to the change in equity when the last position is closed
    if res.open_position == 0:
        assert tr["pnl"].sum() == pytest.approx(res.equity.iloc[-1] - 10_000, rel=1e-9)
        assert tr["fees"].sum() == pytest.approx(st["Total Fees Paid"], rel=1e-9)
    assert "indicator" not in repr(res) and "trades" in repr(res)


@pytest.mark.parametrize(
    "sizing",
    [{}, {"size": 1000.0, "size_type": "value"}, {"size": 0.05, "size_type": "amount"}, {"fill": "next_open"}],
    ids=["percent", "value", "amount", "percent-next-open"],
)
def test_an_opposite_entry_reverses_in_every_sizing_mode_symmetrically(frame, sizing):
    res = bt.run(EmaCross(fast=8, slow=30, short=True), frame, **sizing)
    tr = res.trades
    longs, shorts = (tr["side"] == "long").sum(), (tr["side"] == "short").sum()
    assert len(tr) > 50 and abs(longs - shorts) <= 1  # a crossover strategy alternates sides
    # always in the market after the first entry: each trade ends where the next one starts
    assert (tr["exit_time"].to_numpy()[:-1] == tr["entry_time"].to_numpy()[1:]).all()
    assert (tr["side"].to_numpy()[:-1] != tr["side"].to_numpy()[1:]).all()


def test_an_open_position_at_the_end_is_a_row_with_unrealised_pnl(frame):
    s = EmaCross(fast=8, slow=30)
    full = bt.run(s, frame).trades
    k = int(full["duration"].idxmax())  # cut the data inside the longest trade
    cut = frame.loc[: full["entry_time"].iloc[k] + pd.Timedelta(hours=3)]
    res = bt.run(s, cut)
    tr = res.trades
    assert len(tr) == k + 1 and list(tr["exit_reason"].iloc[:-1]) == ["signal"] * k
    last = tr.iloc[-1]
    assert last["exit_reason"] == "open" and res.open_position == pytest.approx(last["size"], rel=1e-12)
    assert last["entry_time"] == full["entry_time"].iloc[k] and last["exit_time"] == cut.index[-1]
    assert last["exit_price"] == cut["close"].iloc[-1] and last["duration"] == pd.Timedelta(hours=3)
    unrealised = (last["exit_price"] - last["entry_price"]) * last["size"] - last["fees"]
    assert last["pnl"] == pytest.approx(unrealised, rel=1e-9)
    assert tr["pnl"].sum() == pytest.approx(res.equity.iloc[-1] - 10_000, rel=1e-9)


def test_percent_sizing_below_one_reverses_symmetrically_through_the_paper_broker(frame):
    res = bt.run(EmaCross(fast=8, slow=30, short=True), frame, size=0.5)
    tr = res.trades
    longs, shorts = (tr["side"] == "long").sum(), (tr["side"] == "short").sum()
    assert len(tr) > 50 and abs(longs - shorts) <= 1
    assert (tr["exit_time"].to_numpy()[:-1] == tr["entry_time"].to_numpy()[1:]).all()
    assert set(tr["exit_reason"].iloc[:-1]) == {"reverse"}
    # half the equity each time: the entry's value is about half the equity before it
    eq = res.equity
    first = tr.iloc[0]
    assert first["size"] * first["entry_price"] == pytest.approx(0.5 * 10_000 / 1.001, rel=1e-9)
    # vectorbt's accounting of the broker's orders adds up
    closed = tr[tr["exit_reason"] != "open"]
    st = res.stats()
    assert st["Total Closed Trades"] == len(closed)
    assert tr["pnl"].sum() == pytest.approx(eq.iloc[-1] - 10_000, rel=1e-9)


def test_run_bad_input(frame):
    with pytest.raises(TypeError, match="instance"):
        bt.run(EmaCross, frame)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="close"):
        bt.run(EmaCross(), frame.drop(columns=["close"]))
    with pytest.raises(DataError, match="empty"):
        bt.run(EmaCross(), frame.iloc[:0])
    with pytest.raises(ValueError, match="fees"):
        bt.run(EmaCross(), frame, fees=-1)
    with pytest.raises(ValueError, match="size_type"):
        bt.run(EmaCross(), frame, size_type="lots")


def test_sweep_rows_equal_single_runs_and_chunking_does_not_matter(frame):
    grid = {"fast": [5, 10, 30], "slow": [20, 40], "stop_loss": [0.0, 0.05]}
    table = bt.sweep(EmaCross, frame, grid, progress=False)
    assert table.attrs["skipped"] == 2  # fast=30 >= slow=20
    assert len(table) == 10
    assert {"fast", "slow", "stop_loss", "total_return", "sharpe", "max_drawdown", "trades", "win_rate"} <= set(table)
    small = bt.sweep(EmaCross, frame, grid, progress=False, chunk_size=3)
    pd.testing.assert_frame_equal(table, small)
    for _, row in table.iloc[[0, 5, 9]].iterrows():
        s = EmaCross(fast=int(row.fast), slow=int(row.slow), stop_loss=float(row.stop_loss))
        res = bt.run(s, frame)
        st = res.stats()
        # stats()'s units: percent where it shows percent (issue 15; fractions before)
        assert row.total_return == pytest.approx(st["Total Return [%]"], rel=1e-9, abs=1e-10)
        assert row.max_drawdown == pytest.approx(st["Max Drawdown [%]"], rel=1e-9)
        assert row.sharpe == pytest.approx(st["Sharpe Ratio"], rel=1e-7)
        assert row.trades == st["Total Closed Trades"]
        assert row.win_rate == pytest.approx(st["Win Rate [%]"], rel=1e-9)


def test_sweep_list_of_dicts_shorts_and_errors(frame):
    table = bt.sweep(
        RsiReversion,
        frame,
        [{"period": 7}, {"period": 14, "short": True}],
        size=500.0,
        size_type="value",
        progress=False,
    )
    assert list(table["period"]) == [7, 14] and (table["trades"] > 0).all()
    with pytest.raises(ConfigError, match="nope"):
        bt.sweep(RsiReversion, frame, {"nope": [1]}, progress=False)
    with pytest.raises(ConfigError, match="no valid"):
        bt.sweep(EmaCross, frame, {"fast": [50], "slow": [20]}, progress=False)
    with pytest.raises(ValueError, match="fast"):
        bt.sweep(EmaCross, frame, {"fast": [50], "slow": [20]}, progress=False, skip_invalid=False)


def test_import_kit_does_not_import_vectorbt():
    code = (
        "import sys, kit\n"
        "f = kit.backtest\n"  # the lazy name first, then the module import: both must stay usable
        "import kit.backtest as bt, kit.replay as rp\n"
        "assert callable(kit.backtest) and callable(bt) and bt.sweep is kit.sweep and bt.run\n"
        "assert callable(kit.replay) and rp.replay\n"
        "print('vectorbt' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def _same(a: float, b: float, rel: float) -> bool:
    """Equal within ``rel``, NaN equal to NaN and infinities equal by sign."""
    a, b = float(a), float(b)
    if np.isnan(a) or np.isnan(b) or np.isinf(a) or np.isinf(b):
        return (np.isnan(a) and np.isnan(b)) or a == b
    return a == pytest.approx(b, rel=rel, abs=1e-9)


@pytest.mark.parametrize(
    "model",
    [
        FillModel(maintenance_margin=0.0),  # no margin model: equity goes below zero
        FillModel(),  # the default margin: those sets are liquidated (the paper broker runs them)
        FillModel(size=0.5, borrow_rate=0.0005),  # every short set through the paper broker
    ],
    ids=["no-margin", "liquidated", "borrow-half"],
)
def test_every_sweep_metric_equals_run_for_random_sets_including_ruinous_ones(shared_data_dir, model):
    # Shorts sized at 100 % of cash through the 2021-2024 bull market drive equity below zero
    # without a margin model; vectorbt flips the sign of a return measured from a negative value,
    # and so must the sweep (it used to rank RsiReversion(21, 20, 75, short) at Sharpe +0.56 where
    # run() says -0.55). With one, the sweep liquidates exactly where run() does.
    df = read_candles(shared_data_dir / "BTCUSDT_1h_20170817_20240421.csv.gz").loc["2021-01-01":]
    rng = np.random.default_rng(10)
    sets = [{"period": 21, "lower": 20.0, "upper": 75.0, "short": True}]
    while len(sets) < 14:
        lower = float(rng.integers(5, 45))
        sets.append(
            {
                "period": int(rng.integers(3, 60)),
                "lower": lower,
                "upper": float(rng.integers(int(lower) + 10, 96)),
                "short": bool(rng.integers(0, 2)),
                "stop_loss": float(rng.choice([0.0, 0.0, 0.03, 0.1])),
            }
        )
    table = bt.sweep(RsiReversion, df, sets, progress=False, model=model)
    assert len(table) == len(sets)
    if model.maintenance_margin == 0:
        assert (table["max_drawdown"] > 100).any(), "the grid must include a set whose equity goes below zero"
    else:
        assert (table["max_drawdown"] <= 100).all() and (table["final_value"] >= 0).all()
    liquidations = 0
    for row, params in zip(table.to_dict("records"), sets, strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # equity below zero without a margin model: the point here
            res = bt.run(RsiReversion(**params), df, model=model)
        liquidations += (res.trades["exit_reason"] == "liquidation").sum()
        assert_sweep_row_equals_run(row, res)
    assert (liquidations > 0) == (model.maintenance_margin > 0 and model.borrow_rate == 0)


def assert_sweep_row_equals_run(row: dict, res: bt.BacktestResult) -> None:
    """Every metric of a sweep row equals the same figure of ``run()``, in ``stats()``'s units."""
    st = res.stats()
    pf = res.portfolio
    flat = res.equity.nunique() == 1
    # vectorbt's Sharpe and Sortino of a flat equity (0/0) are +inf; the sweep says NaN
    # (undefined), so that a set that never trades does not sort first
    sharpe = np.nan if flat and np.isinf(st["Sharpe Ratio"]) else st["Sharpe Ratio"]
    sortino = np.nan if flat and np.isinf(st["Sortino Ratio"]) else st["Sortino Ratio"]
    want = {
        "total_return": st["Total Return [%]"],
        "cagr": pf.annualized_return() * 100,
        "sharpe": sharpe,
        "sortino": sortino,
        "calmar": st["Calmar Ratio"],
        # from the peak value, as stats(); where there was no drawdown at all stats() shows NaN
        # and the sweep 0, as the portfolio's max_drawdown() accessor
        "max_drawdown": st["Max Drawdown [%]"] if np.isfinite(st["Max Drawdown [%]"]) else -pf.max_drawdown() * 100,
        "profit_factor": st["Profit Factor"],
        "expectancy": st["Expectancy"],
        "win_rate": st["Win Rate [%]"],
        "exposure": pf.position_coverage() * 100,
        "trades": st["Total Closed Trades"],
        "final_value": st["End Value"],
        "fees": st["Total Fees Paid"],
    }
    assert set(want) == set(bt._sweep.METRICS)
    wrong = {k: (row[k], v) for k, v in want.items() if not _same(row[k], v, rel=1e-7)}
    assert not wrong, (res.strategy, wrong)


def test_sweep_metrics_of_sets_that_never_trade_only_win_or_only_lose_equal_run(frame):
    # over 400 candles: no trade at all (flat equity: NaN ratios, 0 drawdown, 0 exposure), only
    # winning trades (profit factor +inf), one losing trade (profit factor 0)
    sets = [
        {"period": 14, "lower": 20.0, "upper": 55.0},
        {"period": 14, "lower": 30.0, "upper": 70.0},
        {"period": 14, "lower": 25.0, "upper": 60.0},
    ]
    short = frame.iloc[:400]
    table = bt.sweep(RsiReversion, short, sets, progress=False)
    assert table.loc[0, "trades"] == 0 and table.loc[0, "exposure"] == 0 and table.loc[0, "max_drawdown"] == 0
    assert np.isnan(table.loc[0, "sharpe"]) and np.isnan(table.loc[0, "profit_factor"])
    assert table.loc[1, "win_rate"] == 100 and table.loc[1, "profit_factor"] == np.inf
    assert table.loc[2, "win_rate"] == 0 and table.loc[2, "profit_factor"] == 0
    for row, params in zip(table.to_dict("records"), sets, strict=True):
        assert_sweep_row_equals_run(row, bt.run(RsiReversion(**params), short))


def test_a_sweep_says_why_parameter_sets_were_rejected_with_a_count_per_reason(frame):
    grid = {"fast": [30, 40, 600], "slow": [10, 20]}  # fast >= slow four times, fast > 500 twice
    with pytest.raises(ConfigError) as err:
        bt.sweep(EmaCross, frame, grid, progress=False)
    msg = str(err.value)
    assert "no valid parameter set for EmaCross (6 rejected)" in msg
    assert "4 x parameters fast=30 and slow=10: fast must be shorter than slow" in msg
    assert "2 x parameter EmaCross.fast=600 is out of range: must be <= 500" in msg
    table = bt.sweep(EmaCross, frame.iloc[:500], {"fast": [5, 30, 600], "slow": [20]}, progress=False)
    assert list(table["fast"]) == [5] and table.attrs["skipped"] == 2
    assert table.attrs["rejected"] == {
        "parameters fast=30 and slow=20: fast must be shorter than slow": 1,
        "parameter EmaCross.fast=600 is out of range: must be <= 500": 1,
    }


def test_backtests_and_sweeps_refuse_a_zero_close_naming_the_row(frame):
    bad = frame.iloc[:600].copy()
    bad.iloc[321, bad.columns.get_loc("close")] = 0.0
    where = f"row 321 ({bad.index[321]})"
    with pytest.raises(DataError, match=r"close=0\.0: prices must be > 0") as err:
        bt.run(EmaCross(), bad)
    assert where in str(err.value)
    with pytest.raises(DataError, match=r"close=0\.0: prices must be > 0") as err:
        bt.sweep(EmaCross, bad, {"fast": [5, 8]}, progress=False)
    assert where in str(err.value)


@pytest.mark.parametrize("fill", ["close", "next_open"])
@pytest.mark.parametrize("shorts", [False, True])
def test_stops_per_signal_and_trailing_stops_equal_vectorbt(frame, fill, shorts):
    """Stop-loss, take-profit and trailing stops as price distances per signal (e.g. 2 x ATR), with the
    strategy's fractions where a row gives none: the paper broker fills as vectorbt does."""
    model = FillModel(slippage=0.0005, fill=fill)
    rng = np.random.default_rng(7 if shorts else 8)
    n = len(frame)
    close = frame["close"].to_numpy()
    e, x = rng.random(n) < 0.03, rng.random(n) < 0.01
    se, sx = (rng.random(n) < 0.03, rng.random(n) < 0.01) if shorts else (None, None)

    def distances(p_nan: float) -> np.ndarray:
        d = close * rng.uniform(0.003, 0.03, n)
        d[rng.random(n) < p_nan] = np.nan  # the strategy's own stops on these rows
        return d

    sl_d, tp_d, tr_d = distances(0.3), distances(0.3), distances(0.6)
    sig = Signals(e, x, se, sx, stop_loss=sl_d, take_profit=tp_d, trailing_stop=tr_d)
    want = _broker_equals_vectorbt(frame, model, sig, stop_loss=0.02, take_profit=0.05)
    assert len(want) > 100
    assert {"stop_loss", "take_profit", "trailing_stop", "signal"} <= set(want["exit_reason"])


def _broker_equals_vectorbt(
    frame: pd.DataFrame,
    model: FillModel,
    sig: Signals,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
) -> pd.DataFrame:
    """Run ``sig`` through vectorbt and through the paper broker; assert the trades and orders are equal."""
    pf = bt.from_signals(frame, sig, model, stop_loss=stop_loss, take_profit=take_profit, trailing_stop=trailing_stop)
    stops = bt.stop_arrays(frame, sig, model, stop_loss, take_profit, trailing_stop)
    want = bt.trades_from_portfolio(pf, frame, model, stop_loss=stop_loss, take_profit=take_profit, stops=stops)
    t = frame.index.as_unit("ms").asi8
    ohlc = frame[["open", "high", "low", "close"]].to_numpy()
    fills, trades, broker = simulate(
        model, t, ohlc, *sig[:4], stop_loss=stop_loss, take_profit=take_profit, trailing_stop=trailing_stop,
        stop_columns=sig[4:7], size_column=sig.size, level_columns=(sig.stop_loss_price, sig.take_profit_price),
    )  # fmt: skip
    still_open = broker.open_trade()
    assert_same_trades(want, trades_frame([*trades, *([still_open] if still_open else [])]))
    orders = pf.orders.values
    assert len(orders) == len(fills)
    np.testing.assert_allclose(orders["price"], [f.price for f in fills], rtol=1e-12)
    np.testing.assert_allclose(orders["size"], [f.qty for f in fills], rtol=1e-9)
    return want


@pytest.mark.parametrize("fill", ["close", "next_open"])
@pytest.mark.parametrize("shorts", [False, True])
def test_stop_levels_per_signal_and_a_trailing_fraction_on_the_strategy_equal_vectorbt(frame, fill, shorts):
    """Stops as price levels (some already passed at the fill), a take-profit level, and the
    strategy's trailing fraction where a row gives no stop-loss: the paper broker fills as vectorbt."""
    model = FillModel(slippage=0.0005, fill=fill)
    rng = np.random.default_rng(17 if shorts else 18)
    n = len(frame)
    close = frame["close"].to_numpy()
    e, x = rng.random(n) < 0.03, rng.random(n) < 0.01
    se, sx = (rng.random(n) < 0.03, rng.random(n) < 0.01) if shorts else (None, None)
    side = np.where(se if se is not None else np.zeros(n, bool), -1.0, 1.0)  # the side an entry row opens
    sl_px = close * (1 - side * rng.uniform(-0.002, 0.03, n))  # a few on the wrong side: stop at the entry
    tp_px = close * (1 + side * rng.uniform(0.005, 0.04, n))
    sl_px[rng.random(n) < 0.4] = np.nan  # the strategy's trailing fraction on these rows
    tp_px[rng.random(n) < 0.3] = np.nan
    sig = Signals(e, x, se, sx, stop_loss_price=sl_px, take_profit_price=tp_px)
    want = _broker_equals_vectorbt(frame, model, sig, take_profit=0.05, trailing_stop=0.015)
    assert len(want) > 100
    assert {"stop_loss", "take_profit", "trailing_stop"} <= set(want["exit_reason"])


@pytest.mark.parametrize(
    ("cls", "grid", "model"),
    [
        ("AtrTrend", {"fast": [5, 8], "stop_atr": [1.5, 3.0], "trail": [True, False]}, FillModel()),
        ("AtrTrend", {"fast": [8], "target_atr": [0.0, 4.0]}, FillModel(fill="next_open", size=0.5)),
        ("VolTrend", {"risk": [30.0, 80.0], "trail": [False, True]}, FillModel(size=0.01, size_type="amount")),
        ("EmaCross", {"fast": [5, 8], "short": [True], "trailing_stop": [0.0, 0.02]}, FillModel(slippage=0.0005)),
    ],
    ids=["atr-stops", "atr-next-open-half", "vol-sized", "trailing-fraction"],
)
def test_sweep_rows_with_stops_sizes_and_trailing_per_set_equal_run(frame, cls, grid, model):
    import kit.strategies as ks

    klass = getattr(ks, cls)
    table = bt.sweep(klass, frame, grid, progress=False, model=model, chunk_size=3)
    assert len(table) == len(bt._sweep.param_sets(klass, grid))
    for row in table.to_dict("records"):
        params = {k: row[k] for k in grid}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = bt.run(klass(**params), frame, model=model)
        assert_sweep_row_equals_run(row, res)
    assert table["trades"].min() > 0 and table["total_return"].nunique() == len(table)


def test_a_short_rsi_reversion_through_the_2021_bull_market_is_liquidated_not_driven_below_zero(shared_data_dir):
    """The issue's example: shorts at 100 % of cash from 2021 drove equity to -637 (drawdown 106 %)."""
    df = read_candles(shared_data_dir / "BTCUSDT_1h_20170817_20240421.csv.gz").loc["2021-01-01":"2024-12-31"]
    s = RsiReversion(period=21, lower=20, upper=75, short=True)
    with pytest.warns(UserWarning, match="equity went below zero with maintenance_margin=0"):
        ruin = bt.run(s, df, model=FillModel(maintenance_margin=0.0))
    assert ruin.equity.min() == pytest.approx(-637.32, abs=0.01)
    res = bt.run(s, df)  # the default margin model
    tr = res.trades
    [liq] = tr[tr["exit_reason"] == "liquidation"].itertuples()
    assert liq.side == "short" and liq.exit_price == pytest.approx(liq.entry_price * 2 / 1.1, rel=2e-3)
    assert res.equity.min() > 0 and res.drawdown.min() > -1
    # before the liquidation both runs are the same trades; vectorbt's accounting of the broker's fills adds up
    before = tr[tr["exit_time"] < liq.exit_time]
    assert_same_trades(before, ruin.trades.iloc[: len(before)])
    assert res.stats()["Total Closed Trades"] == (tr["exit_reason"] != "open").sum()
    assert tr["pnl"].sum() == pytest.approx(res.equity.iloc[-1] - 10_000, rel=1e-9)


@pytest.mark.parametrize("fill", ["close", "next_open"])
@pytest.mark.parametrize(("size_type", "scale"), [("value", 1_000.0), ("amount", 0.05)], ids=["value", "amount"])
def test_sizes_per_signal_equal_vectorbt_in_value_and_amount_sizing(frame, fill, size_type, scale):
    """An entry's own size (NaN: the model's), long/short reversals and stops included."""
    model = FillModel(size=scale, size_type=size_type, slippage=0.0005, fill=fill)
    rng = np.random.default_rng(11)
    n = len(frame)
    e, x, se, sx = (rng.random(n) < p for p in (0.03, 0.01, 0.03, 0.01))
    size = scale * rng.uniform(0.2, 3.0, n)
    size[rng.random(n) < 0.3] = np.nan
    sl_d = frame["close"].to_numpy() * 0.01
    sig = Signals(e, x, se, sx, stop_loss=sl_d, size=size)
    want = _broker_equals_vectorbt(frame, model, sig)
    assert len(want) > 100 and {"reverse", "stop_loss"} <= set(want["exit_reason"])
    assert want["size"].nunique() > 50  # the sizes did vary per signal


def test_percent_sizing_ignores_sizes_per_signal_and_says_so(frame):
    from kit.strategies import VolTrend

    with pytest.warns(UserWarning, match="ignores"):
        res = bt.run(VolTrend(), frame)
    assert len(res.trades) > 10
