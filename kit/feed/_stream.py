"""One (symbol, interval) stream of the feed: its ordering, its subscribers, its recent candles.

A :class:`Stream` holds the stream's state and hands its subscribers their history (from
``recent``, or over REST through the feed's :class:`~kit.feed._history.History`); the
:class:`~kit.feed.Feed` carries out the actions its :class:`~kit.feed._order.StreamOrder` returns.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from kit.feed._events import Event
from kit.feed._order import StreamOrder

if TYPE_CHECKING:
    from kit.feed._connection import Connection
    from kit.feed._history import History
    from kit.feed._subscription import Subscription

# Closed candles kept per stream for late joiners and lagging subscribers (plus any history asked).
RECENT_MIN = 128


def stream_name(symbol: str, interval: str) -> str:
    """Binance's stream name: lower-case symbol, ``@kline_``, case-sensitive interval."""
    return f"{symbol.lower()}@kline_{interval}"


class Stream:
    """Ordering state, subscribers and recent closed events of one kline stream (on the feed's loop)."""

    __slots__ = ("conn", "exhausted", "interval", "name", "order", "recent", "subs", "symbol", "task")

    def __init__(self, symbol: str, interval: str) -> None:
        self.symbol = symbol
        self.interval = interval
        self.name = stream_name(symbol, interval)
        self.order = StreamOrder(symbol, interval)
        self.subs: list[Subscription] = []
        #: The last closed candles and gaps delivered (history for late joiners, resyncs).
        self.recent: deque[Event] = deque(maxlen=RECENT_MIN)
        #: True when the history fetched at start found fewer candles than asked: REST has no more.
        self.exhausted = False
        #: The REST fetch (seed or backfill) in progress, if any.
        self.task: asyncio.Task | None = None
        #: The connection carrying the stream.
        self.conn: Connection | None = None

    def __repr__(self) -> str:
        return f"Stream({self.name}, subscribers={len(self.subs)}, {self.order.phase.value})"

    @property
    def last_closed(self) -> int | None:
        return self.order.last_closed

    def keep(self, history: int) -> None:
        """Keep at least ``history`` recent closed candles from now on."""
        need = max(history, RECENT_MIN)
        if need > (self.recent.maxlen or 0):
            if len(self.recent) == self.recent.maxlen:
                self.exhausted = False  # it has dropped old events: no longer "everything REST had"
            self.recent = deque(self.recent, maxlen=need)

    def history_in_recent(self, n: int) -> list[Event] | None:
        """The last ``n`` closed candles (gaps among them) if ``recent`` holds them, or holds all REST had."""
        have = sum(1 for e in self.recent if not e.is_gap)
        if have >= n or (len(self.recent) < (self.recent.maxlen or 0) and self.exhausted):
            return last_n(list(self.recent), n)
        return None

    def closed_events(self, after: int | None, upto: int) -> list[Event] | None:
        """Recent events with ``after < open time <= upto`` if the buffer surely holds all of them."""
        rec = self.recent
        if not rec:
            return None if after is None or after < upto else []
        first = rec[0]
        first_t = first.start_ms if first.is_gap else first.candle.open_time
        if after is not None and first_t > self.order.next_open(after):
            return None  # the buffer does not reach back to the candle after `after`
        out = []
        for ev in rec:
            t = ev.start_ms if ev.is_gap else ev.candle.open_time
            if (after is None or t > after) and t <= upto:
                out.append(ev)
        return out

    # -- subscribers and their history ------------------------------------------------------------
    def join(self, sub: Subscription, history: History) -> None:
        """Add ``sub``: every update after the cursor, its history before it."""
        self.keep(sub.history)
        self.subs.append(sub)
        if self.last_closed is not None:
            sub.move_cursor(self.last_closed)
            if sub.history:
                sub.seed_later(self._seed_history(sub, history))
        # else: the first update sets the cursor and seed_waiting() seeds the subscriber.

    def seed_waiting(self, history: History) -> None:
        """The stream went live: place and seed the subscribers that joined before its cursor existed."""
        for sub in self.subs:
            if sub.cursor is None:
                sub.move_cursor(self.last_closed)
                if sub.history:
                    seed = last_n(list(self.recent), sub.history)
                    if sum(1 for e in seed if not e.is_gap) >= sub.history or self.exhausted:
                        sub.seed(seed)
                    else:
                        sub.seed_later(self._seed_history(sub, history))

    def resync(self, sub: Subscription, history: History) -> None:
        """A lagging lossless ``sub`` gets the closed candles after its cursor up to the stream's."""
        cursor, upto = sub.cursor, self.last_closed
        if upto is None or cursor is None or cursor >= upto:
            return
        events = self.closed_events(cursor, upto)
        sub.move_cursor(upto)
        if events is not None:
            sub.seed(events)
            return
        order = self.order

        async def fetch() -> None:
            sub.seed(await history.events(order, order.next_open(cursor), order.next_open(upto), lead_gap=True))

        sub.seed_later(asyncio.get_running_loop().create_task(fetch(), name=f"kit-feed-resync-{self.name}"))

    def _seed_history(self, sub: Subscription, history: History) -> asyncio.Task | None:
        """Seed ``sub`` with the last ``sub.history`` closed candles up to the cursor."""
        upto = self.last_closed
        assert upto is not None
        have = self.history_in_recent(sub.history)
        if have is not None:
            sub.seed(have)
            return None

        async def fetch() -> None:
            sub.seed(last_n(await history.last(self.order, sub.history, self.order.next_open(upto)), sub.history))

        return asyncio.get_running_loop().create_task(fetch(), name=f"kit-feed-history-{self.name}")

    def deliver(self, ev: Event) -> None:
        """Fan one event out (closed candles and gaps are also kept in ``recent``)."""
        if ev.closed or ev.is_gap:
            self.recent.append(ev)
        for sub in self.subs:
            sub.put(ev)

    def close(self) -> None:
        """Cancel the fetch in progress and close every subscriber."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.task = None
        for sub in list(self.subs):
            sub.close()


def last_n(events: list[Event], n: int) -> list[Event]:
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
