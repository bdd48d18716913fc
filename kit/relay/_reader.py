"""Reading the relayed feed from Redis with the Feed's own ``subscribe()`` interface."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kit.errors import ConfigError
from kit.feed import BaseSubscription, Event, KlineEvent, Lifecycle
from kit.feed._subscription import check_request
from kit.market.intervals import next_open
from kit.relay._cancel import honour_cancel
from kit.relay._keys import Keys, check_redis_url, decode_entry, decode_forming, stream_name

log = logging.getLogger("kit.relay")


class RedisFeed:
    """A drop-in for :class:`kit.feed.Feed` in processes that do not hold the exchange connection.

    Args:
        redis_url: ``redis://host:port/db``; default ``KIT_REDIS_URL``.
        keys: key layout; must match the relay's.
        demand_ttl: seconds a reader's demand lasts unless renewed (renewed every third of it);
            a crashed reader stops costing the relay an upstream stream after this.
        block_ms: longest single blocking read; bounds how fast a closed subscription notices.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        keys: Keys | None = None,
        demand_ttl: float = 30.0,
        block_ms: int = 1000,
    ) -> None:
        redis_url = check_redis_url(redis_url, "RedisFeed needs KIT_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
        if demand_ttl <= 1:
            raise ConfigError(f"demand_ttl must be > 1 second, got {demand_ttl!r}")
        if block_ms < 10:
            raise ConfigError(f"block_ms must be >= 10, got {block_ms!r}")
        self.redis_url = redis_url
        self.keys = keys or Keys()
        self.demand_ttl = float(demand_ttl)
        self.block_ms = int(block_ms)
        self.redis: aioredis.Redis | None = None
        self._subs: set[RedisSubscription] = set()

    async def start(self) -> RedisFeed:
        if self.redis is None:
            self.redis = aioredis.Redis.from_url(self.redis_url)
        return self

    def register(self, sub: RedisSubscription) -> None:
        """A subscription started (it calls this); ``stop()`` closes it."""
        self._subs.add(sub)

    def unregister(self, sub: RedisSubscription) -> None:
        self._subs.discard(sub)

    async def stop(self) -> None:
        for sub in list(self._subs):
            await sub.aclose()
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None

    async def __aenter__(self) -> RedisFeed:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def subscribe(
        self,
        symbol: str,
        interval: str,
        *,
        history: int = 0,
        mode: str = "lossless",
        gaps: bool = False,
        max_queue: int | None = None,
    ) -> RedisSubscription:
        """Same contract as :meth:`kit.feed.Feed.subscribe`: the last ``history`` closed candles,
        then live events; every closed candle once, in order. ``max_queue`` is accepted for
        signature compatibility: the backlog lives in Redis, not in this process."""
        symbol = check_request(symbol, interval, history, mode)
        return RedisSubscription(self, symbol, interval, history=history, gaps=bool(gaps))

    def stats(self) -> dict[str, Any]:
        return {
            "subscribers": len(self._subs),
            "streams": sorted({s.name for s in self._subs}),
            "trimmed": sum(s.trimmed for s in self._subs),
        }


class RedisSubscription(BaseSubscription):
    """One reader of one relayed stream; async iterator and async context manager.

    Its life is a :class:`~kit.feed.Lifecycle`, as a feed subscription's (:class:`BaseSubscription`).
    Leaving ``async with`` (or :meth:`aclose`) waits for the reader tasks to stop; :meth:`close`
    (synchronous) leaves that to a task.
    """

    __slots__ = (
        "_expect",
        "_forming",
        "_last_id",
        "_last_open",
        "_ready",
        "_stopping",
        "_tasks",
        "_wake",
        "feed",
        "gaps",
        "history",
        "interval",
        "name",
        "symbol",
        "trimmed",
    )

    def __init__(self, feed: RedisFeed, symbol: str, interval: str, *, history: int, gaps: bool) -> None:
        super().__init__()
        self.feed = feed
        self.symbol = symbol
        self.interval = interval
        self.name = stream_name(symbol, interval)
        self.history = history
        self.gaps = gaps
        #: Times the reader fell behind the relay's trimmed stream (a hole it could not fill).
        self.trimmed = 0
        self._last_id: str | None = None
        self._last_open: int = -1
        self._expect: int | None = None
        self._ready: deque[Event] = deque()
        self._forming: KlineEvent | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._stopping: asyncio.Task | None = None  # held: the loop keeps tasks only weakly

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def queued(self) -> int:
        return len(self._ready)

    # -- lifecycle (BaseSubscription) ------------------------------------------------------------
    async def _attach(self) -> None:
        try:
            await self.feed.start()
            self.feed.register(self)
            await self._announce()
        except BaseException:
            # Redis unreachable: not started, so the next start() (or anext()) tries again.
            self.state = Lifecycle.NEW
            self.feed.unregister(self)
            raise
        self._tasks = [
            asyncio.create_task(self._renew(), name=f"demand-{self.name}"),
            asyncio.create_task(self._read_closed(), name=f"closed-{self.name}"),
            asyncio.create_task(self._read_forming(), name=f"forming-{self.name}"),
        ]

    def _detach(self, attached: bool) -> None:
        self.feed.unregister(self)
        self._ready.clear()  # as a feed subscription: what is still queued is discarded
        self._forming = None
        self._wake.set()
        if self._tasks:  # a synchronous close(): the tasks stop in the background
            tasks, self._tasks = self._tasks, []
            self._stopping = asyncio.get_running_loop().create_task(_stop(tasks), name=f"stop-{self.name}")

    async def aclose(self) -> None:
        """Close and wait until the reader tasks have stopped."""
        tasks, self._tasks = self._tasks, []
        self.close()
        await _stop(tasks)

    async def __anext__(self) -> Event:
        if self.state is Lifecycle.NEW:
            await self.start()
        while True:
            if self._ready:
                return self._ready.popleft()
            f = self._forming
            if f is not None:
                self._forming = None
                if f.candle.open_time > self._last_open:  # never a forming update of a closed candle
                    return f
                continue
            if self.state is Lifecycle.CLOSED:
                raise StopAsyncIteration
            for t in self._tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            self._wake.clear()
            await self._wake.wait()

    # -- background readers ---------------------------------------------------------------------
    async def _announce(self) -> None:
        assert self.feed.redis is not None
        await self.feed.redis.zadd(self.feed.keys.demand, {self.name: time.time() + self.feed.demand_ttl})

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.feed.demand_ttl / 3)
            try:
                await self._announce()
            except RedisError as exc:
                log.warning("cannot renew demand for %s: %s", self.name, exc)
            honour_cancel()  # a closed reader must stop renewing, or its stream is relayed for good

    async def _start_id(self, r: aioredis.Redis, key: str) -> str:
        """Where reading starts: before the last ``history`` closed candles (waiting for the relay to
        seed a new stream), or after the newest entry when no history is asked for."""
        while True:
            tail = await r.xrevrange(key, count=max(self.history, 1))
            honour_cancel()
            if tail:
                if self.history == 0:
                    return tail[0][0].decode()
                first = tail[-1][0].decode()
                ms, seq = first.split("-")
                return f"{int(ms) - 1}-{seq}" if seq == "0" else f"{ms}-{int(seq) - 1}"
            await asyncio.sleep(0.05)

    async def _read_closed(self) -> None:
        r = self.feed.redis
        assert r is not None
        key = self.feed.keys.closed(self.name)
        self._last_id = await self._start_id(r, key)
        while True:
            try:
                got = await r.xread({key: self._last_id}, count=1000, block=self.feed.block_ms)
            except RedisError as exc:
                log.warning("redis read failed for %s, retrying: %s", self.name, exc)
                await asyncio.sleep(1.0)
                continue
            honour_cancel()
            if not got:
                continue
            for entry_id, fields in got[0][1]:
                ev = decode_entry(self.symbol, self.interval, entry_id, fields)
                self._last_id = entry_id.decode()
                if ev.is_gap:
                    self._expect = ev.end_ms
                    if self.gaps:
                        self._ready.append(ev)
                    continue
                t = ev.candle.open_time
                if self._expect is not None and t != self._expect:
                    # The relay writes every closed candle and every real outage, so a jump here
                    # means the stream was trimmed past this reader: say so, loudly.
                    self.trimmed += 1
                    log.error("%s: candles %d..%d were trimmed before this reader got them", self.name, self._expect, t)
                self._last_open = t
                self._expect = next_open(t, self.interval)
                self._ready.append(ev)
            self._wake.set()

    async def _read_forming(self) -> None:
        r = self.feed.redis
        assert r is not None
        pubsub = r.pubsub()
        await pubsub.subscribe(self.feed.keys.forming(self.name))
        try:
            async for msg in pubsub.listen():
                honour_cancel()
                if msg.get("type") != "message":
                    continue
                self._forming = decode_forming(self.symbol, self.interval, msg["data"])  # keep only the latest
                self._wake.set()
        finally:
            await pubsub.aclose()


async def _stop(tasks: list[asyncio.Task]) -> None:
    # One at a time, and bounded: cancelling redis-py's blocking read and its pub/sub reader
    # together can leave both waiting on the connection pool.
    for t in tasks:
        t.cancel()
        done, _ = await asyncio.wait({t}, timeout=5.0)
        if not done:
            log.warning("reader task %s did not stop within 5 s", t.get_name())
