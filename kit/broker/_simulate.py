"""Running the paper broker over whole arrays, and the trades frame both paths return."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from kit.broker._model import FillModel
from kit.broker._paper import Fill, PaperBroker, Trade

#: Columns of every ``.trades`` frame (backtest, replay, daemon).
TRADE_COLUMNS: tuple[str, ...] = ("entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "pnl", "fees")


def trades_frame(trades: Iterable[Trade]) -> pd.DataFrame:
    """A ``.trades`` DataFrame from :class:`Trade` records (times become UTC timestamps)."""
    rows = list(trades)
    df = pd.DataFrame(rows, columns=list(TRADE_COLUMNS))
    for c in ("entry_time", "exit_time"):
        df[c] = pd.to_datetime(df[c].astype("int64"), unit="ms", utc=True)
    for c in ("size", "entry_price", "exit_price", "pnl", "fees"):
        df[c] = df[c].astype("float64")
    df["side"] = df["side"].astype("object")
    return df


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
