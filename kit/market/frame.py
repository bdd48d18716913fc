"""The one check of a candle frame: bad input gets an error naming the problem (and its first row)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kit.errors import DataError
from kit.market.candle import COLUMNS

_PRICES = ("open", "high", "low", "close")


def check_frame(data: object, *, name: str = "data") -> pd.DataFrame:
    """Return ``data`` if it is a usable candle frame, else raise :class:`kit.errors.DataError`.

    A candle frame has a ``DatetimeIndex`` (sorted, unique) and float columns
    ``open high low close volume`` without NaNs, prices > 0, ``high >= low`` and volume >= 0;
    extra columns are allowed and ignored. Outages are missing rows and are fine: rules and
    indicators run over the rows that exist. The one check of a frame for ``kit.data.load``,
    backtests, sweeps and replays, so each refuses the same rows with the same message.
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
    _check_values(data, name)
    return data


def _check_values(data: pd.DataFrame, name: str) -> None:
    """Refuse rows no market can print: a price <= 0, ``high < low``, a negative volume.

    vectorbt would fail later with an internal error (a zero close) or quietly compute nonsense
    returns; the user gets the first bad row instead, and how many there are.
    """
    o, h, lo, c, v = (data[col].to_numpy(dtype=np.float64) for col in COLUMNS)
    nonpositive = np.minimum(np.minimum(o, h), np.minimum(lo, c)) <= 0
    inverted = h < lo
    negative_volume = v < 0
    bad = nonpositive | inverted | negative_volume
    if not bad.any():
        return
    i = int(np.argmax(bad))
    if nonpositive[i]:
        col = next(col for col in _PRICES if float(data[col].iat[i]) <= 0)
        what = f"{col}={float(data[col].iat[i])!r}: prices must be > 0"
    elif inverted[i]:
        what = f"high={float(h[i])!r} is below low={float(lo[i])!r} (high < low)"
    else:
        what = f"volume={float(v[i])!r}: volume must be >= 0"
    n = int(bad.sum())
    raise DataError(f"{name} row {i} ({data.index[i]}): {what} ({n} bad row{'s' if n != 1 else ''})")
