"""kit.indicators: batch == TA-Lib, incremental == batch, on random, pathological and real data."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kit.indicators as ki
from kit.market.files import read_candles

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- data


class Bars:
    """OHLCV + open times as float64 arrays (what a candle frame holds)."""

    def __init__(self, o, h, low, c, v, t) -> None:
        self.open, self.high, self.low, self.close, self.volume = o, h, low, c, v
        self.open_time = t

    def __getitem__(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def __len__(self) -> int:
        return len(self.close)


def make_bars(kind: str, seed: int, n: int, magnitude: float = 100.0) -> Bars:
    rng = np.random.default_rng(seed)
    t = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 3_600_000
    if kind == "constant":
        c = np.full(n, magnitude)
        return Bars(c.copy(), c.copy(), c.copy(), c, np.full(n, 5.0), t)
    c = magnitude * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    if kind == "ticks":  # prices on a coarse grid: many ties and flat stretches
        c = np.round(c / (magnitude * 0.01)) * (magnitude * 0.01)
    o = np.concatenate([[c[0]], c[:-1]])
    h = np.maximum(o, c) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(o, c) * (1 - rng.uniform(0, 0.01, n))
    v = rng.uniform(0, 100, n)
    if kind == "zero_volume":
        v[:] = 0.0
    elif kind == "sparse_volume":
        v[rng.uniform(size=n) < 0.7] = 0.0
    return Bars(o, h, low, c, v, t)


KINDS = st.sampled_from(["walk", "constant", "ticks", "zero_volume", "sparse_volume"])
MAGNITUDES = st.sampled_from([1e-8, 1e-3, 1.0, 100.0, 3e4, 1e9])


def p_int(lo: int, hi: int) -> st.SearchStrategy:
    return st.integers(lo, hi).map(lambda p: (p,))


# name -> (strategy of params, TA-Lib call or None)
TABLE = {
    "sma": (p_int(2, 40), lambda d, p: talib.SMA(d.close, *p)),
    "ema": (p_int(2, 40), lambda d, p: talib.EMA(d.close, *p)),
    "wma": (p_int(2, 40), lambda d, p: talib.WMA(d.close, *p)),
    "dema": (p_int(2, 30), lambda d, p: talib.DEMA(d.close, *p)),
    "tema": (p_int(2, 20), lambda d, p: talib.TEMA(d.close, *p)),
    "rsi": (p_int(2, 40), lambda d, p: talib.RSI(d.close, *p)),
    "roc": (p_int(1, 30), lambda d, p: talib.ROC(d.close, *p)),
    "macd": (
        st.tuples(st.integers(2, 15), st.integers(15, 40), st.integers(1, 12)),
        lambda d, p: talib.MACD(d.close, *p),
    ),
    "bbands": (
        st.tuples(st.integers(2, 40), st.floats(0.5, 3.0), st.floats(0.5, 3.0)),
        lambda d, p: talib.BBANDS(d.close, p[0], p[1], p[2], 0),
    ),
    "atr": (p_int(1, 30), lambda d, p: talib.ATR(d.high, d.low, d.close, *p)),
    "natr": (p_int(2, 30), lambda d, p: talib.NATR(d.high, d.low, d.close, *p)),
    "willr": (p_int(2, 30), lambda d, p: talib.WILLR(d.high, d.low, d.close, *p)),
    "cci": (p_int(2, 30), lambda d, p: talib.CCI(d.high, d.low, d.close, *p)),
    "adx": (p_int(2, 25), lambda d, p: talib.ADX(d.high, d.low, d.close, *p)),
    "plus_di": (p_int(2, 25), lambda d, p: talib.PLUS_DI(d.high, d.low, d.close, *p)),
    "minus_di": (p_int(2, 25), lambda d, p: talib.MINUS_DI(d.high, d.low, d.close, *p)),
    "stoch": (
        st.tuples(st.integers(1, 20), st.integers(1, 6), st.integers(1, 6)),
        lambda d, p: talib.STOCH(d.high, d.low, d.close, p[0], p[1], 0, p[2], 0),
    ),
    "stochrsi": (
        st.tuples(st.integers(2, 20), st.integers(1, 15), st.integers(1, 6)),
        lambda d, p: talib.STOCHRSI(d.close, p[0], p[1], p[2], 0),
    ),
    "mfi": (p_int(2, 30), lambda d, p: talib.MFI(d.high, d.low, d.close, d.volume, *p)),
    "obv": (st.just(()), lambda d, p: talib.OBV(d.close, d.volume)),
    "sar": (
        st.tuples(st.floats(0.005, 0.1), st.floats(0.1, 0.5)),
        lambda d, p: talib.SAR(d.high, d.low, *p),
    ),
    "vwap": (st.just(()), None),
    "donchian": (p_int(1, 30), None),
    "keltner": (st.tuples(st.integers(2, 30), st.floats(0.5, 3.0), st.integers(1, 20)), None),
    "supertrend": (st.tuples(st.integers(1, 20), st.floats(0.5, 4.0)), None),
}
TALIB_NAMES = [n for n, (_, f) in TABLE.items() if f is not None]


def test_table_covers_every_indicator():
    assert set(TABLE) == set(ki.NAMES)
    assert len(ki.NAMES) == 25


#: indicators whose values are in the input's price units; the others are oscillators/percentages (~100)
PRICE_UNITS = {"sma", "ema", "wma", "dema", "tema", "macd", "bbands", "atr", "sar", "vwap", "donchian", "keltner"}
PRICE_UNITS |= {"supertrend"}


def floor_for(name: str, bars: Bars) -> float:
    """Absolute tolerance scale: the price level for price-unit indicators, 100 for oscillators.

    A value that is a difference of nearly equal numbers (MACD's hist near 0, a flat market's
    CCI) is only defined to rounding of its operands, so ``rtol`` alone cannot judge it.
    """
    if name == "obv":
        return float(np.sum(np.abs(bars.volume))) or 1.0
    if name in PRICE_UNITS:
        return float(np.max(np.abs(bars.close))) if len(bars) else 1.0
    return 100.0


def assert_close(actual, expected, what: str = "", rtol: float = 1e-9, floor: float = 0.0) -> None:
    """Same NaN positions; values within rtol relative, with an absolute floor of rtol * the scale
    (the larger of the series' own magnitude and ``floor``)."""
    a = np.asarray(actual, dtype=float)
    b = np.asarray(expected, dtype=float)
    assert a.shape == b.shape, what
    na, nb = np.isnan(a), np.isnan(b)
    assert np.array_equal(na, nb), f"{what}: NaN positions differ (first defined {np.argmin(na)} vs {np.argmin(nb)})"
    if (~nb).any():
        scale = max(float(np.max(np.abs(b[~nb]))), floor, 1e-300)
        np.testing.assert_allclose(a[~na], b[~nb], rtol=rtol, atol=rtol * scale, err_msg=what)


def ill_conditioned(name: str, bars: Bars, params: tuple) -> np.ndarray | None:
    """Bars where an indicator of a *computed* series divides by that series' rounding noise.

    STOCHRSI's %K is (rsi - min)/(max - min) over RSI values: where RSI is flat to 1e-6 (on its
    0-100 scale) the ratio only measures each library's last-ulp rounding of RSI, so neither
    value is meaningful and the bar is not compared (nor %D over it).
    """
    if name != "stochrsi" or len(bars) <= params[0]:
        return None
    period, fastk, fastd = params
    r = pd.Series(talib.RSI(bars.close, period))
    rng = (r.rolling(fastk).max() - r.rolling(fastk).min()).to_numpy()
    bad_k = np.nan_to_num(rng, nan=1.0) < 1e-6
    bad = pd.Series(bad_k.astype(float)).rolling(fastd, min_periods=1).max().to_numpy() > 0
    return bad


def compare_outputs(name: str, s, ours: dict, theirs: list, bars: Bars, what: str) -> None:
    bad = ill_conditioned(name, bars, s.params)
    for out, ref in zip(s.outputs, theirs, strict=True):
        a = np.array(ours[out], dtype=float)
        b = np.array(ref, dtype=float)
        if bad is not None:
            a[bad & ~np.isnan(a)] = 0.0
            b[bad & ~np.isnan(b)] = 0.0
        assert_close(a, b, f"{s.key}.{out} {what}", floor=floor_for(name, bars))


def outputs_of(result) -> list[np.ndarray]:
    return list(result) if isinstance(result, tuple) else [result]


def run_incremental(ind: ki.Indicator, data: Bars) -> list[np.ndarray]:
    cols = [data[c] for c in ind.inputs]
    rows = [ind.update(*bar) for bar in zip(*cols, strict=True)]
    if ind.outputs and len(ind.outputs) > 1:
        return [np.array([r[j] for r in rows], dtype=float) for j in range(len(ind.outputs))]
    return [np.array(rows, dtype=float)]


# --------------------------------------------------------------------------- TA-Lib parity


@pytest.mark.parametrize("name", TALIB_NAMES)
@SETTINGS
@given(data=st.data(), kind=KINDS, magnitude=MAGNITUDES, seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400))
def test_batch_matches_talib(name, data, kind, magnitude, seed, n):
    params_st, talib_fn = TABLE[name]
    params = data.draw(params_st)
    bars = make_bars(kind, seed, n, magnitude)
    s = ki.spec(name, *params)
    ours = s.batch(bars)
    theirs = outputs_of(talib_fn(bars, s.params))
    compare_outputs(name, s, ours, theirs, bars, f"kind={kind} mag={magnitude}")


