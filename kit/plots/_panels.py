"""Which indicator columns a chart draws where: one :class:`Panel` per indicator, the levels an
oscillator is read against, and whether a column belongs over the candles. No plotting library here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kit.errors import KitError


class PlotError(KitError, ValueError):
    """A chart asked of data that does not have it (a missing column, a misaligned indicator)."""


#: The levels an oscillator is read against, drawn as guides on its panel (by indicator name).
GUIDES: dict[str, tuple[float, ...]] = {
    "rsi": (30.0, 70.0),
    "stochrsi": (20.0, 80.0),
    "stoch": (20.0, 80.0),
    "mfi": (20.0, 80.0),
    "willr": (-80.0, -20.0),
    "cci": (-100.0, 100.0),
}
#: Outputs that are differences around zero, drawn as bars (MACD's histogram).
BAR_OUTPUTS = frozenset({"hist"})
# longest names first, so "stochrsi_14" is not read as "stoch"
_GUIDE_RE = re.compile(rf"^({'|'.join(sorted(GUIDES, key=len, reverse=True))})(?![a-z])", re.IGNORECASE)


@dataclass(frozen=True)
class Panel:
    """Indicator columns drawn together: the outputs of one indicator (MACD's line, signal and
    histogram share one panel). ``bars`` are drawn as bars around zero, ``guides`` as levels."""

    name: str
    lines: tuple[str, ...]
    bars: tuple[str, ...] = ()
    guides: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.lines and not self.bars:
            raise PlotError(f"panel {self.name!r} has no columns")

    @property
    def columns(self) -> tuple[str, ...]:
        return self.lines + self.bars


def guides_for(name: str) -> tuple[float, ...]:
    m = _GUIDE_RE.match(name)
    return GUIDES[m.group(1).lower()] if m else ()


def normalise(indicators: pd.DataFrame | Mapping[str, Any]) -> tuple[dict[str, np.ndarray], list[Panel]]:
    """Columns and their grouping from a frame (one panel per column) or a mapping whose values
    are 1-D arrays/Series or several outputs (a named tuple such as ``macd()``'s, or a DataFrame)."""
    if isinstance(indicators, pd.DataFrame):
        items: list[tuple[str, Any]] = [(str(c), indicators[c]) for c in indicators.columns]
    else:
        items = [(str(k), v) for k, v in indicators.items()]
    cols: dict[str, np.ndarray] = {}
    panels: list[Panel] = []
    for key, value in items:
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            outputs = list(zip(value._fields, value, strict=True))
        elif isinstance(value, pd.DataFrame):
            outputs = [(str(c), value[c]) for c in value.columns]
        else:
            outputs = [(key, value)]
        lines, bars = [], []
        for out, arr in outputs:
            col = key if out == key or len(outputs) == 1 else f"{key}.{out}"
            cols[col] = np.asarray(arr, dtype=float).reshape(-1)
            (bars if out in BAR_OUTPUTS else lines).append(col)
        panels.append(Panel(key, tuple(lines), tuple(bars), guides_for(key)))
    return cols, panels


def strategy_panels(strategy: Any, names: list[str]) -> list[Panel]:
    """Group a strategy's columns by the indicator spec they come from (one panel per spec)."""
    try:
        colspec = strategy.columns_spec()
    except Exception:  # a strategy that cannot describe itself still gets one panel per column
        colspec = {}
    groups: dict[Any, list[tuple[str, str | None]]] = {}
    for name in names:
        entry = colspec.get(name)
        spec, output = entry if isinstance(entry, tuple) and len(entry) == 2 else (name, None)
        groups.setdefault(spec, []).append((name, output))
    panels = []
    for spec, members in groups.items():
        ind = getattr(spec, "name", None)
        title = members[0][0] if len(members) == 1 else (ind or members[0][0])
        lines = tuple(n for n, out in members if (out or n) not in BAR_OUTPUTS)
        bars = tuple(n for n, out in members if (out or n) in BAR_OUTPUTS)
        guides = GUIDES.get(ind, ()) if ind else guides_for(title)
        panels.append(Panel(title, lines, bars, guides))
    return panels


def on_price_scale(close: np.ndarray, values: list[np.ndarray]) -> bool:
    """Whether columns belong over the candles (moving averages, bands) rather than below them."""
    lo, hi = np.nanmin(close), np.nanmax(close)
    span = hi - lo if hi > lo else abs(hi) or 1.0
    for v in values:
        med = np.nanmedian(v) if np.isfinite(v).any() else np.nan
        if not (np.isfinite(med) and lo - span <= med <= hi + span):
            return False
    return True
