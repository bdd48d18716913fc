"""The typed seam "something that yields candles" (kit.feed.CandleSource) and its one lifecycle.

Feed (the exchange) and RedisFeed (the exchange through kit relay) are used the same way by the
engine, the daemon and the dashboard; both run for real here (simulator, Redis db 15).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from kit.engine import IndicatorEngine
from kit.exchange import ExchangeSimulator
from kit.feed import CandleSource, Feed, Lifecycle
from kit.relay import Keys, RedisFeed, Relay

START = "2025-06-01 02:00"


async def _read_through_the_seam(source: CandleSource, n: int) -> tuple[list[Lifecycle], list]:
    """What the engine, the hub and the daemon do with any source: subscribe, enter, read, leave."""
    sub = source.subscribe("BTCUSDT", "1m", history=3)
    states = [sub.state]
    events = []
    async with sub:
        states.append(sub.state)
        while len(events) < n:
            ev = await asyncio.wait_for(anext(sub), 20)
            if ev.closed:
                events.append(ev.candle.open_time)
    states.append(sub.state)
    assert sub.closed
    return states, events


@contextlib.asynccontextmanager
async def _exchange_and_relay(data, redis_url: str, keys: Keys) -> AsyncIterator[tuple[Feed, RedisFeed]]:
    """The simulator, a feed on it, a relay of that feed into Redis, and a reader of the relay."""
    async with (
        ExchangeSimulator(data=data, speed=3000, start=START) as sim,
        Feed(sim.ws_url, sim.rest_url) as feed,
        Relay(feed, redis_url, keys=keys, history=10, poll=0.05),
    ):
        yield feed, RedisFeed(redis_url, keys=keys)


@pytest.mark.redis
async def test_the_feed_and_the_redis_feed_are_one_kind_of_candle_source(btc_eth_1m, redis_url, keys):
    async with _exchange_and_relay(btc_eth_1m, redis_url, keys) as (feed, rfeed):
        assert isinstance(feed, CandleSource) and isinstance(rfeed, CandleSource)
        async with rfeed:
            direct, relayed = await asyncio.gather(_read_through_the_seam(feed, 5), _read_through_the_seam(rfeed, 5))
    lifecycle = [Lifecycle.NEW, Lifecycle.ACTIVE, Lifecycle.CLOSED]
    assert direct[0] == relayed[0] == lifecycle
    for _, opens in (direct, relayed):
        assert opens == sorted(set(opens)) and len(opens) == 5


@pytest.mark.redis
async def test_a_redis_subscription_closes_synchronously_as_the_others_do(btc_eth_1m, redis_url, keys):
    async with _exchange_and_relay(btc_eth_1m, redis_url, keys) as (_, rfeed), rfeed:
        sub = await rfeed.subscribe("BTCUSDT", "1m", history=2).start()
        await asyncio.wait_for(anext(sub), 20)
        assert rfeed.stats()["subscribers"] == 1
        sub.close()  # e.g. from a Panel session callback, which cannot await
        assert sub.state is Lifecycle.CLOSED and rfeed.stats()["subscribers"] == 0
        with pytest.raises(StopAsyncIteration):
            await anext(sub)


async def test_engine_subscriptions_share_the_lifecycle(btc_eth_1m):
    async with (
        ExchangeSimulator(data=btc_eth_1m, speed=3000, start=START) as sim,
        Feed(sim.ws_url, sim.rest_url) as feed,
        IndicatorEngine(feed) as engine,
    ):
        sub = engine.subscribe("BTCUSDT", "1m", ["ema(5)"], history=10)
        assert sub.state is Lifecycle.NEW and not sub.closed
        async with sub:
            assert sub.state is Lifecycle.ACTIVE and len(sub.history) == 10
            row = await asyncio.wait_for(anext(sub), 20)
            assert row.closed
        assert sub.state is Lifecycle.CLOSED and sub.closed


async def test_the_engine_refuses_what_is_not_a_candle_source():
    with pytest.raises(ValueError, match="candle source"):
        IndicatorEngine(object())  # type: ignore[arg-type]


async def test_a_subscription_closed_before_it_started_never_attaches():
    feed = Feed("ws://127.0.0.1:9", "http://127.0.0.1:9")
    sub = feed.subscribe("BTCUSDT", "1m")
    sub.close()
    assert sub.state is Lifecycle.CLOSED
    try:
        await sub.start()  # e.g. `async with` on a subscription a callback already closed
        assert feed.stats()["streams"] == 0, "a closed subscription must not hold an exchange stream"
        with pytest.raises(StopAsyncIteration):
            await anext(sub)
    finally:
        await feed.stop()
