"""A session's live candlestick chart: Bokeh figures over one ColumnDataSource.

The server builds the chart and sends its history once (:meth:`CandleChart.reset`). Live updates
do not go through the Bokeh session: the page's script (:data:`LIVE_JS`) opens the dashboard's
``/kit/live`` socket for the stream named in the source's ``tags`` and applies each row in the
browser, *patching* the forming candle in place and *streaming* a new one with ``rollover`` so
the source never grows past :data:`~kit.dashboard.hub.CHART_BARS`. Each event is encoded once per
stream for all pages (see :mod:`kit.dashboard.live`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from bokeh.document import Document
from bokeh.events import DocumentReady
from bokeh.models import (
    ColumnDataSource,
    CustomJS,
    DatetimeTickFormatter,
    Div,
    HoverTool,
    NumeralTickFormatter,
    Range1d,
)
from bokeh.plotting import figure

from kit.dashboard._style import CSS, DOWN, UP
from kit.dashboard.hub import CHART_BARS, Bar
from kit.dashboard.menu import VOLUME, Pane
from kit.dashboard.panes import PaneSet
from kit.market.intervals import interval_ms

__all__ = ["DOWN", "LIVE_JS", "UP", "CandleChart", "chart_row"]
_OVERLAY_COLORS = ("#2563eb", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
_BASE = ("open_time", "open", "high", "low", "close", "volume", "color", "recv_ms")

#: The page side of :mod:`kit.dashboard.live`. Runs when the document is ready and whenever the
#: server changes ``source.tags`` (``"SYMBOL@interval|session id"``). Changes are applied with
#: ``sync: false``: the browser never sends chart data back to the server.
LIVE_JS = r"""
const st = source._kit || (source._kit = {ws: null, key: null, timer: null, tries: 0, messages: 0, feed: "connected",
  reconnects: 0, state: "connecting", states: ["connecting"], lastMsg: 0, lastCandle: 0, note: "", refused: null,
  clock: null});
