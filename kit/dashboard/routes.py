"""Extra HTTP routes of the dashboard server (``panel serve --plugins kit.dashboard.routes``).

``GET /kit/stats``: the hub's figures and the login counters as JSON, for monitoring and the
benchmark (admins only: the signed session is checked here, since Panel's ``authorize_callback``
only guards its own pages); ``GET /kit/metrics``: the same as Prometheus text (an admin, or the
status token); ``/kit/live``: the pages' live candles
(:class:`kit.dashboard.live.LiveSocket`); ``/logout``: Panel's logout page that also ends every
session of the user (these routes come before the auth provider's, so kit's ``/logout`` wins).
"""

from __future__ import annotations

import json
from typing import Any

from panel.auth import LogoutHandler
from tornado.web import RequestHandler

from kit.dashboard import auth
from kit.dashboard.guard import REVOKER, check_installed


class StatsHandler(RequestHandler):
    """The process's hub statistics and login counters; 403 unless logged in as an admin."""

    def get(self) -> None:
        from kit.dashboard.hub import get_hub

        user = auth.current_user(self.request.cookies)
        if user is None or user.role != "admin":
            self.set_status(403)
            self.finish({"error": "admins only"})
            return
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        stats = get_hub().stats()
        stats["logins"] = {**auth.LOGIN_STATS, "throttle_keys": len(auth.THROTTLE)}
        stats["sockets"] = REVOKER.stats()
        self.finish(json.dumps(stats, default=str))


class MetricsHandler(RequestHandler):
    """Prometheus metrics (``kit_dashboard_...``, :mod:`kit.dashboard.metrics`): for a scraper with
    ``Authorization: Bearer <KIT_STATUS_TOKEN>`` (as the daemon's ``/metrics``) or an admin's session;
    403 otherwise (they name streams and count logins)."""

    def get(self) -> None:
        from kit._guard import bearer_ok
        from kit._metrics import CONTENT_TYPE_LATEST
        from kit.dashboard import metrics
        from kit.dashboard.hub import get_hub
        from kit.settings import Settings

        if not bearer_ok(self.request.headers.get("Authorization"), Settings.from_env().status_token):
            user = auth.current_user(self.request.cookies)
            if user is None or user.role != "admin":
                self.set_status(403)
                self.finish({"error": "admins or the status token only"})
                return
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        logins = {**auth.LOGIN_STATS}
        self.finish(metrics.render(get_hub().stats(), logins, REVOKER.stats()))


class KitLogoutHandler(auth.CookiePolicy, LogoutHandler):
    """Panel's logout page, after ending every session of the user (every device, every socket).

    A copied cookie would otherwise keep working after logout: the cookie itself cannot be recalled,
    so the user's session generation moves instead.
    """

    async def get(self, *args: Any) -> None:
        user = auth.current_user(self.request.cookies)
        # A link on another site must not log the user out of every device (Lax cookies ride along on
        # top-level navigations): from there, only this browser's cookies are cleared.
        cross_site = self.request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none")
        if user is not None and not cross_site:
            import asyncio

            from kit.store import users

            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, users.end_sessions, auth.get_store(), user.name)
            auth.forget_user(user.name)
            REVOKER.end(user.name, "logged out")
            auth.log.info("logout", extra={"user": user.name, "address": self.request.remote_ip})
        self.clear_cookie(auth.SESSION_COOKIE)
        self.set_header("Cache-Control", "no-store")
        super().get()


def _routes() -> list[tuple[str, type, dict]]:
    from kit.dashboard.live import LiveSocket

    check_installed()
    return [(r"/kit/stats", StatsHandler, {}), (r"/kit/metrics", MetricsHandler, {}), (r"/kit/live", LiveSocket, {}),
            (r"/logout", KitLogoutHandler, {})]  # fmt: skip


#: Read by ``panel serve --plugins``.
ROUTES = _routes()
