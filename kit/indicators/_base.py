"""The incremental indicator base class, its one NaN guard, and parameter validation for both forms.

An indicator writes ``step(*bar)``: one bar whose inputs are all numbers. The base class
derives ``update(*bar)`` from it by putting the NaN guard in front (a bar with NaN in any
input returns :attr:`Indicator.nan` and leaves the state unchanged), so the guard exists once
here instead of once per class. Callers that already know a bar is clean call ``step``
directly: nested indicators (DEMA's EMAs) and the engine, which checks each candle's columns
once for all the specs reading them.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, ClassVar

from kit.errors import InputError

NAN = math.nan


class IndicatorError(InputError):
    """A bad indicator parameter, name or registration: the user's to fix (one line at the CLI).

    An :class:`~kit.errors.InputError`, so also a ``ValueError``, which is what the indicator
    functions have always raised.
    """


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else an error naming the parameter."""
    if isinstance(value, bool):
        raise IndicatorError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise IndicatorError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if v < minimum:
        raise IndicatorError(f"{name} must be an integer >= {minimum}, got {v}")
    return int(v)


def check_positive(name: str, value: Any) -> float:
    """``value`` as a finite float > 0, else an error naming the parameter."""
    if isinstance(value, bool):
        raise IndicatorError(f"{name} must be a number > 0, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise IndicatorError(f"{name} must be a number > 0, got {value!r}") from None
    if not (v > 0.0 and math.isfinite(v)):
        raise IndicatorError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def nan_guard(step: Callable[..., Any], arity: int, nan: Any) -> Callable[..., Any]:
    """``update`` for ``step``: ``nan`` for a bar with a NaN in any input, else ``step(self, *bar)``.

    The NaN guard of every indicator. ``x != x`` is the cheapest NaN test in CPython; the
    fixed-arity variants avoid packing ``*bar`` into a tuple on the hot path (an ``update``
    costs 0.1-0.5 µs, so the packing would be measurable).
    """
    if arity == 1:

        def update(self: Any, x: float) -> Any:
            if x != x:
                return nan
            return step(self, x)

    elif arity == 2:

        def update(self: Any, a: float, b: float) -> Any:  # type: ignore[misc]
            if a != a or b != b:
                return nan
            return step(self, a, b)

    elif arity == 3:

        def update(self: Any, a: float, b: float, c: float) -> Any:  # type: ignore[misc]
            if a != a or b != b or c != c:
                return nan
            return step(self, a, b, c)

    elif arity == 4:

        def update(self: Any, a: float, b: float, c: float, d: float) -> Any:  # type: ignore[misc]
            if a != a or b != b or c != c or d != d:
                return nan
            return step(self, a, b, c, d)

    elif arity == 5:

        def update(self: Any, a: float, b: float, c: float, d: float, e: float) -> Any:  # type: ignore[misc]
            if a != a or b != b or c != c or d != d or e != e:
                return nan
            return step(self, a, b, c, d, e)

    else:

        def update(self: Any, *bar: float) -> Any:  # type: ignore[misc]
            for v in bar:
                if v != v:
                    return nan
            return step(self, *bar)

    update.__doc__ = "One bar (inputs in ``inputs`` order) -> the new value; a bar with a NaN input is skipped."
    return update


class Indicator:
    """Base of every incremental indicator.

    Subclasses set ``inputs`` (candle columns, in ``step`` order), ``outputs`` and, for more
    than one output, ``result`` (a NamedTuple type); their ``__init__`` sets ``params`` (the
    normalised constructor arguments) and ``warmup`` (number of leading NaN outputs, TA-Lib's
    lookback); ``step(*bar)`` advances by one bar whose inputs are not NaN, O(1), and returns
    NaN (or :attr:`nan`) during the warm-up.

    ``update(*bar)`` is ``step`` behind the one NaN guard (:func:`nan_guard`): a bar with a NaN
    in any input returns :attr:`nan` and leaves the state unchanged, as the batch functions
    skip it too. A subclass that writes ``update`` itself (its own NaN handling) gets it as
    ``step`` as well.
    """

    __slots__ = ()
    #: input column names in ``update`` order
    inputs: ClassVar[tuple[str, ...]] = ("close",)
    #: output names; a single-output indicator has one
    outputs: ClassVar[tuple[str, ...]] = ()
    #: NamedTuple type returned by a multi-output indicator (None: one float)
    result: ClassVar[type | None] = None
    #: what ``update`` returns for a skipped bar: NaN, or ``result`` filled with NaN
    nan: ClassVar[Any] = NAN
    #: per-class cache of every slot name in the MRO, for copy()
    _all_slots: ClassVar[tuple[str, ...] | None] = None

    params: tuple[Any, ...]
    warmup: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if cls.result is not None:
            cls.nan = cls.result(*([NAN] * len(cls.result._fields)))  # type: ignore[attr-defined]
        if "update" in own and "step" not in own:
            cls.step = own["update"]  # type: ignore[method-assign]
        elif "update" not in own:
            cls.update = nan_guard(cls.step, len(cls.inputs), cls.nan)  # type: ignore[method-assign]

    def step(self, *bar: float) -> Any:  # pragma: no cover - abstract
        """One bar with no NaN input -> the new value (NaN during the warm-up)."""
        raise NotImplementedError(f"{type(self).__name__} must define step() or update()")

    def update(self, *bar: float) -> Any:  # pragma: no cover - replaced in every subclass
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
            if hasattr(v, "copy"):  # deques, lists, arrays, nested indicators and rolling helpers
                v = v.copy()
            setattr(new, s, v)
        return new

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.params))})"
