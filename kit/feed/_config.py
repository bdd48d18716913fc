"""The feed's settings, validated once: a frozen dataclass the feed and its connections share."""

from __future__ import annotations

from dataclasses import dataclass

from kit.errors import ConfigError


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """See :class:`kit.feed.Feed` for what each setting means; every check is here."""

    ws_url: str
    rest_url: str
    stall_timeout: float = 60.0
    max_streams_per_connection: int = 1024
    max_queue: int = 10_000
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_reset: float = 30.0
    control_rate: float = 4.0
    rest_concurrency: int = 4
    open_timeout: float = 10.0
    catch_up_after: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.ws_url, str) or not self.ws_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"ws_url must start with ws:// or wss://, got {self.ws_url!r}")
        object.__setattr__(self, "ws_url", self.ws_url.rstrip("/"))
        for name in (
            "stall_timeout",
            "backoff_initial",
            "backoff_max",
            "control_rate",
            "open_timeout",
            "catch_up_after",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be a number > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        object.__setattr__(self, "backoff_reset", float(self.backoff_reset))
        if self.control_rate >= 5:
            raise ConfigError(f"control_rate must be below Binance's 5 messages/s, got {self.control_rate!r}")
        limits = (("max_streams_per_connection", 1, 1024), ("max_queue", 16, None), ("rest_concurrency", 1, None))
        for name, lo, hi in limits:
            value = int(getattr(self, name))
            if value < lo or (hi is not None and value > hi):
                bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
                raise ConfigError(f"{name} must be {bound}, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
