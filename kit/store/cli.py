"""``kit users``, ``kit keys``, ``kit strategies``, ``kit trades``, ``kit db``, ``kit limits``,
``kit halt``/``kit resume``: the store from a shell.

The shell is the operator's seat: ``kit strategies activate ID`` acts on any user's
strategy. Passwords come from a hidden prompt or from stdin (``echo pw | kit users add bob``),
never from the command line, where they would end up in the shell history and ``ps``; so do
exchange keys (``kit keys set``), which are stored encrypted and never printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa
import typer

from kit.errors import ConfigError, InputError, KitError
from kit.store import NotFound, Store, keys, live, strategies, trades, users

users_app = typer.Typer(help="Dashboard users (passwords stored argon2-hashed).", no_args_is_help=True)
strategies_app = typer.Typer(help="Promoted strategies the daemon runs.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema (Alembic).", no_args_is_help=True)
keys_app = typer.Typer(
    help="Users' exchange API keys, encrypted with the master key KIT_SECRETS_KEY.", no_args_is_help=True
)


def _store(*, schema: bool = True):
    """The configured store, refused in one line if it does not answer or, with ``schema``, was
    never migrated (each would otherwise end in a SQLAlchemy traceback on the first query)."""
    store = Store()
    try:
        revision = store.current_revision()
    except sa.exc.OperationalError as exc:
        # the driver's first line says why (refused, unknown host, auth); the repr hides the password
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise KitError(f"cannot reach the database {store!r}: {reason}") from None
    if schema and revision is None:
        raise ConfigError(f"database {store!r} has no kit schema yet; run `kit db upgrade` first")
    return store


def _read_password(prompt: bool) -> str:
    if sys.stdin.isatty() and prompt:
        return typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise ConfigError("no password given on stdin")
    return line


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="Login name."),
    admin: bool = typer.Option(False, "--admin", help="Give the admin role (admin page)."),
) -> None:
    """Add a user; the password is read from a prompt, or from stdin when piped."""
    store = _store(schema=False)
    store.migrate()
    users.check_name(name)
    if users.get(store, name) is not None:  # before asking for a password that cannot be used
        raise ConfigError(f"user {name!r} already exists")
    password = _read_password(prompt=True)
    users.check_password(password, name)
    user = users.add(store, name, password, role="admin" if admin else "viewer")
    typer.echo(f"added {user.role} {user.name}")


@users_app.command("passwd")
def users_passwd(name: str = typer.Argument(..., help="Login name.")) -> None:
    """Reset a user's password (prompt, or stdin when piped); ends every session of theirs."""
    store = _store()
    if users.get(store, name) is None:
        raise NotFound(f"unknown user {name!r}")
    password = _read_password(prompt=True)
    users.check_password(password, name)
    users.set_password(store, name, password)
    typer.echo(f"password of {name} reset; their sessions ended")


@users_app.command("role")
def users_role(
    name: str = typer.Argument(..., help="Login name."),
    role: str = typer.Argument(..., help="viewer or admin."),
) -> None:
    """Change a user's role; ends every session of theirs (the new role applies at their next login)."""
    user = users.set_role(_store(), name, role)
    typer.echo(f"{user.name} is now {user.role}; their sessions ended")


@users_app.command("disable")
def users_disable(name: str = typer.Argument(..., help="Login name.")) -> None:
    """Refuse a user's logins and end their sessions (their strategies and data stay)."""
    users.set_disabled(_store(), name, True)
    typer.echo(f"{name} disabled; their sessions ended")


@users_app.command("enable")
def users_enable(name: str = typer.Argument(..., help="Login name.")) -> None:
    """Let a disabled user log in again."""
    users.set_disabled(_store(), name, False)
    typer.echo(f"{name} enabled")


@users_app.command("remove")
def users_remove(
    name: str = typer.Argument(..., help="Login name."),
    force: bool = typer.Option(False, "--force", help="Also when some of their strategies are switched on."),
) -> None:
    """Delete a user with their strategies and ledger (refused while one of their strategies is on)."""
    n = users.remove(_store(), name, force=force)
    typer.echo(f"removed {name} and {n} strateg{'y' if n == 1 else 'ies'}")


