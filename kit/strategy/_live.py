"""Live evaluation: the same ``signals()`` code on the last ``lookback`` closed rows.

Used by :mod:`kit.replay` and the daemon. No pandas on this path: a ring buffer of numpy
rows, one ``signals()`` call on a ``lookback``-row window per closed candle. An evaluator
holds only market state (the window), no account or user state, so one evaluator can
serve every user running the same (class, params, symbol, interval).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.strategy._columns import Columns
from kit.strategy._signals import Signal

if TYPE_CHECKING:
    from kit.market import Candle
    from kit.strategy._base import Strategy

_PRICE = ("open", "high", "low", "close", "volume")
_FIELD = {name: i + 1 for i, name in enumerate(_PRICE)}  # candle tuple position


def _value(v: Any, output: str | None) -> float:
    if v is None:
        return math.nan
    if output is not None:
        v = v[output] if isinstance(v, Mapping) else getattr(v, output)
        if v is None:
            return math.nan
    return float(v)


def _stop(col: np.ndarray | None) -> float | None:
    """The last row's stop distance or size, ``None`` when absent (NaN or <= 0: the defaults)."""
    if col is None:
        return None
    v = float(col[-1])
    return v if v > 0 else None  # NaN compares False


class LiveEvaluator:
    """Evaluates one strategy on closed rows as they arrive.

    ``on_row(row)`` takes an engine ``Row`` (``.candle``, ``.closed``, ``.values`` mapping
    spec -> value) and returns this candle's :class:`Signal`, or ``None`` when no signal fired
    (or the row is not closed, or is not newer than the last one seen). ``on_candle(candle,
    values)`` is the same without a Row. Signals on row ``i`` equal the backtest's signals on
    row ``i`` provided the evaluator saw the same rows with the same indicator values.

    A strategy reading extra streams gets, with each base row, the latest closed row of each
    (``extras``: alias -> row or ``None``), as :class:`kit.engine.StreamJoin` releases them:
    :meth:`on_joined` takes its output.
    """

    __slots__ = ("_buf", "_cols", "_extra", "_last_time", "_lookback", "_n", "_names", "_pos", "_time", "_windows",
                 "strategy")  # fmt: skip

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self._lookback = strategy.lookback_rows
        self._cols = list(strategy.columns_spec().items())  # name -> (spec, output)
        self._extra = list(strategy.stream_columns().items())  # name -> StreamColumn
        self._names = (*_PRICE, *(name for name, _ in self._cols), *(name for name, _ in self._extra))
        self._buf = np.full((len(self._names), 2 * self._lookback), np.nan)
        self._time = np.zeros(2 * self._lookback, dtype=np.int64)
        self._pos = 0  # next write column
        self._n = 0  # rows seen
        self._last_time = -(2**62)
        self._windows: dict[int, Columns] = {}

    @property
    def rows_seen(self) -> int:
        return self._n

    @property
    def last_time_ms(self) -> int | None:
        """Open time of the last row evaluated (``None`` before the first)."""
        return None if self._n == 0 else int(self._last_time)

    def warm(self, rows: Any) -> None:
        """Push closed rows (e.g. an engine subscription's ``history``) without evaluating them.

        After a restart, warming with the rows up to the checkpoint makes the next ``on_row``
        decide exactly as an evaluator that never stopped (only the last ``lookback`` rows matter).
        """
        for row in rows:
            extras = None
            if isinstance(row, tuple) and len(row) == 2 and isinstance(row[1], dict):  # a StreamJoin's Joined
                row, extras = row
            if row.closed and int(row.candle[0]) > self._last_time:
                self._push(int(row.candle[0]), row.candle, row.values, extras)

    def on_row(self, row: Any) -> Signal | None:
        """Evaluate on an engine row; see the class docstring."""
        if not row.closed:
            return None
        return self.on_candle(row.candle, row.values)

    def on_joined(self, joined: Any) -> Signal | None:
        """Evaluate on a :class:`kit.engine.Joined` (a base row and the extra streams' rows)."""
        row, extras = joined
        if not row.closed:
            return None
        return self.on_candle(row.candle, row.values, extras)

    def on_candle(
        self, candle: Candle, values: Mapping[Any, Any], extras: Mapping[str, Any] | None = None
    ) -> Signal | None:
        """Push one closed candle with its indicator values (spec -> value) and evaluate.

        ``extras``: per extra stream alias, its latest row closed by this candle's close (or ``None``).
        """
        t = int(candle[0])
        if t <= self._last_time:
            return None  # a duplicate or an old candle: never decide twice
        self._push(t, candle, values, extras)
        sig = self.strategy.evaluate(self._window())
        e, x = bool(sig.entries[-1]), bool(sig.exits[-1])
        se = bool(sig.short_entries[-1]) if sig.short_entries is not None else False
        sx = bool(sig.short_exits[-1]) if sig.short_exits is not None else False
        if e or x or se or sx:
            if not sig.per_signal:
                return Signal(t, e, x, se, sx)
            return Signal(
                t, e, x, se, sx,
                _stop(sig.stop_loss), _stop(sig.take_profit), _stop(sig.trailing_stop), _stop(sig.size),
                _stop(sig.stop_loss_price), _stop(sig.take_profit_price),
            )  # fmt: skip
        return None

    def _push(self, t: int, candle: Candle, values: Mapping[Any, Any], extras: Mapping[str, Any] | None) -> None:
        L = self._lookback
        if self._pos == 2 * L:
            # keep the newest L-1 rows at the front; amortised O(1) per row
            self._buf[:, : L - 1] = self._buf[:, L + 1 :]
            self._time[: L - 1] = self._time[L + 1 :]
            self._pos = L - 1
        col = self._buf[:, self._pos]
        col[:5] = candle[1:6]
        if self._cols:
            vals = []
            for _, (spec, output) in self._cols:
                try:
                    v = values[spec]
                except KeyError:
                    raise KeyError(f"row has no value for indicator {spec!r} that {self.strategy!r} needs") from None
                vals.append(_value(v, output) if output is not None or v is None else v)
            col[5 : 5 + len(vals)] = vals
        if self._extra:
            col[5 + len(self._cols) :] = self._extra_values(extras)
        self._time[self._pos] = t
        self._pos += 1
        self._n += 1
        self._last_time = t

    def _extra_values(self, extras: Mapping[str, Any] | None) -> list[float]:
        if extras is None:
            raise KeyError(f"{self.strategy!r} reads streams {sorted(self.strategy.streams)}: evaluate joined rows")
        vals = []
        for _, col in self._extra:
            try:
                row = extras[col.alias]
            except KeyError:
                raise KeyError(f"no row of stream {col.alias!r} that {self.strategy!r} reads") from None
            if row is None:  # nothing of that stream closed yet
                vals.append(math.nan)
            elif col.is_field:
                vals.append(float(row.candle[_FIELD[col.source]]))
            else:
                try:
                    v = row.values[col.source]
                except KeyError:
                    raise KeyError(f"stream {col.alias!r} row has no value for indicator {col.source!r} that "
                                   f"{self.strategy!r} needs") from None  # fmt: skip
                vals.append(_value(v, col.output))
        return vals

    def _window(self) -> Columns:
        # Windows are views into the ring buffer, so one Columns per (lo, hi) stays valid: build once.
        hi = self._pos
        d = self._windows.get(hi)
        if d is None:
            lo = max(0, hi - self._lookback)
            d = Columns(zip(self._names, self._buf[:, lo:hi], strict=True))
            d["time"] = self._time[lo:hi]
            self._windows[hi] = d
        return d
