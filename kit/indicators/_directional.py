"""Direction: PLUS_DI, MINUS_DI, ADX (Wilder's directional movement) and the parabolic SAR.

The DMI kernel computes all three lines in one pass; each class keeps the one it returns.
SAR's per-bar rule is one function, :func:`sar_next`, called by the class's ``step`` as plain
Python and by the batch kernel compiled, so the two forms cannot drift apart.
"""

from __future__ import annotations

import numpy as np

from kit.indicators._base import NAN, Indicator, check_int, check_positive
from kit.indicators._batch import ArrayLike, run
from kit.indicators._jit import kernel
from kit.indicators._registry import add_builtin

__all__ = ["ADX", "MINUS_DI", "PLUS_DI", "SAR", "adx", "minus_di", "plus_di", "sar"]


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

    def _advance(self, high: float, low: float, close: float) -> int:
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

    def step(self, high: float, low: float, close: float) -> float:
        if self._advance(high, low, close) < self.period:
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

    def step(self, high: float, low: float, close: float) -> float:
        if self._advance(high, low, close) < self.period:
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

    def step(self, high: float, low: float, close: float) -> float:
        n = self._advance(high, low, close)
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


@kernel
def dmi_kernel(h, low, c, pdi, mdi, adx, period):  # noqa: ANN001
    """+DI, -DI and ADX together (TA-Lib's PLUS_DI / MINUS_DI / ADX recurrences)."""
    n = h.shape[0]
    if n == 0:
        return
    ph = h[0]
    pl = low[0]
    pc = c[0]
    pdm = 0.0
    mdm = 0.0
    tr = 0.0
    sum_dx = 0.0
    a = np.nan
    c1 = (period - 1) / period
    c2 = 1.0 / period
    for i in range(1, n):
        diff_p = h[i] - ph
        diff_m = pl - low[i]
        ph = h[i]
        pl = low[i]
        r = h[i] - low[i]
        v = abs(h[i] - pc)
        if v > r:
            r = v
        v = abs(low[i] - pc)
        if v > r:
            r = v
        pc = c[i]
        if i < period:
            if diff_m > 0 and diff_p < diff_m:
                mdm += diff_m
            elif diff_p > 0 and diff_p > diff_m:
                pdm += diff_p
            tr += r
            continue
        mdm *= c1
        pdm *= c1
        if diff_m > 0 and diff_p < diff_m:
            mdm += diff_m
        elif diff_p > 0 and diff_p > diff_m:
            pdm += diff_p
        tr = tr * c1 + r
        pdi[i] = 100.0 * (pdm / tr) if tr != 0.0 else 0.0
        mdi[i] = 100.0 * (mdm / tr) if tr != 0.0 else 0.0
        dx = np.nan
        if tr != 0.0:
            md = 100.0 * (mdm / tr)
            pd_ = 100.0 * (pdm / tr)
            s = md + pd_
            if s != 0.0:
                dx = 100.0 * (abs(md - pd_) / s)
        if i < 2 * period:
            if dx == dx:
                sum_dx += dx
            if i == 2 * period - 1:
                a = sum_dx / period
                adx[i] = a
        else:
            if dx == dx:
                a = a * c1 + dx * c2
            adx[i] = a


def _dmi(which: int, high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int) -> ArrayLike:
    p = check_int("period", period, 2)
    return run(dmi_kernel, (high, low, close), (p,), (p, p, 2 * p - 1))[which]


