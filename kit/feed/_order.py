"""The ordering of one kline stream as a state machine with no I/O.

:class:`StreamOrder` keeps a cursor, ``last_closed``: the open time of the last closed candle
delivered. Each input returns what to do, and the :class:`~kit.feed.Feed` does it (fan-out, REST,
counters). An update for open time ``t``, while :attr:`Phase.LIVE`:

- ``t`` before the next expected candle: a duplicate or a stale, reordered update -> a
  :class:`Drop` (counted);
- ``t`` after it: candles are missing (a reconnect, a stall, a reordered frame) -> a
  :class:`Backfill` of ``[next expected, t)``; the machine enters :attr:`Phase.BACKFILLING` and
  buffers live updates until :meth:`StreamOrder.accept_backfill` and :meth:`StreamOrder.resume`;
- otherwise the update itself, a :class:`~kit.feed.KlineEvent`, is the action: deliver it.

The first update (:attr:`Phase.WAITING`) returns a :class:`Seed`: the feed fetches the history its
subscribers want before ``t`` while live updates are buffered (:attr:`Phase.SEEDING`), then calls
:meth:`StreamOrder.go_live` and :meth:`StreamOrder.resume`: no hole and no overlap at the seam.
So every subscriber sees every closed candle exactly once, in order, whatever the wire did.

The hot path (a forming or closed update of the expected candle, while live) allocates only the
event it returns: the action *is* the event, and drops are shared constants.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from kit.feed._events import GapEvent, KlineEvent
from kit.market.candle import Candle
from kit.market.intervals import bucket_start, interval_ms, next_open

# Live updates buffered per stream while a REST fetch runs (closed candles; forming conflated).
BUFFER_MAX = 10_000


class Phase(Enum):
    """Where a stream's ordering stands."""

    WAITING = "waiting"  # no update yet: the cursor is unknown
    SEEDING = "seeding"  # first update seen; its history is being fetched, live updates buffered
    LIVE = "live"  # updates are delivered as they come
    BACKFILLING = "backfilling"  # a hole is being fetched over REST, live updates buffered


_LIVE = Phase.LIVE
_WAITING = Phase.WAITING


class Drop(NamedTuple):
    """An update not delivered; ``counter`` names the feed's counter it counts toward."""

    counter: str


DUPLICATE = Drop("duplicates")
STALE = Drop("stale")
OUT_OF_ORDER = Drop("out_of_order")


class Seed(NamedTuple):
    """Fetch the history before ``end`` (the first live update's open time), then ``go_live(end)``."""

    end: int


class Backfill(NamedTuple):
    """Fetch the closed candles in ``[start, end)``, then ``accept_backfill(events, end)``."""

    start: int
    end: int


Action = KlineEvent | Drop | Seed | Backfill
_Update = tuple[Candle, bool, int]  # (candle, closed, event_ms) as it came from the wire


