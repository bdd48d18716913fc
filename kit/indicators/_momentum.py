"""Momentum: RSI, MACD, ROC, CCI (TA-Lib's recurrences), each as class, kernel and batch function."""

from __future__ import annotations

from collections import deque

import numpy as np

from kit.indicators._base import NAN, Indicator, IndicatorError, check_int
from kit.indicators._batch import ArrayLike, run
from kit.indicators._jit import kernel
from kit.indicators._registry import add_builtin
from kit.indicators.results import MACDResult

__all__ = ["CCI", "MACD", "ROC", "RSI", "cci", "macd", "roc", "rsi"]

#: TA-Lib's relative dead-zone (TA_IS_ZERO_SCALED): |v| <= EPS * scale counts as zero
EPS = 1e-14


class RSI(Indicator):
    """Relative strength index with Wilder smoothing (TA-Lib ``RSI``). Warm-up ``period``.

    The first value averages the first ``period`` changes; then gain and loss are smoothed as
    ``prev*(period-1)/period + x/period`` (TA-Lib's ``(prev*(period-1) + x)/period`` with the
    division hoisted out of the recurrence: equal to within rounding, several times faster in
    the batch loop). 0 when there was neither gain nor loss (TA-Lib's convention).
    """

    __slots__ = ("_c1", "_c2", "_gain", "_loss", "_n", "_prev", "params", "period", "warmup")
    outputs = ("rsi",)

    def __init__(self, period: int = 14) -> None:
        p = check_int("period", period, 2)
        self.period = p
        self.params = (p,)
        self.warmup = p
        self._c1 = (p - 1) / p
        self._c2 = 1.0 / p
        self._prev = NAN
        self._n = 0
        self._gain = 0.0
        self._loss = 0.0

    def step(self, x: float) -> float:
        prev = self._prev
        self._prev = x
        if prev != prev:
            return NAN
        d = x - prev
        n = self._n
        p = self.period
        if n >= p:
            c1 = self._c1
            if d < 0:
                gain = self._gain * c1
                loss = self._loss * c1 - d * self._c2
            else:
                gain = self._gain * c1 + d * self._c2
                loss = self._loss * c1
        else:
            gain = self._gain
            loss = self._loss
            if d < 0:
                loss -= d
            else:
                gain += d
            n += 1
            self._n = n
            if n < p:
                self._gain = gain
                self._loss = loss
                return NAN
            gain /= p
            loss /= p
        self._gain = gain
        self._loss = loss
        s = gain + loss
        return 100.0 * (gain / s) if s != 0.0 else 0.0


@kernel
def rsi_kernel(x, out, period):  # noqa: ANN001
    n = x.shape[0]
    if n <= period:
        return
    gain = 0.0
    loss = 0.0
    for i in range(1, period + 1):
        d = x[i] - x[i - 1]
        if d < 0:
            loss -= d
        else:
            gain += d
    gain /= period
    loss /= period
    s = gain + loss
    out[period] = 100.0 * (gain / s) if s != 0.0 else 0.0
    c1 = (period - 1) / period
    c2 = 1.0 / period
    for i in range(period + 1, n):
        d = x[i] - x[i - 1]
        if d < 0:
            gain = gain * c1
            loss = loss * c1 - d * c2
        else:
            gain = gain * c1 + d * c2
            loss = loss * c1
        s = gain + loss
        out[i] = 100.0 * (gain / s) if s != 0.0 else 0.0


def rsi(close: ArrayLike, period: int = 14) -> ArrayLike:
    """RSI with Wilder smoothing (TA-Lib RSI). Warm-up ``period``."""
    ind = RSI(period)
    return run(rsi_kernel, (close,), ind.params, (ind.warmup,))


