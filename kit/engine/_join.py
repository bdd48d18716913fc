"""StreamJoin: rows of several streams, released per base row with the latest closed rows of the others.

The live half of :mod:`kit.market.asof` (no I/O, no asyncio). Rows of different streams arrive
in no particular order: the 1h candle closing at 10:00 may arrive just before or just after the
5m candle closing at 10:00. So a base row closing at ``C`` is held until every extra stream is
*caught up* to ``C``, i.e. it cannot produce another row closing at or before ``C``:

* it delivered a row closing after ``C - interval`` (its next row closes after ``C``), or
* it is finished (:meth:`finish`: a replay's data ran out), or
* the caller gives up waiting (:meth:`release_all`: the daemon after ``stream_wait`` seconds, an
  outage of that stream); then the last closed row stays visible, as in the backtest.

Then it is released with, per extra stream, the latest row whose close is ``<= C`` (or ``None``).
Base rows are released in order; a held row holds the ones after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, NamedTuple

from kit.market.intervals import interval_ms

StreamKey = tuple[str, str]


class Joined(NamedTuple):
    """A base row and, per extra alias, the latest extra row closed at or before it (``None``: none yet)."""

    row: Any
    extras: dict[str, Any]


class _Extra:
    __slots__ = ("finished", "iv", "last_close", "rows")

    def __init__(self, iv: int) -> None:
        self.iv = iv
        self.rows: deque[tuple[int, Any]] = deque()  # (close ms, row), ascending
        self.last_close: int | None = None
        self.finished = False


class StreamJoin:
    """Joins one base stream with extra streams (alias -> (symbol, interval)) by the as-of rule.

    Feed every closed row of every stream to :meth:`push` (a row is anything with ``.candle``,
    whose ``[0]`` is the open time in ms); it returns the base rows that became ready, in order.
    """

    def __init__(self, base: StreamKey, extras: Mapping[str, StreamKey]) -> None:
        self.base = base
        #: alias -> (symbol, interval) of each extra stream
        self.extras: dict[str, StreamKey] = dict(extras)
        self._base_iv = interval_ms(base[1])
        self._alias: dict[StreamKey, list[str]] = {}
        self._extras: dict[str, _Extra] = {}
        for alias, key in extras.items():
            self._alias.setdefault(key, []).append(alias)
            self._extras[alias] = _Extra(interval_ms(key[1]))
        self._pending: deque[tuple[int, Any]] = deque()  # (close ms, base row)
        self._last_base = -(2**62)

    @property
    def keys(self) -> list[StreamKey]:
        """Every stream this join reads, the base first."""
        return [self.base, *self._alias]

    @property
    def pending(self) -> int:
        """Base rows held, waiting for an extra stream to catch up."""
        return len(self._pending)

    def oldest_pending_open(self) -> int | None:
        """Open time (ms) of the oldest held base row, or ``None``."""
        return None if not self._pending else self._pending[0][0] - self._base_iv

    def push(self, key: StreamKey, row: Any) -> list[Joined]:
        """Take one closed row of stream ``key``; return the base rows now ready (maybe none)."""
        t = int(row.candle[0])
        if key == self.base and t > self._last_base:
            self._last_base = t
            self._pending.append((t + self._base_iv, row))
        for alias in self._alias.get(key, ()):
            ex = self._extras[alias]
            close = t + ex.iv
            if ex.last_close is None or close > ex.last_close:
                ex.last_close = close
                ex.rows.append((close, row))
        return self._release(force=False)

    def finish(self, key: StreamKey) -> list[Joined]:
        """Stream ``key`` will deliver no more rows: stop waiting for it."""
        for alias in self._alias.get(key, ()):
            self._extras[alias].finished = True
        return self._release(force=False)

    def release_all(self) -> list[Joined]:
        """Stop waiting: release every held base row with the rows there are (the outage rule)."""
        return self._release(force=True)

    def _ready(self, close: int) -> bool:
        for ex in self._extras.values():
            if ex.finished:
                continue
            if ex.last_close is None or ex.last_close <= close - ex.iv:
                return False
        return True

    def _release(self, *, force: bool) -> list[Joined]:
        out: list[Joined] = []
        while self._pending and (force or self._ready(self._pending[0][0])):
            close, row = self._pending.popleft()
            extras: dict[str, Any] = {}
            for alias, ex in self._extras.items():
                rows = ex.rows
                # rows closing at or before this base close: keep only the latest of them (later
                # base rows close later, so the earlier ones can never be visible again)
                while len(rows) >= 2 and rows[1][0] <= close:
                    rows.popleft()
                extras[alias] = rows[0][1] if rows and rows[0][0] <= close else None
            out.append(Joined(row, extras))
        return out
