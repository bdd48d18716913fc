"""Closed candles over REST for the feed: history windows, backfills, and the gaps among them.

:func:`events_from_candles` is the pure part (a REST answer -> events with the real gaps);
:class:`History` does the waiting: a bounded number of requests in flight, transient failures
retried forever with capped backoff, a refused request (4xx) raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from kit.errors import ExchangeError
from kit.feed._events import Event, GapEvent, KlineEvent
from kit.feed._order import StreamOrder
from kit.feed._rest import RestClient
from kit.feed._stream import stream_name
from kit.market.candle import Candle
from kit.market.intervals import next_open

log = logging.getLogger("kit.feed")

T = TypeVar("T")
_MONTH_MS = 31 * 86_400_000


def events_from_candles(
    symbol: str, interval: str, candles: list[Candle], start: int, end: int, *, lead_gap: bool
) -> list[Event]:
    """``candles`` (sorted, ``start <= open_time < end``) as closed events, with a GapEvent for each hole.

    A hole at the start counts only if ``lead_gap`` (a backfill from a known candle; history
    windows start at an arbitrary time); a hole at the end counts if there were candles or ``lead_gap``.
    """
    events: list[Event] = []
    expected = start if lead_gap else (candles[0].open_time if candles else end)
    for c in candles:
        if c.open_time > expected:
            events.append(GapEvent(symbol, interval, expected, c.open_time))
        events.append(KlineEvent(symbol, interval, c, True))
        expected = next_open(c.open_time, interval)
    if expected < end and (candles or lead_gap):
        events.append(GapEvent(symbol, interval, expected, end))
    return events


class History:
    """REST reads of one feed. Create it on the loop that uses it (it holds a semaphore)."""

    def __init__(self, rest: RestClient, *, concurrency: int, backoff_initial: float, backoff_max: float) -> None:
        self.rest = rest
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._sem = asyncio.Semaphore(concurrency)
        self._symbols: set[str] | None = None

    async def listed(self, symbol: str) -> bool | None:
        """Whether the exchange lists ``symbol`` (its list is read once, again only for a symbol not
        in it); None when the exchange cannot be asked now (the stream keeps waiting meanwhile)."""
        try:
            if self._symbols is None or symbol not in self._symbols:
                async with self._sem:
                    self._symbols = await asyncio.to_thread(self.rest.symbols)
        except Exception as exc:
            log.debug("could not check the symbol list", extra={"error": str(exc)})
            return None
        return symbol in self._symbols

    async def events(
        self, order: StreamOrder, start: int, end: int, *, lead_gap: bool, settle: bool = True
    ) -> list[Event]:
        """Closed candles with ``start <= open_time < end`` as events, plus GapEvents for holes.

        ``settle``: ``end`` is the live edge, where REST may lag the WebSocket by a moment, so a
        hole at the end is checked twice before it is believed.
        """
        if start >= end:
            return []
        candles = await self._range(order, start, end)
        if settle and (not candles or candles[-1].open_time < order.prev_open(end)):
            # A trailing hole might be REST lagging the WebSocket by a moment: look once more.
            await asyncio.sleep(0.5)
            candles = await self._range(order, start, end)
        return events_from_candles(order.symbol, order.interval, candles, start, end, lead_gap=lead_gap)

    async def last(self, order: StreamOrder, n: int, end: int) -> list[Event]:
        """The last ``n`` closed candles before ``end`` (with the gaps among them).

        The first window is ``n`` slots; an outage inside it makes the stream look further back
        (doubling, a few times) so a strategy still gets ``n`` candles to warm up on. No request
        starts before the epoch or the exchange's first candle: a symbol with fewer candles than
        ``n`` (a young listing, a 1d stream) yields what exists and warms up as candles come.
        """
        span = n * (order.step or _MONTH_MS)
        lo = max(0, end - span)
        events = await self.events(order, lo, end, lead_gap=False)
        floor: int | None = None
        for _ in range(4):
            have = sum(1 for e in events if not e.is_gap)
            if have >= n or lo == 0:
                break
            if floor is None:
                floor = await self.first_open(order)
            if floor is None or lo <= floor:
                break  # the window already reaches back to the exchange's first candle
            span *= 2
            first = next((e.candle.open_time for e in events if not e.is_gap), end)
            start = max(floor, lo - span)
            more = await self.events(order, start, first, lead_gap=False, settle=False)
            lo = start
            if any(not e.is_gap for e in more):
                events = more + events  # `more` ends with the gap up to `first`, if there is one
        return events

    async def first_open(self, order: StreamOrder) -> int | None:
        """Open time of the exchange's first candle of the stream (None: it has none yet)."""
        first = await self._retrying(order, self.rest.klines, order.symbol, order.interval, start_ms=0, limit=1)
        return first[0].open_time if first else None

    async def _range(self, order: StreamOrder, start: int, end: int) -> list[Candle]:
        return await self._retrying(order, self.rest.klines_range, order.symbol, order.interval, start, end)

    async def _retrying(self, order: StreamOrder, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # Retries transient failures forever (the exchange may be restarting); a 4xx answer
        # (unknown symbol...) raises ExchangeError.
        attempt = 0
        while True:
            try:
                async with self._sem:
                    return await asyncio.to_thread(fn, *args, **kwargs)
            except ExchangeError as exc:
                if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (418, 429):
                    raise
                wait = min(self.backoff_max, self.backoff_initial * 2**attempt)
                attempt += 1
                log.warning(
                    "REST backfill failed; retrying",
                    extra={"stream": stream_name(order.symbol, order.interval), "error": str(exc), "wait_s": wait},
                )
                await asyncio.sleep(wait)
