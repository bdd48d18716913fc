"""Custom indicators: one public registration (class, batch function or both), the missing form derived,
computed once per stream by the engine, identical in backtest and replay; plus the registry's own rules."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib
from numpy.lib.stride_tricks import sliding_window_view

import kit.backtest as bt
import kit.indicators as ki
from kit.engine import IndicatorEngine, StreamState
from kit.errors import KitError
from kit.exchange import ExchangeSimulator
from kit.feed import Feed
from kit.indicators import Indicator, IndicatorError, spec
from kit.market.files import read_candles, to_ms
from kit.replay import replay
from kit.strategy import Columns, Param, Signals, Strategy, crossed_above, crossed_below
from tests.fixtures.feed import sample_slice
from tests.test_engine import MIN, assert_rows_match_batch, candles_of, frame_of, take

# --------------------------------------------------------------------------- a user's indicators, registered
# at import, as a strategy module would (so the daemon, which imports the strategy, registers them too)


@ki.register("test_mid_ema")
class MidEma(Indicator):
    """EMA of the bar's midpoint (high + low) / 2: an incremental class only, the batch form is derived."""

    __slots__ = ("_ema", "params", "warmup")
    inputs = ("high", "low")
    outputs = ("mid_ema",)

    def __init__(self, period: int = 10) -> None:
        self._ema = ki.EMA(period)
        self.params = (self._ema.period,)
        self.warmup = self._ema.warmup

    def step(self, high: float, low: float) -> float:
        return self._ema.step((high + low) / 2.0)


