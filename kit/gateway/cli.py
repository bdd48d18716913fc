"""``kit gateway`` (the realtime API) and ``kit tokens`` (its API tokens)."""

from __future__ import annotations

import asyncio
import sys

import typer

from kit.feed import RestClient
from kit.gateway import _tokens
from kit.gateway._config import GatewayConfig
from kit.settings import Settings
from kit.store import Store

tokens_app = typer.Typer(help="API tokens of the gateway (stored hashed; shown once).", no_args_is_help=True)


def _store() -> Store:
    store = Store()
    store.migrate()
    return store


@tokens_app.command("create")
def tokens_create(
    user: str = typer.Option(..., "--user", help="The user the token acts for."),
    read_only: bool = typer.Option(
        False, "--read-only", help="Read only: market data and the user's own streams, no strategy switches."
    ),
) -> None:
    """Create a token and print it once (it is stored hashed and cannot be shown again)."""
    token, info = _tokens.create(_store(), user, read_only=read_only)
    typer.echo(token)
    typer.echo(f"token {info.prefix}... for {info.user} ({'+'.join(info.scopes)}): keep it secret", err=True)


@tokens_app.command("list")
def tokens_list(user: str = typer.Option(None, "--user", help="Only this user's tokens.")) -> None:
    """List tokens by prefix (never the tokens themselves)."""
    typer.echo(f"{'id':>4} {'prefix':<14} {'user':<20} {'scopes':<10} {'created':<20} revoked")
    for t in _tokens.list(_store(), user):
        access = "+".join(t.scopes)
        revoked = t.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if t.revoked_at else "-"
        typer.echo(f"{t.id:>4} {t.prefix:<14} {t.user:<20} {access:<10} {t.created_at:%Y-%m-%d %H:%M:%S}  {revoked}")


@tokens_app.command("revoke")
def tokens_revoke(key: str = typer.Argument(..., help="The token's id or prefix (see `kit tokens list`).")) -> None:
    """Revoke a token; the gateway closes its open sockets within seconds."""
    info = _tokens.revoke(_store(), key)
    typer.echo(f"revoked {info.prefix} of {info.user}")


def gateway(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0: every interface)."),
    port: int = typer.Option(None, "--port", help="Port (default KIT_GATEWAY_PORT or 9402)."),
    symbols: str = typer.Option("", "--symbols", help="Comma-separated symbols served (default: the exchange's)."),
    market_auth: str = typer.Option(
        "auto", "--market-auth", help="open | required | auto (required when bound beyond loopback)."
    ),
    allow_host: list[str] = typer.Option([], "--allow-host", help="Extra Host names accepted (repeatable)."),
    allow_origin: list[str] = typer.Option([], "--allow-origin", help="Extra browser origins (repeatable)."),
    max_queue: int = typer.Option(4096, "--max-queue", help="Messages a client may lag before it is closed (4008)."),
) -> None:
    """The shared feed and indicator engine as a realtime API: REST /api/v1, WebSocket /api/v1/ws."""
    # Deferred: `kit --help` imports every command module; the server loads when it is served.
    import uvicorn

    from kit.gateway.app import create_app  # FastAPI and Starlette, likewise

    s = Settings.from_env()
    if port is None:
        port = s.gateway_port
    served = tuple(x.strip().upper() for x in symbols.split(",") if x.strip())
    if not served:  # checked here so an unreachable exchange is one line, not a server traceback
        served = tuple(sorted(RestClient(s.exchange_url, max_retries=2).symbols()))
    cfg = GatewayConfig(
        host=host,
        port=port,
        rest_url=s.exchange_url,
        symbols=served,
        market_auth=market_auth,
        allowed_hosts=tuple(allow_host),
        allowed_origins=tuple(allow_origin),
        max_queue=max_queue,
    )
    app = create_app(cfg)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            ws="websockets-sansio",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=5,
        )
    )
    typer.echo(f"kit gateway on http://{host}:{port} (docs /docs, WebSocket /api/v1/ws, example /example)", err=True)

    gw = app.state.gateway

    async def run() -> None:
        # Crash-only: a stream source or a task that fails makes /ready fail and the process exit 1
        # (systemd or `kit up` restarts it; clients resume with `since`).
        task = asyncio.create_task(server.serve())
        while not task.done():
            await asyncio.sleep(0.5)
            if gw.failure is not None:
                server.should_exit = True
        await task

    asyncio.run(run())
    if gw.failure is not None:
        typer.echo(f"error: the gateway stopped: {gw.failure}", err=True)
        sys.exit(1)
    if not server.started:
        sys.exit(1)


def register(app: typer.Typer) -> None:
    app.command("gateway")(gateway)
    app.add_typer(tokens_app, name="tokens")
