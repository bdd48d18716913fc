"""RsiReversion: buy when RSI recovers from oversold, sell when it reaches overbought."""

from __future__ import annotations

import numpy as np

from kit.indicators import spec
from kit.strategy import Columns, Param, Signals, Strategy, crossed_above, crossed_below


class RsiReversion(Strategy):
    """Mean reversion on Wilder's RSI.

    * Long entry: RSI crosses back above ``lower`` (leaving oversold).
    * Long exit: RSI crosses above ``upper`` (overbought reached).
    * With ``short=True``, the mirror image: short when RSI crosses back below ``upper``, cover
      when it crosses below ``lower``.
    * ``stop_loss``/``take_profit``: fractions of the entry price (0 = off).
    """

    period: int = Param(14, ge=2, le=200, doc="RSI length (Wilder smoothing, as TA-Lib)")
    lower: float = Param(30.0, ge=1.0, le=99.0, doc="oversold level")
    upper: float = Param(70.0, ge=1.0, le=99.0, doc="overbought level")
    short: bool = Param(False, doc="also trade the mirror-image short side")
    stop_loss: float = Param(0.0, ge=0.0, le=0.9, doc="stop-loss as a fraction of the entry price (0 = off)")
    take_profit: float = Param(0.0, ge=0.0, le=10.0, doc="take-profit as a fraction of the entry price (0 = off)")
    lookback = 2

    def validate(self) -> None:
        if not self.lower < self.upper:
            raise ValueError(f"parameters lower={self.lower} and upper={self.upper}: lower must be below upper")

    def indicators(self) -> dict:
        return {"rsi": spec("rsi", self.period)}

    def signals(self, d: Columns) -> Signals:
        rsi: np.ndarray = d.rsi
        entries = crossed_above(rsi, self.lower)
        exits = crossed_above(rsi, self.upper)
        if not self.short:
            return Signals(entries, exits)
        return Signals(entries, exits, crossed_below(rsi, self.upper), crossed_below(rsi, self.lower))
