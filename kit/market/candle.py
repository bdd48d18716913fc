"""The candle: one OHLCV bar keyed by its open time (ms UTC), as Binance keys klines."""

from __future__ import annotations

import math
from typing import NamedTuple

COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


class Candle(NamedTuple):
    """One OHLCV bar. A NamedTuple: cheap to build on the hot path, immutable, picklable."""

    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    def is_valid(self) -> bool:
        """Finite, non-negative, and high/low bracket open/close. Wire input failing this is dropped."""
        o, h, low, c, v = self.open, self.high, self.low, self.close, self.volume
        if not all(math.isfinite(x) for x in (o, h, low, c, v)):
            return False
        return v >= 0 and low > 0 and low <= min(o, c) and h >= max(o, c)
