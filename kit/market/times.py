"""Times as users write them, read and written one way everywhere: ms UTC <-> text."""

from __future__ import annotations

import math
import numbers
import time
from datetime import date
from typing import Any

from kit.errors import ConfigError

_HINT = "(try 2025-06-01, 2025-06-01T12:00Z or ms since the epoch)"


def parse_ms(value: Any, name: str) -> int:
    """``value`` as ms UTC, or a :class:`ConfigError` naming ``name``.

    Accepted: ms since the epoch (an int, a finite float, a NumPy number), ISO text
    (``2025-06-01``, ``2025-06-01 12:00``, ``2025-06-01T12:00Z``, ``...+02:00``), a ``date``
    (its midnight), a ``datetime`` or a ``pandas.Timestamp``. Naive times are UTC; aware ones are
    converted. ``kit.data.load``, the simulator and the CLI read their times through here.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{name} is not a date or time: {value!r} {_HINT}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(float(value)):
            raise ConfigError(f"{name} is not a date or time: {value!r} {_HINT}")
        return int(value)
    if not isinstance(value, str | date):  # datetime and pandas.Timestamp are dates too
        raise ConfigError(f"{name} is not a date or time: {value!r} {_HINT}")
    import pandas as pd  # deferred: the feed imports kit.market and never parses text times

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise ConfigError(f"{name} is not a date or time: {value!r} {_HINT}") from None
    if ts is pd.NaT:
        raise ConfigError(f"{name} is not a date or time: {value!r} {_HINT}")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def iso(ms: int) -> str:
    """ms UTC as ``2025-06-01 12:00:00Z``: how kit writes a time in messages and logs (and
    :func:`parse_ms` reads it back). No pandas: cheap enough for any layer."""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms // 1000))


__all__ = ["iso", "parse_ms"]
