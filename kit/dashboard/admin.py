"""The admin page (``/ops``, admins only): plots of the system over the last hours (see
:mod:`kit.dashboard.opsplots`), then feed, sessions, daemon, users, recent errors.

Access is enforced per request by :func:`kit.dashboard.auth.authorize` (HTTP 403 for viewers);
:class:`AdminView` checks the role again when it builds, so a misconfigured server shows nothing.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from html import escape
from typing import Any

import pandas as pd
import panel as pn

from kit.dashboard._style import CSS
from kit.dashboard.hub import Hub
from kit.dashboard.opsplots import OpsPlots
from kit.dashboard.opswatch import OpsWatch
from kit.settings import Settings

log = logging.getLogger("kit.dashboard.admin")

REFRESH_S = 5.0


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _kv(d: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for k, v in d.items():
        if isinstance(v, float):
            v = round(v, 3)
        elif isinstance(v, dict | list):
            v = json.dumps(v, default=str)  # whole: the table wraps long values
        rows.append({"key": str(k), "value": str(v)})
    return pd.DataFrame(rows, columns=["key", "value"])


def _table(df: pd.DataFrame, name: str, height: int = 200, wrap: tuple[str, ...] = ()) -> pn.widgets.Tabulator:
    return pn.widgets.Tabulator(df, disabled=True, show_index=False, selectable=False, sizing_mode="stretch_width",
                                height=height, name=name, layout="fit_columns",
                                formatters={c: {"type": "textarea"} for c in wrap})  # fmt: skip


#: The daemon's /status lists, each shown as its own table rather than squeezed into one cell.
_DAEMON_LISTS = ("reasons", "strategies_by_user", "stream_detail", "strategy_detail", "strategy_problems")
_STRATEGY_COLUMNS = ["id", "user", "name", "state", "version", "position", "fills", "trades", "failures",
                     "last signal", "error"]  # fmt: skip
_DAEMON_STREAM_COLUMNS = ["stream", "strategies", "groups", "candles", "last candle", "failures", "last error"]


def daemon_tables(status: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """The daemon's ``/status`` as the admin page shows it: ``summary`` (figures), ``health`` (one
    row per reason it is not ready), ``strategies`` (every strategy it runs or had to stop, with the
    whole error text) and ``streams``."""
    summary = _kv({k: v for k, v in status.items() if k not in _DAEMON_LISTS})
    health = pd.DataFrame([{"state": status.get("health", "?"), "reason": r} for r in status.get("reasons", [])],
                          columns=["state", "reason"])  # fmt: skip
    rows = [
        {"id": m.get("id"), "user": m.get("user"), "name": m.get("name"), "state": "failing" if m.get("last_error")
         else "active", "version": m.get("version"), "position": m.get("position"), "fills": m.get("fills"),
         "trades": m.get("trades"), "failures": m.get("failures"), "last signal": m.get("last_signal"),
         "error": m.get("last_error") or ""}
        for m in status.get("strategy_detail", [])
    ]  # fmt: skip
    rows += [{"id": p.get("id"), "user": p.get("user"), "name": p.get("name"), "state": p.get("state"),
              "error": p.get("error") or ""} for p in status.get("strategy_problems", [])]  # fmt: skip
    rows.sort(key=lambda r: (r["state"] == "active", r["user"] or "", r["id"] or 0))  # problems first
    streams = [
        {"stream": f"{d.get('symbol')}/{d.get('interval')}", "strategies": d.get("strategies"),
         "groups": d.get("groups"), "candles": d.get("candles"), "last candle": d.get("last_candle"),
         "failures": d.get("failures"), "last error": d.get("last_error") or ""}
        for d in status.get("stream_detail", [])
    ]  # fmt: skip
    return {
        "summary": summary,
        "health": health,
        "strategies": pd.DataFrame(rows, columns=_STRATEGY_COLUMNS),
        "streams": pd.DataFrame(streams, columns=_DAEMON_STREAM_COLUMNS),
    }


#: Badge colour and word by the daemon's health state.
_BADGES = {"ok": ("#16a34a", "ready"), "degraded": ("#d97706", "degraded"), "down": ("#dc2626", "not ready")}


#: The streams table: hub figure -> column title (pages: open /kit/live sockets).
_STREAM_COLUMNS = {"stream": "stream", "source": "source", "listeners": "listeners", "sockets": "pages",
                   "bars": "bars", "events": "events", "messages": "sent", "coalesced": "folded",
                   "errors": "errors", "last_event_age_s": "last event"}  # fmt: skip


def _streams_frame(streams: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [{title: (_ago(st.get(k)) if k == "last_event_age_s" else st.get(k)) for k, title in _STREAM_COLUMNS.items()}
            for st in streams]  # fmt: skip
    return pd.DataFrame(rows, columns=list(_STREAM_COLUMNS.values()))


class AdminView:
    """Per admin session: refreshed every :data:`REFRESH_S` seconds while open."""

    def __init__(self, store: Any, hub: Hub, settings: Settings, user: str, watch: OpsWatch) -> None:
        self.store = store
        self.hub = hub
        self.settings = settings
        self.user = user
        self.watch = watch
        self.status_url = watch.status_url
        self.plots = OpsPlots(watch.timeline)
        self.daemon_badge = pn.pane.HTML("", stylesheets=[CSS])
        self.hub_table = _table(_kv({}), "hub", 240)
        self.streams_table = _table(pd.DataFrame(), "streams", 130)
        self.feed_table = _table(_kv({}), "feed", 240)
        self.sessions_table = _table(pd.DataFrame(), "sessions", 200)
        self.daemon_table = _table(_kv({}), "daemon", 240, wrap=("value",))
        self.daemon_health_table = _table(pd.DataFrame(), "daemon health", 110, wrap=("reason",))
        self.daemon_strategies_table = _table(pd.DataFrame(), "daemon strategies", 260, wrap=("error",))
        self.daemon_streams_table = _table(pd.DataFrame(), "daemon streams", 130, wrap=("last error",))
        self.users_table = _table(pd.DataFrame(), "users", 200)
        # pausing: the actions re-check this user's role in the store (kit.store.admin)
        self.pause_choice = pn.widgets.Select(options={}, width=320, name="Strategy")
        self.pause_user_choice = pn.widgets.Select(options=[], width=200, name="User")
        self.pause_button = pn.widgets.Button(name="Pause strategy", button_type="warning", width=130)
        self.resume_button = pn.widgets.Button(name="Resume strategy", button_type="success", width=140)
        self.pause_user_button = pn.widgets.Button(name="Pause all of the user's strategies", button_type="danger",
                                                   width=260)  # fmt: skip
        self.action_message = pn.pane.HTML("", min_width=300, stylesheets=[CSS])
        self.pause_button.on_click(lambda _e: self._act("pause"))
        self.resume_button.on_click(lambda _e: self._act("resume"))
        self.pause_user_button.on_click(lambda _e: self._act("pause_user"))
        self.events_table = _table(pd.DataFrame(), "events", 260)
        section = lambda title: pn.pane.HTML(f"<h3 class='kit-h'>{title}</h3>", stylesheets=[CSS])  # noqa: E731
        self.panel = pn.Column(
            section(f"The last hours (a sample every {watch.every_s:g} s)"),
            self.plots.panel,
            pn.Row(
                pn.Column(
                    section("Daemon"),
                    self.daemon_badge,
                    self.daemon_health_table,
                    self.daemon_table,
                    sizing_mode="stretch_width",
                ),
                pn.Column(section("Feed (this dashboard process)"), self.feed_table, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            section("Daemon strategies (problems first; error: the whole text; click a header to sort)"),
            self.daemon_strategies_table,
            section("Pause (the daemon stops a paused strategy at its next poll; logged as an event)"),
            pn.Row(
                self.pause_choice, self.pause_button, self.resume_button, self.pause_user_choice, self.pause_user_button
            ),
            self.action_message,
            section("Daemon streams"),
            self.daemon_streams_table,
            section(
                "Dashboard streams (pages: open live sockets; sent: messages; folded: updates a slow page got merged)"
            ),
            self.streams_table,
            pn.Row(
                pn.Column(section("Dashboard process"), self.hub_table, sizing_mode="stretch_width"),
                pn.Column(section("Sessions"), self.sessions_table, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            pn.Row(
                pn.Column(section("Users and strategies"), self.users_table, sizing_mode="stretch_width"),
                pn.Column(section("Recent errors and events"), self.events_table, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )

    async def refresh(self) -> None:
        """Refresh the plots and every table from the process's ops watcher and the store."""
        self.plots.refresh()
        hub = self.hub.stats()
        streams = hub.pop("streams")
        feed = hub.pop("feed")
        self.hub_table.value = _kv(hub)
        self.streams_table.value = _streams_frame(streams)
        self.feed_table.value = _kv(feed or {"feed": "not started (no session has opened a chart yet)"})
        now = time.time()
        self.sessions_table.value = pd.DataFrame(
            [
                {
                    "user": s.user,
                    "page": s.page,
                    "opened": _ago(now - s.opened),
                    "stream": s.stream,
                    "updates": s.updates,
                }
                for s in self.hub.sessions.values()
            ],
            columns=["user", "page", "opened", "stream", "updates"],
        )
        await self._refresh_daemon()
        self._refresh_store()

    async def _refresh_daemon(self) -> None:
        status, ok = dict(self.watch.status), self.watch.ok  # fetched once per process for every admin page
        hb = None
        try:
            from kit.store import events

            hb = events.latest_heartbeat(self.store)
        except Exception as exc:
            status["heartbeat error"] = str(exc)
        if hb is not None:
            t = hb["time"]
            if isinstance(t, datetime) and t.tzinfo is None:
                t = t.replace(tzinfo=UTC)
            age = (datetime.now(UTC) - t).total_seconds() if isinstance(t, datetime) else None
            status = {"last heartbeat": f"{_ago(age)} ({hb['daemon_id']})", **status}
        else:
            status = {"last heartbeat": "none recorded", **status}
        color, word = _BADGES.get(status.get("health", "down"), _BADGES["down"]) if ok else ("#dc2626", "unreachable")
        self.daemon_badge.object = (
            f"<span class='kit-badge' style='background:{color}'>daemon {word}</span> <small>{self.status_url}</small>"
        )
        tables = daemon_tables(status)
        self.daemon_table.value = tables["summary"]
        self.daemon_health_table.value = tables["health"]
        self.daemon_strategies_table.value = tables["strategies"]
        self.daemon_streams_table.value = tables["streams"]

    def _act(self, what: str) -> None:
        """A pause/resume button: done as this session's user, whom the store checks is an admin."""
        from kit.errors import KitError
        from kit.store import admin

        try:
            if what == "pause_user":
                name = self.pause_user_choice.value
                recs = admin.pause_user(self.store, self.user, name)
                done = f"paused the {len(recs)} strategies of {name}"
            else:
                sid = self.pause_choice.value
                if sid is None:
                    raise KitError("pick a strategy first")
                rec = (admin.pause_strategy if what == "pause" else admin.resume_strategy)(self.store, self.user, sid)
                done = f"{'paused' if what == 'pause' else 'resumed'} #{rec.id} {rec.name}"
        except KitError as exc:
            self.action_message.object = f"<span class='kit-err'>{escape(str(exc))}</span>"
            return
        log.info("admin %s %s", self.user, done)
        self.action_message.object = f"<span class='kit-ok'>{escape(done.capitalize())}.</span>"
        self._refresh_store()

    def _refresh_store(self) -> None:
        from kit.store import events, strategies, users

        try:
            names = {u.id: u.name for u in users.list(self.store)}
            opts = {f"#{r.id} {r.name} ({names.get(r.user_id, r.user_id)}, {'off' if not r.active else r.state})": r.id
                    for r in strategies.list_all_for_daemon(self.store, active_only=False)}  # fmt: skip
            if opts != self.pause_choice.options:
                current = self.pause_choice.value
                self.pause_choice.options = opts
                self.pause_choice.value = current if current in opts.values() else next(iter(opts.values()), None)
            if sorted(names.values()) != self.pause_user_choice.options:
                self.pause_user_choice.options = sorted(names.values())
            counts = {c["user"]: c for c in strategies.counts_for_admin(self.store)}
            rows = []
            for u in users.list(self.store):
                c = counts.get(u.name, {})
                role = f"{u.role} (disabled)" if u.disabled else u.role
                rows.append({"user": u.name, "role": role, "strategies": c.get("total", 0), "on": c.get("on", 0),
                             "active": c.get("active", 0), "paused": c.get("paused", 0),
                             "error": c.get("error", 0)})  # fmt: skip
            self.users_table.value = pd.DataFrame(rows)
            ev = events.recent(self.store, 40)
        except Exception as exc:
            log.warning("admin refresh failed: %s", exc)
            ev = []
            self.hub.record_error(f"admin: {exc}")
        rows = [
            {"time": str(e["time"])[:19], "level": e["level"], "kind": e["kind"], "message": e["message"][:160]}
            for e in ev
        ]
        rows += [
            {
                "time": datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                "level": "error",
                "kind": "dashboard",
                "message": m[:160],
            }
            for t, m in self.hub.errors
        ]
        rows.sort(key=lambda r: r["time"], reverse=True)
        self.events_table.value = pd.DataFrame(rows, columns=["time", "level", "kind", "message"])
