"""Technical indicators in two forms that agree exactly, plus the spec that names them.

- **Batch** (TA-Lib names, inputs then periods): ``rsi(close, 14)``, ``macd(close, 12, 26, 9)``,
  ``bbands(close, 20, 2.0)``, ``atr(high, low, close, 14)``; NumPy in -> arrays out, pandas
  Series in -> Series out. See :mod:`kit.indicators.batch`.
- **Incremental** (CamelCase classes): ``RSI(14).update(close)``, ``ATR(14).update(h, l, c)``;
  O(1) per bar, ``peek`` for a forming candle. See :mod:`kit.indicators.incremental`.
- :class:`IndicatorSpec` / :func:`spec`: hashable identity used by the engine to share work.

Importing this package does not import numba; the batch kernels compile on first call.
"""

from kit.indicators._base import Indicator
from kit.indicators.batch import *  # noqa: F403
from kit.indicators.batch import __all__ as _batch_all
from kit.indicators.incremental import *  # noqa: F403
from kit.indicators.incremental import __all__ as _inc_all
from kit.indicators.results import (
    BBandsResult,
    DonchianResult,
    KeltnerResult,
    MACDResult,
    StochResult,
    SuperTrendResult,
)
from kit.indicators.spec import NAMES, IndicatorSpec, parse_spec, spec

__all__ = [
    *_batch_all,
    *_inc_all,
    "NAMES",
    "BBandsResult",
    "DonchianResult",
    "Indicator",
    "IndicatorSpec",
    "KeltnerResult",
    "MACDResult",
    "StochResult",
    "SuperTrendResult",
    "parse_spec",
    "spec",
]
