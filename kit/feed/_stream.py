"""One (symbol, interval) stream: puts closed candles in order, fills holes over REST, fans out.

The stream keeps a cursor: ``last_closed``, the open time of the last closed candle delivered to
its subscribers. An update for open time ``t``:

- ``t`` before the next expected candle: a duplicate or a stale, reordered update -> dropped
  (counted);
- ``t`` after the next expected candle: candles are missing (a reconnect, a stall, a reordered
  frame) -> the stream buffers live updates, fetches the missing closed candles over REST,
  delivers them, reports any range the exchange confirms empty as a :class:`GapEvent`, then
  replays the buffer;
- otherwise the update is delivered: forming updates as they come, the closed candle once.

So every subscriber sees every closed candle exactly once, in order, whatever the wire did.
The first update after subscribing establishes the cursor; when a subscriber wants history the
stream first fetches the last N closed candles before it over REST (WebSocket first, buffer,
fetch, merge by open time: no hole and no overlap at the seam).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from kit.feed._events import GapEvent, KlineEvent
from kit.market.candle import Candle
from kit.market.intervals import bucket_start, interval_ms, next_open

if TYPE_CHECKING:
    from kit.feed._feed import Feed
    from kit.feed._subscription import Subscription

log = logging.getLogger("kit.feed")

# Closed candles kept per stream for late joiners and lagging subscribers (plus any history asked).
RECENT_MIN = 128
# Live updates buffered per stream while a REST backfill runs (closed candles; forming conflated).
BUFFER_MAX = 10_000


def stream_name(symbol: str, interval: str) -> str:
    """Binance's stream name: lower-case symbol, ``@kline_``, case-sensitive interval."""
    return f"{symbol.lower()}@kline_{interval}"


