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
#: TA-Lib's relative dead-zone (TA_IS_ZERO_SCALED): |v| <= 1e-14 * scale counts as zero
_EPS = 1e-14
#: BBANDS: when E[(x-K)²] exceeds the variance by this factor, the shifted sums lost too many digits
_ILL = 1e5
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
        p = check_int("period", period, 1)
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

    def update(self, x: float) -> float:
        if x != x:
            return NAN
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

    def update(self, x: float) -> float:
        if x != x:
            return NAN
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

    The middle band is TA-Lib's running-sum SMA. The variance uses running sums of
    ``x - K`` and ``(x - K)²`` with the shift ``K`` reset to the window mean and the sums
    recomputed every ``period`` bars, and at once when they lost digits (an outlier leaving
    the window): accurate at any price level, drift-free, O(1) amortised. 0 when the
    variance is not positive. ``nbdevdn`` defaults to
    ``nbdevup``. Warm-up ``period - 1``.
    """

    __slots__ = ("_buf", "_k", "_n", "_s1", "_s2", "_t", "nbdevdn", "nbdevup", "params", "period", "warmup")
    outputs = ("upper", "middle", "lower")

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

    def update(self, x: float) -> BBandsResult:
        if x != x:
            return _BB_NAN
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
            return _BB_NAN
        old = buf[0]
        self._t = t - old
        mid = t / p
        m1 = s1 / p
        var = s2 / p - m1 * m1
        if s2 / p > _ILL * var:  # cancellation (e.g. an outlier left the window): redo around the mean
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

    def update(self, high: float, low: float, close: float) -> float:
        a = self._atr.update(high, low, close)
        if a != a:
            return NAN
        return (a / close) * 100.0 if close != 0.0 else 0.0


# --------------------------------------------------------------------------- rolling extremes


class _RollingMax:
    """Maximum of the last ``period`` values (monotonic deque, amortised O(1))."""

    __slots__ = ("_dq", "_t", "period")

    def __init__(self, period: int) -> None:
        self.period = period
        self._dq: deque[tuple[int, float]] = deque()
        self._t = 0

    def push(self, v: float) -> float:
        dq = self._dq
        t = self._t
        self._t = t + 1
        while dq and dq[-1][1] <= v:
            dq.pop()
        dq.append((t, v))
        if dq[0][0] <= t - self.period:
            dq.popleft()
        return dq[0][1]

    def copy(self) -> _RollingMax:
        new = _RollingMax(self.period)
        new._dq = deque(self._dq)
        new._t = self._t
        return new


class _RollingMin(_RollingMax):
    """Minimum of the last ``period`` values."""

    __slots__ = ()

    def push(self, v: float) -> float:
        dq = self._dq
        t = self._t
        self._t = t + 1
        while dq and dq[-1][1] >= v:
            dq.pop()
        dq.append((t, v))
        if dq[0][0] <= t - self.period:
            dq.popleft()
        return dq[0][1]

    def copy(self) -> _RollingMin:
        new = _RollingMin(self.period)
        new._dq = deque(self._dq)
        new._t = self._t
        return new


class STOCH(Indicator):
    """Slow stochastic (TA-Lib ``STOCH`` with SMA smoothing) -> ``StochResult(k, d)``.

    fast %K = 100 * (close - lowest low) / (highest high - lowest low) over ``fastk`` bars
    (0 when the range is 0), slow %K = SMA(fast %K, ``slowk``), slow %D = SMA(slow %K, ``slowd``).
    Warm-up ``fastk + slowk + slowd - 3``; both outputs start together, as in TA-Lib.
    """

    __slots__ = ("_d", "_hi", "_k", "_lo", "_n", "fastk", "params", "slowd", "slowk", "warmup")
    inputs = ("high", "low", "close")
    outputs = ("k", "d")

    def __init__(self, fastk: int = 5, slowk: int = 3, slowd: int = 3) -> None:
        fk = check_int("fastk", fastk, 1)
        sk = check_int("slowk", slowk, 1)
        sd = check_int("slowd", slowd, 1)
        self.fastk, self.slowk, self.slowd = fk, sk, sd
        self.params = (fk, sk, sd)
        self.warmup = fk + sk + sd - 3
        self._hi = _RollingMax(fk)
        self._lo = _RollingMin(fk)
        self._k = SMA(sk)
        self._d = SMA(sd)
        self._n = 0

    def update(self, high: float, low: float, close: float) -> StochResult:
        if high != high or low != low or close != close:
            return _STOCH_NAN
        hh = self._hi.push(high)
        ll = self._lo.push(low)
        n = self._n + 1
        self._n = n
        if n < self.fastk:
            return _STOCH_NAN
        rng = hh - ll
        fk = 0.0 if abs(rng) <= _EPS * (abs(hh) + abs(ll)) else ((close - ll) / rng) * 100.0
        k = self._k.update(fk)
        if k != k:
            return _STOCH_NAN
        d = self._d.update(k)
        if d != d:
            return _STOCH_NAN
        return StochResult(k, d)


class STOCHRSI(Indicator):
    """Stochastic RSI (TA-Lib ``STOCHRSI``): fast stochastic of RSI(``period``) -> ``StochResult(k, d)``.

    k = 100 * (rsi - min rsi) / (max rsi - min rsi) over ``fastk`` bars (0 when flat),
    d = SMA(k, ``fastd``). Warm-up ``period + fastk + fastd - 2``.
    """

    __slots__ = ("_d", "_hi", "_lo", "_n", "_rsi", "fastd", "fastk", "params", "period", "warmup")
    outputs = ("k", "d")

    def __init__(self, period: int = 14, fastk: int = 5, fastd: int = 3) -> None:
        self._rsi = RSI(period)
        fk = check_int("fastk", fastk, 1)
        fd = check_int("fastd", fastd, 1)
        self.period, self.fastk, self.fastd = self._rsi.period, fk, fd
        self.params = (self.period, fk, fd)
        self.warmup = self.period + fk + fd - 2
        self._hi = _RollingMax(fk)
        self._lo = _RollingMin(fk)
        self._d = SMA(fd)
        self._n = 0

    def update(self, x: float) -> StochResult:
        r = self._rsi.update(x)
        if r != r:
            return _STOCH_NAN
        hh = self._hi.push(r)
        ll = self._lo.push(r)
        n = self._n + 1
        self._n = n
        if n < self.fastk:
            return _STOCH_NAN
        rng = hh - ll
        k = 0.0 if abs(rng) <= _EPS * (abs(hh) + abs(ll)) else ((r - ll) / rng) * 100.0
        d = self._d.update(k)
        if d != d:
            return _STOCH_NAN
        return StochResult(k, d)


class WILLR(Indicator):
    """Williams %R (TA-Lib ``WILLR``): -100 * (highest - close) / (highest - lowest); 0 when flat."""

    __slots__ = ("_hi", "_lo", "_n", "params", "period", "warmup")
    inputs = ("high", "low", "close")
    outputs = ("willr",)

    def __init__(self, period: int = 14) -> None:
        p = check_int("period", period, 2)
        self.period = p
        self.params = (p,)
        self.warmup = p - 1
        self._hi = _RollingMax(p)
        self._lo = _RollingMin(p)
        self._n = 0

    def update(self, high: float, low: float, close: float) -> float:
        if high != high or low != low or close != close:
            return NAN
        hh = self._hi.push(high)
        ll = self._lo.push(low)
        n = self._n + 1
        self._n = n
        if n < self.period:
            return NAN
        rng = hh - ll
        if abs(rng) <= _EPS * (abs(hh) + abs(ll)):
            return 0.0
        r = ((hh - close) / rng) * -100.0
        return 0.0 if r > 0.0 else (-100.0 if r < -100.0 else r)


class Donchian(Indicator):
    """Donchian channel (no TA-Lib equivalent) -> ``DonchianResult(upper, middle, lower)``.

    upper = highest high and lower = lowest low of the last ``period`` bars *including* the
    current one; middle = (upper + lower) / 2. Warm-up ``period - 1``. Inputs (high, low).
    """

    __slots__ = ("_hi", "_lo", "_n", "params", "period", "warmup")
    inputs = ("high", "low")
    outputs = ("upper", "middle", "lower")

    def __init__(self, period: int = 20) -> None:
        p = check_int("period", period, 1)
        self.period = p
        self.params = (p,)
        self.warmup = p - 1
        self._hi = _RollingMax(p)
        self._lo = _RollingMin(p)
        self._n = 0

    def update(self, high: float, low: float) -> DonchianResult:
        if high != high or low != low:
            return _DON_NAN
        hh = self._hi.push(high)
        ll = self._lo.push(low)
        n = self._n + 1
        self._n = n
        if n < self.period:
            return _DON_NAN
        return DonchianResult(hh, (hh + ll) / 2.0, ll)


# --------------------------------------------------------------------------- other momentum


class CCI(Indicator):
    """Commodity channel index (TA-Lib ``CCI``) over the typical price (h+l+c)/3.

    (tp - mean) / (0.015 * mean absolute deviation); 0 when either is 0. The mean and the
    deviation are recomputed over a circular buffer in TA-Lib's order: O(period) per update.
    Warm-up ``period - 1``.
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

    def update(self, high: float, low: float, close: float) -> float:
        if high != high or low != low or close != close:
            return NAN
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
        zero = _EPS * abs(avg)
        if abs(t) <= zero or abs(dev) <= zero:
            return 0.0
        return t / (0.015 * dev)


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

    def update(self, high: float, low: float, close: float, volume: float) -> float:
        if high != high or low != low or close != close or volume != volume:
            return NAN
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
        mf = 0.0 if abs(d) <= _EPS * (abs(tp) + abs(prev)) else tp * volume
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

    def update(self, x: float) -> float:
        if x != x:
            return NAN
        buf = self._buf
        buf.append(x)
        if len(buf) <= self.period:
            return NAN
        old = buf[0]
        return ((x / old) - 1.0) * 100.0 if old != 0.0 else 0.0


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

    def update(self, close: float, volume: float) -> float:
        if close != close or volume != volume:
            return NAN
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


