"""What a strategy's rules return: boolean entry/exit columns, and the helpers that build them."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Signals(NamedTuple):
    """Entry and exit columns of a strategy, one bool per row, and optional stops per row.

    ``entries``/``exits`` are long signals; ``short_entries``/``short_exits`` are ``None`` for a
    long-only strategy. A signal on row ``i`` is decided on candle ``i``'s close.

    Stops per signal (float columns, ``None`` when unused): ``stop_loss``, ``take_profit`` and
    ``trailing_stop`` are *price distances* from the entry's reference price (the fill candle's
    close, or its open with ``fill="next_open"``), e.g. ``2 * d.atr``. The value on an entry's row
    arms the position that entry opens; NaN or <= 0 on that row falls back to the strategy's
    fractional ``stop_loss``/``take_profit``. A trailing stop follows the best high (long) or low
    (short) reached after the entry candle and takes the stop-loss's place when both are given.

    ``stop_loss_price``/``take_profit_price`` are the same stops as *price levels* (e.g. the low of
    the last swing): the value on an entry's row sets that position's level, and takes the place of
    the distance column. vectorbt needs fractions, so a level becomes ``|reference - level| /
    reference`` at the fill; a level already passed at the fill (a stop-loss above a long's
    reference price) is a stop at the reference price.

    ``size`` (float column, ``None`` when unused) sizes the order an entry row sends, in the fill
    model's units: quote value (``size_type="value"``) or base units (``"amount"``); NaN or <= 0
    falls back to the model's ``size``. With ``size_type="percent"`` it is ignored (the backtest warns).
    """

    entries: np.ndarray
    exits: np.ndarray
    short_entries: np.ndarray | None = None
    short_exits: np.ndarray | None = None
    stop_loss: np.ndarray | None = None
    take_profit: np.ndarray | None = None
    trailing_stop: np.ndarray | None = None
    size: np.ndarray | None = None
    stop_loss_price: np.ndarray | None = None
    take_profit_price: np.ndarray | None = None

    @property
    def has_stops(self) -> bool:
        """Whether any stop column is given."""
        return (
            self.stop_loss is not None
            or self.take_profit is not None
            or self.trailing_stop is not None
            or self.stop_loss_price is not None
            or self.take_profit_price is not None
        )

    @property
    def per_signal(self) -> bool:
        """Whether any per-row stop or size column is given."""
        return self.has_stops or self.size is not None


#: The numeric per-row columns of :class:`Signals` (and fields of :class:`Signal`).
STOP_FIELDS: tuple[str, ...] = (
    "stop_loss", "take_profit", "trailing_stop", "size", "stop_loss_price", "take_profit_price",
)  # fmt: skip


class Signal(NamedTuple):
    """The signal of one closed candle, as live evaluation returns it (``None`` when all are false).

    ``stop_loss``/``take_profit``/``trailing_stop`` are that row's stop distances, ``size`` its
    order size and ``stop_loss_price``/``take_profit_price`` its stop levels (``None``: none).
    """

    time_ms: int
    entry: bool = False
    exit: bool = False
    short_entry: bool = False
    short_exit: bool = False
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    size: float | None = None
    stop_loss_price: float | None = None
    take_profit_price: float | None = None

    def any(self) -> bool:
        return self.entry or self.exit or self.short_entry or self.short_exit


def crossed_above(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """True where ``a`` goes from ``<= b`` on the previous row to ``> b`` on this row.

    Looks back one row, so a strategy using it needs ``lookback >= 2``. The first row is
    False. NaNs (indicator warm-up) compare False, so no cross is reported during warm-up.
    """
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    if n > 1:
        if np.ndim(b) == 0:
            b = float(b)
            out[1:] = (a[1:] > b) & (a[:-1] <= b)
        else:
            b = np.asarray(b, dtype=np.float64)
            out[1:] = (a[1:] > b[1:]) & (a[:-1] <= b[:-1])
    return out


def crossed_below(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """True where ``a`` goes from ``>= b`` on the previous row to ``< b`` on this row (see :func:`crossed_above`)."""
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    if n > 1:
        if np.ndim(b) == 0:
            b = float(b)
            out[1:] = (a[1:] < b) & (a[:-1] >= b)
        else:
            b = np.asarray(b, dtype=np.float64)
            out[1:] = (a[1:] < b[1:]) & (a[:-1] >= b[:-1])
    return out


def shift(a: np.ndarray, n: int = 1) -> np.ndarray:
    """``a`` moved ``n`` rows later (the value ``n`` rows ago), NaN-filled at the start. Needs ``lookback > n``."""
    a = np.asarray(a, dtype=np.float64)
    out = np.full(a.shape, np.nan)
    if n < a.shape[0]:
        out[n:] = a[: a.shape[0] - n]
    return out
