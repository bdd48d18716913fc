"""The admin page's plots: the process's :class:`~kit.dashboard.timeline.Timeline` drawn as time
series, each admin session streaming the rows it has not drawn yet (a session opens on the whole
kept history: the last two hours).
"""

from __future__ import annotations

import math
from typing import Any

import panel as pn
from bokeh.models import ColumnDataSource, DatetimeTickFormatter, HoverTool, Label, Legend
from bokeh.plotting import figure

from kit.dashboard.timeline import SERIES, Timeline

_COLORS = ("#2563eb", "#dc2626", "#16a34a", "#ca8a04", "#9333ea", "#0891b2", "#ea580c", "#db2777")
#: Plot name -> (title, fixed series drawn).
PLOTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ops_latency": ("Close-to-commit latency (ms)", ("p50", "p99")),
    "ops_activity": ("Evaluations and fills per minute", ("evals_pm", "fills_pm")),
    "ops_queue": ("Write queue (candles waiting)", ("queue",)),
    "ops_rss": ("Resident memory (MiB)", ("daemon_rss", "dash_rss")),
    "ops_feed": ("Feed reconnects and gaps (since start)", ("d_reconnects", "d_gaps", "h_reconnects", "h_gaps")),
    "ops_sessions": ("Dashboard sessions and live sockets", ("sessions", "sockets")),
}


def _figure(name: str, title: str) -> Any:
    fig = figure(x_axis_type="datetime", height=190, sizing_mode="stretch_width", tools="xpan,xwheel_zoom,reset",
                 toolbar_location=None, title=title, name=name)  # fmt: skip
    fig.xaxis.formatter = DatetimeTickFormatter(minutes="%H:%M", hours="%H:%M")
    fig.title.text_font_size = "12px"
    fig.add_layout(Legend(label_text_font_size="10px", spacing=0, padding=2), "right")
    return fig


def _nan(v: float) -> float:
    return math.nan if v is None else v


class OpsPlots:
    """Per admin session: the figures and what they have drawn so far."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.source = ColumnDataSource({"t": [], **{k: [] for k in SERIES}}, name="ops_series")
        self.stream_source = ColumnDataSource({"t": []}, name="ops_streams")
        self.figures: dict[str, Any] = {}
        for name, (title, keys) in PLOTS.items():
            fig = _figure(name, title)
            for i, k in enumerate(keys):
                fig.line("t", k, source=self.source, color=_COLORS[i], line_width=1.6, legend_label=SERIES[k])
                # dots too: a sample between two missing ones (the daemon did not answer) still shows
                fig.scatter("t", k, source=self.source, color=_COLORS[i], size=3, legend_label=SERIES[k])
            fig.add_tools(HoverTool(tooltips=[("time", "@t{%H:%M:%S}"), *[(SERIES[k], f"@{k}{{0,0.[00]}}")
                                                                          for k in keys]],
                                    formatters={"@t": "datetime"}, mode="vline"))  # fmt: skip
            self.figures[name] = fig
        self.candles = _figure("ops_candles", "Closed candles per second, per daemon stream")
        # said until the daemon reports a stream (a plot with nothing at all also draws a Bokeh warning)
        self.no_streams = Label(x=10, y=10, x_units="screen", y_units="screen", text_color="#6b7280",
                                text="no daemon stream reported yet", text_font_size="12px")  # fmt: skip
        self.candles.add_layout(self.no_streams)
        self.figures["ops_candles"] = self.candles
        self._streams: list[str] = []
        self._last = -math.inf
        panes = [pn.pane.Bokeh(self.figures[n], sizing_mode="stretch_width") for n in ("ops_candles", *PLOTS)]
        self.panel = pn.GridBox(*panes, ncols=2, sizing_mode="stretch_width")

    def refresh(self) -> None:
        """Draw the rows sampled since the last refresh (all of them the first time)."""
        rows, per_stream = self.timeline.since(self._last)
        if not rows:
            return
        self._last = rows[-1]["t"]
        cap = self.timeline.rows.maxlen
        self.source.stream({c: [_nan(r.get(c)) for r in rows] for c in ("t", *SERIES)}, rollover=cap)
        names = self.timeline.stream_names()
        if names != self._streams:  # a stream appeared: redraw this plot from the whole history
            for i, s in enumerate(n for n in names if n not in self._streams):
                color = _COLORS[(len(self._streams) + i) % len(_COLORS)]
                self.candles.line("t", s, source=self.stream_source, legend_label=s, line_width=1.6, color=color)
                self.candles.scatter("t", s, source=self.stream_source, legend_label=s, size=3, color=color)
            self._streams = names
            self.no_streams.visible = not names
            hist = list(self.timeline.streams)
            self.stream_source.data = {"t": [r["t"] for r in hist], **{s: [r.get(s, math.nan) for r in hist]
                                                                       for s in names}}  # fmt: skip
        elif per_stream:
            self.stream_source.stream({"t": [r["t"] for r in per_stream],
                                       **{s: [r.get(s, math.nan) for r in per_stream] for s in names}},
                                      rollover=cap)  # fmt: skip
