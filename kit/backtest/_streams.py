"""One sweep over several candle streams (symbols, intervals): one tidy table, a row per stream and set."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from kit.backtest._run import infer_freq
from kit.errors import ConfigError, InputError
from kit.market.frame import check_frame
from kit.market.intervals import interval_for_ms, validate_interval

#: A stream of a multi-stream sweep: a symbol (its interval read from the candles' spacing) or
#: ``(symbol, interval)``.
StreamKey = str | tuple[str, str]


def stream_label(key: Any, frame: pd.DataFrame) -> tuple[str, str | None]:
    """``(symbol, interval)`` of one stream: the key's, or for a bare symbol the interval its rows are
    spaced by (None when that is not a Binance interval)."""
    if isinstance(key, str) and key:
        step = infer_freq(frame.index)
        return key, None if step is None else interval_for_ms(int(step / pd.Timedelta(1, "ms")))
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) and k for k in key):
        try:
            return key[0], validate_interval(key[1])
        except ConfigError as exc:
            raise InputError(f"data[{key!r}]: {exc}") from None
    raise InputError(f"a stream of data must be named by a symbol or (symbol, interval), got {key!r}")


def sweep_streams(
    sweep: Callable[..., pd.DataFrame],
    strategy_cls: type,
    data: Mapping[Any, pd.DataFrame],
    grid: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]],
    kwargs: dict[str, Any],
) -> pd.DataFrame:
    """``sweep(strategy_cls, frame, grid, **kwargs)`` for every stream of ``data``, stacked with
    ``symbol`` and ``interval`` columns first, in the mapping's order.

    The attrs are those of one stream's table (the grid's rejections do not depend on the candles)
    plus ``streams``: the ``(symbol, interval)`` of each stream.
    """
    if not data:
        raise InputError("data is an empty mapping: give at least one stream, e.g. {'BTCUSDT': frame}")
    if not isinstance(grid, Mapping):
        grid = [dict(p) for p in grid]  # an iterator would be used up by the first stream
    labels = [stream_label(key, check_frame(frame, name=f"data[{key!r}]")) for key, frame in data.items()]
    if len(set(labels)) < len(labels):
        raise InputError(f"data names the same stream twice: {labels}")
    tables = []
    for (symbol, interval), frame in zip(labels, data.values(), strict=True):
        table = sweep(strategy_cls, frame, grid, **kwargs)
        table.insert(0, "interval", interval)
        table.insert(0, "symbol", symbol)
        tables.append(table)
    out = pd.concat(tables, ignore_index=True)
    out.attrs = {**tables[0].attrs, "streams": labels}
    return out
