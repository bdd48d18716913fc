"""Incremental (streaming) indicators: one ``update`` per bar, O(1) time, bounded memory.

Every class mirrors the arithmetic of its batch kernel in :mod:`kit.indicators._kernels`
operation for operation, so ``update`` over a series equals the batch function over it;
both follow TA-Lib's recurrences (SMA-seeded EMAs, Wilder smoothing, running sums).

Conventions shared by all classes (see :class:`~kit.indicators._base.Indicator`):

- ``update(*bar)`` takes one bar's inputs in the batch function's order and returns the
  new value, NaN during warm-up (``warmup`` leading values), a NamedTuple for
  multi-output indicators;
- ``peek(*bar)`` returns the value for a forming candle without changing the state;
- a bar with NaN in any input is skipped: NaN out, state unchanged;
- ``copy()`` snapshots the state, ``reset()`` restarts it.

Rolling extremes (STOCH, WILLR, STOCHRSI, Donchian) use monotonic deques: amortised O(1).
CCI's mean absolute deviation has no exact O(1) form: its update is O(period) like TA-Lib's.
"""

from __future__ import annotations

import math
from collections import deque

from kit.indicators._base import NAN, Indicator, check_int, check_positive
from kit.indicators.results import (
    BBandsResult,
    DonchianResult,
    KeltnerResult,
    MACDResult,
    StochResult,
    SuperTrendResult,
)

_sqrt = math.sqrt
_MACD_NAN = MACDResult(NAN, NAN, NAN)
_BB_NAN = BBandsResult(NAN, NAN, NAN)
_STOCH_NAN = StochResult(NAN, NAN)
_DON_NAN = DonchianResult(NAN, NAN, NAN)
_KC_NAN = KeltnerResult(NAN, NAN, NAN)
_ST_NAN = SuperTrendResult(NAN, NAN)


# --------------------------------------------------------------------------- moving averages


class SMA(Indicator):
    """Simple moving average (TA-Lib ``SMA``): a running sum, like TA-Lib's. Warm-up ``period - 1``."""

    __slots__ = ("_buf", "_total", "params", "period", "warmup")
    outputs = ("sma",)

    def __init__(self, period: int = 30) -> None:
        p = check_int("period", period, 2)
        self.period = p
        self.params = (p,)
        self.warmup = p - 1
        self._buf: deque[float] = deque(maxlen=p)
        self._total = 0.0

    def update(self, x: float) -> float:
        if x != x:
            return NAN
        buf = self._buf
        buf.append(x)
        total = self._total + x
        if len(buf) == self.period:
            self._total = total - buf[0]
            return total / self.period
        self._total = total
        return NAN


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

    def update(self, x: float) -> float:
        if x != x:
            return NAN
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


class WMA(Indicator):
    """Linearly weighted moving average (TA-Lib ``WMA``, its running-sum recurrence). Warm-up ``period - 1``."""

    __slots__ = ("_buf", "_divider", "_sub", "_sum", "params", "period", "warmup")
    outputs = ("wma",)

    def __init__(self, period: int = 30) -> None:
        p = check_int("period", period, 2)
        self.period = p
        self.params = (p,)
        self.warmup = p - 1
        self._divider = float((p * (p + 1)) >> 1)
        self._buf: deque[float] = deque(maxlen=p)
        self._sub = 0.0
        self._sum = 0.0

    def update(self, x: float) -> float:
        if x != x:
            return NAN
        buf = self._buf
        p = self.period
        n = len(buf)
        if n < p - 1:
            buf.append(x)
            self._sub += x
            self._sum += x * (n + 1)
            return NAN
        # TA-Lib: periodSub += x; periodSub -= trailing; periodSum += x*p; out; periodSum -= periodSub
        trailing = buf[0] if n == p else 0.0
        buf.append(x)
        sub = self._sub + x
        sub -= trailing
        s = self._sum + x * p
        out = s / self._divider
        self._sum = s - sub
        self._sub = sub
        return out


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

    def update(self, x: float) -> float:
        if x != x:
            return NAN
        a = self._e1.update(x)
        if a != a:
            return NAN
        b = self._e2.update(a)
        if b != b:
            return NAN
        return (2.0 * a) - b


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

    def update(self, x: float) -> float:
        if x != x:
            return NAN
        a = self._e1.update(x)
        if a != a:
            return NAN
        b = self._e2.update(a)
        if b != b:
            return NAN
        c = self._e3.update(b)
        if c != c:
            return NAN
        return (3.0 * a) - (3.0 * b) + c


# --------------------------------------------------------------------------- momentum


