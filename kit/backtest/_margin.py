"""The backtest of what vectorbt's ``from_signals`` cannot simulate: margin calls, borrowing, two-fill reversals.

vectorbt has no margin model, no interest on borrowed coins, and sizes an opposite entry in one
order only when it can (see :mod:`kit.broker._model`). For a strategy that trades short, the
backtest therefore runs vectorbt first and checks, from its cash and positions, whether any candle
reached a short's liquidation price; only if one did (or the model needs borrowing, an
initial-margin cap or a two-fill reversal) does it run the paper broker, the same code the replay
and the daemon run, and hand its fills to vectorbt as order records. vectorbt then does the
accounting (equity, drawdown, ``stats()``) on exactly those orders.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kit.broker import FillModel, simulate, trades_frame
from kit.broker._paper import Fill, PaperBroker, Trade
from kit.strategy import Signals

# A liquidation check on vectorbt's state that says "maybe" sends the set to the paper broker,
# which decides exactly; so the check errs on the side of "maybe".
_MAYBE = 1e-9


def needs_broker(signals: Signals, model: FillModel) -> bool:
    """Whether the strategy's shorts need the paper broker whatever happens (see the module docstring)."""
    return signals.short_entries is not None and not model.vectorbt_shorts()


def liquidated(cash: np.ndarray, assets: np.ndarray, high: np.ndarray, model: FillModel) -> np.ndarray:
    """Per column: whether a short held into some candle saw that candle's high reach its liquidation price.

    ``cash``/``assets`` are vectorbt's per-candle cash and position after the candle's orders
    (``(n,)`` or ``(n, k)``); a candle's margin is checked on the position held at its open.
    """
    if model.maintenance_margin == 0:
        return np.zeros(1 if cash.ndim == 1 else cash.shape[1], dtype=bool)
    c2 = cash.reshape(len(cash), -1)
    a2 = assets.reshape(len(assets), -1)
    pos, held_cash = a2[:-1], c2[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.where(pos < 0, held_cash / (-pos * (1 + model.maintenance_margin)), np.inf)
    return (high[1:, None] >= level * (1 - _MAYBE)).any(axis=0)


def went_negative(value: np.ndarray) -> bool:
    """Whether equity went below zero (only possible with ``maintenance_margin=0``)."""
    return bool((value < 0).any())


def broker_fills(
    data: pd.DataFrame,
    signals: Signals,
    model: FillModel,
    *,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
) -> tuple[list[Fill], list[Trade], PaperBroker]:
    """The paper broker over the whole frame: its fills, closed trades and final state."""
    t = data.index.as_unit("ms").asi8
    ohlc = data[["open", "high", "low", "close"]].to_numpy(np.float64)
    return simulate(
        model, t, ohlc, *signals[:4],
        stop_loss=stop_loss, take_profit=take_profit, trailing_stop=trailing_stop,
        stop_columns=(signals.stop_loss, signals.take_profit, signals.trailing_stop),
        size_column=signals.size, level_columns=(signals.stop_loss_price, signals.take_profit_price),
    )  # fmt: skip


def order_records(fills: list[Fill], data: pd.DataFrame, dtype: Any, col: int = 0) -> np.ndarray:
    """Fills as vectorbt order records of column ``col`` (``dtype``: vectorbt's ``order_dt``)."""
    records = np.zeros(len(fills), dtype=dtype)
    if fills:
        t = data.index.as_unit("ms").asi8
        records["id"] = np.arange(len(fills))
        records["col"] = col
        records["idx"] = np.searchsorted(t, [f.time_ms for f in fills])
        records["size"] = [f.qty for f in fills]
        records["price"] = [f.price for f in fills]
        records["fees"] = [f.fee for f in fills]
        records["side"] = [0 if f.side == "buy" else 1 for f in fills]
    return records


def broker_portfolio(
    data: pd.DataFrame,
    signals: Signals,
    model: FillModel,
    *,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    freq: Any = None,
) -> tuple[Any, pd.DataFrame, PaperBroker]:
    """Run the paper broker over the frame and wrap its fills as a vectorbt Portfolio.

    Returns ``(portfolio, trades, broker)``: ``trades`` is the ``.trades`` frame straight from the
    broker's records (an open position last), which is what the replay and the daemon report.
    """
    from kit.backtest._run import _vbt, vbt_frame

    vbt = _vbt()
    fills, trades, broker = broker_fills(
        data, signals, model, stop_loss=stop_loss, take_profit=take_profit, trailing_stop=trailing_stop
    )
    records = order_records(fills, data, vbt.portfolio.enums.order_dt)
    close = vbt_frame(data)["close"]
    wrapper = vbt.base.array_wrapper.ArrayWrapper.from_obj(close, freq=freq)
    logs = np.zeros(0, dtype=vbt.portfolio.enums.log_dt)
    pf = vbt.Portfolio(wrapper, close, records, logs, np.asarray([model.init_cash], dtype=np.float64), False)
    still_open = broker.open_trade()
    return pf, trades_frame([*trades, *([still_open] if still_open else [])]), broker
