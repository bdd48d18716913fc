"""Binance kline intervals and the UTC buckets they define.

Fixed intervals are whole multiples of a minute (or a second) counted from the epoch;
``1w`` buckets start on Monday 00:00 UTC as Binance's do; ``1M`` buckets are calendar months.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from kit.errors import ConfigError

_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

#: Every interval Binance serves, in ascending length (case-sensitive: ``1m`` minute, ``1M`` month).
INTERVALS: tuple[str, ...] = (
    "1s",
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
    "1M",
)
# The epoch was a Thursday; Binance weeks start on Monday, 4 days later.
_WEEK_OFFSET_MS = 4 * 86_400_000
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")


def validate_interval(interval: str) -> str:
    """Return ``interval`` if Binance serves it, else raise :class:`ConfigError` naming it."""
    if interval not in INTERVALS:
        raise ConfigError(f"unknown interval {interval!r}; expected one of {' '.join(INTERVALS)}")
    return interval


def validate_symbol(symbol: str) -> str:
    """Upper-case a symbol such as ``btcusdt`` and check its form (not that it is listed)."""
    s = str(symbol).upper()
    if not _SYMBOL_RE.match(s):
        raise ConfigError(f"invalid symbol {symbol!r}; expected letters and digits like BTCUSDT")
    return s


def interval_ms(interval: str) -> int:
    """Length of a fixed interval in ms. ``1M`` has no fixed length and raises ``ConfigError``."""
    validate_interval(interval)
    if interval == "1M":
        raise ConfigError("interval '1M' (one month) has no fixed length in ms")
    return int(interval[:-1]) * _MS[interval[-1]]


def interval_for_ms(step_ms: int) -> str | None:
    """The fixed Binance interval ``step_ms`` long (``3_600_000`` -> ``"1h"``), or None."""
    return _BY_MS.get(int(step_ms))


def bucket_offset_ms(interval: str) -> int:
    """Where ``interval``'s buckets are anchored, in ms after the epoch modulo their length:
    Monday 00:00 UTC for weeks (the epoch was a Thursday), the epoch for every other fixed one."""
    return _WEEK_OFFSET_MS if interval.endswith("w") else 0


def bucket_start(ts_ms: int, interval: str) -> int:
    """Open time (ms UTC) of the ``interval`` candle containing ``ts_ms``."""
    if interval == "1M":
        d = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
        return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp() * 1000)
    return ts_ms - (ts_ms - bucket_offset_ms(interval)) % interval_ms(interval)


def next_open(open_ms: int, interval: str) -> int:
    """Open time of the candle after the one opening at ``open_ms``."""
    if interval == "1M":
        d = datetime.fromtimestamp(open_ms / 1000, tz=UTC)
        y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return int(datetime(y, m, 1, tzinfo=UTC).timestamp() * 1000)
    return open_ms + interval_ms(interval)


_BY_MS = {interval_ms(i): i for i in INTERVALS if i != "1M"}
