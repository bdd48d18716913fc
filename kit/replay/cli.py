"""``kit replay``: paper-trade a strategy over a candle file through the live path, optionally checked
against the backtest."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_cmd)


def _parse_params(items: list[str]) -> dict:
    import json

    from kit.errors import ConfigError

    out: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def replay_cmd(
    data: str = typer.Argument(
        ..., help="Candle file SYMBOL_INTERVAL_START_END.csv.gz (symbol, interval from the name)."
    ),
    strategy: str = typer.Option(
        "kit.strategies:EmaCross", "--strategy", "-s", help="Strategy class as module:Class, or a ready one's name."
    ),
    param: list[str] = typer.Option(None, "--param", "-p", help="Strategy parameter NAME=VALUE (repeatable)."),
    rows: int = typer.Option(0, "--rows", help="Replay only the first N candles (0: all)."),
    skip: int = typer.Option(0, "--skip", help="Skip the first N candles of the file."),
    fees: float = typer.Option(None, "--fees", help="Fee fraction per fill (default 0.001)."),
    slippage: float = typer.Option(None, "--slippage", help="Slippage fraction (default 0)."),
    size: float = typer.Option(None, "--size", help="Position size (see --size-type)."),
    size_type: str = typer.Option(None, "--size-type", help="percent (of cash), value (quote) or amount (base)."),
    init_cash: float = typer.Option(None, "--init-cash", help="Starting cash (default 10000)."),
    fill: str = typer.Option(None, "--fill", help="close (default: at the signal's close) or next_open."),
    check: bool = typer.Option(False, "--check", help="Also backtest with vectorbt and compare the trades."),
    as_json: bool = typer.Option(False, "--json", help="Print the trades as JSON lines."),
) -> None:
    """Replay candles through simulator -> feed -> engine -> live rules -> paper broker; print the trades.

    With --check the same strategy is backtested on the same candles and the trades compared
    (count, times, prices to 1e-9, P&L to 1e-6); a mismatch exits with status 1.
    """
    import json
    import sys
    from pathlib import Path

    from kit.errors import ConfigError
    from kit.market.files import parse_name, read_candles
    from kit.replay import replay
    from kit.strategies import ALL
    from kit.strategy import Strategy

    p = Path(data)
    named = parse_name(p)
    if not p.is_file() or named is None:
        raise ConfigError(f"{data!r} is not a candle file named like BTCUSDT_1m_20250520_20250818.csv.gz")
    klass = ALL[strategy] if strategy in ALL else Strategy.load(strategy)
    strat = klass(**_parse_params(param))  # a bad class path or parameter is an InputError: one line
    frame = read_candles(p)
    if skip < 0 or rows < 0:
        raise ConfigError("--skip and --rows must be >= 0")
    frame = frame.iloc[skip : skip + rows] if rows else frame.iloc[skip:]
    kw = {
        "fees": fees,
        "slippage": slippage,
        "size": size,
        "size_type": size_type,
        "init_cash": init_cash,
        "fill": fill,
    }
    try:
        run = replay(strat, frame, symbol=named.symbol, interval=named.interval, **kw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    trades = run[0].trades
    if as_json:
        for rec in trades.to_dict("records"):
            rec["entry_time"] = rec["entry_time"].isoformat()
            rec["exit_time"] = rec["exit_time"].isoformat()
            rec["duration"] = rec["duration"].isoformat()
            print(json.dumps(rec))
    else:
        print(trades.to_string(index=False) if len(trades) else "(no closed trades)")
    print(
        f"{strat!r}: {run.candles} candles of {run.symbol} {run.interval} in {run.seconds:.1f} s "
        f"({run.candles_per_second:,.0f}/s), {len(trades)} trades, P&L {trades['pnl'].sum():+.2f}",
        file=sys.stderr,
    )
    if check:
        from kit.backtest import run as backtest
        from kit.replay._replay import own_streams

        streams = own_streams(strat, frame, named.symbol, named.interval)  # as the replay served them
        want = backtest(strat, frame, streams=streams, **kw).trades
        problems = compare_trades(trades, want)
        if problems:
            print("PARITY FAILED: " + "; ".join(problems), file=sys.stderr)
            raise typer.Exit(1)
        print(f"parity OK: {len(want)} trades equal to the backtest's", file=sys.stderr)


def compare_trades(got: object, want: object) -> list[str]:
    """Differences between two ``.trades`` frames beyond the parity tolerances (empty: equal)."""
    import numpy as np

    g, w = got, want  # pandas frames
    if len(g) != len(w):  # type: ignore[arg-type]
        return [f"{len(g)} trades vs {len(w)}"]  # type: ignore[arg-type]
    out = []
    for col in ("entry_time", "exit_time", "side", "exit_reason"):
        if not (g[col].to_numpy() == w[col].to_numpy()).all():  # type: ignore[index]
            out.append(f"{col} differs")
    for col, rtol, atol in (("entry_price", 1e-9, 0), ("exit_price", 1e-9, 0), ("pnl", 0, 1e-6)):
        if not np.allclose(g[col].to_numpy(), w[col].to_numpy(), rtol=rtol, atol=atol):  # type: ignore[index]
            out.append(f"{col} differs")
    return out
