"""IndicatorSpec: the hashable identity of an indicator instance (name, params, input columns).

Equal specs are one computation in the engine, whoever asked for them::

    s = spec("rsi", 14)          # IndicatorSpec(name='rsi', params=(14,), inputs=('close',))
    s.key                        # 'rsi(14)'  (a column name; spec("rsi", 14, source="open").key == 'rsi(open,14)')
    s.columns                    # ('rsi(14)',); macd -> ('macd(12,26,9).macd', '...signal', '...hist')
    s.make().update(101.5)       # a fresh incremental instance
    s.batch(frame)               # {'rsi': array} over a candle frame
    parse_spec("macd(12,26,9)")  # back from a key

Parameters are normalised through the indicator's constructor, so ``spec("bbands", 20, 2)``
and ``spec("bbands", 20, 2.0, 2.0)`` are the same spec, and bad ones raise ``ValueError``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from kit.indicators import incremental as inc
from kit.indicators._base import Indicator

#: indicator name -> incremental class; the batch function has the same (lower-case) name.
CLASSES: dict[str, type[Indicator]] = {}


def _register() -> None:
    for name in (
        "sma", "ema", "wma", "dema", "tema", "rsi", "macd", "bbands", "atr", "natr", "stoch", "stochrsi",
        "adx", "plus_di", "minus_di", "cci", "mfi", "obv", "willr", "roc", "sar", "vwap", "donchian",
        "keltner", "supertrend",
    ):  # fmt: skip
        cls = getattr(inc, name.upper(), None) or getattr(inc, _CAMEL.get(name, ""), None)
        if cls is not None:
            CLASSES[name] = cls


_CAMEL = {"plus_di": "PLUS_DI", "minus_di": "MINUS_DI", "donchian": "Donchian", "keltner": "Keltner",
          "supertrend": "SuperTrend", "vwap": "VWAP"}  # fmt: skip

_register()

#: every indicator name spec() accepts
NAMES: tuple[str, ...] = tuple(CLASSES)


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
        cls = CLASSES.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ValueError(f"name: unknown indicator {name!r}; expected one of {', '.join(NAMES)}")
        proto = cls(*params)
        default = cls.inputs
        if inputs is None:
            inputs = default
        else:
            inputs = tuple(inputs)
            if len(inputs) != len(default) or not all(isinstance(c, str) and c for c in inputs):
                raise ValueError(f"inputs: {name} takes {len(default)} input columns {default}, got {inputs!r}")
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
        from kit.indicators import batch as b

        cols = [_column(frame, c) for c in self.inputs]
        result = getattr(b, self.name)(*cols, *self.params)
        outs = self.outputs
        if len(outs) == 1:
            return {outs[0]: np.asarray(result)}
        return {o: np.asarray(v) for o, v in zip(outs, result, strict=True)}

    def frame_columns(self, frame: Any) -> dict[str, np.ndarray]:
        """Like :meth:`batch` but keyed by :attr:`columns` (for building a wide frame)."""
        return dict(zip(self.columns, self.batch(frame).values(), strict=True))


def _column(frame: Any, name: str) -> np.ndarray:
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
        cls = CLASSES.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ValueError(f"name: unknown indicator {name!r}; expected one of {', '.join(NAMES)}")
        try:
            params = cls(*params, **kwparams).params
        except TypeError as exc:
            raise ValueError(f"params: {name}: {exc}") from None
    if source is None:
        return IndicatorSpec(name, params)
    s = IndicatorSpec(name, params)
    if len(s.inputs) != 1:
        raise ValueError(f"source: {name} reads {s.inputs}; source= applies to single-input indicators only")
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be a column name, got {source!r}")
    return IndicatorSpec(name, s.params, (source,))


_KEY_RE = re.compile(r"^([a-z_]+)\((.*)\)$")


def parse_spec(key: str) -> IndicatorSpec:
    """The spec whose :attr:`IndicatorSpec.key` is ``key`` (``"rsi(14)"``, ``"rsi(open,14)"``)."""
    m = _KEY_RE.match(key.strip())
    if not m:
        raise ValueError(f"key: cannot parse indicator key {key!r}; expected like 'rsi(14)'")
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
