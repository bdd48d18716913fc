"""Static charts on HoloViews (Bokeh backend): candlesticks with volume, indicators, trades and
equity; equity and drawdown; sweep heatmaps. Notebooks display the returned objects; the dashboard
renders them with :func:`to_bokeh`.

What a quant relies on when reading them: every panel of a chart shares one time axis (zooming the
price zooms RSI too), each panel has room for its data, prices read as numbers (``124,000``, never
``1.240e+5``), the drawn window is the data's window, and a heatmap's colours say the sign.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from kit.plots._panels import (
    Panel,
    PlotError,
    normalise,
    on_price_scale,
    strategy_panels,
)

_RESERVED = frozenset({"time", "price", "volume", "equity"})
UP, DOWN = "#26a69a", "#ef5350"
_OVERLAY_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_PANEL_COLORS = ("#1f77b4", "#ff7f0e", "#555555", "#9467bd", "#8c564b")
_GUIDE_COLOR = "#9e9e9e"
# ColorBrewer RdYlGn in 10 bands, red to green: an even count leaves no neutral yellow band at 0,
# so the smallest loss is orange and the smallest gain light green
_DIVERGING = [
    "#a50026",
    "#d73027",
    "#f46d43",
    "#fdae61",
    "#fee08b",
    "#d9ef8b",
    "#a6d96a",
    "#66bd63",
    "#1a9850",
    "#006837",
]
_LEGEND = {"background_fill_alpha": 0.6, "label_text_font_size": "8pt", "padding": 4, "spacing": 0}

# Plotting-area heights in px (frame_height: the axes and labels come on top, so a panel never
# shrinks to a sliver of data under its own axis).
VOLUME_HEIGHT = 100
_YAXIS_ROOM = 80  # px left of the plotting area, for the y-axis ticks and label
PANEL_HEIGHT = 140
EQUITY_HEIGHT = 140

# Bokeh's default tick formatter switches to 1.240e+5 at 100,000: BTC prices. This one writes
# every tick with thousands separators and as many decimals as the tick spacing needs, so the
# labels stay distinct at any zoom (the spacing is 1, 2 or 5 x 10^k).
_PRICE_TICKS_JS = """
const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : Math.abs(tick);
const d = step > 0 ? Math.min(12, Math.max(0, Math.ceil(-Math.log10(step) - 1e-9))) : 0;
return tick.toLocaleString("en-US", {minimumFractionDigits: d, maximumFractionDigits: d});
"""


def _hv() -> Any:
    import holoviews as hv

    if not hv.Store.current_backend or "bokeh" not in hv.Store.registry:
        hv.extension("bokeh", logo=False)
    return hv


def price_formatter() -> Any:
    """A new Bokeh tick formatter for prices and money: ``124,000``, ``0.00012``, never scientific."""
    from bokeh.models import CustomJSTickFormatter

    return CustomJSTickFormatter(code=_PRICE_TICKS_JS)


# Hooks, not ``yformatter=<model>``: a Bokeh model in the options would be shared by every render
# of the chart, and a model belongs to one document (a notebook showing a chart twice would fail).
def price_axis(plot: Any, element: Any) -> None:
    """HoloViews hook: the y-axis reads prices and money as numbers (``.opts(hooks=[price_axis])``)."""
    for axis in plot.state.yaxis:
        axis.formatter = price_formatter()


def _volume_axis(plot: Any, element: Any) -> None:
    from bokeh.models import NumeralTickFormatter

    for axis in plot.state.yaxis:
        axis.formatter = NumeralTickFormatter(format="0.[00]a")  # 1.25k, 3.4m: compact, never scientific


def _naive(index: Any) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(index)
    return idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx


def candles(
    data: pd.DataFrame,
    *,
    indicators: pd.DataFrame | Mapping[str, Any] | None = None,
    panels: list[Panel] | None = None,
    trades: pd.DataFrame | None = None,
    equity: pd.Series | None = None,
    volume: bool = True,
    title: str = "",
    max_candles: int = 5_000,
    height: int = 360,
    width: int = 860,
) -> Any:
    """Candlesticks over panels sharing one time axis: volume, indicators, equity.

    ``indicators`` on the price scale are overlaid on the candles; the others get a panel each,
    the outputs of one indicator together (give ``macd(close)`` as one value, or ``panels``), with
    bars for a histogram and guides for oscillators (RSI 30/70...). ``trades`` (a ``.trades``
    frame; extra columns are ignored) adds entry and exit markers; ``equity`` (a Series on the
    data's index) a panel at the bottom. ``height`` and ``width`` are the price panel's plotting
    area in px. Only the last ``max_candles`` rows are drawn (browsers struggle beyond that), and
    the time axis is exactly their window.
    """
    hv = _hv()
    if max_candles < 1:
        raise PlotError(f"candles: max_candles must be at least 1, got {max_candles}")
    df = data.iloc[-max_candles:] if len(data) > max_candles else data
    t = _naive(df.index)
    step = (t[1:] - t[:-1]).min() if len(t) > 1 else pd.Timedelta(minutes=1)
    half = step * 0.35
    xlim = (t[0] - step / 2, t[-1] + step / 2)
    time = hv.Dimension("time", label="time (UTC)")
    price = hv.Dimension("price")
    o, h, lo, c = (df[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    direction = np.where(c >= o, "up", "down")
    color = hv.dim("dir").categorize({"up": UP, "down": DOWN})
    wicks = hv.Segments(
        pd.DataFrame({"time": t, "price": lo, "time_end": t, "wick_top": h, "dir": direction}),
        kdims=[time, price, "time_end", "wick_top"],
        vdims=["dir"],
    ).opts(color=color, line_width=1)
    bodies = hv.Rectangles(
        pd.DataFrame(
            {
                "time": t - half,
                "price": np.minimum(o, c),
                "time_end": t + half,
                "body_top": np.maximum(o, c),
                "dir": direction,
                "open": o,
                "high": h,
                "low": lo,
                "close": c,
            }
        ),
        kdims=[time, price, "time_end", "body_top"],
        vdims=["dir", "open", "high", "low", "close"],
    ).opts(
        color=color,
        line_color=None,
        tools=["hover"],
        hover_tooltips=[(k, f"@{k}{{0,0.[00000000]}}") for k in ("open", "high", "low", "close")],
    )
    layers = [wicks, bodies]
    below: list[tuple[Panel, dict[str, np.ndarray]]] = []
    if indicators is not None:
        cols, groups = normalise(indicators)
        if panels is not None:
            groups = panels
        cols = {k: _align(v, data, df) for k, v in cols.items()}
        n_overlay = 0
        for panel in groups:
            missing = [k for k in panel.columns if k not in cols]
            if missing:
                raise PlotError(f"candles: panel {panel.name!r} names columns not in indicators: {missing}")
            if not panel.bars and on_price_scale(c, [cols[k] for k in panel.lines]):
                for name in panel.lines:
                    layers.append(
                        hv.Curve((t, cols[name]), time, price, label=name).opts(
                            color=_OVERLAY_COLORS[n_overlay % len(_OVERLAY_COLORS)]
                        )
                    )
                    n_overlay += 1
            else:
                below.append((panel, cols))
    if trades is not None and len(trades):
        layers += _trade_markers(hv, trades, df.index, time, price)
    charts = [
        hv.Overlay(layers).opts(
            title=title,
            frame_height=height,
            ylabel="price",
            hooks=[price_axis],
            legend_position="top_left",
            legend_opts=_LEGEND,
        )
    ]
    if volume and "volume" in df.columns:
        charts.append(_volume_panel(hv, t, half, df["volume"].to_numpy(dtype=float), direction, time))
    for panel, cols in below:
        charts.append(_indicator_panel(hv, panel, cols, t, half, time))
    if equity is not None:
        eq = _align(equity, data, df)
        charts.append(
            hv.Curve((t, eq), time, hv.Dimension("equity"), label="equity").opts(
                frame_height=EQUITY_HEIGHT, color=UP, hooks=[price_axis], tools=["hover"]
            )
        )
    return _stack(hv, charts, width, xlim)


def _align(values: Any, data: pd.DataFrame, df: pd.DataFrame) -> np.ndarray:
    """A column given for ``data`` cut to the drawn rows ``df`` (the last ones)."""
    if isinstance(values, pd.Series) and isinstance(values.index, pd.DatetimeIndex):
        return values.reindex(df.index).to_numpy(dtype=float)  # by time: an equity Series of the run
    v = np.asarray(values, dtype=float).reshape(-1)
    if len(v) == len(df):
        return v
    if len(v) == len(data):
        return v[len(data) - len(df) :]
    raise PlotError(f"candles: an indicator has {len(v)} rows, the data {len(data)}")


def _trade_markers(hv: Any, trades: pd.DataFrame, index: pd.Index, time: Any, price: Any) -> list[Any]:
    """Entry and exit markers of the trades whose entry or exit lies in the drawn window; a
    marker outside it is left out (it would stretch the time axis back to a trade's start)."""
    first, last = index[0], index[-1]
    out = []
    entries = trades[(trades["entry_time"] >= first) & (trades["entry_time"] <= last)]
    long = entries["side"] == "long"
    for sel, marker, color, label in (
        (long, "triangle", UP, "long entry"),
        (~long, "inverted_triangle", DOWN, "short entry"),
    ):
        part = entries[sel]
        if len(part):
            xy = (_naive(part["entry_time"]), part["entry_price"].to_numpy(dtype=float))
            out.append(
                hv.Scatter(xy, time, price, label=label).opts(marker=marker, size=10, color=color, line_color="black")
            )
    closed = trades["exit_time"].notna()
    if "exit_reason" in trades:  # a position still open at the end has no exit to mark
        closed &= trades["exit_reason"] != "open"
    exits = trades[closed & (trades["exit_time"] >= first) & (trades["exit_time"] <= last)]
    if len(exits):
        xy = (_naive(exits["exit_time"]), exits["exit_price"].to_numpy(dtype=float))
        out.append(hv.Scatter(xy, time, price, label="exit").opts(marker="x", size=10, color="black", line_width=2))
    return out


def _volume_panel(hv: Any, t: pd.DatetimeIndex, half: Any, vol: np.ndarray, direction: np.ndarray, time: Any) -> Any:
    bars = pd.DataFrame({"time": t - half, "volume": 0.0, "time_end": t + half, "volume_top": vol, "dir": direction})
    return hv.Rectangles(bars, kdims=[time, "volume", "time_end", "volume_top"], vdims=["dir"]).opts(
        color=hv.dim("dir").categorize({"up": UP, "down": DOWN}),
        line_color=None,
        alpha=0.6,
        frame_height=VOLUME_HEIGHT,
        ylabel="volume",
        hooks=[_volume_axis],
    )


def _indicator_panel(
    hv: Any, panel: Panel, cols: dict[str, np.ndarray], t: pd.DatetimeIndex, half: Any, time: Any
) -> Any:
    # the y dimension is the panel's name: a panel never shares the price's, volume's or equity's range
    ydim = hv.Dimension(panel.name if panel.name not in _RESERVED else f"{panel.name} (indicator)", label=panel.name)
    layers = []
    for name in panel.bars:
        v = cols[name]
        top = f"{ydim.name}_bar"
        bars = pd.DataFrame(
            {"time": t - half, ydim.name: 0.0, "time_end": t + half, top: v, "sign": np.where(v >= 0, "up", "down")}
        )
        layers.append(
            hv.Rectangles(
                bars, kdims=[time, ydim, "time_end", top], vdims=["sign"], label=name.rsplit(".", 1)[-1]
            ).opts(color=hv.dim("sign").categorize({"up": UP, "down": DOWN}), line_color=None, alpha=0.7)
        )
    for i, name in enumerate(panel.lines):
        layers.append(
            hv.Curve((t, cols[name]), time, ydim, label=name.rsplit(".", 1)[-1]).opts(
                color=_PANEL_COLORS[i % len(_PANEL_COLORS)], tools=["hover"]
            )
        )
    for level in panel.guides:
        layers.append(hv.HLine(level).opts(color=_GUIDE_COLOR, line_dash="dashed", line_width=1))
    opts: dict[str, Any] = {"frame_height": PANEL_HEIGHT, "ylabel": panel.name}
    if len(panel.columns) > 1:  # one row, translucent: a legend must not hide the latest values
        opts.update(legend_position="top_left", legend_cols=len(panel.columns), legend_opts=_LEGEND)
    return hv.Overlay(layers).opts(**opts)


def _stack(hv: Any, charts: list[Any], width: int, xlim: tuple[Any, Any]) -> Any:
    """Panels one above the other on one shared time axis, labelled only at the bottom, all with
    the same plotting width so their times line up."""
    last = len(charts) - 1
    # One outer width, not frame_width: Bokeh's grid aligns the frames' left edges across rows, and
    # a figure sized by its frame (its y-axis narrower than another's) is then clipped on the right.
    outer = width + _YAXIS_ROOM + 10
    styled = [
        ch.opts(
            width=outer,
            xlim=xlim,
            show_grid=True,
            xaxis="bottom" if i == last else None,
            clone=True,
            **({} if i == 0 else {"title": ""}),
        )
        for i, ch in enumerate(charts)
    ]
    if len(styled) == 1:
        return styled[0]
    return hv.Layout(styled).cols(1).opts(shared_axes=True)


def backtest(result: Any, *, title: str | None = None, max_candles: int = 5_000, volume: bool = True) -> Any:
    """Candles, volume, the strategy's indicators (one panel per indicator), its trades and its
    equity, from a :class:`kit.backtest.BacktestResult`."""
    ind = result.indicator_frame()
    return candles(
        result.data,
        indicators=ind,
        panels=strategy_panels(result.strategy, [str(c) for c in ind.columns]),
        trades=result.trades,
        equity=result.equity,
        volume=volume,
        title=title if title is not None else repr(result.strategy),
        max_candles=max_candles,
    )


def equity(result_or_series: Any, *, title: str = "equity", height: int = 260, width: int = 860) -> Any:
    """Equity curve with the drawdown below it (from a backtest result or an equity Series)."""
    hv = _hv()
    eq = result_or_series.equity if hasattr(result_or_series, "equity") else pd.Series(result_or_series)
    t = _naive(eq.index)
    v = eq.to_numpy(dtype=float)
    dd = v / np.maximum.accumulate(v) - 1.0
    time = hv.Dimension("time", label="time (UTC)")
    top = hv.Curve((t, v), time, "equity").opts(
        title=title, frame_height=height, color=UP, tools=["hover"], hooks=[price_axis]
    )
    bottom = hv.Area((t, dd * 100), time, hv.Dimension("drawdown", label="drawdown %")).opts(
        frame_height=max(100, height // 2), color=DOWN, alpha=0.5, tools=["hover"]
    )
    step = (t[1:] - t[:-1]).min() if len(t) > 1 else pd.Timedelta(0)
    return _stack(hv, [top, bottom], width, (t[0] - step / 2, t[-1] + step / 2))


def _factor(v: Any) -> str:
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, float | np.floating):
        return repr(float(v))
    return str(v)


def heatmap(table: pd.DataFrame, x: str, y: str, metric: str = "sharpe", *, agg: str = "max", **opts: Any) -> Any:
    """A heatmap of a sweep ``metric`` over two parameters (other parameters aggregated by ``agg``).

    The colours diverge from 0 in ten bands (red below, green above, the same scale both ways, no
    neutral band), so a Sharpe of -0.1 never looks good; a drawdown given as a positive magnitude
    is coloured the other way (more is worse). Each parameter value is one cell of the same width,
    in numeric order, however the grid is spaced; values are written in the cells of grids up to
    400 cells.
    """
    hv = _hv()
    for col in (x, y, metric):
        if col not in table.columns:
            raise PlotError(f"heatmap: column {col!r} not in the sweep table ({list(table.columns)})")
    grid = table.groupby([x, y], as_index=False)[metric].agg(agg)
    # categorical axes (in the values' order) give even cells; numeric axes stretch each cell to
    # the midpoints between neighbouring values
    kdims = []
    for col in (x, y):
        values = sorted(grid[col].unique())
        grid[col] = grid[col].map(_factor)
        kdims.append(hv.Dimension(col, values=[_factor(v) for v in values]))
    vals = grid[metric].to_numpy(dtype=float)
    finite = vals[np.isfinite(vals)]
    m = float(np.abs(finite).max()) if len(finite) and np.abs(finite).max() > 0 else 1.0
    worse_up = "drawdown" in metric.lower() and len(finite) > 0 and finite.min() >= 0
    style: dict[str, Any] = {
        "cmap": _DIVERGING[::-1] if worse_up else _DIVERGING,
        "clim": (-m, m),
        "colorbar": True,
        "tools": ["hover"],
        "frame_width": 520,
        "frame_height": 400,
        "title": metric,
    }
    style.update(opts)
    chart = hv.HeatMap(grid, kdims=kdims, vdims=[metric]).opts(**style)
    if len(grid) > 400:
        return chart
    # white on the two darkest bands at either end, where dark text would vanish
    ink = np.where(np.abs(np.nan_to_num(vals)) > 0.6 * m, "#ffffff", "#212121")
    labels = grid.assign(text=[f"{v:.2f}" if np.isfinite(v) else "" for v in vals], ink=ink)
    return chart * hv.Labels(labels, kdims=kdims, vdims=["text", "ink"]).opts(
        text_font_size="8pt", text_color=hv.dim("ink")
    )


def to_bokeh(obj: Any) -> Any:
    """The Bokeh model of a chart (for Panel/Bokeh apps such as the dashboard)."""
    hv = _hv()
    return hv.render(obj, backend="bokeh")
