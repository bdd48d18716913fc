"""Resolving a strategy's ``lookback``: a constant, a parameter, a property, a method, or derived.

The live evaluator hands ``signals()`` the last ``lookback`` rows, so this number decides whether
live signals can equal the backtest's. It may depend on the parameters (a rolling window of
``n`` rows needs ``lookback >= n``), hence the forms accepted here; left out (``None``), it is
derived from the indicator specs, which is right for rules that compare indicator values over
a few rows and is checked, like every other form, by :func:`kit.strategy.check_parity`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kit.errors import InputError


def _checked(value: Any, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{owner}.lookback must be an integer >= 1, got {value!r}")
    return int(value)


def declared_lookback(strategy: Any) -> int | None:
    """The lookback ``strategy`` declares for its parameters, ``None`` when it declares none.

    Reads ``strategy.lookback``: an int (class attribute, ``Param`` or property) or a method
    returning one. A property or method that raises is the user's input error, one line.
    """
    owner = type(strategy).__name__
    try:
        value = strategy.lookback
        if callable(value):
            value = value()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{owner}.lookback failed for {strategy!r}: {type(exc).__name__}: {exc}") from None
    return None if value is None else _checked(value, owner)


def derived_lookback(specs: Iterable[Any]) -> int:
    """A lookback from indicator specs: one row more than the longest warm-up, at least 2.

    Two rows cover a crossover of any two columns; warm-up + 1 rows cover rules that look over
    the same span as their indicators (the window an indicator of period ``n`` reads).
    """
    warm = [int(getattr(s, "warmup", 0) or 0) for s in specs]
    return max(2, max(warm, default=0) + 1)
