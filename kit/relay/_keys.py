"""Redis key names and the entry encoding shared by the relay and its readers."""

from __future__ import annotations

from dataclasses import dataclass

from kit.errors import ConfigError
from kit.feed import GapEvent, KlineEvent
from kit.market.candle import Candle
from kit.settings import Settings

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def check_redis_url(url: str | None, missing: str) -> str:
    """``url``, or ``KIT_REDIS_URL`` when None; a :class:`ConfigError` (``missing`` when there is
    none) unless it is a Redis URL. The URL may hold a password: only its scheme is ever shown."""
    if url is None:
        url = Settings.from_env().redis_url
    if not url:
        raise ConfigError(missing)
    if not url.startswith(_REDIS_SCHEMES):
        scheme = url.partition("://")[0] if "://" in url else "no scheme"
        raise ConfigError(f"the Redis URL must start with redis://, rediss:// or unix://, got {scheme}")
    return url


@dataclass(frozen=True)
class Keys:
    """Key layout under one ``prefix`` (tests use a unique prefix each; deployments share ``kit``)."""

    prefix: str = "kit"

    @property
    def demand(self) -> str:
        """Sorted set: stream name -> expiry (unix seconds) announced by readers."""
        return f"{self.prefix}:demand"

    def closed(self, stream: str) -> str:
        """Redis Stream of closed candles and gaps; entry id ``<open_time>-0``."""
        return f"{self.prefix}:closed:{stream}"

    def forming(self, stream: str) -> str:
        """Pub/sub channel of forming updates."""
        return f"{self.prefix}:forming:{stream}"


def stream_name(symbol: str, interval: str) -> str:
    """Binance's stream name, which also names the Redis keys: ``btcusdt@kline_1m``."""
    return f"{symbol.lower()}@kline_{interval}"


def encode_candle(c: Candle) -> dict[str, str]:
    # repr() of a float round-trips exactly: the reader rebuilds the very same doubles.
    return {"o": repr(c.open), "h": repr(c.high), "l": repr(c.low), "c": repr(c.close), "v": repr(c.volume)}


def encode_forming(c: Candle) -> str:
    return f"{c.open_time} {c.open!r} {c.high!r} {c.low!r} {c.close!r} {c.volume!r}"


def decode_entry(symbol: str, interval: str, entry_id: bytes | str, fields: dict) -> KlineEvent | GapEvent:
    """One stream entry back into the event the relay's feed delivered."""
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    t = int(eid.split("-", 1)[0])
    f = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
    if "gap_end" in f:
        return GapEvent(symbol, interval, t, int(f["gap_end"]))
    candle = Candle(t, float(f["o"]), float(f["h"]), float(f["l"]), float(f["c"]), float(f["v"]))
    return KlineEvent(symbol, interval, candle, True)


def decode_forming(symbol: str, interval: str, payload: bytes | str) -> KlineEvent:
    parts = (payload.decode() if isinstance(payload, bytes) else payload).split()
    candle = Candle(int(parts[0]), *(float(x) for x in parts[1:6]))
    return KlineEvent(symbol, interval, candle, False)
