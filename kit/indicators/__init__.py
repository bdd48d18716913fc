"""Technical indicators in two forms that agree, checked against TA-Lib, plus the spec that names them.

- **Batch** (TA-Lib names, inputs then periods): ``rsi(close, 14)``, ``macd(close, 12, 26, 9)``,
  ``bbands(close, 20, 2.0)``, ``atr(high, low, close, 14)``; NumPy in -> float64 arrays out,
  pandas Series in -> Series out on the same index; multi-output -> NamedTuple in TA-Lib's
  order. See :mod:`kit.indicators.batch`.
- **Incremental** (CamelCase classes): ``RSI(14).update(close)``, ``ATR(14).update(h, l, c)``;
  O(1) per bar (CCI: O(period), like TA-Lib), ``peek`` for a forming candle, ``copy``,
  ``reset``. See :mod:`kit.indicators.incremental`.
- :class:`IndicatorSpec` / :func:`spec` / :func:`parse_spec`: hashable identity (name, params,
  input columns) used by the engine to compute each indicator once per stream.

Conventions
    Defaults, warm-up lengths (NaN positions) and recurrences are TA-Lib's (SMA-seeded EMAs,
    Wilder smoothing, TA-Lib 0.8's relative flatness tests); values equal TA-Lib's to 1e-9
    relative of the indicator's scale, on random, pathological and real data. Deliberate
    differences: a bar with NaN in any input is *skipped* in both forms (NaN out, state
    unchanged; TA-Lib lets it poison the rest); WMA and the BBANDS variance are drift-free
    on long series; NATR needs ``period >= 2`` and MACD ``fast <= slow``. Indicators TA-Lib
    lacks (VWAP, Donchian, Keltner, SuperTrend) document their conventions on their class.

Importing this package does not import numba; the batch kernels compile (and are cached on
disk under ``NUMBA_CACHE_DIR``) on the first batch call.
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
