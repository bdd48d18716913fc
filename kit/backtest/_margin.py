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


def liquidated(orders: np.ndarray, k: int, high: np.ndarray, model: FillModel) -> np.ndarray:
    """Per column of vectorbt's order records: whether a short held into some candle saw that candle's
    high reach its liquidation price (a candle's margin is checked on the position held at its open).

    Straight from the orders (cash and position only change there), so it costs next to nothing
    next to the simulation: one ``reduceat`` of the highs per column that ever went short.
    """
    from kit.backtest._run import _segment

    out = np.zeros(k, dtype=bool)
    if model.maintenance_margin == 0 or not len(orders):
        return out
    o = orders[np.lexsort((orders["id"], orders["idx"], orders["col"]))]
    buy = o["side"] == 0
    gross = o["size"] * o["price"]
    cash_flow = np.where(buy, -(gross + o["fees"]), gross - o["fees"])
    asset_flow = np.where(buy, o["size"], -o["size"])
    starts = np.searchsorted(o["col"], np.arange(k + 1))
    n = len(high)
    for j in range(k):
        a, b = starts[j], starts[j + 1]
        if a == b or not (asset_flow[a:b] < 0).any():
            continue
        idx = o["idx"][a:b].astype(np.int64)
        cash = model.init_cash + np.cumsum(cash_flow[a:b])
        pos = np.cumsum(asset_flow[a:b])
        last = np.r_[idx[1:] != idx[:-1], True]  # the state after each candle's last order
        idx, cash, pos = idx[last], cash[last], pos[last]
        short = pos < 0
        if not short.any():
            continue
        # held from the candle after the order to the next order's candle (checked at its open)
        best = _segment(high, idx + 1, np.r_[idx[1:], n - 1], np.maximum, -np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            level = cash / (-pos * (1 + model.maintenance_margin))
        out[j] = bool((short & (best >= level * (1 - _MAYBE))).any())
    return out


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
