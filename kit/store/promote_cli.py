"""``kit promote``: :func:`kit.promote` from a shell, for a strategy class in an importable module.

    kit promote kit.strategies:EmaCross --user alice --symbol BTCUSDT --interval 1h --param fast=8

Parameters are ``--param name=value`` (the value read as JSON when it parses, else as text).
Every check of :func:`kit.promote` applies, the live-parity check included; a refusal is one
``error:`` line and exit status 2.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from kit.errors import InputError


def _params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--param {pair!r} must look like name=value")
        try:
            out[name.strip()] = json.loads(text)
        except ValueError:
            out[name.strip()] = text
    return out


def promote_cmd(
    path: str = typer.Argument(..., metavar="MODULE:CLASS", help="The strategy class, e.g. kit.strategies:EmaCross."),
    user: str = typer.Option(..., "--user", help="The owner."),
    symbol: str = typer.Option(..., "--symbol", help="e.g. BTCUSDT."),
    interval: str = typer.Option(..., "--interval", help="e.g. 1m, 1h."),
    param: list[str] = typer.Option([], "--param", help="A parameter as name=value (repeatable)."),
    name: str = typer.Option(None, "--name", help="The strategy's name (default Class:SYMBOL:interval)."),
    fees: float = typer.Option(None, "--fees", help="Fee per fill, a fraction (default 0.001)."),
    slippage: float = typer.Option(None, "--slippage", help="Slippage per fill, a fraction."),
    size: float = typer.Option(None, "--size", help="Order size, in size-type units."),
    size_type: str = typer.Option(None, "--size-type", help="percent, value or amount."),
    init_cash: float = typer.Option(None, "--init-cash", help="Starting cash (paper)."),
    fill: str = typer.Option(None, "--fill", help="close or next_open."),
    start: str = typer.Option(None, "--start", help="First candle it may trade (default: now)."),
    data: str = typer.Option(None, "--data", help="A candle file to check it on (default: the stream's latest)."),
    mode: str = typer.Option("paper", "--mode", help="paper or live."),
    allocation: float = typer.Option(None, "--allocation", help="Live: the quote amount it trades with."),
) -> None:
    """Check a strategy as the daemon will run it and make it an active strategy of a user."""
    # pandas, the store and the strategy layer: kept out of every other command's start-up.
    from kit.market.files import read_candles
    from kit.store.promotion import promote
    from kit.strategy import Strategy

    strategy = Strategy.from_dict({"path": path, "params": _params(param)})
    frame = read_candles(data) if data else None
    rec = promote(
        strategy, user=user, symbol=symbol, interval=interval, name=name, fees=fees, slippage=slippage, size=size,
        size_type=size_type, init_cash=init_cash, fill=fill, start=start, data=frame, mode=mode,
        allocation=allocation,
    )  # fmt: skip
    typer.echo(f"promoted {rec.name} (id {rec.id}, version {rec.version}): {strategy!r} on {rec.symbol} {rec.interval}")


def register(app: typer.Typer) -> None:
    app.command("promote")(promote_cmd)
