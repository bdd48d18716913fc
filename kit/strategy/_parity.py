"""Parity check: do a strategy's live signals equal its backtest's on real candles?

The backtest evaluates ``signals()`` once over a whole frame; live, the daemon evaluates it on
each closed candle over the last ``lookback`` rows, with indicator values from the engine's
incremental forms. A strategy can break the equality without any error: rules that read more
rows than ``lookback`` (a rolling window of 200 rows with ``lookback=51``: no signal live), or
rules that read rows after the current one (``np.roll(close, -1)``: a backtest that sees the
future). :func:`check_parity` runs the candles through the daemon's own code,
:class:`~kit.engine.StreamState` then :class:`~kit.strategy.LiveEvaluator`, compares every
candle's signal with the batch one, and on the first difference says why:

* look-ahead: the batch signal at that candle changes when the candles after it are removed;
* lookback too short: the rules give the batch answer on a longer window (the check finds the
  shortest one, the lookback to declare);
* an indicator whose incremental (live) and batch forms disagree (see ``kit.indicators.check``);
* otherwise rules that answer differently on the same rows (state kept between calls, randomness).

``kit.promote`` refuses a strategy that fails it (:class:`ParityError`); ``kit.backtest.run``
checks a sample of its candles and warns (:class:`ParityWarning`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kit.errors import ConfigError
from kit.strategy._base import CANDLE_COLUMNS, Strategy
from kit.strategy._columns import Columns
from kit.strategy._frame import check_frame
from kit.strategy._live import _value
from kit.strategy._signals import STOP_FIELDS, Signal, Signals

_FLAGS = ("entries", "exits", "short_entries", "short_exits")
_REL = 1e-9  # stop distances and sizes: equal to this relative precision


class ParityError(ConfigError):
    """A strategy's live signals would differ from its backtest's (``kit.promote`` refuses it)."""


class ParityWarning(UserWarning):
    """``kit.backtest.run`` found that the strategy's live signals differ from the backtest's."""


@dataclass(frozen=True)
class Mismatch:
    """The first candle whose live signal differs from the batch one, and the likely cause.

    ``field`` is the first differing field (``"entries"``, ..., ``"stop_loss"``, ..., or ``"error"``
    when live evaluation raised), ``batch``/``live`` its two values; ``cause`` is ``"look-ahead"``,
    ``"lookback"`` (``needs``: the shortest window that gives the batch answer), ``"short-window"``
    (the rules raise on the first candles' shorter windows), ``"indicator"`` or ``"state"``;
    ``detail`` says it in words.
    """

    time_ms: int
    row: int
    field: str
    batch: Any
    live: Any
    cause: str
    detail: str
    needs: int | None = None

    @property
    def when(self) -> str:
        return pd.Timestamp(self.time_ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M:%S UTC")

    def message(self, strategy: Strategy) -> str:
        """One line naming the strategy, the candle, the two values and the likely cause."""
        return (
            f"{strategy!r} would trade differently live than in its backtest: at the candle of {self.when} the "
            f"backtest gives {self.field}={self.batch!r}, live evaluation gives {self.field}={self.live!r}; "
            f"likely cause: {self.detail}"
        )


#: A row without a signal: no stop, level or size.
_NONE: tuple[None, ...] = (None,) * len(STOP_FIELDS)


def _at(sig: Signals, i: int) -> tuple[Any, ...]:
    """Row ``i`` of batch signals as live evaluation reports it (stops only on a signal row)."""
    flags = tuple(bool(a[i]) if a is not None else False for a in sig[:4])
    if not any(flags):
        return (*flags, *_NONE)
    stops = []
    for a in sig[4:]:
        v = None if a is None else float(a[i])
        stops.append(v if v is not None and v > 0 else None)
    return (*flags, *stops)


def _live(s: Signal | None) -> tuple[Any, ...]:
    if s is None:
        return (False, False, False, False, *_NONE)
    return (s.entry, s.exit, s.short_entry, s.short_exit, *(getattr(s, f) for f in STOP_FIELDS))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= _REL * max(abs(a), abs(b))
    return a == b


def _first_difference(batch: tuple[Any, ...], live: tuple[Any, ...]) -> int | None:
    for k, (a, b) in enumerate(zip(batch, live, strict=True)):
        if not _same(a, b):
            return k
    return None


def _window(cols: Columns, lo: int, hi: int) -> Columns:
    return Columns({k: v[lo:hi] for k, v in cols.items()})


def _eval_last(strategy: Strategy, cols: Columns, lo: int, i: int) -> tuple[Any, ...] | None:
    """The signal of row ``i`` from rules evaluated on rows ``lo..i`` (``None`` if they raise)."""
    try:
        sig = strategy.evaluate(_window(cols, lo, i + 1))
    except Exception:
        return None
    return _at(sig, i - lo)


def _equal(a: tuple[Any, ...] | None, b: tuple[Any, ...]) -> bool:
    return a is not None and _first_difference(a, b) is None


def check_parity(strategy: Strategy, data: pd.DataFrame) -> Mismatch | None:
    """Run ``data`` through the live path and compare each candle's signal with the backtest's.

    ``data`` is a candle frame (as for :func:`kit.backtest.run`); indicators start from its first
    row on both paths, the live ones from the engine's incremental forms, and every candle is
    evaluated on the live evaluator's ``lookback`` window, as the daemon does. Returns ``None``
    when every candle agrees, else the first :class:`Mismatch`. The batch rules raising is not a
    parity question: that exception propagates.
    """
    from kit.engine import StreamState  # deferred: kit.engine brings the async feed stack (0.2 s)

    check_frame(data)
    batch_cols = strategy.columns(data)
    batch = strategy.evaluate(batch_cols)
    fired = _fired(batch, batch_cols.rows)
    t = batch_cols["time"]
    ohlcv = np.column_stack([batch_cols[c] for c in CANDLE_COLUMNS[1:]]).tolist()
    state = StreamState("parity", "check", keep=1)
    state.add_specs(strategy.specs)
    evaluator = strategy.live()
    rows: list[Any] = []
    for i in range(batch_cols.rows):
        row = state.on_closed((int(t[i]), *ohlcv[i]))
        rows.append(row)
        try:
            sig = evaluator.on_row(row)
        except Exception as exc:
            err = f"{type(exc).__name__}: {exc}"
            return _diagnose(strategy, data, batch_cols, rows, i, _at(batch, i), None, err)
        if sig is None and not fired[i]:
            continue  # the common case, settled without building tuples
        want, got = _at(batch, i), _live(sig)
        if _first_difference(want, got) is not None:
            return _diagnose(strategy, data, batch_cols, rows, i, want, got, None)
    return None


def sample_parity(
    strategy: Strategy, data: pd.DataFrame, columns: Columns, signals: Signals, *, rows: int = 300, every: int = 5
) -> Mismatch | None:
    """A cheap :func:`check_parity` for a backtest that already has its ``columns`` and ``signals``.

    Over the last ``rows`` candles, each candle with a backtest signal and every ``every``-th one
    is evaluated as the live evaluator would, on its ``lookback`` window, here cut from the
    backtest's own columns (so indicator values are the batch ones: only the rules are checked).
    A signal missing or different live is found on its candle; costs one ``signals()`` call per
    evaluated candle.
    """
    n = columns.rows
    fired = _fired(signals, n)
    lookback = strategy.lookback_rows
    for i in range(max(0, n - rows), n):
        if not (fired[i] or i % every == 0):
            continue
        lo = max(0, i + 1 - lookback)
        try:
            res = strategy.evaluate(_window(columns, lo, i + 1))
        except Exception as exc:
            return _diagnose(strategy, data, columns, None, i, _at(signals, i), None, f"{type(exc).__name__}: {exc}")
        j = i - lo
        if not fired[i] and not (res.entries[j] or res.exits[j]) and (res.short_entries is None or not (
                res.short_entries[j] or res.short_exits[j])):  # fmt: skip
            continue  # no signal on either side: the common case, settled without building tuples
        want, got = _at(signals, i), _at(res, j)
        if _first_difference(want, got) is not None:
            return _diagnose(strategy, data, columns, None, i, want, got, None)
    return None


def _fired(sig: Signals, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.bool_)
    for a in sig[:4]:
        if a is not None:
            out |= a
    return out


def _live_columns(strategy: Strategy, batch_cols: Columns, rows: list[Any]) -> Columns:
    """The columns the live evaluator saw over ``rows``: candles, and indicator values from the engine."""
    n = len(rows)
    if not n:
        return batch_cols
    out = Columns({c: batch_cols[c][:n] for c in CANDLE_COLUMNS})
    for name, (spec, output) in strategy.columns_spec().items():
        out[name] = np.array([_value(r.values[spec], output) for r in rows], dtype=np.float64)
    return out


def _diagnose(
    strategy: Strategy,
    data: pd.DataFrame,
    batch_cols: Columns,
    rows: list[Any] | None,
    i: int,
    want: tuple[Any, ...],
    got: tuple[Any, ...] | None,
    error: str | None,
) -> Mismatch:
    fields = (*_FLAGS, *STOP_FIELDS)
    t = int(batch_cols["time"][i])
    if got is None:
        field, b, lv = "error", "no error", error
    else:
        k = _first_difference(want, got)
        assert k is not None
        field, b, lv = fields[k], want[k], got[k]

    def found(cause: str, detail: str, needs: int | None = None) -> Mismatch:
        return Mismatch(t, i, field, b, lv, cause, detail, needs)

    # 1. look-ahead: without the candles after it, the batch answer at some candle changes
    if _looks_ahead(strategy, data, batch_cols, i):
        return found(
            "look-ahead",
            "look-ahead: the backtest's signal at that candle changes when the candles after it are removed "
            "(the rules read later rows, e.g. np.roll(x, -1), a centred window or a whole-column statistic); "
            "live, those candles do not exist yet",
        )
    lookback = strategy.lookback_rows
    if got is None and i + 1 < lookback:
        return found(
            "short-window",
            f"live evaluation raised on a window of {i + 1} rows: the first candles of a stream give fewer than "
            f"lookback={lookback} rows, and the rules must give no signal there instead of failing",
        )
    lo = max(0, i + 1 - lookback)
    on_batch = _eval_last(strategy, batch_cols, lo, i)
    if not _equal(on_batch, want):
        # 2. lookback too short: a longer window gives the batch answer; find the shortest one
        if _equal(_eval_last(strategy, batch_cols, 0, i), want):
            short, long = lookback, i + 1  # short fails, long gives the batch answer
            while long - short > 1:
                mid = (short + long) // 2
                if _equal(_eval_last(strategy, batch_cols, i + 1 - mid, i), want):
                    long = mid
                else:
                    short = mid
            return found(
                "lookback",
                f"lookback too short: the rules see the last {lookback} rows live and need at least {long} for "
                f"this signal; declare lookback >= {long} (it may depend on the parameters: see Strategy.lookback)",
                long,
            )
        return found(
            "state",
            "the rules answer differently on the same rows (they keep state between calls or use randomness); "
            "signals() must depend only on the columns it is given",
        )
    # 3. the rules agree on batch values: the indicator values fed live differ
    live_cols = _live_columns(strategy, batch_cols, rows or [])
    for name, (spec, _) in strategy.columns_spec().items():
        a, v = batch_cols[name][: i + 1], live_cols[name][: i + 1]
        bad = ~((a == v) | (np.isnan(a) & np.isnan(v)) | (np.abs(a - v) <= _REL * np.maximum(np.abs(a), np.abs(v))))
        if bad.any():
            j = int(np.argmax(bad))
            when = pd.Timestamp(int(batch_cols["time"][j]), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M:%S UTC")
            return found(
                "indicator",
                f"indicator column {name!r} ({getattr(spec, 'key', spec)}) is {_num(a[j])} in the backtest and "
                f"{_num(v[j])} live at {when}: its batch and incremental forms disagree (check it with "
                "kit.indicators.check)",
            )
    return found(
        "state",
        "the rules answer differently on the same rows (they keep state between calls or use randomness); "
        "signals() must depend only on the columns it is given",
    )


def _looks_ahead(strategy: Strategy, data: pd.DataFrame, batch_cols: Columns, i: int) -> bool:
    """Whether the batch signal of candle ``i``, or of one of the last signal candles before it,
    changes when the candles after it are cut off.

    One cut can miss: ``np.roll(close, -1)`` on a cut frame compares with the first row, which may
    give the same answer by chance; several signal candles make that a coin toss lost ``_PROBES``
    times. The frames start at most ``_SPAN`` rows back (the same start on both sides, so
    indicators agree) to keep the probe cheap on a long backtest.
    """
    batch = strategy.evaluate(batch_cols)
    fired = np.flatnonzero(_fired(batch, batch_cols.rows)[: i + 1])
    probes = [i, *fired[::-1][:_PROBES]]
    a = max(0, min(probes) + 1 - _SPAN)
    end = min(len(data), i + 1 + _SPAN)
    ref = strategy.evaluate(strategy.columns(data.iloc[a:end]))
    for k in dict.fromkeys(probes):
        try:
            cut = _at(strategy.evaluate(strategy.columns(data.iloc[a : k + 1])), k - a)
        except Exception:
            continue  # rules failing on a short frame say nothing about the future
        if not _equal(cut, _at(ref, k - a)):
            return True
    return False


_PROBES = 8  # signal candles probed for look-ahead
_SPAN = 2000  # rows before the first probe (and after the mismatch) the probe frames hold


def _num(x: float) -> str:
    return "NaN" if math.isnan(x) else f"{x:.10g}"
