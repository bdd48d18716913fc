"""``kit alerts``: users' alerts and webhook from a shell (:mod:`kit.store.alerts`).

    kit alerts add --user alice --symbol BTCUSDT --interval 1m --subject close --level 105000 --direction up
    kit alerts add --user alice --symbol ETHUSDT --interval 1h --subject ema_12 --other ema_26 --every
    kit alerts list --user alice          # the alerts, then the last fired ones
    kit alerts remove --user alice 3
    kit alerts webhook --user alice -     # the URL from stdin (kept out of the shell history)

A mistake (a bad indicator, symbol or URL) is one ``error:`` line and exit status 2. The webhook
URL is never printed back in full.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import typer

from kit.errors import InputError
from kit.store import alerts

# The store CLI's opening checks: the database answers and is migrated (one line otherwise).
from kit.store.cli import _store

alerts_app = typer.Typer(help="Alerts on price and indicator crossings, and the webhook they post to.",
                         no_args_is_help=True)  # fmt: skip


@alerts_app.command("add")
def alerts_add(
    user: str = typer.Option(..., "--user", help="Whose alert."),
    symbol: str = typer.Option(..., "--symbol", help="e.g. BTCUSDT."),
    interval: str = typer.Option(..., "--interval", help="e.g. 1m, 1h."),
    subject: str = typer.Option("close", "--subject", help="close, or an indicator: rsi_14, macd_12_26_9.hist."),
    level: float = typer.Option(None, "--level", help="The level to cross."),
    other: str = typer.Option(None, "--other", help="Or another indicator to cross."),
    direction: str = typer.Option("either", "--direction", help="up, down or either."),
    every: bool = typer.Option(False, "--every", help="Fire at every crossing (default: once, then off)."),
) -> None:
    """Add an alert; the daemon picks it up within seconds and fires it on candles closing after that."""
    a = alerts.add(_store(), user, symbol, interval, subject, level=level, other=other, direction=direction,
                   once=not every)  # fmt: skip
    typer.echo(f"alert {a.id}: {a.symbol}/{a.interval} {a.condition} ({'once' if a.once else 'every time'})")


@alerts_app.command("list")
def alerts_list(
    user: str = typer.Option(..., "--user", help="Whose alerts."),
    fired: int = typer.Option(20, "--fired", help="How many fired alerts to show (0: none)."),
) -> None:
    """A user's alerts, their webhook (masked) and the last fired alerts."""
    store = _store()
    rows = alerts.list(store, user)
    typer.echo(f"webhook: {alerts.webhook(store, user) or 'none'}")
    typer.echo(f"{'id':>5} {'stream':<16} {'on':<3} {'when':<10} condition")
    for a in rows:
        typer.echo(f"{a.id:>5} {a.symbol + '/' + a.interval:<16} {'yes' if a.active else 'no':<3} "
                   f"{'once' if a.once else 'every':<10} {a.condition}")  # fmt: skip
    if fired > 0:
        fires = alerts.fired(store, user, limit=fired)
        typer.echo(f"fired ({len(fires)}):" if fires else "fired: none")
        for f in fires:
            t = datetime.fromtimestamp(f.open_time / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            err = f" ({f.last_error})" if f.last_error and f.delivery != "delivered" else ""
            typer.echo(f"  alert {f.alert_id} {f.symbol}/{f.interval} {t} value {f.value:g} webhook {f.delivery}{err}")


@alerts_app.command("remove")
def alerts_remove(
    alert_id: int = typer.Argument(..., metavar="ID"),
    user: str = typer.Option(..., "--user", help="Whose alert."),
) -> None:
    """Delete an alert and its fired rows."""
    alerts.remove(_store(), user, alert_id)
    typer.echo(f"alert {alert_id} removed")


@alerts_app.command("webhook")
def alerts_webhook(
    url: str = typer.Argument(None, help="http(s) URL; '-' reads it from stdin (kept out of the shell history)."),
    user: str = typer.Option(..., "--user", help="Whose webhook."),
    remove: bool = typer.Option(False, "--remove", help="Remove the webhook."),
) -> None:
    """Set the URL fired alerts are POSTed to (JSON), or remove it."""
    if remove == (url is not None):
        raise InputError("give a URL (or '-' for stdin), or --remove")
    if url == "-":
        url = sys.stdin.readline().strip()
    masked = alerts.set_webhook(_store(), user, None if remove else url)
    typer.echo(f"webhook of {user}: {masked or 'removed'}")


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
