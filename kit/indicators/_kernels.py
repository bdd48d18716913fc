"""Batch kernels: plain loops over float64 arrays, compiled with numba on first use.

Each kernel writes into preallocated NaN-filled output arrays and mirrors, operation for
operation, the ``update`` of its incremental class in :mod:`kit.indicators.incremental`
(which in turn follows TA-Lib's C recurrence). Inputs here never contain NaN: the batch
wrappers drop NaN bars before calling a kernel and scatter the result back.

This module must stay importable without numba (it is plain Python).
"""

# ruff: noqa: ANN001
from __future__ import annotations

import math

import numpy as np


def sma(x, out, period):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i]
        if i >= period - 1:
            out[i] = total / period
            total -= x[i - period + 1]


def ema_into(x, out, period, start):
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


def ema(x, out, period):
    ema_into(x, out, period, 0)


def wma(x, out, period):
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
        s -= sub


def dema(x, out, period):
    n = x.shape[0]
    e1 = np.full(n, np.nan)
    e2 = np.full(n, np.nan)
    f1 = ema_into(x, e1, period, 0)
    f2 = ema_into(e1, e2, period, f1)
    for i in range(f2, n):
        out[i] = (2.0 * e1[i]) - e2[i]


def tema(x, out, period):
    n = x.shape[0]
    e1 = np.full(n, np.nan)
    e2 = np.full(n, np.nan)
    e3 = np.full(n, np.nan)
    f1 = ema_into(x, e1, period, 0)
    f2 = ema_into(e1, e2, period, f1)
    f3 = ema_into(e2, e3, period, f2)
    for i in range(f3, n):
        out[i] = (3.0 * e1[i]) - (3.0 * e2[i]) + e3[i]


def rsi(x, out, period):
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
    for i in range(period + 1, n):
        d = x[i] - x[i - 1]
        gain = gain * (period - 1)
        loss = loss * (period - 1)
        if d < 0:
            loss -= d
        else:
            gain += d
        gain /= period
        loss /= period
        s = gain + loss
        out[i] = 100.0 * (gain / s) if s != 0.0 else 0.0


def macd(x, out_m, out_s, out_h, fast, slow, signal):
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
    m = np.empty(n)
    m[slow - 1] = fv - sv
    for i in range(slow, n):
        sv = (x[i] - sv) * ks + sv
        fv = (x[i] - fv) * kf + fv
        m[i] = fv - sv
    first = slow - 1 + signal - 1
    if n <= first:
        return
    gs = 0.0
    for i in range(slow - 1, first + 1):
        gs += m[i]
    g = gs / signal
    out_m[first] = m[first]
    out_s[first] = g
    out_h[first] = m[first] - g
    for i in range(first + 1, n):
        g = (m[i] - g) * kg + g
        out_m[i] = m[i]
        out_s[i] = g
        out_h[i] = m[i] - g


def bbands(x, up, mid, lo, period, nbdevup, nbdevdn):
    t = 0.0
    t2 = 0.0
    for i in range(x.shape[0]):
        v = x[i]
        t += v
        t2 += v * v
        if i >= period - 1:
            old = x[i - period + 1]
            m = t / period
            var = t2 / period - m * m
            t -= old
            t2 -= old * old
            sd = math.sqrt(var) if var > 0.0 else 0.0
            up[i] = m + sd * nbdevup
            mid[i] = m
            lo[i] = m - sd * nbdevdn


def true_range(h, low, c, tr):
    """tr[i] for i >= 1 (tr[0] is left as is)."""
    for i in range(1, h.shape[0]):
        pc = c[i - 1]
        r = h[i] - low[i]
        v = abs(pc - h[i])
        if v > r:
            r = v
        v = abs(pc - low[i])
        if v > r:
            r = v
        tr[i] = r


def atr(h, low, c, out, period):
    n = h.shape[0]
    if n <= period:
        return
    tr = np.empty(n)
    true_range(h, low, c, tr)
    s = 0.0
    for i in range(1, period + 1):
        s += tr[i]
    a = s / period
    out[period] = a
    for i in range(period + 1, n):
        a = (a * (period - 1) + tr[i]) / period
        out[i] = a
