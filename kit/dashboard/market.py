"""The Market tab: live candles for a symbol and interval, overlays, last price and 24 h change."""

from __future__ import annotations

import math
from typing import Any

import panel as pn

from kit.dashboard._style import CSS
from kit.dashboard.chart import DOWN, UP, CandleChart
from kit.dashboard.hub import Bar, Hub
from kit.settings import Settings

#: Intervals offered in the selector (the feed aggregates them from the exchange's klines).
INTERVALS: tuple[str, ...] = ("1m", "5m", "15m", "1h")
DEFAULT_SYMBOLS: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")


def available_symbols(settings: Settings) -> list[str]:
    """Symbols to offer: those in the simulator's replay data, else the defaults."""
    if settings.is_simulator:
        try:
            from kit.market.files import scan

            found = sorted({f.symbol for f in scan(settings.replay_data)})
            if found:
                return found
        except Exception:
            pass
    return list(DEFAULT_SYMBOLS)


def source_badge(settings: Settings) -> str:
    """HTML badge saying plainly whether the data is replayed (simulator) or live."""
    if settings.is_simulator:
        return (
            '<span class="kit-badge kit-replay" title="Candles replayed from recorded data by the local simulator '
            f'at {settings.exchange_url}">REPLAY · simulator</span>'
        )
    return (
        '<span class="kit-badge kit-live" title="Candles streamed live from the exchange at '
        f'{settings.exchange_url}">LIVE · {settings.exchange_url.split("://", 1)[-1]}</span>'
    )


def _fmt_price(x: float) -> str:
    return f"{x:,.2f}" if x >= 1 else f"{x:.6g}"


class MarketView:
    """Per session: selectors, the chart, and the hub subscription for the selected stream."""

    def __init__(
        self,
        hub: Hub,
        settings: Settings,
        doc: Any,
        *,
        symbol: str | None = None,
        interval: str = "1m",
        chart_cls: type[CandleChart] = CandleChart,
        session_id: str = "",
    ) -> None:
        symbols = available_symbols(settings)
        if interval not in INTERVALS:
            raise ValueError(f"interval must be one of {INTERVALS}, got {interval!r}")
        self.hub = hub
        self.symbol = symbol if symbol in symbols else symbols[0]
        self.interval = interval
        self.session_id = session_id
        self._attached = False
        self.chart = chart_cls(doc, interval, hub.overlay_columns())
        self.symbol_select = pn.widgets.Select(name="Symbol", options=symbols, value=self.symbol, width=140)
        self.interval_select = pn.widgets.RadioButtonGroup(
            name="Interval", options=list(INTERVALS), value=interval, button_type="light", width=200
        )
        self.overlay_select = pn.widgets.CheckButtonGroup(
            name="Overlays", options=list(self.chart.overlay_lines), value=[], button_type="light"
        )
        self.price = pn.pane.Bokeh(self.chart.header)
        self.badge = pn.pane.HTML(source_badge(settings), stylesheets=[CSS])
        self.symbol_select.param.watch(self._on_stream, "value")
        self.interval_select.param.watch(self._on_stream, "value")
        self.overlay_select.param.watch(lambda e: self.chart.show_overlays(e.new), "value")
        self.chart_pane = pn.pane.Bokeh(self.chart.layout, sizing_mode="stretch_width")
        overlays_row = (
            [pn.pane.HTML("<span class='kit-label'>Overlays</span>", stylesheets=[CSS]), self.overlay_select]
            if self.chart.overlay_lines
            else [
                pn.pane.HTML(
                    "<span class='kit-label'>Overlays: the indicator engine is not installed</span>", stylesheets=[CSS]
                )
            ]
        )
        self.panel = pn.Column(
            pn.Row(self.symbol_select, self.interval_select, self.price),
            pn.Row(*overlays_row),
            self.chart_pane,
            sizing_mode="stretch_width",
        )
        self.on_stream_change: list[Any] = []

    # -- subscription -------------------------------------------------------------------------
    def start(self) -> None:
        """Attach to the hub (call once the session's document exists, on the server loop)."""
        if self._attached:
            return
        bars = self.hub.attach(self.symbol, self.interval, self.chart)
        self._attached = True
        header = price_header(self.hub, self.symbol, self.interval, bars[-1]) if bars else ""
        self.chart.reset(bars, header)
        self.chart.follow(self.symbol, self.interval, self.session_id)

    def stop(self) -> None:
        if self._attached:
            self.hub.detach(self.symbol, self.interval, self.chart)
            self._attached = False

    def close(self) -> None:
        self.stop()
        self.chart.close()

    def _on_stream(self, _event: Any) -> None:
        self.stop()
        self.symbol = self.symbol_select.value
        self.interval = self.interval_select.value
        self.chart.set_interval(self.interval)
        self.start()
        for fn in self.on_stream_change:
            fn()


def price_header(hub: Hub, symbol: str, interval: str, bar: Bar) -> str:
    """The price header's HTML for ``bar``: symbol, last price, change over the last 24 h the hub holds."""
    ref = hub.reference_close(symbol, interval)
    change = ""
    if ref is not None and ref[0] > 0 and not math.isnan(bar.close):
        pct = (bar.close / ref[0] - 1.0) * 100.0
        span = "24h" if ref[1] >= 23.99 else f"{ref[1]:.0f}h"
        change = (
            f'<span class="kit-change" style="color:{UP if pct >= 0 else DOWN}">'
            f"{pct:+.2f}% <small>{span}</small></span>"
        )
    return (
        f'<span class="kit-sym">{symbol}</span> '
        f'<span class="kit-last" title="last price">{_fmt_price(bar.close)}</span> {change}'
    )
