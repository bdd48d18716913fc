"""The incremental indicator base class and parameter validation shared by both forms."""

from __future__ import annotations

import math
import operator
from typing import Any, ClassVar

NAN = math.nan


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a ``ValueError`` naming the parameter."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v}")
    return int(v)


def check_positive(name: str, value: Any) -> float:
    """``value`` as a finite float > 0, else a ``ValueError`` naming the parameter."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0, got {value!r}") from None
    if not (v > 0.0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


class Indicator:
    """Base of every incremental indicator.

    Subclasses define ``update(*bar_inputs)`` (O(1) per bar; NaN during warm-up; a
    NamedTuple for multi-output indicators), ``params`` (the normalised constructor
    arguments) and ``warmup`` (number of leading NaN outputs, TA-Lib's lookback).

    A bar with a NaN in any input is skipped: ``update`` returns NaN (or a tuple of
    NaN) for it and leaves the state unchanged. The batch functions do the same.
    """

    __slots__ = ()
    #: input column names in ``update`` order
    inputs: ClassVar[tuple[str, ...]] = ("close",)
    #: output names; a single-output indicator has one
    outputs: ClassVar[tuple[str, ...]] = ()
    #: per-class cache of every slot name in the MRO, for copy()
    _all_slots: ClassVar[tuple[str, ...] | None] = None

    params: tuple[Any, ...]
    warmup: int

    def update(self, *bar: float) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def peek(self, *bar: float) -> Any:
        """The value ``update(*bar)`` would return, without changing the state (forming candles)."""
        return self.copy().update(*bar)

    def reset(self) -> None:
        """Back to the freshly constructed state."""
        type(self).__init__(self, *self.params)  # type: ignore[misc]

    def copy(self) -> Indicator:
        """An independent copy of the current state (snapshot); O(window) memory."""
        cls = type(self)
        slots = cls.__dict__.get("_all_slots")
        if slots is None:
            names: list[str] = []
            for klass in cls.__mro__:
                for s in klass.__dict__.get("__slots__", ()):
                    if s not in names:
                        names.append(s)
            slots = tuple(names)
            cls._all_slots = slots
        new = object.__new__(cls)
        for s in slots:
            v = getattr(self, s)
            if hasattr(v, "copy"):  # deques, lists, nested indicators and rolling helpers
                v = v.copy()
            setattr(new, s, v)
        return new

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.params))})"
