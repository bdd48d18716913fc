"""``kit users``, ``kit strategies``, ``kit trades``, ``kit db``: the store from a shell.

The shell is the operator's seat: ``kit strategies activate ID`` acts on any user's
strategy. Passwords come from a hidden prompt or from stdin (``echo pw | kit users add bob``),
never from the command line, where they would end up in the shell history and ``ps``.
"""

from __future__ import annotations

import sys

import typer

users_app = typer.Typer(help="Dashboard users (passwords stored argon2-hashed).", no_args_is_help=True)
strategies_app = typer.Typer(help="Promoted strategies the daemon runs.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema (Alembic).", no_args_is_help=True)


def _store():
    from kit.store import Store

    return Store()


def _read_password(prompt: bool) -> str:
    if sys.stdin.isatty() and prompt:
        return typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        from kit.errors import ConfigError

        raise ConfigError("no password given on stdin")
    return line


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="Login name."),
    admin: bool = typer.Option(False, "--admin", help="Give the admin role (admin page)."),
) -> None:
    """Add a user; the password is read from a prompt, or from stdin when piped."""
    from kit.store import users

    store = _store()
    store.migrate()
    user = users.add(store, name, _read_password(prompt=True), role="admin" if admin else "viewer")
    typer.echo(f"added {user.role} {user.name}")


@users_app.command("list")
def users_list() -> None:
    """List users and their roles."""
    from kit.store import strategies, users

    store = _store()
    counts = {c["user"]: c for c in strategies.counts_for_admin(store)}
    typer.echo(f"{'name':<24} {'role':<7} strategies")
    for u in users.list(store):
        c = counts.get(u.name, {"total": 0, "on": 0})
        typer.echo(f"{u.name:<24} {u.role:<7} {c['total']} ({c['on']} on)")


@strategies_app.command("list")
def strategies_list(user: str = typer.Option(None, "--user", help="Only this user's strategies.")) -> None:
    """List strategies: id, owner, class, stream, switch, daemon state, version."""
    from kit.store import strategies, users

    store = _store()
    names = {u.id: u.name for u in users.list(store)}
    rows = strategies.list(store, user) if user else strategies.list_all_for_daemon(store, active_only=False)
    typer.echo(f"{'id':>5} {'user':<16} {'name':<28} {'class':<32} {'stream':<16} {'on':<3} {'state':<7} ver params")
    for r in rows:
        stream = f"{r.symbol}/{r.interval}"
        typer.echo(
            f"{r.id:>5} {names.get(r.user_id, '?'):<16} {r.name:<28} {r.class_path:<32} {stream:<16} "
            f"{'yes' if r.active else 'no':<3} {r.state:<7} {r.version:>3} {r.params}"
        )


def _switch(strategy_id: int, active: bool) -> None:
    from kit.store import strategies

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
    from kit.store import trades

    df = trades.list(_store(), user, strategy)
    if as_json:
        typer.echo(df.to_json(orient="records", date_format="iso", date_unit="ms"))
    elif df.empty:
        typer.echo(f"no trades for {user}")
    else:
        typer.echo(df.to_string(index=False))


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Create or upgrade the schema (alembic upgrade)."""
    store = _store()
    before = store.current_revision()
    store.migrate(revision)
    typer.echo(f"database {store!r}: {before or 'empty'} -> {store.current_revision()}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision."""
    store = _store()
    typer.echo(store.current_revision() or "empty")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(strategies_app, name="strategies")
    app.command("trades")(trades_cmd)
    app.add_typer(db_app, name="db")
