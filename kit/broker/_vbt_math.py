"""Scalar order arithmetic, line for line the subset of vectorbt's ``buy_nb``/``sell_nb`` the fill model uses.

Kept in plain Python (no vectorbt, no numba import) so the daemon can load it; the operation
order is vectorbt's, so live fills equal backtest fills to the last bits, not just within a
tolerance. Only the settings of :meth:`FillModel.vectorbt_kwargs` are supported: no fixed
fees, no size limits or granularity, no cash locking, partial fills allowed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

REL_TOL = 1e-9
ABS_TOL = 1e-12

# directions of an order (vectorbt's Direction enum)
LONG_ONLY, SHORT_ONLY, BOTH = 0, 1, 2


def is_close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return False
    if a == b:
        return True
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)


def is_close_or_less(a: float, b: float) -> bool:
    return True if is_close(a, b) else a < b


def is_less(a: float, b: float) -> bool:
    return False if is_close(a, b) else a < b


def _sign(x: float) -> float:
    return 0.0 if x == 0 else math.copysign(1.0, x)


def add(a: float, b: float) -> float:
    zero = is_close(abs(a), abs(b)) if _sign(a) != _sign(b) else is_close(a + b, 0.0)
    return 0.0 if zero else a + b


class Exec(NamedTuple):
    """Account state an order changes (vectorbt's ExecuteOrderState)."""

    cash: float
    position: float
    debt: float
    free_cash: float


class Result(NamedTuple):
    """A filled order: quantity (> 0), fill price (slippage included), fee, side (+1 buy, -1 sell)."""

    size: float
    price: float
    fees: float
    side: int


def buy(
    st: Exec, size: float, price: float, direction: int, fees: float, slippage: float, percent: float
) -> tuple[Exec, Result | None]:
    """Buy (open/increase long, or cover a short). ``size`` may be ``inf`` (as much as cash allows)."""
    adj_price = price * (1 + slippage)
    cash_limit = st.cash
    if not math.isnan(percent):
        cash_limit = min(cash_limit, percent * cash_limit)
    if direction in (LONG_ONLY, BOTH):
        if cash_limit == 0:
            return st, None
        if math.isinf(size) and math.isinf(cash_limit):
            raise ValueError("attempt to go long infinitely")
    elif st.position == 0:
        return st, None
    adj_size = min(-st.position, size) if direction == SHORT_ONLY else size
    if adj_size == 0:
        return st, None
    req_cash = adj_size * adj_price
    req_fees = req_cash * fees + 0.0
    total_req_cash = req_cash + req_fees
    if is_close_or_less(total_req_cash, cash_limit):
        final_size, fees_paid, final_req_cash = adj_size, req_fees, total_req_cash
    else:
        max_req_cash = add(cash_limit, -0.0) / (1 + fees)
        if max_req_cash <= 0:
            return st, None
        final_size = max_req_cash / adj_price
        fees_paid = cash_limit - max_req_cash
        final_req_cash = cash_limit
    if is_close(adj_size, 0) or is_less(final_size, 0.0):
        return st, None
    new_cash = add(st.cash, -final_req_cash)
    new_position = add(st.position, final_size)
    if st.position < 0:
        short_size = final_size if new_position < 0 else abs(st.position)
        avg_entry_price = st.debt / abs(st.position)
        debt_diff = short_size * avg_entry_price
        new_debt = add(st.debt, -debt_diff)
        new_free_cash = add(st.free_cash + 2 * debt_diff, -final_req_cash)
    else:
        new_debt = st.debt
        new_free_cash = add(st.free_cash, -final_req_cash)
    return Exec(new_cash, new_position, new_debt, new_free_cash), Result(final_size, adj_price, fees_paid, 1)


def sell(
    st: Exec, size: float, price: float, direction: int, fees: float, slippage: float, percent: float
) -> tuple[Exec, Result | None]:
    """Sell (close/decrease long, or open/increase a short). ``size`` may be ``inf`` with a ``percent``."""
    adj_price = price * (1 - slippage)
    if direction == LONG_ONLY:
        size_limit = min(st.position, size)
    elif math.isinf(size) and not math.isnan(percent):
        long_size = max(st.position, 0)
        long_cash = long_size * adj_price * (1 - fees)
        total_free_cash = add(st.free_cash, long_cash)
        if total_free_cash <= 0:
            if st.position <= 0:
                return st, None
            max_size_limit = long_size
        else:
            max_short_size = add(total_free_cash, -0.0) / (adj_price * (1 + fees))
            max_size_limit = add(long_size, max_short_size)
            if max_size_limit <= 0:
                return st, None
        size_limit = max_size_limit
    else:
        size_limit = size
    if not math.isnan(percent):
        size_limit = percent * size_limit
    if direction in (SHORT_ONLY, BOTH):
        if math.isinf(size_limit):
            raise ValueError("attempt to go short infinitely")
    elif st.position == 0:
        return st, None
    if is_close(size_limit, 0) or is_less(size_limit, 0.0):
        return st, None
    acq_cash = size_limit * adj_price
    fees_paid = acq_cash * fees + 0.0
    final_acq_cash = add(acq_cash, -fees_paid)
    if final_acq_cash < 0:
        return st, None
    new_cash = st.cash + final_acq_cash
    new_position = add(st.position, -size_limit)
    if new_position < 0:
        short_size = size_limit if st.position < 0 else abs(new_position)
        short_value = short_size * adj_price
        new_debt = st.debt + short_value
        free_cash_diff = add(final_acq_cash, -2 * short_value)
        new_free_cash = add(st.free_cash, free_cash_diff)
    else:
        new_debt = st.debt
        new_free_cash = st.free_cash + final_acq_cash
    return Exec(new_cash, new_position, new_debt, new_free_cash), Result(size_limit, adj_price, fees_paid, -1)


def execute(
    st: Exec, size: float, size_type: str, direction: int, price: float, val_price: float, fees: float, slippage: float
) -> tuple[Exec, Result | None]:
    """vectorbt's ``execute_order_nb`` for one order (sign of ``size`` = side)."""
    # numerical stability, as vectorbt snaps near-zero state before each order
    cash = 0.0 if is_close(st.cash, 0) else st.cash
    position = 0.0 if is_close(st.position, 0) else st.position
    debt = 0.0 if is_close(st.debt, 0) else st.debt
    free_cash = 0.0 if is_close(st.free_cash, 0) else st.free_cash
    st = Exec(cash, position, debt, free_cash)
    if math.isnan(size) or math.isnan(price):
        return st, None
    if cash < 0 or math.isnan(cash):
        raise ValueError("cash cannot be NaN and must be >= 0")
    if not math.isfinite(price) or price <= 0:
        raise ValueError(f"order price must be finite and > 0, got {price!r}")
    order_size = size
    if size_type == "value":
        if math.isnan(val_price):
            return st, None
        order_size /= val_price
        size_type = "amount"
    if size_type == "amount" and direction in (SHORT_ONLY, BOTH) and order_size < 0 and math.isinf(order_size):
        order_size = -1.0
        size_type = "percent"
    percent = math.nan
    if size_type == "percent":
        percent = abs(order_size)
        order_size = _sign(order_size) * math.inf
    if order_size > 0:
        return buy(st, order_size, price, direction, fees, slippage, percent)
    return sell(st, -order_size, price, direction, fees, slippage, percent)


def _check_percent_reverse(size: float) -> None:
    if size != 1.0:
        raise ValueError("percent sizing below 1.0 cannot reverse a position")


def signals_to_size(
    position: float,
    long_entry: bool,
    long_exit: bool,
    short_entry: bool,
    short_exit: bool,
    size: float,
    size_type: str,
    val_price: float,
) -> tuple[float, str, int]:
    """vectorbt's ``signals_to_size_nb``: (signed size, size type, direction).

    Without accumulation, except that an opposite entry with percent sizing takes the
    "removeonly" branch (one percent order in both directions), as :meth:`FillModel.vectorbt_kwargs`
    sets it; exits of the whole position trade the same quantity either way.
    """
    order_size = 0.0
    direction = BOTH
    abs_position = abs(position)
    if position > 0:
        if short_entry:
            if size_type == "percent":
                # accumulate="removeonly": one percent sell in both directions reverses (size 1.0 only)
                _check_percent_reverse(size)
                order_size = -size
            else:
                order_size = -abs_position
                if not math.isnan(size):
                    order_size -= size / val_price if size_type == "value" else size
                size_type = "amount"
        elif long_exit:
            direction = LONG_ONLY
            order_size = -abs_position
            size_type = "amount"
        elif long_entry:
            direction = LONG_ONLY
    elif position < 0:
        if long_entry:
            if size_type == "percent":
                _check_percent_reverse(size)
                order_size = size
            else:
                order_size = abs_position
                if not math.isnan(size):
                    order_size += size / val_price if size_type == "value" else size
                size_type = "amount"
        elif short_exit:
            direction = SHORT_ONLY
            order_size = abs_position
            size_type = "amount"
        elif short_entry:
            direction = SHORT_ONLY
    elif long_entry:
        order_size = size
    elif short_entry:
        order_size = -size
    return order_size, size_type, direction


def stop_price(
    position: float, init_price: float, stop: float, open_: float, low: float, high: float, hit_below: bool
) -> float:
    """vectorbt's ``get_stop_price_nb``: the fill price of a triggered stop, or NaN if not triggered."""
    if (position > 0 and hit_below) or (position < 0 and not hit_below):
        p = init_price * (1 - stop)
        if open_ <= p:
            return open_
        if low <= p <= high:
            return p
        return math.nan
    if (position < 0 and hit_below) or (position > 0 and not hit_below):
        p = init_price * (1 + stop)
        if p <= open_:
            return open_
        if low <= p <= high:
            return p
        return math.nan
    return math.nan
