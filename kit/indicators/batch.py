"""Batch indicators: TA-Lib names and argument order, NumPy or pandas in, same kind out.

``rsi(close, 14)``, ``macd(close, 12, 26, 9)``, ``bbands(close, 20, 2.0)``,
``atr(high, low, close, 14)``... Inputs come first in TA-Lib's order, then the periods as
plain positional parameters (defaults are TA-Lib's). NumPy arrays in -> float64 arrays
out; a pandas Series as first input -> Series out on the same index. Multi-output
indicators return a NamedTuple in TA-Lib's output order (see :mod:`kit.indicators.results`).

Warm-up: the first ``warmup`` outputs are NaN, the same positions as TA-Lib's. Where TA-Lib
has the indicator the values equal TA-Lib's (tested to 1e-9 relative).

NaN in the input: a bar with NaN in any input is skipped, exactly as the incremental
``update`` skips it: its output is NaN and the indicator continues from the previous
valid bar (TA-Lib instead lets NaN poison everything after it).

Parameters are validated by constructing the incremental class, so both forms raise
the same ``ValueError`` naming the bad parameter before any computing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kit.indicators import incremental as inc
from kit.indicators._jit import kernel
from kit.indicators.results import (
    BBandsResult,
    DonchianResult,
    KeltnerResult,
    MACDResult,
    StochResult,
    SuperTrendResult,
)

ArrayLike = Any  # np.ndarray | pd.Series | sequence of floats


def _as_array(a: Any) -> np.ndarray:
    if hasattr(a, "to_numpy"):
        a = a.to_numpy(dtype=np.float64, na_value=np.nan)
    arr = np.ascontiguousarray(a, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"inputs must be 1-D, got shape {arr.shape}")
    return arr


def _outs(m: int, warmups: Sequence[int]) -> list[np.ndarray]:
    # Kernels write every position from their warm-up on; only the NaN prefix needs filling.
    outs = []
    for w in warmups:
        o = np.empty(m)
        o[: min(w, m)] = np.nan
        outs.append(o)
    return outs


def run(
    name: str,
    inputs: Sequence[Any],
    params: Sequence[Any],
    warmups: Sequence[int],
    extra: Sequence[np.ndarray] = (),
    scratch: int = 0,
) -> Any:
    """Run kernel ``name`` over ``inputs``; one array, or a list of arrays (one per warm-up), pandas-aware.

    ``extra`` are non-float side inputs (e.g. int64 timestamps) passed after the float inputs;
    ``scratch`` work arrays are allocated here (NumPy reuses freed memory; an allocation inside
    a kernel costs fresh page faults) and passed after the outputs.
    """
    first = inputs[0]
    index = first.index if hasattr(first, "index") and hasattr(first, "to_numpy") else None
    arrs = [_as_array(a) for a in inputs]
    n = arrs[0].shape[0]
    for a in (*arrs[1:], *extra):
        if a.shape[0] != n:
            raise ValueError(f"inputs must have the same length, got {n} and {a.shape[0]}")
    fn = kernel(name)
    bad = None
    for a in arrs:
        if np.isnan(a.sum()):  # cheap screen; the mask below is exact
            m = np.isnan(a)
            bad = m if bad is None else (bad | m)
    if bad is not None and bad.any():
        keep = ~bad
        m = int(keep.sum())
        outs = _outs(m, warmups)
        work = [np.empty(m) for _ in range(scratch)]
        fn(*[a[keep] for a in arrs], *[e[keep] for e in extra], *outs, *work, *params)
        full = []
        for o in outs:
            f = np.full(n, np.nan)
            f[keep] = o
            full.append(f)
        outs = full
    else:
        outs = _outs(n, warmups)
        work = [np.empty(n) for _ in range(scratch)]
        fn(*arrs, *extra, *outs, *work, *params)
    if index is not None:
        import pandas as pd

        outs = [pd.Series(o, index=index, copy=False) for o in outs]
    return outs[0] if len(outs) == 1 else outs


def _named(series: list[Any], names: Sequence[str]) -> list[Any]:
    for s, nm in zip(series, names, strict=True):
        if hasattr(s, "name"):
            s.name = nm
    return series


# --------------------------------------------------------------------------- moving averages


def sma(close: ArrayLike, period: int = 30) -> Any:
    """Simple moving average (TA-Lib SMA). Warm-up ``period - 1``."""
    ind = inc.SMA(period)
    return run("sma", (close,), ind.params, (ind.warmup,))


def ema(close: ArrayLike, period: int = 30) -> Any:
    """EMA, k = 2/(period+1), seeded with the SMA of the first ``period`` values (TA-Lib EMA)."""
    ind = inc.EMA(period)
    return run("ema", (close,), ind.params, (ind.warmup,))


def wma(close: ArrayLike, period: int = 30) -> Any:
    """Linearly weighted moving average (TA-Lib WMA). Warm-up ``period - 1``."""
    ind = inc.WMA(period)
    return run("wma", (close,), ind.params, (ind.warmup,))


def dema(close: ArrayLike, period: int = 30) -> Any:
    """Double EMA (TA-Lib DEMA). Warm-up ``2*(period-1)``."""
    ind = inc.DEMA(period)
    return run("dema", (close,), ind.params, (ind.warmup,))


def tema(close: ArrayLike, period: int = 30) -> Any:
    """Triple EMA (TA-Lib TEMA). Warm-up ``3*(period-1)``."""
    ind = inc.TEMA(period)
    return run("tema", (close,), ind.params, (ind.warmup,))


# --------------------------------------------------------------------------- momentum


def rsi(close: ArrayLike, period: int = 14) -> Any:
    """RSI with Wilder smoothing (TA-Lib RSI). Warm-up ``period``."""
    ind = inc.RSI(period)
    return run("rsi", (close,), ind.params, (ind.warmup,))


def macd(close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> MACDResult:
    """MACD -> ``MACDResult(macd, signal, hist)`` (TA-Lib MACD). Warm-up ``slow + signal - 2``."""
    ind = inc.MACD(fast, slow, signal)
    return MACDResult(*_named(run("macd", (close,), ind.params, (ind.warmup,) * 3), MACDResult._fields))


# --------------------------------------------------------------------------- volatility


def bbands(close: ArrayLike, period: int = 5, nbdevup: float = 2.0, nbdevdn: float | None = None) -> BBandsResult:
    """Bollinger Bands -> ``BBandsResult(upper, middle, lower)`` (TA-Lib BBANDS, SMA middle).

    ``bbands(close, 20, 2.0)`` uses 2.0 for both bands; ``nbdevdn`` defaults to ``nbdevup``.
    """
    ind = inc.BBANDS(period, nbdevup, nbdevdn)
    return BBandsResult(*_named(run("bbands", (close,), ind.params, (ind.warmup,) * 3), BBandsResult._fields))


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> Any:
    """Average true range, Wilder smoothing (TA-Lib ATR). Warm-up ``period``."""
    ind = inc.ATR(period)
    return run("atr", (high, low, close), ind.params, (ind.warmup,))


def natr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> Any:
    """Normalised ATR in percent of close (TA-Lib NATR). Warm-up ``period``."""
    ind = inc.NATR(period)
    return run("natr", (high, low, close), ind.params, (ind.warmup,))


def stoch(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, fastk: int = 5, slowk: int = 3, slowd: int = 3
) -> StochResult:
    """Slow stochastic -> ``StochResult(k, d)`` (TA-Lib STOCH, SMA smoothing). Warm-up ``fastk+slowk+slowd-3``."""
    ind = inc.STOCH(fastk, slowk, slowd)
    return StochResult(
        *_named(run("stoch", (high, low, close), ind.params, (ind.warmup,) * 2, scratch=3), StochResult._fields)
    )


def stochrsi(close: ArrayLike, period: int = 14, fastk: int = 5, fastd: int = 3) -> StochResult:
    """Stochastic RSI -> ``StochResult(k, d)`` (TA-Lib STOCHRSI's fastk, fastd). Warm-up ``period+fastk+fastd-2``."""
    ind = inc.STOCHRSI(period, fastk, fastd)
    return StochResult(
        *_named(run("stochrsi", (close,), ind.params, (ind.warmup,) * 2, scratch=4), StochResult._fields)
    )


def willr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> Any:
    """Williams %R in [-100, 0] (TA-Lib WILLR). Warm-up ``period - 1``."""
    ind = inc.WILLR(period)
    return run("willr", (high, low, close), ind.params, (ind.warmup,), scratch=2)


def cci(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> Any:
    """Commodity channel index (TA-Lib CCI). Warm-up ``period - 1``."""
    ind = inc.CCI(period)
    return run("cci", (high, low, close), ind.params, (ind.warmup,))


def mfi(high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike, period: int = 14) -> Any:
    """Money flow index (TA-Lib MFI). Warm-up ``period``."""
    ind = inc.MFI(period)
    return run("mfi", (high, low, close, volume), ind.params, (ind.warmup,))


def roc(close: ArrayLike, period: int = 10) -> Any:
    """Rate of change in percent (TA-Lib ROC). Warm-up ``period``."""
    ind = inc.ROC(period)
    return run("roc", (close,), ind.params, (ind.warmup,))


def obv(close: ArrayLike, volume: ArrayLike) -> Any:
    """On-balance volume, starting at the first bar's volume (TA-Lib OBV). Warm-up 0."""
    return run("obv", (close, volume), (), (0,))


def _dmi(which: int, high: ArrayLike, low: ArrayLike, close: ArrayLike, params: tuple[int]) -> Any:
    p = params[0]
    outs = run("dmi", (high, low, close), params, (p, p, 2 * p - 1))
    return outs[which]


def plus_di(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> Any:
    """Plus directional indicator (TA-Lib PLUS_DI). Warm-up ``period``."""
    return _dmi(0, high, low, close, inc.PLUS_DI(period).params)


def minus_di(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> Any:
    """Minus directional indicator (TA-Lib MINUS_DI). Warm-up ``period``."""
    return _dmi(1, high, low, close, inc.MINUS_DI(period).params)


def adx(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> Any:
    """Average directional index (TA-Lib ADX). Warm-up ``2*period - 1``."""
    return _dmi(2, high, low, close, inc.ADX(period).params)


def sar(high: ArrayLike, low: ArrayLike, acceleration: float = 0.02, maximum: float = 0.2) -> Any:
    """Parabolic SAR (TA-Lib SAR). Warm-up 1."""
    ind = inc.SAR(acceleration, maximum)
    return run("sar", (high, low), (ind.acceleration, ind.maximum), (ind.warmup,))


def _open_time_ms(open_time: Any, first: Any) -> np.ndarray:
    if open_time is None:
        idx = getattr(first, "index", None)
        if idx is None or not hasattr(idx, "as_unit"):
            raise ValueError("open_time: pass bar open times (ms UTC) or Series with a DatetimeIndex")
        return np.asarray(idx.as_unit("ms").asi8, dtype=np.int64)
    if hasattr(open_time, "as_unit"):  # DatetimeIndex
        return np.asarray(open_time.as_unit("ms").asi8, dtype=np.int64)
    arr = np.asarray(open_time)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[ms]").astype(np.int64)
    if hasattr(open_time, "dt"):  # Series of datetimes
        return np.asarray(open_time.dt.as_unit("ms").astype("int64"), dtype=np.int64)
    return np.ascontiguousarray(arr, dtype=np.int64)


def vwap(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike, open_time: ArrayLike | None = None
) -> Any:
    """VWAP anchored to the UTC day: sum(tp*volume)/sum(volume) since 00:00 UTC, tp = (h+l+c)/3.

    ``open_time``: bar open times as int ms UTC (or datetime64 / DatetimeIndex); omitted, the
    index of ``high`` (a Series on a DatetimeIndex, e.g. a candle frame column) is used.
    NaN while the day's volume is 0. No TA-Lib equivalent. Warm-up 0.
    """
    t = _open_time_ms(open_time, high)
    return run("vwap", (high, low, close, volume), (), (0,), extra=(t,))


def donchian(high: ArrayLike, low: ArrayLike, period: int = 20) -> DonchianResult:
    """Donchian channel -> ``DonchianResult(upper, middle, lower)``; window includes the current bar."""
    ind = inc.Donchian(period)
    return DonchianResult(*_named(run("donchian", (high, low), ind.params, (ind.warmup,) * 3), DonchianResult._fields))


def keltner(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 20, multiplier: float = 2.0, atr_period: int = 10
) -> KeltnerResult:
    """Keltner channel -> ``KeltnerResult(upper, middle, lower)``: EMA(period) ± multiplier*ATR(atr_period)."""
    ind = inc.Keltner(period, multiplier, atr_period)
    return KeltnerResult(
        *_named(run("keltner", (high, low, close), ind.params, (ind.warmup,) * 3, scratch=1), KeltnerResult._fields)
    )


def supertrend(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 10, multiplier: float = 3.0
) -> SuperTrendResult:
    """SuperTrend -> ``SuperTrendResult(supertrend, direction)`` (TradingView's convention; see SuperTrend)."""
    ind = inc.SuperTrend(period, multiplier)
    return SuperTrendResult(
        *_named(
            run("supertrend", (high, low, close), ind.params, (ind.warmup,) * 2, scratch=1), SuperTrendResult._fields
        )
    )


__all__ = [
    "adx", "atr", "bbands", "cci", "dema", "donchian", "ema", "keltner", "macd", "mfi", "minus_di", "natr",
    "obv", "plus_di", "roc", "rsi", "sar", "sma", "stoch", "stochrsi", "supertrend", "tema", "vwap", "willr", "wma",
]  # fmt: skip
