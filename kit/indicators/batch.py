"""Batch indicators: TA-Lib names and argument order, NumPy or pandas in, same kind out.

``rsi(close, 14)``, ``macd(close, 12, 26, 9)``, ``bbands(close, 20, 2.0)``,
``atr(high, low, close, 14)``... Inputs come first in TA-Lib's order, then the periods as
plain positional parameters (defaults are TA-Lib's). NumPy arrays in -> float64 arrays
out; a pandas Series as first input -> Series out on the same index. Multi-output
indicators return a NamedTuple in TA-Lib's output order (see :mod:`kit.indicators.results`).

Warm-up: the first ``warmup`` outputs are NaN, the same positions as TA-Lib's. Where TA-Lib
has the indicator the values equal TA-Lib's (tested to 1e-9 relative).

NaN in the input: a bar with NaN in any input is skipped, exactly as the incremental
``update`` skips it: its output is NaN and the indicator continues from the previous
valid bar (TA-Lib instead lets NaN poison everything after it).

Parameters are validated by constructing the incremental class, so both forms raise
the same error naming the bad parameter before any computing.

The functions live with their classes in the family modules; this module names every
registered indicator's batch function, your own included (``batch.hma``, ``batch.yours``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kit.indicators  # noqa: F401  (registers the built-ins)
from kit.indicators._registry import names, registration


def __getattr__(name: str) -> Callable[..., Any]:
    if name in names():
        return registration(name).batch
    raise AttributeError(f"module 'kit.indicators.batch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *names()})
