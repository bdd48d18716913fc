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
* A strategy reading extra streams (``streams={"h1": frame_1h}``): the simulator serves every
  stream of every strategy, the one engine computes each stream's indicators once, and a
  :class:`~kit.engine.StreamJoin` per strategy hands each base row over with the others' latest
  closed rows, as the daemon does. A stream whose data ran out is no longer waited for.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kit.broker import Fill, FillModel, PaperBroker, Trade, resolve_model, trades_frame
from kit.errors import ConfigError, DataError
from kit.market.files import parse_name, read_candles
from kit.market.intervals import interval_for_ms, interval_ms
from kit.strategy import Signal, Strategy, check_frame
from kit.strategy._frame import open_times_ms
from kit.strategy._streams import resolve


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


StreamKey = tuple[str, str]
_COLS = ("open", "high", "low", "close", "volume")


def _extra_frames(
    strats: list[Strategy], streams: Mapping[Any, Any] | None, frame: pd.DataFrame, sym: str, itv: str
) -> tuple[list[dict[str, StreamKey]], dict[StreamKey, pd.DataFrame]]:
    """Per strategy its extra streams (alias -> key), and the frame of every key, from ``streams``
    (keyed by alias or by ``(symbol, interval)``).

    The simulator tells one story per symbol: a coarser interval of the base symbol is served
    aggregated from the base candles (:func:`kit.market.aggregate.resample`), so it is derived
    here too, and a frame given for it must be that aggregate.
    """
    from kit.market.aggregate import resample

    given: dict[Any, Any] = dict(streams or {})
    per: list[dict[str, StreamKey]] = []
    frames: dict[StreamKey, pd.DataFrame] = {}
    for s in strats:
        keys = resolve(s.streams, sym, itv)
        per.append(keys)
        for alias, key in keys.items():
            src = given.get(alias, given.get(key))
            if key[0] == sym:
                step, base_step = interval_ms(key[1]), interval_ms(itv)
                if key[1] == "1M" or step < base_step or step % base_step:
                    raise ConfigError(f"replay serves {sym} {key[1]} aggregated from the {itv} candles: stream "
                                      f"{alias!r} must be a whole multiple of {itv}")  # fmt: skip
                derived = resample(frame[list(_COLS)], itv, key[1])
                if src is not None:
                    got, _, _ = _load(src, key[0], key[1])
                    if not _same(got, derived):
                        raise ConfigError(
                            f"replay serves {sym} {key[1]} aggregated from the {itv} candles (one story per symbol, "
                            f"as the simulator and the exchange): the candles given for {alias!r} differ (other rows "
                            f"or values); backtest with streams={{{alias!r}: kit.market.aggregate.resample(data, "
                            f"{itv!r}, {key[1]!r})}} and leave it out here"
                        )
                frames[key] = derived
                continue
            if src is None:
                raise ConfigError(f"{type(s).__name__} reads stream {alias!r} ({key[0]} {key[1]}): pass its candles, "
                                  f"streams={{{alias!r}: frame}}")  # fmt: skip
            got, _, _ = _load(src, key[0], key[1])
            if key in frames and not _same(frames[key], got):
                raise ConfigError(f"two different frames given for stream {key[0]} {key[1]}")
            frames[key] = got
    return per, frames


