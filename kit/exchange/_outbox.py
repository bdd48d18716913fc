"""A stream connection's life and send queue, with no I/O: unit-tested without sockets.

The life is an explicit state: ``OPEN`` (events and answers are queued) -> ``CLOSING`` (the
simulator is closing it: a close frame is on its way or the TCP connection was aborted; nothing
more is queued) -> ``CLOSED`` (the connection is gone and its streams are unsubscribed). Only
:meth:`Outbox.close` and :meth:`Outbox.finish` change it, and both release a replay waiting for
room, so a closed connection can never hold the max-speed clock.

Events go through one bounded queue: at a finite speed :meth:`Outbox.offer` refuses an event
when ``capacity`` frames are queued (the caller drops the slow client, as Binance does); at max
speed :meth:`Outbox.put` waits until the writer has drained the queue to half (lossless
backpressure). Control answers always fit. Counted faults (``malformed``, ``duplicate``,
``reorder``) are applied to event frames as the writer takes them.
"""

from __future__ import annotations

import asyncio
import enum

from kit.exchange._faults import GARBAGE

EVENT = 0
CONTROL = 1
BATCH = 256  # frames per socket write

Frame = str | bytes


class ConnState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Outbox:
    """The state and the outgoing frames of one connection."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.state = ConnState.OPEN
        self.why = ""  # why it was closed, when the simulator closed it
        # Unbounded on purpose: control answers always fit; events are bounded by `capacity`.
        self.queue: asyncio.Queue[tuple[int, Frame]] = asyncio.Queue()
        self._room = asyncio.Event()
        self._malformed = self._duplicate = self._reorder = 0
        self._malformed_replace = True
        self._held: Frame | None = None
        self._garbage = 0

    # ------------------------------------------------------------------ state
    @property
    def is_open(self) -> bool:
        return self.state is ConnState.OPEN

    def close(self, why: str = "") -> bool:
        """OPEN -> CLOSING: queue nothing more. True if this call closed it (False if it already was)."""
        if self.state is not ConnState.OPEN:
            return False
        self.state, self.why = ConnState.CLOSING, why
        self._room.set()  # a max-speed put waiting for room gives up
        return True

    def finish(self) -> None:
        """-> CLOSED: the connection is gone (from any state)."""
        self.state = ConnState.CLOSED
        self._room.set()

    # ------------------------------------------------------------------ queueing
    def offer(self, frame: str) -> bool:
        """Queue an event without waiting; False when the queue is full (the client is too slow)."""
        if self.state is not ConnState.OPEN:
            return True  # nothing to deliver to, nobody to drop
        if self.queue.qsize() >= self.capacity:
            return False
        self.queue.put_nowait((EVENT, frame))
        return True

    async def put(self, frame: str) -> None:
        """Queue an event, waiting for room (max speed: lossless backpressure)."""
        while self.state is ConnState.OPEN and self.queue.qsize() >= self.capacity:
            self._room.clear()
            await self._room.wait()
        if self.state is ConnState.OPEN:
            self.queue.put_nowait((EVENT, frame))

    def answer(self, text: str) -> None:
        """Queue a control answer (never refused while open)."""
        if self.state is ConnState.OPEN:
            self.queue.put_nowait((CONTROL, text))

    async def next_batch(self) -> list[tuple[int, Frame]]:
        """What the writer sends next: everything queued, up to ``BATCH`` frames (waits for one)."""
        queue = self.queue
        batch = [await queue.get()]
        while queue.qsize() and len(batch) < BATCH:
            batch.append(queue.get_nowait())
        if not self._room.is_set() and queue.qsize() <= self.capacity // 2:
            self._room.set()
        return batch

    # ------------------------------------------------------------------ faults
    def inject(self, *, malformed: int = 0, duplicate: int = 0, reorder: int = 0, replace: bool | None = None) -> None:
        """Count faults for the next event frames (see :mod:`kit.exchange._faults`)."""
        self._malformed += malformed
        self._duplicate += duplicate
        self._reorder += reorder
        if replace is not None:
            self._malformed_replace = replace

    def frames(self, batch: list[tuple[int, Frame]]) -> tuple[list[Frame], int]:
        """The frames to send for ``batch`` with pending faults applied, and how many are faulty."""
        if not (self._malformed or self._duplicate or self._reorder or self._held is not None):
            return [frame for _, frame in batch], 0  # the hot path: no fault pending
        out: list[Frame] = []
        faulty = 0
        for kind, frame in batch:
            if kind == EVENT and (self._malformed or self._duplicate or self._reorder or self._held is not None):
                faulted = self._faulted(frame)
                faulty += len(faulted)
                out.extend(faulted)
            else:
                out.append(frame)
        return out, faulty

    def _faulted(self, frame: Frame) -> list[Frame]:
        out: list[Frame] = [frame]
        if self._malformed:
            self._malformed -= 1
            garbage = GARBAGE[self._garbage % len(GARBAGE)]
            self._garbage += 1
            out = [garbage] if self._malformed_replace else [garbage, frame]
        elif self._duplicate:
            self._duplicate -= 1
            out = [frame, frame]
        elif self._reorder or self._held is not None:
            if self._held is None:
                self._held = frame
                return []
            out = [frame, self._held]
            self._held = None
            self._reorder -= 1
        return out
