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

#: TA-Lib's relative dead-zone (TA_IS_ZERO_SCALED): |v| <= EPS * scale counts as zero
EPS = 1e-14
#: BBANDS: when E[(x-K)²] exceeds the variance by this factor, the shifted sums lost too many digits
ILL = 1e5


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
        if (i + 1) % period == 0:
            sub = 0.0
            s = 0.0
            for j in range(period):
                v = x[i - period + 1 + j]
                sub += v
                s += v * j
        else:
            s -= sub


def dema(x, out, period):
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


def tema(x, out, period):
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


def bbands(x, up, mid, lo, period, nbdevup, nbdevdn):
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
    _atr(h, low, c, out, period, False)


def natr(h, low, c, out, period):
    _atr(h, low, c, out, period, True)


def _atr(h, low, c, out, period, norm):
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


def rolling_max_min(hi, lo, period, hh, ll):
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


def _fast_k(h, low, c, fastk, fk, hh, ll):
    n = h.shape[0]
    rolling_max_min(h, low, fastk, hh, ll)
    for i in range(fastk - 1, n):
        rng = hh[i] - ll[i]
        fk[i] = 0.0 if abs(rng) <= EPS * (abs(hh[i]) + abs(ll[i])) else ((c[i] - ll[i]) / rng) * 100.0


def stoch(h, low, c, k_out, d_out, fk, hh, ll, fastk, slowk, slowd):
    """Scratch: fk, hh, ll (n each). Slow %K is built in k_out, then its head reset to NaN."""
    n = h.shape[0]
    if n < fastk:
        return
    _fast_k(h, low, c, fastk, fk, hh, ll)
    s0 = fastk - 1 + slowk - 1
    sma(fk[fastk - 1 :], k_out[fastk - 1 :], slowk)
    if s0 >= n:
        return
    sma(k_out[s0:], d_out[s0:], slowd)
    first = s0 + slowd - 1
    for i in range(s0, min(first, n)):
        k_out[i] = np.nan


def stochrsi(x, k_out, d_out, r, kb, hh, ll, period, fastk, fastd):
    """Scratch: r (RSI), kb (fast %K), hh, ll (n each)."""
    n = x.shape[0]
    if n <= period:
        return
    rsi(x, r, period)
    m = n - period
    if m < fastk:
        return
    rr = r[period:]
    _fast_k(rr, rr, rr, fastk, kb[:m], hh[:m], ll[:m])
    sma(kb[fastk - 1 : m], d_out[period + fastk - 1 :], fastd)
    for i in range(fastk - 1 + fastd - 1, m):
        k_out[period + i] = kb[i]


def willr(h, low, c, out, hh, ll, period):
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


def donchian(h, low, up, mid, lo, period):
    rolling_max_min(h, low, period, up, lo)
    for i in range(period - 1, h.shape[0]):
        mid[i] = (up[i] + lo[i]) / 2.0


def cci(h, low, c, out, period):
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


def mfi(h, low, c, v, out, period):
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


def roc(x, out, period):
    for i in range(period, x.shape[0]):
        old = x[i - period]
        out[i] = ((x[i] / old) - 1.0) * 100.0 if old != 0.0 else 0.0


def obv(c, v, out):
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


def dmi(h, low, c, pdi, mdi, adx, period):
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


def sar(h, low, out, acc, mx):
    n = h.shape[0]
    if n < 2:
        return
    if acc > mx:
        acc = mx
    af = acc
    diff_m = low[0] - low[1]
    diff_p = h[1] - h[0]
    is_long = not (diff_m > 0 and diff_p < diff_m)
    if is_long:
        ep = h[1]
        s = low[0]
    else:
        ep = low[1]
        s = h[0]
    new_l = low[1]
    new_h = h[1]
    for i in range(1, n):
        prev_l = new_l
        prev_h = new_h
        new_l = low[i]
        new_h = h[i]
        if is_long:
            if new_l <= s:
                is_long = False
                s = ep
                if s < prev_h:
                    s = prev_h
                if s < new_h:
                    s = new_h
                out[i] = s
                af = acc
                ep = new_l
                s = s + af * (ep - s)
                if s < prev_h:
                    s = prev_h
                if s < new_h:
                    s = new_h
            else:
                out[i] = s
                if new_h > ep:
                    ep = new_h
                    af += acc
                    if af > mx:
                        af = mx
                s = s + af * (ep - s)
                if s > prev_l:
                    s = prev_l
                if s > new_l:
                    s = new_l
        elif new_h >= s:
            is_long = True
            s = ep
            if s > prev_l:
                s = prev_l
            if s > new_l:
                s = new_l
            out[i] = s
            af = acc
            ep = new_h
            s = s + af * (ep - s)
            if s > prev_l:
                s = prev_l
            if s > new_l:
                s = new_l
        else:
            out[i] = s
            if new_l < ep:
                ep = new_l
                af += acc
                if af > mx:
                    af = mx
            s = s + af * (ep - s)
            if s < prev_h:
                s = prev_h
            if s < new_h:
                s = new_h


def vwap(h, low, c, v, t, out):
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


def keltner(h, low, c, up, mid, lo, a, period, mult, atr_period):
    """Scratch: a (ATR). The EMA is built in mid, then its head reset to NaN."""
    n = h.shape[0]
    ema_into(c, mid, period, 0)
    atr(h, low, c, a, atr_period)
    first = max(period - 1, atr_period)
    for i in range(first, n):
        w = mult * a[i]
        up[i] = mid[i] + w
        lo[i] = mid[i] - w
    for i in range(period - 1, min(first, n)):
        mid[i] = np.nan


def supertrend(h, low, c, st, dirn, a, period, mult):
    """Scratch: a (ATR)."""
    n = h.shape[0]
    atr(h, low, c, a, period)
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
