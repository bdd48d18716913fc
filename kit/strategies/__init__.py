"""Ready strategies with sensible defaults: :class:`RsiReversion`, :class:`EmaCross`, :class:`BollingerBreakout`,
:class:`AtrTrend`, :class:`VolTrend`, :class:`TrendFilter`.

The first three are long-only by default (``short=True`` adds the mirror image) and take optional
``stop_loss``/``take_profit`` fractions; :class:`AtrTrend` is long/short with ATR-sized stops per
signal, trailing by default; :class:`VolTrend` also sizes each entry from the ATR; :class:`TrendFilter`
takes entries of its own stream only with the trend of its symbol's 1h stream. Read their
source as examples of the Strategy API.
"""

from kit.strategies._atr_trend import AtrTrend
from kit.strategies._bollinger_breakout import BollingerBreakout
from kit.strategies._ema_cross import EmaCross
from kit.strategies._rsi_reversion import RsiReversion
from kit.strategies._trend_filter import TrendFilter
from kit.strategies._vol_trend import VolTrend

#: every ready strategy, by class name
ALL: dict[str, type] = {
    c.__name__: c for c in (RsiReversion, EmaCross, BollingerBreakout, AtrTrend, VolTrend, TrendFilter)
}

__all__ = ["ALL", "AtrTrend", "BollingerBreakout", "EmaCross", "RsiReversion", "TrendFilter", "VolTrend"]
