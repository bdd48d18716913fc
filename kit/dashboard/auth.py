"""Logins against kit's users table, the signed session cookie, and who may open what.

``panel serve ... --oauth-provider kit`` picks :class:`KitLoginHandler` up through the ``panel.auth``
entry point ``kit`` (declared in ``pyproject.toml``). It is Panel's ``BasicLoginHandler`` with kit's
rules: the password is checked against the argon2 hash in :mod:`kit.store` on a small worker pool
(never on the server's one event loop), failed logins are throttled per user name and per client
address and logged (name and address, never the password), and besides Panel's ``user`` cookie it
sets kit's own signed ``kit_session`` cookie carrying the user's session generation.

**Who is logged in** is decided from those two signed cookies only (:func:`session_from_cookies`):
never from Panel's unsigned ``is_guest`` cookie, nor from ``pn.state.user``, which honours it. A
session is valid while the user exists, is not disabled and still has the generation the cookie
was signed with; logout, a new password, a role change or disabling the user bump it, which ends
every session of theirs at once (:mod:`kit.dashboard.guard` also closes their open sockets).

:func:`authorize` is ``pn.config.authorize_callback``: known users only, admin pages (``/ops``
and Panel's own ``/admin``) for admins only. Panel calls it on the page GET only, so
:mod:`kit.dashboard.guard` applies the same rule to every WebSocket and document request.
``BasicLoginHandler`` and ``LogoutHandler`` are Panel's (private) API: Panel is pinned
(``panel>=1.9,<1.10``) and the browser tests log in through them.

This module is imported whenever ``panel.auth`` is (entry points load eagerly), so it imports
nothing heavy at module level.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple
from urllib.parse import urlencode

from jinja2 import Template

from kit.dashboard.throttle import LoginThrottle

log = logging.getLogger("kit.dashboard.auth")

#: URL paths only admins may open (Panel's own admin page included).
ADMIN_PATHS: tuple[str, ...] = ("/ops", "/admin")
#: kit's signed cookie: ``<session generation>:<user name>``.
SESSION_COOKIE = "kit_session"
#: What the login page may say; the URL carries only the key, so nobody can make it say anything else.
LOGIN_ERRORS = {
    "invalid": "Invalid username or password.",
    "throttled": "Too many failed logins for this user or address: try again in {retry} s.",
    "busy": "The server is busy checking other logins: try again in a moment.",
    "unavailable": "Logins cannot be checked right now (the database does not answer): try again later.",
}

# Self-contained (no CDN: the dashboard must look right offline).
LOGIN_TEMPLATE = Template(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>kit | Log in</title>
<style>
*{box-sizing:border-box;margin:0;padding:0}
html,body{height:100%;font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2937}
.wrap{display:flex;align-items:center;justify-content:center;height:100%;background:#f3f4f6}
form{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:2em;width:340px;
 box-shadow:0 4px 18px rgba(0,0,0,.06)}
h1{font-size:1.6em;margin-bottom:.2em}h1 span{color:#0f766e}
p.sub{color:#6b7280;margin-bottom:1.2em;font-size:.95em}
label{display:block;font-size:.85em;color:#374151;margin:.6em 0 .25em}
input{width:100%;padding:10px;border:1px solid #d1d5db;border-radius:6px;font-size:1em}
button{margin-top:1.2em;width:100%;padding:10px;border:0;border-radius:6px;background:#0f766e;color:#fff;
 font-size:1em;cursor:pointer}
button:hover{background:#115e59}
.error{background:#fef2f2;color:#b91c1c;border:1px solid #fecaca;border-radius:6px;padding:8px 10px;
 margin-bottom:.8em;font-size:.9em}
</style></head>
<body><div class="wrap">
<form action=".{{ login_endpoint }}" method="post">
<h1><span>kit</span> dashboard</h1>
<p class="sub">Log in to see the market and your strategies.</p>
{% if errormessage %}<div class="error" role="alert">{{ errormessage|e }}</div>{% endif %}
<label for="username">User name</label>
<input id="username" name="username" type="text" autocapitalize="off" autocorrect="off" autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password">
<button type="submit">Log in</button>
</form></div></body></html>
"""
)


# -- who is logged in ---------------------------------------------------------------------------
class SessionUser(NamedTuple):
    """A valid session: the user, the generation their cookie was signed with, and their role."""

    name: str
    gen: int
    role: str


def session_value(name: str, gen: int) -> str:
    return f"{int(gen)}:{name}"


def _decode(secret: Any, cookie: str, raw: str | None) -> str | None:
    from panel.config import config
    from tornado.web import decode_signed_value

    if not raw:
        return None
    value = decode_signed_value(secret, cookie, raw, max_age_days=config.oauth_expiry)
    try:
        return value.decode() if value else None
    except UnicodeDecodeError:
        return None


