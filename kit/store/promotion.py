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
are valid, and a short backtest runs. It then writes (or re-versions) an *active* strategy;
the running daemon picks it up within seconds.

Identity: one user's strategy is named (default ``"Class:SYMBOL:interval"``); promoting the
same name again with other parameters writes a new version of it (same id, same position
and ledger), which the daemon applies from the next candle.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import Any

from kit.errors import ConfigError
from kit.store import strategies as _strategies
from kit.store._store import Store
from kit.store.models import StrategyRecord, User

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
) -> StrategyRecord:
    """Validate ``strategy`` and make it an active strategy of ``user`` on ``symbol``/``interval``.

    Args:
        strategy: a :class:`kit.strategy.Strategy` instance (or class, for its defaults).
        user: the owner (a :class:`~kit.store.User` or a user name).
        symbol, interval: the stream it trades, e.g. ``"BTCUSDT"``, ``"1m"``.
        name: the strategy's name for this user (default ``"Class:SYMBOL:interval"``).
        fees, slippage, size, size_type, init_cash, fill: the fill model, as in ``kit.backtest.run``
            (stored with the strategy: the daemon fills exactly as the backtest did).
        start: first candle it may trade (ms, or anything ``pandas.Timestamp`` takes; default now).
            Earlier candles only warm it up. Only used when the name is new.
        data: a candle frame for the check backtest (default: the sample file for the stream,
            else a synthetic random walk).
        store: the database (default ``Store()`` from ``KIT_DATABASE_URL``).
        check_import: also import the class in a fresh Python process, as the daemon will.
    """
    from kit.broker import resolve_model
    from kit.market.intervals import validate_interval, validate_symbol
    from kit.strategy import Strategy

    if isinstance(strategy, type) and issubclass(strategy, Strategy):
        strategy = strategy()
    if not isinstance(strategy, Strategy):
        raise ConfigError(f"strategy must be a kit.strategy.Strategy instance, got {type(strategy).__name__}")
    symbol = validate_symbol(symbol)
    interval = validate_interval(interval)
    cls = type(strategy)
    path = cls.path
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
    if check_import:
        _check_import_elsewhere(path, params)
    _check_backtest(strategy, symbol, interval, model, data)
    start_ms = None if start is None else _to_ms(start)
    store = store or _default_store()
    rec = _strategies.upsert(
        store, user, name=name or f"{cls.__name__}:{symbol}:{interval}", class_path=path, params=params,
        symbol=symbol, interval=interval, broker=model.to_dict(), start_time=start_ms,
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
            from kit.store._scope import NotFound

            raise NotFound(f"no strategy named {strategy!r} for user {getattr(user, 'name', user)!r}")
        sid = rec.id
    else:
        raise ConfigError(f"strategy must be an id, a name or a promoted record, got {type(strategy).__name__}")
    return _strategies.set_active(store, user, int(sid), False)  # type: ignore[arg-type]


def _default_store() -> Store:
    store = Store()
    store.migrate()
    return store


def _to_ms(start: Any) -> int:
    if isinstance(start, int) and not isinstance(start, bool):
        return start
    import pandas as pd

    ts = pd.Timestamp(start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


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


def _check_backtest(strategy: Any, symbol: str, interval: str, model: Any, data: Any) -> None:
    import kit.backtest  # lazily: vectorbt only when promoting

    frame = data if data is not None else _check_data(symbol, interval)
    try:
        kit.backtest.run(strategy, frame.iloc[-CHECK_ROWS:], model=model)
    except Exception as exc:
        raise ConfigError(f"a check backtest of {strategy!r} failed: {type(exc).__name__}: {exc}") from None


def _check_data(symbol: str, interval: str) -> Any:
    """The tail of the sample file for the stream if there is one, else a seeded random walk."""
    import numpy as np
    import pandas as pd

    from kit.market.files import read_candles, scan
    from kit.market.intervals import interval_ms
    from kit.settings import Settings

    try:
        for f in scan(Settings.from_env().replay_data):
            if f.symbol == symbol and f.interval == interval:
                return read_candles(f.path).iloc[-CHECK_ROWS:]
    except Exception:
        pass
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, CHECK_ROWS)))
    open_ = np.r_[close[0], close[:-1]]
    idx = pd.date_range("2024-01-01", periods=CHECK_ROWS, freq=pd.Timedelta(milliseconds=interval_ms(interval)),
                        tz="UTC", name="open_time")  # fmt: skip
    hi, lo = np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999
    return pd.DataFrame({"open": open_, "high": hi, "low": lo, "close": close, "volume": 1.0}, index=idx)
