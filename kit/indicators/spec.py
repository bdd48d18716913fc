"""IndicatorSpec: the hashable identity of an indicator instance (name, params, input columns).

Equal specs are one computation in the engine, whoever asked for them::

    s = spec("rsi", 14)          # IndicatorSpec(name='rsi', params=(14,), inputs=('close',))
    s.key                        # 'rsi(14)'  (a column name; spec("rsi", 14, source="open").key == 'rsi(open,14)')
    s.columns                    # ('rsi(14)',); macd -> ('macd(12,26,9).macd', '...signal', '...hist')
    s.make().update(101.5)       # a fresh incremental instance
    s.batch(frame)               # {'rsi': array} over a candle frame
    parse_spec("macd(12,26,9)")  # back from a key

Parameters are normalised through the indicator's constructor, so ``spec("bbands", 20, 2)``
and ``spec("bbands", 20, 2.0, 2.0)`` are the same spec, and bad ones raise :class:`IndicatorError` (a ``ValueError``).
Any registered indicator has a spec: the built-ins, ``hma`` and ``zscore``, and your own.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from kit.indicators._base import Indicator, IndicatorError
from kit.indicators._registry import registration


def _fmt(p: Any) -> str:
    return repr(p) if isinstance(p, float) else str(p)


class IndicatorSpec:
    """Hashable identity of an indicator: ``name``, normalised ``params``, ``inputs`` columns."""

    __slots__ = ("_hash", "_proto", "inputs", "key", "name", "params")

    name: str
    params: tuple[Any, ...]
    inputs: tuple[str, ...]
    key: str

    def __init__(self, name: str, params: tuple[Any, ...] = (), inputs: tuple[str, ...] | None = None) -> None:
        cls = registration(name).incremental
        proto = cls(*params)
        default = cls.inputs
        if inputs is None:
            inputs = default
        else:
            inputs = tuple(inputs)
            if len(inputs) != len(default) or not all(isinstance(c, str) and c for c in inputs):
                raise IndicatorError(f"inputs: {name} takes {len(default)} input columns {default}, got {inputs!r}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", proto.params)
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "_proto", proto)
        args = [*(inputs if inputs != default else ()), *map(_fmt, proto.params)]
        object.__setattr__(self, "key", f"{name}({','.join(args)})")
        object.__setattr__(self, "_hash", hash((name, proto.params, inputs)))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("IndicatorSpec is immutable")

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, IndicatorSpec):
            return NotImplemented
        return self.key == other.key

    def __lt__(self, other: IndicatorSpec) -> bool:
        return self.key < other.key

    def __repr__(self) -> str:
        return f"IndicatorSpec(name={self.name!r}, params={self.params!r}, inputs={self.inputs!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (IndicatorSpec, (self.name, self.params, self.inputs))

    @property
    def outputs(self) -> tuple[str, ...]:
        """Output names: ``("rsi",)`` or ``("macd", "signal", "hist")``."""
        return type(self._proto).outputs

    @property
    def columns(self) -> tuple[str, ...]:
        """Column names: ``("rsi(14)",)`` or ``("macd(12,26,9).macd", "macd(12,26,9).signal", ...)``."""
        outs = self.outputs
        if len(outs) == 1:
            return (self.key,)
        return tuple(f"{self.key}.{o}" for o in outs)

    @property
    def warmup(self) -> int:
        """Number of leading NaN outputs (TA-Lib's lookback): the first value is at index ``warmup``."""
        return self._proto.warmup

    def make(self) -> Indicator:
        """A fresh incremental instance."""
        return type(self._proto)(*self.params)

    def batch(self, frame: Any) -> dict[str, np.ndarray]:
        """Output name -> array over a candle frame (``open_time`` comes from its index)."""
        cols = [column(frame, c) for c in self.inputs]
        result = registration(self.name).batch(*cols, *self.params)
        outs = self.outputs
        if len(outs) == 1:
            return {outs[0]: np.asarray(result)}
        return {o: np.asarray(v) for o, v in zip(outs, result, strict=True)}

    def frame_columns(self, frame: Any) -> dict[str, np.ndarray]:
        """Like :meth:`batch` but keyed by :attr:`columns` (for building a wide frame)."""
        return dict(zip(self.columns, self.batch(frame).values(), strict=True))


def column(frame: Any, name: str) -> np.ndarray:
    if name == "open_time":  # the candle frame's DatetimeIndex, else an "open_time" column/key (ms)
        idx = getattr(frame, "index", None)
        if hasattr(idx, "as_unit"):
            return np.asarray(idx.as_unit("ms").asi8, dtype=np.int64)
        return np.asarray(frame["open_time"], dtype=np.int64)
    return np.asarray(frame[name], dtype=np.float64)


def spec(name: str, *params: Any, source: str | None = None, **kwparams: Any) -> IndicatorSpec:
    """``spec("rsi", 14)``, ``spec("bbands", period=20, nbdevup=2.0)``; ``source="open"`` reads
    another column (single-input indicators). Parameters are those of the batch function."""
    if kwparams:
        cls = registration(name).incremental
        try:
            params = cls(*params, **kwparams).params
        except TypeError as exc:
            raise IndicatorError(f"params: {name}: {exc}") from None
    if source is None:
        return IndicatorSpec(name, params)
    s = IndicatorSpec(name, params)
    if len(s.inputs) != 1:
        raise IndicatorError(f"source: {name} reads {s.inputs}; source= applies to single-input indicators only")
    if not isinstance(source, str) or not source:
        raise IndicatorError(f"source must be a column name, got {source!r}")
    return IndicatorSpec(name, s.params, (source,))


_KEY_RE = re.compile(r"^([a-z][a-z0-9_]*)\((.*)\)$")


def parse_spec(key: str) -> IndicatorSpec:
    """The spec whose :attr:`IndicatorSpec.key` is ``key`` (``"rsi(14)"``, ``"rsi(open,14)"``)."""
    m = _KEY_RE.match(key.strip())
    if not m:
        raise IndicatorError(f"key: cannot parse indicator key {key!r}; expected like 'rsi(14)'")
    name, body = m.groups()
    cols: list[str] = []
    params: list[Any] = []
    for tok in filter(None, (t.strip() for t in body.split(","))):
        if re.fullmatch(r"[+-]?\d+", tok):
            params.append(int(tok))
        else:
            try:
                params.append(float(tok))
            except ValueError:
                cols.append(tok)
    return IndicatorSpec(name, tuple(params), tuple(cols) if cols else None)
