"""The Strategy base class: typed parameters, indicator needs, and rules written once over columns."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from kit.errors import InputError
from kit.strategy._columns import Columns
from kit.strategy._frame import check_frame, open_times_ms
from kit.strategy._lookback import declared_lookback, derived_lookback
from kit.strategy._param import Param
from kit.strategy._signals import STOP_FIELDS, Signals
from kit.strategy._streams import StreamColumn, check_streams, frame_interval, join_columns

_TYPES = {"int": int, "float": float, "bool": bool, "str": str, int: int, float: float, bool: bool, str: str}
CANDLE_COLUMNS = ("time", "open", "high", "low", "close", "volume")


_BOOL = np.dtype(np.bool_)


def _ok(a: Any, n: int) -> bool:
    return type(a) is np.ndarray and a.dtype is _BOOL and a.shape == (n,)


class _ClassPath:
    """``Strategy.path``: ``"module:Class"``, the address the daemon imports the class from."""

    def __get__(self, obj: Any, owner: type) -> str:
        return f"{owner.__module__}:{owner.__qualname__}"


def _output(value: Any, output: str | None, where: str) -> np.ndarray:
    """Pick one output column out of whatever a spec's batch function returned."""
    if output is None:
        if isinstance(value, Mapping) and not isinstance(value, pd.DataFrame):
            if len(value) != 1:
                raise ValueError(f"{where}: indicator has outputs {list(value)}; name one as (spec, output)")
            value = next(iter(value.values()))
        if isinstance(value, pd.DataFrame):
            if value.shape[1] != 1:
                raise ValueError(f"{where}: indicator has outputs {list(value.columns)}; name one as (spec, output)")
            value = value.iloc[:, 0]
        if isinstance(value, tuple) and not isinstance(value, np.ndarray):
            raise ValueError(f"{where}: indicator has several outputs; name one as (spec, output)")
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, pd.DataFrame | Mapping):
        return np.asarray(value[output], dtype=np.float64)
    return np.asarray(getattr(value, output), dtype=np.float64)


