"""Numba kernel for sweep metrics: one pass over each column's orders and closes."""

from __future__ import annotations

import numpy as np
from numba import njit

# vectorbt's tolerances for "this addition is zero" (vectorbt.utils.math_), so that a position that
# is closed counts as flat exactly when vectorbt's assets() says 0.
_REL_TOL = 1e-9
_ABS_TOL = 1e-12

#: Row order of :func:`column_metrics`'s output.
FIELDS = ("total_return", "sharpe", "sortino", "cagr", "calmar", "max_drawdown", "exposure", "final_value")


@njit(cache=True)
def _add(a: float, b: float) -> float:
    """vectorbt's ``add_nb``: ``a + b``, or exactly 0 when the two cancel within its tolerances."""
    if np.sign(a) != np.sign(b):
        x, y = abs(a), abs(b)
    else:
        x, y = a + b, 0.0
    finite = not (np.isnan(x) or np.isnan(y) or np.isinf(x) or np.isinf(y))
    if finite and (x == y or abs(x - y) <= max(_REL_TOL * max(abs(x), abs(y)), _ABS_TOL)):
        return 0.0
    return a + b


@njit(cache=True)
def column_metrics(
    close: np.ndarray,
    order_idx: np.ndarray,
    cash_flow: np.ndarray,
    asset_flow: np.ndarray,
    starts: np.ndarray,
    init_cash: float,
    ann_factor: float,
) -> np.ndarray:
    """Per column (one row per name of :data:`FIELDS`, as fractions and per-bar figures before the
    caller's scaling): total return, Sharpe and Sortino (annualised by ``ann_factor``), annualised
    return, Calmar, max drawdown (negative), time in a position (0..1), final value.

    Each figure is vectorbt's own definition (the one ``run()``'s portfolio reports), kept step for
    step: the sweep is only useful if its ranking is the ranking of single runs. Returns are
    ``returns.nb.get_return_nb`` of consecutive values (the first from the initial cash), NaN
    included where vectorbt has them; drawdown is from the running peak of value (``stats()``'s
    Max Drawdown), while Calmar uses the drawdown of compounded returns as vectorbt's Calmar does.

    Orders must be sorted by column then bar; ``starts[j]:starts[j+1]`` are column ``j``'s orders.
    """
    n = close.shape[0]
    k = starts.shape[0] - 1
    out = np.empty((8, k))
    rets = np.empty(n)
    for j in range(k):
        p = starts[j]
        end = starts[j + 1]
        cash = init_cash
        pos = 0.0
        held = 0.0  # vectorbt's assets(): flows added with add_nb, so a closed position is exactly 0
        in_market = 0
        prev = init_cash
        peak = -np.inf
        dd = 0.0
        for i in range(n):
            flow = 0.0
            while p < end and order_idx[p] == i:
                cash += cash_flow[p]
                pos += asset_flow[p]
                flow = _add(flow, asset_flow[p])
                p += 1
            held = _add(held, flow)
            if held != 0.0:
                in_market += 1
            v = cash + pos * close[i]
            # vectorbt's return (returns.nb.get_return_nb): measured from a negative value the sign
            # flips (a loss while below zero is still a loss), and from zero it is 0 or an infinity.
            if prev == 0.0:
                r = 0.0 if v == 0.0 else np.inf * np.sign(v)
            else:
                r = (v - prev) / prev
                if prev < 0.0:
                    r = -r
            rets[i] = r
            prev = v
            if v > peak:
                peak = v
            if peak != 0.0:
                d = v / peak - 1.0
                if d < dd:
                    dd = d
        out[0, j] = prev / init_cash - 1.0
        out[1, j] = _sharpe(rets, n, ann_factor)
        out[2, j] = _sortino(rets, n, ann_factor)
        ann_return = _annualized_return(rets, n, ann_factor)
        out[3, j] = ann_return
        mdd_r = _returns_max_drawdown(rets, n)
        out[4, j] = np.nan if mdd_r == 0.0 else ann_return / np.abs(mdd_r)
        out[5, j] = dd
        out[6, j] = in_market / n if n > 0 else np.nan
        out[7, j] = prev
    return out


@njit(cache=True)
def _nanmean(a: np.ndarray, n: int) -> tuple[float, int]:
    s = 0.0
    cnt = 0
    for i in range(n):
        if not np.isnan(a[i]):
            s += a[i]
            cnt += 1
    return (s / cnt if cnt else np.nan), cnt


@njit(cache=True)
def _flat(rets: np.ndarray, n: int) -> bool:
    for i in range(n):  # noqa: SIM110 (a loop: numba compiles no generator into all())
        if rets[i] != 0.0 and not np.isnan(rets[i]):
            return False
    return True


@njit(cache=True)
def _sharpe(rets: np.ndarray, n: int, ann_factor: float) -> float:
    """vectorbt's ``sharpe_ratio_1d_nb`` (ddof 1, NaN returns left out), with one deliberate
    difference: a flat equity (the set never traded) is NaN where vectorbt says +inf (0/0), so
    sorting a sweep by Sharpe never ranks a set that does nothing first."""
    if n < 2 or _flat(rets, n):
        return np.nan
    mean, cnt = _nanmean(rets, n)
    if cnt < 2:
        return np.nan
    var = 0.0
    for i in range(n):
        if not np.isnan(rets[i]):
            var += (rets[i] - mean) ** 2
    std = np.sqrt(var / (cnt - 1))
    if std == 0.0:
        return np.inf
    return mean / std * np.sqrt(ann_factor)


@njit(cache=True)
def _sortino(rets: np.ndarray, n: int, ann_factor: float) -> float:
    """vectorbt's ``sortino_ratio_1d_nb`` (required return 0); a flat equity is NaN, as Sharpe."""
    if n < 2 or _flat(rets, n):
        return np.nan
    mean, _ = _nanmean(rets, n)
    down = np.empty(n)
    for i in range(n):
        r = rets[i]
        down[i] = 0.0 if r > 0 else r**2
    dmean, _ = _nanmean(down, n)
    downside = np.sqrt(dmean) * np.sqrt(ann_factor)
    if downside == 0.0:
        return np.inf
    return mean * ann_factor / downside


@njit(cache=True)
def _annualized_return(rets: np.ndarray, n: int, ann_factor: float) -> float:
    """vectorbt's ``annualized_return_1d_nb``: compounded growth per year (the CAGR)."""
    if n == 0:
        return np.nan
    growth = 1.0
    for i in range(n):
        if not np.isnan(rets[i]):
            growth *= rets[i] + 1.0
    return growth ** (ann_factor / n) - 1


@njit(cache=True)
def _returns_max_drawdown(rets: np.ndarray, n: int) -> float:
    """vectorbt's ``max_drawdown_1d_nb``: the drawdown of compounded returns (from 100)."""
    if n == 0:
        return np.nan
    cum = 1.0
    peak = np.nan
    worst = np.inf
    for i in range(n):
        if not np.isnan(rets[i]):
            cum *= rets[i] + 1
        value = cum * 100.0
        if not np.isnan(value) and (np.isnan(peak) or value > peak):
            peak = value
        d = value / peak - 1
        if np.isnan(d):
            return np.nan
        if d < worst:
            worst = d
    return worst