def own_streams(strategy: Strategy, data: pd.DataFrame, symbol: str, interval: str) -> dict[str, pd.DataFrame]:
    """The extra streams of ``strategy`` on its own symbol, as the replay serves them: aggregated from
    ``data`` (what ``kit.backtest.run(..., streams=...)`` needs to see the replay's candles)."""
    from kit.market.aggregate import resample

    keys = resolve(strategy.streams, symbol.upper(), interval)
    return {alias: resample(data[list(_COLS)], interval, itv) for alias, (sym, itv) in keys.items()
            if sym == symbol.upper()}  # fmt: skip


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return a.index.equals(b.index) and all(np.array_equal(a[c].to_numpy(), b[c].to_numpy()) for c in _COLS)


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
    streams: Mapping[Any, Any] | None = None,
) -> ReplayRun:
    """:func:`replay` as a coroutine (for code already inside an event loop)."""
    from kit.engine import IndicatorEngine, StreamJoin
    from kit.exchange import ExchangeSimulator
    from kit.feed import Feed

    strats = [strategies] if isinstance(strategies, Strategy) else list(strategies)
    if not strats or not all(isinstance(s, Strategy) for s in strats):
        raise ConfigError("replay() needs a Strategy instance or a list of them")
    frame, sym, itv = _load(data, symbol, interval)
    m = resolve_model(
        model, fees=fees, slippage=slippage, size=size, size_type=size_type, init_cash=init_cash, fill=fill
    )
    extras, extra_frames = _extra_frames(strats, streams, frame, sym, itv)
    n = len(frame)
    cols = list(_COLS)
    data_by_key = {(sym, itv): frame[cols], **{k: f[cols] for k, f in extra_frames.items()}}
    # the simulator derives the base symbol's other intervals from its candles (see _extra_frames)
    served = {k: f for k, f in data_by_key.items() if k == (sym, itv) or k[0] != sym}
    start = min(int(open_times_ms(f.index)[0]) for f in served.values())
    last_open = {k: int(open_times_ms(f.index)[-1]) for k, f in extra_frames.items()}

    evaluators = [s.live() for s in strats]
    brokers = [PaperBroker.for_strategy(s, m) for s in strats]
    results = [ReplayResult(s, b) for s, b in zip(strats, brokers, strict=True)]
    joins = [StreamJoin((sym, itv), keys) for keys in extras]
    released = [0] * len(strats)
    specs: dict[StreamKey, dict[Any, None]] = {key: {} for key in data_by_key}
    for s, keys in zip(strats, extras, strict=True):
        for sp in s.specs:
            specs[(sym, itv)].setdefault(sp, None)
        for alias, sps in s.stream_specs().items():
            for sp in sps:
                specs[keys[alias]].setdefault(sp, None)

    def on_joined(i: int, joined: Any) -> None:
        sig = evaluators[i].on_joined(joined)
        if sig is not None:
            results[i].signals.append(sig)
        fills = brokers[i].on_bar(joined.row.candle, sig)
        if fills:
            results[i].fills.extend(fills)
        released[i] += 1

    def on_row(key: StreamKey, row: Any) -> None:
        for i, join in enumerate(joins):
            if key in join.keys:
                for joined in join.push(key, row):
                    on_joined(i, joined)
                if key in last_open and int(row.candle[0]) >= last_open[key]:
                    for joined in join.finish(key):  # its data ran out: stop waiting for it
                        on_joined(i, joined)

    seen = 0
    t0 = time.perf_counter()
    sim = ExchangeSimulator(data=served, speed="max", start=start, port=0, weight_limit=None)
    subs: dict[StreamKey, Any] = {}
    async with sim, Feed(sim.ws_url, sim.rest_url) as feed:
        # remember every row (indicators warm from the first candle) and never let the harness
        # be skipped ahead as a laggard: a replay must see every closed candle
        size = max(len(f) for f in data_by_key.values()) + 10
        engine = IndicatorEngine(feed, keep=size, max_queue=size)
        queue: asyncio.Queue[tuple[StreamKey, Any]] = asyncio.Queue()

        async def read(key: StreamKey, sub: Any) -> None:
            async for row in sub:
                if row.closed:
                    queue.put_nowait((key, row))

        readers: list[asyncio.Task[None]] = []
        try:
            # The clock stands still until every stream is subscribed: none runs ahead of the others
            # (a stream subscribed after the data ran out would never get its candles).
            sim.pause()
            for key, f in data_by_key.items():
                subs[key] = engine.subscribe(*key, specs=list(specs[key]), history=len(f))
            starts = [asyncio.create_task(sub.start()) for sub in subs.values()]
            async with asyncio.timeout(timeout):
                while sum(n > 0 for n in sim.stats()["subscribers"].values()) < len(subs):
                    if any(t.done() and t.exception() for t in starts):
                        break
                    await asyncio.sleep(0.01)
                sim.resume()
                await asyncio.gather(*starts)
            last_t: dict[StreamKey, int] = {}
            for key, sub in subs.items():  # rows that closed before every stream was subscribed
                for row in sub.history:
                    if row.closed and row.candle[0] > last_t.get(key, -1):
                        last_t[key] = row.candle[0]
                        queue.put_nowait((key, row))
                readers.append(asyncio.create_task(read(key, sub)))
            async with asyncio.timeout(timeout):
                # until every strategy evaluated every base row (an extra stream that runs
                # past the base's end delivers the rows that close with its last ones)
                while min(released) < n or seen < n:
                    key, row = await queue.get()
                    if key == (sym, itv):
                        seen += 1
                    on_row(key, row)
        finally:
            for t in readers:
                t.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            for sub in subs.values():
                sub.close()
            await engine.close()
    elapsed = time.perf_counter() - t0
    dropped = sum(sub.dropped for sub in subs.values())
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
    streams: Mapping[Any, Any] | None = None,
) -> ReplayRun:
    """Replay recorded candles through the live path and paper-trade ``strategies`` on them.

    ``data`` is a candle frame or a candle file (``SYMBOL_INTERVAL_START_END.csv.gz``: symbol
    and interval are read from the name). The fill model arguments are those of
    :func:`kit.backtest.run`. Returns a :class:`ReplayRun`: ``run[i].trades`` is strategy ``i``'s
    trades frame, equal to ``kit.backtest.run(strategy, data, ...).trades``. ``streams``: the
    candles (frames or files) of the extra streams the strategies read, by alias or by
    ``(symbol, interval)``, as ``kit.backtest.run(..., streams=...)`` takes them.

    Works from plain scripts and from notebooks (where an event loop is already running, the
    replay runs on its own loop in a worker thread). In async code use :func:`replay_async`.
    """
    coro = replay_async(
        strategies, data, symbol=symbol, interval=interval, model=model, fees=fees, slippage=slippage,
        size=size, size_type=size_type, init_cash=init_cash, fill=fill, timeout=timeout, streams=streams,
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