@ki.register("test_hl_mean", window="period", outputs=("upper", "lower"))
def hl_mean(high: np.ndarray, low: np.ndarray, period: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Rolling means of high and of low: a batch function only, the incremental form is derived."""
    up = np.full(high.shape[0], np.nan)
    lo = np.full(high.shape[0], np.nan)
    if high.shape[0] >= period:
        up[period - 1 :] = sliding_window_view(high, period).mean(axis=1)
        lo[period - 1 :] = sliding_window_view(low, period).mean(axis=1)
    return up, lo


def _peeks_ahead(close: np.ndarray, period: int = 3) -> np.ndarray:
    """A batch function that reads the next bar (a look-ahead): its live form cannot agree."""
    out = np.full(close.shape[0], np.nan)
    out[period - 1 : -1] = close[period:]
    return out


ki.register("test_peeks_ahead", window="period")(_peeks_ahead)


class HullZ(Strategy):
    """Long when close crosses above its Hull MA while not stretched (z-score), out on a cross below
    or above the custom high band: every signal depends on registered indicators."""

    period: int = Param(20, ge=4, le=200)
    z: int = Param(60, ge=5, le=500)
    lookback = 2

    def indicators(self) -> dict:
        return {
            "hma": spec("hma", self.period),
            "z": spec("zscore", self.z),
            "mid": spec("test_mid_ema", 10),
            "band": (spec("test_hl_mean", 30), "upper"),
        }

    def signals(self, d: Columns) -> Signals:
        entries = crossed_above(d.close, d.hma) & (d.z < 1.5) & (d.close > d.mid)
        exits = crossed_below(d.close, d.hma) | crossed_above(d.close, d.band + 3 * (d.band - d.mid))
        return Signals(entries, exits)


@pytest.fixture(scope="module")
def eth_1h(shared_data_dir: Path) -> pd.DataFrame:
    return read_candles(shared_data_dir / "ETHUSDT_1h_20230101_20240110.csv.gz")


# --------------------------------------------------------------------------- the shipped examples


def test_spec_names_registered_examples_like_builtins():
    s = spec("hma", 20)
    assert (s.key, s.inputs, s.outputs, s.warmup) == ("hma(20)", ("close",), ("hma",), 22)
    assert ki.parse_spec("hma(20)") == s and ki.parse_spec("zscore(50)") == spec("zscore", period=50)
    assert spec("zscore", 30, source="open").key == "zscore(open,30)"
    assert {"hma", "zscore"} <= set(ki.names()) and not {"hma", "zscore"} & set(ki.NAMES)
    assert ki.registration("hma").derived == "batch" and ki.registration("zscore").derived == "incremental"
    assert isinstance(ki.HMA(9), Indicator) and isinstance(ki.ZScore(9), Indicator)


def test_hull_ma_equals_its_formula_over_talib_wma(eth_1h):
    close = eth_1h["close"].to_numpy()
    for n in (4, 9, 20, 55):
        want = talib.WMA(2 * talib.WMA(close, n // 2) - talib.WMA(close, n), math.isqrt(n))
        got = ki.hma(close, n)
        assert np.array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-9)
        assert int(np.argmax(~np.isnan(got))) == spec("hma", n).warmup
    series = ki.hma(eth_1h["close"], 20)
    assert isinstance(series, pd.Series) and series.index.equals(eth_1h.index)


def test_zscore_equals_pandas_rolling(eth_1h):
    close = eth_1h["close"]
    roll = close.rolling(50)
    want = ((close - roll.mean()) / roll.std(ddof=0)).to_numpy()
    got = ki.zscore(close.to_numpy(), 50)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[50:], want[50:], rtol=1e-7)
    flat = ki.zscore(np.full(10, 3.0), 4)
    assert np.isnan(flat[:3]).all() and (flat[3:] == 0.0).all()


def test_check_proves_both_forms_agree_on_real_data(eth_1h):
    for name in (*ki.NAMES, "hma", "zscore", "test_mid_ema", "test_hl_mean"):  # built-ins, examples, custom
        res = ki.check(name, data=eth_1h.iloc[:3000])
        assert res.bars == 3000 and res.values > 0 and res.max_rel_diff <= 1e-9, res
    res = ki.check("hma", 20)  # default data: the shipped ETHUSDT 1h sample
    assert res.bars > 8000 and "agree" in str(res)


def test_check_names_the_first_bar_where_forms_differ(eth_1h):
    with pytest.raises(ki.IndicatorError, match=r"test_peeks_ahead\(3\): batch and incremental differ at bar 2 "):
        ki.check("test_peeks_ahead", 3, data=eth_1h.iloc[:200])

    class Wrong(Indicator):  # says its first value is at bar 0, gives it at bar 4
        __slots__ = ("_sma", "params", "warmup")
        outputs = ("x",)

        def __init__(self) -> None:
            self._sma = ki.SMA(5)
            self.params = ()
            self.warmup = 0

        def step(self, x: float) -> float:
            return self._sma.step(x)

    ki.register("test_wrong_warmup", replace=True)(Wrong)
    with pytest.raises(ki.IndicatorError, match="warmup is 0 but the first value is at bar 4"):
        ki.check("test_wrong_warmup", data=eth_1h.iloc[:100])


# --------------------------------------------------------------------------- the derived forms


def test_derived_batch_runs_the_class_with_kit_conventions(eth_1h):
    frame = eth_1h.iloc[:500]
    h, lo = frame["high"].to_numpy().copy(), frame["low"].to_numpy().copy()
    want = ki.ema((h + lo) / 2, 10)
    got = ki.registration("test_mid_ema").batch(h, lo, 10)
    np.testing.assert_array_equal(got, want)
    h[[30, 31, 200]] = np.nan  # a NaN bar is skipped in both forms, as for the built-ins
    got = ki.registration("test_mid_ema").batch(h, lo, period=10)
    keep = ~np.isnan(h)
    assert np.isnan(got[~keep]).all()
    np.testing.assert_array_equal(got[keep], ki.ema(((h + lo) / 2)[keep], 10))
    assert isinstance(spec("test_mid_ema", 10).batch(frame)["mid_ema"], np.ndarray)


def test_derived_incremental_keeps_a_ring_buffer_and_matches_batch(eth_1h):
    frame = eth_1h.iloc[:400]
    h, lo = frame["high"].to_numpy(), frame["low"].to_numpy()
    cls = ki.registration("test_hl_mean").incremental
    ind = cls(7)
    assert (ind.params, ind.warmup, cls.inputs, cls.outputs) == ((7,), 6, ("high", "low"), ("upper", "lower"))
    batch = ki.registration("test_hl_mean").batch(h, lo, 7)
    assert batch._fields == ("upper", "lower")
    rows = []
    for i, bar in enumerate(zip(h.tolist(), lo.tolist(), strict=True)):
        if i == 200:
            snap = ind.copy()
            assert repr(ind.peek(*bar)) == repr(snap.update(*bar))
        rows.append(ind.update(*bar))
    assert math.isnan(ind.update(math.nan, 1.0).upper)  # NaN bar skipped, state unchanged
    for j, out in enumerate(batch):
        got = np.array([r[j] for r in rows])
        assert np.array_equal(np.isnan(got), np.isnan(out))
        np.testing.assert_allclose(got[6:], out[6:], rtol=1e-12)
    ind.reset()
    assert math.isnan(ind.update(1.0, 1.0).upper) and ind.params == (7,)


def test_nan_guard_is_written_once_in_the_base_class():
    class Plain(Indicator):
        __slots__ = ("n", "params", "warmup")
        inputs = ("high", "low", "close", "volume")
        outputs = ("n",)

        def __init__(self) -> None:
            self.params, self.warmup, self.n = (), 0, 0

        def step(self, *bar: float) -> float:
            self.n += 1
            return float(self.n)

    p = Plain()
    assert p.update(1.0, 2.0, 3.0, 4.0) == 1.0
    assert math.isnan(p.update(1.0, 2.0, math.nan, 4.0)) and p.n == 1  # skipped: step never ran
    assert p.step(1.0, 2.0, math.nan, 4.0) == 2.0  # step is the unguarded bar
    got = ki.MACD().update(math.nan)  # multi-output: the result type filled with NaN
    assert got is ki.MACD.nan and isinstance(got, ki.MACDResult) and all(math.isnan(v) for v in got)


def test_engine_skips_a_nan_candle_once_for_every_spec_reading_it():
    candles = candles_of(sample_slice("BTCUSDT", "2025-06-01 00:00", "2025-06-01 05:00"))
    holes = {40, 41, 150}
    dirty = [c._replace(close=math.nan) if i in holes else c for i, c in enumerate(candles)]
    specs = [spec("rsi", 14), spec("hma", 9), spec("macd"), spec("atr", 14), spec("test_mid_ema", 5)]
    st = StreamState("BTCUSDT", "1m", keep=1000)
    st.add_specs(specs)
    rows = [st.on_closed(c) for c in dirty]
    frame = frame_of(dirty)
    for sp in specs:
        batch = sp.batch(frame)
        for i, row in enumerate(rows):
            got = row.values[sp]
            got = tuple(got) if isinstance(got, tuple) else (got,)
            for out, g in zip(sp.outputs, got, strict=True):
                want = batch[out][i]
                assert (math.isnan(g) and math.isnan(want)) or g == pytest.approx(want, rel=1e-12), (sp.key, i)
    assert math.isnan(rows[40].values[spec("rsi", 14)]) and not math.isnan(rows[40].values[spec("test_mid_ema", 5)])


# --------------------------------------------------------------------------- registration fails loudly


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ki.register("hma")(ki.HMA), "'hma' is already registered; pass replace=True"),
        (lambda: ki.register("rsi", replace=True)(ki.RSI), "'rsi' is a built-in indicator"),
        (lambda: ki.register("Bad-Name")(ki.HMA), "name must be lower-case"),
        (lambda: ki.register("test_not_indicator")(type("X", (), {})), "not a kit.indicators.Indicator subclass"),
        (lambda: ki.register("test_no_window")(hl_mean), "needs window="),
        (lambda: ki.register("test_bad_window", window="length")(hl_mean), "'length' is not a parameter"),
        (lambda: ki.register("test_no_inputs", window=3)(lambda x, n=3: x), "first parameters must be its input"),
        (lambda: ki.register("test_varargs", window=3)(lambda close, *a: close), "parameters after the inputs"),
        (lambda: ki.register("test_class_window", window=3)(ki.HMA), "window=, warmup=, inputs= and outputs= are"),
        (lambda: ki.register("test_class_outputs", outputs=("a",))(ki.HMA), "HMA declares its own"),
        (lambda: ki.register("test_core", group="core")(ki.HMA), "group must be 'custom' or 'example'"),
        (lambda: ki.register("test_nothing")(42), "expected an Indicator subclass or a batch function"),
        (lambda: spec("hull", 20), "unknown indicator 'hull'.*register it with kit.indicators.register"),
        (lambda: spec("test_hl_mean", 5, bogus=1), "params: test_hl_mean"),
        (lambda: spec("zscore", 1), "period must be an integer >= 2"),
    ],
)
def test_registration_mistakes_fail_loudly_with_one_line(call, message):
    with pytest.raises(IndicatorError, match=message) as info:
        call()
    assert isinstance(info.value, KitError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)
    assert "test_no_window" not in ki.names() and "test_not_indicator" not in ki.names()


def test_a_custom_indicator_can_be_replaced_on_purpose():
    @ki.register("test_replaceable", window=2)
    def first(close: np.ndarray, n: int = 2) -> np.ndarray:
        return close * 1.0

    ki.register("test_replaceable", window=2, replace=True)(lambda close, n=2: close * 2.0)
    assert ki.registration("test_replaceable").batch(np.array([1.0, 2.0]), 2).tolist() == [2.0, 4.0]


def test_each_builtin_lives_in_one_family_module():
    """Class, batch function and kernel of an indicator are in one module: adding one touches one place."""
    src = Path(ki.__file__).parent
    for name in ki.NAMES:
        reg = ki.registration(name)
        assert reg.incremental.__module__ == reg.batch.__module__, name
        assert reg.batch.__module__.startswith("kit.indicators._"), name
    for path in src.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, f"{path.name} is over 500 lines"
        assert "!= high or" not in path.read_text() or path.name == "_base.py", path.name  # no hand-written guards


# --------------------------------------------------------------------------- once per stream, live too


async def test_registered_indicators_are_computed_once_per_stream_by_the_engine(btc_eth_1m):
    start = "2025-06-01 02:00"
    frame = btc_eth_1m[("BTCUSDT", "1m")]
    mine = [spec("hma", 20), spec("zscore", 30), spec("test_mid_ema", 10), spec("test_hl_mean", 15)]
    async with (
        ExchangeSimulator(data=btc_eth_1m, speed=3000.0, start=start) as sim,
        Feed(sim.ws_url, sim.rest_url, backoff_initial=0.05, backoff_max=0.5) as feed,
    ):
        engine = IndicatorEngine(feed, keep=500)
        async with (
            engine.subscribe("BTCUSDT", "1m", specs=mine, history=60) as a,
            engine.subscribe("BTCUSDT", "1m", specs=["hma(20)", "zscore(30)", "rsi(14)"], history=30) as b,
        ):
            ra, rb = await asyncio.wait_for(asyncio.gather(take(a, 20), take(b, 20)), 60)
            state = engine.state("BTCUSDT", "1m")
            assert engine.stats()["unique_specs"] == 5  # hma and zscore shared by both subscribers
            assert state.updates == state.candles * 5  # one update per unique spec per candle
            by_open = {r.candle.open_time: r for r in rb}
            shared = [r for r in ra if r.candle.open_time in by_open]
            assert shared and all(by_open[r.candle.open_time] is r for r in shared)  # one row for both
        seam = [*a.history, *ra]
        opens = [r.candle.open_time for r in seam]
        assert opens == list(range(opens[0], opens[0] + MIN * len(opens), MIN))
        window = frame[to_ms(frame.index) <= opens[-1]]
        assert_rows_match_batch(seam, mine, window)
        assert not math.isnan(ra[-1].values[spec("zscore", 30)])


@pytest.mark.slow
def test_strategy_on_registered_indicators_trades_the_same_in_backtest_and_replay():
    frame = sample_slice("BTCUSDT", "2025-06-02 00:00", "2025-06-04 00:00")
    strategy = HullZ()
    want = bt.run(strategy, frame).trades
    live = replay([strategy], frame, symbol="BTCUSDT", interval="1m", timeout=300)[0]
    got = live.trades
    assert len(want) > 5, "too few trades for the comparison to mean anything"
    assert len(got) == len(want)
    for col in ("entry_time", "exit_time", "side"):
        assert (got[col].to_numpy() == want[col].to_numpy()).all(), col
    for col in ("entry_price", "exit_price", "size"):
        np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-9, atol=0)
    np.testing.assert_allclose(got["pnl"].to_numpy(), want["pnl"].to_numpy(), rtol=0, atol=1e-6)