@pytest.mark.parametrize("name", TALIB_NAMES)
@settings(max_examples=20, deadline=None)
@given(data=st.data(), n=st.integers(2, 120))
def test_batch_matches_talib_on_arbitrary_sequences(name, data, n):
    """Hypothesis-chosen values (not a random walk): spikes, repeats and jumps of many orders."""
    params = data.draw(TABLE[name][0])
    vals = data.draw(st.lists(st.floats(1e-3, 1e6), min_size=n, max_size=n))
    c = np.array(vals)
    spread = np.array(data.draw(st.lists(st.floats(0, 0.2), min_size=n, max_size=n)))
    bars = Bars(c, c * (1 + spread), c * (1 - spread / 2), c, np.abs(np.sin(np.arange(n))) * 10, np.arange(n))
    s = ki.spec(name, *params)
    ours = s.batch(bars)
    compare_outputs(name, s, ours, outputs_of(TABLE[name][1](bars, s.params)), bars, "")


def test_long_series_do_not_drift_from_talib():
    """1e9 down to ~1 over 300k bars: running sums (SMA, WMA, BBANDS, MFI) stay within 1e-9 of TA-Lib."""
    n = 300_000
    rng = np.random.default_rng(7)
    c = 1e9 * np.exp(np.cumsum(rng.normal(-7e-5, 0.003, n)))
    bars = make_bars("walk", 7, n)
    bars.close = c
    bars.high = c * 1.002
    bars.low = c * 0.998
    assert c[-1] < 1e2
    for name, p in [("sma", (20,)), ("wma", (20,)), ("bbands", (20, 2.0, 2.0)), ("mfi", (14,)), ("ema", (50,))]:
        s = ki.spec(name, *p)
        ours = s.batch(bars)
        for out, ref in zip(s.outputs, outputs_of(TABLE[name][1](bars, s.params)), strict=True):
            a, b = ours[out], ref
            m = ~np.isnan(b)
            assert np.array_equal(np.isnan(a), ~m)
            # relative to each value, not to the series' scale: the tail is 1e7 times smaller
            rel = np.abs(a[m] - b[m]) / np.maximum(np.abs(b[m]), 1e-300)
            assert rel.max() < 1e-9, (s.key, out, rel.max())


