"""Checking a candle frame before any rule sees it: bad input gets an error naming the problem."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kit.errors import DataError
from kit.market.candle import COLUMNS


def check_frame(data: object, *, name: str = "data") -> pd.DataFrame:
    """Return ``data`` if it is a usable candle frame, else raise :class:`kit.errors.DataError`.

    A candle frame has a ``DatetimeIndex`` (sorted, unique) and float columns
    ``open high low close volume`` without NaNs; extra columns are allowed and ignored.
    Outages are missing rows and are fine: rules and indicators run over the rows that exist.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"{name} must be a pandas DataFrame of candles, got {type(data).__name__}")
    if data.empty:
        raise DataError(f"{name} is empty: no candles to run on")
    missing = [c for c in COLUMNS if c not in data.columns]
    if missing:
        raise DataError(
            f"{name} lacks candle columns {missing}; expected {list(COLUMNS)}, got {[str(c) for c in data.columns]}"
        )
    if not isinstance(data.index, pd.DatetimeIndex):
        raise DataError(f"{name} must have a DatetimeIndex of candle open times, got {type(data.index).__name__}")
    if data.index.hasnans:
        raise DataError(f"{name} has missing (NaT) timestamps in its index")
    if not data.index.is_unique:
        dup = data.index[data.index.duplicated()][0]
        raise DataError(f"{name} has a duplicated index: {dup} appears more than once")
    if not data.index.is_monotonic_increasing:
        raise DataError(f"{name} index is not sorted in ascending time order")
    for c in COLUMNS:
        col = data[c]
        if not pd.api.types.is_numeric_dtype(col.dtype):
            raise DataError(f"{name} column {c!r} must be numeric, got {col.dtype}")
        arr = col.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            raise DataError(
                f"{name} column {c!r} has NaN or infinite values "
                f"({int(bad.sum())} rows, first at {data.index[int(np.argmax(bad))]})"
            )
    return data


def open_times_ms(index: pd.DatetimeIndex) -> np.ndarray:
    """Candle open times as int64 ms UTC (a naive index is taken as UTC)."""
    idx = index if index.tz is not None else index.tz_localize("UTC")
    return idx.as_unit("ms").asi8.astype(np.int64)
