"""The one execution model shared by the backtest, the replay and the daemon.

:class:`FillModel` states the rules (see :mod:`kit.broker._model`); :class:`PaperBroker` executes
them one closed candle at a time; :func:`kit.backtest.run` hands the same model to vectorbt.
This package never imports vectorbt or numba: the daemon loads it.
"""

from kit.broker._model import SIZE_TYPES, FillModel, resolve_model
from kit.broker._paper import (
    EXIT_REASONS,
    FLAT,
    LONG,
    SHORT,
    BrokerState,
    Fill,
    PaperBroker,
    Trade,
    excursions,
    open_trade,
)
from kit.broker._simulate import STORED_COLUMNS, TRADE_COLUMNS, finish_trades, simulate, trades_frame

__all__ = [
    "EXIT_REASONS",
    "FLAT",
    "LONG",
    "SHORT",
    "SIZE_TYPES",
    "STORED_COLUMNS",
    "TRADE_COLUMNS",
    "BrokerState",
    "Fill",
    "FillModel",
    "PaperBroker",
    "Trade",
    "excursions",
    "finish_trades",
    "open_trade",
    "resolve_model",
    "simulate",
    "trades_frame",
]
