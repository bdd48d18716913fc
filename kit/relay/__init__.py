"""kit.relay: the shared feed across processes and hosts, over Redis.

One process holds the exchange connection (a :class:`kit.feed.Feed`) and runs a
:class:`Relay`; any number of other processes, on any host that reaches Redis, read the
same candles through a :class:`RedisFeed`, whose ``subscribe()`` has the Feed's signature
and yields the same :class:`~kit.feed.KlineEvent` / :class:`~kit.feed.GapEvent`.

    kit relay                         # holds the one exchange connection (KIT_REDIS_URL)

    from kit.relay import RedisFeed
    async with RedisFeed("redis://127.0.0.1:6379/0") as feed:
        async with feed.subscribe("BTCUSDT", "1m", history=300) as sub:
            async for ev in sub: ...

Closed candles go to a Redis Stream per (symbol, interval) whose entry id is the candle's
open time, so they are kept in order, idempotent (a relay restart that writes a candle
again is refused by Redis), and resumable: a reader continues from the last id it saw.
Forming updates are fire-and-forget pub/sub messages, like a viewer wants them. Readers
announce demand in a sorted set with an expiry; the relay subscribes its feed to what is
demanded and lets go of what no one renews.
"""

from kit.relay._keys import Keys
from kit.relay._reader import RedisFeed, RedisSubscription
from kit.relay._relay import Relay

__all__ = ["Keys", "RedisFeed", "RedisSubscription", "Relay"]
