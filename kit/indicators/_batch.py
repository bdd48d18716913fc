"""What every batch function shares: array conversion, the NaN-bar skip, pandas in -> pandas out.

:func:`run` calls a numba kernel (the built-ins); :func:`apply` calls any Python function
over whole arrays (registered batch functions). Both drop bars with NaN in any input before
the call and scatter the outputs back, so a NaN bar is skipped exactly as the incremental
``update`` skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kit.indicators._base import IndicatorError
from kit.indicators._jit import compiled

ArrayLike = Any  # np.ndarray | pd.Series | sequence of floats


def as_array(a: Any) -> np.ndarray:
    """``a`` as a contiguous 1-D float64 array (pandas NA -> NaN)."""
    if hasattr(a, "to_numpy"):
        a = a.to_numpy(dtype=np.float64, na_value=np.nan)
    arr = np.ascontiguousarray(a, dtype=np.float64)
    if arr.ndim != 1:
        raise IndicatorError(f"inputs must be 1-D, got shape {arr.shape}")
    return arr


def prepare(inputs: Sequence[Any], extra: Sequence[np.ndarray]) -> tuple[Any, list[np.ndarray], np.ndarray | None]:
    """(pandas index of the first input or None, float arrays, mask of bars to keep or None)."""
    first = inputs[0]
    index = first.index if hasattr(first, "index") and hasattr(first, "to_numpy") else None
    arrs = [as_array(a) for a in inputs]
    n = arrs[0].shape[0]
    for a in (*arrs[1:], *extra):
        if a.shape[0] != n:
            raise IndicatorError(f"inputs must have the same length, got {n} and {a.shape[0]}")
    bad = None
    for a in arrs:
        if np.isnan(a.sum()):  # cheap screen; the mask below is exact
            m = np.isnan(a)
            bad = m if bad is None else (bad | m)
    keep = ~bad if bad is not None and bad.any() else None
    return index, arrs, keep


def scatter(outs: list[np.ndarray], keep: np.ndarray | None) -> list[np.ndarray]:
    if keep is None:
        return outs
    full = []
    for o in outs:
        f = np.full(keep.shape[0], np.nan)
        f[keep] = o
        full.append(f)
    return full


def finish(outs: list[np.ndarray], index: Any, names: Sequence[str] | None) -> Any:
    if index is not None:
        import pandas as pd  # only when the caller passed pandas, so it is loaded already

        outs = [pd.Series(o, index=index, copy=False) for o in outs]
        if names is not None and len(outs) > 1:
            for s, nm in zip(outs, names, strict=True):
                s.name = nm
    return outs[0] if len(outs) == 1 else outs


def _outs(m: int, warmups: Sequence[int]) -> list[np.ndarray]:
    # Kernels write every position from their warm-up on; only the NaN prefix needs filling.
    outs = []
    for w in warmups:
        o = np.empty(m)
        o[: min(w, m)] = np.nan
        outs.append(o)
    return outs


def run(
    kernel: Callable[..., Any],
    inputs: Sequence[Any],
    params: Sequence[Any],
    warmups: Sequence[int],
    *,
    extra: Sequence[np.ndarray] = (),
    scratch: int = 0,
    names: Sequence[str] | None = None,
) -> Any:
    """Run numba ``kernel`` over ``inputs``; one array, or a list of arrays (one per warm-up), pandas-aware.

    ``extra`` are non-float side inputs (e.g. int64 timestamps) passed after the float inputs;
    ``scratch`` work arrays are allocated here (NumPy reuses freed memory; an allocation inside
    a kernel costs fresh page faults) and passed after the outputs; ``names`` name the Series
    of a multi-output result.
    """
    index, arrs, keep = prepare(inputs, extra)
    fn = compiled(kernel)
    if keep is not None:
        arrs = [a[keep] for a in arrs]
        extra = [e[keep] for e in extra]
    m = arrs[0].shape[0]
    outs = _outs(m, warmups)
    work = [np.empty(m) for _ in range(scratch)]
    fn(*arrs, *extra, *outs, *work, *params)
    return finish(scatter(outs, keep), index, names)


def apply(
    name: str, fn: Callable[..., Any], inputs: Sequence[Any], params: Sequence[Any], outputs: Sequence[str]
) -> Any:
    """``fn(*inputs, *params)`` over the bars without NaN, its output(s) scattered back, pandas-aware.

    ``fn`` returns one array, or a tuple of arrays (one per output), as long as its inputs.
    """
    index, arrs, keep = prepare(inputs, ())
    if keep is not None:
        arrs = [a[keep] for a in arrs]
    m = arrs[0].shape[0]
    got = fn(*arrs, *params)
    got = list(got) if len(outputs) > 1 else [got]
    if len(got) != len(outputs):
        raise IndicatorError(f"{name}: the batch function returned {len(got)} outputs, expected {len(outputs)}")
    outs = []
    for o in got:
        arr = np.asarray(o, dtype=np.float64)
        if arr.shape != (m,):
            raise IndicatorError(f"{name}: the batch function returned shape {arr.shape}, expected ({m},)")
        outs.append(arr)
    return finish(scatter(outs, keep), index, outputs)


def open_time_ms(open_time: Any, first: Any) -> np.ndarray:
    """Bar open times as int64 ms: given (ints, datetime64, DatetimeIndex, Series), else ``first``'s index."""
    if open_time is None:
        idx = getattr(first, "index", None)
        if idx is None or not hasattr(idx, "as_unit"):
            raise IndicatorError("open_time: pass bar open times (ms UTC) or Series with a DatetimeIndex")
        return np.asarray(idx.as_unit("ms").asi8, dtype=np.int64)
    if hasattr(open_time, "as_unit"):  # DatetimeIndex
        return np.asarray(open_time.as_unit("ms").asi8, dtype=np.int64)
    arr = np.asarray(open_time)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[ms]").astype(np.int64)
    if hasattr(open_time, "dt"):  # Series of datetimes
        return np.asarray(open_time.dt.as_unit("ms").astype("int64"), dtype=np.int64)
    return np.ascontiguousarray(arr, dtype=np.int64)
