"""The daemon's streams: one supervised task per (symbol, interval) the book needs.

Each task subscribes to the indicator engine with enough history to cover the time the stream's
strategies missed (plus warm-up), replays that history through ``on_row`` exactly like live rows,
then follows the live closed candles. A failing subscription (the feed, the exchange) is retried
with a growing pause (1, 2, 4 ... 30 s) and counted in the stream's :class:`StreamHealth`; its
traceback is logged once, then one line per retry. A failure while processing a candle is a bug
(:class:`~kit.daemon._health.TaskFailed`): it is not retried and stops the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable

from kit.daemon._book import Book, Stream, describe
from kit.daemon._config import DaemonConfig
from kit.daemon._health import StreamHealth, TaskFailed
from kit.daemon._supervisor import Supervisor
from kit.engine import IndicatorEngine, Row
from kit.market.intervals import interval_ms

log = logging.getLogger("kit.daemon")

StreamKey = tuple[str, str]


class Streams:
    """The subscription tasks. ``engine`` is set once the daemon has started it."""

    def __init__(
        self,
        book: Book,
        config: DaemonConfig,
        supervisor: Supervisor,
        on_row: Callable[[str, str, Row], None],
        now_ms: Callable[[], int],
        counts: Counter[str],
    ) -> None:
        self.book = book
        self.config = config
        self.engine: IndicatorEngine | None = None
        self._supervisor = supervisor
        self._on_row = on_row
        self._now_ms = now_ms
        self._counts = counts
        self._tasks: dict[StreamKey, asyncio.Task[None]] = {}
        self._served: dict[StreamKey, Stream] = {}  # the book's Stream object each task feeds
        self._health: dict[StreamKey, StreamHealth] = {}

    def history(self, missed: int) -> int:
        """Candles to ask for: the missed ones plus a quarter of the warm-up, at least the warm-up,
        at most ``max_backfill``."""
        return min(max(self.config.history, missed + self.config.history // 4), self.config.max_backfill)

    def sync(self, now: int) -> None:
        """Subscribe every stream the book has and unsubscribe those it dropped."""
        for skey in list(self.book.streams):
            self._ensure(skey, now)
        self.prune()

    def prune(self) -> None:
        """Cancel the tasks of streams the book dropped (every strategy on them left or paused)."""
        for skey in [k for k in self._tasks if k not in self.book.streams]:
            self._tasks.pop(skey).cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def health(self) -> dict[str, StreamHealth]:
        """Health of the streams subscribed now, by ``SYMBOL/interval``."""
        return {f"{s}/{i}": h for (s, i), h in self._health.items() if (s, i) in self._tasks}

    def health_of(self, skey: StreamKey) -> StreamHealth:
        return self._health.get(skey) or StreamHealth()

    def _ensure(self, skey: StreamKey, now: int) -> None:
        task = self._tasks.get(skey)
        stream = self.book.streams[skey]
        if task is not None and not task.done():
            if self._served.get(skey) is stream:
                return
            # The book rebuilt this stream (its strategies all left, then came back): resubscribe,
            # so the engine follows the new stream's specs and its strategies warm up again.
            task.cancel()
        self._served[skey] = stream
        iv = interval_ms(skey[1])
        groups = [*stream.groups.values(), *stream.followers.values()]  # followers: it is their extra stream
        oldest = min((m.checkpoint for g in groups for m in g.members.values()), default=now)
        history = self.history(max(0, math.ceil((now - oldest) / iv)))
        self._tasks[skey] = self._supervisor.spawn(f"stream {skey[0]}/{skey[1]}", self._run(skey, history))

    async def _run(self, skey: StreamKey, history: int) -> None:
        symbol, interval = skey
        health = self._health.setdefault(skey, StreamHealth())
        log.info("subscribing", extra={"stream": f"{symbol}/{interval}", "history": history})
        while True:
            stream = self.book.streams.get(skey)
            if stream is None:
                return
            attached = None
            try:
                async with self.engine.subscribe(symbol, interval, sorted(stream.specs(), key=str),
                                                 history=history) as sub:  # fmt: skip
                    stream = self.book.streams.get(skey)
                    if stream is None or self._served.get(skey) is not stream:
                        return
                    stream.attach(sub, self.engine.state(symbol, interval))
                    attached = sub
                    for i, row in enumerate(sub.history):  # the backfill: replayed exactly like live rows
                        self._on_row(symbol, interval, row)
                        if i % 50 == 49:
                            await asyncio.sleep(0)  # let the writer, other streams and /status run
                    health.ok()
                    stream.live = True  # from here a missing candle is an outage (kit.daemon._follow)
                    async for row in sub:
                        if row.closed:
                            self._on_row(symbol, interval, row)
                        if sub.dropped:
                            raise RuntimeError(f"{sub.dropped} rows skipped by the engine (daemon too slow)")
                return  # the source ended
            except (asyncio.CancelledError, TaskFailed):
                raise
            except Exception as exc:
                n = health.failed(describe(exc))
                self._counts["stream_failures"] += 1
                where = {"stream": f"{symbol}/{interval}", "failures": n}
                if n == 1:
                    log.exception("stream failed; resubscribing", extra=where)
                else:  # the traceback was logged at the first failure; one line each time after
                    log.warning("stream failed again; resubscribing", extra={**where, "error": health.last_error})
                await asyncio.sleep(min(30.0, 2.0 ** (n - 1)))
                # Resume from the last candle processed: ask for everything since, plus warm-up.
                last = stream.last_time if stream is not None else None
                history = self.history(0 if last is None else max(0, (self._now_ms() - last) // interval_ms(interval)))
            finally:
                if stream is not None:
                    stream.live = False
                if attached is not None and stream is not None and stream.sub is attached:
                    stream.detach()
