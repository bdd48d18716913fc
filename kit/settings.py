"""All settings in one place: environment variables with the ``KIT_`` prefix.

Nothing here is secret by default. Secrets (exchange keys, the dashboard's cookie
secret) are read from the environment or from ``KIT_SECRETS_FILE`` (a ``KEY=VALUE``
file outside the repository) and are never printed: ``Settings.__repr__`` masks them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from kit.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_SECRET_NAMES = {
    "cookie_secret", "api_key", "api_secret", "demo_password", "status_token", "sim_control_token", "secrets_key",
}  # fmt: skip


def _default_data_dir() -> Path:
    # A source checkout keeps its data next to the package; an installed kit uses the cwd.
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT / "data"
    return Path.cwd() / "data"


def _ws_twin(rest_url: str) -> str:
    """The simulator serves WebSocket on the same port as REST: http->ws, https->wss."""
    if rest_url.startswith("https://"):
        return "wss://" + rest_url[len("https://") :]
    if rest_url.startswith("http://"):
        return "ws://" + rest_url[len("http://") :]
    raise ConfigError(f"KIT_EXCHANGE_URL must start with http:// or https://, got {rest_url!r}")


def _read_secrets_file(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"KIT_SECRETS_FILE {path!r} does not exist")
    out: dict[str, str] = {}
    for line in p.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :meth:`from_env`; every field maps to ``KIT_<NAME>``."""

    exchange_url: str = "http://127.0.0.1:9400"
    exchange_ws_url: str = ""
    database_url: str = ""
    redis_url: str = ""
    redis_prefix: str = "kit"
    data_dir: Path = field(default_factory=_default_data_dir)
    replay_data: str = ""
    log_level: str = "INFO"
    log_format: str = "text"
    status_port: int = 9401
    dashboard_port: int = 5006
    gateway_port: int = 9402
    cookie_secret: str = ""
    api_key: str = ""
    api_secret: str = ""
    # The master key that encrypts users' exchange keys in the database (kit keys); never stored there.
    secrets_key: str = ""
    demo_password: str = ""
    # Names (comma-separated) the status server and the simulator answer to besides loopback
    # and their bound address: what a reverse proxy or a remote client puts in ``Host``.
    allowed_hosts: str = ""
    status_token: str = ""  # when set, /status and /metrics need "Authorization: Bearer <it>"
    sim_control_token: str = ""  # when set, the simulator's /_sim/* controls need it (else loopback only)
    # Package prefixes (comma-separated) the daemon may import strategy classes from; kit's own
    # are always allowed. Empty: any importable module (whoever can promote runs code).
    strategy_modules: str = ""
    #: Dashboard cookies: ``auto`` (Secure when the request came over HTTPS, as the proxy reports it
    #: with ``KIT_PROXY_HEADERS=1``), ``1`` always Secure, ``0`` never.
    cookie_secure: str = "auto"
    #: ``1`` behind a reverse proxy: trust its X-Forwarded-For/-Proto (``panel serve --use-xheaders``).
    proxy_headers: str = "0"
    #: PostgreSQL only: split the strategies into this many shards (strategy id mod N) owned by
    #: any number of daemons through leases; 0 (default): one daemon per database.
    shards: int = 0
    #: Seconds a shard lease lasts unless renewed (renewed every quarter of it): about the
    #: longest a dead daemon's strategies wait for a new owner.
    lease_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        secrets = _read_secrets_file(env.get("KIT_SECRETS_FILE"))
        values: dict[str, object] = {}
        for f in fields(cls):
            key = "KIT_" + f.name.upper()
            raw = env.get(key, secrets.get(key))
            if raw is None or raw == "":
                continue
            if f.name in ("status_port", "dashboard_port", "gateway_port"):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise ConfigError(f"{key} must be an integer port, got {raw!r}") from None
            elif f.name in ("shards", "lease_seconds"):
                try:
                    values[f.name] = (int if f.name == "shards" else float)(raw)
                except ValueError:
                    raise ConfigError(f"{key} must be a number, got {raw!r}") from None
                if not values[f.name] >= (0 if f.name == "shards" else 1):  # type: ignore[operator]
                    raise ConfigError(f"{key} must be {'>= 0' if f.name == 'shards' else '>= 1 second'}, got {raw!r}")
            elif f.name == "data_dir":
                values[f.name] = Path(raw).expanduser()
            else:
                values[f.name] = raw.rstrip("/") if f.name.endswith("_url") else raw
        s = cls(**values)  # type: ignore[arg-type]
        if not s.exchange_ws_url:
            object.__setattr__(s, "exchange_ws_url", _ws_twin(s.exchange_url))
        if not s.database_url:
            object.__setattr__(s, "database_url", f"sqlite:///{s.data_dir / 'kit.db'}")
        if not s.replay_data:
            # The candles shipped with kit, wherever the database and cache live.
            shipped = PROJECT_ROOT / "data" / "sample"
            object.__setattr__(s, "replay_data", str(shipped if shipped.is_dir() else s.data_dir / "sample"))
        return s

    @property
    def allowed_host_names(self) -> tuple[str, ...]:
        return _csv(self.allowed_hosts)

    @property
    def strategy_module_prefixes(self) -> tuple[str, ...]:
        return _csv(self.strategy_modules)

    @property
    def is_simulator(self) -> bool:
        """True unless the exchange URL points at a non-loopback host (a real exchange)."""
        host = self.exchange_url.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
        return host in ("127.0.0.1", "localhost", "::1", "[::1]")

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_NAMES and value:
                value = "***"
            elif f.name.endswith("_url") and isinstance(value, str):
                value = mask_url(value)
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"


def _csv(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and reprs).

    Parsed as RFC 3986 reads it: the authority runs to the first ``/``, ``?`` or ``#`` after
    ``scheme://`` and its userinfo to the authority's *last* ``@``. A password holding one of
    those characters unencoded makes the URL ambiguous (drivers disagree: SQLAlchemy reads
    ``:p@ss@host`` as password ``p`` on host ``ss@host``), so when an ``@`` also follows the
    authority, everything up to the URL's last ``@`` is masked: too much hidden is harmless,
    a piece of a password shown is not.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in tail:
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    userinfo, _, hostport = authority.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hostport}{tail}"


def __getattr__(name: str) -> Settings:
    # `kit.settings.settings` is read from the environment on first use, not at import.
    if name == "settings":
        return Settings.from_env()
    raise AttributeError(name)