# --------------------------------------------------------------------------- directional movement


class _DMBase(Indicator):
    """Wilder's directional movement state shared by ADX, PLUS_DI and MINUS_DI (TA-Lib's recurrences)."""

    __slots__ = ("_c1", "_c2", "_mdm", "_n", "_pc", "_pdm", "_ph", "_pl", "_tr", "params", "period", "warmup")
    inputs = ("high", "low", "close")

    def _init_dm(self, period: int) -> None:
        p = check_int("period", period, 2)
        self.period = p
        self.params = (p,)
        self._c1 = (p - 1) / p  # Wilder: x - x/p == x*(p-1)/p, division hoisted out of the recurrence
        self._c2 = 1.0 / p
        self._n = 0
        self._ph = self._pl = self._pc = NAN
        self._pdm = self._mdm = self._tr = 0.0

    def _step(self, high: float, low: float, close: float) -> int:
        """Advance DM/TR; return the bar number (0 for the first bar)."""
        n = self._n
        self._n = n + 1
        if n == 0:
            self._ph, self._pl, self._pc = high, low, close
            return 0
        p = self.period
        diff_p = high - self._ph
        diff_m = self._pl - low
        self._ph = high
        self._pl = low
        pc = self._pc
        self._pc = close
        tr = high - low
        v = abs(high - pc)
        if v > tr:
            tr = v
        v = abs(low - pc)
        if v > tr:
            tr = v
        pdm = self._pdm
        mdm = self._mdm
        if n < p:
            if diff_m > 0 and diff_p < diff_m:
                mdm += diff_m
            elif diff_p > 0 and diff_p > diff_m:
                pdm += diff_p
            self._tr += tr
        else:
            c1 = self._c1
            mdm *= c1
            pdm *= c1
            if diff_m > 0 and diff_p < diff_m:
                mdm += diff_m
            elif diff_p > 0 and diff_p > diff_m:
                pdm += diff_p
            self._tr = self._tr * c1 + tr
        self._pdm = pdm
        self._mdm = mdm
        return n


