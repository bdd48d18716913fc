"""Moving averages: SMA, EMA, WMA, DEMA, TEMA (TA-Lib's recurrences), each as class, kernel and batch function.

Each class's ``step`` and its numba kernel run the same arithmetic operation for operation,
so the two forms agree to the last bit on the same bars.
"""

from __future__ import annotations

from collections import deque

from kit.indicators._base import NAN, Indicator, check_int
from kit.indicators._batch import ArrayLike, run
from kit.indicators._jit import kernel
from kit.indicators._registry import add_builtin

__all__ = ["DEMA", "EMA", "SMA", "TEMA", "WMA", "dema", "ema", "sma", "tema", "wma"]


class SMA(Indicator):
    """Simple moving average (TA-Lib ``SMA``): a running sum, like TA-Lib's. Warm-up ``period - 1``."""

    __slots__ = ("_buf", "_total", "params", "period", "warmup")
    outputs = ("sma",)

    def __init__(self, period: int = 30) -> None:
        p = check_int("period", period, 1)
        self.period = p
        self.params = (p,)
        self.warmup = p - 1
        self._buf: deque[float] = deque(maxlen=p)
        self._total = 0.0

    def step(self, x: float) -> float:
        buf = self._buf
        buf.append(x)
        total = self._total + x
        if len(buf) == self.period:
            self._total = total - buf[0]
            return total / self.period
        self._total = total
        return NAN


@kernel
def sma_kernel(x, out, period):  # noqa: ANN001
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i]
        if i >= period - 1:
            out[i] = total / period
            total -= x[i - period + 1]


def sma(close: ArrayLike, period: int = 30) -> ArrayLike:
    """Simple moving average (TA-Lib SMA). Warm-up ``period - 1``."""
    ind = SMA(period)
    return run(sma_kernel, (close,), ind.params, (ind.warmup,))


class EMA(Indicator):
    """Exponential moving average, k = 2/(period+1), seeded with the SMA of the first ``period`` values."""

    __slots__ = ("_k", "_n", "_sum", "_value", "params", "period", "warmup")
    outputs = ("ema",)

    def __init__(self, period: int = 30) -> None:
        p = check_int("period", period, 2)
        self.period = p
        self.params = (p,)
        self.warmup = p - 1
        self._k = 2.0 / (p + 1)
        self._n = 0
        self._sum = 0.0
        self._value = NAN

    def step(self, x: float) -> float:
        v = self._value
        if v == v:
            v = (x - v) * self._k + v
            self._value = v
            return v
        n = self._n + 1
        s = self._sum + x
        if n == self.period:
            v = s / n
            self._value = v
            return v
        self._n = n
        self._sum = s
        return NAN


@kernel
def ema_into(x, out, period, start):  # noqa: ANN001
    """EMA of x[start:], SMA-seeded: out[start+period-1] is the first value. Returns that index."""
    k = 2.0 / (period + 1)
    n = x.shape[0]
    if n - start < period:
        return n
    s = 0.0
    for i in range(start, start + period):
        s += x[i]
    v = s / period
    first = start + period - 1
    out[first] = v
    for i in range(first + 1, n):
        v = (x[i] - v) * k + v
        out[i] = v
    return first


@kernel
def ema_kernel(x, out, period):  # noqa: ANN001
    ema_into(x, out, period, 0)


def ema(close: ArrayLike, period: int = 30) -> ArrayLike:
    """EMA, k = 2/(period+1), seeded with the SMA of the first ``period`` values (TA-Lib EMA)."""
    ind = EMA(period)
    return run(ema_kernel, (close,), ind.params, (ind.warmup,))


class WMA(Indicator):
    """Linearly weighted moving average (TA-Lib ``WMA``). Warm-up ``period - 1``.

    TA-Lib's O(1) running-sum recurrence, with both sums recomputed from the window every
    ``period`` bars so rounding cannot drift over long series (O(1) amortised).
    """

    __slots__ = ("_buf", "_divider", "_n", "_sub", "_sum", "params", "period", "warmup")
    outputs = ("wma",)

    def __init__(self, period: int = 30) -> None:
        p = check_int("period", period, 2)
        self.period = p
        self.params = (p,)
        self.warmup = p - 1
        self._divider = float((p * (p + 1)) >> 1)
        self._buf: deque[float] = deque(maxlen=p)
        self._n = 0
        self._sub = 0.0
        self._sum = 0.0

    def step(self, x: float) -> float:
        buf = self._buf
        p = self.period
        n = self._n + 1
        self._n = n
        if n < p:
            buf.append(x)
            self._sub += x
            self._sum += x * n
            return NAN
        # TA-Lib: periodSub += x; periodSub -= trailing; periodSum += x*p; out; periodSum -= periodSub
        trailing = buf[0] if n > p else 0.0
        buf.append(x)
        sub = self._sub + x
        sub -= trailing
        s = self._sum + x * p
        out = s / self._divider
        if n % p == 0:  # resync: exact sums over the window, weights 0..p-1 for the next bar
            sub = 0.0
            s = 0.0
            for j, v in enumerate(buf):
                sub += v
                s += v * j
            self._sum = s
        else:
            self._sum = s - sub
        self._sub = sub
        return out


