"""Aggregating candles to a coarser interval, without inventing candles over outages."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kit.errors import DataError
from kit.market.files import to_ms
from kit.market.intervals import bucket_offset_ms, bucket_start, interval_ms


def bucket_starts(open_ms: np.ndarray, interval: str) -> np.ndarray:
    """Vectorised :func:`kit.market.intervals.bucket_start` for fixed intervals (1M falls back to a loop)."""
    if interval == "1M":
        return np.fromiter((bucket_start(int(t), "1M") for t in open_ms), dtype=np.int64, count=len(open_ms))
    return open_ms - (open_ms - bucket_offset_ms(interval)) % interval_ms(interval)


def resample(frame: pd.DataFrame, source_interval: str, target_interval: str) -> pd.DataFrame:
    """Aggregate a candle frame from ``source_interval`` to ``target_interval``.

    A bucket exists only if at least one source candle falls in it: an outage longer than
    the target interval stays a gap. The result's index is the bucket open time.
    Binance builds its higher intervals the same way from trades, so a bucket with a
    partial outage still carries the trades that happened.
    """
    if source_interval == target_interval:
        return frame.copy()
    if (
        source_interval != "1M"
        and target_interval != "1M"
        and interval_ms(target_interval) % interval_ms(source_interval)
    ):
        raise DataError(f"cannot build {target_interval} candles from {source_interval} candles")
    if frame.empty:
        return frame.copy()
    keys = bucket_starts(to_ms(frame.index), target_interval)
    grouped = frame.groupby(keys, sort=True)
    out = pd.DataFrame(
        {
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
        }
    )
    out.index = pd.DatetimeIndex(pd.to_datetime(out.index.to_numpy(), unit="ms", utc=True), name="open_time")
    return out
