"""NamedTuples returned by multi-output indicators, fields in TA-Lib's output order.

The incremental classes return them with floats; the batch functions with arrays.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class MACDResult(NamedTuple):
    macd: Any
    signal: Any
    hist: Any


class BBandsResult(NamedTuple):
    upper: Any
    middle: Any
    lower: Any


class StochResult(NamedTuple):
    """``stoch``: slow %K and slow %D; ``stochrsi``: fast %K and fast %D (TA-Lib's fastk, fastd)."""

    k: Any
    d: Any


class DonchianResult(NamedTuple):
    upper: Any
    middle: Any
    lower: Any


class KeltnerResult(NamedTuple):
    upper: Any
    middle: Any
    lower: Any


class SuperTrendResult(NamedTuple):
    """The SuperTrend line and the direction: +1.0 up (line below price), -1.0 down."""

    supertrend: Any
    direction: Any
