"""StreamState: the synchronous core of one stream (no asyncio, no feed).

One incremental indicator per unique spec, reference counted; one :class:`Row` per closed
candle carrying every spec's value; a bounded window of recent rows that warms specs added
later. The async :class:`~kit.engine.IndicatorEngine` drives one per (symbol, interval); a
replay or a notebook can drive one directly::

    st = StreamState("BTCUSDT", "1m")
    st.add_specs([spec("rsi", 14)])
    for candle in candles:
        row = st.on_closed(candle)       # Row(symbol, interval, candle, True, {spec: value})
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from kit.indicators import IndicatorSpec, parse_spec
from kit.indicators._base import Indicator

#: Candle tuple position of each column an indicator can read.
FIELDS: dict[str, int] = {"open_time": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5}


class Row(NamedTuple):
    """One candle of one stream and the values of the stream's specs on it.

    ``values`` maps each :class:`~kit.indicators.IndicatorSpec` of the stream to a float (NaN
    during warm-up) or, for multi-output indicators, a NamedTuple (``MACDResult``...). It
    may hold more specs than one subscriber asked for; read your own. Shared by every
    subscriber: treat it as read-only. ``closed`` is False for a forming candle's peeked values.
    """

    symbol: str
    interval: str
    candle: Any
    closed: bool
    values: Mapping[IndicatorSpec, Any]

    def value(self, spec: IndicatorSpec | str) -> Any:
        """The value of ``spec`` (a spec or its key, ``"rsi(14)"``)."""
        if isinstance(spec, str):
            spec = parse_spec(spec)
        return self.values[spec]


def as_spec(s: IndicatorSpec | str) -> IndicatorSpec:
    """A spec from a spec or its key; its inputs must be candle columns."""
    sp = parse_spec(s) if isinstance(s, str) else s
    if not isinstance(sp, IndicatorSpec):
        raise ValueError(f"specs: expected IndicatorSpec or key like 'rsi(14)', got {s!r}")
    bad = [c for c in sp.inputs if c not in FIELDS]
    if bad:
        raise ValueError(f"specs: {sp.key} reads {bad}; a candle stream has only {', '.join(FIELDS)}")
    return sp


class _Slot:
    __slots__ = ("cols", "ind", "refs")

    def __init__(self, ind: Indicator, cols: tuple[int, ...]) -> None:
        self.ind = ind
        self.cols = cols
        self.refs = 0


class StreamState:
    """Indicator state of one (symbol, interval) stream: one instance per unique spec.

    Args:
        keep: closed rows (candles and values) remembered to warm specs added later and to
            serve subscribers' ``history``; grown by :meth:`ensure_capacity`.
    """

    def __init__(self, symbol: str, interval: str, *, keep: int = 1000) -> None:
        self.symbol = symbol
        self.interval = interval
        self.rows: deque[Row] = deque(maxlen=max(1, int(keep)))
        self.slots: dict[IndicatorSpec, _Slot] = {}
        self.last_open: int | None = None
        #: indicator updates done (one per spec per closed candle, plus warm-ups)
        self.updates = 0
        #: closed candles processed
        self.candles = 0
        self._plan: list[
            tuple[tuple[int, ...], list[tuple[IndicatorSpec, Callable[..., Any]]], dict[IndicatorSpec, Any]]
        ] = []

    def __repr__(self) -> str:
        return f"StreamState({self.symbol} {self.interval}, specs={len(self.slots)}, rows={len(self.rows)})"

    @property
    def specs(self) -> tuple[IndicatorSpec, ...]:
        return tuple(self.slots)

    @property
    def capacity(self) -> int:
        return self.rows.maxlen or 0

    def ensure_capacity(self, n: int) -> None:
        """Remember at least ``n`` closed rows from now on."""
        if n > self.capacity:
            self.rows = deque(self.rows, maxlen=n)

    # -- specs -----------------------------------------------------------------------------------
    def add_specs(self, specs: Iterable[IndicatorSpec | str]) -> list[IndicatorSpec]:
        """Reference ``specs``; new ones are created and warmed over the remembered rows (whose
        ``values`` gain them), so they continue without a gap. Returns the normalised specs."""
        out = [as_spec(s) for s in specs]
        changed = False
        for sp in out:
            slot = self.slots.get(sp)
            if slot is None:
                slot = self.slots[sp] = _Slot(sp.make(), tuple(FIELDS[c] for c in sp.inputs))
                self._warm(sp, slot)
                changed = True
            slot.refs += 1
        if changed:
            self._replan()
        return out

    def remove_specs(self, specs: Iterable[IndicatorSpec | str]) -> None:
        """Drop one reference to each of ``specs``; a spec nobody uses any more is forgotten."""
        changed = False
        for s in specs:
            sp = as_spec(s)
            slot = self.slots.get(sp)
            if slot is None:
                continue
            slot.refs -= 1
            if slot.refs <= 0:
                # Rows already published keep its values (subscribers may hold them); new rows
                # no longer carry it, and the kept ones roll out of the bounded window.
                del self.slots[sp]
                changed = True
        if changed:
            self._replan()

    def _warm(self, sp: IndicatorSpec, slot: _Slot) -> None:
        upd = slot.ind.update
        cols = slot.cols
        for row in self.rows:
            c = row.candle
            row.values[sp] = upd(*[c[i] for i in cols])  # type: ignore[index]
        self.updates += len(self.rows)

    def _replan(self) -> None:
        """Group specs by input columns so each candle's inputs are extracted, and checked for NaN,
        once per group; the indicators' ``step`` then skips their own NaN guard."""
        groups: dict[tuple[int, ...], list[tuple[IndicatorSpec, Callable[..., Any]]]] = {}
        for sp, slot in self.slots.items():
            groups.setdefault(slot.cols, []).append((sp, slot.ind.step))
        self._plan = [(cols, items, {sp: self.slots[sp].ind.nan for sp, _ in items}) for cols, items in groups.items()]

    # -- candles ---------------------------------------------------------------------------------
    def on_closed(self, candle: Any) -> Row | None:
        """Update every spec once with a closed candle; the new row, or None if the candle is not
        newer than the last one (a duplicate)."""
        t = candle[0]
        last = self.last_open
        if last is not None and t <= last:
            return None
        self.last_open = t
        values: dict[IndicatorSpec, Any] = {}
        for cols, items, nans in self._plan:
            if len(cols) == 1:
                x = candle[cols[0]]
                if x != x:  # the indicators' NaN guard, once for the group: skipped, state unchanged
                    values.update(nans)
                    continue
                for sp, step in items:
                    values[sp] = step(x)
            else:
                args = [candle[i] for i in cols]
                if any(v != v for v in args):
                    values.update(nans)
                    continue
                for sp, step in items:
                    values[sp] = step(*args)
        self.updates += len(values)
        self.candles += 1
        row = Row(self.symbol, self.interval, candle, True, values)
        self.rows.append(row)
        return row

    def on_forming(self, candle: Any) -> Row:
        """Values for a forming candle (``peek``): no state changes."""
        values: dict[IndicatorSpec, Any] = {}
        slots = self.slots
        for cols, items, _ in self._plan:
            args = [candle[i] for i in cols]
            for sp, _ in items:
                values[sp] = slots[sp].ind.peek(*args)
        return Row(self.symbol, self.interval, candle, False, values)

    def history(self, n: int) -> list[Row]:
        """The last ``n`` closed rows (fewer if the stream has not seen that many)."""
        if n <= 0:
            return []
        rows = self.rows
        if n >= len(rows):
            return list(rows)
        return [rows[i] for i in range(len(rows) - n, len(rows))]
