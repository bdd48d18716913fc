"""``kit up``: the simulator, the daemon and the dashboard together, stopped together.

Each part runs as its own child process (its own process group, output in
``<data_dir>/logs/<name>.log``), so one crash is reported with its log tail and the others are
stopped cleanly; Ctrl-C (SIGINT) or SIGTERM stops the dashboard, then the daemon, then the
simulator, each with SIGTERM and a grace period before SIGKILL.

On first run it creates the demo user ``demo``, a viewer (password ``KIT_DEMO_PASSWORD``, else
generated and printed that once), and promotes two example strategies for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kit._fs import open_private_append, private_dir
from kit.errors import ConfigError, KitError
from kit.settings import Settings

log = logging.getLogger("kit.up")
DEMO_USER = "demo"
STOP_GRACE_S = 10.0
READY_TIMEOUT_S = 90.0


@dataclass
class Child:
    """One supervised process."""

    name: str
    cmd: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log_file: Any = field(default=None, repr=False)  # the child's stdout/stderr, closed by stop_all

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + s for s in text[-lines:])


class Supervisor:
    """Starts children in order and stops them in reverse order."""

    def __init__(self, log_dir: Path, out: TextIO = sys.stdout) -> None:
        self.log_dir = log_dir
        self.out = out
        self.children: list[Child] = []
        private_dir(log_dir)

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> Child:
        child = Child(name, cmd, self.log_dir / f"{name}.log")
        child.log_file = os.fdopen(open_private_append(child.log_path), "ab")
        child.proc = subprocess.Popen(
            cmd, env=env, stdout=child.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches kit up only; it stops the children in order
        )  # fmt: skip
        self.children.append(child)
        return child

    def dead(self) -> Child | None:
        for c in self.children:
            if c.proc is not None and c.proc.poll() is not None:
                return c
        return None

    def stop_all(self, grace_s: float = STOP_GRACE_S) -> None:
        for c in reversed(self.children):
            p = c.proc
            if p is None or p.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        for c in self.children:
            if c.log_file is not None:
                c.log_file.close()
                c.log_file = None


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (a listening server there makes it False)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host if host not in ("localhost",) else "127.0.0.1", port))
        except OSError:
            return False
    return True


def _require_port(host: str, port: int, what: str, hint: str) -> None:
    if not port_free(host, port):
        raise ConfigError(f"port {port} ({what}) is already in use on {host}: {hint}")


def _url_port(url: str, default: int) -> int:
    hostport = url.split("://", 1)[-1].split("/", 1)[0]
    if ":" in hostport:
        try:
            return int(hostport.rsplit(":", 1)[1])
        except ValueError:
            raise ConfigError(f"bad port in URL {url!r}") from None
    return default


def wait_http(url: str, child: Child, timeout: float = READY_TIMEOUT_S) -> None:
    """Wait until ``url`` answers any HTTP status; fail with the child's log tail if it dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc is not None and child.proc.poll() is not None:
            raise KitError(f"{child.name} exited with code {child.proc.returncode}; its log:\n{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise KitError(f"{child.name} did not answer at {url} within {timeout:.0f} s; its log:\n{child.tail()}")


def wait_port(host: str, port: int, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc is not None and child.proc.poll() is not None:
            raise KitError(f"{child.name} exited with code {child.proc.returncode}; its log:\n{child.tail()}")
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise KitError(f"{child.name} did not listen on {host}:{port} within {timeout:.0f} s; its log:\n{child.tail()}")


# -- the demo user ---------------------------------------------------------------------------
def ensure_demo_user(settings: Settings, store: Any) -> tuple[str | None, bool]:
    """Create the viewer ``demo`` if missing. Returns (its password if generated just now, created now).

    The password is ``KIT_DEMO_PASSWORD`` (checked against the password policy) or generated; a
    generated one is returned once, to be printed once, and kept only as a hash. ``demo`` is a
    viewer: an admin is created on purpose, with ``kit users add NAME --admin``.
    """
    from kit.dashboard.serve import secrets_dir
    from kit.store import users

    old_copy = secrets_dir(settings) / "demo_password"  # older kits kept the password in clear here
    if old_copy.is_file():
        old_copy.unlink()
    existing = users.get(store, DEMO_USER)
    if existing is not None:
        if existing.role == "admin":
            log.warning("the demo user is an admin (made by an older kit up): `kit users role demo viewer`")
        return None, False
    if settings.demo_password:
        try:
            users.check_password(settings.demo_password, DEMO_USER)
        except ConfigError as exc:
            raise ConfigError(f"KIT_DEMO_PASSWORD: {exc}") from None
        users.add(store, DEMO_USER, settings.demo_password, role="viewer")
        return None, True
    import secrets

    password = secrets.token_urlsafe(12)
    users.add(store, DEMO_USER, password, role="viewer")
    return password, True


def demo_strategies() -> list[tuple[Any, str, str]]:
    """The two example strategies promoted for ``demo``: (strategy, symbol, interval)."""
    from kit.strategies import EmaCross, RsiReversion

    return [(RsiReversion(), "BTCUSDT", "1m"), (EmaCross(), "ETHUSDT", "1m")]


def promote_demo_strategies(store: Any, start: int | None = None) -> list[str]:
    """Promote the examples for ``demo`` unless it already has strategies; returns what was done.

    ``start``: first candle they may trade (ms). With the simulator this is its simulated clock,
    since the replayed candles are older than the wall clock.
    """
    from kit.store import strategies

    if strategies.list(store, DEMO_USER):
        return []
    import kit

    done = []
    for strat, symbol, interval in demo_strategies():
        kit.promote(strat, user=DEMO_USER, symbol=symbol, interval=interval, start=start, store=store)
        done.append(f"{type(strat).__name__} on {symbol} {interval}")
    return done


def exchange_time(rest_url: str) -> int:
    """The exchange's clock (ms): Binance's ``/api/v3/time``; the simulator answers with its simulated time."""
    import json

    with urllib.request.urlopen(f"{rest_url}/api/v3/time", timeout=5) as resp:
        return int(json.loads(resp.read())["serverTime"])


# -- the commands ----------------------------------------------------------------------------
def _kit_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KIT_DATA_DIR=str(settings.data_dir), KIT_DATABASE_URL=settings.database_url,
        KIT_EXCHANGE_URL=settings.exchange_url, KIT_EXCHANGE_WS_URL=settings.exchange_ws_url,
        KIT_STATUS_PORT=str(settings.status_port), KIT_REPLAY_DATA=settings.replay_data,
    )  # fmt: skip
    if settings.redis_url:
        env.update(KIT_REDIS_URL=settings.redis_url, KIT_REDIS_PREFIX=settings.redis_prefix)
    env.setdefault("NUMBA_CACHE_DIR", str(settings.data_dir / "cache" / "numba"))
    return env


def _require_redis(url: str) -> None:
    from kit.settings import mask_url

    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except Exception as exc:
        raise ConfigError(f"KIT_REDIS_URL is set but Redis at {mask_url(url)} does not answer ({exc}); "
                          "start Redis or unset KIT_REDIS_URL") from None  # fmt: skip


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


class _Stop(Exception):
    pass


def run_up(port: int | None = None, host: str = "127.0.0.1", speed: float = 60.0, out: TextIO = sys.stdout) -> int:
    """``kit up``. Returns the exit code (0 after Ctrl-C, 1 when a part crashed)."""
    from kit.dashboard.serve import panel_command, panel_env
    from kit.store import Store

    settings = Settings.from_env()
    port = settings.dashboard_port if port is None else port
    if speed <= 0:
        raise ConfigError(f"--speed must be > 0, got {speed}")
    sim = settings.is_simulator
    ex_port = _url_port(settings.exchange_url, 443)
    _require_port(host, port, "dashboard", "another kit up or panel serve is running; stop it or use --port")
    if sim:
        _require_port("127.0.0.1", ex_port, "simulator",
                      "another kit up or kit exchange is running; stop it or set KIT_EXCHANGE_URL")  # fmt: skip
    _require_port("127.0.0.1", settings.status_port, "daemon status",
                  "another kit daemon is running; stop it or set KIT_STATUS_PORT")  # fmt: skip

    _require_port("127.0.0.1", settings.gateway_port, "gateway",
                  "another kit gateway is running; stop it or set KIT_GATEWAY_PORT")  # fmt: skip

    if settings.redis_url:
        _require_redis(settings.redis_url)

    private_dir(settings.data_dir)
    store = Store(settings.database_url)
    store.migrate()
    password, created = ensure_demo_user(settings, store)

    stop = {"sig": None}

    def _on_signal(signum: int, _frame: Any) -> None:
        stop["sig"] = signum
        raise _Stop

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    sup = Supervisor(settings.data_dir / "logs", out)
    env = _kit_env(settings)
    kit_cmd = [sys.executable, "-m", "kit"]
    try:
        if sim:
            _say(out, f"starting the simulator on 127.0.0.1:{ex_port} (replaying {settings.replay_data}, {speed:g}x)")
            sim_cmd = [
                *kit_cmd,
                "exchange",
                "--port",
                str(ex_port),
                "--speed",
                f"{speed:g}",
                "--update-every",
                f"{max(2.0, speed / 4):g}",
            ]  # ~4 forming updates per second
            simc = sup.start("simulator", sim_cmd, env)
            wait_port("127.0.0.1", ex_port, simc)
        else:
            _say(out, f"live exchange configured: {settings.exchange_url} (no simulator)")
        if settings.redis_url:
            # One exchange connection for every dashboard process and host: theirs come through Redis.
            _say(out, "starting the relay (the feed to Redis, for the dashboard)")
            sup.start("relay", [*kit_cmd, "relay"], env)
        _say(out, f"starting the dashboard on {host}:{port}")
        dash = sup.start("dashboard", panel_command(port, address=host, settings=settings), panel_env(settings, env))
        promoted: list[str] = []
        if created or not _has_strategies(store):
            _say(out, "promoting the demo user's example strategies (first run: a short backtest each)...")
            try:
                promoted = promote_demo_strategies(store, exchange_time(settings.exchange_url) if sim else None)
            except Exception as exc:  # the demo must not keep the rest from starting
                _say(out, f"warning: could not promote the example strategies: {type(exc).__name__}: {exc}")
        _say(out, f"starting the daemon (status on 127.0.0.1:{settings.status_port})")
        sup.start("daemon", [*kit_cmd, "daemon", "--status-port", str(settings.status_port)], env)
        # The same feed and engine for any client: REST + WebSocket on loopback (market data open there).
        _say(out, f"starting the gateway on 127.0.0.1:{settings.gateway_port}")
        gateway = sup.start("gateway", [*kit_cmd, "gateway", "--port", str(settings.gateway_port)], env)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"http://{shown}:{port}/"
        wait_http(url + "login", dash)
        gw_url = f"http://127.0.0.1:{settings.gateway_port}"
        wait_http(gw_url + "/ready", gateway)
        badge = (
            f"REPLAY (simulator at {settings.exchange_url}, {speed:g}x)" if sim else f"LIVE ({settings.exchange_url})"
        )
        lines = [
            "",
            "kit is up",
            f"  dashboard   {url}",
            f"  data        {badge}",
            f"  login       user {DEMO_USER} (viewer), password "
            + (
                f"{password} (generated now and shown once)"
                if password
                else "from KIT_DEMO_PASSWORD"
                if settings.demo_password
                else "shown on first run (`kit users passwd demo` sets a new one)"
            ),
        ]
        if promoted:
            lines.append(f"  strategies  {'; '.join(promoted)}")
        lines.append(f"  daemon      http://127.0.0.1:{settings.status_port}/status")
        lines.append(f"  gateway     {gw_url}/  (REST /api/v1, WebSocket /api/v1/ws, docs /docs, example /example)")
        if settings.redis_url:
            from kit.settings import mask_url

            lines.append(f"  feed        relayed through Redis at {mask_url(settings.redis_url)}")
        lines += [f"  logs        {sup.log_dir}", "Press Ctrl-C to stop everything.", ""]
        _say(out, "\n".join(lines))
        while True:
            dead = sup.dead()
            if dead is not None:
                _say(out, f"error: {dead.name} exited with code {dead.proc.returncode}; its log:\n{dead.tail()}")
                return 1
            time.sleep(0.5)
    except _Stop:
        _say(out, "\nstopping...")
        return 0
    except KitError as exc:
        _say(out, f"error: {exc}")
        return 1
    finally:
        try:
            sup.stop_all()
        except _Stop:
            sup.stop_all(grace_s=1.0)
        for s, h in old.items():
            signal.signal(s, h)
        store.dispose()
        if stop["sig"] is not None or sup.children:
            _say(out, "stopped.")


def _has_strategies(store: Any) -> bool:
    from kit.store import strategies

    try:
        return bool(strategies.list(store, DEMO_USER))
    except Exception:
        return False


def run_dashboard(port: int | None = None, host: str = "127.0.0.1") -> int:
    """``kit dashboard``: ``panel serve`` in the foreground; returns its exit code."""
    from kit.dashboard.serve import panel_command, panel_env
    from kit.store import Store

    settings = Settings.from_env()
    port = settings.dashboard_port if port is None else port
    _require_port(host, port, "dashboard", "another kit up or panel serve is running; stop it or use --port")
    private_dir(settings.data_dir)
    store = Store(settings.database_url)
    store.migrate()
    store.dispose()
    print(f"dashboard: http://{host}:{port}/  (data: {'REPLAY' if settings.is_simulator else 'LIVE'} "
          f"from {settings.exchange_url})", flush=True)  # fmt: skip
    cmd = panel_command(port, address=host, settings=settings)
    proc = subprocess.Popen(cmd, env=panel_env(settings, _kit_env(settings)))
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached panel serve too (same process group): let it finish
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            return 1
        return 0