def session_from_cookies(cookies: Mapping[str, Any]) -> tuple[str, int] | None:
    """``(name, generation)`` from the signed ``user`` and ``kit_session`` cookies (raw values or
    Morsels), or None when either is missing, unsigned, expired or they disagree."""
    from panel.config import config

    secret = config.cookie_secret
    if not secret:
        return None

    def raw(key: str) -> str | None:
        v = cookies.get(key)
        return getattr(v, "value", v)

    user = _decode(secret, "user", raw("user"))
    kit = _decode(secret, SESSION_COOKIE, raw(SESSION_COOKIE))
    if not user or not kit:
        return None
    gen, _, name = kit.partition(":")
    if name != user or not gen.isdigit():
        return None
    return name, int(gen)


_STATE_TTL_S = 2.0  # a CLI change (disable, role...) reaches pages and sockets within this, plus the sweep
_states: dict[str, tuple[float, tuple[str, int, bool] | None]] = {}


def _user_state(name: str) -> tuple[str, int, bool] | None:
    """``(role, session_gen, disabled)`` of ``name`` (None if unknown), cached for a moment."""
    now = time.monotonic()
    hit = _states.get(name)
    if hit is not None and now - hit[0] < _STATE_TTL_S:
        return hit[1]
    from kit.store import users

    try:
        state = users.sessions_for(get_store(), [name]).get(name)
    except Exception:
        log.exception("user lookup failed for %r", name)
        return None
    _states[name] = (now, state)
    return state


def current_user(cookies: Mapping[str, Any]) -> SessionUser | None:
    """The logged-in user of a request (its cookies), or None when not logged in or the session ended."""
    found = session_from_cookies(cookies)
    if found is None:
        return None
    return valid_session(*found)


def valid_session(name: str, gen: int) -> SessionUser | None:
    """``name``'s session of generation ``gen`` if it is still valid."""
    state = _user_state(name)
    if state is None:
        return None
    role, current, disabled = state
    if disabled or current != gen:
        return None
    return SessionUser(name, gen, "admin" if role == "admin" else "viewer")


def session_user() -> SessionUser | None:
    """The user of the Bokeh session being built (from the cookies of the request that opened it)."""
    import panel as pn

    return current_user(pn.state.cookies)


def forget_user(name: str) -> None:
    """Drop ``name``'s cached state (after a change made in this process)."""
    _states.pop(name, None)


def is_admin_path(path: str) -> bool:
    """Whether ``path`` (a request path, maybe with a prefix) is one of the admin pages."""
    path = "/" + path.strip("/")
    return any(path == p or path.startswith(p + "/") for p in ADMIN_PATHS)


def allowed(user: SessionUser | None, path: str) -> bool:
    """Known users only; admin pages for admins only."""
    if user is None:
        return False
    return user.role == "admin" or not is_admin_path(path)


def authorize(user_info: dict[str, Any] | None, path: str) -> bool:
    """``pn.config.authorize_callback``. ``user_info`` is ignored on purpose: Panel fills it from the
    unsigned ``is_guest`` cookie too; the signed cookies of the request decide."""
    return allowed(session_user(), path)


# -- cookies -------------------------------------------------------------------------------------
def cookie_secure(handler: Any) -> bool:
    """Whether kit's cookies get ``Secure``: ``KIT_COOKIE_SECURE`` (auto: when the request came over HTTPS)."""
    from kit.settings import Settings

    mode = Settings.from_env().cookie_secure.strip().lower()
    if mode in ("1", "true", "yes", "always"):
        return True
    if mode in ("0", "false", "no", "never"):
        return False
    return handler.request.protocol == "https"


class CookiePolicy:
    """Mixin for the handlers that set cookies: ``SameSite=Lax`` and ``HttpOnly`` always, ``Secure`` per
    :func:`cookie_secure`.

    Lax keeps the cookies off cross-site POSTs and embedded requests (the Activate/Deactivate
    buttons cannot be driven from another site) while a link to the dashboard still logs in.
    """

    def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("samesite", "Lax")
        kwargs["httponly"] = True  # no script of the page ever reads them
        if cookie_secure(self):
            kwargs["secure"] = True
        super().set_cookie(name, value, *args, **kwargs)  # type: ignore[misc]


# -- checking passwords off the event loop ----------------------------------------------------------
#: argon2 takes tens of milliseconds of CPU: on the server's one event loop, a few login loops would
#: stall every page and live socket. Two workers (argon2-cffi releases the GIL) and a bounded queue.
VERIFY_WORKERS = 2
MAX_PENDING = 8
THROTTLE = LoginThrottle()
LOGIN_STATS = {"ok": 0, "failed": 0, "throttled": 0, "busy": 0}
_pool: ThreadPoolExecutor | None = None
_pending = 0


class Busy(Exception):
    """More logins are waiting for a password check than :data:`MAX_PENDING`."""


def check_login(name: str, password: str) -> SessionUser | None:
    """The session a right password opens, or None. Blocking (argon2): call it through :func:`verify`."""
    if not name or not password or len(name) > 64 or len(password) > 1024:
        return None
    from kit.store import users

    user = users.authenticate(get_store(), name, password)
    if user is None:
        return None
    forget_user(user.name)
    return SessionUser(user.name, int(user.session_gen), "admin" if user.role == "admin" else "viewer")