function esc(s) { return String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";"); }
function stepMs() {
  const iv = (st.key || "").split("|")[0].split("@")[1] || "1m";
  return parseInt(iv) * ({s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5}[iv.slice(-1)] || 6e4);
}
function ago(ms) {
  const s = Math.round(ms / 1000);
  return s < 120 ? s + " s" : s < 7200 ? Math.round(s / 60) + " min" : Math.round(s / 3600) + " h";
}
// The connection indicator: this socket's state, the exchange connection's (sent by the server),
// and staleness (no new candle for longer than the interval allows, plus 10 s of delivery slack).
function render() {
  const now = Date.now();
  let state = "connected", label = "connected", note = st.note;
  if (st.refused !== null) { state = "refused"; label = "refused"; note = st.refused; }
  else if (!st.ws || st.ws.readyState !== 1) {
    state = st.tries > 0 ? "reconnecting" : "connecting";
    label = st.tries > 0 ? "reconnecting · attempt " + st.tries : "connecting";
  } else if (st.feed === "reconnecting") {
    state = "reconnecting"; label = "reconnecting to the exchange";
    note = "the exchange connection dropped; the chart resumes where it stopped";
  } else if (st.lastCandle && now - st.lastCandle > stepMs() + 10000) {
    state = "stale"; label = "stale · no new candle for " + ago(now - st.lastCandle);
  }
  if (state !== st.state) {  // a short history of states (with the label they started with) for tests
    st.state = state; st.states.push(label); if (st.states.length > 50) st.states.shift();
  }
  let html = '<span class="kit-conn kit-conn-' + state + '" data-state="' + state + '">● ' + esc(label) + "</span>";
  if (st.lastMsg) html += '<span class="kit-age">updated ' + ago(now - st.lastMsg) + " ago</span>";
  if (note) html += '<span class="kit-note">' + esc(note) + "</span>";
  if (status.text !== html) status.setv({text: html}, {sync: false});
}
function apply(msg) {
  if (!st.key || msg.s !== st.key.split("|")[0]) return;  // a late message of the previous stream
  if ("feed" in msg) { st.feed = msg.feed; st.reconnects = msg.reconnects; }
  const data = source.data;
  const cols = Object.keys(data);
  for (const row of msg.rows) {
    const t = data.open_time, n = t.length;
    if (n && t[n - 1] === row.open_time) {
      const p = {};
      for (const c of cols) if (c !== "open_time" && c in row) p[c] = [[n - 1, row[c] === null ? NaN : row[c]]];
      source.patch(p, {sync: false});
    } else if (!n || row.open_time > t[n - 1]) {
      const s = {};
      for (const c of cols) { const v = row[c]; s[c] = [v === undefined || v === null ? NaN : v]; }
      source.stream(s, ROLLOVER, {sync: false});
      st.lastCandle = Date.now();
    }
  }
  if (msg.rows.length) {
    st.lastMsg = Date.now();
    let top = 0;
    for (const v of source.data.volume) if (v > top) top = v;
    top = top > 0 ? top * 5 : 1;  // the tallest volume bar reaches a fifth of the height
    if (Math.abs(vol_range.end - top) / top > 0.02) vol_range.setv({end: top}, {sync: false});
  }
  if (msg.h && header.text !== msg.h) header.setv({text: msg.h}, {sync: false});
  st.messages += 1;
  render();
}
function connect() {
  clearTimeout(st.timer); st.timer = null;
  if (!st.clock) st.clock = setInterval(render, 1000);
  const key = source.tags.length ? String(source.tags[0]) : null;
  if (st.ws && st.key === key) return;
  if (st.ws) { const old = st.ws; st.ws = null; old.onclose = null; old.close(); }
  if (st.key !== key) {  // another stream: its own state, from scratch
    st.tries = 0; st.refused = null; st.feed = "connected"; st.note = ""; st.lastCandle = Date.now();
  }
  st.key = key;
  if (!key) return;
  const [stream, sid] = key.split("|");
  const t = source.data.open_time;
  const since = t.length ? t[t.length - 1] : 0;  // resume where the chart stopped: no hole, nothing twice
  const base = window.location.pathname.replace(/\/[^\/]*$/, "");
  const url = (window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host + base +
    "/kit/live?stream=" + encodeURIComponent(stream) + "&since=" + since + "&sid=" + encodeURIComponent(sid || "");
  const ws = new WebSocket(url);
  st.ws = ws;
  ws.onopen = () => { st.tries = 0; st.note = ""; render(); };
  ws.onmessage = (ev) => { try { apply(JSON.parse(ev.data)); } catch (e) { console.error("kit live:", e); } };
  ws.onclose = (ev) => {
    if (st.ws !== ws) return;
    st.ws = null;
    if (ev.code === 4400) { st.refused = "this stream was refused: " + ev.reason; render(); return; }
    if (ev.code === 4401) { window.location.assign(base + "/login"); return; }  // session ended: log in again
    st.note = ev.code === 1001 || ev.code === 1012 ? "the dashboard server is restarting"
      : "lost the connection to the dashboard server (restarting or unreachable)";
    st.timer = setTimeout(connect, Math.min(30000, 500 * 2 ** st.tries++) * (0.5 + Math.random()));
    render();
  };
  render();
}
setTimeout(connect, 0);  // after the rest of the message that changed the tags (the new history) is applied
""".replace("ROLLOVER", str(CHART_BARS))


def _empty(columns: Iterable[str]) -> dict[str, list[Any]]:
    return {c: [] for c in (*_BASE, *columns)}


def chart_row(bar: Bar, columns: Sequence[str]) -> dict[str, Any]:
    """The chart's row for ``bar``: its source's columns (the overlay ``columns`` NaN when missing)."""
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
    """Price (candles, overlays, trade markers) over volume, the panes under it, and the price
    header, for one session.

    ``overlay_columns`` maps an overlay label to the columns it draws; ``panes`` are the indicator
    panes on offer with their columns (see :mod:`kit.dashboard.panes`). With a ``doc``, the page
    follows the stream set by :meth:`follow` over the live socket once the document is ready.
    """

    def __init__(
        self,
        doc: Document | None,
        interval: str,
        overlay_columns: dict[str, list[str]],
        *,
        panes: list[tuple[Pane, list[str]]] | None = None,
        height: int = 460,
    ) -> None:
        self.doc = doc
        self.overlay_columns = overlay_columns
        self._columns = [c for cols in overlay_columns.values() for c in cols]
        self._columns += [c for _, cols in panes or () for c in cols]
        self.source = ColumnDataSource(data=_empty(self._columns), name="candles")
        self.trades = ColumnDataSource(
            data={"time": [], "price": [], "marker": [], "color": [], "label": []}, name="trade_markers"
        )
        # a raw Bokeh Div: the page's script rewrites it with each update (see LIVE_JS)
        self.header = Div(text="", min_width=320, stylesheets=[CSS], name="price_header")
        # the connection indicator, also rewritten by the page's script
        self.status = Div(text="", min_width=320, stylesheets=[CSS], name="live_status")
        self.closed = False

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
        self.panes = PaneSet(self.source, p, interval, panes or [])
        if doc is not None:
            live = CustomJS(args={"source": self.source, "vol_range": self._vol_range, "header": self.header,
                                  "status": self.status}, code=LIVE_JS)  # fmt: skip
            doc.js_on_event(DocumentReady, live)
            self.source.js_on_change("tags", live)

    # -- overlays and markers -----------------------------------------------------------------
    def show_overlays(self, labels: Iterable[str]) -> None:
        wanted = set(labels)
        for label, lines in self.overlay_lines.items():
            for line in lines:
                line.visible = label in wanted

    def show_panes(self, keys: Iterable[str]) -> list[Any]:
        """The figures to show under the price for the panes ``keys`` (volume, indicator keys); the
        volume drawn under the candles hides while the volume pane shows it."""
        keys = list(keys)
        self._vol.visible = VOLUME not in keys
        return self.panes.figures(keys)

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
    def reset(self, bars: Sequence[Bar], header: str = "") -> None:
        """Replace the whole history and the price header (on open, and when the stream changes)."""
        data = _empty(self._columns)
        for bar in bars[-CHART_BARS:]:
            for k, val in chart_row(bar, self._columns).items():
                data[k].append(val)
        self.source.data = data
        self.header.text = header
        self._fit_volume()

    def follow(self, symbol: str, interval: str, session_id: str = "") -> None:
        """Point the page's live socket at ``symbol@interval`` (call after :meth:`reset`)."""
        self.source.tags = [f"{symbol}@{interval}|{session_id}"]

    def set_interval(self, interval: str) -> None:
        w = interval_ms(interval) * 0.7
        self._body.glyph.width = w
        self._vol.glyph.width = w
        self.panes.set_interval(interval)

    def push(self, bar: Bar) -> None:
        """The hub's listener call: nothing to do. Live rows reach the page over the live socket;
        the chart stays attached to the hub so the stream lives as long as the session."""

    def _fit_volume(self) -> None:
        vols = self.source.data["volume"]
        top = max(vols[-CHART_BARS:]) if len(vols) else 1.0
        top = float(top) * 5.0 if top and top > 0 else 1.0  # the tallest bar reaches a fifth of the height
        if abs(self._vol_range.end - top) / top > 0.02:
            self._vol_range.end = top

    def close(self) -> None:
        self.closed = True
