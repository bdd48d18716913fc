"""The panes under a chart's price figure: volume and the indicator panes of the menu (RSI with its
30/70 guides, MACD with its histogram as bars).

Every pane draws from the chart's own ``ColumnDataSource`` (the stream's rows carry every pane's
values, computed once per stream by the shared engine) and shares the price figure's time axis,
so the page's live script grows them with the candles and panning one pans all. A pane's figure
is built the first time its viewer asks for it: most sessions never open one, and every Bokeh
model costs each session memory and build time.
"""

from __future__ import annotations

from typing import Any

from bokeh.models import (
    ColumnDataSource,
    DatetimeTickFormatter,
    HoverTool,
    LinearColorMapper,
    NumeralTickFormatter,
    Range1d,
    Span,
)
from bokeh.plotting import figure

from kit.dashboard._style import DOWN, UP
from kit.dashboard.menu import VOLUME, Pane
from kit.market.intervals import interval_ms

_LINE_COLORS = ("#2563eb", "#ea580c", "#9333ea")
PANE_HEIGHT = 150


class PaneSet:
    """One chart's panes: :attr:`options` (label -> key) and :meth:`figures` built on demand."""

    def __init__(self, source: ColumnDataSource, price: Any, interval: str, menu: list[tuple[Pane, list[str]]]) -> None:
        self.source = source
        self.price = price
        self.width = interval_ms(interval) * 0.7
        self.menu = {pane.key: (pane, columns) for pane, columns in menu}
        self.options: dict[str, str] = {"Volume": VOLUME, **{pane.label: pane.key for pane, _ in menu}}
        self.built: dict[str, Any] = {}
        self._bars: list[Any] = []

    def figures(self, keys: list[str]) -> list[Any]:
        """The figures of the panes ``keys`` (unknown keys ignored), in menu order, built if needed."""
        return [self._figure(k) for k in self.options.values() if k in keys]

    def set_interval(self, interval: str) -> None:
        self.width = interval_ms(interval) * 0.7
        for bar in self._bars:
            bar.glyph.width = self.width

    def _figure(self, key: str) -> Any:
        fig = self.built.get(key)
        if fig is not None:
            return fig
        pane, columns = self.menu.get(key, (None, []))
        fig = figure(
            x_axis_type="datetime",
            x_range=self.price.x_range,  # one time axis: panning or zooming any panel moves them all
            height=PANE_HEIGHT,
            sizing_mode="stretch_width",
            tools="xpan,xwheel_zoom,reset",
            active_scroll="xwheel_zoom",
            toolbar_location="right",  # as the price figure: the plot areas line up
            name=f"pane_{key}",
            title=pane.label if pane is not None else "Volume",
        )
        fig.min_border_left = self.price.min_border_left  # the panels' plot areas line up
        fig.xaxis.formatter = DatetimeTickFormatter(minutes="%H:%M", hours="%H:%M", days="%d %b")
        fig.yaxis.formatter = NumeralTickFormatter(format="0,0.[00]")
        fig.title.text_font_size = "11px"
        fig.toolbar.autohide = True
        if pane is None:
            bars = fig.vbar("open_time", self.width, "volume", 0, source=self.source, fill_color="color",
                            line_color=None, alpha=0.5, name="volume_bars")  # fmt: skip
            self._bars.append(bars)
            fig.y_range.start = 0
            self._hover(fig, bars, {"volume": "volume"})
        else:
            self._indicator(fig, pane, columns)
        self.built[key] = fig
        return fig

    def _indicator(self, fig: Any, pane: Pane, columns: list[str]) -> None:
        if pane.bounds is not None:
            fig.y_range = Range1d(*pane.bounds)
        for level in pane.guides:
            fig.add_layout(Span(location=level, dimension="width", line_color="#9ca3af", line_dash="dashed",
                                line_width=1))  # fmt: skip
        first = None
        lines = [c for c in columns if not c.endswith("_hist")]
        for c in columns:
            if c.endswith("_hist"):
                # bars coloured by sign in the browser: no colour column travels with each row
                sign = LinearColorMapper(palette=[DOWN, UP], low=-1e-300, high=1e-300, low_color=DOWN,
                                         high_color=UP, nan_color="#00000000")  # fmt: skip
                r = fig.vbar("open_time", self.width, c, 0, source=self.source, alpha=0.45, line_color=None,
                             fill_color={"field": c, "transform": sign}, name=c)  # fmt: skip
                self._bars.append(r)
            else:
                r = fig.line("open_time", c, source=self.source, line_width=1.5, name=c,
                             color=_LINE_COLORS[lines.index(c) % len(_LINE_COLORS)])  # fmt: skip
            first = first or r
        if first is not None:
            self._hover(fig, first, {c.rsplit("_", 1)[-1] if len(columns) > 1 else pane.label: c for c in columns})

    @staticmethod
    def _hover(fig: Any, renderer: Any, fields: dict[str, str]) -> None:
        fig.add_tools(HoverTool(renderers=[renderer], mode="vline", formatters={"@open_time": "datetime"},
                                tooltips=[("time", "@open_time{%F %H:%M}"),
                                          *[(k, f"@{{{c}}}{{0,0.00}}") for k, c in fields.items()]]))  # fmt: skip
