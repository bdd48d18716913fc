"""Extra HTTP routes of the dashboard server (``panel serve --plugins kit.dashboard.routes``).

``GET /kit/stats``: the hub's figures as JSON (sessions, streams, feed), for monitoring and the
benchmark; ``/kit/live``: the pages' live candles (:class:`kit.dashboard.live.LiveSocket`).
``/kit/stats`` is for admins only: the signed login cookie is checked here, since Panel's
``authorize_callback`` only guards its own pages.
"""

from __future__ import annotations

import json

from tornado.web import RequestHandler


class StatsHandler(RequestHandler):
    """The process's hub statistics; 403 unless logged in as an admin."""

    def get(self) -> None:
        from panel.config import config

        from kit.dashboard.auth import user_role
        from kit.dashboard.hub import get_hub

        raw = self.get_secure_cookie("user", max_age_days=config.oauth_expiry) if config.cookie_secret else None
        user = raw.decode() if raw else None
        if user_role(user) != "admin":
            self.set_status(403)
            self.finish({"error": "admins only"})
            return
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(get_hub().stats(), default=str))


def _routes() -> list[tuple[str, type, dict]]:
    from kit.dashboard.live import LiveSocket

    return [(r"/kit/stats", StatsHandler, {}), (r"/kit/live", LiveSocket, {})]


#: Read by ``panel serve --plugins``.
ROUTES = _routes()
