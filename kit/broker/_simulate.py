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


def finish_trades(df: pd.DataFrame) -> pd.DataFrame:
    """Add the derived columns to a frame of :data:`STORED_COLUMNS` (times already UTC timestamps)
    and order the columns as :data:`TRADE_COLUMNS` (extra columns, e.g. ``strategy_id``, go last)."""
    for c in ("size", "entry_price", "exit_price", "pnl", "fees", "mae", "mfe"):
        df[c] = df[c].astype("float64")
    df["side"] = df["side"].astype("object")
    df["exit_reason"] = df["exit_reason"].astype("object")
    df["duration"] = df["exit_time"] - df["entry_time"]
    with np.errstate(divide="ignore", invalid="ignore"):
        df["return_pct"] = df["pnl"] / (df["entry_price"] * df["size"])
        df["mae_pct"] = df["mae"] / df["entry_price"]
        df["mfe_pct"] = df["mfe"] / df["entry_price"]
    extra = [c for c in df.columns if c not in TRADE_COLUMNS]
    return df[[*TRADE_COLUMNS, *extra]]


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
) -> tuple[list[Fill], list[Trade], PaperBroker]:
    """Drive a :class:`PaperBroker` over arrays (``ohlc`` is ``(n, 4)``): the reference loop."""
    from kit.strategy._signals import Signal

    broker = PaperBroker(model, stop_loss=stop_loss, take_profit=take_profit)
    fills: list[Fill] = []
    n = len(time_ms)
    z = np.zeros(n, dtype=bool)
    se = z if short_entries is None else short_entries
    sx = z if short_exits is None else short_exits
    for i in range(n):
        sig: Any = None
        if entries[i] or exits[i] or se[i] or sx[i]:
            sig = Signal(int(time_ms[i]), bool(entries[i]), bool(exits[i]), bool(se[i]), bool(sx[i]))
        row = (int(time_ms[i]), ohlc[i, 0], ohlc[i, 1], ohlc[i, 2], ohlc[i, 3])
        fills.extend(broker.on_bar(row, sig))
    return fills, broker.trades, broker
