"""Charts for notebooks and the dashboard (HoloViews with the Bokeh backend, imported on first use).

* :func:`candles`: candlesticks over volume, indicator and equity panels on one linked time axis;
  price-scale indicators overlaid, the others one panel per indicator (:class:`Panel`); trade markers
* :func:`backtest`: the same straight from a :class:`kit.backtest.BacktestResult`
* :func:`equity`: equity curve and drawdown
* :func:`heatmap`: a sweep metric over two parameters, colours diverging from 0, even cells
* :func:`walk_forward`: a walk-forward's out-of-sample equity over its folds' train and test windows
* :func:`price_axis`: a HoloViews hook giving any chart's y-axis that formatter (``124,000``, never
  ``1.240e+5``); :func:`price_formatter` is the Bokeh formatter itself
* :func:`to_bokeh`: the Bokeh model of any of them
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Panel",
    "PlotError",
    "backtest",
    "candles",
    "equity",
    "heatmap",
    "price_axis",
    "price_formatter",
    "to_bokeh",
    "walk_forward",
]


def __getattr__(name: str) -> Any:
    if name == "walk_forward":
        from kit.plots import _walk

        return _walk.walk_forward
    if name in __all__:
        from kit.plots import _charts

        return getattr(_charts, name)
    raise AttributeError(f"module 'kit.plots' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