class MACD(Indicator):
    """MACD (TA-Lib ``MACD``): fast EMA - slow EMA, its signal EMA, and the histogram.

    As in TA-Lib, both EMAs are SMA-seeded on windows that end on the same bar (``slow - 1``),
    so the fast EMA ignores the first ``slow - fast`` bars. Warm-up ``slow + signal - 2``.
    """

    __slots__ = (
        "_fast_sum",
        "_fast_v",
        "_kf",
        "_kg",
        "_ks",
        "_n",
        "_sig",
        "_sig_n",
        "_sig_sum",
        "_slow_sum",
        "_slow_v",
        "fast",
        "params",
        "signal",
        "slow",
        "warmup",
    )
    outputs = ("macd", "signal", "hist")
    result = MACDResult

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        f = check_int("fast", fast, 2)
        s = check_int("slow", slow, 2)
        g = check_int("signal", signal, 1)
        if f > s:
            raise IndicatorError(f"fast must not exceed slow, got fast={f} slow={s}")
        self.fast, self.slow, self.signal = f, s, g
        self.params = (f, s, g)
        self.warmup = s + g - 2
        self._kf = 2.0 / (f + 1)
        self._ks = 2.0 / (s + 1)
        self._kg = 2.0 / (g + 1)
        self._n = 0
        self._fast_sum = self._slow_sum = self._sig_sum = 0.0
        self._fast_v = self._slow_v = self._sig = NAN
        self._sig_n = 0

    def step(self, x: float) -> MACDResult:
        sv = self._slow_v
        fv = self._fast_v
        if sv == sv:
            sv = (x - sv) * self._ks + sv
            fv = (x - fv) * self._kf + fv
            self._slow_v = sv
            self._fast_v = fv
        else:
            n = self._n
            self._n = n + 1
            slow = self.slow
            ss = self._slow_sum + x
            if n >= slow - self.fast:
                self._fast_sum += x
            if n + 1 < slow:
                self._slow_sum = ss
                return self.nan
            sv = self._slow_v = ss / slow
            fv = self._fast_v = self._fast_sum / self.fast
        m = fv - sv
        g = self._sig
        if g == g:
            g = (m - g) * self._kg + g
        else:
            gs = self._sig_sum + m
            gn = self._sig_n + 1
            self._sig_n = gn
            if gn < self.signal:
                self._sig_sum = gs
                return self.nan
            g = gs / gn
        self._sig = g
        return MACDResult(m, g, m - g)


@kernel
def macd_kernel(x, out_m, out_s, out_h, fast, slow, signal):  # noqa: ANN001
    n = x.shape[0]
    if n < slow:
        return
    kf = 2.0 / (fast + 1)
    ks = 2.0 / (slow + 1)
    kg = 2.0 / (signal + 1)
    ss = 0.0
    fs = 0.0
    for i in range(slow):
        ss += x[i]
        if i >= slow - fast:
            fs += x[i]
    sv = ss / slow
    fv = fs / fast
    out_m[slow - 1] = fv - sv  # the MACD line is built in out_m; its head is reset to NaN below
    for i in range(slow, n):
        sv = (x[i] - sv) * ks + sv
        fv = (x[i] - fv) * kf + fv
        out_m[i] = fv - sv
    first = slow - 1 + signal - 1
    if n <= first:
        for i in range(slow - 1, n):
            out_m[i] = np.nan
        return
    gs = 0.0
    for i in range(slow - 1, first + 1):
        gs += out_m[i]
    g = gs / signal
    out_s[first] = g
    out_h[first] = out_m[first] - g
    for i in range(first + 1, n):
        m = out_m[i]
        g = (m - g) * kg + g
        out_s[i] = g
        out_h[i] = m - g
    for i in range(slow - 1, first):
        out_m[i] = np.nan