class StreamOrder:
    """Ordering state of one (symbol, interval) stream. Synchronous; never awaits, never fetches."""

    __slots__ = (
        "_buffer",
        "fixed",
        "forming",
        "interval",
        "last_closed",
        "last_event_ms",
        "offset",
        "phase",
        "step",
        "symbol",
    )

    def __init__(self, symbol: str, interval: str) -> None:
        self.symbol = symbol
        self.interval = interval
        #: False only for ``1M``, whose candles have no fixed length.
        self.fixed = interval != "1M"
        self.step = interval_ms(interval) if self.fixed else 0
        #: Open times are ``offset`` plus a multiple of ``step`` (Binance weeks start on Monday).
        self.offset = 4 * 86_400_000 if interval.endswith("w") else 0
        self.phase = Phase.WAITING
        self.last_closed: int | None = None
        self.forming: KlineEvent | None = None
        #: Event time (``E``) of the last update delivered: a catch-up tells silent streams by it.
        self.last_event_ms = 0
        self._buffer: list[_Update] = []  # updates waiting while SEEDING or BACKFILLING

    def __repr__(self) -> str:
        return f"StreamOrder({self.symbol} {self.interval}, {self.phase.value}, last_closed={self.last_closed})"

    def next_open(self, t: int) -> int:
        return t + self.step if self.fixed else next_open(t, "1M")

    def prev_open(self, t: int) -> int:
        return t - self.step if self.fixed else bucket_start(t - 1, "1M")

    def aligned(self, t: int) -> bool:
        """Whether ``t`` is a possible open time of this interval."""
        return not self.fixed or (t - self.offset) % self.step == 0

    @property
    def buffered(self) -> int:
        """Live updates waiting for a fetch to finish."""
        return len(self._buffer)

    # -- inputs ----------------------------------------------------------------------------------
    def on_kline(self, candle: Candle, closed: bool, event_ms: int) -> Action | None:
        """One valid update from the wire: the event to deliver, a drop, a fetch to start, or None
        (buffered while a fetch runs)."""
        phase = self.phase
        if phase is not _LIVE:
            if phase is _WAITING:
                self.phase = Phase.SEEDING
                self._buffer = [(candle, closed, event_ms)]
                return Seed(candle[0])
            self._buffer_put(candle, closed, event_ms)
            return None
        t = candle[0]
        lc = self.last_closed
        nxt = lc + self.step if self.fixed else next_open(lc, "1M")  # type: ignore[operator]
        if t == nxt:
            if closed:
                self.last_closed = t
                self.forming = None
                ev = KlineEvent(self.symbol, self.interval, candle, True)
            else:
                f = self.forming
                if 0 < event_ms <= self.last_event_ms and f is not None and f.candle[0] == t:
                    # An older (reordered) or repeated (duplicated) update of the forming candle.
                    return OUT_OF_ORDER if event_ms < self.last_event_ms else DUPLICATE
                ev = self.forming = KlineEvent(self.symbol, self.interval, candle, False)
            self.last_event_ms = event_ms
            return ev
        if t < nxt:
            return DUPLICATE if closed else STALE
        self.phase = Phase.BACKFILLING
        self._buffer = [(candle, closed, event_ms)]
        return Backfill(nxt, t)

    def catch_up(self, now_ms: int) -> Backfill | None:
        """The closed candles after the cursor up to the candle forming at the exchange's time
        ``now_ms`` (a stream silent since a reconnect); None if there are none or a fetch runs."""
        if self.phase is not Phase.LIVE:
            return None
        end = bucket_start(now_ms, self.interval)
        start = self.next_open(self.last_closed)  # type: ignore[arg-type]
        if end <= start:
            return None
        self.phase = Phase.BACKFILLING
        self._buffer = []  # live frames wait for the fetch, as during any backfill
        return Backfill(start, end)

    def go_live(self, first_open: int) -> None:
        """The history before the first update (open time ``first_open``) is in: set the cursor."""
        if self.phase is not Phase.SEEDING:
            raise RuntimeError(f"go_live() while {self.phase.value}")
        self.last_closed = self.prev_open(first_open)
        self.phase = Phase.LIVE

    def accept_backfill(self, events: list[KlineEvent | GapEvent], end: int) -> list[KlineEvent | GapEvent]:
        """A backfill's REST result for ``[start, end)``: the events to deliver, in order (real gaps
        included; candles at or before the cursor left out). Everything before ``end`` is settled."""
        if self.phase is not Phase.BACKFILLING:
            raise RuntimeError(f"accept_backfill() while {self.phase.value}")
        out: list[KlineEvent | GapEvent] = []
        for ev in events:
            if ev.is_gap:
                out.append(ev)
            elif self.last_closed is None or ev.candle.open_time > self.last_closed:
                self.last_closed = ev.candle.open_time
                out.append(ev)
        # Whatever REST said, everything before `end` is settled now.
        if self.last_closed is None or self.last_closed < self.prev_open(end):
            self.last_closed = self.prev_open(end)
        self.phase = Phase.LIVE
        return out

    def resume(self) -> list[Action]:
        """After a fetch: replay the buffered updates. Stops at a new hole (its :class:`Backfill` is
        the last action; the rest stays buffered for it)."""
        buf, self._buffer = self._buffer, []
        # Sorted by open time, forming before closed: a reordered burst needs no second backfill.
        buf.sort(key=lambda e: (e[0][0], e[1]))
        out: list[Action] = []
        for i, (candle, closed, event_ms) in enumerate(buf):
            action = self.on_kline(candle, closed, event_ms)
            if action is not None:
                out.append(action)
            if self.phase is not Phase.LIVE:  # another hole: the rest waits for that backfill
                self._buffer.extend(buf[i + 1 :])
                break
        return out

    def fail(self) -> None:
        """A fetch failed for good: forget the buffer; a stream that never went live starts over."""
        self._buffer = []
        self.phase = Phase.WAITING if self.last_closed is None else Phase.LIVE

    def _buffer_put(self, candle: Candle, closed: bool, event_ms: int) -> None:
        buf = self._buffer
        if not closed and buf and not buf[-1][1]:
            buf[-1] = (candle, closed, event_ms)
        else:
            buf.append((candle, closed, event_ms))
            if len(buf) > BUFFER_MAX:
                del buf[0]  # the cursor logic refetches what falls out
