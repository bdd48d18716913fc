"""The Market tab: live candles for a symbol and interval, overlays, last price and 24 h change."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import panel as pn

from kit.dashboard._style import CSS
from kit.dashboard.chart import DOWN, UP, CandleChart
from kit.dashboard.hub import Bar, Hub
from kit.market import intervals as _iv
from kit.settings import Settings

log = logging.getLogger("kit.dashboard.market")

#: Every interval the feed serves that has a fixed length (``1M`` has none: the chart's bar width,
#: the hub's history and the page's staleness all need one). Pages, sockets and the selector
#: accept exactly these.
INTERVALS: tuple[str, ...] = tuple(i for i in _iv.INTERVALS if i != "1M")
DEFAULT_SYMBOLS: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")


def offered_intervals(settings: Settings) -> list[str]:
    """The selector's intervals: all of :data:`INTERVALS`, but not ``1s`` from the simulator (it
    aggregates its candles from 1m data, so it has nothing finer)."""
    return [i for i in INTERVALS if not (settings.is_simulator and i == "1s")]


def exchange_symbols(settings: Settings) -> list[str] | None:
    """Every symbol the exchange lists as trading (``exchangeInfo``; a halted or delisted one has no
    candles to show), or None when it cannot be asked."""
    try:
        from kit.feed import RestClient

        info = RestClient(settings.exchange_url, timeout=5.0, max_retries=1).get("/api/v3/exchangeInfo", weight=20)
        return sorted(s["symbol"] for s in info.get("symbols", []) if s.get("status", "TRADING") == "TRADING") or None
    except Exception as exc:  # an unreachable exchange must not keep the dashboard from starting
        log.warning("could not list the exchange's symbols (%s); offering a fallback list", exc)
        return None


def available_symbols(settings: Settings, listed: list[str] | None = None) -> list[str]:
    """Symbols to offer: ``listed`` (default: what the exchange lists), else the simulator's replay
    data, else the defaults."""
    if listed is None:
        listed = exchange_symbols(settings)
    if listed:
        return listed
    if settings.is_simulator:
        try:
            from kit.market.files import scan

            found = sorted({f.symbol for f in scan(settings.replay_data)})
            if found:
                return found
        except Exception:
            pass
    return list(DEFAULT_SYMBOLS)


#: Seconds before a fallback symbol list (the exchange did not answer) is asked for again.
SYMBOLS_RETRY_S = 60.0
_served: dict[str, tuple[float, list[str], bool]] = {}


def served_symbols(settings: Settings) -> list[str]:
    """The symbols this process serves, asked of the exchange once per exchange URL and shared by
    every session and socket (a session must not cost an ``exchangeInfo`` request). Only the first
    ask waits for the answer; a fallback list (the exchange did not answer) is asked for again after
    :data:`SYMBOLS_RETRY_S` in a thread, so an unreachable exchange never stalls the server's loop
    and a slow start does not shrink the menu for good."""
    url = settings.exchange_url
    hit = _served.get(url)
    if hit is None:
        return _ask_symbols(settings)
    if not hit[2] and time.monotonic() - hit[0] >= SYMBOLS_RETRY_S:
        with _asking_lock:
            if url in _asking:
                return hit[1]
            _asking.add(url)
        threading.Thread(target=_ask_symbols, args=(settings,), name="kit-symbols", daemon=True).start()
    return hit[1]


def _ask_symbols(settings: Settings) -> list[str]:
    try:
        listed = exchange_symbols(settings)
        symbols = available_symbols(settings, listed)
        _served[settings.exchange_url] = (time.monotonic(), symbols, bool(listed))
        return symbols
    finally:
        with _asking_lock:
            _asking.discard(settings.exchange_url)


_asking: set[str] = set()
_asking_lock = threading.Lock()


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
        panes: Sequence[str] = (),
    ) -> None:
        symbols = served_symbols(settings)
        intervals = offered_intervals(settings)
        if interval not in intervals:
            raise ValueError(f"interval must be one of {intervals}, got {interval!r}")
        self.hub = hub
        self.symbol = symbol if symbol in symbols else symbols[0]
        self.interval = interval
        self.session_id = session_id
        self._attached = False
        self.chart = chart_cls(doc, interval, hub.overlay_columns(), panes=hub.pane_menu())
        # A search box over every listed symbol (an exchange lists thousands: a plain select is a
        # scroll through all of them); only a listed symbol is accepted.
        self.symbol_select = pn.widgets.AutocompleteInput(
            name="Symbol", options=symbols, value=self.symbol, restrict=True, case_sensitive=False,
            search_strategy="includes", min_characters=1, placeholder="search a symbol", width=160,
        )  # fmt: skip
        self.interval_select = pn.widgets.RadioButtonGroup(
            name="Interval", options=intervals, value=interval, button_type="light"
        )
        self.overlay_select = pn.widgets.CheckButtonGroup(
            name="Overlays", options=list(self.chart.overlay_lines), value=[], button_type="light"
        )
        # the panes under the price, chosen per chart (``?panes=rsi,macd`` opens the page with them)
        options = self.chart.panes.options
        self.pane_select = pn.widgets.CheckButtonGroup(
            options=options, value=[k for k in options.values() if k in panes], button_type="light"
        )
        self.panes_holder = pn.Column(sizing_mode="stretch_width")
        self._pane_views: dict[int, Any] = {}
        self.pane_select.param.watch(lambda e: self._show_panes(e.new), "value")
        self._show_panes(self.pane_select.value)
        self.price = pn.pane.Bokeh(self.chart.header)
        self.live_status = pn.pane.Bokeh(self.chart.status)
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
            pn.Row(self.symbol_select, self.interval_select),
            pn.Row(self.price, self.live_status),
            pn.Row(*overlays_row, pn.pane.HTML("<span class='kit-label'>Panes</span>", stylesheets=[CSS]),
                   self.pane_select),
            self.chart_pane,
            self.panes_holder,
            sizing_mode="stretch_width",
        )  # fmt: skip
        self.on_stream_change: list[Any] = []

    def _show_panes(self, keys: list[str]) -> None:
        views = []
        for fig in self.chart.show_panes(keys):  # one Panel pane per figure, kept for a re-tick
            view = self._pane_views.get(id(fig))
            if view is None:
                view = self._pane_views[id(fig)] = pn.pane.Bokeh(fig, sizing_mode="stretch_width")
            views.append(view)
        self.panes_holder.objects = views

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
        if not self.symbol_select.value:  # the search box was cleared: keep the current stream
            self.symbol_select.value = self.symbol
            return
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
