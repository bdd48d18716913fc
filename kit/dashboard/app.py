"""What the served scripts call: :func:`setup` (``--setup``), :func:`dashboard` and :func:`admin_page`.

``apps/dashboard.py`` and ``apps/ops.py`` are one line each; everything with a callback lives
here, in an imported module, because Bokeh clears a served script's globals when the session
that ran it ends. Each page builds a :class:`Session` that owns the session's hub subscription
and periodic refresh, and is closed by ``pn.state.on_session_destroyed``.
"""

from __future__ import annotations

import logging
import uuid
from html import escape
from typing import Any

import panel as pn

from kit.dashboard._style import CSS
from kit.dashboard.auth import authorize, get_store, session_user
from kit.dashboard.hub import Hub, SessionInfo, get_hub
from kit.settings import Settings

log = logging.getLogger("kit.dashboard")


def setup() -> None:
    """Process-wide set-up for ``panel serve --setup apps/setup.py``: authorisation, store, hub.

    Runs once per server process before any request: guards every per-application route (WebSockets
    included) and adds the security headers (:func:`kit.dashboard.guard.install`), installs
    :func:`~kit.dashboard.auth.authorize` as ``pn.config.authorize_callback`` (admin pages 403 for
    viewers), migrates the database and creates the hub (the feed itself connects when the first
    session opens a chart).
    """
    from kit.dashboard.guard import install
    from kit.logs import setup_kit_logger

    settings = Settings.from_env()
    setup_kit_logger(settings.log_level, settings.log_format)
    install()
    pn.config.authorize_callback = authorize
    pn.config.global_css = [*pn.config.global_css, CSS]
    get_store()
    get_hub()
    from kit.dashboard.opswatch import get_ops_watch

    get_ops_watch()  # the admin plots' samples start with the process, not with the first admin page
    log.info("dashboard process ready")


class Session:
    """One browser session: the views it built, its hub registration and periodic refresh."""

    def __init__(self, hub: Hub, user: str, page: str) -> None:
        self.hub = hub
        self.info = SessionInfo(sid=uuid.uuid4().hex[:12], user=user, page=page)
        self.views: list[Any] = []
        self.callbacks: list[Any] = []
        self.closed = False
        hub.open_session(self.info)

    def close(self, session_context: Any) -> None:
        """``on_session_destroyed``: unsubscribe and stop refreshing; nothing of the session stays."""
        if self.closed:
            return
        self.closed = True
        for cb in self.callbacks:
            try:
                cb.stop()
            except Exception:
                pass
        for view in self.views:
            try:
                view.close()
            except Exception:
                log.exception("closing a view failed")
        self.views.clear()
        self.callbacks.clear()
        self.hub.close_session(self.info.sid)


def _header(settings: Settings, user: str, *, admin: bool, page: str) -> pn.viewable.Viewable:
    from kit.dashboard.market import source_badge

    links = []
    if page != "dashboard":
        links.append('<a href="./dashboard">Dashboard</a>')
    if admin and page != "ops":
        links.append('<a href="./ops">Admin</a>')
    links.append('<a href="./logout">Log out</a>')
    return pn.pane.HTML(
        f'<div class="kit-bar"><span class="kit-brand">kit</span>{source_badge(settings)}'
        f'<span class="kit-user">signed in as <b>{escape(user)}</b>{"".join(links)}</span></div>',
        sizing_mode="stretch_width",
        stylesheets=[CSS],
    )


def _denied(message: str) -> pn.viewable.Viewable:
    return pn.pane.HTML(f"<h2>403</h2><p>{escape(message)}</p>", stylesheets=[CSS])


