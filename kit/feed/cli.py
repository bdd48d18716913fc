"""``kit feed``: print live candles from the exchange until Ctrl-C."""

from __future__ import annotations

import asyncio
import sys
import time

import typer

from kit.errors import ConfigError, ExchangeError
from kit.feed import Feed, GapEvent, KlineEvent
from kit.market.intervals import validate_interval, validate_symbol


def register(app: typer.Typer) -> None:
    app.command("feed")(feed)


def feed(
    symbol: str = typer.Argument(..., help="Symbol, e.g. BTCUSDT; several as BTCUSDT,ETHUSDT."),
    interval: str = typer.Argument("1m", help="Kline interval: 1s 1m 3m 5m 15m 30m 1h ... 1w."),
    history: int = typer.Option(0, "--history", "-n", help="First print the last N closed candles."),
    forming: bool = typer.Option(False, "--forming", help="Also print forming (not yet closed) updates."),
    count: int = typer.Option(0, "--count", help="Stop after this many closed candles (0: run until Ctrl-C)."),
    ws_url: str = typer.Option(None, "--ws-url", help="WebSocket base (default KIT_EXCHANGE_WS_URL)."),
    rest_url: str = typer.Option(None, "--rest-url", help="REST base (default KIT_EXCHANGE_URL)."),
) -> None:
    """Print one line per closed candle (and gaps: real outages) from the shared feed.

    Connects to the exchange named by KIT_EXCHANGE_URL (the simulator started by
    `kit exchange` by default), survives disconnects and never skips or repeats a closed candle.
    """
    symbols = [validate_symbol(s) for s in symbol.split(",") if s.strip()]
    if not symbols:
        raise ConfigError("give at least one symbol, e.g. BTCUSDT")
    validate_interval(interval)
    if history < 0 or count < 0:
        raise ConfigError("--history and --count must be >= 0")
    f = Feed(ws_url, rest_url)
    _check_reachable(f)

    async def one(sym: str, done: asyncio.Event, seen: list[int]) -> None:
        async with f.subscribe(sym, interval, history=history, gaps=True) as sub:
            async for ev in sub:
                if ev.is_gap or ev.closed or forming:
                    print(format_event(ev), flush=True)
                if ev.closed:
                    seen[0] += 1
                    if count and seen[0] >= count:
                        done.set()
                        return

    async def main() -> None:
        async with f:
            done = asyncio.Event()
            seen = [0]
            tasks = [asyncio.create_task(one(s, done, seen)) for s in symbols]
            waiter = asyncio.create_task(done.wait())
            finished, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
            for t in [*tasks, waiter]:
                t.cancel()
            for t in finished:
                if t is not waiter and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)


def format_event(ev: KlineEvent | GapEvent) -> str:
    """One line for a KlineEvent or GapEvent: time (UTC), symbol, interval, OHLCV."""

    def ts(ms: int) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))

    if isinstance(ev, GapEvent):
        return f"{ts(ev.start_ms)} {ev.symbol} {ev.interval} GAP until {ts(ev.end_ms)} (exchange has no candles)"
    c = ev.candle
    state = "closed" if ev.closed else "forming"
    return (
        f"{ts(c.open_time)} {ev.symbol} {ev.interval} o={c.open:.8g} h={c.high:.8g} l={c.low:.8g} "
        f"c={c.close:.8g} v={c.volume:.8g} {state}"
    )


def _check_reachable(f: Feed) -> None:
    """Fail with one line if nothing answers at the REST URL (the feed itself would retry forever)."""
    try:
        f.rest.server_time()
    except ExchangeError as exc:
        hint = (
            " (start the simulator with `kit exchange`)" if "127.0.0.1" in str(exc) or "localhost" in str(exc) else ""
        )
        raise ExchangeError(f"{exc}{hint}") from None
