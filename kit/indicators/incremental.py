"""Incremental (streaming) indicators: one ``update`` per bar, O(1) time, bounded memory.

Every class mirrors the arithmetic of its batch kernel operation for operation, so
``update`` over a series equals the batch function over it; both follow TA-Lib's
recurrences (SMA-seeded EMAs, Wilder smoothing, running sums).

Conventions shared by all classes (see :class:`~kit.indicators.Indicator`):

- ``update(*bar)`` takes one bar's inputs in the batch function's order and returns the
  new value, NaN during warm-up (``warmup`` leading values), a NamedTuple for
  multi-output indicators;
- ``peek(*bar)`` returns the value for a forming candle without changing the state;
- a bar with NaN in any input is skipped: NaN out, state unchanged;
- ``copy()`` snapshots the state, ``reset()`` restarts it.

Rolling extremes (STOCH, WILLR, STOCHRSI, Donchian) use monotonic deques: amortised O(1).
CCI's mean absolute deviation has no exact O(1) form: its update is O(period) like TA-Lib's.

The classes live with their kernels in the family modules; this module names every
registered indicator's class by its class name (``incremental.RSI``, ``incremental.ZScore``).
"""

from __future__ import annotations

import kit.indicators  # noqa: F401  (registers the built-ins)
from kit.indicators._base import Indicator
from kit.indicators._registry import names, registration


def _classes() -> dict[str, type[Indicator]]:
    return {registration(n).incremental.__name__: registration(n).incremental for n in names()}


def __getattr__(name: str) -> type[Indicator]:
    got = _classes().get(name)
    if got is None:
        raise AttributeError(f"module 'kit.indicators.incremental' has no attribute {name!r}")
    return got


def __dir__() -> list[str]:
    return sorted({*globals(), *_classes()})
