"""Running the paper broker over whole arrays, and the trades frame both paths return."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from kit.broker._model import FillModel
from kit.broker._paper import Fill, PaperBroker, Trade

#: Columns of every ``.trades`` frame (backtest, replay, daemon). ``duration`` is a Timedelta;
#: ``return_pct``, ``mae_pct`` and ``mfe_pct`` are fractions (0.01 = 1 %) of the entry value/price.
TRADE_COLUMNS: tuple[str, ...] = (
    "entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "pnl", "fees",
    "exit_reason", "duration", "return_pct", "mae", "mae_pct", "mfe", "mfe_pct",
)  # fmt: skip
#: The columns a :class:`Trade` carries (and the ledger stores); the others derive from them.
STORED_COLUMNS: tuple[str, ...] = Trade._fields


def build_trades(
    entry_time: pd.DatetimeIndex,
    exit_time: pd.DatetimeIndex,
    side: np.ndarray,
    size: np.ndarray,
    entry_price: np.ndarray,
    exit_price: np.ndarray,
    pnl: np.ndarray,
    fees: np.ndarray,
    exit_reason: np.ndarray,
    mae: np.ndarray,
    mfe: np.ndarray,
    extra: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The ``.trades`` frame (:data:`TRADE_COLUMNS`, then ``extra``) from the stored columns, built
    in one DataFrame construction: the backtest's overhead budget has no room for column-by-column
    pandas assignment."""
    size, entry_price, exit_price, pnl, fees, mae, mfe = (
        np.asarray(a, dtype=np.float64) for a in (size, entry_price, exit_price, pnl, fees, mae, mfe)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        cols: dict[str, Any] = {
            "entry_time": entry_time,
            "exit_time": exit_time,
            "side": np.asarray(side, dtype=object),
            "size": size,
            "entry_price": entry_price,
            "exit_price": exit_price,
            "pnl": pnl,
            "fees": fees,
            "exit_reason": np.asarray(exit_reason, dtype=object),
            "duration": exit_time - entry_time,
            "return_pct": pnl / (entry_price * size),
            "mae": mae,
            "mae_pct": mae / entry_price,
            "mfe": mfe,
            "mfe_pct": mfe / entry_price,
        }
    cols.update(extra or {})
    return pd.DataFrame(cols)


def finish_trades(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`build_trades` from a frame of :data:`STORED_COLUMNS` (times already UTC timestamps);
    other columns (e.g. ``strategy_id``) go last."""
    extra = {c: df[c].to_numpy() for c in df.columns if c not in STORED_COLUMNS}
    return build_trades(
        pd.DatetimeIndex(df["entry_time"]), pd.DatetimeIndex(df["exit_time"]),
        *(df[c].to_numpy() for c in STORED_COLUMNS[2:]), extra=extra,
    )  # fmt: skip


def trades_frame(trades: Iterable[Trade]) -> pd.DataFrame:
    """A ``.trades`` DataFrame from :class:`Trade` records (times become UTC timestamps)."""
    rows = list(trades)
    df = pd.DataFrame(rows, columns=list(STORED_COLUMNS))
    for c in ("entry_time", "exit_time"):
        df[c] = pd.to_datetime(df[c].astype("int64"), unit="ms", utc=True)
    return finish_trades(df)


def simulate(
    model: FillModel,
    time_ms: np.ndarray,
    ohlc: np.ndarray,
    entries: np.ndarray,
    exits: np.ndarray,
    short_entries: np.ndarray | None = None,
    short_exits: np.ndarray | None = None,
    *,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    stop_columns: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None] | None = None,
    size_column: np.ndarray | None = None,
    level_columns: tuple[np.ndarray | None, np.ndarray | None] | None = None,
) -> tuple[list[Fill], list[Trade], PaperBroker]:
    """Drive a :class:`PaperBroker` over arrays (``ohlc`` is ``(n, 4)``): the reference loop.

    ``stop_columns`` are per-row ``(stop_loss, take_profit, trailing_stop)`` distances and
    ``size_column`` per-row sizes and ``level_columns`` per-row ``(stop_loss_price,
    take_profit_price)``, as :class:`kit.strategy.Signals` carries them.
    """
    from kit.strategy._live import _stop
    from kit.strategy._signals import Signal

    broker = PaperBroker(model, stop_loss=stop_loss, take_profit=take_profit, trailing_stop=trailing_stop)
    fills: list[Fill] = []
    n = len(time_ms)
    z = np.zeros(n, dtype=bool)
    se = z if short_entries is None else short_entries
    sx = z if short_exits is None else short_exits
    cols = (*(stop_columns or (None, None, None)), size_column, *(level_columns or (None, None)))
    for i in range(n):
        sig: Any = None
        if entries[i] or exits[i] or se[i] or sx[i]:
            stops = [_stop(c[i : i + 1]) if c is not None else None for c in cols]
            sig = Signal(int(time_ms[i]), bool(entries[i]), bool(exits[i]), bool(se[i]), bool(sx[i]), *stops)
        row = (int(time_ms[i]), ohlc[i, 0], ohlc[i, 1], ohlc[i, 2], ohlc[i, 3])
        fills.extend(broker.on_bar(row, sig))
    return fills, broker.trades, broker