async def verify(name: str, password: str) -> SessionUser | None:
    """:func:`check_login` on the worker pool; :class:`Busy` when too many are already waiting."""
    global _pool, _pending
    if _pending >= MAX_PENDING:
        raise Busy
    if _pool is None:
        _pool = ThreadPoolExecutor(VERIFY_WORKERS, thread_name_prefix="kit-login")
    _pending += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_pool, check_login, name, password)
    finally:
        _pending -= 1


def _make_login_handler() -> type:
    # Built on first access (module __getattr__), not at import: ``panel.auth`` loads this module
    # through its entry point while it is itself still importing, so importing it here at module
    # level would be circular.
    from panel.auth import BasicLoginHandler

    if "_KitLoginHandler" in globals():  # importing panel.auth just built it (via the entry point)
        return globals()["_KitLoginHandler"]

    class KitLoginHandler(CookiePolicy, BasicLoginHandler):  # type: ignore[misc,valid-type]
        """Panel's login form, checking passwords against :mod:`kit.store`'s users table (see module doc)."""

        def get(self) -> None:
            # Panel's get(), rendering kit's template (the provider overwrites ``_login_template``).
            from panel.auth import _validate_next_url, state

            key = self.get_argument("error", "")
            retry = self.get_argument("retry", "")
            message = LOGIN_ERRORS.get(key, "")
            if key == "throttled":
                message = message.format(retry=int(retry) if retry.isdigit() and len(retry) < 7 else "a few")
            next_url = _validate_next_url(self.get_argument("next", state.base_url))
            if next_url:
                self.set_cookie("next_url", next_url)
            self.set_header("Cache-Control", "no-store")
            self.write(LOGIN_TEMPLATE.render(login_endpoint=self._login_endpoint, errormessage=message))

        def _validate(self, username: str, password: str) -> bool:
            # Panel's hook, kept for callers of the blocking check; post() goes through verify().
            return check_login(username, password) is not None

        def _refuse(self, error: str, **extra: Any) -> None:
            self.redirect(self.request.path + "?" + urlencode({"error": error, **extra}))

        async def post(self) -> None:
            from panel.auth import _validate_next_url, state

            name = self.get_argument("username", "")[:64]
            password = self.get_argument("password", "", strip=False)  # spaces are part of a password
            address = self.request.remote_ip or "?"
            wait = THROTTLE.wait(name, address, time.monotonic())
            if wait > 0:
                LOGIN_STATS["throttled"] += 1
                log.warning("login throttled", extra={"user": name, "address": address, "retry_s": round(wait)})
                self._refuse("throttled", retry=math.ceil(wait))
                return
            try:
                who = await verify(name, password)
            except Busy:
                LOGIN_STATS["busy"] += 1
                log.warning("login refused: too many checks waiting", extra={"user": name, "address": address})
                self._refuse("busy")
                return
            except Exception:  # the database being down: not the user's failure, and no crash page
                log.exception("login check failed", extra={"user": name, "address": address})
                self._refuse("unavailable")
                return
            if who is None:
                LOGIN_STATS["failed"] += 1
                lock = THROTTLE.failed(name, address, time.monotonic())
                log.warning("login refused", extra={"user": name, "address": address, "locked_s": round(lock)})
                self._refuse("invalid")
                return
            LOGIN_STATS["ok"] += 1
            THROTTLE.succeeded(name, address, time.monotonic())
            log.info("login accepted", extra={"user": who.name, "address": address})
            self.set_current_user(who.name)
            self.set_signed_cookie(SESSION_COOKIE, session_value(who.name, who.gen), httponly=True,
                                   expires_days=self._expiry_days())  # fmt: skip
            self.redirect(_validate_next_url(self.get_cookie("next_url", state.base_url)))

        def _expiry_days(self) -> float:
            from panel.config import config

            return config.oauth_expiry

    return KitLoginHandler


def __getattr__(name: str) -> Any:
    if name == "KitLoginHandler":
        cls = globals().get("_KitLoginHandler") or _make_login_handler()
        globals()["_KitLoginHandler"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the process's store -------------------------------------------------------------------------
_store_lock = threading.Lock()
_store: Any = None


def get_store() -> Any:
    """The process-wide :class:`kit.store.Store` for ``KIT_DATABASE_URL`` (migrated once)."""
    global _store
    with _store_lock:
        if _store is None:
            from kit.settings import Settings
            from kit.store import Store

            store = Store(Settings.from_env().database_url)
            store.migrate()
            _store = store
        return _store


def set_store(store: Any) -> None:
    """Use ``store`` as the process's store (a server embedding the dashboard, and tests)."""
    global _store
    with _store_lock:
        _store = store
    _states.clear()


def reset_store() -> None:
    """Forget the process's store and cached user states (tests that switch databases)."""
    global _store
    with _store_lock:
        if _store is not None:
            _store.dispose()
        _store = None
    _states.clear()
