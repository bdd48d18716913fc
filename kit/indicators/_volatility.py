"""Volatility and bands: BBANDS, ATR, NATR, Keltner, SuperTrend, each as class, kernel and batch function."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from kit.indicators._averages import EMA, ema_into
from kit.indicators._base import NAN, Indicator, check_int, check_positive
from kit.indicators._batch import ArrayLike, run
from kit.indicators._jit import kernel
from kit.indicators._registry import add_builtin
from kit.indicators.results import BBandsResult, KeltnerResult, SuperTrendResult

__all__ = ["ATR", "BBANDS", "NATR", "Keltner", "SuperTrend", "atr", "bbands", "keltner", "natr", "supertrend"]

_sqrt = math.sqrt
#: BBANDS: when E[(x-K)²] exceeds the variance by this factor, the shifted sums lost too many digits
ILL = 1e5


class BBANDS(Indicator):
    """Bollinger Bands (TA-Lib ``BBANDS`` with an SMA): middle ± nbdev * population stddev.

    The middle band is TA-Lib's running-sum SMA. The variance uses running sums of
    ``x - K`` and ``(x - K)²`` with the shift ``K`` reset to the window mean and the sums
    recomputed every ``period`` bars, and at once when they lost digits (an outlier leaving
    the window): accurate at any price level, drift-free, O(1) amortised. 0 when the
    variance is not positive. ``nbdevdn`` defaults to ``nbdevup``. Warm-up ``period - 1``.
    """

    __slots__ = ("_buf", "_k", "_n", "_s1", "_s2", "_t", "nbdevdn", "nbdevup", "params", "period", "warmup")
    outputs = ("upper", "middle", "lower")
    result = BBandsResult

    def __init__(self, period: int = 5, nbdevup: float = 2.0, nbdevdn: float | None = None) -> None:
        p = check_int("period", period, 2)
        up = check_positive("nbdevup", nbdevup)
        dn = up if nbdevdn is None else check_positive("nbdevdn", nbdevdn)
        self.period, self.nbdevup, self.nbdevdn = p, up, dn
        self.params = (p, up, dn)
        self.warmup = p - 1
        self._buf: deque[float] = deque(maxlen=p)
        self._n = 0
        self._t = 0.0
        self._k = NAN
        self._s1 = 0.0
        self._s2 = 0.0

    def step(self, x: float) -> BBandsResult:
        buf = self._buf
        buf.append(x)
        t = self._t + x
        k = self._k
        if k != k:
            k = self._k = x
        d = x - k
        s1 = self._s1 + d
        s2 = self._s2 + d * d
        p = self.period
        n = self._n + 1
        self._n = n
        if n < p:
            self._t = t
            self._s1 = s1
            self._s2 = s2
            return self.nan
        old = buf[0]
        self._t = t - old
        mid = t / p
        m1 = s1 / p
        var = s2 / p - m1 * m1
        if s2 / p > ILL * var:  # cancellation (e.g. an outlier left the window): redo around the mean
            k = mid
            s1 = 0.0
            s2 = 0.0
            for v in buf:
                d = v - k
                s1 += d
                s2 += d * d
            m1 = s1 / p
            var = s2 / p - m1 * m1
        if n % p == 0:  # periodic resync around the mean, over the next window's first p-1 values
            k = mid
            s1 = 0.0
            s2 = 0.0
            it = iter(buf)
            next(it)
            for v in it:
                d = v - k
                s1 += d
                s2 += d * d
        else:
            d = old - k
            s1 -= d
            s2 -= d * d
        self._k = k
        self._s1 = s1
        self._s2 = s2
        sd = _sqrt(var) if var > 0.0 else 0.0
        return BBandsResult(mid + sd * self.nbdevup, mid, mid - sd * self.nbdevdn)


@kernel
def bbands_kernel(x, up, mid, lo, period, nbdevup, nbdevdn):  # noqa: ANN001
    n = x.shape[0]
    if n == 0:
        return
    t = 0.0
    k = x[0]
    s1 = 0.0
    s2 = 0.0
    for i in range(n):
        v = x[i]
        t += v
        d = v - k
        s1 += d
        s2 += d * d
        if i >= period - 1:
            old = x[i - period + 1]
            m = t / period
            t -= old
            m1 = s1 / period
            var = s2 / period - m1 * m1
            if s2 / period > ILL * var:
                k = m
                s1 = 0.0
                s2 = 0.0
                for j in range(i - period + 1, i + 1):
                    d = x[j] - k
                    s1 += d
                    s2 += d * d
                m1 = s1 / period
                var = s2 / period - m1 * m1
            if (i + 1) % period == 0:
                k = m
                s1 = 0.0
                s2 = 0.0
                for j in range(i - period + 2, i + 1):
                    d = x[j] - k
                    s1 += d
                    s2 += d * d
            else:
                d = old - k
                s1 -= d
                s2 -= d * d
            sd = math.sqrt(var) if var > 0.0 else 0.0
            up[i] = m + sd * nbdevup
            mid[i] = m
            lo[i] = m - sd * nbdevdn


def bbands(close: ArrayLike, period: int = 5, nbdevup: float = 2.0, nbdevdn: float | None = None) -> BBandsResult:
    """Bollinger Bands -> ``BBandsResult(upper, middle, lower)`` (TA-Lib BBANDS, SMA middle).

    ``bbands(close, 20, 2.0)`` uses 2.0 for both bands; ``nbdevdn`` defaults to ``nbdevup``.
    """
    ind = BBANDS(period, nbdevup, nbdevdn)
    return BBandsResult(*run(bbands_kernel, (close,), ind.params, (ind.warmup,) * 3, names=BBandsResult._fields))


class ATR(Indicator):
    """Average true range with Wilder smoothing, seeded with the SMA of the first ``period`` true ranges.

    Smoothing ``atr*(period-1)/period + tr/period`` (TA-Lib's recurrence, division hoisted).
    The first bar has no true range (no previous close). Warm-up ``period`` (TA-Lib ``ATR``).
    """

    __slots__ = ("_atr", "_c1", "_c2", "_n", "_pc", "_sum", "params", "period", "warmup")
    inputs = ("high", "low", "close")
    outputs = ("atr",)

    def __init__(self, period: int = 14) -> None:
        p = check_int("period", period, 1)
        self.period = p
        self.params = (p,)
        self.warmup = p
        self._c1 = (p - 1) / p
        self._c2 = 1.0 / p
        self._pc = NAN
        self._n = 0
        self._sum = 0.0
        self._atr = NAN

    def step(self, high: float, low: float, close: float) -> float:
        pc = self._pc
        self._pc = close
        if pc != pc:
            return NAN
        tr = high - low
        v = abs(pc - high)
        if v > tr:
            tr = v
        v = abs(pc - low)
        if v > tr:
            tr = v
        a = self._atr
        p = self.period
        if a == a:
            a = a * self._c1 + tr * self._c2
            self._atr = a
            return a
        s = self._sum + tr
        n = self._n + 1
        if n == p:
            a = self._atr = s / p
            return a
        self._n = n
        self._sum = s
        return NAN


@kernel
def atr_norm(h, low, c, out, period, norm):  # noqa: ANN001
    """ATR (Wilder); with ``norm``, NATR (percent of close) in the same pass: one read of the inputs."""
    n = h.shape[0]
    if n <= period:
        return
    s = 0.0
    for i in range(1, period + 1):
        pc = c[i - 1]
        r = h[i] - low[i]
        v = abs(pc - h[i])
        if v > r:
            r = v
        v = abs(pc - low[i])
        if v > r:
            r = v
        s += r
    a = s / period
    out[period] = a if not norm else ((a / c[period]) * 100.0 if c[period] != 0.0 else 0.0)
    c1 = (period - 1) / period
    c2 = 1.0 / period
    for i in range(period + 1, n):
        pc = c[i - 1]
        r = h[i] - low[i]
        v = abs(pc - h[i])
        if v > r:
            r = v
        v = abs(pc - low[i])
        if v > r:
            r = v
        a = a * c1 + r * c2
        if norm:
            out[i] = (a / c[i]) * 100.0 if c[i] != 0.0 else 0.0
        else:
            out[i] = a


@kernel
def atr_kernel(h, low, c, out, period):  # noqa: ANN001
    atr_norm(h, low, c, out, period, False)


@kernel
def natr_kernel(h, low, c, out, period):  # noqa: ANN001
    atr_norm(h, low, c, out, period, True)


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> ArrayLike:
    """Average true range, Wilder smoothing (TA-Lib ATR). Warm-up ``period``."""
    ind = ATR(period)
    return run(atr_kernel, (high, low, close), ind.params, (ind.warmup,))


class NATR(Indicator):
    """Normalised ATR, ``ATR / close * 100`` (TA-Lib ``NATR``; 0 when close is 0). Warm-up ``period``.

    ``period`` >= 2: TA-Lib's NATR(1) returns the raw true range, not a percentage.
    """

    __slots__ = ("_atr", "params", "period", "warmup")
    inputs = ("high", "low", "close")
    outputs = ("natr",)

    def __init__(self, period: int = 14) -> None:
        self._atr = ATR(check_int("period", period, 2))
        self.period = self._atr.period
        self.params = (self.period,)
        self.warmup = self.period

    def step(self, high: float, low: float, close: float) -> float:
        a = self._atr.step(high, low, close)
        if a != a:
            return NAN
        return (a / close) * 100.0 if close != 0.0 else 0.0


def natr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> ArrayLike:
    """Normalised ATR in percent of close (TA-Lib NATR). Warm-up ``period``."""
    ind = NATR(period)
    return run(natr_kernel, (high, low, close), ind.params, (ind.warmup,))


class Keltner(Indicator):
    """Keltner channel (no TA-Lib equivalent; TradingView's defaults) -> ``KeltnerResult(upper, middle, lower)``.

    middle = EMA(close, ``period``) (SMA-seeded like TA-Lib's EMA), upper/lower = middle ±
    ``multiplier`` * ATR(``atr_period``) (Wilder, TA-Lib's ATR). Warm-up ``max(period - 1, atr_period)``.
    """

    __slots__ = ("_atr", "_ema", "atr_period", "multiplier", "params", "period", "warmup")
    inputs = ("high", "low", "close")
    outputs = ("upper", "middle", "lower")
    result = KeltnerResult

    def __init__(self, period: int = 20, multiplier: float = 2.0, atr_period: int = 10) -> None:
        self._ema = EMA(check_int("period", period, 2))
        m = check_positive("multiplier", multiplier)
        self._atr = ATR(check_int("atr_period", atr_period, 1))
        self.period, self.multiplier, self.atr_period = self._ema.period, m, self._atr.period
        self.params = (self.period, m, self.atr_period)
        self.warmup = max(self.period - 1, self.atr_period)

    def step(self, high: float, low: float, close: float) -> KeltnerResult:
        mid = self._ema.step(close)
        a = self._atr.step(high, low, close)
        if mid != mid or a != a:
            return self.nan
        w = self.multiplier * a
        return KeltnerResult(mid + w, mid, mid - w)


@kernel
def keltner_kernel(h, low, c, up, mid, lo, a, period, mult, atr_period):  # noqa: ANN001
    """Scratch: a (ATR). The EMA is built in mid, then its head reset to NaN."""
    n = h.shape[0]
    ema_into(c, mid, period, 0)
    atr_kernel(h, low, c, a, atr_period)
    first = max(period - 1, atr_period)
    for i in range(first, n):
        w = mult * a[i]
        up[i] = mid[i] + w
        lo[i] = mid[i] - w
    for i in range(period - 1, min(first, n)):
        mid[i] = np.nan


def keltner(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 20, multiplier: float = 2.0, atr_period: int = 10
) -> KeltnerResult:
    """Keltner channel -> ``KeltnerResult(upper, middle, lower)``: EMA(period) ± multiplier*ATR(atr_period)."""
    ind = Keltner(period, multiplier, atr_period)
    outs = run(
        keltner_kernel, (high, low, close), ind.params, (ind.warmup,) * 3, scratch=1, names=KeltnerResult._fields
    )
    return KeltnerResult(*outs)


class SuperTrend(Indicator):
    """SuperTrend (no TA-Lib equivalent; TradingView's ``ta.supertrend``) -> ``SuperTrendResult``.

    Bands (h+l)/2 ± ``multiplier`` * ATR(``period``) (Wilder, TA-Lib's ATR), ratcheted: the
    upper band only falls and the lower only rises unless the previous close crossed them.
    The first defined bar starts down (line = upper band) as TradingView does; the direction
    flips up when close > upper band and down when close < lower band. ``direction`` is
    +1.0 up / -1.0 down. Warm-up ``period``.
    """

    __slots__ = ("_atr", "_dir", "_lower", "_pc", "_upper", "multiplier", "params", "period", "warmup")
    inputs = ("high", "low", "close")
    outputs = ("supertrend", "direction")
    result = SuperTrendResult

    def __init__(self, period: int = 10, multiplier: float = 3.0) -> None:
        self._atr = ATR(period)
        m = check_positive("multiplier", multiplier)
        self.period, self.multiplier = self._atr.period, m
        self.params = (self.period, m)
        self.warmup = self.period
        self._pc = NAN
        self._upper = self._lower = NAN
        self._dir = 0.0

    def step(self, high: float, low: float, close: float) -> SuperTrendResult:
        a = self._atr.step(high, low, close)
        pc = self._pc
        self._pc = close
        if a != a:
            return self.nan
        hl2 = (high + low) / 2.0
        w = self.multiplier * a
        up = hl2 + w
        lo = hl2 - w
        pu = self._upper
        if pu != pu:
            direction = -1.0
        else:
            pl = self._lower
            if not (up < pu or pc > pu):
                up = pu
            if not (lo > pl or pc < pl):
                lo = pl
            direction = (1.0 if close > up else -1.0) if self._dir < 0 else -1.0 if close < lo else 1.0
        self._upper = up
        self._lower = lo
        self._dir = direction
        return SuperTrendResult(lo if direction > 0 else up, direction)


@kernel
def supertrend_kernel(h, low, c, st, dirn, a, period, mult):  # noqa: ANN001
    """Scratch: a (ATR)."""
    n = h.shape[0]
    atr_kernel(h, low, c, a, period)
    pu = np.nan
    pl = np.nan
    d = 0.0
    for i in range(period, n):
        hl2 = (h[i] + low[i]) / 2.0
        w = mult * a[i]
        up = hl2 + w
        lo = hl2 - w
        if pu != pu:
            d = -1.0
        else:
            pc = c[i - 1]
            if not (up < pu or pc > pu):
                up = pu
            if not (lo > pl or pc < pl):
                lo = pl
            d = (1.0 if c[i] > up else -1.0) if d < 0 else -1.0 if c[i] < lo else 1.0
        pu = up
        pl = lo
        dirn[i] = d
        st[i] = lo if d > 0 else up


def supertrend(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 10, multiplier: float = 3.0
) -> SuperTrendResult:
    """SuperTrend -> ``SuperTrendResult(supertrend, direction)`` (TradingView's convention; see SuperTrend)."""
    ind = SuperTrend(period, multiplier)
    outs = run(
        supertrend_kernel, (high, low, close), ind.params, (ind.warmup,) * 2, scratch=1, names=SuperTrendResult._fields
    )
    return SuperTrendResult(*outs)


add_builtin("bbands", BBANDS, bbands)
add_builtin("atr", ATR, atr)
add_builtin("natr", NATR, natr)
add_builtin("keltner", Keltner, keltner)
add_builtin("supertrend", SuperTrend, supertrend)
