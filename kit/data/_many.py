"""``kit.load`` over several symbols at once: one frame per symbol, aligned on one index."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from kit.errors import ConfigError
from kit.market.intervals import validate_symbol

ALIGN = ("inner", "outer", "none")


def load_many(
    load_one: Callable[..., pd.DataFrame], symbols: Sequence[str], interval: str, start: Any, end: Any, *,
    align: str, **kwargs: Any,
) -> dict[str, pd.DataFrame]:  # fmt: skip
    """``{symbol: frame}`` for each of ``symbols`` (in the order given), loaded by ``load_one``.

    ``align``: ``"inner"`` keeps the open times every symbol has (an outage of one symbol drops
    that row from all, so rows line up one for one); ``"outer"`` keeps every open time any symbol
    has, with NaN rows where a symbol has none (for research: backtests want real rows only);
    ``"none"`` leaves each symbol its own rows.
    """
    if align not in ALIGN:
        raise ConfigError(f"align must be one of {ALIGN}, got {align!r}")
    syms = [validate_symbol(s) for s in symbols]
    if not syms:
        raise ConfigError("symbols: give at least one symbol")
    if len(set(syms)) != len(syms):
        raise ConfigError(f"symbols: {syms} names a symbol twice")
    frames = {s: load_one(s, interval, start, end, **kwargs) for s in syms}
    if align == "none":
        return frames
    first, *rest = frames.values()
    index = first.index
    for f in rest:
        index = index.intersection(f.index) if align == "inner" else index.union(f.index)
    return {s: f.reindex(index) for s, f in frames.items()}
