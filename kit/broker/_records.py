"""What the paper broker records: fills, trades and why a trade ended."""

from __future__ import annotations

import math
from typing import NamedTuple

FLAT, LONG, SHORT = "flat", "long", "short"


class Fill(NamedTuple):
    """One executed order.

    ``time_ms`` is the open time of the candle on whose close it filled; ``side`` is ``"buy"``
    or ``"sell"``; ``qty`` > 0; ``price`` includes slippage; ``fee`` is in quote currency;
    ``reason`` is ``"entry"``, ``"exit"``, ``"reverse"``, ``"stop_loss"``, ``"take_profit"``,
    ``"trailing_stop"`` or ``"liquidation"``. A covering fill's ``fee`` includes the short's interest.
    """

    time_ms: int
    side: str
    qty: float
    price: float
    fee: float
    reason: str


#: Why a trade ended: ``Trade.exit_reason`` (``"open"``: not ended, valued at the last close).
EXIT_REASONS: tuple[str, ...] = (
    "signal", "reverse", "stop_loss", "take_profit", "trailing_stop", "liquidation", "open",
)  # fmt: skip
_EXIT_REASON = {
    "exit": "signal", "reverse": "reverse", "stop_loss": "stop_loss", "take_profit": "take_profit",
    "trailing_stop": "trailing_stop", "liquidation": "liquidation",
}  # fmt: skip


class Trade(NamedTuple):
    """A round trip; the stored fields of a backtest's ``.trades`` row (times in ms UTC).

    ``fees`` is entry plus exit fees; ``pnl`` is net of both. ``exit_reason`` is one of
    :data:`EXIT_REASONS`. ``mae``/``mfe`` (maximum adverse/favourable excursion) are how far, in
    price, the market went against/for the trade while it was held, both >= 0: over the entry and
    exit prices and the high-low range of every candle held from its open to its close (with
    ``fill="close"``: from the candle after the entry to the exit candle, which counts when the
    exit filled at its close; with ``"next_open"``: from the entry candle to the one before the
    exit). A stop exit's candle counts only with its exit price. An ``"open"`` trade has
    ``exit_time``/``exit_price`` of the last candle and its close, no exit fee, unrealised ``pnl``.
    """

    entry_time: int
    exit_time: int
    side: str
    size: float
    entry_price: float
    exit_price: float
    pnl: float
    fees: float
    exit_reason: str = "signal"
    mae: float = math.nan
    mfe: float = math.nan


def excursions(
    side: str, entry_price: float, exit_price: float, lo: float | None, hi: float | None
) -> tuple[float, float]:
    """``(mae, mfe)`` of a trade from the lowest low and highest high of the candles it held fully."""
    low = min(entry_price, exit_price) if lo is None else min(lo, entry_price, exit_price)
    high = max(entry_price, exit_price) if hi is None else max(hi, entry_price, exit_price)
    if side == LONG:
        return entry_price - low, high - entry_price
    return high - entry_price, entry_price - low