class PLUS_DI(_DMBase):
    """Plus directional indicator, Wilder smoothing (TA-Lib ``PLUS_DI``). Warm-up ``period``."""

    __slots__ = ()
    outputs = ("plus_di",)

    def __init__(self, period: int = 14) -> None:
        self._init_dm(period)
        self.warmup = self.period

    def update(self, high: float, low: float, close: float) -> float:
        if high != high or low != low or close != close:
            return NAN
        if self._step(high, low, close) < self.period:
            return NAN
        tr = self._tr
        return 100.0 * (self._pdm / tr) if tr != 0.0 else 0.0


class MINUS_DI(_DMBase):
    """Minus directional indicator, Wilder smoothing (TA-Lib ``MINUS_DI``). Warm-up ``period``."""

    __slots__ = ()
    outputs = ("minus_di",)

    def __init__(self, period: int = 14) -> None:
        self._init_dm(period)
        self.warmup = self.period

    def update(self, high: float, low: float, close: float) -> float:
        if high != high or low != low or close != close:
            return NAN
        if self._step(high, low, close) < self.period:
            return NAN
        tr = self._tr
        return 100.0 * (self._mdm / tr) if tr != 0.0 else 0.0


class ADX(_DMBase):
    """Average directional index (TA-Lib ``ADX``): Wilder-smoothed DX, first value the mean of ``period`` DX.

    A bar whose true-range sum or DI sum is 0 leaves the ADX unchanged (TA-Lib). Warm-up ``2*period - 1``.
    """

    __slots__ = ("_adx", "_sum_dx")
    outputs = ("adx",)

    def __init__(self, period: int = 14) -> None:
        self._init_dm(period)
        self.warmup = 2 * self.period - 1
        self._sum_dx = 0.0
        self._adx = NAN

    def update(self, high: float, low: float, close: float) -> float:
        if high != high or low != low or close != close:
            return NAN
        n = self._step(high, low, close)
        p = self.period
        if n < p:
            return NAN
        tr = self._tr
        dx = NAN
        if tr != 0.0:
            mdi = 100.0 * (self._mdm / tr)
            pdi = 100.0 * (self._pdm / tr)
            s = mdi + pdi
            if s != 0.0:
                dx = 100.0 * (abs(mdi - pdi) / s)
        if n < 2 * p:
            if dx == dx:
                self._sum_dx += dx
            if n < 2 * p - 1:
                return NAN
            a = self._adx = self._sum_dx / p
            return a
        a = self._adx
        if dx == dx:
            a = self._adx = a * self._c1 + dx * self._c2
        return a