@users_app.command("list")
def users_list() -> None:
    """List users and their roles."""
    store = _store()
    counts = {c["user"]: c for c in strategies.counts_for_admin(store)}
    typer.echo(f"{'name':<24} {'role':<7} {'state':<8} strategies")
    for u in users.list(store):
        c = counts.get(u.name, {"total": 0, "on": 0})
        state = "disabled" if u.disabled else "enabled"
        typer.echo(f"{u.name:<24} {u.role:<7} {state:<8} {c['total']} ({c['on']} on)")


@strategies_app.command("list")
def strategies_list(user: str = typer.Option(None, "--user", help="Only this user's strategies.")) -> None:
    """List strategies: id, owner, class, stream, switch, daemon state, mode (paper/live), version."""
    store = _store()
    names = {u.id: u.name for u in users.list(store)}
    rows = strategies.list(store, user) if user else strategies.list_all_for_daemon(store, active_only=False)
    typer.echo(f"{'id':>5} {'user':<16} {'name':<28} {'class':<32} {'stream':<16} {'on':<3} {'state':<7} {'mode':<5} "
               "ver params")  # fmt: skip
    for r in rows:
        stream = f"{r.symbol}/{r.interval}"
        typer.echo(
            f"{r.id:>5} {names.get(r.user_id, '?'):<16} {r.name:<28} {r.class_path:<32} {stream:<16} "
            f"{'yes' if r.active else 'no':<3} {r.state:<7} {r.mode:<5} {r.version:>3} {r.params}"
        )


def _switch(strategy_id: int, active: bool) -> None:
    rec = strategies.set_active_as_operator(_store(), strategy_id, active)
    typer.echo(f"strategy {rec.id} ({rec.name}) {'activated' if active else 'deactivated'}, version {rec.version}")


