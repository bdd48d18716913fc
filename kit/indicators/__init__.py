"""Technical indicators in two forms that agree, checked against TA-Lib, plus the spec that names them.

- **Batch** (TA-Lib names, inputs then periods): ``rsi(close, 14)``, ``macd(close, 12, 26, 9)``,
  ``bbands(close, 20, 2.0)``, ``atr(high, low, close, 14)``; NumPy in -> float64 arrays out,
  pandas Series in -> Series out on the same index; multi-output -> NamedTuple in TA-Lib's
  order.
- **Incremental** (CamelCase classes): ``RSI(14).update(close)``, ``ATR(14).update(h, l, c)``;
  O(1) per bar (CCI: O(period), like TA-Lib), ``peek`` for a forming candle, ``copy``,
  ``reset``.
- :class:`IndicatorSpec` / :func:`spec` / :func:`parse_spec`: hashable identity (name, params,
  input columns) used by the engine to compute each indicator once per stream.
- :func:`register`: add your own indicator (an incremental class, a batch function, or both;
  kit derives the missing form), after which ``spec("yours", ...)`` works everywhere the
  built-ins do; :func:`check` proves its two forms agree on real data. ``hma`` and
  ``zscore`` ship registered that way as examples.

One module per family (``_averages``, ``_momentum``, ``_volatility``, ``_ranges``,
``_directional``, ``_volume``) holds each indicator's class, numba kernel and batch function
and registers them by name; adding an indicator touches its family module only.

Conventions
    Defaults, warm-up lengths (NaN positions) and recurrences are TA-Lib's (SMA-seeded EMAs,
    Wilder smoothing, TA-Lib 0.8's relative flatness tests); values equal TA-Lib's to 1e-9
    relative of the indicator's scale, on random, pathological and real data. Deliberate
    differences: a bar with NaN in any input is *skipped* in both forms (NaN out, state
    unchanged; TA-Lib lets it poison the rest); WMA and the BBANDS variance are drift-free
    on long series; NATR needs ``period >= 2`` and MACD ``fast <= slow``. Indicators TA-Lib
    lacks (VWAP, Donchian, Keltner, SuperTrend) document their conventions on their class.
    Bad parameters raise :class:`IndicatorError` (a ``ValueError`` and a ``KitError``).

Importing this package does not import numba; the batch kernels compile (and are cached on
disk under ``NUMBA_CACHE_DIR``) on the first batch call.
"""

from kit.indicators import _averages, _directional, _examples, _momentum, _ranges, _volatility, _volume
from kit.indicators._averages import *  # noqa: F403
from kit.indicators._base import Indicator, IndicatorError
from kit.indicators._check import CheckResult, check
from kit.indicators._directional import *  # noqa: F403
from kit.indicators._examples import *  # noqa: F403
from kit.indicators._momentum import *  # noqa: F403
from kit.indicators._ranges import *  # noqa: F403
from kit.indicators._registry import Registration, names, register, registration
from kit.indicators._volatility import *  # noqa: F403
from kit.indicators._volume import *  # noqa: F403
from kit.indicators.results import (
    BBandsResult,
    DonchianResult,
    KeltnerResult,
    MACDResult,
    StochResult,
    SuperTrendResult,
)
from kit.indicators.spec import IndicatorSpec, parse_spec, spec

#: the built-in indicators (TA-Lib's and a few classics, each checked against a reference);
#: :func:`names` lists every registered one, the examples and your own included
NAMES: tuple[str, ...] = names("core")

__all__ = [
    *_averages.__all__,
    *_directional.__all__,
    *_examples.__all__,
    *_momentum.__all__,
    *_ranges.__all__,
    *_volatility.__all__,
    *_volume.__all__,
    "NAMES",
    "BBandsResult",
    "CheckResult",
    "DonchianResult",
    "Indicator",
    "IndicatorError",
    "IndicatorSpec",
    "KeltnerResult",
    "MACDResult",
    "Registration",
    "StochResult",
    "SuperTrendResult",
    "check",
    "names",
    "parse_spec",
    "register",
    "registration",
    "spec",
]
