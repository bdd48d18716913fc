"""The My strategies tab: the logged-in user's strategies, switches, trades and equity.

Every query goes through :mod:`kit.store` with the session's user name (taken on the server
from the login cookie, never from the browser), so another user's rows never leave the server.
"""

from __future__ import annotations

import logging
import math
import time
from html import escape
from typing import Any

import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, DatetimeTickFormatter, NumeralTickFormatter
from bokeh.plotting import figure

from kit.dashboard._style import CSS
from kit.dashboard.hub import Hub
from kit.dashboard.market import MarketView

log = logging.getLogger("kit.dashboard.mine")

#: Seconds between refreshes from the database (the daemon writes at most once per closed candle).
REFRESH_S = 3.0
STRATEGY_COLUMNS = ["id", "name", "strategy", "symbol", "interval", "switch", "state", "last signal", "position",
                    "entry price", "trades", "realised P&L", "unrealised P&L", "error"]  # fmt: skip
TRADE_COLUMNS = ["strategy", "side", "size", "entry_time", "entry_price", "exit_time", "exit_price", "exit_reason",
                 "duration", "pnl", "return_pct", "mae_pct", "mfe_pct", "fees"]  # fmt: skip


class StrategiesView:
    """Per session: one user's strategies (with activate/deactivate), trades table, equity curve."""

    def __init__(self, store: Any, user: str, hub: Hub, market: MarketView | None = None) -> None:
        if not user:
            raise ValueError("user must be the logged-in user's name")
        self.store = store
        self.user = user
        self.hub = hub
        self.market = market
        self._records: list[Any] = []
        self._last_key: Any = None
        self._watched: set[tuple[str, str]] = set()
        self._price_watch = _PriceWatch()
        self.strategies = pn.widgets.Tabulator(
            pd.DataFrame(columns=STRATEGY_COLUMNS), disabled=True, show_index=False, selectable=False,
            sizing_mode="stretch_width", height=190, name="strategies",
        )  # fmt: skip
        self.choice = pn.widgets.Select(name="Strategy", options={}, width=260)
        self.activate = pn.widgets.Button(name="Activate", button_type="success", width=110)
        self.deactivate = pn.widgets.Button(name="Deactivate", button_type="warning", width=110)
        self.message = pn.pane.HTML("", min_width=300, stylesheets=[CSS])
        self.activate.on_click(lambda _e: self._switch(True))
        self.deactivate.on_click(lambda _e: self._switch(False))
        self.choice.param.watch(lambda _e: self._load_equity(), "value")
        self.trades = pn.widgets.Tabulator(
            pd.DataFrame(columns=TRADE_COLUMNS), disabled=True, show_index=False, selectable=False,
            sizing_mode="stretch_width", height=260, pagination="local", page_size=8, name="trades",
        )  # fmt: skip
        self.equity_source = ColumnDataSource(data=_no_equity(), name="equity")
        fig = figure(x_axis_type="datetime", height=240, sizing_mode="stretch_width", tools="xpan,xwheel_zoom,reset",
                     toolbar_location="right", title="Equity (realised; dashed: with the open position)")  # fmt: skip
        fig.step("time", "realised", source=self.equity_source, mode="after", line_width=2, color="#0f766e",
                 legend_label="realised")  # fmt: skip
        fig.line("time", "total", source=self.equity_source, line_width=1.5, line_dash="dashed", color="#2563eb",
                 legend_label="with unrealised")  # fmt: skip
        fig.legend.location = "top_left"
        fig.x_range.default_span = 6 * 3_600_000  # one trade alone spans 6 h, not 2 ms with µs ticks
        # a flat line (no trades yet) spans 2 % of the starting cash, not Bokeh's ±1 around 10,000
        fig.y_range.default_span = 200.0
        fig.yaxis.formatter = NumeralTickFormatter(format="0,0.[00]")
        fig.xaxis.formatter = DatetimeTickFormatter(minutes="%H:%M", hours="%d %b %H:%M", days="%d %b")
        self.equity_fig = fig
        self.empty = pn.pane.HTML("", visible=False, stylesheets=[CSS])
        self.panel = pn.Column(
            pn.pane.HTML(f"<h3 class='kit-h'>Strategies of {escape(self.user)}</h3>", stylesheets=[CSS]),
            self.empty,
            self.strategies,
            pn.Row(self.choice, self.activate, self.deactivate, self.message),
            pn.pane.HTML("<h4 class='kit-h'>Trades</h4>", stylesheets=[CSS]),
            self.trades,
            pn.pane.Bokeh(fig, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    # -- refresh ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload from the store; widgets change only when the data did."""

        try:
            recs, tr, pos, fills = load(self.store, self.user)
        except Exception as exc:
            log.warning("refresh failed for %s: %s", self.user, exc)
            self.message.object = f"<span class='kit-err'>Could not read the database: {escape(str(exc))}</span>"
            return
        self._watch_open_positions(recs, pos)
        prices = {r.symbol: self.hub.last_price(r.symbol) for r in recs}
        self._records = recs
        names = {r.id: r.name for r in recs}
        frame = _strategy_frame(recs, tr, pos, prices)
        if not frame.equals(self.strategies.value):
            self.strategies.value = frame
        tframe = _trade_frame(tr, names)
        if not tframe.equals(self.trades.value):
            self.trades.value = tframe
        opts = {f"#{r.id} {r.name} ({r.symbol} {r.interval})": r.id for r in recs}
        if opts != self.choice.options:
            current = self.choice.value
            self.choice.options = opts
            if current in opts.values():
                self.choice.value = current
            elif opts:
                self.choice.value = next(iter(opts.values()))
        key = (len(tr), self.choice.value)
        if key != self._last_key:
            self._last_key = key
            self._load_equity()
        else:
            self._advance_equity(pos)
        self.empty.object = (
            "<p>No strategies yet. Promote one from a notebook: "
            "<code>kit.promote(MyStrategy(...), user=..., symbol=..., interval=...)</code>.</p>"
        )
        self.empty.visible = not recs
        self.update_markers(fills)

    def _watch_open_positions(self, recs: list[Any], pos: pd.DataFrame) -> None:
        """Hold the hub's stream of every open position's market while this view lives, so its
        unrealised P&L has a live price even when no chart shows that market (the stream is the
        process's shared one: nothing is computed per session)."""
        held = set(pos.loc[pos["size"] != 0, "strategy_id"]) if len(pos) else set()
        wanted = {(r.symbol, r.interval) for r in recs if r.id in held}
        for key in self._watched - wanted:
            self.hub.detach(*key, self._price_watch)
        for key in wanted - self._watched:
            self.hub.attach(*key, self._price_watch)
        self._watched = wanted

    def close(self) -> None:
        """Release the streams held for open positions (the session is closing)."""
        for key in self._watched:
            self.hub.detach(*key, self._price_watch)
        self._watched = set()

    def update_markers(self, fills: pd.DataFrame | None = None) -> None:
        """This user's fills on the market chart's symbol, as buy/sell triangles."""
        if self.market is not None:
            refresh_markers(self.store, self.user, self.market, fills=fills, records=self._records)

    def _load_equity(self) -> None:
        from kit.store import trades

        sid = self.choice.value
        if sid is None:
            self.equity_source.data = _no_equity()
            return
        try:
            eq = trades.equity(self.store, self.user, sid)
            _, _, pos, _ = load(self.store, self.user)
        except Exception as exc:
            self.message.object = f"<span class='kit-err'>{escape(str(exc))}</span>"
            return
        t = [float(x) for x in (eq.index.as_unit("ms").asi8)]
        realised = eq.to_numpy(dtype="float64").tolist()
        total = list(realised)
        tail = self._equity_tail(sid, pos, t[-1] if t else None, realised[-1] if realised else None)
        if tail is not None:
            # Carry the line on to the last known time, so a strategy with no trades yet (or none
            # lately) draws a flat line up to the present.
            t.append(tail[0])
            realised.append(realised[-1])
            total.append(tail[1])
        self.equity_source.data = {"time": t, "realised": realised, "total": total}

    def _equity_tail(self, sid: int, pos: pd.DataFrame, last_t: float | None, last: float | None) -> Any:
        """The equity line's last point: (now, realised + the open position's unrealised P&L at the
        live price; NaN, a hole, while no price is known), or None."""
        rec = next((r for r in self._records if r.id == sid), None)
        if rec is None or last_t is None or last is None:
            return None
        p = pos[pos["strategy_id"] == sid] if len(pos) else pos
        size = float(p["size"].iloc[0]) if len(p) else 0.0
        entry = float(p["entry_price"].iloc[0]) if len(p) and pd.notna(p["entry_price"].iloc[0]) else None
        unreal = _unrealised(size, entry, self.hub.last_price(rec.symbol)) if size else 0.0
        return max(last_t, self._now_ms(rec.symbol, rec.interval)), last + unreal

    def _advance_equity(self, pos: pd.DataFrame) -> None:
        """Move the line's last point to the present (between reloads, which happen on new trades)."""
        data = self.equity_source.data
        n = len(data["time"])
        if n < 2 or self.choice.value is None:
            return
        tail = self._equity_tail(self.choice.value, pos, data["time"][n - 2], data["realised"][n - 2])
        old = data["total"][n - 1]
        same_total = tail is not None and (tail[1] == old or (math.isnan(tail[1]) and math.isnan(old)))
        if tail is not None and (tail[0] != data["time"][n - 1] or not same_total):
            self.equity_source.patch({"time": [(n - 1, tail[0])], "total": [(n - 1, tail[1])]})

    def _now_ms(self, symbol: str, interval: str) -> float:
        """The present on the strategy's clock: its market's newest bar when the hub holds it (a
        replay trades in simulated time), else the wall clock."""
        bar = self.hub.latest(symbol, interval)
        return float(bar.open_time) if bar is not None else time.time() * 1000.0

    def _switch(self, active: bool) -> None:
        from kit.store import strategies

        sid = self.choice.value
        if sid is None:
            self.message.object = "<span class='kit-err'>Pick a strategy first.</span>"
            return
        try:
            rec = strategies.set_active(self.store, self.user, sid, active)
        except Exception as exc:  # NotFound for someone else's id, like a missing one
            self.message.object = f"<span class='kit-err'>{escape(str(exc))}</span>"
            return
        word = "activated" if active else "deactivated"
        self.message.object = f"<span class='kit-ok'>#{rec.id} {escape(rec.name)} {word}.</span>"
        self._last_key = None
        invalidate(self.user)
        self.refresh()


def refresh_markers(
    store: Any, user: str, market: MarketView, *, fills: pd.DataFrame | None = None, records: list[Any] | None = None
) -> None:
    """Put ``user``'s fills on ``market``'s symbol on its chart (without building the strategies tab)."""
    if fills is None or records is None:
        records, _, _, fills = load(store, user)
    symbols = {r.id: r.symbol for r in records}
    rows = []
    for f in fills.itertuples(index=False):
        if symbols.get(f.strategy_id) != market.symbol:
            continue
        rows.append({
            "time": int(pd.Timestamp(f.time).value // 1_000_000),
            "price": f.price,
            "buy": str(f.side).lower() in ("buy", "long"),
            "label": f"#{f.strategy_id} {f.side} {f.size:g}",
        })  # fmt: skip
    market.chart.set_trades(rows)


def _no_equity() -> dict[str, list[Any]]:
    return {"time": [], "realised": [], "total": []}


class _PriceWatch:
    """A hub listener that only keeps a stream alive (the hub holds its newest bar)."""

    def push(self, bar: Any) -> None:
        pass


_cache: dict[str, tuple[float, Any]] = {}


def load(store: Any, user: str) -> tuple[Any, Any, Any, Any]:
    """``user``'s strategies, trades, positions and recent fills, shared by that user's sessions for a
    refresh period (many tabs of one user cost one set of queries). Keyed by the user: never shared across users.
    """
    from kit.store import strategies, trades

    now = time.monotonic()
    hit = _cache.get(user)
    if hit is not None and now - hit[0] < REFRESH_S * 0.9:
        return hit[1]
    data = (
        strategies.list(store, user),
        # closed trades: the open position is in the strategies table, valued at the live price
        trades.list(store, user, include_open=False),
        trades.positions(store, user),
        trades.fills(store, user, limit=400),
    )
    _cache[user] = (now, data)
    if len(_cache) > 1000:  # forget users who left
        for name, (t, _) in list(_cache.items()):
            if now - t > 60:
                del _cache[name]
    return data


def invalidate(user: str) -> None:
    """Forget ``user``'s cached data (after they change something)."""
    _cache.pop(user, None)


def _short(class_path: str) -> str:
    return class_path.rsplit(".", 1)[-1].rsplit(":", 1)[-1]


def _unrealised(size: float, entry: float | None, price: float | None) -> float:
    if not size or entry is None or price is None or math.isnan(price):
        return math.nan
    return size * (price - entry)


def _strategy_frame(recs: list[Any], tr: pd.DataFrame, pos: pd.DataFrame, prices: dict[str, float | None]) -> Any:
    rows = []
    for r in recs:
        mine = tr[tr["strategy_id"] == r.id] if len(tr) else tr
        p = pos[pos["strategy_id"] == r.id] if len(pos) else pos
        size = float(p["size"].iloc[0]) if len(p) else 0.0
        entry = float(p["entry_price"].iloc[0]) if len(p) and pd.notna(p["entry_price"].iloc[0]) else None
        rows.append({
            "id": r.id, "name": r.name, "strategy": _short(r.class_path), "symbol": r.symbol, "interval": r.interval,
            "switch": "on" if r.active else "off", "state": r.state, "last signal": r.last_signal or "",
            "position": "flat" if not size else f"{'long' if size > 0 else 'short'} {abs(size):g}",
            "entry price": entry if entry is not None else math.nan, "trades": len(mine),
            "realised P&L": round(float(mine["pnl"].sum()), 2) if len(mine) else 0.0,
            "unrealised P&L": round(_unrealised(size, entry, prices.get(r.symbol)), 2),
            "error": (r.last_error or "")[:120] if r.state != "active" else "",
        })  # fmt: skip
    return pd.DataFrame(rows, columns=STRATEGY_COLUMNS)


def _trade_frame(tr: pd.DataFrame, names: dict[int, str]) -> Any:
    if not len(tr):
        return pd.DataFrame(columns=TRADE_COLUMNS)
    df = tr.copy()
    df["strategy"] = [f"#{i} {names.get(i, '')}" for i in df["strategy_id"]]
    for c in ("entry_time", "exit_time"):
        df[c] = pd.to_datetime(df[c], utc=True).dt.strftime("%Y-%m-%d %H:%M")
    df["duration"] = df["duration"].astype(str)
    df = df.iloc[::-1]  # newest first
    return df[TRADE_COLUMNS].round({"pnl": 2, "fees": 4, "return_pct": 4, "mae_pct": 4, "mfe_pct": 4})
