"""VolTrend: AtrTrend with each position sized by volatility, so every stop risks the same amount."""

from __future__ import annotations

import numpy as np

from kit.strategies._atr_trend import AtrTrend
from kit.strategy import Columns, Param, Signals


class VolTrend(AtrTrend):
    """:class:`AtrTrend` whose entries are sized so that reaching the stop loses ``risk``.

    Each entry's size is ``risk / (stop_atr x ATR)`` base units: small in volatile markets, large in
    quiet ones. Sizes are per signal (``Signals.size``) in the fill model's units: run it with
    ``size_type="amount"`` (``"value"`` would read them as quote value; ``"percent"`` ignores them).
    The stop is fixed by default (``trail=False``), so the risk per trade is what it says.
    """

    risk: float = Param(100.0, gt=0.0, doc="quote currency lost when the stop is hit (before fees and gaps)")
    trail: bool = Param(False, doc="the stop trails the best price since the entry")

    def signals(self, d: Columns) -> Signals:
        sig = super().signals(d)
        stop = self.stop_atr * np.asarray(d.atr, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            units = self.risk / stop
        return sig._replace(size=units)
