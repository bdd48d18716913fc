"""Ready strategies with sensible defaults: :class:`RsiReversion`, :class:`EmaCross`, :class:`BollingerBreakout`.

Each is long-only by default (``short=True`` adds the mirror image) and takes optional
``stop_loss``/``take_profit`` fractions. Read their source as examples of the Strategy API.
"""

from kit.strategies._bollinger_breakout import BollingerBreakout
from kit.strategies._ema_cross import EmaCross
from kit.strategies._rsi_reversion import RsiReversion

#: every ready strategy, by class name
ALL: dict[str, type] = {c.__name__: c for c in (RsiReversion, EmaCross, BollingerBreakout)}

__all__ = ["ALL", "BollingerBreakout", "EmaCross", "RsiReversion"]