# --------------------------------------------------------------------------- incremental == batch


def _draw_case(data, name: str) -> tuple[ki.IndicatorSpec, Bars]:
    params = data.draw(TABLE[name][0])
    kind = data.draw(KINDS)
    bars = make_bars(kind, data.draw(st.integers(0, 2**32 - 1)), data.draw(st.integers(1, 300)), data.draw(MAGNITUDES))
    return ki.spec(name, *params), bars


@pytest.mark.parametrize("name", list(TABLE))
@SETTINGS
@given(data=st.data())
def test_incremental_matches_batch(name, data):
    s, bars = _draw_case(data, name)
    batch = s.batch(bars)
    inc = run_incremental(s.make(), bars)
    for out, got in zip(s.outputs, inc, strict=True):
        assert_close(got, batch[out], f"{s.key}.{out}", floor=floor_for(name, bars))
    first = [int(np.argmin(np.isnan(batch[o]))) for o in s.outputs]
    if len(bars) > s.warmup and name != "vwap":
        assert first == [s.warmup] * len(s.outputs)


@pytest.mark.parametrize("name", list(TABLE))
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_nan_bar_is_skipped_in_both_forms(name, data):
    """A NaN in any input: NaN out for that bar, state unchanged -> equals the series without those bars."""
    s, bars = _draw_case(data, name)
    n = len(bars)
    holes = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    col = data.draw(st.sampled_from([c for c in s.inputs if c != "open_time"]))
    dirty = Bars(*(bars[c].copy() for c in ("open", "high", "low", "close", "volume", "open_time")))
    dirty[col][holes] = np.nan
    clean = Bars(*(bars[c][~holes] for c in ("open", "high", "low", "close", "volume", "open_time")))
    got = s.batch(dirty)
    ref = s.batch(clean)
    inc = run_incremental(s.make(), dirty)
    for j, out in enumerate(s.outputs):
        assert np.isnan(got[out][holes]).all()
        assert_close(got[out][~holes], ref[out], f"batch {s.key}.{out}", floor=floor_for(name, clean))
        assert_close(inc[j], got[out], f"incremental {s.key}.{out}", floor=floor_for(name, clean))


