"""Static charts on HoloViews (Bokeh backend): candlesticks with indicators and trades, equity and
drawdown, sweep heatmaps. Notebooks display the returned objects; the dashboard renders them
with :func:`to_bokeh`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

UP, DOWN = "#26a69a", "#ef5350"
_OVERLAY_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def _hv() -> Any:
    import holoviews as hv

    if not hv.Store.current_backend or "bokeh" not in hv.Store.registry:
        hv.extension("bokeh", logo=False)
    return hv


def _naive(index: pd.Index) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(index)
    return idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx


def _split_indicators(close: np.ndarray, indicators: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Columns on the price scale go over the candles; the rest (RSI, MACD...) get subplots."""
    lo, hi = np.nanmin(close), np.nanmax(close)
    span = hi - lo if hi > lo else abs(hi) or 1.0
    overlay, sub = [], []
    for c in indicators.columns:
        v = indicators[c].to_numpy(dtype=float)
        med = np.nanmedian(v) if np.isfinite(v).any() else np.nan
        (overlay if np.isfinite(med) and lo - span <= med <= hi + span else sub).append(str(c))
    return overlay, sub


def candles(
    data: pd.DataFrame,
    *,
    indicators: pd.DataFrame | Mapping[str, Any] | None = None,
    trades: pd.DataFrame | None = None,
    title: str = "",
    max_candles: int = 5_000,
    height: int = 380,
    width: int = 900,
) -> Any:
    """A candlestick chart; ``indicators`` on the price scale are overlaid, others get subplots
    below (sharing the time axis); ``trades`` (a ``.trades`` frame) adds entry/exit markers.

    Only the last ``max_candles`` rows are drawn (browsers struggle beyond that).
    """
    hv = _hv()
    df = data.iloc[-max_candles:] if len(data) > max_candles else data
    t = _naive(df.index)
    step = (t[1:] - t[:-1]).min() if len(t) > 1 else pd.Timedelta(minutes=1)
    half = step * 0.35
    o, h, lo, c = (df[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    up = c >= o
    wicks = hv.Segments(
        pd.DataFrame({"x0": t, "y0": lo, "x1": t, "y1": h, "dir": np.where(up, "up", "down")}),
        kdims=["x0", "y0", "x1", "y1"],
        vdims=["dir"],
    ).opts(color=hv.dim("dir").categorize({"up": UP, "down": DOWN}), line_width=1)
    bodies = hv.Rectangles(
        pd.DataFrame(
            {
                "x0": t - half,
                "y0": np.minimum(o, c),
                "x1": t + half,
                "y1": np.maximum(o, c),
                "dir": np.where(up, "up", "down"),
            }
        ),
        kdims=["x0", "y0", "x1", "y1"],
        vdims=["dir"],
    ).opts(color=hv.dim("dir").categorize({"up": UP, "down": DOWN}), line_color=None)
    layers = [wicks, bodies]
    subplots = []
    if indicators is not None:
        ind = pd.DataFrame(dict(indicators)) if isinstance(indicators, Mapping) else indicators
        ind = ind.reindex(df.index) if len(ind) != len(df) else ind
        ind.index = t
        overlay, sub = _split_indicators(c, ind)
        for i, name in enumerate(overlay):
            color = _OVERLAY_COLORS[i % len(_OVERLAY_COLORS)]
            layers.append(hv.Curve((t, ind[name].to_numpy(dtype=float)), "time", "price", label=name).opts(color=color))
        for name in sub:
            subplots.append(
                hv.Curve((t, ind[name].to_numpy(dtype=float)), "time", name, label=name).opts(
                    height=max(120, height // 3), width=width, color="#555555", tools=["hover"]
                )
            )
    if trades is not None and len(trades):
        tr = trades[(trades["exit_time"] >= df.index[0]) & (trades["entry_time"] <= df.index[-1])]
        long = tr["side"] == "long"
        for sel, marker_in, color in ((long, "triangle", UP), (~long, "inverted_triangle", DOWN)):
            part = tr[sel]
            if len(part):
                layers.append(
                    hv.Scatter(
                        (_naive(part["entry_time"]), part["entry_price"].to_numpy()), "time", "price", label="entry"
                    ).opts(marker=marker_in, size=10, color=color, line_color="black")
                )
        if "exit_reason" in tr:
            tr = tr[tr["exit_reason"] != "open"]  # an open position has no exit to mark
        if len(tr):
            layers.append(
                hv.Scatter((_naive(tr["exit_time"]), tr["exit_price"].to_numpy()), "time", "price", label="exit").opts(
                    marker="x", size=10, color="black"
                )
            )
    price = hv.Overlay(layers).opts(
        title=title,
        height=height,
        width=width,
        xlabel="time (UTC)",
        ylabel="price",
        show_grid=True,
        legend_position="top_left",
    )
    if not subplots:
        return price
    return hv.Layout([price, *subplots]).cols(1).opts(shared_axes=True)


def backtest(result: Any, *, title: str | None = None, max_candles: int = 5_000) -> Any:
    """Candles, the strategy's indicators and its trades, from a :class:`kit.backtest.BacktestResult`."""
    return candles(
        result.data,
        indicators=result.indicator_frame(),
        trades=result.trades,
        title=title if title is not None else repr(result.strategy),
        max_candles=max_candles,
    )


def equity(result_or_series: Any, *, title: str = "equity", height: int = 300, width: int = 900) -> Any:
    """Equity curve with the drawdown below it (from a backtest result or an equity Series)."""
    hv = _hv()
    eq = result_or_series.equity if hasattr(result_or_series, "equity") else pd.Series(result_or_series)
    t = _naive(eq.index)
    v = eq.to_numpy(dtype=float)
    dd = v / np.maximum.accumulate(v) - 1.0
    top = hv.Curve((t, v), "time", "equity").opts(title=title, height=height, width=width, color=UP, tools=["hover"])
    bottom = hv.Area((t, dd * 100), "time", hv.Dimension("drawdown", label="drawdown %")).opts(
        height=max(120, height // 2), width=width, color=DOWN, alpha=0.5, tools=["hover"]
    )
    return hv.Layout([top, bottom]).cols(1).opts(shared_axes=True)


def heatmap(table: pd.DataFrame, x: str, y: str, metric: str = "sharpe", *, agg: str = "max", **opts: Any) -> Any:
    """A heatmap of a sweep ``metric`` over two parameters (other parameters aggregated by ``agg``)."""
    hv = _hv()
    for col in (x, y, metric):
        if col not in table.columns:
            raise ValueError(f"heatmap: column {col!r} not in the sweep table ({list(table.columns)})")
    grid = table.groupby([x, y], as_index=False)[metric].agg(agg)
    style = {"cmap": "RdYlGn", "colorbar": True, "tools": ["hover"], "width": 600, "height": 450, "title": metric}
    style.update(opts)
    return hv.HeatMap(grid, kdims=[x, y], vdims=[metric]).opts(**style)


def to_bokeh(obj: Any) -> Any:
    """The Bokeh model of a chart (for Panel/Bokeh apps such as the dashboard)."""
    hv = _hv()
    return hv.render(obj, backend="bokeh")
