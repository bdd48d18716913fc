"""Two indicators registered through the public API, as examples of each form.

- Hull moving average, written as an incremental class only (O(1) per bar); kit derives
  its batch function by running the class.
- Rolling z-score, written as a batch function over arrays only; kit derives its
  incremental form from the function over a ring buffer of the last ``period`` bars.

A user's own indicator is registered the same way (see :func:`kit.indicators.register`).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kit.indicators._averages import WMA
from kit.indicators._base import NAN, Indicator, check_int
from kit.indicators._registry import register, registration

__all__ = ["HMA", "ZScore", "hma", "zscore"]


@register("hma", group="example")
class HMA(Indicator):
    """Hull moving average: ``WMA(2*WMA(x, period//2) - WMA(x, period), floor(sqrt(period)))``.

    Alan Hull's formula as TradingView's ``ta.hma`` computes it. ``period >= 4`` (both inner
    windows need two bars). Warm-up ``period + floor(sqrt(period)) - 2``.
    """

    __slots__ = ("_full", "_half", "_out", "params", "period", "warmup")
    outputs = ("hma",)

    def __init__(self, period: int = 20) -> None:
        p = check_int("period", period, 4)
        sq = math.isqrt(p)
        self.period = p
        self.params = (p,)
        self.warmup = p + sq - 2
        self._half = WMA(p // 2)
        self._full = WMA(p)
        self._out = WMA(sq)

    def step(self, x: float) -> float:
        a = self._half.step(x)
        b = self._full.step(x)
        if b != b:  # the full window is the longer one: once it is defined, so is the half
            return NAN
        return self._out.step(2.0 * a - b)


def _zscore(close: np.ndarray, period: int = 20) -> np.ndarray:
    """Rolling z-score: ``(x - mean) / std`` over the last ``period`` bars, population std; 0 when flat.

    Two passes per window (mean, then deviations from it) so a flat window gives exactly 0,
    in blocks of windows to bound the memory of the strided view. Warm-up ``period - 1``.
    """
    x = np.asarray(close, dtype=np.float64)
    n = x.shape[0]
    out = np.full(n, np.nan)
    if n < period:
        return out
    # the live form calls this on exactly one window per bar: a (1, period) view reduces the same
    # way as a row of the strided view, without sliding_window_view's Python-level overhead
    win = x[None, :] if n == period else sliding_window_view(x, period)
    block = max(1, (1 << 20) // period)
    for a in range(0, win.shape[0], block):
        w = win[a : a + block]
        m = w.mean(axis=1)
        d = w - m[:, None]
        sd = np.sqrt((d * d).mean(axis=1))
        z = np.zeros_like(m)
        ok = sd > 0.0
        z[ok] = d[ok, -1] / sd[ok]
        out[period - 1 + a : period - 1 + a + w.shape[0]] = z
    return out


register("zscore", window=lambda period=20: check_int("period", period, 2), group="example")(_zscore)

#: the derived forms, exported beside the written ones
hma = registration("hma").batch
zscore = registration("zscore").batch
ZScore = registration("zscore").incremental
ZScore.__name__ = ZScore.__qualname__ = "ZScore"
