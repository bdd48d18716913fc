"""Numba kernel for sweep metrics: one pass over each column's orders and closes."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def column_metrics(
    close: np.ndarray,
    order_idx: np.ndarray,
    cash_flow: np.ndarray,
    asset_flow: np.ndarray,
    starts: np.ndarray,
    init_cash: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column: total return, per-bar Sharpe (mean/std, ddof 1; not annualised), max drawdown, final value.

    Orders must be sorted by column then bar; ``starts[j]:starts[j+1]`` are column ``j``'s orders.
    """
    n = close.shape[0]
    k = starts.shape[0] - 1
    total = np.empty(k)
    sharpe = np.empty(k)
    mdd = np.empty(k)
    final = np.empty(k)
    rets = np.empty(n)
    for j in range(k):
        p = starts[j]
        end = starts[j + 1]
        cash = init_cash
        pos = 0.0
        prev = init_cash
        peak = -np.inf
        dd = 0.0
        cnt = 0
        s = 0.0
        for i in range(n):
            while p < end and order_idx[p] == i:
                cash += cash_flow[p]
                pos += asset_flow[p]
                p += 1
            v = cash + pos * close[i]
            if prev != 0.0:
                r = (v - prev) / prev
                if not np.isnan(r):
                    rets[cnt] = r
                    cnt += 1
                    s += r
            prev = v
            if v > peak:
                peak = v
            if peak != 0.0:
                d = v / peak - 1.0
                if d < dd:
                    dd = d
        final[j] = prev
        total[j] = prev / init_cash - 1.0
        mdd[j] = dd
        if cnt > 1:
            mean = s / cnt
            var = 0.0
            for q in range(cnt):
                var += (rets[q] - mean) ** 2
            std = np.sqrt(var / (cnt - 1))
            sharpe[j] = mean / std if std > 0 else np.nan
        else:
            sharpe[j] = np.nan
    return total, sharpe, mdd, final
