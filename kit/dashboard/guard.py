"""What every request to the dashboard server goes through: authorisation on connect, security
headers, and the end of revoked sessions.

Panel runs ``authorize_callback`` on a page's GET only. A Bokeh session can also be opened
directly over its WebSocket (``/admin/ws`` with any logged-in cookie returned Panel's whole admin
document), or through ``/autoload.js``, so :func:`install` (called by the ``--setup`` script,
before Panel builds its routes) replaces Panel's per-application handlers with subclasses that
check kit's signed session and the path's role in ``prepare``, before any session exists: 403 for
a WebSocket or a role that does not fit, a redirect to the login page for a page without a valid
session.

:class:`Revoker` keeps every open WebSocket (Bokeh sessions and ``/kit/live``) by user and, every
:data:`SWEEP_S` seconds, closes those whose session ended (logout, new password, role change,
disabled or removed user: the user's session generation moved). A logout in this process closes
its user's sockets at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tornado.escape import url_escape, xhtml_escape
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.web import RequestHandler
from tornado.websocket import WebSocketHandler

from kit.dashboard import auth

log = logging.getLogger("kit.dashboard.guard")

SWEEP_S = 2.0
#: WebSocket close code for "your session ended" (the page's live script does not retry it).
CLOSE_SESSION_ENDED = 4401
#: On every response of the server (see :func:`install_security_headers`).
SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'self'",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def add_security_headers(handler: RequestHandler) -> None:
    for k, v in SECURITY_HEADERS.items():
        handler.set_header(k, v)


_original_default_headers = RequestHandler.set_default_headers


def _default_headers(self: RequestHandler) -> None:
    _original_default_headers(self)
    add_security_headers(self)


def install_security_headers() -> None:
    """Every handler of this process sends :data:`SECURITY_HEADERS` (the login page, Panel's and
    Bokeh's pages and static files, kit's routes): no framing by other sites (the Activate and
    Deactivate buttons cannot be clickjacked), no MIME sniffing, no URL leaking in Referer.

    Tornado's ``set_default_headers`` is the hook for headers every response carries; setting it
    on the base class reaches the handlers Panel and Bokeh create too. A handler that overrides it
    without calling the base (Bokeh's autoload.js) is covered by its guarded subclass below.
    """
    RequestHandler.set_default_headers = _default_headers  # type: ignore[method-assign]


# -- open sockets and their end ----------------------------------------------------------------------
class Revoker:
    """Every open WebSocket of the process by user name; closes those whose session ended."""

    def __init__(self, sweep_s: float = SWEEP_S) -> None:
        self.sweep_s = sweep_s
        self.sockets: dict[str, dict[WebSocketHandler, int]] = {}
        self.closed = 0
        self._timer: PeriodicCallback | None = None
        self._loop: IOLoop | None = None
        self._sweeping = False
        self._task: asyncio.Future[int] | None = None

    def add(self, user: auth.SessionUser, handler: WebSocketHandler) -> None:
        self.sockets.setdefault(user.name, {})[handler] = user.gen
        loop = IOLoop.current()  # the server's loop (another one only in tests embedding handlers)
        if self._timer is None or self._loop is not loop:
            if self._timer is not None:
                self._timer.stop()
            self._timer, self._loop = PeriodicCallback(self._tick, self.sweep_s * 1000), loop
            self._timer.start()

    def discard(self, name: str, handler: WebSocketHandler) -> None:
        socks = self.sockets.get(name)
        if socks is not None:
            socks.pop(handler, None)
            if not socks:
                del self.sockets[name]

    def end(self, name: str, reason: str = "session ended") -> int:
        """Close every socket of ``name`` now; returns how many."""
        socks = list(self.sockets.pop(name, {}))
        for h in socks:
            _close(h, reason)
        self.closed += len(socks)
        return len(socks)

    def _tick(self) -> None:
        if not self._sweeping and self.sockets:
            self._sweeping = True
            self._task = asyncio.ensure_future(self.sweep())  # kept: a task nobody holds may be collected

    async def sweep(self) -> int:
        """Close the sockets whose user's session generation moved (read in one query, off the loop)."""
        from kit.store import users

        try:
            names = list(self.sockets)
            loop = asyncio.get_running_loop()
            states = await loop.run_in_executor(None, users.sessions_for, auth.get_store(), names)
        except Exception:
            # Fail closed is not possible without the database; keep sockets and say so.
            log.exception("session check failed")
            return 0
        finally:
            self._sweeping = False
        n = 0
        for name in names:
            state = states.get(name)
            for h, gen in list(self.sockets.get(name, {}).items()):
                if state is None or state[2] or state[1] != gen:
                    self.discard(name, h)
                    _close(h, "session ended")
                    n += 1
            if state is None or state[2]:
                auth.forget_user(name)
        self.closed += n
        if n:
            log.info("closed %d sockets of ended sessions", n)
        return n

    def stats(self) -> dict[str, int]:
        return {"open": sum(len(s) for s in self.sockets.values()), "closed_revoked": self.closed}


def _close(handler: WebSocketHandler, reason: str) -> None:
    try:
        handler.close(CLOSE_SESSION_ENDED, reason)
    except Exception:
        pass


REVOKER = Revoker()


# -- authorisation on connect ----------------------------------------------------------------------
_SUFFIXES = ("/ws", "/metadata", "/autoload.js")


def app_path(handler: RequestHandler) -> str:
    """The application a per-app request is for: ``/admin/ws`` -> ``/admin`` (prefix removed)."""
    path = handler.request.path
    prefix = getattr(handler.application, "prefix", "") or ""
    if prefix and path.startswith(prefix):
        path = path[len(prefix) :]
    for s in _SUFFIXES:
        if path.endswith(s):
            path = path[: -len(s)]
            break
    return "/" + path.strip("/")


class _Guarded:
    """Mixin for Panel's per-application handlers: kit's session and the path's role, before anything."""

    kit_user: auth.SessionUser | None = None

    def set_default_headers(self) -> None:
        super().set_default_headers()  # type: ignore[misc]
        add_security_headers(self)  # type: ignore[arg-type]

    async def prepare(self) -> None:
        user = auth.current_user(self.request.cookies)  # type: ignore[attr-defined]
        path = app_path(self)  # type: ignore[arg-type]
        if not auth.allowed(user, path):
            is_ws = isinstance(self, WebSocketHandler)
            if user is None and not is_ws and self.request.method in ("GET", "HEAD"):  # type: ignore[attr-defined]
                # not (or no longer) logged in: to the login page, coming back here afterwards
                nxt = url_escape(self.request.uri or "/")  # type: ignore[attr-defined]
                self.redirect(f"{self.get_login_url()}?next={nxt}")  # type: ignore[attr-defined]
                return
            log.warning("refused %s to %s", self.request.path, user.name if user else "an anonymous client",  # type: ignore[attr-defined]
                        extra={"address": self.request.remote_ip})  # type: ignore[attr-defined]  # fmt: skip
            self.set_status(403)  # type: ignore[attr-defined]
            self.finish("403: not allowed")  # type: ignore[attr-defined]
            return
        error = bad_query(path, self.request.query_arguments)  # type: ignore[attr-defined]
        if error is not None:
            self.set_status(400)  # type: ignore[attr-defined]
            self.set_header("Content-Type", "text/plain; charset=utf-8")  # type: ignore[attr-defined]
            self.finish(f"400: {xhtml_escape(error)}")  # type: ignore[attr-defined]  # it quotes the request
            return
        self.kit_user = user
        await super().prepare()  # type: ignore[misc]


#: The query parameters kit's pages take, per application (Bokeh's own are not touched).
_DASHBOARD_APPS = ("/", "/dashboard")


def bad_query(path: str, args: dict[str, list[bytes]]) -> str | None:
    """Why the query of a page request is invalid (a clear 400), or None."""
    if path not in _DASHBOARD_APPS:
        return None
    from kit.dashboard.live import symbols
    from kit.dashboard.market import INTERVALS

    for key, check, what in (("symbol", symbols().__contains__, "symbol"),
                             ("interval", INTERVALS.__contains__, "interval")):  # fmt: skip
        for raw in args.get(key, []):
            value = raw.decode("utf-8", "replace")
            if not check(value):
                return f"unknown {what} {value[:32]!r}"
    return None


def _guarded_ws(base: type) -> type:
    class GuardedWSHandler(_Guarded, base):  # type: ignore[misc,valid-type]
        def open(self, *args: Any, **kwargs: Any) -> Any:
            if self.kit_user is not None:
                REVOKER.add(self.kit_user, self)
            return super().open(*args, **kwargs)

        def on_close(self) -> None:
            if self.kit_user is not None:
                REVOKER.discard(self.kit_user.name, self)
            super().on_close()

    return GuardedWSHandler


def install() -> None:
    """Guard Panel's per-application routes and add the security headers (idempotent).

    Must run before the server builds its routes: ``panel serve --setup`` runs before Panel adds its
    ``/admin`` routes and before Bokeh builds the applications' (with ``--num-procs 1``, which kit
    uses). :func:`check_installed` (the ``--plugins`` module) refuses to start otherwise.
    """
    from panel.io.server import per_app_patterns

    install_security_headers()
    for i, (route, cls, *rest) in enumerate(per_app_patterns):
        if issubclass(cls, _Guarded):
            continue
        guarded = _guarded_ws(cls) if issubclass(cls, WebSocketHandler) else type(f"Guarded{cls.__name__}",
                                                                                   (_Guarded, cls), {})  # fmt: skip
        per_app_patterns[i] = (route, guarded, *rest)


def check_installed() -> None:
    """Refuse to serve when :func:`install` did not run first (a server without kit's ``--setup``)."""
    from panel.io.server import per_app_patterns

    if not all(issubclass(p[1], _Guarded) for p in per_app_patterns):
        from kit.errors import ConfigError

        raise ConfigError("kit's dashboard routes need `--setup apps/setup.py` (and --num-procs 1): "
                          "without it Panel's WebSockets would skip kit's authorisation")  # fmt: skip