class Stream:
    """Ordering state and subscribers of one kline stream. All methods run on the feed's loop."""

    __slots__ = (
        "_buffer",
        "_exhausted",
        "_fixed",
        "_last_event_ms",
        "_offset",
        "_task",
        "conn",
        "feed",
        "forming",
        "interval",
        "last_closed",
        "name",
        "recent",
        "step",
        "subs",
        "symbol",
    )

    def __init__(self, feed: Feed, symbol: str, interval: str) -> None:
        self.feed = feed
        self.symbol = symbol
        self.interval = interval
        self.name = stream_name(symbol, interval)
        self._fixed = interval != "1M"
        self.step = interval_ms(interval) if self._fixed else 0
        self._offset = 4 * 86_400_000 if interval.endswith("w") else 0  # Binance weeks start on Monday
        self.subs: list[Subscription] = []
        self.last_closed: int | None = None
        self.forming: KlineEvent | None = None
        self._last_event_ms = 0
        self.recent: deque[KlineEvent | GapEvent] = deque(maxlen=RECENT_MIN)
        self._buffer: list[tuple[Candle, bool, int]] | None = None  # set while a REST task runs
        self._task: asyncio.Task | None = None
        # True when the history fetched at start found fewer candles than asked: REST has no more.
        self._exhausted = False
        self.conn: object | None = None

    def __repr__(self) -> str:
        return f"Stream({self.name}, subscribers={len(self.subs)}, last_closed={self.last_closed})"

    def _next(self, t: int) -> int:
        return t + self.step if self._fixed else next_open(t, "1M")

    def _prev(self, t: int) -> int:
        return t - self.step if self._fixed else bucket_start(t - 1, "1M")

    # -- subscribers -----------------------------------------------------------------------------
    def add(self, sub: Subscription) -> None:
        """Register ``sub``: it gets every update after the current cursor, history before it."""
        need = max(sub.history, RECENT_MIN)
        if need > (self.recent.maxlen or 0):
            if len(self.recent) == self.recent.maxlen:
                self._exhausted = False  # it has dropped old events: no longer "everything REST had"
            self.recent = deque(self.recent, maxlen=need)
        self.subs.append(sub)
        sub._stream = self
        if self.last_closed is not None:
            sub._cursor = self.last_closed
            if sub.history:
                sub._seed_task = self._seed_history(sub)
        # else: the first update establishes the cursor and seeds every waiting subscriber.

    def remove(self, sub: Subscription) -> None:
        try:
            self.subs.remove(sub)
        except ValueError:
            pass

    def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        for sub in list(self.subs):
            sub.close()

    def _closed_events(self, after: int | None, upto: int) -> list[KlineEvent | GapEvent] | None:
        """Recent events with ``after < open time <= upto`` if the buffer surely holds all of them."""
        rec = self.recent
        if not rec:
            return None if after is None or after < upto else []
        first = rec[0]
        first_t = first.start_ms if first.is_gap else first.candle.open_time
        if after is not None and first_t > self._next(after):
            return None  # the buffer does not reach back to the candle after `after`
        out = []
        for ev in rec:
            t = ev.start_ms if ev.is_gap else ev.candle.open_time
            if (after is None or t > after) and t <= upto:
                out.append(ev)
        return out

    def _seed_history(self, sub: Subscription) -> asyncio.Task | None:
        """Seed ``sub`` with the last ``sub.history`` closed candles up to the cursor."""
        upto = self.last_closed
        assert upto is not None
        have = [e for e in self.recent if not e.is_gap]
        if len(have) >= sub.history or (len(self.recent) < (self.recent.maxlen or 0) and self._exhausted):
            sub._seeded(_last_n(list(self.recent), sub.history))
            return None

        async def fetch() -> None:
            sub._seeded(_last_n(await self._fetch_last(sub.history, self._next(upto)), sub.history))

        return asyncio.get_running_loop().create_task(fetch(), name=f"kit-feed-history-{self.name}")

    def seed_after(self, sub: Subscription, cursor: int | None) -> asyncio.Task | None:
        """Resync a lagging subscriber: closed candles after ``cursor`` up to the stream's cursor."""
        upto = self.last_closed
        if upto is None or cursor is None or cursor >= upto:
            return None
        events = self._closed_events(cursor, upto)
        sub._cursor = upto
        if events is not None:
            sub._seeded(events)
            return None

        async def fetch() -> None:
            sub._seeded(await self.feed._fetch_events(self, self._next(cursor), self._next(upto), lead_gap=True))

        return asyncio.get_running_loop().create_task(fetch(), name=f"kit-feed-resync-{self.name}")

    # -- the hot path ----------------------------------------------------------------------------
    def on_kline(self, candle: Candle, closed: bool, event_ms: int) -> None:
        """One valid update from the wire (or from the buffer after a backfill)."""
        buf = self._buffer
        if buf is not None:
            self._buffer_put(buf, candle, closed, event_ms)
            return
        t = candle[0]
        lc = self.last_closed
        if lc is None:
            self._buffer = [(candle, closed, event_ms)]
            self._start(self._initial(t))
            return
        nxt = self._next(lc)
        if t == nxt:
            if closed:
                self.last_closed = t
                self.forming = None
                ev = KlineEvent(self.symbol, self.interval, candle, True)
                self.recent.append(ev)
            else:
                if 0 < event_ms <= self._last_event_ms and self.forming is not None and self.forming.candle[0] == t:
                    # An older (reordered) or repeated (duplicated) update of the forming candle.
                    self.feed._counts["out_of_order" if event_ms < self._last_event_ms else "duplicates"] += 1
                    return
                ev = KlineEvent(self.symbol, self.interval, candle, False)
                self.forming = ev
            self._last_event_ms = event_ms
            for sub in self.subs:
                sub._put(ev)
        elif t < nxt:
            self.feed._counts["duplicates" if closed else "stale"] += 1
        else:
            self._buffer = [(candle, closed, event_ms)]
            self._start(self._backfill(nxt, t))

    def catch_up(self, now_ms: int) -> None:
        """Fetch over REST the closed candles after the last one delivered, up to the candle forming
        at the exchange's time ``now_ms`` (a silent stream after a reconnect, see Feed)."""
        if self._buffer is not None or self.last_closed is None:
            return  # a fetch is already running, or the stream has not started
        end = bucket_start(now_ms, self.interval)
        start = self._next(self.last_closed)
        if end > start:
            self._buffer = []  # live frames wait for the fetch, as during any backfill
            self._start(self._backfill(start, end))

    def _buffer_put(self, buf: list[tuple[Candle, bool, int]], candle: Candle, closed: bool, event_ms: int) -> None:
        if not closed and buf and not buf[-1][1]:
            buf[-1] = (candle, closed, event_ms)
        else:
            buf.append((candle, closed, event_ms))
            if len(buf) > BUFFER_MAX:
                del buf[0]  # the cursor logic refetches what falls out

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._guard(coro), name=f"kit-feed-sync-{self.name}")

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        # REST fetches retry transient failures forever; what escapes is permanent (an unknown
        # symbol, a refused request): every subscriber of the stream gets the error.
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("stream failed", extra={"stream": self.name, "error": str(exc)})
            self._buffer = None
            for sub in list(self.subs):
                sub._fail(exc)

    def _deliver(self, ev: KlineEvent | GapEvent) -> None:
        self.recent.append(ev)
        for sub in self.subs:
            sub._put(ev)

    def _replay_buffer(self) -> None:
        buf, self._buffer = self._buffer or [], None
        self._task = None
        # Sorted by open time, forming before closed: a reordered burst needs no second backfill.
        buf.sort(key=lambda e: (e[0][0], e[1]))
        for i, (candle, closed, event_ms) in enumerate(buf):
            self.on_kline(candle, closed, event_ms)
            if self._buffer is not None:  # another hole: the rest waits for that backfill
                self._buffer.extend(buf[i + 1 :])
                return

    async def _initial(self, t: int) -> None:
        """First update at open time ``t``: fetch the history subscribers want, then go live."""
        want = max((s.history for s in self.subs), default=0)
        events = await self._fetch_last(want, t) if want else []
        n_closed = sum(1 for e in events if not e.is_gap)
        self._exhausted = n_closed < want
        for ev in events:
            self.recent.append(ev)
        self.last_closed = self._prev(t)
        for sub in self.subs:
            if sub._cursor is None:
                sub._cursor = self.last_closed
                if sub.history:
                    seed = _last_n(list(self.recent), sub.history)
                    if sum(1 for e in seed if not e.is_gap) >= sub.history or self._exhausted:
                        sub._seeded(seed)
                    else:
                        sub._seed_task = self._seed_history(sub)
        for ev in events:
            if ev.is_gap:
                self.feed._note_gap(self, ev, live=False)
        self._replay_buffer()

    async def _fetch_last(self, n: int, end: int) -> list[KlineEvent | GapEvent]:
        """The last ``n`` closed candles before ``end`` (with the gaps among them) over REST.

        The first window is ``n`` slots; an outage inside it makes the stream look further back
        (doubling, a few times) so a strategy still gets ``n`` candles to warm up on. No request
        starts before the epoch or the exchange's first candle: a symbol with fewer candles than
        ``n`` (a young listing, a 1d stream) yields what exists and warms up as candles come.
        """
        span = n * (self.step or 31 * 86_400_000)
        lo = max(0, end - span)
        events = await self.feed._fetch_events(self, lo, end, lead_gap=False)
        floor: int | None = None
        for _ in range(4):
            have = sum(1 for e in events if not e.is_gap)
            if have >= n or lo == 0:
                break
            if floor is None:
                floor = await self.feed._first_open(self)
            if floor is None or lo <= floor:
                break  # the window already reaches back to the exchange's first candle
            span *= 2
            first = next((e.candle.open_time for e in events if not e.is_gap), end)
            start = max(floor, lo - span)
            more = await self.feed._fetch_events(self, start, first, lead_gap=False, settle=False)
            lo = start
            if any(not e.is_gap for e in more):
                events = more + events  # `more` ends with the gap up to `first`, if there is one
        return events

    async def _backfill(self, start: int, end: int) -> None:
        """Closed candles in ``[start, end)`` were missed: fetch, deliver, report real gaps."""
        events = await self.feed._fetch_events(self, start, end, lead_gap=True)
        n = 0
        for ev in events:
            if ev.is_gap:
                self.feed._note_gap(self, ev, live=True)
                self._deliver(ev)
            elif self.last_closed is None or ev.candle.open_time > self.last_closed:
                self.last_closed = ev.candle.open_time
                self._deliver(ev)
                n += 1
        self.feed._counts["backfilled"] += n
        if n:
            log.info("backfilled missed candles", extra={"stream": self.name, "candles": n})
        # Whatever REST said, everything before `end` is settled now.
        if self.last_closed is None or self.last_closed < self._prev(end):
            self.last_closed = self._prev(end)
        self._replay_buffer()


def _last_n(events: list[KlineEvent | GapEvent], n: int) -> list[KlineEvent | GapEvent]:
    """The last ``n`` closed candles of ``events`` with the gap events among them."""
    if n <= 0:
        return []
    count = 0
    for i in range(len(events) - 1, -1, -1):
        if not events[i].is_gap:
            count += 1
            if count == n:
                return events[i:]
    return list(events)
