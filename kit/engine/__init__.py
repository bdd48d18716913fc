"""The indicator engine: indicators computed once per stream and shared by every subscriber.

    from kit.engine import IndicatorEngine
    from kit.indicators import spec

    engine = IndicatorEngine(feed)                    # any kit.feed.Feed (live, simulator, replay)
    async with engine.subscribe("BTCUSDT", "1m", specs=[spec("rsi", 14), "ema(50)"], history=300) as sub:
        sub.history                                   # the last 300 closed rows, warmed
        async for row in sub:                         # Row(symbol, interval, candle, closed, values)
            row.values[spec("rsi", 14)]

:class:`StreamState` is the synchronous core (one stream, no asyncio) for code that drives
candles itself, e.g. a replay loop. :class:`StreamJoin` lines up the rows of several streams for
a strategy that reads more than one (the as-of rule of :mod:`kit.market.asof`).
"""

from kit.engine._engine import EngineSubscription, IndicatorEngine
from kit.engine._join import Joined, StreamJoin
from kit.engine._state import FIELDS, Row, StreamState

__all__ = ["FIELDS", "EngineSubscription", "IndicatorEngine", "Joined", "Row", "StreamJoin", "StreamState"]