@strategies_app.command("activate")
def strategies_activate(strategy_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Switch a strategy on (clears a pause); the daemon picks it up within seconds."""
    _switch(strategy_id, True)


@strategies_app.command("deactivate")
def strategies_deactivate(strategy_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Switch a strategy off; the daemon stops evaluating it within seconds (its position stays)."""
    _switch(strategy_id, False)


def trades_cmd(
    user: str = typer.Option(..., "--user", help="Whose trades."),
    strategy: int = typer.Option(None, "--strategy", help="Only this strategy id."),
    as_json: bool = typer.Option(False, "--json", help="JSON records instead of a table."),
) -> None:
    """A user's trades, an open position last (exit_reason "open"): the backtest's .trades columns plus strategy_id."""
    df = trades.list(_store(), user, strategy)
    if as_json:
        typer.echo(df.to_json(orient="records", date_format="iso", date_unit="ms"))
    elif df.empty:
        typer.echo(f"no trades for {user}")
    else:
        typer.echo(df.to_string(index=False))


def _read_secret_line(what: str) -> str:
    if sys.stdin.isatty():
        return typer.prompt(what, hide_input=True)
    line = sys.stdin.readline().strip()
    if not line:
        raise ConfigError(f"no {what.lower()} on stdin (give the API key, then the secret, one per line)")
    return line


@keys_app.command("set")
def keys_set(
    user: str = typer.Option(..., "--user", help="Whose key."),
    ed25519_key: str = typer.Option(
        None, "--ed25519-key", help="An Ed25519 private key (PEM file); stdin then gives only the API key."
    ),
) -> None:
    """Store a user's exchange key, encrypted: API key then secret as two lines on stdin (or prompts)."""
    api_key = _read_secret_line("API key")
    if ed25519_key:
        try:
            secret, kind = Path(ed25519_key).expanduser().read_text(), "ed25519"
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--ed25519-key: cannot read {ed25519_key!r}: {getattr(exc, 'strerror', exc)}") from None
    else:
        secret, kind = _read_secret_line("Secret"), "hmac"
    store = _store()
    store.migrate()
    info = keys.set(store, user, api_key, secret, kind)
    typer.echo(f"stored {info.kind} key ...{info.key_tail} for {info.user}")


@keys_app.command("list")
def keys_list() -> None:
    """Every stored key: user, kind, last 4 characters (never the key or secret)."""
    typer.echo(f"{'user':<24} {'kind':<8} {'key':<8} updated (UTC)")
    for k in keys.list(_store()):
        typer.echo(f"{k.user:<24} {k.kind:<8} ...{k.key_tail:<5} {k.updated_at:%Y-%m-%d %H:%M}")


@keys_app.command("remove")
def keys_remove(user: str = typer.Option(..., "--user", help="Whose key.")) -> None:
    """Delete a user's stored key."""
    keys.remove(_store(), user)
    typer.echo(f"removed the key of {user}")


@keys_app.command("genkey")
def keys_genkey() -> None:
    """Print a new master key for KIT_SECRETS_KEY (keep it outside the database and the repository)."""
    typer.echo(keys.generate_master_key())


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Create or upgrade the schema (alembic upgrade)."""
    store = _store(schema=False)
    before = store.current_revision()
    store.migrate(revision)
    typer.echo(f"database {store!r}: {before or 'empty'} -> {store.current_revision()}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision."""
    store = _store(schema=False)
    typer.echo(store.current_revision() or "empty")


limits_app = typer.Typer(help="Risk limits of live trading, per user and per strategy.", no_args_is_help=True)


@limits_app.command("set")
def limits_set(
    user: str = typer.Option(..., "--user", help="Whose limits."),
    strategy: str = typer.Option(None, "--strategy", help="A strategy's name: its limits, not the user's."),
    max_order_notional: float = typer.Option(None, "--max-order-notional", help="Strategy: one order, quote."),
    max_position_notional: float = typer.Option(None, "--max-position-notional", help="Strategy: its position."),
    max_exposure: float = typer.Option(None, "--max-exposure", help="User: all live positions together, quote."),
    max_daily_loss: float = typer.Option(None, "--max-daily-loss", help="User: loss since 00:00 UTC (halts)."),
    clear: list[str] = typer.Option([], "--clear", help="A limit to remove, e.g. --clear max-exposure."),
) -> None:
    """Set live risk limits (a limit not named keeps its value). The daemon applies them within seconds."""
    given = {"max_order_notional": max_order_notional, "max_position_notional": max_position_notional,
             "max_exposure": max_exposure, "max_daily_loss": max_daily_loss}  # fmt: skip
    limits: dict[str, float | None] = {k: v for k, v in given.items() if v is not None}
    for name in clear:
        limits[name.replace("-", "_")] = None
    if not limits:
        raise InputError("name a limit to set (e.g. --max-order-notional 500) or to --clear")
    row = live.set_limits(_store(), user, strategy, **limits)
    shown = ", ".join(f"{k}={getattr(row, k)}" for k in live.LIMIT_NAMES if getattr(row, k) is not None)
    typer.echo(f"limits of {user}{'/' + strategy if strategy else ''}: {shown or 'none'}")


@limits_app.command("list")
def limits_list() -> None:
    """Every user's and strategy's live limits, and who is halted."""
    store = _store()
    names = {u.id: u.name for u in users.list(store)}
    for r in live.limits_for_daemon(store):
        shown = ", ".join(f"{k}={getattr(r, k)}" for k in live.LIMIT_NAMES if getattr(r, k) is not None)
        scope = names.get(r.user_id, str(r.user_id)) + (f" strategy {r.strategy_id}" if r.strategy_id else "")
        halt = f"  HALTED: {r.halt_reason}" if r.halted else ""
        typer.echo(f"{scope:<32} {shown or 'no limits'}{halt}")


def _who(store: Store, user: str | None) -> list[str]:
    """``user``, or every user's name."""
    return [user] if user else [u.name for u in users.list(store)]


def halt_cmd(
    user: str = typer.Option(None, "--user", help="Whose live trading to halt (default: every user's)."),
    reason: str = typer.Option("halted by the operator", "--reason", help="Recorded with the halt."),
) -> None:
    """Halt live trading: no new live order is placed until `kit resume`."""
    store = _store()
    for name in _who(store, user):
        live.set_halt(store, name, True, reason)
        typer.echo(f"halted live trading of {name}")


def resume_cmd(
    user: str = typer.Option(None, "--user", help="Whose live trading to resume (default: every user's)."),
) -> None:
    """Resume halted live trading."""
    store = _store()
    for name in _who(store, user):
        live.set_halt(store, name, False)
        typer.echo(f"resumed live trading of {name}")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(keys_app, name="keys")
    app.add_typer(strategies_app, name="strategies")
    app.command("trades")(trades_cmd)
    app.add_typer(db_app, name="db")
    app.add_typer(limits_app, name="limits")
    app.command("halt")(halt_cmd)
    app.command("resume")(resume_cmd)
