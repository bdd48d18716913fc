"""The one execution model shared by the backtest, the replay and the daemon.

:class:`FillModel` states the rules (see :mod:`kit.broker._model`); :class:`PaperBroker` executes
them one closed candle at a time; :func:`kit.backtest.run` hands the same model to vectorbt.
This package never imports vectorbt or numba: the daemon loads it.
"""

from kit.broker._model import SIZE_TYPES, FillModel, resolve_model
from kit.broker._paper import FLAT, LONG, SHORT, BrokerState, Fill, PaperBroker, Trade
from kit.broker._simulate import TRADE_COLUMNS, simulate, trades_frame

__all__ = [
    "FLAT",
    "LONG",
    "SHORT",
    "SIZE_TYPES",
    "TRADE_COLUMNS",
    "BrokerState",
    "Fill",
    "FillModel",
    "PaperBroker",
    "Trade",
    "resolve_model",
    "simulate",
    "trades_frame",
]