class SAR(Indicator):
    """Parabolic SAR (TA-Lib ``SAR``): ``acceleration`` step and cap ``maximum``. Warm-up 1. Inputs (high, low).

    The first direction is short when the second bar has a positive minus-DM, else long (TA-Lib).
    """

    __slots__ = ("_af", "_ep", "_long", "_n", "_ph", "_pl", "_sar", "acceleration", "maximum", "params", "warmup")
    inputs = ("high", "low")
    outputs = ("sar",)

    def __init__(self, acceleration: float = 0.02, maximum: float = 0.2) -> None:
        acc = check_positive("acceleration", acceleration)
        mx = check_positive("maximum", maximum)
        self.params = (acc, mx)
        if acc > mx:  # TA-Lib caps the step at the maximum
            acc = mx
        self.acceleration, self.maximum = acc, mx
        self.warmup = 1
        self._n = 0
        self._af = acc
        self._long = True
        self._ep = self._sar = self._ph = self._pl = NAN

    def update(self, high: float, low: float) -> float:
        if high != high or low != low:
            return NAN
        n = self._n
        if n == 0:
            self._n = 1
            self._ph, self._pl = high, low
            return NAN
        if n == 1:
            self._n = 2
            diff_m = self._pl - low
            diff_p = high - self._ph
            is_long = not (diff_m > 0 and diff_p < diff_m)
            if is_long:
                self._ep = high
                self._sar = self._pl
            else:
                self._ep = low
                self._sar = self._ph
            self._long = is_long
            prev_h, prev_l = high, low
        else:
            prev_h, prev_l = self._ph, self._pl
        self._ph, self._pl = high, low
        sar = self._sar
        ep = self._ep
        af = self._af
        acc = self.acceleration
        if self._long:
            if low <= sar:
                self._long = False
                sar = ep
                if sar < prev_h:
                    sar = prev_h
                if sar < high:
                    sar = high
                out = sar
                af = acc
                ep = low
                sar = sar + af * (ep - sar)
                if sar < prev_h:
                    sar = prev_h
                if sar < high:
                    sar = high
            else:
                out = sar
                if high > ep:
                    ep = high
                    af += acc
                    if af > self.maximum:
                        af = self.maximum
                sar = sar + af * (ep - sar)
                if sar > prev_l:
                    sar = prev_l
                if sar > low:
                    sar = low
        elif high >= sar:
            self._long = True
            sar = ep
            if sar > prev_l:
                sar = prev_l
            if sar > low:
                sar = low
            out = sar
            af = acc
            ep = high
            sar = sar + af * (ep - sar)
            if sar > prev_l:
                sar = prev_l
            if sar > low:
                sar = low
        else:
            out = sar
            if low < ep:
                ep = low
                af += acc
                if af > self.maximum:
                    af = self.maximum
            sar = sar + af * (ep - sar)
            if sar < prev_h:
                sar = prev_h
            if sar < high:
                sar = high
        self._sar = sar
        self._ep = ep
        self._af = af
        return out


