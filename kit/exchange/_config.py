"""The simulator's settings, validated once: a frozen dataclass the simulator and its connections share.

Every check of :class:`~kit.exchange.ExchangeSimulator`'s numeric and network arguments is here,
in one style: a bad value is an :class:`~kit.errors.InputError` (a ``ConfigError``) naming the
argument. What needs the candle data (``data``, ``start``, ``symbols``, ``accounts``) is checked
where the data is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kit.errors import InputError
from kit.exchange._clock import parse_speed

MAX_BAN_SECONDS = 3 * 86400.0


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InputError(f"{name} must be a number, got {value!r}")
    return float(value)


def _positive_int(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        none = " or None" if optional else ""
        raise InputError(f"{name} must be a positive integer{none}, got {value!r}")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """See :class:`kit.exchange.ExchangeSimulator` for what each setting means; every check is here.

    ``speed`` is stored parsed (a float, ``inf`` for ``"max"``); the real-second settings as floats.
    """

    speed: float | str = 600.0
    host: str = "127.0.0.1"
    port: int = 0
    weight_limit: int | None = 6000
    max_connection_age: float = 86400.0
    ping_interval: float = 20.0
    pong_timeout: float = 60.0
    update_every: float = 2.0
    max_streams: int = 1024
    max_incoming_per_s: int = 5
    send_queue: int = 10_000
    max_connects: int | None = 300
    max_update_rate: float | None = 20.0
    control_token: str = ""
    half_spread_bps: float = 0.0
    volume_share: float | None = 0.1
    orders_per_10s: int = 100
    orders_per_day: int = 200_000
    ban_after: int = 10
    ban_seconds: float = 120.0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "speed", parse_speed(self.speed))
        except ValueError as exc:
            raise InputError(f"speed: {exc}") from None
        for name in ("max_connection_age", "ping_interval", "pong_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InputError(f"{name} must be a positive number of seconds, got {value!r}")
            object.__setattr__(self, name, float(value))
        if (
            isinstance(self.update_every, bool)
            or not isinstance(self.update_every, int | float)
            or self.update_every < 0
        ):
            raise InputError(f"update_every must be >= 0 simulated seconds, got {self.update_every!r}")
        for name in (
            "max_streams",
            "max_incoming_per_s",
            "send_queue",
            "orders_per_10s",
            "orders_per_day",
            "ban_after",
        ):
            _positive_int(name, getattr(self, name))
        _positive_int("weight_limit", self.weight_limit, optional=True)
        _positive_int("max_connects", self.max_connects, optional=True)
        if isinstance(self.port, bool) or not isinstance(self.port, int) or self.port < 0:
            raise InputError(f"port must be a positive integer, got {self.port!r}")
        rate = self.max_update_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0):
            raise InputError(f"max_update_rate must be a positive number or None, got {rate!r}")
        ban = self.ban_seconds
        if isinstance(ban, bool) or not isinstance(ban, int | float) or not 0 < ban <= MAX_BAN_SECONDS:
            raise InputError(f"ban_seconds must be in (0, {MAX_BAN_SECONDS:.0f}], got {ban!r}")
        object.__setattr__(self, "ban_seconds", float(ban))
        if not 0 <= _number("half_spread_bps", self.half_spread_bps) < 1000:
            raise InputError(f"half_spread_bps must be in [0, 1000), got {self.half_spread_bps!r}")
        share = self.volume_share
        if share is not None and not 0 < _number("volume_share", share) <= 1:
            raise InputError(f"volume_share must be in (0, 1] or None, got {share!r}")
        object.__setattr__(self, "control_token", self.control_token or "")

    @property
    def update_ms(self) -> int:
        """Simulated ms between forming updates (0: none)."""
        return round(self.update_every * 1000)

    @property
    def forming_gap(self) -> float:
        """Real seconds between two forming updates of one stream at least."""
        return 0.0 if self.max_update_rate is None else 1.0 / self.max_update_rate
