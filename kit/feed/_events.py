"""What a subscription yields: a :class:`KlineEvent` per candle update, a :class:`GapEvent` per real outage."""

from __future__ import annotations

from typing import NamedTuple

from kit.market.candle import Candle


class KlineEvent(NamedTuple):
    """One candle update of one stream.

    ``closed`` is False while the candle forms (Binance pushes one every 2 s) and True for the
    final, immutable candle. Every closed candle reaches every subscriber exactly once, in order.
    One instance is shared by every subscriber of the stream: treat it as read-only.
    """

    symbol: str
    interval: str
    candle: Candle
    closed: bool

    #: Class attribute (not a field): lets one loop tell events apart without isinstance.
    is_gap = False


class GapEvent(NamedTuple):
    """A real outage: the exchange confirmed over REST that it has no candles in ``[start_ms, end_ms)``.

    ``start_ms`` is the open time of the first missing candle and ``end_ms`` the open time of the
    candle after the last missing one (half-open, like Python ranges). Yielded only to
    subscriptions made with ``gaps=True``; counted in ``Feed.stats()["gaps"]`` either way.
    """

    symbol: str
    interval: str
    start_ms: int
    end_ms: int

    closed = False
    is_gap = True


Event = KlineEvent | GapEvent
