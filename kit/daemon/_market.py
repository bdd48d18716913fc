"""Per-stream market state: recent candles and one incremental indicator per unique spec.

Each (symbol, interval) stream keeps one instance of every indicator spec any of its
strategies needs, updated once per closed candle (the engine's contract: a spec shared by
10,000 strategies costs one update), and the values of the last few rows so that a strategy
promoted while running is warmed up from memory, without a reconnect.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from kit.market import Candle

_FIELDS = {"open": 1, "high": 2, "low": 3, "close": 4, "volume": 5}


class StreamState:
    """Recent candles and indicator state of one stream.

    ``keep`` candles are remembered to warm up indicators added later; values of the last
    ``keep_values`` rows are kept to warm up new strategies' evaluators.
    """

    def __init__(self, symbol: str, interval: str, *, keep: int = 1000, keep_values: int = 256) -> None:
        self.symbol, self.interval = symbol, interval
        self.candles: deque[Candle] = deque(maxlen=keep)
        self.rows: deque[tuple[Candle, dict[Any, Any]]] = deque(maxlen=keep_values)
        self.indicators: dict[Any, tuple[Any, tuple[int, ...]]] = {}
        self.last_time: int | None = None

    def ensure(self, specs: list[Any]) -> None:
        """Add indicators for ``specs`` not yet tracked, warmed up over the remembered candles."""
        new = [s for s in specs if s not in self.indicators]
        if not new:
            return
        recent = {c[0]: vals for c, vals in self.rows}
        for spec in new:
            ind = spec.make()
            cols = tuple(_FIELDS[c] for c in spec.inputs)
            self.indicators[spec] = (ind, cols)
            for c in self.candles:
                v = ind.update(*(c[i] for i in cols))
                vals = recent.get(c[0])
                if vals is not None:
                    vals[spec] = v

    def drop_unused(self, specs: set[Any]) -> None:
        """Forget indicators no strategy needs any more (memory stays flat as strategies come and go)."""
        for spec in [s for s in self.indicators if s not in specs]:
            del self.indicators[spec]
            for _, vals in self.rows:
                vals.pop(spec, None)

    def update(self, candle: Candle) -> dict[Any, Any] | None:
        """Advance every indicator by one closed candle; its values by spec, or None if not newer."""
        t = candle[0]
        if self.last_time is not None and t <= self.last_time:
            return None
        values = {spec: ind.update(*(candle[i] for i in cols)) for spec, (ind, cols) in self.indicators.items()}
        self.candles.append(candle)
        self.rows.append((candle, values))
        self.last_time = t
        return values
