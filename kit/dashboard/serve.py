"""How the dashboard is served: the cookie secret and the ``panel serve`` command line.

The cookie secret signs the login cookie. It comes from ``KIT_COOKIE_SECRET`` (or
``KIT_SECRETS_FILE``); otherwise one is generated once and kept in
``<KIT_DATA_DIR>/secrets/cookie_secret`` (mode 0600; ``data/secrets*`` is git-ignored), so
logins survive restarts. It is handed to Panel through ``PANEL_COOKIE_SECRET`` in the child's
environment, never on a command line that ``ps`` would show.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sys
from pathlib import Path

from kit.errors import ConfigError
from kit.settings import PROJECT_ROOT, Settings

APPS_DIR = PROJECT_ROOT / "apps"


def secrets_dir(settings: Settings) -> Path:
    from kit._fs import private_dir

    d = private_dir(settings.data_dir / "secrets")
    try:
        d.chmod(0o700)
    except OSError:
        pass
    return d


def read_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """The secret stored in ``path``, creating it (mode 0600) with ``nbytes`` random bytes if missing."""
    if path.is_file():
        value = path.read_text().strip()
        if value:
            return value
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def cookie_secret(settings: Settings) -> str:
    """``KIT_COOKIE_SECRET`` if set, else the one kept under ``<data_dir>/secrets/``."""
    if settings.cookie_secret:
        if len(settings.cookie_secret) < 16:
            raise ConfigError("KIT_COOKIE_SECRET must be at least 16 characters")
        return settings.cookie_secret
    return read_or_create_secret(secrets_dir(settings) / "cookie_secret")


def apps_dir() -> Path:
    if not (APPS_DIR / "dashboard.py").is_file():
        raise ConfigError(f"the dashboard apps are not at {APPS_DIR} (run kit from its source checkout)")
    return APPS_DIR


def panel_command(port: int, *, address: str = "127.0.0.1", admin: bool = True,
                  allow_origin: list[str] | None = None, extra: list[str] | None = None,
                  more_apps: list[str] | None = None, settings: Settings | None = None) -> list[str]:  # fmt: skip
    """``panel serve`` for the dashboard (``/dashboard``, also at ``/``) and the admin page (``/ops``).

    ``extra``: more ``panel serve`` options, e.g. ``["--unused-session-lifetime", "1000"]``;
    ``more_apps``: more scripts to serve next to them (the benchmark's peer page); ``settings``:
    where ``KIT_PROXY_HEADERS`` is read (default: this process's environment).
    """
    if not 0 <= port < 65536:
        raise ConfigError(f"port must be 0-65535, got {port}")
    apps = apps_dir()
    cmd = [
        sys.executable, "-m", "panel", "serve", str(apps / "dashboard.py"), str(apps / "ops.py"), *(more_apps or []),
        "--setup", str(apps / "setup.py"), "--index", "dashboard", "--plugins", "kit.dashboard.routes",
        "--address", address, "--port", str(port), "--num-procs", "1",
        "--oauth-provider", "kit", "--oauth-expiry-days", "7",
    ]  # fmt: skip
    if admin:
        cmd.append("--admin")
    if _truthy((settings or Settings.from_env()).proxy_headers):
        cmd.append("--use-xheaders")  # the proxy's X-Forwarded-Proto/-For: Secure cookies, real client address
    origins = list(allow_origin or [])
    if port:
        hosts = {address, "127.0.0.1", "localhost"} - {"0.0.0.0", "::"}
        origins += [f"{h}:{port}" for h in sorted(hosts)]
    else:
        origins.append("*")  # port 0: the port is only known after binding (tests)
    for o in origins:
        cmd += ["--allow-websocket-origin", o]
    return cmd + list(extra or [])


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def panel_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the ``panel serve`` child: the cookie secret and a quiet Bokeh."""
    env = dict(os.environ if base is None else base)
    for key in ("PANEL_COOKIE_SECRET", "BOKEH_COOKIE_SECRET", "PANEL_OAUTH_PROVIDER", "BOKEH_SECRET_KEY"):
        env.pop(key, None)
    secret = cookie_secret(settings)
    env["PANEL_COOKIE_SECRET"] = secret
    # Signed Bokeh session ids and tokens: a session's cookies (which say who is logged in) come from
    # its token, so nobody may mint one; the key is derived, so it never equals the cookie secret.
    env["BOKEH_SIGN_SESSIONS"] = "yes"
    env["BOKEH_SECRET_KEY"] = hmac.new(secret.encode(), b"kit bokeh session tokens", hashlib.sha256).hexdigest()
    env.setdefault("BOKEH_PY_LOG_LEVEL", "warning")
    return env
