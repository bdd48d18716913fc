"""Pre-trade risk limits as pure functions: checked before every live order, no I/O.

Limits (``None``: no limit), in the quote asset:

* per strategy: ``max_order_notional`` (one order) and ``max_position_notional`` (its position
  after the order, at the reference price);
* per user: ``max_exposure`` (the sum of the user's live positions after the order) and
  ``max_daily_loss`` (the user's P&L since 00:00 UTC, realised plus unrealised: reaching
  ``-max_daily_loss`` halts every live strategy of the user).

The rules, in order (:func:`check_order`): a halted user places nothing but the orders of a
flatten; a daily loss at the limit asks for the halt and refuses the order unless it is an exit;
an order that only
reduces a long position (a sell, spot being long-only) is always allowed, since refusing an
exit would add risk rather than limit it; any other order must fit every notional limit. A
refusal carries its reason, which is recorded with the order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _limit(name: str, v: float | None) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive number or None, got {v!r}")
    return float(v)


@dataclass(frozen=True, slots=True)
class StrategyLimits:
    max_order_notional: float | None = None
    max_position_notional: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_order_notional", "max_position_notional"):
            object.__setattr__(self, name, _limit(name, getattr(self, name)))


@dataclass(frozen=True, slots=True)
class UserLimits:
    max_exposure: float | None = None
    max_daily_loss: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_exposure", "max_daily_loss"):
            object.__setattr__(self, name, _limit(name, getattr(self, name)))


@dataclass(frozen=True, slots=True)
class Book:
    """What the check needs to know, valued at the reference price, before the order."""

    position_notional: float  # this strategy's position
    user_exposure: float  # all the user's live positions, this one included
    user_day_pnl: float  # since 00:00 UTC, realised + unrealised (negative: a loss)
    user_halted: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""
    halt_user: bool = False  # the daily loss limit is reached: halt the user's live strategies


OK = Verdict(True)


def daily_loss_reached(day_pnl: float, limits: UserLimits) -> bool:
    """Whether the user's P&L today is at or beyond ``-max_daily_loss`` (checked on every candle too)."""
    return limits.max_daily_loss is not None and day_pnl <= -limits.max_daily_loss


def check_order(
    side: str, notional: float, book: Book, strategy: StrategyLimits, user: UserLimits, *, flatten: bool = False
) -> Verdict:
    """Whether an order of ``notional`` (quote asset, > 0) on ``side`` may be sent; see the module docstring."""
    if side not in ("BUY", "SELL"):
        raise ValueError(f"side must be BUY or SELL, got {side!r}")
    if not math.isfinite(notional) or notional <= 0:
        raise ValueError(f"notional must be a positive number, got {notional!r}")
    if book.user_halted and not flatten:
        return Verdict(False, "the user's live trading is halted")
    if daily_loss_reached(book.user_day_pnl, user):
        if side == "SELL":  # an exit lowers the loss at risk; the halt still stops every entry
            return Verdict(True, halt_user=True)
        return Verdict(False, f"daily loss {-book.user_day_pnl:g} reached the limit {user.max_daily_loss:g}",
                       halt_user=True)  # fmt: skip
    if side == "SELL":
        return OK
    if strategy.max_order_notional is not None and notional > strategy.max_order_notional:
        return Verdict(False, f"order notional {notional:g} over the strategy's limit {strategy.max_order_notional:g}")
    after = book.position_notional + notional
    if strategy.max_position_notional is not None and after > strategy.max_position_notional:
        return Verdict(False, f"position notional {after:g} would exceed the strategy's limit "
                              f"{strategy.max_position_notional:g}")  # fmt: skip
    exposure = book.user_exposure + notional
    if user.max_exposure is not None and exposure > user.max_exposure:
        return Verdict(False, f"the user's exposure {exposure:g} would exceed the limit {user.max_exposure:g}")
    return OK
