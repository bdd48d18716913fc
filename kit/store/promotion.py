"""Promotion: hand a strategy from a notebook to the daemon (``kit.promote`` / ``kit.demote``).

    import kit
    from kit.strategies import EmaCross
    rec = kit.promote(EmaCross(fast=8, slow=21), user="alice", symbol="BTCUSDT", interval="1m",
                      fees=0.001, slippage=0.0005)
    kit.demote(rec.id, user="alice")

``promote`` checks, before writing anything, that the daemon will be able to run the
strategy: its class is importable by another process from its path ``"module:Class"`` (a
class defined in the notebook itself is not: put it in a ``.py`` module), its parameters
survive the JSON round trip into the database and validate again, the fill-model arguments
are valid, the exchange (``KIT_EXCHANGE_URL``) lists the symbol and serves the interval (or,
when it cannot be reached, the local candle data has them), a short backtest runs on real
candles of that stream, and those candles replayed through the daemon's live evaluation give
the backtest's signals on every candle (otherwise a :class:`kit.strategy.ParityError` names the
first differing candle and the likely cause: look-ahead, or a lookback too short). It then
writes (or re-versions) an *active* strategy; the running daemon picks it up within seconds.

"Now" is the exchange's clock (``/api/v3/time``): a strategy promoted against the simulator
replaying 2025 trades from the replay's present, not from the wall clock. When the exchange
cannot be reached, the daemon's feed clock decides when it first loads the strategy.

Live mode (``mode="live", allocation=1_000``): the strategy places real orders with its owner's
exchange keys (``kit keys set``), which must be stored. Spot only: a strategy whose rules can go
short is refused. Its sizing works on its ``allocation`` (its ``init_cash``), never on the whole
account, so several strategies of one user share one account without taking each other's cash.
The default, ``mode="paper"``, is the paper broker, unchanged.

Identity: one user's strategy is named (default ``"Class:SYMBOL:interval"``); promoting the
same name again with other parameters writes a new version of it (same id, same position
and ledger), which the daemon applies from the next candle. Promoting it with another class,
symbol or interval is refused while it holds a position, and otherwise starts a new strategy
with its own ledger (see :func:`kit.store.strategies.upsert`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
import warnings
from typing import Any

import pandas as pd

import kit.data
from kit.broker import resolve_model
from kit.errors import ConfigError, ExchangeError, KitError
from kit.feed._rest import RestClient
from kit.market.candle import COLUMNS
from kit.market.intervals import interval_ms, validate_interval, validate_symbol
from kit.market.times import parse_ms
from kit.settings import Settings
from kit.store import keys
from kit.store import strategies as _strategies
from kit.store._scope import NotFound, user_id
from kit.store._store import Store
from kit.store.models import StrategyRecord, User
from kit.strategy import ParityError, Strategy, check_module_allowed, check_parity
from kit.strategy._streams import resolve as resolve_streams

log = logging.getLogger(__name__)
CHECK_ROWS = 500


def promote(
    strategy: Any,
    *,
    user: User | str,
    symbol: str,
    interval: str,
    name: str | None = None,
    fees: float | None = None,
    slippage: float | None = None,
    size: float | None = None,
    size_type: str | None = None,
    init_cash: float | None = None,
    fill: str | None = None,
    start: Any = None,
    data: Any = None,
    store: Store | None = None,
    check_import: bool = True,
    mode: str = "paper",
    allocation: float | None = None,
    streams: Any = None,
) -> StrategyRecord:
    """Validate ``strategy`` and make it an active strategy of ``user`` on ``symbol``/``interval``.

    Args:
        strategy: a :class:`kit.strategy.Strategy` instance (or class, for its defaults).
        user: the owner (a :class:`~kit.store.User` or a user name).
        symbol, interval: the stream it trades, e.g. ``"BTCUSDT"``, ``"1m"``.
        name: the strategy's name for this user (default ``"Class:SYMBOL:interval"``).
        fees, slippage, size, size_type, init_cash, fill: the fill model, as in ``kit.backtest.run``
            (stored with the strategy: the daemon fills exactly as the backtest did).
        start: first candle it may trade (ms, or anything ``pandas.Timestamp`` takes; default the
            exchange's clock now, else the daemon's when it loads the strategy). Earlier candles
            only warm it up. Only used when the name is new (or moves to another stream or class).
        data: a candle frame for the check backtest (default: the stream's latest candles from
            the exchange, else from the local candle data).
        streams: for a strategy reading extra streams (its ``streams`` declaration), their candle
            frames for the check backtest by alias (default: each stream's latest candles, fetched
            and checked like the strategy's own). The daemon serves them from the same feed.
        store: the database (default ``Store()`` from ``KIT_DATABASE_URL``).
        check_import: also import the class in a fresh Python process, as the daemon will.
        mode: ``"paper"`` (default, the paper broker) or ``"live"`` (real orders with the user's keys).
        allocation: live only, required: the quote amount the strategy's sizing works on (its
            ``init_cash``; ``init_cash`` may be omitted or must be equal).
    """
    if isinstance(strategy, type) and issubclass(strategy, Strategy):
        strategy = strategy()
    if not isinstance(strategy, Strategy):
        raise ConfigError(f"strategy must be a kit.strategy.Strategy instance, got {type(strategy).__name__}")
    symbol = validate_symbol(symbol)
    interval = validate_interval(interval)
    cls = type(strategy)
    path = cls.path
    check_module_allowed(path, Settings.from_env().strategy_module_prefixes)  # the daemon would refuse it
    if not cls.importable():
        raise ConfigError(
            f"strategy class {cls.__qualname__} is defined in {cls.__module__!r}, which the daemon cannot import; "
            "move it into a .py module on the daemon's path"
        )
    try:
        params = json.loads(json.dumps(strategy.params))
        rebuilt = Strategy.from_dict({"path": path, "params": params})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"strategy {strategy!r} cannot be stored and rebuilt: {exc}") from None
    if rebuilt != strategy:
        raise ConfigError(f"strategy {strategy!r} does not survive the round trip to the database (got {rebuilt!r})")
    try:
        model = resolve_model(
            fees=fees, slippage=slippage, size=size, size_type=size_type, init_cash=init_cash, fill=fill
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    allocation = _check_mode(strategy, mode, allocation, init_cash)
    if allocation is not None:
        model = model.replace(init_cash=allocation)
    if mode == "live":
        store = store or _default_store()
        _check_keys(store, user)
    if check_import:
        _check_import_elsewhere(path, params)
    now_ms, frame = _check_stream(symbol, interval, need_data=data is None)
    check_frame = frame if data is None else data
    extra = _check_extra_streams(strategy, symbol, interval, streams)
    if mode == "live" and _signals_short(strategy, check_frame, extra):
        raise ConfigError(_SHORT_REFUSAL.format(strategy=strategy))
    _check_backtest(strategy, check_frame, model, extra)
    if not extra:  # the live check drives one stream; a strategy over several is checked by its replay
        _check_parity(strategy, check_frame)
    start_ms = now_ms if start is None else parse_ms(start, "start")
    store = store or _default_store()
    rec = _strategies.upsert(
        store, user, name=name or f"{cls.__name__}:{symbol}:{interval}", class_path=path, params=params,
        symbol=symbol, interval=interval, broker=model.to_dict(), start_time=start_ms, mode=mode,
        allocation=allocation,
    )  # fmt: skip
    log.info("strategy promoted", extra={"strategy_id": rec.id, "path": path, "version": rec.version})
    return rec


def demote(strategy: Any, *, user: User | str, store: Store | None = None) -> StrategyRecord:
    """Switch ``user``'s strategy off: by id, by name, or by the record ``promote`` returned.

    The daemon stops evaluating it within seconds; its ledger and position stay in the database.
    """
    store = store or _default_store()
    if isinstance(strategy, StrategyRecord):
        sid = strategy.id
    elif isinstance(strategy, int):
        sid = strategy
    elif isinstance(strategy, str):
        rec = _strategies.find(store, user, strategy)
        if rec is None:
            raise NotFound(f"no strategy named {strategy!r} for user {getattr(user, 'name', user)!r}")
        sid = rec.id
    else:
        raise ConfigError(f"strategy must be an id, a name or a promoted record, got {type(strategy).__name__}")
    return _strategies.set_active(store, user, int(sid), False)  # type: ignore[arg-type]


_SHORT_REFUSAL = ("{strategy!r} can go short, and live trading is spot only (long-only); promote a long-only "
                  "version (e.g. short=False) in live mode")  # fmt: skip


def _check_mode(strategy: Any, mode: str, allocation: float | None, init_cash: float | None) -> float | None:
    """The live allocation (None for paper), after the checks that need nothing but the arguments."""
    if mode not in ("paper", "live"):
        raise ConfigError(f"mode must be 'paper' or 'live', got {mode!r}")
    if mode == "paper":
        if allocation is not None:
            raise ConfigError("allocation= is for mode='live'; a paper strategy's starting cash is init_cash=")
        return None
    if allocation is None:
        raise ConfigError("mode='live' needs allocation=: the quote amount (e.g. USDT) this strategy may trade with")
    if isinstance(allocation, bool) or not isinstance(allocation, int | float) or not math.isfinite(allocation) \
            or allocation <= 0:  # fmt: skip
        raise ConfigError(f"allocation must be a positive amount of the quote asset, got {allocation!r}")
    if init_cash is not None and float(init_cash) != float(allocation):
        raise ConfigError(f"a live strategy's init_cash is its allocation: give one of them, not {init_cash!r} and "
                          f"{allocation!r}")  # fmt: skip
    if strategy.has_shorts:
        raise ConfigError(_SHORT_REFUSAL.format(strategy=strategy))
    return float(allocation)


def _check_keys(store: Store, user: User | str) -> None:
    user_id(store, user)  # an unknown user is NotFound, as everywhere
    who = user.name if isinstance(user, User) else user
    # The listing needs no master key: a notebook promoting need not hold it, the daemon must.
    if not any(k.user == who for k in keys.list(store)):
        raise ConfigError(
            f"user {who!r} has no exchange keys, which live mode trades with: set them with "
            f"`kit keys set --user {who}` first"
        )


def _check_extra_streams(strategy: Any, symbol: str, interval: str, given: Any) -> dict[str, Any]:
    """The candles of every extra stream the strategy reads (alias -> frame): given, or fetched and
    checked like its own stream (the exchange must list the symbol and serve the interval)."""
    keys = resolve_streams(strategy.streams, symbol, interval)  # an InputError (a ConfigError) names a bad one
    given = dict(given or {})
    unknown = sorted(set(given) - set(keys))
    if unknown:
        raise ConfigError(f"streams: {unknown} not declared by {type(strategy).__name__} (it reads {sorted(keys)})")
    return {alias: given[alias] if alias in given else _check_stream(*key, need_data=True)[1]
            for alias, key in keys.items()}  # fmt: skip


def _signals_short(strategy: Any, frame: Any, streams: dict[str, Any] | None = None) -> bool:
    """Whether the strategy's rules give short signals on real candles (the NaN probe of
    ``has_shorts`` may miss rules that fail on NaNs; a live strategy must not)."""
    try:
        return strategy.run_signals(frame, streams=streams).short_entries is not None
    except Exception:
        return False  # the check backtest reports the failure itself, with its reason


def _default_store() -> Store:
    store = Store()
    store.migrate()
    return store


def _check_import_elsewhere(path: str, params: dict[str, Any]) -> None:
    code = (
        "import json, sys\nfrom kit.strategy import Strategy\n"
        "Strategy.from_dict({'path': sys.argv[1], 'params': json.loads(sys.argv[2])})\n"
    )
    env = dict(os.environ)
    # The daemon runs from the project/install, not from the notebook's folder: drop the cwd.
    proc = subprocess.run(
        [sys.executable, "-c", code, path, json.dumps(params)], capture_output=True, text=True, timeout=120, env=env,
        cwd=os.path.expanduser("~") if os.path.isdir(os.path.expanduser("~")) else "/",
    )  # fmt: skip
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise ConfigError(f"strategy {path!r} is not importable by the daemon's Python: {last}")


def _check_backtest(strategy: Any, frame: Any, model: Any, streams: dict[str, Any] | None = None) -> None:
    import kit.backtest  # lazily: vectorbt only when promoting

    try:
        kit.backtest.run(strategy, frame.iloc[-CHECK_ROWS:], model=model, streams=streams, check_parity=False)
    except Exception as exc:
        raise ConfigError(f"a check backtest of {strategy!r} failed: {type(exc).__name__}: {exc}") from None


def _check_parity(strategy: Any, frame: Any) -> None:
    """Refuse a strategy whose live signals differ from its backtest's on the check candles.

    The candles go through the daemon's own evaluation path (engine state, live evaluator, the
    strategy's lookback); the first differing candle is named with the likely cause.
    """
    mismatch = check_parity(strategy, frame.iloc[-CHECK_ROWS:])
    if mismatch is not None:
        raise ParityError(mismatch.message(strategy))


def _check_stream(symbol: str, interval: str, *, need_data: bool) -> tuple[int | None, Any]:
    """Check that the stream exists; return the exchange's clock (None offline) and its latest candles.

    Online, the configured exchange must list ``symbol`` and serve ``interval``; offline, the
    local candle data (``KIT_REPLAY_DATA`` and the Parquet cache) must hold them. The candles
    are real ones of that very stream: a check on invented data would prove nothing.
    """
    settings = Settings.from_env()
    url = settings.exchange_url
    client = RestClient(url, timeout=5.0, max_retries=1)
    try:
        now = client.server_time()
    except ExchangeError as exc:
        log.warning(
            f"the exchange at {url} cannot be reached; checking {symbol} {interval} against the local candle data "
            "(the daemon's clock decides when it starts)",
            extra={"error": str(exc)},
        )
        frame = _local_candles(symbol, interval)
        if frame is None or not len(frame):
            raise ConfigError(
                f"cannot check {symbol} {interval}: the exchange at {url} cannot be reached and there are no local "
                f"candles of it (KIT_REPLAY_DATA={settings.replay_data}); start the exchange or check the symbol"
            ) from None
        return None, frame
    try:
        client.get("/api/v3/exchangeInfo", {"symbol": symbol}, weight=20)
        # Always ask for klines: exchangeInfo lists symbols, only klines say whether the interval is served.
        candles = client.klines(symbol, interval, end_ms=now, limit=CHECK_ROWS if need_data else 1)
    except ExchangeError as exc:
        if exc.code in (-1121, -1100):
            raise ConfigError(f"unknown symbol {symbol!r}: the exchange at {url} does not list it") from None
        if exc.code == -1120:
            raise ConfigError(f"the exchange at {url} does not serve interval {interval!r} for {symbol}") from None
        raise ConfigError(f"cannot check {symbol} {interval} on the exchange at {url}: {exc}") from None
    if not need_data:
        return now, None
    closed = [c for c in candles if c.open_time + interval_ms(interval) <= now]
    frame = _local_candles(symbol, interval) if len(closed) < 2 else None
    if frame is None or not len(frame):
        if not closed:
            raise ConfigError(
                f"the exchange at {url} has no closed {symbol} {interval} candles yet to check the strategy on; "
                "pass data= (a candle frame) to check it on other candles"
            )
        idx = pd.DatetimeIndex(pd.to_datetime([c.open_time for c in closed], unit="ms", utc=True), name="open_time")
        frame = pd.DataFrame([c[1:] for c in closed], index=idx, columns=list(COLUMNS), dtype="float64")
    return now, frame


def _local_candles(symbol: str, interval: str) -> Any:
    """The last candles of the stream in the local data (files and cache), or None when it has none."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # coverage notes about the range asked for: not the user's
            # An explicit end: without one, a stream held only as a finer interval (1m files for 1h) looks empty.
            end = int(time.time() * 1000)
            frame = kit.data.load(symbol, interval, 0, end, offline=True, progress=False)
    except KitError:
        return None
    return frame.iloc[-CHECK_ROWS:] if len(frame) else None
