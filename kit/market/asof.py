"""The as-of rule that joins candle streams without look-ahead, one function for every path.

A row of another stream (another interval, another symbol) is visible to a row of the base
stream only once it has *closed* at or before the base row's close: the base row closing at
``C`` sees the latest other row whose close is ``<= C``. A 1h candle closing at 10:00 is
visible to the 5m candle 09:55-10:00 (both closed at 10:00), never to 09:50-09:55.

Outages: a missing row of the other stream leaves its last closed row visible (stale) until a
newer one closes; a missing base row is simply not evaluated. Before the other stream's first
close nothing is visible (NaN). The backtest applies this to whole frames (:func:`asof_index`);
live, :class:`kit.engine.StreamJoin` applies the same rule row by row.
"""

from __future__ import annotations

import numpy as np

from kit.market.intervals import interval_ms

__all__ = ["asof_index", "close_times", "take"]


def close_times(open_ms: np.ndarray, interval: str) -> np.ndarray:
    """Close times (ms, exclusive end: the next candle's open) of candles opening at ``open_ms``."""
    return np.asarray(open_ms, dtype=np.int64) + interval_ms(interval)


def asof_index(base_close_ms: np.ndarray, other_close_ms: np.ndarray) -> np.ndarray:
    """For each base close, the index of the latest other row closed at or before it (-1: none yet).

    Both arrays ascending (candle streams are).
    """
    return np.searchsorted(np.asarray(other_close_ms, dtype=np.int64), base_close_ms, side="right") - 1


def take(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``values[idx]`` as float64, NaN where ``idx`` is -1 (nothing closed yet)."""
    out = np.asarray(values, dtype=np.float64)[np.maximum(idx, 0)]
    if len(out):
        out[idx < 0] = np.nan
    return out