class RSI(Indicator):
    """Relative strength index with Wilder smoothing (TA-Lib ``RSI``). Warm-up ``period``.

    The first value averages the first ``period`` changes; then gain and loss are smoothed as
    ``(prev*(period-1) + x)/period``. 0 when there was neither gain nor loss (TA-Lib's convention).
    """

    __slots__ = ("_gain", "_loss", "_n", "_prev", "params", "period", "warmup")
    outputs = ("rsi",)

    def __init__(self, period: int = 14) -> None:
        p = check_int("period", period, 2)
        self.period = p
        self.params = (p,)
        self.warmup = p
        self._prev = NAN
        self._n = 0
        self._gain = 0.0
        self._loss = 0.0

    def update(self, x: float) -> float:
        if x != x:
            return NAN
        prev = self._prev
        self._prev = x
        if prev != prev:
            return NAN
        d = x - prev
        p = self.period
        n = self._n
        if n >= p:
            gain = self._gain * (p - 1)
            loss = self._loss * (p - 1)
            if d < 0:
                loss -= d
            else:
                gain += d
            gain /= p
            loss /= p
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

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        f = check_int("fast", fast, 2)
        s = check_int("slow", slow, 2)
        g = check_int("signal", signal, 1)
        if f > s:
            raise ValueError(f"fast must not exceed slow, got fast={f} slow={s}")
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

    def update(self, x: float) -> MACDResult:
        if x != x:
            return _MACD_NAN
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
                return _MACD_NAN
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
                return _MACD_NAN
            g = gs / gn
        self._sig = g
        return MACDResult(m, g, m - g)


# --------------------------------------------------------------------------- volatility


class BBANDS(Indicator):
    """Bollinger Bands (TA-Lib ``BBANDS`` with an SMA): middle ± nbdev * population stddev.

    The stddev is TA-Lib's running ``sqrt(E[x²] - E[x]²)`` (0 when that is not positive).
    ``nbdevdn`` defaults to ``nbdevup``. Warm-up ``period - 1``.
    """

    __slots__ = ("_buf", "_t", "_t2", "nbdevdn", "nbdevup", "params", "period", "warmup")
    outputs = ("upper", "middle", "lower")

    def __init__(self, period: int = 5, nbdevup: float = 2.0, nbdevdn: float | None = None) -> None:
        p = check_int("period", period, 2)
        up = check_positive("nbdevup", nbdevup)
        dn = up if nbdevdn is None else check_positive("nbdevdn", nbdevdn)
        self.period, self.nbdevup, self.nbdevdn = p, up, dn
        self.params = (p, up, dn)
        self.warmup = p - 1
        self._buf: deque[float] = deque(maxlen=p)
        self._t = 0.0
        self._t2 = 0.0

    def update(self, x: float) -> BBandsResult:
        if x != x:
            return _BB_NAN
        buf = self._buf
        buf.append(x)
        t = self._t + x
        t2 = self._t2 + x * x
        p = self.period
        if len(buf) < p:
            self._t = t
            self._t2 = t2
            return _BB_NAN
        old = buf[0]
        self._t = t - old
        self._t2 = t2 - old * old
        mid = t / p
        var = t2 / p - mid * mid
        sd = _sqrt(var) if var > 0.0 else 0.0
        return BBandsResult(mid + sd * self.nbdevup, mid, mid - sd * self.nbdevdn)


def _true_range(h: float, low: float, pc: float) -> float:
    tr = h - low
    v = abs(pc - h)
    if v > tr:
        tr = v
    v = abs(pc - low)
    if v > tr:
        tr = v
    return tr


class ATR(Indicator):
    """Average true range with Wilder smoothing, seeded with the SMA of the first ``period`` true ranges.

    The first bar has no true range (no previous close). Warm-up ``period`` (TA-Lib ``ATR``).
    """

    __slots__ = ("_atr", "_n", "_pc", "_sum", "params", "period", "warmup")
    inputs = ("high", "low", "close")
    outputs = ("atr",)

    def __init__(self, period: int = 14) -> None:
        p = check_int("period", period, 1)
        self.period = p
        self.params = (p,)
        self.warmup = p
        self._pc = NAN
        self._n = 0
        self._sum = 0.0
        self._atr = NAN

    def update(self, high: float, low: float, close: float) -> float:
        if high != high or low != low or close != close:
            return NAN
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
            a = (a * (p - 1) + tr) / p
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


__all__ = ["ATR", "BBANDS", "DEMA", "EMA", "MACD", "RSI", "SMA", "TEMA", "WMA"]