# --------------------------------------------------------------------------- no TA-Lib equivalent


_DAY_MS = 86_400_000


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

    def update(self, high: float, low: float, close: float, volume: float, open_time: int) -> float:
        if high != high or low != low or close != close or volume != volume:
            return NAN
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


class Keltner(Indicator):
    """Keltner channel (no TA-Lib equivalent; TradingView's defaults) -> ``KeltnerResult(upper, middle, lower)``.

    middle = EMA(close, ``period``) (SMA-seeded like TA-Lib's EMA), upper/lower = middle ±
    ``multiplier`` * ATR(``atr_period``) (Wilder, TA-Lib's ATR). Warm-up ``max(period - 1, atr_period)``.
    """

    __slots__ = ("_atr", "_ema", "atr_period", "multiplier", "params", "period", "warmup")
    inputs = ("high", "low", "close")
    outputs = ("upper", "middle", "lower")

    def __init__(self, period: int = 20, multiplier: float = 2.0, atr_period: int = 10) -> None:
        self._ema = EMA(check_int("period", period, 2))
        m = check_positive("multiplier", multiplier)
        self._atr = ATR(check_int("atr_period", atr_period, 1))
        self.period, self.multiplier, self.atr_period = self._ema.period, m, self._atr.period
        self.params = (self.period, m, self.atr_period)
        self.warmup = max(self.period - 1, self.atr_period)

    def update(self, high: float, low: float, close: float) -> KeltnerResult:
        if high != high or low != low or close != close:
            return _KC_NAN
        mid = self._ema.update(close)
        a = self._atr.update(high, low, close)
        if mid != mid or a != a:
            return _KC_NAN
        w = self.multiplier * a
        return KeltnerResult(mid + w, mid, mid - w)


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

    def __init__(self, period: int = 10, multiplier: float = 3.0) -> None:
        self._atr = ATR(period)
        m = check_positive("multiplier", multiplier)
        self.period, self.multiplier = self._atr.period, m
        self.params = (self.period, m)
        self.warmup = self.period
        self._pc = NAN
        self._upper = self._lower = NAN
        self._dir = 0.0

    def update(self, high: float, low: float, close: float) -> SuperTrendResult:
        if high != high or low != low or close != close:
            return _ST_NAN
        a = self._atr.update(high, low, close)
        pc = self._pc
        self._pc = close
        if a != a:
            return _ST_NAN
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


__all__ = [
    "ADX",
    "ATR",
    "BBANDS",
    "CCI",
    "DEMA",
    "EMA",
    "MACD",
    "MFI",
    "MINUS_DI",
    "NATR",
    "OBV",
    "PLUS_DI",
    "ROC",
    "RSI",
    "SAR",
    "SMA",
    "STOCH",
    "STOCHRSI",
    "TEMA",
    "VWAP",
    "WILLR",
    "WMA",
    "Donchian",
    "Keltner",
    "SuperTrend",
]
