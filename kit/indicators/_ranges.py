"""Rolling extremes: STOCH, STOCHRSI, WILLR, Donchian, each as class, kernel and batch function.

The incremental forms keep the window's highest and lowest values in monotonic deques
(amortised O(1)); the kernels use the van Herk / Gil-Werman block scan (O(1) per bar).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from kit.indicators._averages import SMA, sma_kernel
from kit.indicators._base import NAN, Indicator, check_int
from kit.indicators._batch import ArrayLike, run
from kit.indicators._jit import kernel
from kit.indicators._momentum import EPS, RSI, rsi_kernel
from kit.indicators._registry import add_builtin
from kit.indicators.results import DonchianResult, StochResult

__all__ = ["STOCH", "STOCHRSI", "WILLR", "Donchian", "donchian", "stoch", "stochrsi", "willr"]


class _RollingMax:
    """Maximum of the last ``period`` values (monotonic deque, amortised O(1))."""

    __slots__ = ("_dq", "_t", "period")

    def __init__(self, period: int, dq: deque[tuple[int, float]] | None = None, t: int = 0) -> None:
        self.period = period
        self._dq: deque[tuple[int, float]] = deque() if dq is None else dq
        self._t = t

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
        return type(self)(self.period, deque(self._dq), self._t)


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


@kernel
def rolling_max_min(hi, lo, period, hh, ll):  # noqa: ANN001
    """hh[i] = max(hi[i-period+1 .. i]) and ll[i] = min(lo[...]) for i >= period - 1.

    Van Herk / Gil-Werman, block by block (TA-Lib 0.8 uses the same scan): the suffix extrema
    of one block (in a ``period``-sized buffer) combined with the running prefix extrema of
    the next; O(1) per bar whatever the data, two reads of the input.
    """
    n = hi.shape[0]
    p = period
    suf_h = np.empty(p)
    suf_l = np.empty(p)
    for start in range(0, n, p):
        end = min(start + p, n)
        sh = hi[end - 1]
        sl = lo[end - 1]
        for i in range(end - 1, start - 1, -1):
            if hi[i] > sh:
                sh = hi[i]
            if lo[i] < sl:
                sl = lo[i]
            suf_h[i - start] = sh
            suf_l[i - start] = sl
        if end - start < p:
            break
        hh[end - 1] = suf_h[0]  # a window that is exactly this block
        ll[end - 1] = suf_l[0]
        ph = 0.0
        pl = 0.0
        for m in range(p - 1):  # windows ending inside the next block
            i = end + m
            if i >= n:
                break
            if m == 0 or hi[i] > ph:
                ph = hi[i]
            if m == 0 or lo[i] < pl:
                pl = lo[i]
            x = suf_h[m + 1]
            hh[i] = x if x > ph else ph
            x = suf_l[m + 1]
            ll[i] = x if x < pl else pl


@kernel
def fast_k(h, low, c, fastk, fk, hh, ll):  # noqa: ANN001
    n = h.shape[0]
    rolling_max_min(h, low, fastk, hh, ll)
    for i in range(fastk - 1, n):
        rng = hh[i] - ll[i]
        fk[i] = 0.0 if abs(rng) <= EPS * (abs(hh[i]) + abs(ll[i])) else ((c[i] - ll[i]) / rng) * 100.0


class STOCH(Indicator):
    """Slow stochastic (TA-Lib ``STOCH`` with SMA smoothing) -> ``StochResult(k, d)``.

    fast %K = 100 * (close - lowest low) / (highest high - lowest low) over ``fastk`` bars
    (0 when the range is 0), slow %K = SMA(fast %K, ``slowk``), slow %D = SMA(slow %K, ``slowd``).
    Warm-up ``fastk + slowk + slowd - 3``; both outputs start together, as in TA-Lib.
    """

    __slots__ = ("_d", "_hi", "_k", "_lo", "_n", "fastk", "params", "slowd", "slowk", "warmup")
    inputs = ("high", "low", "close")
    outputs = ("k", "d")
    result = StochResult

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

    def step(self, high: float, low: float, close: float) -> StochResult:
        hh = self._hi.push(high)
        ll = self._lo.push(low)
        n = self._n + 1
        self._n = n
        if n < self.fastk:
            return self.nan
        rng = hh - ll
        fk = 0.0 if abs(rng) <= EPS * (abs(hh) + abs(ll)) else ((close - ll) / rng) * 100.0
        k = self._k.step(fk)
        if k != k:
            return self.nan
        d = self._d.step(k)
        if d != d:
            return self.nan
        return StochResult(k, d)


@kernel
def stoch_kernel(h, low, c, k_out, d_out, fk, hh, ll, fastk, slowk, slowd):  # noqa: ANN001
    """Scratch: fk, hh, ll (n each). Slow %K is built in k_out, then its head reset to NaN."""
    n = h.shape[0]
    if n < fastk:
        return
    fast_k(h, low, c, fastk, fk, hh, ll)
    s0 = fastk - 1 + slowk - 1
    sma_kernel(fk[fastk - 1 :], k_out[fastk - 1 :], slowk)
    if s0 >= n:
        return
    sma_kernel(k_out[s0:], d_out[s0:], slowd)
    first = s0 + slowd - 1
    for i in range(s0, min(first, n)):
        k_out[i] = np.nan


def stoch(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, fastk: int = 5, slowk: int = 3, slowd: int = 3
) -> StochResult:
    """Slow stochastic -> ``StochResult(k, d)`` (TA-Lib STOCH, SMA smoothing). Warm-up ``fastk+slowk+slowd-3``."""
    ind = STOCH(fastk, slowk, slowd)
    outs = run(stoch_kernel, (high, low, close), ind.params, (ind.warmup,) * 2, scratch=3, names=StochResult._fields)
    return StochResult(*outs)


class STOCHRSI(Indicator):
    """Stochastic RSI (TA-Lib ``STOCHRSI``): fast stochastic of RSI(``period``) -> ``StochResult(k, d)``.

    k = 100 * (rsi - min rsi) / (max rsi - min rsi) over ``fastk`` bars (0 when flat),
    d = SMA(k, ``fastd``). Warm-up ``period + fastk + fastd - 2``.
    """

    __slots__ = ("_d", "_hi", "_lo", "_n", "_rsi", "fastd", "fastk", "params", "period", "warmup")
    outputs = ("k", "d")
    result = StochResult

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

    def step(self, x: float) -> StochResult:
        r = self._rsi.step(x)
        if r != r:
            return self.nan
        hh = self._hi.push(r)
        ll = self._lo.push(r)
        n = self._n + 1
        self._n = n
        if n < self.fastk:
            return self.nan
        rng = hh - ll
        k = 0.0 if abs(rng) <= EPS * (abs(hh) + abs(ll)) else ((r - ll) / rng) * 100.0
        d = self._d.step(k)
        if d != d:
            return self.nan
        return StochResult(k, d)


@kernel
def stochrsi_kernel(x, k_out, d_out, r, kb, hh, ll, period, fastk, fastd):  # noqa: ANN001
    """Scratch: r (RSI), kb (fast %K), hh, ll (n each)."""
    n = x.shape[0]
    if n <= period:
        return
    rsi_kernel(x, r, period)
    m = n - period
    if m < fastk:
        return
    rr = r[period:]
    fast_k(rr, rr, rr, fastk, kb[:m], hh[:m], ll[:m])
    sma_kernel(kb[fastk - 1 : m], d_out[period + fastk - 1 :], fastd)
    for i in range(fastk - 1 + fastd - 1, m):
        k_out[period + i] = kb[i]


def stochrsi(close: ArrayLike, period: int = 14, fastk: int = 5, fastd: int = 3) -> StochResult:
    """Stochastic RSI -> ``StochResult(k, d)`` (TA-Lib STOCHRSI's fastk, fastd). Warm-up ``period+fastk+fastd-2``."""
    ind = STOCHRSI(period, fastk, fastd)
    outs = run(stochrsi_kernel, (close,), ind.params, (ind.warmup,) * 2, scratch=4, names=StochResult._fields)
    return StochResult(*outs)


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

    def step(self, high: float, low: float, close: float) -> float:
        hh = self._hi.push(high)
        ll = self._lo.push(low)
        n = self._n + 1
        self._n = n
        if n < self.period:
            return NAN
        rng = hh - ll
        if abs(rng) <= EPS * (abs(hh) + abs(ll)):
            return 0.0
        r = ((hh - close) / rng) * -100.0
        return 0.0 if r > 0.0 else (-100.0 if r < -100.0 else r)


@kernel
def willr_kernel(h, low, c, out, hh, ll, period):  # noqa: ANN001
    """Scratch: hh, ll (n each)."""
    n = h.shape[0]
    rolling_max_min(h, low, period, hh, ll)
    for i in range(period - 1, n):
        rng = hh[i] - ll[i]
        if abs(rng) <= EPS * (abs(hh[i]) + abs(ll[i])):
            out[i] = 0.0
        else:
            r = ((hh[i] - c[i]) / rng) * -100.0
            out[i] = 0.0 if r > 0.0 else (-100.0 if r < -100.0 else r)


def willr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> ArrayLike:
    """Williams %R in [-100, 0] (TA-Lib WILLR). Warm-up ``period - 1``."""
    ind = WILLR(period)
    return run(willr_kernel, (high, low, close), ind.params, (ind.warmup,), scratch=2)


class Donchian(Indicator):
    """Donchian channel (no TA-Lib equivalent) -> ``DonchianResult(upper, middle, lower)``.

    upper = highest high and lower = lowest low of the last ``period`` bars *including* the
    current one; middle = (upper + lower) / 2. Warm-up ``period - 1``. Inputs (high, low).
    """

    __slots__ = ("_hi", "_lo", "_n", "params", "period", "warmup")
    inputs = ("high", "low")
    outputs = ("upper", "middle", "lower")
    result = DonchianResult

    def __init__(self, period: int = 20) -> None:
        p = check_int("period", period, 1)
        self.period = p
        self.params = (p,)
        self.warmup = p - 1
        self._hi = _RollingMax(p)
        self._lo = _RollingMin(p)
        self._n = 0

    def step(self, high: float, low: float) -> DonchianResult:
        hh = self._hi.push(high)
        ll = self._lo.push(low)
        n = self._n + 1
        self._n = n
        if n < self.period:
            return self.nan
        return DonchianResult(hh, (hh + ll) / 2.0, ll)


@kernel
def donchian_kernel(h, low, up, mid, lo, period):  # noqa: ANN001
    rolling_max_min(h, low, period, up, lo)
    for i in range(period - 1, h.shape[0]):
        mid[i] = (up[i] + lo[i]) / 2.0


def donchian(high: ArrayLike, low: ArrayLike, period: int = 20) -> DonchianResult:
    """Donchian channel -> ``DonchianResult(upper, middle, lower)``; window includes the current bar."""
    ind = Donchian(period)
    outs = run(donchian_kernel, (high, low), ind.params, (ind.warmup,) * 3, names=DonchianResult._fields)
    return DonchianResult(*outs)


add_builtin("stoch", STOCH, stoch)
add_builtin("stochrsi", STOCHRSI, stochrsi)
add_builtin("willr", WILLR, willr)
add_builtin("donchian", Donchian, donchian)
