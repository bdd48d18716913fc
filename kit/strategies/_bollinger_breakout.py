"""BollingerBreakout: ride a close outside the Bollinger band until price returns to the mean."""

from __future__ import annotations

from kit.indicators import spec
from kit.strategy import Columns, Param, Signals, Strategy, crossed_above, crossed_below


class BollingerBreakout(Strategy):
    """Volatility breakout on Bollinger Bands (SMA ± ``width`` standard deviations).

    * Long entry: the close crosses above the upper band. Long exit: the close crosses below the middle band.
    * With ``short=True``: short when the close crosses below the lower band, cover when it crosses
      above the middle band.
    * ``stop_loss``/``take_profit``: fractions of the entry price (0 = off).
    """

    period: int = Param(20, ge=2, le=500, doc="band length (SMA and standard deviation window)")
    width: float = Param(2.0, gt=0.0, le=10.0, doc="band half-width in standard deviations")
    short: bool = Param(False, doc="also trade downside breakouts")
    stop_loss: float = Param(0.0, ge=0.0, le=0.9, doc="stop-loss as a fraction of the entry price (0 = off)")
    take_profit: float = Param(0.0, ge=0.0, le=10.0, doc="take-profit as a fraction of the entry price (0 = off)")
    lookback = 2

    def indicators(self) -> dict:
        bb = spec("bbands", self.period, self.width, self.width)
        return {"upper": (bb, "upper"), "middle": (bb, "middle"), "lower": (bb, "lower")}

    def signals(self, d: Columns) -> Signals:
        entries = crossed_above(d.close, d.upper)
        exits = crossed_below(d.close, d.middle)
        if not self.short:
            return Signals(entries, exits)
        return Signals(entries, exits, crossed_below(d.close, d.lower), crossed_above(d.close, d.middle))