class Strategy:
    """Base class of every strategy. Subclass it, declare parameters, name indicators, write rules::

        class RsiReversion(Strategy):
            period: int = Param(14, ge=2, le=200, doc="RSI length")
            lower: float = Param(30.0, ge=0, le=100)
            upper: float = Param(70.0, ge=0, le=100)
            lookback = 2                                   # rows the rules look at

            def indicators(self):
                return {"rsi": spec("rsi", self.period)}

            def signals(self, d):
                return Signals(crossed_above(d.rsi, self.lower), crossed_below(d.rsi, self.upper))

    The same ``signals`` code runs over a whole frame (:mod:`kit.backtest`) and over the last
    ``lookback`` rows on each closed candle (:meth:`live`, used by replay and the daemon), so
    rules may only look backward, and no more than ``lookback - 1`` rows back. Optional class
    attributes (or parameters) ``stop_loss``, ``take_profit`` and ``trailing_stop`` are fractions of
    the entry price (the trailing stop's of the best price since the entry).

    ``lookback`` is an int class attribute, or depends on the parameters: a ``Param`` named
    ``lookback``, a property, or a method (``def lookback(self): return self.n + 1``). Left out,
    it is derived from the indicators: one row more than their longest warm-up, at least 2 (a
    crossover). :attr:`lookback_rows` is the resolved value the daemon, replay and ``kit.promote``
    use. ``kit.promote`` refuses, and ``kit.backtest.run`` warns about, a strategy whose live
    signals differ from its backtest's (a lookback too short, rules that look ahead): see
    :func:`kit.strategy.check_parity`.
    """

    #: Rows the rules need, counting the current one (a crossover needs 2); ``None``: derived.
    lookback: ClassVar[Any] = None
    #: Exit a position when price moves this fraction against the entry price (``None``: no stop).
    stop_loss: float | None = None
    #: Exit a position when price moves this fraction in favour of the entry price (``None``: none).
    take_profit: float | None = None
    #: Exit when price falls this fraction from the best price since the entry (``None``: none); takes
    #: the stop-loss's place when both are set.
    trailing_stop: float | None = None

    #: Extra streams the rules read, alias -> ``(symbol, interval)`` (symbol ``None``: its own);
    #: name their columns with :func:`kit.strategy.on`. See :mod:`kit.strategy._streams`.
    streams: ClassVar[Mapping[str, tuple[str | None, str]]] = {}

    path: ClassVar[str] = _ClassPath()  # type: ignore[assignment]
    _param_defs: ClassVar[dict[str, Param]] = {}
    _lookback_rows: int | None = None  # resolved lookback (see lookback_rows)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        defs: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            annotations = inspect.get_annotations(klass)
            for name, value in klass.__dict__.items():
                if isinstance(value, Param):
                    ann = annotations.get(name)
                    if isinstance(ann, str):
                        ann = ann.split("|")[0].strip()
                    t = _TYPES.get(ann)  # type: ignore[arg-type]
                    if t is not None:
                        value.type = t
                    defs[name] = value
                elif name in defs:
                    del defs[name]  # a subclass replaced the parameter with a constant
        cls._param_defs = defs
        cls.streams = check_streams(cls.__dict__.get("streams", cls.streams), cls.__name__)
        for p in defs.values():
            p.validate(p.default, cls.__name__)

    def __init__(self, **params: Any) -> None:
        cls = type(self)
        unknown = sorted(set(params) - set(cls._param_defs))
        if unknown:
            raise InputError(
                f"unknown parameter {unknown[0]!r} for {cls.__name__}; parameters are {sorted(cls._param_defs)}"
            )
        values = {}
        for name, p in cls._param_defs.items():
            values[name] = p.validate(params.get(name, p.default), cls.__name__)
        object.__setattr__(self, "_params", values)
        for attr in ("stop_loss", "take_profit", "trailing_stop"):
            v = getattr(self, attr)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1e6):
                raise InputError(f"{cls.__name__}.{attr} must be a fraction >= 0 (0 or None: off), got {v!r}")
        try:
            self.validate()
        except InputError:
            raise
        except ValueError as exc:  # the subclass's own check: the user's input all the same
            raise InputError(str(exc)) from exc
        object.__setattr__(self, "_lookback_rows", declared_lookback(self))  # None: derived when first read

    # ----- what subclasses write -------------------------------------------------------------

    def validate(self) -> None:
        """Check constraints between parameters (e.g. fast < slow); raise ``ValueError`` naming them."""

    def indicators(self) -> dict[str, Any]:
        """Column name -> ``IndicatorSpec`` (or ``(spec, output)`` for one output of a multi-output spec)."""
        return {}

    def signals(self, d: Columns) -> Signals:
        """Entries and exits over the named columns ``d`` (numpy arrays, oldest row first)."""
        raise NotImplementedError(f"{type(self).__name__} must implement signals(self, d)")

    # ----- identity --------------------------------------------------------------------------

    @property
    def params(self) -> dict[str, Any]:
        """Parameter values by name (a copy)."""
        return dict(self._params)

    @classmethod
    def param_defs(cls) -> dict[str, Param]:
        """The declared parameters (name -> :class:`Param`) with their defaults, types and ranges."""
        return dict(cls._param_defs)

    @property
    def key(self) -> tuple[str, tuple[tuple[str, Any], ...]]:
        """Hashable identity: class path and parameters. Identical strategies evaluate identically."""
        return (type(self).path, tuple(sorted(self._params.items())))

    def replace(self, **params: Any) -> Strategy:
        """A new strategy of the same class with some parameters changed."""
        return type(self)(**{**self._params, **params})

    def to_dict(self) -> dict[str, Any]:
        """``{"path": "module:Class", "params": {...}}``, what the daemon stores; see :meth:`from_dict`."""
        return {"path": type(self).path, "params": self.params}

    @staticmethod
    def load(path: str) -> type[Strategy]:
        """Import a strategy class from ``"module:Class"``; raise ``InputError`` naming what is wrong."""
        module_name, sep, qualname = str(path).partition(":")
        if not sep or not module_name or not qualname:
            raise InputError(f"strategy path {path!r} must look like 'package.module:ClassName'")
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise InputError(f"strategy path {path!r}: cannot import module {module_name!r}: {exc}") from None
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise InputError(f"strategy path {path!r}: module {module_name!r} has no {qualname!r}")
        if not (isinstance(obj, type) and issubclass(obj, Strategy)):
            raise InputError(f"strategy path {path!r} is not a kit.strategy.Strategy subclass")
        if module_name == "__main__" or "<locals>" in qualname:
            raise InputError(f"strategy path {path!r} is not importable by another process")
        return obj

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Strategy:
        """Rebuild a strategy from :meth:`to_dict` output (validating the parameters again)."""
        klass = Strategy.load(d["path"])
        return klass(**dict(d.get("params") or {}))

    @classmethod
    def importable(cls) -> bool:
        """Whether another process (the daemon) can import this class by :attr:`path`."""
        mod = sys.modules.get(cls.__module__)
        return (
            cls.__module__ != "__main__"
            and "<locals>" not in cls.__qualname__
            and getattr(mod, "__file__", None) is not None
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Strategy) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use .replace({name}=...)")

    # ----- derived ---------------------------------------------------------------------------

    def columns_spec(self) -> dict[str, tuple[Any, str | None]]:
        """:meth:`indicators` normalised to name -> (spec, output or None), with names checked."""
        out: dict[str, tuple[Any, str | None]] = {}
        for name, value in self.indicators().items():
            if isinstance(value, StreamColumn):
                continue  # an extra stream's column: stream_columns()
            if not isinstance(name, str) or not name.isidentifier() or name in CANDLE_COLUMNS:
                raise ValueError(
                    f"{type(self).__name__}.indicators(): column name {name!r} must be an identifier "
                    f"other than {list(CANDLE_COLUMNS)}"
                )
            if isinstance(value, tuple):
                if len(value) != 2 or not isinstance(value[1], str):
                    raise ValueError(f"{type(self).__name__}.indicators()[{name!r}] must be a spec or (spec, output)")
                out[name] = (value[0], value[1])
            else:
                out[name] = (value, None)
        return out

    def stream_columns(self) -> dict[str, StreamColumn]:
        """:meth:`indicators` columns read from extra streams (:func:`kit.strategy.on`), names checked."""
        out: dict[str, StreamColumn] = {}
        for name, value in self.indicators().items():
            if not isinstance(value, StreamColumn):
                continue
            if not isinstance(name, str) or not name.isidentifier() or name in CANDLE_COLUMNS:
                raise ValueError(f"{type(self).__name__}.indicators(): column name {name!r} must be an identifier "
                                 f"other than {list(CANDLE_COLUMNS)}")  # fmt: skip
            if value.alias not in self.streams:
                raise InputError(f"{type(self).__name__}.indicators()[{name!r}] reads stream {value.alias!r}, "
                                 f"which is not declared in streams {sorted(self.streams)}")  # fmt: skip
            out[name] = value
        return out

    def stream_specs(self) -> dict[str, list[Any]]:
        """Per extra stream alias, the unique indicator specs read from it (every declared alias present)."""
        out: dict[str, dict[Any, None]] = {alias: {} for alias in self.streams}
        for col in self.stream_columns().values():
            if not col.is_field:
                out[col.alias].setdefault(col.source, None)
        return {alias: list(specs) for alias, specs in out.items()}

    @property
    def specs(self) -> list[Any]:
        """The unique indicator specs this strategy needs, in declaration order."""
        seen: dict[Any, None] = {}
        for spec, _ in self.columns_spec().values():
            seen.setdefault(spec, None)
        return list(seen)

    @property
    def lookback_rows(self) -> int:
        """The rows live evaluation hands to :meth:`signals`: ``lookback`` resolved for these parameters."""
        rows = self._lookback_rows
        if rows is None:
            rows = derived_lookback(self.specs)
            object.__setattr__(self, "_lookback_rows", rows)
        return rows

    @property
    def warmup(self) -> int:
        """Rows before the first signal can be meaningful: the longest indicator warm-up plus the lookback."""
        w = [int(getattr(s, "warmup", 0) or 0) for s in self.specs]
        return max(w, default=0) + self.lookback_rows

    def columns(
        self,
        data: pd.DataFrame,
        cache: dict[Any, Any] | None = None,
        *,
        base: Columns | None = None,
        streams: Mapping[str, pd.DataFrame] | None = None,
        interval: str | None = None,
    ) -> Columns:
        """The named columns the rules see, computed over a whole candle frame with batch indicators.

        ``cache`` (spec -> batch output) lets a sweep compute each unique spec once; ``base`` (the
        candle columns of an earlier call on the same, already checked, frame) skips re-checking.
        ``streams`` (alias -> candle frame) feeds the declared extra streams, as-of joined on the
        base rows' closes (``interval``: the base frame's, default its most common spacing).
        """
        if base is None:
            check_frame(data)
            d = Columns(
                time=open_times_ms(data.index),
                open=data["open"].to_numpy(dtype=np.float64),
                high=data["high"].to_numpy(dtype=np.float64),
                low=data["low"].to_numpy(dtype=np.float64),
                close=data["close"].to_numpy(dtype=np.float64),
                volume=data["volume"].to_numpy(dtype=np.float64),
            )
        else:
            d = Columns({c: base[c] for c in CANDLE_COLUMNS})
        cache = {} if cache is None else cache
        for name, (spec, output) in self.columns_spec().items():
            if spec not in cache:
                cache[spec] = spec.batch(data)
            d[name] = _output(cache[spec], output, f"{type(self).__name__}.indicators()[{name!r}]")
        extra = self.stream_columns()
        if extra:
            itv = interval or frame_interval(data.index)
            intervals = {alias: itv_ for alias, (_, itv_) in self.streams.items()}
            d.update(join_columns(d["time"], itv, extra, streams or {}, intervals, cache))
        return d

    def evaluate(self, d: Columns) -> Signals:
        """Run :meth:`signals` on columns and check what came back (length, dtype, shorts as a pair)."""
        n = d.rows
        sig = self.signals(d)
        # fast path (the live hot path): four bool arrays of the right length, or two and two Nones
        if type(sig) is Signals:
            e, x, se, sx = sig[:4]
            if (
                _ok(e, n)
                and _ok(x, n)
                and ((se is None and sx is None) or (_ok(se, n) and _ok(sx, n)))
                and not sig.per_signal
            ):
                return sig
        if not isinstance(sig, Signals):
            if isinstance(sig, tuple) and 2 <= len(sig) <= 4:
                sig = Signals(*sig)
            else:
                raise TypeError(f"{type(self).__name__}.signals() must return Signals, got {type(sig).__name__}")
        if (sig.short_entries is None) != (sig.short_exits is None):
            raise TypeError(f"{type(self).__name__}.signals(): give both short_entries and short_exits, or neither")
        out = []
        for field, arr in zip(Signals._fields, sig, strict=True):
            if arr is None:
                out.append(None)
                continue
            a = arr if type(arr) is np.ndarray else np.asarray(arr)
            if a.shape != (n,):
                raise TypeError(f"{type(self).__name__}.signals().{field} has shape {a.shape}, expected ({n},)")
            if field in STOP_FIELDS:  # distances and sizes: NaN (or <= 0) means none on that row
                if a.dtype.kind not in "biuf":
                    raise TypeError(f"{type(self).__name__}.signals().{field} must be numbers, got {a.dtype}")
                out.append(a.astype(np.float64, copy=False))
                continue
            if a.dtype != np.bool_:
                if a.dtype.kind not in "biu":
                    raise TypeError(f"{type(self).__name__}.signals().{field} must be boolean, got {a.dtype}")
                a = a.astype(np.bool_)
            out.append(a)
        return Signals(*out)

    def run_signals(
        self, data: pd.DataFrame, cache: dict[Any, Any] | None = None, streams: Mapping[str, pd.DataFrame] | None = None
    ) -> Signals:
        """Signals over a whole candle frame (the backtest path); ``streams`` as in :meth:`columns`."""
        return self.evaluate(self.columns(data, cache, streams=streams))

    @property
    def stops(self) -> tuple[float | None, float | None]:
        """``(stop_loss, take_profit)`` as fractions, ``None`` where off (``0`` also means off)."""
        sl, tp = self.stop_loss, self.take_profit
        return (float(sl) if sl else None, float(tp) if tp else None)

    @property
    def has_shorts(self) -> bool:
        """Whether the rules produce short signals (probed on a one-row window of NaNs)."""
        d = Columns({c: np.full(1, np.nan) for c in (*CANDLE_COLUMNS, *self.columns_spec(), *self.stream_columns())})
        d["time"] = np.zeros(1, dtype=np.int64)
        try:
            return self.evaluate(d).short_entries is not None
        except Exception:
            return False

    def live(self) -> LiveEvaluator:
        """A fresh live evaluator: feed it closed rows, get this candle's :class:`Signal` or ``None``."""
        from kit.strategy._live import LiveEvaluator

        return LiveEvaluator(self)


from kit.strategy._live import LiveEvaluator  # noqa: E402  (type name for annotations above)
