"""One consumer of one stream: a bounded queue that never blocks the feed.

Two modes, chosen per subscription:

``lossless`` (the default; the daemon)
    Every event is queued in order. The queue is bounded by ``max_queue``; when it fills, the
    forming updates in it are compacted away (each is superseded by its candle's closed event)
    and, if it is still full, the subscription is *cut*: new events are no longer queued and
    only the position of the last queued closed candle is remembered. When the consumer has
    drained the queue it is *resynced*: the closed candles it missed are taken from the stream's
    recent buffer or fetched over REST, then live events resume. A slow consumer therefore
    loses forming updates, never a closed candle, and costs at most ``max_queue`` events of memory.

``conflate`` (viewers: charts, notebooks)
    Closed candles are queued; of the forming updates only the latest is kept (it replaces an
    older one still waiting). When ``max_queue`` closed candles wait, the oldest is dropped
    (counted in ``dropped``): a viewer wants the present, not a backlog.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from kit.errors import ConfigError
from kit.feed._events import Event
from kit.feed._source import BaseSubscription, Lifecycle
from kit.market.intervals import validate_interval, validate_symbol

if TYPE_CHECKING:
    from kit.feed._feed import Feed

MODES = ("lossless", "conflate")
_CLOSED = Lifecycle.CLOSED  # read on the hot path


def check_request(symbol: str, interval: str, history: object, mode: str) -> str:
    """Validate a subscription request (shared by every feed flavour); returns the normalised symbol."""
    symbol = validate_symbol(symbol)
    validate_interval(interval)
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(history, int) or history < 0:
        raise ConfigError(f"history must be an int >= 0, got {history!r}")
    return symbol


class Subscription(BaseSubscription):
    """An async iterator over one stream's events; also an async context manager.

    Made by :meth:`kit.feed.Feed.subscribe`. Leaving the ``async with`` block (or calling
    :meth:`close`, which is synchronous and idempotent) unsubscribes; when the last subscriber
    of a stream leaves, the feed sends ``UNSUBSCRIBE``. Its life is a :class:`~kit.feed.Lifecycle`.

    The methods under "producer side" are the feed's: they never await and never block.
    """

    __slots__ = (
        "_closed_error",
        "_cursor",
        "_cut",
        "_feed",
        "_q",
        "_seed",
        "_seed_task",
        "_waiter",
        "dropped",
        "gaps",
        "history",
        "interval",
        "lossless",
        "max_queue",
        "mode",
        "resyncs",
        "symbol",
    )

    def __init__(
        self, feed: Feed, symbol: str, interval: str, *, history: int, mode: str, gaps: bool, max_queue: int
    ) -> None:
        super().__init__()
        self._feed = feed
        self.symbol = symbol
        self.interval = interval
        self.history = history
        self.mode = mode
        self.lossless = mode == "lossless"
        self.gaps = gaps
        self.max_queue = max_queue
        self._q: deque[Event] = deque()
        self._seed: deque[Event] = deque()
        self._seed_task: asyncio.Task | None = None
        self._waiter: asyncio.Future | None = None
        # Open time of the last closed candle accepted (seeded or queued): where a resync resumes.
        self._cursor: int | None = None
        self._cut = False
        self._closed_error: BaseException | None = None
        #: Events this subscription lost on purpose (conflate mode's dropped backlog).
        self.dropped = 0
        #: Times a lossless subscription was cut and resynced because its consumer lagged.
        self.resyncs = 0

    def __repr__(self) -> str:
        return (
            f"Subscription({self.symbol} {self.interval}, mode={self.mode}, queued={len(self._q)}, {self.state.value})"
        )

    # -- lifecycle (BaseSubscription) ----------------------------------------------------------
    async def _attach(self) -> None:
        await self._feed.attach(self)

    def close(self) -> None:
        """Unsubscribe now; events still queued are discarded. Idempotent, synchronous, safe from a
        callback (e.g. Panel's ``on_session_destroyed``) or after the feed stopped."""
        self._q.clear()
        self._seed.clear()
        super().close()

    def _detach(self, attached: bool) -> None:
        if self._seed_task is not None and not self._seed_task.done():
            self._seed_task.cancel()
        if attached:
            self._feed.detach(self)
        self._wake()

    @property
    def queued(self) -> int:
        """Events waiting for the consumer."""
        return len(self._seed) + len(self._q)

    @property
    def lagging(self) -> bool:
        """True while a lossless subscription is cut off and waits to be resynced."""
        return self._cut

    @property
    def cursor(self) -> int | None:
        """Open time of the last closed candle accepted (seeded or queued): where a resync resumes."""
        return self._cursor

    # -- consumer side ---------------------------------------------------------------------------
    async def __anext__(self) -> Event:
        if self.state is Lifecycle.NEW:
            await self.start()
        while True:
            if self._seed:
                return self._seed.popleft()
            task = self._seed_task
            if task is not None:
                if not task.done():
                    await asyncio.wait((task,))
                    continue
                self._seed_task = None
                exc = None if task.cancelled() else task.exception()
                if exc is not None:
                    self.fail(exc)
                continue
            if self._q:
                return self._q.popleft()
            if self.state is Lifecycle.CLOSED:
                if self._closed_error is not None:
                    err, self._closed_error = self._closed_error, None
                    raise err
                raise StopAsyncIteration
            if self._cut:
                # Re-attach: the closed candles missed since the cursor first, then live.
                self._cut = False
                self.resyncs += 1
                self._feed.resync(self)
                continue
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    # -- producer side (the feed's, on the loop, never awaits) -----------------------------------
    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def put(self, ev: Event) -> None:
        """Queue one live event (the feed's hot path)."""
        if self._cut or self.state is _CLOSED:
            return
        q = self._q
        if ev.is_gap:
            if not self.gaps:
                return
            q.append(ev)
        elif self.lossless:
            if len(q) >= self.max_queue:
                self._overflow()
                if self._cut:
                    return
                q = self._q  # compacted into a new deque
            q.append(ev)
            if ev.closed:
                self._cursor = ev.candle.open_time
        else:
            if q and not q[-1].closed and not q[-1].is_gap:
                q[-1] = ev  # the newer update (forming or closed) of the same candle supersedes it
            else:
                if len(q) >= self.max_queue:
                    q.popleft()
                    self.dropped += 1
                q.append(ev)
            if ev.closed:
                self._cursor = ev.candle.open_time
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _overflow(self) -> None:
        q = self._q
        kept: deque[Event] = deque(e for e in q if e.closed or e.is_gap)
        last = q[-1]
        if not last.closed and not last.is_gap:
            kept.append(last)  # the latest forming update is still news
        if len(kept) < self.max_queue * 3 // 4:
            self._q = kept
            return
        # Still full of closed candles: stop queueing; a resync refills from the cursor later.
        self._q = kept
        while self._q and not self._q[-1].closed and not self._q[-1].is_gap:
            self._q.pop()
        self._cut = True
        self._feed.note_lagging(self)

    def fail(self, exc: BaseException) -> None:
        """End the subscription with ``exc``, raised to the consumer once its queue is drained."""
        if self.state is _CLOSED:
            return
        self._closed_error = exc
        BaseSubscription.close(self)  # what is queued is still delivered, then the error is raised

    def move_cursor(self, cursor: int | None) -> None:
        """Live events from now on follow the closed candle opening at ``cursor``."""
        self._cursor = cursor

    def seed(self, events: list[Event]) -> None:
        """Events to yield before the live queue (history, or a resync's missed candles)."""
        for ev in events:
            if ev.is_gap:
                if self.gaps:
                    self._seed.append(ev)
            else:
                self._seed.append(ev)
        self._wake()

    def seed_later(self, task: asyncio.Task | None) -> None:
        """A fetch that will :meth:`seed` this subscription; the consumer waits for it (and gets its error)."""
        self._seed_task = task