@kernel
def wma_kernel(x, out, period):  # noqa: ANN001
    n = x.shape[0]
    divider = float((period * (period + 1)) >> 1)
    sub = 0.0
    s = 0.0
    m = min(period - 1, n)
    for i in range(m):
        sub += x[i]
        s += x[i] * (i + 1)
    for i in range(period - 1, n):
        trailing = x[i - period] if i >= period else 0.0
        sub += x[i]
        sub -= trailing
        s += x[i] * period
        out[i] = s / divider
        if (i + 1) % period == 0:
            sub = 0.0
            s = 0.0
            for j in range(period):
                v = x[i - period + 1 + j]
                sub += v
                s += v * j
        else:
            s -= sub


def wma(close: ArrayLike, period: int = 30) -> ArrayLike:
    """Linearly weighted moving average (TA-Lib WMA). Warm-up ``period - 1``."""
    ind = WMA(period)
    return run(wma_kernel, (close,), ind.params, (ind.warmup,))


class DEMA(Indicator):
    """Double EMA, 2*EMA - EMA(EMA) (TA-Lib ``DEMA``). Warm-up ``2*(period-1)``."""

    __slots__ = ("_e1", "_e2", "params", "period", "warmup")
    outputs = ("dema",)

    def __init__(self, period: int = 30) -> None:
        p = check_int("period", period, 2)
        self.period = p
        self.params = (p,)
        self.warmup = 2 * (p - 1)
        self._e1 = EMA(p)
        self._e2 = EMA(p)

    def step(self, x: float) -> float:
        a = self._e1.step(x)
        if a != a:
            return NAN
        b = self._e2.step(a)
        if b != b:
            return NAN
        return (2.0 * a) - b


@kernel
def dema_kernel(x, out, period):  # noqa: ANN001
    """One pass with both EMAs' state in registers (no temporaries)."""
    n = x.shape[0]
    k = 2.0 / (period + 1)
    m = period - 1
    s1 = 0.0
    s2 = 0.0
    e1 = 0.0
    e2 = 0.0
    for i in range(n):
        v = x[i]
        if i < m:
            s1 += v
            continue
        e1 = (s1 + v) / period if i == m else (v - e1) * k + e1
        j = i - m
        if j < m:
            s2 += e1
            continue
        e2 = (s2 + e1) / period if j == m else (e1 - e2) * k + e2
        out[i] = (2.0 * e1) - e2


def dema(close: ArrayLike, period: int = 30) -> ArrayLike:
    """Double EMA (TA-Lib DEMA). Warm-up ``2*(period-1)``."""
    ind = DEMA(period)
    return run(dema_kernel, (close,), ind.params, (ind.warmup,))


class TEMA(Indicator):
    """Triple EMA, 3*EMA - 3*EMA(EMA) + EMA(EMA(EMA)) (TA-Lib ``TEMA``). Warm-up ``3*(period-1)``."""

    __slots__ = ("_e1", "_e2", "_e3", "params", "period", "warmup")
    outputs = ("tema",)

    def __init__(self, period: int = 30) -> None:
        p = check_int("period", period, 2)
        self.period = p
        self.params = (p,)
        self.warmup = 3 * (p - 1)
        self._e1 = EMA(p)
        self._e2 = EMA(p)
        self._e3 = EMA(p)

    def step(self, x: float) -> float:
        a = self._e1.step(x)
        if a != a:
            return NAN
        b = self._e2.step(a)
        if b != b:
            return NAN
        c = self._e3.step(b)
        if c != c:
            return NAN
        return (3.0 * a) - (3.0 * b) + c


@kernel
def tema_kernel(x, out, period):  # noqa: ANN001
    n = x.shape[0]
    k = 2.0 / (period + 1)
    m = period - 1
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    e1 = 0.0
    e2 = 0.0
    e3 = 0.0
    for i in range(n):
        v = x[i]
        if i < m:
            s1 += v
            continue
        e1 = (s1 + v) / period if i == m else (v - e1) * k + e1
        j = i - m
        if j < m:
            s2 += e1
            continue
        e2 = (s2 + e1) / period if j == m else (e1 - e2) * k + e2
        q = j - m
        if q < m:
            s3 += e2
            continue
        e3 = (s3 + e2) / period if q == m else (e2 - e3) * k + e3
        out[i] = (3.0 * e1) - (3.0 * e2) + e3


def tema(close: ArrayLike, period: int = 30) -> ArrayLike:
    """Triple EMA (TA-Lib TEMA). Warm-up ``3*(period-1)``."""
    ind = TEMA(period)
    return run(tema_kernel, (close,), ind.params, (ind.warmup,))


add_builtin("sma", SMA, sma)
add_builtin("ema", EMA, ema)
add_builtin("wma", WMA, wma)
add_builtin("dema", DEMA, dema)
add_builtin("tema", TEMA, tema)
