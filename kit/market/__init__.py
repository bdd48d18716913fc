"""Market data primitives: candles, Binance intervals, candle files and aggregation.

Everything above this layer (simulator, feed, store, indicators, strategies) speaks
these types: a :class:`Candle` keyed by its open time in ms UTC, and candle frames
with a UTC ``DatetimeIndex`` named ``open_time`` and float64 ``open high low close volume``.
"""

from kit.market.candle import COLUMNS, Candle
from kit.market.intervals import INTERVALS, bucket_start, interval_ms, validate_interval, validate_symbol

__all__ = ["COLUMNS", "INTERVALS", "Candle", "bucket_start", "interval_ms", "validate_interval", "validate_symbol"]
