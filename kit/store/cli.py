"""``kit users``, ``kit strategies``, ``kit trades``, ``kit keys``, ``kit db``: the store from a shell.

The shell is the operator's seat: ``kit strategies activate ID`` acts on any user's
strategy. Passwords come from a hidden prompt or from stdin (``echo pw | kit users add bob``),
never from the command line, where they would end up in the shell history and ``ps``; exchange
keys likewise (``printf '%s\\n%s\\n' "$KEY" "$SECRET" | kit keys set --user bob``).
"""

from __future__ import annotations

import sys

import typer

users_app = typer.Typer(help="Dashboard users (passwords stored argon2-hashed).", no_args_is_help=True)
strategies_app = typer.Typer(help="Promoted strategies the daemon runs.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema (Alembic).", no_args_is_help=True)
keys_app = typer.Typer(
    help="Users' exchange API keys, encrypted at rest with the master key KIT_SECRETS_KEY; never shown.",
    no_args_is_help=True,
)


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
    """List strategies: id, owner, class, stream, switch, daemon state, mode (paper/live), version."""
    from kit.store import strategies, users

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
    """A user's closed trades: the backtest's .trades columns plus strategy_id."""
    from kit.store import trades

    df = trades.list(_store(), user, strategy)
    if as_json:
        typer.echo(df.to_json(orient="records", date_format="iso", date_unit="ms"))
    elif df.empty:
        typer.echo(f"no trades for {user}")
    else:
        typer.echo(df.to_string(index=False))


def _read_line(label: str) -> str:
    """One secret line: a hidden prompt on a terminal, else the next line of stdin. Never echoed."""
    from kit.errors import ConfigError

    if sys.stdin.isatty():
        return typer.prompt(label, hide_input=True).strip()
    line = sys.stdin.readline().strip()
    if not line:
        raise ConfigError(f"no {label} given on stdin (the API key on the first line, the secret on the second)")
    return line


@keys_app.command("set")
def keys_set(
    user: str = typer.Option(..., "--user", help="Whose keys."),
    ed25519_key: str = typer.Option(
        None, "--ed25519-key", metavar="FILE", help="An Ed25519 private key (PEM) instead of an HMAC secret."
    ),
) -> None:
    """Store a user's API key and secret (two lines on stdin, or prompts), encrypted; replaces old ones."""
    from pathlib import Path

    from kit.errors import ConfigError
    from kit.store import keys

    api_key = _read_line("API key")
    if ed25519_key:
        path = Path(ed25519_key).expanduser()
        if not path.is_file():
            raise ConfigError(f"--ed25519-key: no file {ed25519_key!r}")
        secret, kind = path.read_text(errors="replace"), "ed25519"
    else:
        secret, kind = _read_line("API secret"), "hmac"
    keys.master_key()  # a missing master key fails before the database is touched
    store = _store()
    store.migrate()
    info = keys.set(store, user, api_key, secret, kind=kind)
    typer.echo(f"stored {info.kind} keys of {info.user} (API key {info.masked}), encrypted")


@keys_app.command("list")
def keys_list(user: str = typer.Option(None, "--user", help="Only this user.")) -> None:
    """Whose keys are stored: user, kind, the API key's last 4 characters, last change."""
    from kit.store import keys

    store = _store()
    if user:
        one = keys.get(store, user)
        rows = [one] if one else []
    else:
        rows = keys.list_as_operator(store)
    typer.echo(f"{'user':<24} {'kind':<8} {'api key':<10} updated (UTC)")
    for k in rows:
        typer.echo(f"{k.user:<24} {k.kind:<8} {k.masked:<10} {k.updated_at:%Y-%m-%d %H:%M}")


@keys_app.command("remove")
def keys_remove(user: str = typer.Option(..., "--user", help="Whose keys.")) -> None:
    """Delete a user's keys (their live strategies can no longer place orders)."""
    from kit.store import keys

    keys.remove(_store(), user)
    typer.echo(f"removed the exchange keys of {user}")


@keys_app.command("check")
def keys_check(user: str = typer.Option(..., "--user", help="Whose keys.")) -> None:
    """Check that a user's keys decrypt with this master key (shows only the last 4 characters)."""
    from kit.store import keys

    creds = keys.credentials_for_daemon(_store(), user)
    typer.echo(f"the {creds.kind} keys of {user} (API key ...{creds.api_key[-4:]}) decrypt with this master key")


@keys_app.command("master-key")
def keys_master_key() -> None:
    """Print a new random master key, for KIT_SECRETS_KEY (keep it outside the database and repository)."""
    from kit.store import keys

    typer.echo(keys.new_master_key())


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
    app.add_typer(keys_app, name="keys")
