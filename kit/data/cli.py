"""``kit backfill``: fill the local candle cache from the exchange, with progress."""

from __future__ import annotations

import pandas as pd
import typer

from kit.data import gaps, load


def register(app: typer.Typer) -> None:
    app.command("backfill")(backfill)


def backfill(
    symbol: str = typer.Argument(..., help="Symbol, e.g. BTCUSDT."),
    interval: str = typer.Argument(..., help="Kline interval: 1m 5m 15m 1h 4h 1d ..."),
    start: str = typer.Option(..., "--start", help="First open time, UTC (e.g. 2025-06-01 or 2025-06-01T12:00)."),
    end: str = typer.Option(None, "--end", help="End, exclusive, UTC (default: the exchange's last closed candle)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Load SYMBOL INTERVAL candles from --start to --end into the cache (data/cache).

    Uses the cache, the local candle files and finer intervals first; fetches the rest from
    KIT_EXCHANGE_URL. Real outages are reported, never filled.
    """
    frame = load(symbol, interval, start, end, progress=progress)  # finding nothing is a DataError
    holes = gaps(frame, interval)
    first, last = frame.index[0], frame.index[-1]
    print(
        f"{symbol.upper()} {interval}: {len(frame)} candles {first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC, "
        f"{len(holes)} real gap(s)"
    )
    for a, b in holes[:20]:
        lo, hi = pd.Timestamp(a, unit="ms", tz="UTC"), pd.Timestamp(b, unit="ms", tz="UTC")
        print(f"  gap {lo:%Y-%m-%d %H:%M} .. {hi:%Y-%m-%d %H:%M} (no candles on the exchange)")
