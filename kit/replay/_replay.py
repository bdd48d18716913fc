"""The replay harness: recorded candles through the whole live path, trades out.

    ExchangeSimulator(speed="max")  ->  Feed (WebSocket)  ->  IndicatorEngine (incremental)
        ->  LiveEvaluator (strategy.signals on the last `lookback` rows)  ->  PaperBroker

This is the daemon's path minus the database. :func:`replay` returns, per strategy, the same
``.trades`` frame as :func:`kit.backtest.run` on the same data, which is what the parity test
checks trade by trade.

How the two paths see the same candles, outages included:

* The simulator starts its clock at the first candle of ``data`` and serves exactly the rows of
  ``data``; a real outage is a missing row, and the feed (without ``gaps=True``) yields nothing
  for it. The backtest likewise sees only the rows that exist.
* The engine's indicators are updated once per closed candle from the first one, as the batch
  functions run over the frame's rows from the first one; kit.indicators guarantees the two
  agree. The engine is asked to remember every row, so no indicator is seeded from a window.
* Each closed row is evaluated and handed to the paper broker (also rows without a signal: stops
  are checked on every candle), with the fill model the backtest hands to vectorbt.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kit.broker import Fill, FillModel, PaperBroker, Trade, resolve_model, trades_frame
from kit.errors import ConfigError, DataError
from kit.market.files import parse_name, read_candles
from kit.market.intervals import interval_for_ms
from kit.strategy import Signal, Strategy, check_frame
from kit.strategy._frame import open_times_ms


@dataclass
class ReplayResult:
    """What one strategy did during a replay: ``trades`` (the backtest's columns), ``fills``,
    ``signals`` (every non-empty :class:`~kit.strategy.Signal`), and the final ``broker``."""

    strategy: Strategy
    broker: PaperBroker
    fills: list[Fill] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)

    @property
    def trades(self) -> pd.DataFrame:
        """The backtest's ``.trades`` frame: every trade, an open position last (``exit_reason="open"``)."""
        return trades_frame(self.trade_records)

    @property
    def trade_records(self) -> list[Trade]:
        still_open = self.broker.open_trade()
        return [*self.broker.trades, *([still_open] if still_open is not None else [])]

    def __repr__(self) -> str:
        return f"<ReplayResult {self.strategy!r}: {len(self.broker.trades)} trades, {len(self.fills)} fills>"


@dataclass
class ReplayRun:
    """A whole replay: one :class:`ReplayResult` per strategy, and the run's counters."""

    results: list[ReplayResult]
    symbol: str
    interval: str
    candles: int
    seconds: float

    @property
    def candles_per_second(self) -> float:
        return self.candles / self.seconds if self.seconds > 0 else math.inf

    def __getitem__(self, i: int) -> ReplayResult:
        return self.results[i]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self):
        return iter(self.results)


def infer_interval(index: pd.DatetimeIndex) -> str:
    """The Binance interval of a frame's rows (their most common spacing)."""
    t = open_times_ms(index)
    if len(t) < 2:
        raise DataError("cannot infer the interval of fewer than 2 candles; pass interval=")
    d = pd.Series(t[1:] - t[:-1]).mode().iloc[0]
    itv = interval_for_ms(int(d))
    if itv is None:
        raise DataError(f"candle spacing of {int(d)} ms is not a Binance interval; pass interval=")
    return itv


def _load(data: Any, symbol: str | None, interval: str | None) -> tuple[pd.DataFrame, str, str]:
    if isinstance(data, str | Path):
        named = parse_name(data)
        frame = read_candles(data)
        if named is not None:
            symbol = symbol or named.symbol
            interval = interval or named.interval
        data = frame
    check_frame(data)
    interval = interval or infer_interval(data.index)
    return data, (symbol or "BTCUSDT").upper(), interval


