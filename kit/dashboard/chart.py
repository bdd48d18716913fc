"""A session's live candlestick chart: Bokeh figures over one ColumnDataSource, patched in place.

The forming candle is *patched* (only its changed cells go to the browser); a new candle is
*streamed* with ``rollover`` so the source never grows past :data:`~kit.dashboard.hub.CHART_BARS`.
:class:`CandleChart` is also the session's :class:`~kit.dashboard.hub.Listener`: the hub calls
:meth:`CandleChart.push` on the server loop, which only queues the bar and schedules one flush
under the document's lock; bars that pile up before the flush are coalesced (a slow browser gets
the latest state, not a backlog).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from bokeh.document import Document
from bokeh.models import ColumnDataSource, DatetimeTickFormatter, HoverTool, NumeralTickFormatter, Range1d
from bokeh.plotting import figure

from kit.dashboard.hub import CHART_BARS, Bar
from kit.market.intervals import interval_ms

UP = "#16a34a"
DOWN = "#dc2626"
_OVERLAY_COLORS = ("#2563eb", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
_BASE = ("open_time", "open", "high", "low", "close", "volume", "color", "recv_ms")


#: Process-wide flush figures (count, seconds) for the admin page and the benchmark.
FLUSH_STATS: list[float] = [0, 0.0]


def _empty(columns: Iterable[str]) -> dict[str, list[Any]]:
    return {c: [] for c in (*_BASE, *columns)}


def _row(bar: Bar, columns: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "open_time": float(bar.open_time),
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "color": UP if bar.close >= bar.open else DOWN,
        "recv_ms": bar.recv_ms,
    }
    for c in columns:
        row[c] = bar.values.get(c, math.nan)
    return row


class CandleChart:
    """Price (candles, overlays, trade markers) over volume, for one session.

    ``overlay_columns`` maps an overlay label to the columns it draws; ``on_bar`` (optional) is
    called after each flush with the newest bar, under the document lock; ``pace`` (optional)
    returns the least seconds between two flushes (see :meth:`kit.dashboard.hub.Hub.pace`).
    """

    def __init__(
        self,
        doc: Document | None,
        interval: str,
        overlay_columns: dict[str, list[str]],
        *,
        on_bar: Callable[[Bar], None] | None = None,
        pace: Callable[[], float] | None = None,
        height: int = 460,
    ) -> None:
        self.doc = doc
        self.pace = pace
        self._last_flush = 0.0
        self.on_bar = on_bar
        self.overlay_columns = overlay_columns
        self._columns = [c for cols in overlay_columns.values() for c in cols]
        self._shown: list[str] = []  # overlay columns on show: the only ones patched
        self.source = ColumnDataSource(data=_empty(self._columns), name="candles")
        self.trades = ColumnDataSource(
            data={"time": [], "price": [], "marker": [], "color": [], "label": []}, name="trade_markers"
        )
        self._pending: list[Bar] = []
        self._scheduled = False
        self.closed = False
        self.updates = 0
        self.last_bar: Bar | None = None

        w = interval_ms(interval) * 0.7
        tools = "xpan,xwheel_zoom,box_zoom,reset,save"
        p = figure(
            x_axis_type="datetime",
            height=height,
            sizing_mode="stretch_width",
            tools=tools,
            active_scroll="xwheel_zoom",
            toolbar_location="right",
            name="price",
        )
        seg = p.segment("open_time", "high", "open_time", "low", source=self.source, color="color", line_width=1)
        self._body = p.vbar(
            "open_time", w, "open", "close", source=self.source, fill_color="color", line_color="color", name="bodies"
        )
        p.y_range.renderers = [seg]  # the candles set the y range, not overlays or old trades
        p.add_tools(
            HoverTool(
                renderers=[self._body],
                tooltips=[
                    ("time", "@open_time{%F %H:%M}"),
                    ("open", "@open{0,0.00}"),
                    ("high", "@high{0,0.00}"),
                    ("low", "@low{0,0.00}"),
                    ("close", "@close{0,0.00}"),
                    ("volume", "@volume{0,0.000}"),
                ],
                formatters={"@open_time": "datetime"},
            )
        )
        self.overlay_lines: dict[str, list[Any]] = {}
        for i, (label, cols) in enumerate(overlay_columns.items()):
            colr = _OVERLAY_COLORS[i % len(_OVERLAY_COLORS)]
            self.overlay_lines[label] = [
                p.line(
                    "open_time",
                    c,
                    source=self.source,
                    color=colr,
                    line_width=1.5,
                    visible=False,
                    line_dash="dashed" if len(cols) > 1 and not c.endswith(("_middle", "_mid")) else "solid",
                )
                for c in cols
            ]
        p.scatter(
            "time",
            "price",
            marker="marker",
            color="color",
            size=13,
            source=self.trades,
            line_color="black",
            line_width=0.6,
            name="trades",
        )
        p.yaxis.formatter = NumeralTickFormatter(format="0,0.[00]")
        p.xaxis.formatter = DatetimeTickFormatter(minutes="%H:%M", hours="%H:%M", days="%d %b")
        p.min_border_left = 70
        # Volume on its own range in the bottom fifth of the same figure: one figure instead of two
        # halves the models a session holds (every update message's cost grows with them).
        self._vol_range = Range1d(0, 1)
        p.extra_y_ranges = {"volume": self._vol_range}
        self._vol = p.vbar("open_time", w, "volume", 0, source=self.source, fill_color="color", line_color=None,
                           alpha=0.3, y_range_name="volume", level="underlay", name="volume")  # fmt: skip
        self.price = p
        self.layout = p

    # -- overlays and markers -----------------------------------------------------------------
    def show_overlays(self, labels: Iterable[str]) -> None:
        wanted = set(labels)
        for label, lines in self.overlay_lines.items():
            for line in lines:
                line.visible = label in wanted
        self._shown = [c for label, cols in self.overlay_columns.items() if label in wanted for c in cols]

    def set_trades(self, rows: list[dict[str, Any]]) -> None:
        """Trade markers: rows of ``time`` (candle open time, ms), ``price``, ``buy`` (bool), ``label``.

        Only markers inside the chart's time window are sent to the browser.
        """
        times = self.source.data["open_time"]
        first = times[0] if len(times) else -math.inf
        data: dict[str, list[Any]] = {"time": [], "price": [], "marker": [], "color": [], "label": []}
        for r in rows:
            if r["time"] < first:
                continue
            data["time"].append(float(r["time"]))
            data["price"].append(float(r["price"]))
            data["marker"].append("triangle" if r["buy"] else "inverted_triangle")
            data["color"].append(UP if r["buy"] else DOWN)
            data["label"].append(str(r.get("label", "")))
        if data != dict(self.trades.data):
            self.trades.data = data

    # -- data ---------------------------------------------------------------------------------
    def reset(self, bars: Sequence[Bar]) -> None:
        """Replace the whole history (on open, and when the symbol or interval changes)."""
        data = _empty(self._columns)
        for bar in bars[-CHART_BARS:]:
            for k, val in _row(bar, self._columns).items():
                data[k].append(val)
        self.source.data = data
        self._pending.clear()
        self._fit_volume()
        if bars:
            self.last_bar = bars[-1]

    def set_interval(self, interval: str) -> None:
        w = interval_ms(interval) * 0.7
        self._body.glyph.width = w
        self._vol.glyph.width = w

    def push(self, bar: Bar) -> None:
        """Called by the hub on the server loop: queue the bar, schedule one flush.

        The flush runs on the next tick, or ``pace()`` seconds after the previous flush if that is
        later: bars arriving meanwhile are coalesced into it (the newest state of each candle wins;
        a closed candle is never lost).
        """
        if self.closed:
            return
        self._pending.append(bar)
        if self._scheduled or self.doc is None:
            return
        self._scheduled = True
        wait = self._last_flush + (self.pace() if self.pace is not None else 0.0) - time.monotonic()
        if wait <= 0:
            self.doc.add_next_tick_callback(self.flush)
        else:
            self.doc.add_timeout_callback(self.flush, max(1, int(wait * 1000)))

    def flush(self) -> None:
        """Apply the queued bars (runs under the document lock)."""
        self._scheduled = False
        self._last_flush = time.monotonic()
        if self.closed or not self._pending:
            return
        t0 = time.perf_counter()
        latest: dict[int, Bar] = {}
        for bar in self._pending:  # coalesce: the last state of each candle wins
            latest[bar.open_time] = bar
        self._pending.clear()
        doc = self.doc
        if doc is not None:
            doc.hold("combine")  # one websocket message for the whole flush
        try:
            for bar in latest.values():
                self._apply(bar)
            self._fit_volume()
            self.updates += 1
            self.last_bar = bar
            if self.on_bar is not None:  # the price header goes out in the same message
                self.on_bar(bar)
        finally:
            if doc is not None:
                doc.unhold()
            FLUSH_STATS[0] += 1
            FLUSH_STATS[1] += time.perf_counter() - t0

    def _apply(self, bar: Bar) -> None:
        times = self.source.data["open_time"]
        n = len(times)
        t = float(bar.open_time)
        if n and times[n - 1] == t:
            # the same candle again: patch only what can change (not its open time or open price), and
            # while it forms only the overlays on show; its close carries every overlay's final value
            row = _row(bar, self._columns if bar.closed else self._shown)
            self.source.patch({k: [(n - 1, val)] for k, val in row.items() if k not in ("open_time", "open")})
        elif n == 0 or t > times[n - 1]:
            self.source.stream({k: [val] for k, val in _row(bar, self._columns).items()}, rollover=CHART_BARS)

    def _fit_volume(self) -> None:
        vols = self.source.data["volume"]
        top = max(vols[-CHART_BARS:]) if len(vols) else 1.0
        top = float(top) * 5.0 if top and top > 0 else 1.0  # the tallest bar reaches a fifth of the height
        if abs(self._vol_range.end - top) / top > 0.02:
            self._vol_range.end = top

    def close(self) -> None:
        self.closed = True
        self._pending.clear()