@pytest.mark.parametrize("name", list(TABLE))
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_peek_copy_reset(name, data):
    s, bars = _draw_case(data, name)
    ind = s.make()
    cols = [bars[c] for c in s.inputs]
    bar_list = list(zip(*cols, strict=True))
    for bar in bar_list:
        snap = ind.copy()
        peeked = ind.peek(*bar)
        peeked_again = ind.peek(*bar)
        got = ind.update(*bar)
        assert repr(peeked) == repr(got) == repr(peeked_again)
        # the snapshot is independent: it still produces the same value for this bar
        assert repr(snap.update(*bar)) == repr(got)
    ind.reset()
    again = run_incremental(ind, bars)
    fresh = run_incremental(s.make(), bars)
    for a, b in zip(again, fresh, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_frame(shared_data_dir):
    return read_candles(shared_data_dir / "BTCUSDT_1h_20170817_20240421.csv.gz")


def test_real_data_batch_matches_talib(real_frame):
    bars = Bars(*(real_frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")), None)
    defaults = {"macd": (12, 26, 9), "bbands": (20, 2.0, 2.0), "stoch": (14, 3, 3), "stochrsi": (14, 14, 3)}
    defaults |= {"sar": (0.02, 0.2), "obv": ()}
    for name in TALIB_NAMES:
        s = ki.spec(name, *defaults.get(name, (14,)))
        ours = s.batch(bars)
        compare_outputs(name, s, ours, outputs_of(TABLE[name][1](bars, s.params)), bars, "on BTCUSDT 1h")


def test_real_data_incremental_matches_batch(real_frame):
    frame = real_frame.iloc[-3000:]
    specs = [
        ki.spec("rsi", 14), ki.spec("macd", 12, 26, 9), ki.spec("bbands", 20, 2.0), ki.spec("atr", 14),
        ki.spec("adx", 14), ki.spec("stoch", 14, 3, 3), ki.spec("cci", 20), ki.spec("mfi", 14),
        ki.spec("sar"), ki.spec("vwap"), ki.spec("supertrend", 10, 3.0), ki.spec("keltner"), ki.spec("ema", 200),
    ]  # fmt: skip
    t = frame.index.as_unit("ms").asi8
    for s in specs:
        ind = s.make()
        rows = []
        for i, candle in enumerate(frame.itertuples(index=False)):
            vals = {"open_time": int(t[i]), **candle._asdict()}
            rows.append(ind.update(*(vals[c] for c in s.inputs)))
        batch = s.batch(frame)
        for j, out in enumerate(s.outputs):
            got = [r[j] for r in rows] if len(s.outputs) > 1 else rows
            assert_close(got, batch[out], s.key)


# --------------------------------------------------------------------------- conventions without TA-Lib


def test_vwap_anchored_to_utc_day(real_frame):
    frame = real_frame.iloc[-500:]
    got = ki.vwap(frame["high"], frame["low"], frame["close"], frame["volume"])
    assert isinstance(got, pd.Series) and got.index.equals(frame.index)
    tp = (frame["high"] + frame["low"] + frame["close"]) / 3
    day = frame.index.floor("D")
    ref = (tp * frame["volume"]).groupby(day).cumsum() / frame["volume"].groupby(day).cumsum()
    assert_close(got.to_numpy(), ref.to_numpy(), "vwap")
    ms = frame.index.as_unit("ms").asi8
    assert_close(ki.vwap(*(frame[c].to_numpy() for c in ("high", "low", "close", "volume")), ms), ref.to_numpy())
    with pytest.raises(ValueError, match="open_time"):
        ki.vwap(*(frame[c].to_numpy() for c in ("high", "low", "close", "volume")))


def test_vwap_zero_volume_is_nan_until_volume_trades():
    v = ki.VWAP()
    day = 86_400_000
    assert math.isnan(v.update(2, 1, 1.5, 0.0, day))
    assert v.update(2, 1, 1.5, 2.0, day + 1) == pytest.approx(1.5)
    assert math.isnan(v.update(5, 4, 4.5, 0.0, 2 * day))  # new UTC day: reset


def test_donchian_and_keltner_against_independent_formulas():
    bars = make_bars("walk", 3, 500)
    up, mid, lo = ki.donchian(bars.high, bars.low, 20)
    ref_up = pd.Series(bars.high).rolling(20).max().to_numpy()
    ref_lo = pd.Series(bars.low).rolling(20).min().to_numpy()
    assert_close(up, ref_up)
    assert_close(lo, ref_lo)
    assert_close(mid, (ref_up + ref_lo) / 2)
    ku, km, kl = ki.keltner(bars.high, bars.low, bars.close, 20, 1.5, 10)
    e = talib.EMA(bars.close, 20)
    a = talib.ATR(bars.high, bars.low, bars.close, 10)
    assert_close(km, e)
    assert_close(ku, e + 1.5 * a)
    assert_close(kl, e - 1.5 * a)


def test_supertrend_follows_its_bands():
    bars = make_bars("walk", 11, 2000)
    line, direction = ki.supertrend(bars.high, bars.low, bars.close, 10, 3.0)
    a = talib.ATR(bars.high, bars.low, bars.close, 10)
    hl2 = (bars.high + bars.low) / 2
    first = 10
    assert np.isnan(line[:first]).all() and not np.isnan(line[first:]).any()
    assert direction[first] == -1.0 and set(np.unique(direction[first:])) == {-1.0, 1.0}
    # line below the close in an uptrend, above it in a downtrend
    up = direction[first:] > 0
    assert (line[first:][up] <= bars.close[first:][up]).all()
    assert (line[first:][~up] >= bars.close[first:][~up]).all()
    # the line is a ratcheted band: never looser than the basic band of that bar
    basic_lo = hl2 - 3.0 * a
    basic_up = hl2 + 3.0 * a
    assert (line[first:][up] >= basic_lo[first:][up] - 1e-9).all()
    assert (line[first:][~up] <= basic_up[first:][~up] + 1e-9).all()
    flips = np.nonzero(np.diff(direction[first:]))[0]
    assert len(flips) > 5


# --------------------------------------------------------------------------- API shape


def test_pandas_in_series_out():
    bars = make_bars("walk", 1, 100)
    idx = pd.date_range("2024-01-01", periods=100, freq="1h", tz="UTC", name="open_time")
    close = pd.Series(bars.close, index=idx)
    r = ki.rsi(close, 14)
    assert isinstance(r, pd.Series) and r.index.equals(idx)
    np.testing.assert_array_equal(r.to_numpy(), ki.rsi(bars.close, 14))
    m = ki.macd(close, 12, 26, 9)
    assert isinstance(m, ki.MACDResult) and m._fields == ("macd", "signal", "hist")
    assert all(isinstance(x, pd.Series) and x.index.equals(idx) for x in m)
    assert m.signal.name == "signal"
    b = ki.bbands(bars.close, 20, 2.0)
    assert b._fields == ("upper", "middle", "lower") and isinstance(b.upper, np.ndarray)
    assert ki.stoch(bars.high, bars.low, bars.close, 14, 3, 3)._fields == ("k", "d")
    np.testing.assert_array_equal(ki.rsi(list(bars.close), 14), ki.rsi(bars.close, 14))


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda: ki.rsi(np.ones(10), 0), "period"),
        (lambda: ki.RSI(-3), "period"),
        (lambda: ki.sma(np.ones(10), 1.5), "period"),
        (lambda: ki.macd(np.ones(10), 12, 0, 9), "slow"),
        (lambda: ki.MACD(26, 12, 9), "fast"),
        (lambda: ki.bbands(np.ones(10), 20, 0.0), "nbdevup"),
        (lambda: ki.BBANDS(20, 2.0, -1.0), "nbdevdn"),
        (lambda: ki.stoch(np.ones(9), np.ones(9), np.ones(9), 14, 0, 3), "slowk"),
        (lambda: ki.sar(np.ones(5), np.ones(5), 0.0, 0.2), "acceleration"),
        (lambda: ki.Keltner(20, -2.0), "multiplier"),
        (lambda: ki.SuperTrend(10, 0), "multiplier"),
        (lambda: ki.STOCHRSI(14, 0), "fastk"),
        (lambda: ki.spec("nope", 3), "name"),
        (lambda: ki.spec("rsi", True), "period"),
        (lambda: ki.spec("atr", 14, source="open"), "source"),
        (lambda: ki.parse_spec("rsi14"), "key"),
    ],
)
def test_invalid_parameters_raise_value_error_naming_them(call, param):
    with pytest.raises(ValueError, match=param):
        call()