def macd(close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> MACDResult:
    """MACD -> ``MACDResult(macd, signal, hist)`` (TA-Lib MACD). Warm-up ``slow + signal - 2``."""
    ind = MACD(fast, slow, signal)
    return MACDResult(*run(macd_kernel, (close,), ind.params, (ind.warmup,) * 3, names=MACDResult._fields))


class ROC(Indicator):
    """Rate of change in percent, ``(x / x[-period] - 1) * 100`` (TA-Lib ``ROC``; 0 when x[-period] is 0)."""

    __slots__ = ("_buf", "params", "period", "warmup")
    outputs = ("roc",)

    def __init__(self, period: int = 10) -> None:
        p = check_int("period", period, 1)
        self.period = p
        self.params = (p,)
        self.warmup = p
        self._buf: deque[float] = deque(maxlen=p + 1)

    def step(self, x: float) -> float:
        buf = self._buf
        buf.append(x)
        if len(buf) <= self.period:
            return NAN
        old = buf[0]
        return ((x / old) - 1.0) * 100.0 if old != 0.0 else 0.0


@kernel
def roc_kernel(x, out, period):  # noqa: ANN001
    for i in range(period, x.shape[0]):
        old = x[i - period]
        out[i] = ((x[i] / old) - 1.0) * 100.0 if old != 0.0 else 0.0


def roc(close: ArrayLike, period: int = 10) -> ArrayLike:
    """Rate of change in percent (TA-Lib ROC). Warm-up ``period``."""
    ind = ROC(period)
    return run(roc_kernel, (close,), ind.params, (ind.warmup,))


class CCI(Indicator):
    """Commodity channel index (TA-Lib ``CCI``) over the typical price (h+l+c)/3.

    (tp - mean) / (0.015 * mean absolute deviation); 0 when either is 0. The mean and the
    deviation are recomputed over a circular buffer in TA-Lib's order: O(period) per update,
    like TA-Lib (the mean absolute deviation has no exact O(1) form). Warm-up ``period - 1``.
    """

    __slots__ = ("_buf", "_i", "_n", "params", "period", "warmup")
    inputs = ("high", "low", "close")
    outputs = ("cci",)

    def __init__(self, period: int = 14) -> None:
        p = check_int("period", period, 2)
        self.period = p
        self.params = (p,)
        self.warmup = p - 1
        self._buf = [0.0] * p
        self._i = 0
        self._n = 0

    def step(self, high: float, low: float, close: float) -> float:
        tp = (high + low + close) / 3
        buf = self._buf
        i = self._i
        buf[i] = tp
        p = self.period
        self._i = i + 1 if i + 1 < p else 0
        n = self._n
        if n < p - 1:
            self._n = n + 1
            return NAN
        avg = 0.0
        for v in buf:
            avg += v
        avg /= p
        dev = 0.0
        for v in buf:
            dev += abs(v - avg)
        dev /= p
        t = tp - avg
        zero = EPS * abs(avg)
        if abs(t) <= zero or abs(dev) <= zero:
            return 0.0
        return t / (0.015 * dev)


@kernel
def cci_kernel(h, low, c, out, period):  # noqa: ANN001
    buf = np.zeros(period)
    idx = 0
    for i in range(h.shape[0]):
        tp = (h[i] + low[i] + c[i]) / 3
        buf[idx] = tp
        idx += 1
        if idx == period:
            idx = 0
        if i >= period - 1:
            avg = 0.0
            for j in range(period):
                avg += buf[j]
            avg /= period
            dev = 0.0
            for j in range(period):
                dev += abs(buf[j] - avg)
            dev /= period
            t = tp - avg
            zero = EPS * abs(avg)
            out[i] = 0.0 if (abs(t) <= zero or abs(dev) <= zero) else t / (0.015 * dev)


def cci(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> ArrayLike:
    """Commodity channel index (TA-Lib CCI). Warm-up ``period - 1``."""
    ind = CCI(period)
    return run(cci_kernel, (high, low, close), ind.params, (ind.warmup,))


add_builtin("rsi", RSI, rsi)
add_builtin("macd", MACD, macd)
add_builtin("roc", ROC, roc)
add_builtin("cci", CCI, cci)
