"""Login against kit's users table, and the per-path authorisation of the dashboard.

``panel serve ... --oauth-provider kit --cookie-secret SECRET`` picks :class:`KitLoginHandler` up
through the ``panel.auth`` entry point ``kit`` (declared in ``pyproject.toml``). It is Panel's
``BasicLoginHandler`` with one change: :meth:`KitLoginHandler._validate` checks the password
against the argon2 hash stored by :mod:`kit.store` instead of a plaintext credentials file.
``_validate`` is private Panel API: Panel is pinned (``panel>=1.9,<1.10``) and the browser tests
log in through it.

:func:`authorize` is installed as ``pn.config.authorize_callback`` by :func:`kit.dashboard.app.setup`:
only known users get any page, and only admins get the admin pages (``/ops`` and Panel's own
``/admin``); everyone else gets HTTP 403.

This module is imported whenever ``panel.auth`` is (entry points load eagerly), so it imports
nothing heavy at module level.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from jinja2 import Template

log = logging.getLogger("kit.dashboard.auth")

#: URL paths only admins may open (Panel's own admin page included).
ADMIN_PATHS: tuple[str, ...] = ("/ops", "/admin")

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


def _make_login_handler() -> type:
    # Built on first access (module __getattr__), not at import: ``panel.auth`` loads this module
    # through its entry point while it is itself still importing, so importing it here at module
    # level would be circular.
    from panel.auth import BasicLoginHandler

    if "_KitLoginHandler" in globals():  # importing panel.auth just built it (via the entry point)
        return globals()["_KitLoginHandler"]

    class KitLoginHandler(BasicLoginHandler):  # type: ignore[misc,valid-type]
        """Panel's login form, checking passwords against :mod:`kit.store`'s users table.

        ``get`` renders kit's self-contained login page; ``post`` (Panel's) calls :meth:`_validate`
        and sets the signed ``user`` cookie, or redirects to ``/login?error=...``.
        """

        def get(self) -> None:
            # Panel's get(), rendering kit's template (the provider overwrites ``_login_template``).
            from panel.auth import _validate_next_url, state

            errormessage = self.get_argument("error", "")
            next_url = _validate_next_url(self.get_argument("next", state.base_url))
            if next_url:
                self.set_cookie("next_url", next_url)
            self.write(LOGIN_TEMPLATE.render(login_endpoint=self._login_endpoint, errormessage=errormessage))

        def _validate(self, username: str, password: str) -> bool:
            if not username or not password or len(password) > 1024:
                return False
            from kit.store import users

            try:
                ok = users.authenticate(get_store(), username, password) is not None
            except Exception:  # the database being down must not crash the login page
                log.exception("login check failed for %r", username)
                return False
            log.info("login %s", "accepted" if ok else "refused", extra={"user": username})
            if ok:
                forget_role(username)
            return ok

    return KitLoginHandler


def __getattr__(name: str) -> Any:
    if name == "KitLoginHandler":
        cls = globals().get("_KitLoginHandler") or _make_login_handler()
        globals()["_KitLoginHandler"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    _roles.clear()


def reset_store() -> None:
    """Forget the process's store and cached roles (tests that switch databases)."""
    global _store
    with _store_lock:
        if _store is not None:
            _store.dispose()
        _store = None
    _roles.clear()


_ROLE_TTL_S = 5.0
_roles: dict[str, tuple[float, str | None]] = {}


def user_role(name: str | None) -> str | None:
    """``"admin"``, ``"viewer"`` (any other role) or None for an unknown user; cached for a few seconds."""
    if not name:
        return None
    now = time.monotonic()
    hit = _roles.get(name)
    if hit is not None and now - hit[0] < _ROLE_TTL_S:
        return hit[1]
    from kit.store import users

    try:
        user = users.get(get_store(), name)
    except Exception:
        log.exception("role lookup failed for %r", name)
        return None
    role = None if user is None else ("admin" if _is_admin(user) else "viewer")
    _roles[name] = (now, role)
    return role


def forget_role(name: str) -> None:
    _roles.pop(name, None)


def _is_admin(user: Any) -> bool:
    role = getattr(user, "role", None)
    if role is not None:
        return str(getattr(role, "value", role)).lower() == "admin"
    return bool(getattr(user, "is_admin", False))


def is_admin_path(path: str) -> bool:
    """Whether ``path`` (a request path, maybe with a prefix) is one of the admin pages."""
    path = "/" + path.strip("/")
    return any(path == p or path.startswith(p + "/") for p in ADMIN_PATHS)


def authorize(user_info: dict[str, Any] | None, path: str) -> bool:
    """``pn.config.authorize_callback``: known users only; admin pages for admins only."""
    name = (user_info or {}).get("user") or (user_info or {}).get("username")
    role = user_role(name)
    if role is None:
        return False
    if is_admin_path(path):
        return role == "admin"
    return True