def test_batch_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        ki.atr(np.ones(10), np.ones(9), np.ones(10), 3)


def test_spec_identity_and_helpers():
    s = ki.spec("rsi", 14)
    assert s == ki.IndicatorSpec("rsi", (14,)) == ki.parse_spec("rsi(14)")
    assert hash(s) == hash(ki.spec("rsi", 14)) and len({s, ki.spec("rsi", 14), ki.spec("rsi", 15)}) == 2
    assert (s.name, s.params, s.inputs, s.outputs, s.key, s.warmup) == (
        "rsi",
        (14,),
        ("close",),
        ("rsi",),
        "rsi(14)",
        14,
    )
    assert s.columns == ("rsi(14)",)
    m = ki.spec("macd")
    assert m.key == "macd(12,26,9)" and m.outputs == ("macd", "signal", "hist")
    assert m.columns[1] == "macd(12,26,9).signal" and m.warmup == 33
    assert ki.spec("bbands", 20, 2) == ki.spec("bbands", 20, 2.0, 2.0) == ki.spec("bbands", period=20, nbdevup=2)
    with pytest.raises(ValueError, match="params"):
        ki.spec("rsi", length=14)
    assert ki.spec("bbands", 20, 2).key == "bbands(20,2.0,2.0)"
    o = ki.spec("rsi", 14, source="open")
    assert o.inputs == ("open",) and o.key == "rsi(open,14)" and o != s
    assert ki.parse_spec(o.key) == o
    assert ki.spec("atr", 14).inputs == ("high", "low", "close")
    for name in ki.NAMES:
        sp = ki.spec(name)
        assert ki.parse_spec(sp.key) == sp
        assert isinstance(sp.make(), ki.Indicator)
    import pickle

    assert pickle.loads(pickle.dumps(m)) == m
    with pytest.raises(AttributeError):
        s.name = "x"  # type: ignore[misc]


def test_spec_batch_over_candle_frame(real_frame):
    frame = real_frame.iloc[:400]
    o = ki.spec("rsi", 14, source="open")
    np.testing.assert_array_equal(o.batch(frame)["rsi"], ki.rsi(frame["open"].to_numpy(), 14))
    cols = ki.spec("macd").frame_columns(frame)
    assert list(cols) == list(ki.spec("macd").columns)
    np.testing.assert_array_equal(cols["macd(12,26,9).hist"], ki.macd(frame["close"].to_numpy()).hist)


def test_import_does_not_load_numba():
    code = "import sys, kit, kit.indicators; kit.indicators.RSI(14).update(1.0); print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"
