"""kit.feed: one shared, multiplexed market feed with gap-free closed candles.

    from kit.feed import Feed
    async with Feed() as feed:
        async with feed.subscribe("BTCUSDT", "1m", history=300) as sub:
            async for ev in sub:          # KlineEvent(symbol, interval, candle, closed)
                ...

One WebSocket connection carries every (symbol, interval) in use (live SUBSCRIBE/UNSUBSCRIBE,
reference counted); reconnects, stalls, duplicates and reordering are repaired over REST so
every subscriber sees every closed candle exactly once, in order. Real outages become
:class:`GapEvent` (with ``gaps=True``). See :class:`Feed` and :class:`Subscription`.

:class:`CandleSource` is the typed seam every candle source satisfies (this feed,
:class:`kit.relay.RedisFeed`, a replay); every subscription moves through one :class:`Lifecycle`.
"""

from kit.feed._events import Event, GapEvent, KlineEvent
from kit.feed._feed import Feed
from kit.feed._rest import RestClient
from kit.feed._shared import shared_feed
from kit.feed._source import BaseSubscription, CandleSource, CandleSubscription, Lifecycle
from kit.feed._stream import stream_name
from kit.feed._subscription import Subscription

__all__ = [
    "BaseSubscription",
    "CandleSource",
    "CandleSubscription",
    "Event",
    "Feed",
    "GapEvent",
    "KlineEvent",
    "Lifecycle",
    "RestClient",
    "Subscription",
    "shared_feed",
    "stream_name",
]
