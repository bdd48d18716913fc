"""My strategies at a glance: the landing page's summary of the logged-in user's strategies, above
the market chart: each one's state, position, today's P&L and last signal.

The rows come from the same per-user queries as the *My strategies* tab (:func:`kit.dashboard.mine.load`,
scoped by the session's user on the server, cached per user), so another user's strategy never
reaches the page. It is one HTML pane (one Bokeh model), rewritten only when its text changes.

*Today* is the UTC day on the strategy's own clock: its market's newest candle, which the view
keeps the hub's shared stream of (a replay trades in simulated time); the wall clock until the
stream has a candle. Today's P&L is the realised P&L of the trades closed today plus the open
position's unrealised P&L at the live price.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Any

import pandas as pd

from kit.dashboard._style import DOWN, UP

_DAY_MS = 86_400_000
#: Strategies listed at a glance; the rest are counted (all are in *My strategies*).
MAX_ROWS = 12


@dataclass(frozen=True)
class GlanceRow:
    """One strategy at a glance. ``today_pnl`` is NaN while the open position has no live price."""

    id: int
    name: str
    market: str
    state: str
    position: str
    today_pnl: float
    last_signal: str
    error: str


def state_of(rec: Any) -> str:
    """The state a user reads: the daemon's verdict, or ``off`` when the owner switched it off."""
    return "off" if not rec.active else str(rec.state)


def glance_rows(
    recs: list[Any],
    trades: pd.DataFrame,
    positions: pd.DataFrame,
    clock_ms: Callable[[Any], float],
    price: Callable[[str], float | None],
) -> list[GlanceRow]:
    """The summary of ``recs`` (one user's strategies) from their closed ``trades`` and ``positions``;
    ``clock_ms(rec)`` is the strategy's present, ``price(symbol)`` the live price or None."""
    rows = []
    exits = _ms(trades["exit_time"]) if len(trades) else None
    for r in recs:
        day_start = clock_ms(r) // _DAY_MS * _DAY_MS
        realised = 0.0
        if exits is not None:
            today = (trades["strategy_id"] == r.id).to_numpy() & (exits >= day_start)
            realised = float(trades.loc[today, "pnl"].sum())
        p = positions[positions["strategy_id"] == r.id] if len(positions) else positions
        size = float(p["size"].iloc[0]) if len(p) else 0.0
        entry = float(p["entry_price"].iloc[0]) if len(p) and pd.notna(p["entry_price"].iloc[0]) else None
        unreal = 0.0
        if size:
            last = price(r.symbol)
            unreal = size * (last - entry) if last is not None and entry is not None else math.nan
        rows.append(GlanceRow(
            id=int(r.id), name=r.name, market=f"{r.symbol} {r.interval}", state=state_of(r),
            position="flat" if not size else f"{'long' if size > 0 else 'short'} {abs(size):g}",
            today_pnl=realised + unreal, last_signal=r.last_signal or "—",
            error=(r.last_error or "") if r.state != "active" else "",
        ))  # fmt: skip
    return rows


def _ms(times: pd.Series) -> Any:
    return pd.to_datetime(times, utc=True).dt.as_unit("ms").astype("int64").to_numpy()


_STATE_COLORS = {"active": UP, "off": "#6b7280", "paused": "#b45309", "error": DOWN}


def render(rows: list[GlanceRow]) -> str:
    """The summary's HTML (every value escaped)."""
    head = "<h3 class='kit-h'>My strategies at a glance</h3>"
    if not rows:
        return (
            f"<div class='kit-glance' data-count='0'>{head}<p class='kit-label'>No strategies yet. Promote one "
            "from a notebook: <code>kit.promote(MyStrategy(...), user=..., symbol=..., interval=...)</code>.</p></div>"
        )
    cells = []
    for g in rows[:MAX_ROWS]:
        color = _STATE_COLORS.get(g.state, DOWN)
        pnl = (
            "<span class='kit-label'>no price yet</span>"
            if math.isnan(g.today_pnl)
            else f"<span style='color:{UP if g.today_pnl >= 0 else DOWN}'>{g.today_pnl:+,.2f}</span>"
        )
        title = f" title='{escape(g.error, quote=True)}'" if g.error else ""
        cells.append(
            f"<tr data-sid='{g.id}'><td><b>{escape(g.name)}</b></td><td>{escape(g.market)}</td>"
            f"<td{title}><span style='color:{color};font-weight:600'>● {escape(g.state)}</span></td>"
            f"<td>{escape(g.position)}</td><td class='kit-num'>{pnl}</td><td>{escape(g.last_signal)}</td></tr>"
        )
    more = len(rows) - MAX_ROWS
    tail = f"<p class='kit-label'>and {more} more in <i>My strategies</i></p>" if more > 0 else ""
    return (
        f"<div class='kit-glance' data-count='{len(rows)}'>{head}<table class='kit-glance-t'><tr><th>strategy</th>"
        "<th>market</th><th>state</th><th>position</th>"
        "<th title='realised on trades closed today (UTC, on the strategy&#39;s clock) plus the open position'>"
        f"today's P&amp;L</th><th>last signal</th></tr>{''.join(cells)}</table>{tail}</div>"
    )


class _Hold:
    """A hub listener that only keeps a stream alive (the hub holds its newest bar)."""

    def push(self, bar: Any) -> None:
        pass


class GlanceView:
    """Per session: the summary pane, refreshed by the page's periodic tick."""

    def __init__(self, store: Any, user: str, hub: Any) -> None:
        import panel as pn  # deferred: panel loads only in the dashboard process

        from kit.dashboard._style import CSS

        if not user:
            raise ValueError("user must be the logged-in user's name")
        self.store, self.user, self.hub = store, user, hub
        self.pane = pn.pane.HTML(render([]), sizing_mode="stretch_width", stylesheets=[CSS], name="glance")
        self._held: set[tuple[str, str]] = set()
        self._hold = _Hold()

    def refresh(self, data: tuple[Any, Any, Any, Any]) -> None:
        """Redraw from ``data`` (:func:`kit.dashboard.mine.load` of this view's user)."""
        recs, trades, positions, _ = data
        self._hold_markets({(r.symbol, r.interval) for r in recs})
        text = render(glance_rows(recs, trades, positions, self._clock_ms, self.hub.last_price))
        if text != self.pane.object:
            self.pane.object = text

    def _clock_ms(self, rec: Any) -> float:
        bar = self.hub.latest(rec.symbol, rec.interval)
        return float(bar.open_time) if bar is not None else time.time() * 1000.0

    def _hold_markets(self, wanted: set[tuple[str, str]]) -> None:
        for key in self._held - wanted:
            self.hub.detach(*key, self._hold)
        for key in wanted - self._held:
            self.hub.attach(*key, self._hold)
        self._held = wanted

    def close(self) -> None:
        """Release the streams held for the strategies' markets (the session is closing)."""
        self._hold_markets(set())
