"""The live chart's indicator menu: overlays drawn over the price, panes drawn under it.

Every stream the hub holds computes every item of the menu **once**, in the shared indicator
engine (:mod:`kit.engine`), whatever the number of pages watching it; each page draws the items
its viewer chose. An item's values travel in the stream's chart rows under fixed column names
(:meth:`Overlay.column`, :meth:`Pane.column`), so the page's script applies them like the candles.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol


class MenuItem(Protocol):
    """What the hub computes for a chart: an indicator (``name``, ``params``) and its columns."""

    @property
    def label(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def params(self) -> tuple[Any, ...]: ...

    def column(self, output: str | None = None) -> str: ...


def overlay_column(label: str, output: str | None = None) -> str:
    """The chart column holding an overlay's (output's) values, e.g. ``ov_ema_20`` / ``ov_bollinger_20_upper``."""
    base = "ov_" + label.lower().replace(" ", "_")
    return f"{base}_{output}" if output else base


class Overlay(NamedTuple):
    """An indicator a user may draw over the price: a label, the spec's name and parameters."""

    label: str
    name: str
    params: tuple[Any, ...]

    def column(self, output: str | None = None) -> str:
        return overlay_column(self.label, output)


class Pane(NamedTuple):
    """An indicator drawn in its own pane under the price: ``key`` names it in URLs and columns
    (``pn_<key>``, ``pn_<key>_<output>``); ``guides`` are horizontal levels drawn with it;
    ``bounds`` fixes the pane's value axis (an oscillator's scale), else it fits the data. An
    output called ``hist`` is drawn as bars coloured by sign, the others as lines."""

    key: str
    label: str
    name: str
    params: tuple[Any, ...]
    guides: tuple[float, ...] = ()
    bounds: tuple[float, float] | None = None

    def column(self, output: str | None = None) -> str:
        return f"pn_{self.key}_{output}" if output else f"pn_{self.key}"


#: The overlay menu.
OVERLAYS: tuple[Overlay, ...] = (
    Overlay("EMA 20", "ema", (20,)),
    Overlay("EMA 50", "ema", (50,)),
    Overlay("SMA 20", "sma", (20,)),
    Overlay("Bollinger 20", "bbands", (20, 2.0)),
)

#: The indicator panes (the volume pane draws the candles' own volume: it needs no indicator).
PANES: tuple[Pane, ...] = (
    Pane("rsi", "RSI 14", "rsi", (14,), guides=(30.0, 70.0), bounds=(0.0, 100.0)),
    Pane("macd", "MACD 12 26 9", "macd", (12, 26, 9)),
)
VOLUME = "volume"


def item_columns(item: MenuItem, spec: Any) -> list[str]:
    """An item's chart columns: one per output of its indicator ``spec``."""
    outputs = list(getattr(spec, "outputs", ()) or ())
    return [item.column(o) for o in outputs] if len(outputs) > 1 else [item.column()]


def flatten(values: Any, items: dict[Any, MenuItem]) -> dict[str, float]:
    """Engine row values (keyed by spec; a multi-output value is a mapping or a tuple) -> chart columns."""
    out: dict[str, float] = {}
    if not values:
        return out
    for sp, v in dict(values).items():
        item = items.get(sp)
        if item is None:
            continue
        if isinstance(v, dict):
            for name, x in v.items():
                out[item.column(name)] = _num(x)
        elif isinstance(v, tuple | list):
            outputs = list(getattr(sp, "outputs", ()) or ()) or [str(i) for i in range(len(v))]
            for name, x in zip(outputs, v, strict=False):
                out[item.column(name)] = _num(x)
        elif hasattr(v, "_asdict"):
            for name, x in v._asdict().items():
                out[item.column(name)] = _num(x)
        else:
            out[item.column()] = _num(v)
    return out


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan
