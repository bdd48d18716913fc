"""The simulator's counters: one small mutable record its parts increment, read by ``stats()``."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Counters:
    """What the market-data side of one simulator has done (the trading side counts its own)."""

    connections_total: int = 0
    messages_sent: int = 0  # of closed connections; open ones report their own
    messages_received: int = 0
    events_final: int = 0
    events_forming: int = 0
    http_requests: int = 0
    http_429: int = 0
    dropped_slow: int = 0
    dropped_rate_limit: int = 0
    dropped_lifetime: int = 0
    dropped_pong: int = 0
    pings_sent: int = 0
    pongs_received: int = 0
    faulty_frames: int = 0
    refused_connects: int = 0
    refused_hosts: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
