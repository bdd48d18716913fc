"""The relay: one process's feed, republished to Redis for every other process and host."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from kit.errors import ConfigError
from kit.feed import Feed
from kit.relay._cancel import honour_cancel
from kit.relay._keys import Keys, check_redis_url, encode_candle, encode_forming, stream_name

log = logging.getLogger("kit.relay")


def _parse_stream(name: str) -> tuple[str, str] | None:
    sym, sep, rest = name.partition("@kline_")
    return (sym.upper(), rest) if sep and sym and rest else None


class Relay:
    """Republish a :class:`~kit.feed.Feed` to Redis, for the streams readers demand.

    Args:
        feed: the process's one exchange feed.
        redis_url: ``redis://host:port/db``; default ``KIT_REDIS_URL``.
        keys: key layout (a prefix per deployment).
        history: closed candles seeded into a newly demanded stream, so late readers get history.
        maxlen: closed candles kept per stream (approximate trim; readers further behind than
            this would see a hole, which they report).
        poll: seconds between scans of the demand set.

    States: created -> running (``async with`` or :meth:`run`) -> stopped. Each demanded stream
    has one pump task holding one lossless feed subscription; a stream whose demand expires
    is released, so the feed unsubscribes it upstream.
    """

    def __init__(
        self,
        feed: Feed,
        redis_url: str | None = None,
        *,
        keys: Keys | None = None,
        history: int = 1000,
        maxlen: int = 100_000,
        poll: float = 1.0,
    ) -> None:
        redis_url = check_redis_url(
            redis_url, "the relay needs Redis: set KIT_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
        )
        if history < 0 or maxlen < max(history, 16) or poll <= 0:
            raise ConfigError(f"invalid relay sizes: history={history}, maxlen={maxlen}, poll={poll}")
        self.feed = feed
        self.redis_url = redis_url
        self.keys = keys or Keys()
        self.history = int(history)
        self.maxlen = int(maxlen)
        self.poll = float(poll)
        self._redis: aioredis.Redis | None = None
        self._pumps: dict[str, asyncio.Task] = {}
        self._task: asyncio.Task | None = None
        self.counts = {"closed": 0, "duplicates": 0, "forming": 0, "gaps": 0, "redis_errors": 0}

    async def __aenter__(self) -> Relay:
        self._task = asyncio.create_task(self.run(), name="kit-relay")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=30.0)
            self._task = None

    async def run(self) -> None:
        """Follow demand until cancelled; Redis outages are waited out, never fatal."""
        self._redis = aioredis.Redis.from_url(self.redis_url)
        log.info("relay started", extra={"redis": _safe_url(self.redis_url), "prefix": self.keys.prefix})
        try:
            while True:
                try:
                    await self._follow_demand()
                except RedisError as exc:
                    self.counts["redis_errors"] += 1
                    log.warning("redis unavailable, retrying: %s", exc)
                honour_cancel()
                await asyncio.sleep(self.poll)
        finally:
            # One pump at a time and bounded (see RedisSubscription.aclose): a stop never hangs.
            for name, task in self._pumps.items():
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=5.0)
                if not done:
                    log.warning("pump %s did not stop within 5 s", name)
            self._pumps.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.aclose(), 5.0)
            log.info("relay stopped")

    async def _follow_demand(self) -> None:
        assert self._redis is not None
        now = time.time()
        await self._redis.zremrangebyscore(self.keys.demand, "-inf", now)
        wanted = {m.decode() for m in await self._redis.zrange(self.keys.demand, 0, -1)}
        for name in wanted - self._pumps.keys():
            parsed = _parse_stream(name)
            if parsed is None:
                log.warning("ignoring malformed demand %r", name)
                continue
            self._pumps[name] = asyncio.create_task(self._pump(name, *parsed), name=f"relay-{name}")
            log.info("relaying %s", name)
        for name in self._pumps.keys() - wanted:
            self._pumps.pop(name).cancel()
            log.info("released %s (no reader renewed it)", name)
        for name, task in list(self._pumps.items()):
            if task.done():  # a pump that failed is restarted on the next scan
                self._pumps.pop(name)
                if not task.cancelled() and task.exception() is not None:
                    log.error("pump %s failed: %s", name, task.exception())

    async def _pump(self, name: str, symbol: str, interval: str) -> None:
        assert self._redis is not None
        key, channel = self.keys.closed(name), self.keys.forming(name)
        async with self.feed.subscribe(symbol, interval, history=self.history, gaps=True) as sub:
            while True:
                batch = [await anext(sub)]
                # Drain what is already queued so a history seed lands in one MULTI/EXEC: a reader
                # that sees any of it sees all of it.
                while sub.queued:
                    batch.append(await anext(sub))
                await self._write(key, channel, batch)
                honour_cancel()

    async def _write(self, key: str, channel: str, batch: list[Any]) -> None:
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=True)
        ids: list[bool] = []
        for ev in batch:
            if ev.is_gap:
                pipe.xadd(key, {"gap_end": str(ev.end_ms)}, id=f"{ev.start_ms}-0", maxlen=self.maxlen, approximate=True)
                ids.append(True)
                self.counts["gaps"] += 1
            elif ev.closed:
                pipe.xadd(
                    key, encode_candle(ev.candle), id=f"{ev.candle.open_time}-0", maxlen=self.maxlen, approximate=True
                )
                ids.append(True)
            else:
                pipe.publish(channel, encode_forming(ev.candle))
                ids.append(False)
        results = await pipe.execute(raise_on_error=False)
        for is_entry, res in zip(ids, results, strict=True):
            if isinstance(res, ResponseError):
                # An id at or below the stream's last one: this candle is already there (a relay
                # restart or a second relay); Redis refusing it is what makes the relay idempotent.
                self.counts["duplicates"] += 1
            elif isinstance(res, Exception):
                raise res
            elif is_entry:
                self.counts["closed"] += 1
            else:
                self.counts["forming"] += 1

    def stats(self) -> dict[str, Any]:
        """Streams relayed and what was written."""
        return {"streams": sorted(self._pumps), **self.counts}


def _safe_url(url: str) -> str:
    """A Redis URL without its password, for logs."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


__all__ = ["Relay", "stream_name"]