async def replay_async(
    strategies: Strategy | Sequence[Strategy],
    data: pd.DataFrame | str | Path,
    *,
    symbol: str | None = None,
    interval: str | None = None,
    model: FillModel | None = None,
    fees: float | None = None,
    slippage: float | None = None,
    size: float | None = None,
    size_type: str | None = None,
    init_cash: float | None = None,
    fill: str | None = None,
    timeout: float | None = None,
) -> ReplayRun:
    """:func:`replay` as a coroutine (for code already inside an event loop)."""
    from kit.engine import IndicatorEngine
    from kit.exchange import ExchangeSimulator
    from kit.feed import Feed

    strats = [strategies] if isinstance(strategies, Strategy) else list(strategies)
    if not strats or not all(isinstance(s, Strategy) for s in strats):
        raise ConfigError("replay() needs a Strategy instance or a list of them")
    frame, sym, itv = _load(data, symbol, interval)
    m = resolve_model(
        model, fees=fees, slippage=slippage, size=size, size_type=size_type, init_cash=init_cash, fill=fill
    )
    t_all = open_times_ms(frame.index)
    first, last, n = int(t_all[0]), int(t_all[-1]), len(frame)
    base = frame[["open", "high", "low", "close", "volume"]]

    evaluators = [s.live() for s in strats]
    brokers = [PaperBroker.for_strategy(s, m) for s in strats]
    results = [ReplayResult(s, b) for s, b in zip(strats, brokers, strict=True)]
    specs: dict[Any, None] = {}
    for s in strats:
        for sp in s.specs:
            specs.setdefault(sp, None)

    def on_row(row: Any) -> None:
        candle = row.candle
        for ev, br, res in zip(evaluators, brokers, results, strict=True):
            sig = ev.on_row(row)
            if sig is not None:
                res.signals.append(sig)
            fills = br.on_bar(candle, sig)
            if fills:
                res.fills.extend(fills)

    seen = 0
    t0 = time.perf_counter()
    sim = ExchangeSimulator(data={(sym, itv): base}, speed="max", start=first, port=0, weight_limit=None)
    async with sim, Feed(sim.ws_url, sim.rest_url) as feed:
        # remember every row (indicators warm from the first candle) and never let the harness
        # be skipped ahead as a laggard: a replay must see every closed candle
        engine = IndicatorEngine(feed, keep=n + 10, max_queue=n + 10)
        try:
            sub = engine.subscribe(sym, itv, specs=list(specs), history=n)
            async with sub:
                last_t = -1
                for row in sub.history:
                    if row.closed and row.candle[0] > last_t:
                        on_row(row)
                        seen += 1
                        last_t = row.candle[0]
                if last_t < last:
                    async with asyncio.timeout(timeout):
                        async for row in sub:
                            if not row.closed:
                                continue
                            on_row(row)
                            seen += 1
                            if row.candle[0] >= last:
                                break
        finally:
            await engine.close()
    elapsed = time.perf_counter() - t0
    dropped = sub.dropped
    if seen != n or dropped:
        raise DataError(
            f"replay saw {seen} closed candles of {n} ({dropped} dropped): the live path lost or added candles"
        )
    return ReplayRun(results, sym, itv, seen, elapsed)


def replay(
    strategies: Strategy | Sequence[Strategy],
    data: pd.DataFrame | str | Path,
    *,
    symbol: str | None = None,
    interval: str | None = None,
    model: FillModel | None = None,
    fees: float | None = None,
    slippage: float | None = None,
    size: float | None = None,
    size_type: str | None = None,
    init_cash: float | None = None,
    fill: str | None = None,
    timeout: float | None = None,
) -> ReplayRun:
    """Replay recorded candles through the live path and paper-trade ``strategies`` on them.

    ``data`` is a candle frame or a candle file (``SYMBOL_INTERVAL_START_END.csv.gz``: symbol
    and interval are read from the name). The fill model arguments are those of
    :func:`kit.backtest.run`. Returns a :class:`ReplayRun`: ``run[i].trades`` is strategy ``i``'s
    trades frame, equal to ``kit.backtest.run(strategy, data, ...).trades``.

    Works from plain scripts and from notebooks (where an event loop is already running, the
    replay runs on its own loop in a worker thread). In async code use :func:`replay_async`.
    """
    coro = replay_async(
        strategies, data, symbol=symbol, interval=interval, model=model, fees=fees, slippage=slippage,
        size=size, size_type=size_type, init_cash=init_cash, fill=fill, timeout=timeout,
    )  # fmt: skip
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["out"] = asyncio.run(coro)
        except BaseException as exc:
            box["err"] = exc

    th = threading.Thread(target=work, name="kit-replay", daemon=True)
    th.start()
    th.join()
    if "err" in box:
        raise box["err"]
    return box["out"]
