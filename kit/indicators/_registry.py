"""The one registry of indicators: name -> incremental class and batch function.

Every indicator, built-in or a user's, is registered here explicitly under its name, the name
:func:`~kit.indicators.spec` takes; registering a name twice, a class that is not an
:class:`Indicator`, or a function kit cannot read fails at once with a message naming the
problem. Given one form, kit derives the other:

- **an incremental class** (``step`` O(1) per bar): the batch function runs it over the arrays;
- **a batch function** over whole arrays plus ``window`` (the bars its value at bar ``i``
  depends on): the incremental form keeps the last ``window`` bars in a ring buffer and
  calls the function on them, taking the last value (O(window) per bar).

``check()`` (:mod:`kit.indicators._check`) proves the two forms agree on real data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kit.indicators._base import Indicator, IndicatorError
from kit.indicators._derive import Size, batch_from_incremental, incremental_from_batch, wrap_batch

_NAME_RE = re.compile(r"[a-z][a-z0-9_]*\Z")


@dataclass(frozen=True)
class Registration:
    """One registered indicator.

    ``incremental`` is an :class:`Indicator` subclass; ``batch(*inputs, *params)`` takes NumPy
    arrays or pandas Series (NaN bars skipped, Series out for Series in); ``derived`` says
    which of the two kit built (``"batch"``, ``"incremental"``) or None when both were given;
    ``group`` is ``"core"`` (kit's indicators checked against TA-Lib), ``"example"`` or ``"custom"``.
    """

    name: str
    incremental: type[Indicator]
    batch: Callable[..., Any]
    group: str
    derived: str | None

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.incremental.inputs

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.incremental.outputs


_REGISTRY: dict[str, Registration] = {}


def registration(name: str) -> Registration:
    """The registration of ``name``, else an error listing the known names."""
    got = _REGISTRY.get(name) if isinstance(name, str) else None
    if got is None:
        raise IndicatorError(
            f"name: unknown indicator {name!r}; expected one of {', '.join(_REGISTRY)} "
            "(or register it with kit.indicators.register)"
        )
    return got


def names(group: str | None = None) -> tuple[str, ...]:
    """Registered indicator names in registration order (only ``group``'s when given)."""
    return tuple(n for n, r in _REGISTRY.items() if group is None or r.group == group)


def register(
    name: str,
    *,
    batch: Callable[..., Any] | None = None,
    incremental: type[Indicator] | None = None,
    window: Size | None = None,
    warmup: Size | None = None,
    inputs: tuple[str, ...] | None = None,
    outputs: tuple[str, ...] | None = None,
    replace: bool = False,
    group: str = "custom",
) -> Callable[[Any], Any]:
    """Register an indicator under ``name``; a decorator for its class or its batch function.

    ::

        @kit.indicators.register("hma")                    # an Indicator subclass: batch derived
        class HMA(Indicator): ...

        @kit.indicators.register("zscore", window="period")  # a batch function: incremental derived
        def zscore(close, period=20): ...

        kit.indicators.register("mine", batch=mine)(Mine)  # both forms (check() compares them)

    The decorated object is returned unchanged. A class is the incremental form (``inputs``,
    ``outputs`` and ``result`` come from it); a function is the batch form: its leading
    parameters named like candle columns (``close``, ``high``...) are its inputs, the rest its
    parameters; it returns one array (or a tuple, with ``outputs=``) as long as its inputs.

    Args:
        batch / incremental: the other form, when you have both.
        window: for a batch function alone: bars the value at ``i`` depends on (``x[i-window+1..i]``),
            an int, a parameter name (``"period"``) or a function of the parameters.
        warmup: for a batch function alone: leading NaN outputs (default ``window - 1``).
        inputs / outputs: for a batch function: input columns (default from its signature) and
            output names (default ``(name,)``).
        replace: replace a custom indicator already registered under ``name``.
        group: ``"custom"``, or ``"example"`` for the ones kit ships (``"core"`` is kit's own).
    """

    def deco(obj: Any) -> Any:
        inc, fn = incremental, batch
        if isinstance(obj, type):
            if inc is not None:
                raise IndicatorError(f"register: {name}: decorating a class and passing incremental= too")
            inc = obj
        elif callable(obj):
            if fn is not None:
                raise IndicatorError(f"register: {name}: decorating a function and passing batch= too")
            fn = obj
        else:
            raise IndicatorError(f"register: {name}: expected an Indicator subclass or a batch function, got {obj!r}")
        _add(name, inc, fn, window, warmup, inputs, outputs, replace, group)
        return obj

    return deco


def _add(
    name: str,
    inc: type[Indicator] | None,
    fn: Callable[..., Any] | None,
    window: Size | None,
    warmup: Size | None,
    inputs: tuple[str, ...] | None,
    outputs: tuple[str, ...] | None,
    replace: bool,
    group: str,
) -> Registration:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise IndicatorError(f"register: name must be lower-case letters, digits and _ (like 'hma'), got {name!r}")
    if group not in ("custom", "example"):
        raise IndicatorError(f"register: {name}: group must be 'custom' or 'example', got {group!r}")
    old = _REGISTRY.get(name)
    if old is not None and (not replace or old.group == "core"):
        what = "a built-in indicator" if old.group == "core" else "already registered; pass replace=True"
        raise IndicatorError(f"register: {name!r} is {what}")
    if inc is not None:
        if not (isinstance(inc, type) and issubclass(inc, Indicator)):
            raise IndicatorError(f"register: {name}: {inc!r} is not a kit.indicators.Indicator subclass")
        if not inc.outputs or not inc.inputs or not all(isinstance(c, str) and c for c in inc.inputs):
            raise IndicatorError(f"register: {name}: {inc.__name__} must set inputs and outputs (tuples of names)")
        if len(inc.outputs) > 1 and inc.result is None:
            raise IndicatorError(
                f"register: {name}: {inc.__name__} has several outputs and needs result (a NamedTuple)"
            )
        if window is not None or warmup is not None or inputs is not None or outputs is not None:
            raise IndicatorError(
                f"register: {name}: window=, warmup=, inputs= and outputs= are for a batch function alone "
                f"({inc.__name__} declares its own)"
            )
    if fn is not None and not callable(fn):
        raise IndicatorError(f"register: {name}: batch must be a function, got {fn!r}")
    if inc is None and fn is None:
        raise IndicatorError(f"register: {name}: give an incremental class, a batch function, or both")
    derived = None
    if inc is None:
        assert fn is not None
        inc = incremental_from_batch(name, fn, window, warmup, inputs, outputs)
        derived = "incremental"
    if fn is None:
        batch_fn = batch_from_incremental(name, inc)
        derived = "batch"
    else:
        batch_fn = wrap_batch(name, fn, inc.inputs, inc.outputs, inc.result)
    reg = Registration(name, inc, batch_fn, group, derived)
    _REGISTRY[name] = reg
    return reg


def add_builtin(name: str, incremental: type[Indicator], batch: Callable[..., Any]) -> None:
    """Register one of kit's own indicators: a class and a batch function written for each other."""
    if name in _REGISTRY:
        raise IndicatorError(f"register: {name!r} is registered twice")
    _REGISTRY[name] = Registration(name, incremental, batch, "core", None)
