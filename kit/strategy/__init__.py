"""Strategies: typed parameters, named indicators, and rules written once over columns.

The same rule code runs over a whole frame in a backtest and on the last ``lookback``
closed rows live (:meth:`Strategy.live`). See :class:`Strategy`.
"""

from kit.strategy._base import CANDLE_COLUMNS, Strategy
from kit.strategy._columns import Columns
from kit.strategy._frame import check_frame
from kit.strategy._live import LiveEvaluator
from kit.strategy._param import Param
from kit.strategy._parity import Mismatch, ParityError, ParityWarning, check_parity, sample_parity
from kit.strategy._signals import Signal, Signals, crossed_above, crossed_below, shift
from kit.strategy._streams import StreamColumn, on
from kit.strategy._trust import check_module_allowed, module_allowed

__all__ = [
    "CANDLE_COLUMNS",
    "Columns",
    "LiveEvaluator",
    "Mismatch",
    "Param",
    "ParityError",
    "ParityWarning",
    "Signal",
    "Signals",
    "Strategy",
    "StreamColumn",
    "check_frame",
    "check_module_allowed",
    "check_parity",
    "crossed_above",
    "crossed_below",
    "module_allowed",
    "on",
    "sample_parity",
    "shift",
]
