"""``kit exchange``: serve the simulator until Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import sys

import typer

from kit.settings import Settings


def register(app: typer.Typer) -> None:
    app.command("exchange")(exchange)


def exchange(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(9400, "--port", min=0, max=65535, help="Port for REST and WebSocket (0 = any free port)."),
    data: str = typer.Option(None, "--data", help="Folder or file of candle files (default KIT_REPLAY_DATA)."),
    speed: str = typer.Option("600", "--speed", help="Simulated seconds per real second, or 'max'."),
    start: str = typer.Option(
        None, "--start", help="Simulated start: ISO time or ms (default: data start + 1000 candles)."
    ),
    weight_limit: int = typer.Option(6000, "--weight-limit", help="REST request weight per minute per IP (0: none)."),
    max_connection_age: float = typer.Option(
        86400.0, "--max-connection-age", help="Real seconds before a WebSocket connection is dropped (Binance: 24 h)."
    ),
    update_every: float = typer.Option(2.0, "--update-every", help="Simulated seconds between forming updates."),
    symbols: str = typer.Option(None, "--symbols", help="Comma-separated symbols to serve (default: all)."),
    allowed_host: list[str] = typer.Option(
        None, "--allowed-host", help="A Host name to answer besides loopback and --host (repeatable)."
    ),
    account: list[str] = typer.Option(
        None,
        "--account",
        help="A trading account KEY:<secret>:USDT=10000[,BTC=0.5...] (repeatable; --accounts keeps secrets out of ps).",
    ),
    accounts: str = typer.Option(
        None, "--accounts", help="JSON file: a list of {key, secret | ed25519_public_key, balances, commission}."
    ),
    half_spread_bps: float = typer.Option(0.0, "--half-spread-bps", help="Added to buys, taken from sells that take."),
    volume_share: float = typer.Option(
        0.1, "--volume-share", help="Share of a candle's volume a resting order may fill per candle (0 < x <= 1)."
    ),
    control_token: str = typer.Option(
        None,
        "--control-token",
        help="Bearer token the /_sim controls require (KIT_SIM_CONTROL_TOKEN keeps it out of ps). "
        "Without one, only loopback clients may use them.",
    ),
) -> None:
    """Replay candles over Binance's spot REST + WebSocket protocol on one port.

    Controls (POST, for tests driving a separate process; loopback clients only unless a control
    token is set): /_sim/pause /_sim/resume /_sim/speed?x=60 (0.01 to 1e7, or max)
    /_sim/fault?kind=drop|stall|malformed|duplicate|reorder with n=1..10000, seconds=0..3600 (0 ends a
    stall), replace=true|false; trading faults kind=order_timeout|order_unknown|reject_order (the next n
    orders: accepted but the answer dropped, accepted but answered -1007, refused -2010),
    kind=drop_user_stream (cut every user data subscriber) and kind=skew
    with ms=-86400000..86400000 (the clock signed timestamps are checked against); /_sim/stats also
    answers GET.
    """
    # Deferred: `kit --help` imports every command module; the simulator loads when it is served.
    from kit.exchange._accounts import load_accounts, parse_account
    from kit.exchange.simulator import ExchangeSimulator

    settings = Settings.from_env()
    start_value: int | str | None = start
    if start is not None and start.isdigit():
        start_value = int(start)
    sim = ExchangeSimulator(
        data=data or settings.replay_data,
        speed=speed,
        start=start_value,
        host=host,
        port=port,
        weight_limit=weight_limit or None,
        max_connection_age=max_connection_age,
        update_every=update_every,
        symbols=[s.strip() for s in symbols.split(",") if s.strip()] if symbols else None,
        allowed_hosts=[*settings.allowed_host_names, *(allowed_host or [])],
        control_token=control_token or settings.sim_control_token or None,
        accounts=[*(parse_account(a) for a in account or []), *(load_accounts(accounts) if accounts else [])],
        half_spread_bps=half_spread_bps,
        volume_share=volume_share,
    )

    async def main() -> None:
        async with sim:
            await sim.serve_forever()

    log = logging.getLogger("kit.exchange")
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        log.info("stopped")
    except Exception as exc:
        # Crash-only: the dispatcher died (already logged with its traceback); a live process
        # with a dead clock would answer 500s forever, so exit and let the supervisor see it.
        log.critical("exchange simulator failed: %s: %s; exiting", type(exc).__name__, exc)
        sys.exit(1)
