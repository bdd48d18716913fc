"""Extra streams a strategy reads: declared as ``streams = {alias: (symbol, interval)}``, named with :func:`on`.

    class TrendFilter(Strategy):
        streams = {"h1": (None, "1h")}                 # None: the strategy's own symbol

        def indicators(self):
            return {"fast": spec("ema", 8), "trend": on("h1", spec("ema", 50)), "h1_close": on("h1", "close")}

A column named with :func:`on` holds, on each row of the strategy's own (base) stream, the value
of the extra stream's latest row closed at or before that base row's close
(:mod:`kit.market.asof`): no look-ahead by construction, the same rule in the backtest, the
replay and the daemon. Indicators of an extra stream are computed over that stream's own candles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kit.errors import InputError, KitError
from kit.market.asof import asof_index, close_times, take
from kit.market.frame import check_frame
from kit.market.intervals import interval_for_ms, validate_interval, validate_symbol
from kit.strategy._frame import open_times_ms

#: Candle columns of an extra stream that :func:`on` can name directly.
STREAM_FIELDS = ("open", "high", "low", "close", "volume")

StreamKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class StreamColumn:
    """One column read from an extra stream: a candle field or an indicator spec (and its output)."""

    alias: str
    source: Any  # an IndicatorSpec, or one of STREAM_FIELDS
    output: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.alias, str) or not self.alias.isidentifier():
            raise InputError(f"on(): stream alias must be an identifier, got {self.alias!r}")
        if isinstance(self.source, str):
            if self.source not in STREAM_FIELDS:
                raise InputError(f"on({self.alias!r}, {self.source!r}): a candle column is one of {STREAM_FIELDS}")
            if self.output is not None:
                raise InputError(f"on({self.alias!r}, {self.source!r}): a candle column has no outputs")
        elif not hasattr(self.source, "batch") or not hasattr(self.source, "inputs"):
            raise InputError(f"on({self.alias!r}, ...): expected an indicator spec or a candle column, "
                             f"got {self.source!r}")  # fmt: skip

    @property
    def is_field(self) -> bool:
        return isinstance(self.source, str)


def on(alias: str, source: Any, output: str | None = None) -> StreamColumn:
    """A column of extra stream ``alias`` (declared in the strategy's ``streams``): a candle column
    (``on("h1", "close")``) or an indicator (``on("h1", spec("ema", 50))``; ``output`` names one
    output of a multi-output indicator)."""
    return StreamColumn(alias, source, output)


def check_streams(streams: Any, owner: str) -> dict[str, tuple[str | None, str]]:
    """A strategy class's ``streams`` declaration, validated: alias -> (symbol or None, interval)."""
    if not isinstance(streams, Mapping):
        raise InputError(f"{owner}.streams must be a mapping alias -> (symbol, interval), got {streams!r}")
    out: dict[str, tuple[str | None, str]] = {}
    for alias, value in streams.items():
        if not isinstance(alias, str) or not alias.isidentifier():
            raise InputError(f"{owner}.streams: alias {alias!r} must be an identifier")
        if not isinstance(value, tuple | list) or len(value) != 2:
            raise InputError(f"{owner}.streams[{alias!r}] must be (symbol, interval), symbol None for its own")
        symbol, interval = value
        try:
            sym = None if symbol is None else validate_symbol(symbol)
            itv = validate_interval(interval)
        except (KitError, ValueError, TypeError) as exc:
            raise InputError(f"{owner}.streams[{alias!r}]: {exc}") from None
        out[alias] = (sym, itv)
    return out


def resolve(declared: Mapping[str, tuple[str | None, str]], symbol: str, interval: str) -> dict[str, StreamKey]:
    """The declared streams for a strategy running on ``symbol``/``interval``: alias -> (symbol, interval)."""
    out = {}
    for alias, (sym, itv) in declared.items():
        key = (sym or symbol, itv)
        if key == (symbol, interval):
            raise InputError(f"stream {alias!r} is {key[0]} {key[1]}, the strategy's own stream; use its columns")
        out[alias] = key
    return out


def join_columns(
    base_open_ms: np.ndarray,
    base_interval: str,
    columns: Mapping[str, StreamColumn],
    frames: Mapping[str, pd.DataFrame],
    intervals: Mapping[str, str],
    cache: dict[Any, Any] | None = None,
) -> dict[str, np.ndarray]:
    """The extra-stream columns on the base rows: each computed over its stream's frame, then as-of joined.

    ``frames`` and ``intervals``: per alias, the extra stream's candle frame and interval. ``cache``
    maps (alias, spec) -> batch output, so a sweep computes each extra indicator once.
    """
    from kit.strategy._base import _output  # one output picker for base and extra columns

    cache = {} if cache is None else cache
    base_close = close_times(base_open_ms, base_interval)
    idx: dict[str, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for name, col in columns.items():
        frame = frames.get(col.alias)
        if frame is None:
            raise InputError(f"column {name!r} reads stream {col.alias!r}: pass its candles, "
                             f"streams={{{col.alias!r}: frame}}")  # fmt: skip
        if col.alias not in idx:
            check_frame(frame)
            other_close = close_times(open_times_ms(frame.index), intervals[col.alias])
            idx[col.alias] = asof_index(base_close, other_close)
        if col.is_field:
            values = frame[col.source].to_numpy(dtype=np.float64)
        else:
            key = (col.alias, col.source)
            if key not in cache:
                cache[key] = col.source.batch(frame)
            values = _output(cache[key], col.output, f"indicators()[{name!r}] on stream {col.alias!r}")
        out[name] = take(values, idx[col.alias])
    return out


def frame_interval(index: pd.DatetimeIndex) -> str:
    """The Binance interval of a frame's rows: their most common spacing (outages do not change it)."""
    t = open_times_ms(index)
    if len(t) < 2:
        raise InputError("cannot tell the interval of fewer than 2 candles; pass interval=")
    steps, counts = np.unique(np.diff(t), return_counts=True)
    itv = interval_for_ms(int(steps[np.argmax(counts)]))
    if itv is None:
        raise InputError(f"candle spacing of {int(steps[np.argmax(counts)])} ms is not a Binance interval")
    return itv