def dashboard(chart_cls: type | None = None) -> pn.viewable.Viewable:
    """The main page: Market and My strategies, for the logged-in user (kit's signed session).

    ``chart_cls``: a :class:`~kit.dashboard.chart.CandleChart` subclass (the benchmark's peer).
    """
    from kit.dashboard.market import MarketView, offered_intervals

    pn.extension("tabulator", notifications=False)
    who = session_user()  # the signed cookies, never pn.state.user (which believes an is_guest cookie)
    if who is None:
        return _denied("Log in first.")
    user, role = who.name, who.role
    settings = Settings.from_env()
    hub = get_hub()
    doc = pn.state.curdoc
    args = getattr(getattr(doc, "session_context", None), "request", None)
    qs = getattr(args, "arguments", {}) or {}
    symbol = (qs.get("symbol") or [b""])[0].decode() or None
    interval = (qs.get("interval") or [b"1m"])[0].decode() or "1m"
    panes = (qs.get("panes") or [b""])[0].decode(errors="replace")[:64].split(",")
    session = Session(hub, user, "dashboard")
    interval = interval if interval in offered_intervals(settings) else "1m"
    market = MarketView(hub, settings, doc, symbol=symbol, interval=interval, session_id=session.info.sid,
                        panes=panes, **({"chart_cls": chart_cls} if chart_cls else {}))  # fmt: skip
    session.views.append(market)
    market.start()
    session.info.stream = f"{market.symbol}@{market.interval}"
    page = DashboardPage(get_store(), user, hub, market, session)
    pn.state.on_session_destroyed(session.close)
    return pn.Column(_header(settings, user, admin=role == "admin", page="dashboard"), page.glance.pane, page.tabs,
                     sizing_mode="stretch_width")  # fmt: skip


class DashboardPage:
    """The summary and tabs of one session. *My strategies* is built when first opened (most of a
    session's build cost is Bokeh/Panel models); until then the summary at a glance and the chart's
    trade markers are refreshed."""

    def __init__(self, store: Any, user: str, hub: Hub, market: Any, session: Session) -> None:
        from kit.dashboard.glance import GlanceView
        from kit.dashboard.mine import REFRESH_S

        self.store, self.user, self.hub, self.market = store, user, hub, market
        self.glance = GlanceView(store, user, hub)
        session.views.append(self.glance)  # closed with the session: releases the markets it holds
        self.mine: Any = None
        self.holder = pn.Column(sizing_mode="stretch_width")
        self.tabs = pn.Tabs(("Market", market.panel), ("My strategies", self.holder), dynamic=False,
                            sizing_mode="stretch_width")  # fmt: skip
        self.tabs.param.watch(self._on_tab, "active")
        market.on_stream_change.append(self._on_stream)
        self._session = session
        self.tick()
        session.callbacks.append(pn.state.add_periodic_callback(self.tick, period=int(REFRESH_S * 1000)))

    def _on_tab(self, event: Any) -> None:
        if event.new == 1 and self.mine is None:
            from kit.dashboard.mine import StrategiesView

            self.mine = StrategiesView(self.store, self.user, self.hub, self.market)
            self._session.views.append(self.mine)  # closed with the session: releases its streams
            self.mine.refresh()
            self.holder.objects = [self.mine.panel]

    def _on_stream(self) -> None:
        self._session.info.stream = f"{self.market.symbol}@{self.market.interval}"
        self.tick()

    def tick(self) -> None:
        from kit.dashboard.mine import load, refresh_markers

        try:
            data = load(self.store, self.user)  # cached per user: the tab below reuses it
            self.glance.refresh(data)
            if self.mine is None:
                refresh_markers(self.store, self.user, self.market, fills=data[3], records=data[0])
        except Exception as exc:
            log.warning("summary refresh failed for %s: %s", self.user, exc)
        if self.mine is not None:
            self.mine.refresh()


def admin_page() -> pn.viewable.Viewable:
    """The admin page (``/ops``): only for admins (the request was already authorised; checked again)."""
    from kit.dashboard.admin import REFRESH_S, AdminView
    from kit.dashboard.opswatch import get_ops_watch

    pn.extension("tabulator", notifications=False)
    who = session_user()
    if who is None or who.role != "admin":
        return _denied("The admin page is for administrators only.")
    user = who.name
    settings = Settings.from_env()
    hub = get_hub()
    session = Session(hub, user, "ops")
    view = AdminView(get_store(), hub, settings, user, get_ops_watch())
    session.callbacks.append(pn.state.add_periodic_callback(view.refresh, period=int(REFRESH_S * 1000)))
    doc = pn.state.curdoc
    if doc is not None:
        doc.add_next_tick_callback(view.refresh)
    pn.state.on_session_destroyed(session.close)
    return pn.Column(_header(settings, user, admin=True, page="ops"), view.panel, sizing_mode="stretch_width")
