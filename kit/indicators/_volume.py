"""Volume: OBV, MFI (TA-Lib's recurrences) and VWAP anchored to the UTC day, each as class, kernel and batch."""

from __future__ import annotations

import numpy as np

from kit.indicators._base import NAN, Indicator, check_int
from kit.indicators._batch import ArrayLike, open_time_ms, run
from kit.indicators._jit import kernel
from kit.indicators._momentum import EPS
from kit.indicators._registry import add_builtin

__all__ = ["MFI", "OBV", "VWAP", "mfi", "obv", "vwap"]

_DAY_MS = 86_400_000


class OBV(Indicator):
    """On-balance volume (TA-Lib ``OBV``): starts at the first bar's volume. Inputs (close, volume)."""

    __slots__ = ("_obv", "_prev", "params", "warmup")
    inputs = ("close", "volume")
    outputs = ("obv",)

    def __init__(self) -> None:
        self.params = ()
        self.warmup = 0
        self._prev = NAN
        self._obv = NAN

    def step(self, close: float, volume: float) -> float:
        prev = self._prev
        self._prev = close
        if prev != prev:
            self._obv = volume
            return volume
        obv = self._obv
        if close > prev:
            obv += volume
        elif close < prev:
            obv -= volume
        self._obv = obv
        return obv


@kernel
def obv_kernel(c, v, out):  # noqa: ANN001
    n = c.shape[0]
    if n == 0:
        return
    o = v[0]
    out[0] = o
    for i in range(1, n):
        if c[i] > c[i - 1]:
            o += v[i]
        elif c[i] < c[i - 1]:
            o -= v[i]
        out[i] = o


def obv(close: ArrayLike, volume: ArrayLike) -> ArrayLike:
    """On-balance volume, starting at the first bar's volume (TA-Lib OBV). Warm-up 0."""
    return run(obv_kernel, (close, volume), (), (0,))


class MFI(Indicator):
    """Money flow index (TA-Lib ``MFI``) over typical price * volume, with TA-Lib's running sums.

    A bar whose typical price moved by less than 1e-14 of its level counts as no movement;
    after ``period`` bars without money flow the sums are reset to exactly 0; the result is
    clamped to [0, 100] and is 0 for a window without money flow (TA-Lib). Warm-up ``period``.
    Inputs (high, low, close, volume).
    """

    __slots__ = ("_i", "_n", "_neg", "_neg_sum", "_null", "_pos", "_pos_sum", "_prev", "params", "period", "warmup")
    inputs = ("high", "low", "close", "volume")
    outputs = ("mfi",)

    def __init__(self, period: int = 14) -> None:
        p = check_int("period", period, 2)
        self.period = p
        self.params = (p,)
        self.warmup = p
        self._pos = [0.0] * p
        self._neg = [0.0] * p
        self._i = 0
        self._n = 0
        self._null = 0
        self._prev = NAN
        self._pos_sum = 0.0
        self._neg_sum = 0.0

    def step(self, high: float, low: float, close: float, volume: float) -> float:
        tp = (high + low + close) / 3.0
        prev = self._prev
        self._prev = tp
        if prev != prev:
            return NAN
        i = self._i
        p = self.period
        n = self._n
        ps = self._pos_sum
        ns = self._neg_sum
        if n >= p:
            ps -= self._pos[i]
            ns -= self._neg[i]
        d = tp - prev
        mf = 0.0 if abs(d) <= EPS * (abs(tp) + abs(prev)) else tp * volume
        if d < 0.0:
            self._pos[i] = 0.0
            self._neg[i] = mf
            ns += mf
        else:
            self._pos[i] = mf
            self._neg[i] = 0.0
            ps += mf
        if mf == 0.0:
            null = self._null + 1
            if null >= p:
                null = p
                ps = 0.0
                ns = 0.0
            self._null = null
        else:
            self._null = 0
        self._i = i + 1 if i + 1 < p else 0
        self._pos_sum = ps
        self._neg_sum = ns
        if n < p:
            n += 1
            self._n = n
            if n < p:
                return NAN
        total = ps + ns
        if total <= 0.0:
            return 0.0
        pc = 0.0 if ps < 0.0 else (total if ps > total else ps)
        return 100.0 * (pc / total)


