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

    Each figure is vectorbt's own definition (the one ``run()``'s portfolio reports), kept step for
    step: the sweep is only useful if its ranking is the ranking of single runs.

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
            # vectorbt's return (returns.nb.get_return_nb), so that Sharpe equals run()'s: measured
            # from a negative value the sign flips (a loss while below zero is still a loss), and
            # from zero it is 0 or an infinity.
            if prev == 0.0:
                r = 0.0 if v == 0.0 else np.inf * np.sign(v)
            else:
                r = (v - prev) / prev
                if prev < 0.0:
                    r = -r
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
        # vectorbt's sharpe_ratio_1d_nb (NaN under two bars, NaN returns left out, ddof 1) with one
        # deliberate difference: a flat equity (std 0: the set never traded) is NaN, where vectorbt
        # says +inf, so that sorting a sweep by Sharpe never ranks a set that does nothing first.
        if n < 2 or cnt < 2:
            sharpe[j] = np.nan
        else:
            mean = s / cnt
            var = 0.0
            for q in range(cnt):
                var += (rets[q] - mean) ** 2
            std = np.sqrt(var / (cnt - 1))
            sharpe[j] = np.nan if std == 0.0 else mean / std
    return total, sharpe, mdd, final
