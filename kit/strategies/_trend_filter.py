"""TrendFilter: entries on the strategy's own (fast) stream, only with the trend of a slower stream."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from kit.indicators import spec
from kit.strategy import Columns, Param, Signals, Strategy, crossed_above, crossed_below, on


class TrendFilter(Strategy):
    """An EMA cross on its own stream (e.g. 5m), taken only with the trend of the 1h stream of its symbol.

    * Trend: the last closed 1h candle's close above its EMA(``trend``) (below, for shorts). A 1h
      candle counts from its close on: the 5m candle closing at 10:00 sees the 1h candle 09:00-10:00.
    * Long entry: fast EMA crosses above slow EMA while the trend is up. Long exit: the cross back
      below, or the trend turning down.
    * With ``short=True``: the mirror image while the trend is down.

    Run it on 5m candles with the 1h candles as its ``"h1"`` stream:
    ``kit.backtest.run(TrendFilter(), df_5m, streams={"h1": df_1h})``.
    """

    streams: ClassVar = {"h1": (None, "1h")}
    fast: int = Param(8, ge=2, le=500, doc="fast EMA length (own stream)")
    slow: int = Param(21, ge=3, le=1000, doc="slow EMA length (own stream)")
    trend: int = Param(50, ge=2, le=1000, doc="EMA length of the 1h trend")
    short: bool = Param(False, doc="also go short against a falling 1h trend")
    lookback = 2

    def validate(self) -> None:
        if not self.fast < self.slow:
            raise ValueError(f"parameters fast={self.fast} and slow={self.slow}: fast must be shorter than slow")

    def indicators(self) -> dict:
        return {
            "fast_ema": spec("ema", self.fast),
            "slow_ema": spec("ema", self.slow),
            "h1_close": on("h1", "close"),
            "h1_trend": on("h1", spec("ema", self.trend)),
        }

    def signals(self, d: Columns) -> Signals:
        with np.errstate(invalid="ignore"):
            up_trend = d.h1_close > d.h1_trend  # NaN (warm-up, nothing closed yet): neither
            down_trend = d.h1_close < d.h1_trend
        up = crossed_above(d.fast_ema, d.slow_ema)
        down = crossed_below(d.fast_ema, d.slow_ema)
        if not self.short:
            return Signals(up & up_trend, down | down_trend)
        return Signals(up & up_trend, down | down_trend, down & down_trend, up | up_trend)