@kernel
def mfi_kernel(h, low, c, v, out, period):  # noqa: ANN001
    n = h.shape[0]
    if n == 0:
        return
    pos = np.zeros(period)
    neg = np.zeros(period)
    idx = 0
    ps = 0.0
    ns = 0.0
    null = 0
    prev = (h[0] + low[0] + c[0]) / 3.0
    for i in range(1, n):
        tp = (h[i] + low[i] + c[i]) / 3.0
        if i - 1 >= period:
            ps -= pos[idx]
            ns -= neg[idx]
        d = tp - prev
        mf = 0.0 if abs(d) <= EPS * (abs(tp) + abs(prev)) else tp * v[i]
        prev = tp
        if d < 0.0:
            pos[idx] = 0.0
            neg[idx] = mf
            ns += mf
        else:
            pos[idx] = mf
            neg[idx] = 0.0
            ps += mf
        if mf == 0.0:
            null += 1
            if null >= period:
                null = period
                ps = 0.0
                ns = 0.0
        else:
            null = 0
        idx += 1
        if idx == period:
            idx = 0
        if i >= period:
            total = ps + ns
            if total <= 0.0:
                out[i] = 0.0
            else:
                pc = 0.0 if ps < 0.0 else (total if ps > total else ps)
                out[i] = 100.0 * (pc / total)


def mfi(high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike, period: int = 14) -> ArrayLike:
    """Money flow index (TA-Lib MFI). Warm-up ``period``."""
    ind = MFI(period)
    return run(mfi_kernel, (high, low, close, volume), ind.params, (ind.warmup,))


class VWAP(Indicator):
    """Volume-weighted average price anchored to the UTC day (no TA-Lib equivalent).

    Cumulative sum(tp * volume) / sum(volume) since the UTC midnight of ``open_time`` (ms),
    tp = (high + low + close) / 3. NaN while the day's volume is still 0. Warm-up 0.
    Inputs (high, low, close, volume, open_time).
    """

    __slots__ = ("_day", "_pv", "_v", "params", "warmup")
    inputs = ("high", "low", "close", "volume", "open_time")
    outputs = ("vwap",)

    def __init__(self) -> None:
        self.params = ()
        self.warmup = 0
        self._day = -(2**62)
        self._pv = 0.0
        self._v = 0.0

    def step(self, high: float, low: float, close: float, volume: float, open_time: int) -> float:
        day = int(open_time) // _DAY_MS
        if day != self._day:
            self._day = day
            pv = 0.0
            v = 0.0
        else:
            pv = self._pv
            v = self._v
        pv += ((high + low + close) / 3) * volume
        v += volume
        self._pv = pv
        self._v = v
        return pv / v if v != 0.0 else NAN


@kernel
def vwap_kernel(h, low, c, v, t, out):  # noqa: ANN001
    day = -(2**62)
    pv = 0.0
    vv = 0.0
    for i in range(h.shape[0]):
        d = t[i] // 86_400_000
        if d != day:
            day = d
            pv = 0.0
            vv = 0.0
        pv += ((h[i] + low[i] + c[i]) / 3) * v[i]
        vv += v[i]
        out[i] = pv / vv if vv != 0.0 else np.nan


def vwap(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike, open_time: ArrayLike | None = None
) -> ArrayLike:
    """VWAP anchored to the UTC day: sum(tp*volume)/sum(volume) since 00:00 UTC, tp = (h+l+c)/3.

    ``open_time``: bar open times as int ms UTC (or datetime64 / DatetimeIndex); omitted, the
    index of ``high`` (a Series on a DatetimeIndex, e.g. a candle frame column) is used.
    NaN while the day's volume is 0. No TA-Lib equivalent. Warm-up 0.
    """
    t = open_time_ms(open_time, high)
    return run(vwap_kernel, (high, low, close, volume), (), (0,), extra=(t,))


add_builtin("obv", OBV, obv)
add_builtin("mfi", MFI, mfi)
add_builtin("vwap", VWAP, vwap)
