"""Deriving the missing form of a registered indicator.

- :func:`batch_from_incremental`: the batch function runs the incremental class over the
  arrays (a Python loop: ~0.3 µs per bar and indicator).
- :func:`incremental_from_batch`: the incremental class keeps the last ``window`` bars in a
  ring buffer (a 2 x window array written twice, so the window is always one contiguous
  slice) and calls the batch function on them, taking the last value. O(window) per bar plus
  the function's own overhead; exact when the value at bar ``i`` depends on at most the last
  ``window`` bars, which :func:`kit.indicators.check` verifies on real data.
- :func:`wrap_batch`: a user's batch function behind kit's conventions (NaN bars skipped,
  pandas in -> pandas out, output shapes checked).
"""

from __future__ import annotations

import collections
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from kit.indicators import _batch
from kit.indicators._base import Indicator, IndicatorError, check_int

#: candle columns an indicator can read (a batch function's leading parameters with these names are its inputs)
CANDLE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")

#: ``window`` / ``warmup`` of a batch function: a number, a parameter name, or a function of the params
Size = int | str | Callable[..., int]


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def batch_from_incremental(name: str, cls: type[Indicator]) -> Callable[..., Any]:
    n_in = len(cls.inputs)
    outputs = cls.outputs
    result = cls.result
    multi = len(outputs) > 1
    times = tuple(i for i, c in enumerate(cls.inputs) if c == "open_time")

    def batch(*args: Any, **params: Any) -> Any:
        if len(args) < n_in:
            raise IndicatorError(f"{name}: expected {n_in} input arrays {cls.inputs}, got {len(args)}")
        ind = cls(*args[n_in:], **params)
        index, arrs, _ = _batch.prepare(args[:n_in], ())
        cols: list[list[Any]] = [a.tolist() for a in arrs]
        for i in times:  # open times are ints to the indicator, as the engine passes them
            cols[i] = [int(t) for t in cols[i]]
        upd = ind.update  # the NaN guard skips NaN bars, as every batch function does
        values = [upd(*bar) for bar in zip(*cols, strict=True)]
        if multi:
            outs = [np.array([v[j] for v in values], dtype=np.float64) for j in range(len(outputs))]
        else:
            outs = [np.array(values, dtype=np.float64)]
        got = _batch.finish(outs, index, outputs)
        return result(*got) if multi and result is not None else got

    batch.__name__ = batch.__qualname__ = name
    batch.__doc__ = f"{name} over whole arrays, by running the incremental {cls.__name__} bar by bar."
    return batch


def wrap_batch(
    name: str, fn: Callable[..., Any], inputs: tuple[str, ...], outputs: tuple[str, ...], result: type | None
) -> Callable[..., Any]:
    n_in = len(inputs)

    def batch(*args: Any, **params: Any) -> Any:
        if len(args) < n_in:
            raise IndicatorError(f"{name}: expected {n_in} input arrays {inputs}, got {len(args)}")
        call = fn if not params else (lambda *a: fn(*a, **params))
        got = _batch.apply(name, call, args[:n_in], args[n_in:], outputs)
        return result(*got) if len(outputs) > 1 and result is not None else got

    batch.__name__ = batch.__qualname__ = name
    batch.__doc__ = fn.__doc__
    batch.__wrapped__ = fn  # type: ignore[attr-defined]
    return batch


def _size(name: str, what: str, size: Size | None, pnames: tuple[str, ...]) -> Callable[..., int] | None:
    """``size`` as a function of the parameters."""
    if size is None:
        return None
    if isinstance(size, bool):
        raise IndicatorError(f"register: {name}: {what} must be an int, a parameter name or a function, got {size!r}")
    if isinstance(size, int):
        n = size
        return lambda *p: n
    if isinstance(size, str):
        if size not in pnames:
            raise IndicatorError(f"register: {name}: {what}={size!r} is not a parameter of the function {pnames}")
        j = pnames.index(size)
        return lambda *p: p[j]
    if callable(size):
        return size
    raise IndicatorError(f"register: {name}: {what} must be an int, a parameter name or a function, got {size!r}")


def incremental_from_batch(
    name: str,
    fn: Callable[..., Any],
    window: Size | None,
    warmup: Size | None,
    inputs: tuple[str, ...] | None,
    outputs: tuple[str, ...] | None,
) -> type[Indicator]:
    try:
        sig_params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise IndicatorError(f"register: {name}: cannot read the signature of {fn!r}") from None
    if inputs is None:
        lead = []
        for p in sig_params:
            if p.name not in CANDLE_COLUMNS or p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                break
            lead.append(p.name)
        ins = tuple(lead)
    else:
        ins = tuple(inputs)
    if not ins or not all(isinstance(c, str) and c for c in ins) or len(ins) > len(sig_params):
        raise IndicatorError(
            f"register: {name}: the batch function's first parameters must be its input columns "
            f"({', '.join(CANDLE_COLUMNS)}) or pass inputs=; got {[p.name for p in sig_params]}"
        )
    rest = sig_params[len(ins) :]
    if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in rest):
        raise IndicatorError(
            f"register: {name}: parameters after the inputs must be plain (no *args, **kw, keyword-only)"
        )
    pnames = tuple(p.name for p in rest)
    psig = inspect.Signature(rest)
    outs = tuple(outputs) if outputs is not None else (name,)
    if not outs or not all(isinstance(o, str) and o.isidentifier() for o in outs):
        raise IndicatorError(f"register: {name}: outputs must be a tuple of identifiers, got {outputs!r}")
    win = _size(name, "window", window, pnames)
    if win is None:
        raise IndicatorError(
            f"register: {name}: a batch function alone needs window= (the bars its value at i depends on) "
            "to derive the incremental form"
        )
    wu = _size(name, "warmup", warmup, pnames)
    multi = len(outs) > 1
    result_type = collections.namedtuple(f"{_class_name(name)}Result", outs) if multi else None  # type: ignore[misc]
    n_in = len(ins)

    class Rolling(Indicator):
        __slots__ = ("_buf", "_n", "_pos", "params", "warmup", "window")
        inputs = ins
        outputs = outs
        result = result_type

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            try:
                bound = psig.bind(*args, **kwargs)
            except TypeError as exc:
                raise IndicatorError(f"params: {name}: {exc}") from None
            bound.apply_defaults()
            self.params = tuple(bound.arguments[p] for p in pnames)
            w = check_int("window", win(*self.params), 1)
            self.window = w
            self.warmup = w - 1 if wu is None else check_int("warmup", wu(*self.params), 0)
            self._buf = np.zeros((n_in, 2 * w))
            self._n = 0
            self._pos = 0

        def step(self, *bar: float) -> Any:
            w = self.window
            p = self._pos
            buf = self._buf
            buf[:, p] = bar  # each bar twice: the last window is always buf[:, p+w-n+1 : p+w+1]
            buf[:, p + w] = bar
            self._pos = p + 1 if p + 1 < w else 0
            n = self._n
            if n < w:
                n += 1
                self._n = n
            lo = p + w - n + 1
            got = fn(*(buf[j, lo : p + w + 1] for j in range(n_in)), *self.params)
            if multi:
                return result_type(*(float(np.asarray(o)[-1]) for o in got))  # type: ignore[misc]
            return float(np.asarray(got)[-1])

    Rolling.__name__ = Rolling.__qualname__ = _class_name(name)
    Rolling.__doc__ = f"{name}, one bar at a time: the batch function over the last ``window`` bars (derived)."
    Rolling.__module__ = getattr(fn, "__module__", __name__)
    return Rolling
