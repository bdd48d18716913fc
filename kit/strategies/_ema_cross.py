"""EmaCross: trend following on a fast/slow exponential moving average crossover."""

from __future__ import annotations

from kit.indicators import spec
from kit.strategy import Columns, Param, Signals, Strategy, crossed_above, crossed_below


class EmaCross(Strategy):
    """Long while the fast EMA is above the slow EMA.

    * Long entry: fast EMA crosses above slow EMA. Long exit: it crosses back below.
    * With ``short=True``: a cross below also opens a short, covered on the next cross above.
    * ``stop_loss``/``take_profit``: fractions of the entry price (0 = off); ``trailing_stop``: a
      fraction of the best price since the entry (0 = off), in the stop-loss's place.
    """

    fast: int = Param(12, ge=2, le=500, doc="fast EMA length")
    slow: int = Param(26, ge=3, le=1000, doc="slow EMA length")
    short: bool = Param(False, doc="also go short on a cross below")
    stop_loss: float = Param(0.0, ge=0.0, le=0.9, doc="stop-loss as a fraction of the entry price (0 = off)")
    take_profit: float = Param(0.0, ge=0.0, le=10.0, doc="take-profit as a fraction of the entry price (0 = off)")
    trailing_stop: float = Param(0.0, ge=0.0, le=0.9, doc="trailing stop as a fraction of the best price (0 = off)")
    lookback = 2

    def validate(self) -> None:
        if not self.fast < self.slow:
            raise ValueError(f"parameters fast={self.fast} and slow={self.slow}: fast must be shorter than slow")

    def indicators(self) -> dict:
        return {"fast_ema": spec("ema", self.fast), "slow_ema": spec("ema", self.slow)}

    def signals(self, d: Columns) -> Signals:
        up = crossed_above(d.fast_ema, d.slow_ema)
        down = crossed_below(d.fast_ema, d.slow_ema)
        if not self.short:
            return Signals(up, down)
        return Signals(up, down, down, up)