def plus_di(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> ArrayLike:
    """Plus directional indicator (TA-Lib PLUS_DI). Warm-up ``period``."""
    return _dmi(0, high, low, close, period)


def minus_di(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> ArrayLike:
    """Minus directional indicator (TA-Lib MINUS_DI). Warm-up ``period``."""
    return _dmi(1, high, low, close, period)


def adx(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> ArrayLike:
    """Average directional index (TA-Lib ADX). Warm-up ``2*period - 1``."""
    return _dmi(2, high, low, close, period)


# --------------------------------------------------------------------------- parabolic SAR


@kernel
def sar_start(h0, l0, h1, l1):  # noqa: ANN001
    """Direction, extreme point and SAR after the first two bars: short when bar 1 has a positive
    minus-DM larger than its plus-DM, else long (TA-Lib)."""
    diff_m = l0 - l1
    diff_p = h1 - h0
    is_long = not (diff_m > 0 and diff_p < diff_m)
    if is_long:
        return is_long, h1, l0
    return is_long, l1, h0


@kernel
def sar_next(high, low, prev_h, prev_l, is_long, s, ep, af, acc, mx):  # noqa: ANN001
    """One bar of TA-Lib's SAR -> (output, is_long, next sar, extreme point, acceleration factor).

    Comparisons rather than ``min``/``max``: the class calls this per bar as plain Python.
    """
    if is_long:
        if low <= s:  # stopped out: reverse to short from the extreme point
            is_long = False
            s = ep
            if s < prev_h:
                s = prev_h
            if s < high:
                s = high
            out = s
            af = acc
            ep = low
            s = s + af * (ep - s)
            if s < prev_h:
                s = prev_h
            if s < high:
                s = high
        else:
            out = s
            if high > ep:
                ep = high
                af += acc
                if af > mx:
                    af = mx
            s = s + af * (ep - s)
            if s > prev_l:
                s = prev_l
            if s > low:
                s = low
    elif high >= s:  # stopped out: reverse to long
        is_long = True
        s = ep
        if s > prev_l:
            s = prev_l
        if s > low:
            s = low
        out = s
        af = acc
        ep = high
        s = s + af * (ep - s)
        if s > prev_l:
            s = prev_l
        if s > low:
            s = low
    else:
        out = s
        if low < ep:
            ep = low
            af += acc
            if af > mx:
                af = mx
        s = s + af * (ep - s)
        if s < prev_h:
            s = prev_h
        if s < high:
            s = high
    return out, is_long, s, ep, af


# The pure-Python forms for the class: the first batch call rebinds ``sar_start`` / ``sar_next``
# in this module to numba's compiled dispatchers, which are slow to call from Python per bar.
_py_sar_start = sar_start
_py_sar_next = sar_next


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

    def step(self, high: float, low: float) -> float:
        n = self._n
        if n == 0:
            self._n = 1
            self._ph, self._pl = high, low
            return NAN
        if n == 1:
            self._n = 2
            self._long, self._ep, self._sar = _py_sar_start(self._ph, self._pl, high, low)
            prev_h, prev_l = high, low
        else:
            prev_h, prev_l = self._ph, self._pl
        self._ph, self._pl = high, low
        out, self._long, self._sar, self._ep, self._af = _py_sar_next(
            high, low, prev_h, prev_l, self._long, self._sar, self._ep, self._af, self.acceleration, self.maximum
        )
        return out


@kernel
def sar_kernel(h, low, out, acc, mx):  # noqa: ANN001
    n = h.shape[0]
    if n < 2:
        return
    if acc > mx:
        acc = mx
    af = acc
    is_long, ep, s = sar_start(h[0], low[0], h[1], low[1])
    new_h = h[1]
    new_l = low[1]
    for i in range(1, n):
        prev_h = new_h
        prev_l = new_l
        new_h = h[i]
        new_l = low[i]
        o, is_long, s, ep, af = sar_next(new_h, new_l, prev_h, prev_l, is_long, s, ep, af, acc, mx)
        out[i] = o


def sar(high: ArrayLike, low: ArrayLike, acceleration: float = 0.02, maximum: float = 0.2) -> ArrayLike:
    """Parabolic SAR (TA-Lib SAR). Warm-up 1."""
    ind = SAR(acceleration, maximum)
    return run(sar_kernel, (high, low), (ind.acceleration, ind.maximum), (ind.warmup,))


add_builtin("plus_di", PLUS_DI, plus_di)
add_builtin("minus_di", MINUS_DI, minus_di)
add_builtin("adx", ADX, adx)
add_builtin("sar", SAR, sar)
