"""Fault injection: what a real exchange connection does on a bad day, on demand.

Counted faults (``malformed``, ``duplicate``, ``reorder``) apply to the next ``n`` kline event
frames of *every* WebSocket connection open when the fault is injected (control answers are
never touched). ``stall`` freezes every connection's sending, pings included; events produced
meanwhile wait in the connection's queue (and a queue that overflows disconnects, as usual).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kit.exchange._ws import Connection

log = logging.getLogger("kit.exchange")

MAX_STALL_S = 3600.0  # a stall is a test of patience, not a way to hang the simulator for good
MAX_COUNT = 10_000  # frames a counted fault may touch per connection

#: Garbage frames cycled through by ``malformed``: not JSON, not an object, wrong types, NaN prices,
#: a binary frame, and a kline missing its fields.
GARBAGE: tuple[str | bytes, ...] = (
    '{"e":"kline","E":17',
    "[1,2,3]",
    '{"e":"kline","E":"soon","s":42,"k":{"t":"x","T":null,"s":"BTCUSDT","i":"1m","o":1,"c":[],"h":{},'
    '"l":true,"v":"abc","x":"maybe"}}',
    '{"e":"kline","E":1,"s":"BTCUSDT","k":{"t":0,"T":59999,"s":"BTCUSDT","i":"1m","f":-1,"L":-1,'
    '"o":"NaN","c":"NaN","h":"Infinity","l":"-1","v":"NaN","n":0,"x":true,"q":"0","V":"0","Q":"0","B":"0"}}',
    b"\x00\xffnot text\x80",
    '{"e":"kline","E":1,"s":"BTCUSDT"}',
)


class Faults:
    """Fault injection for a running :class:`~kit.exchange.ExchangeSimulator` (``sim.faults``)."""

    def __init__(self, connections: Callable[[], Iterable[Connection]]) -> None:
        self._connections = connections  # the stream connections open now
        self.stall_until = 0.0  # time.monotonic() deadline
        self._stall_changed = asyncio.Event()  # replaced at each change; set wakes current sleepers
        self.injected: dict[str, int] = {"drop": 0, "stall": 0, "malformed": 0, "duplicate": 0, "reorder": 0}

    def drop_all(self) -> int:
        """Close every WebSocket connection abruptly (TCP abort, no close frame). Returns how many."""
        conns = list(self._connections())
        for conn in conns:
            conn.abort("fault: drop")
        self.injected["drop"] += 1
        log.warning("fault: dropped %d connections", len(conns))
        return len(conns)

    def stall(self, seconds: float) -> None:
        """Send nothing at all (no events, no answers, no pings) for ``seconds`` of real time.

        The new stall replaces the current one: ``stall(0)`` ends a stall at once.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise ValueError(f"seconds must be a finite number, got {seconds!r}")
        if not 0 <= seconds <= MAX_STALL_S:
            raise ValueError(f"seconds must be between 0 and {MAX_STALL_S:g}, got {seconds!r}")
        self.stall_until = time.monotonic() + seconds
        self._stall_changed.set()
        self._stall_changed = asyncio.Event()
        if seconds:
            self.injected["stall"] += 1
            log.warning("fault: stalling all connections for %.3f s", seconds)
        else:
            log.warning("fault: stall ended")

    def stalled_for(self) -> float:
        """Real seconds left in the current stall (0 if none)."""
        return max(0.0, self.stall_until - time.monotonic())

    async def wait_stall(self) -> None:
        """Return once no stall is in force: at once if none, early if the stall is ended or shortened."""
        while (left := self.stalled_for()) > 0:
            changed = self._stall_changed
            try:
                await asyncio.wait_for(changed.wait(), left)
            except TimeoutError:
                pass

    def malformed(self, n: int = 1, *, replace: bool = True) -> None:
        """The next ``n`` event frames of each connection are garbage (cycling through :data:`GARBAGE`).

        ``replace=True`` (default): the garbage takes the real event's place, so that event is lost
        on this connection (a client must notice the hole and backfill). ``replace=False``: the
        garbage frame is sent before the real event.
        """
        self._count("malformed", n)
        for conn in self._connections():
            conn.outbox.inject(malformed=n, replace=replace)

    def duplicate(self, n: int = 1) -> None:
        """Each of the next ``n`` event frames of each connection is sent twice."""
        self._count("duplicate", n)
        for conn in self._connections():
            conn.outbox.inject(duplicate=n)

    def reorder(self, n: int = 1) -> None:
        """The next ``n`` pairs of event frames of each connection are swapped (second one first)."""
        self._count("reorder", n)
        for conn in self._connections():
            conn.outbox.inject(reorder=n)

    def _count(self, kind: str, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_COUNT:
            raise ValueError(f"n must be an integer between 0 and {MAX_COUNT}, got {n!r}")
        self.injected[kind] += n
        log.warning("fault: %s x%d", kind, n)
