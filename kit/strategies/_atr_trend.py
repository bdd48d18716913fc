"""AtrTrend: long/short trend following with stops sized by volatility (ATR), trailing by default."""

from __future__ import annotations

import numpy as np

from kit.indicators import spec
from kit.strategy import Columns, Param, Signals, Strategy, crossed_above, crossed_below


class AtrTrend(Strategy):
    """Long above, short below: a fast/slow EMA crossover whose stops are multiples of the ATR.

    * Long entry: fast EMA crosses above slow EMA; short entry (``short=True``): it crosses below.
      An opposite cross reverses the position; with ``short=False`` it only exits the long.
    * Stop: ``stop_atr`` x ATR from the entry price, trailing the best price since the entry
      (``trail=True``) or fixed (``trail=False``). Target: ``target_atr`` x ATR (0 = none).
    * Stops are per signal (``Signals.stop_loss``/``trailing_stop``/``take_profit`` as price
      distances), so each trade's stop is sized by the volatility when it was opened.
    """

    fast: int = Param(20, ge=2, le=500, doc="fast EMA length")
    slow: int = Param(50, ge=3, le=1000, doc="slow EMA length")
    atr: int = Param(14, ge=2, le=500, doc="ATR length")
    stop_atr: float = Param(2.0, gt=0.0, le=50.0, doc="stop distance in ATRs")
    trail: bool = Param(True, doc="the stop trails the best price since the entry")
    target_atr: float = Param(0.0, ge=0.0, le=100.0, doc="take-profit distance in ATRs (0 = none)")
    short: bool = Param(True, doc="also go short on a cross below")
    lookback = 2

    def validate(self) -> None:
        if not self.fast < self.slow:
            raise ValueError(f"parameters fast={self.fast} and slow={self.slow}: fast must be shorter than slow")

    def indicators(self) -> dict:
        return {"fast_ema": spec("ema", self.fast), "slow_ema": spec("ema", self.slow), "atr": spec("atr", self.atr)}

    def signals(self, d: Columns) -> Signals:
        up = crossed_above(d.fast_ema, d.slow_ema)
        down = crossed_below(d.fast_ema, d.slow_ema)
        stop = self.stop_atr * np.asarray(d.atr, dtype=np.float64)
        target = self.target_atr * np.asarray(d.atr, dtype=np.float64) if self.target_atr else None
        sl, trailing = (None, stop) if self.trail else (stop, None)
        if not self.short:
            return Signals(up, down, stop_loss=sl, take_profit=target, trailing_stop=trailing)
        return Signals(up, down, down, up, stop_loss=sl, take_profit=target, trailing_stop=trailing)
