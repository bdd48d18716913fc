"""Checking a candle frame before any rule sees it (:func:`kit.market.frame.check_frame`), and its times."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kit.market.frame import check_frame

__all__ = ["check_frame", "open_times_ms"]


def open_times_ms(index: pd.DatetimeIndex) -> np.ndarray:
    """Candle open times as int64 ms UTC (a naive index is taken as UTC)."""
    idx = index if index.tz is not None else index.tz_localize("UTC")
    return idx.as_unit("ms").asi8.astype(np.int64)
