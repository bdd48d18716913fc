"""The gateway's Prometheus metrics (``prometheus_client``), all named ``kit_gateway_...``.

Each gateway app has its own registry (not the library's global one), so several apps in one
process (the tests) count separately and ``/metrics`` shows only the gateway's series.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """Counters and gauges of one gateway; ``render()`` is the ``/metrics`` body."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge("kit_gateway_connections", "Open WebSocket connections.", registry=r)
        self.connections_opened = Counter(
            "kit_gateway_connections_opened", "WebSocket connections accepted.", registry=r
        )
        self.connections_refused = Counter(
            "kit_gateway_connections_refused",
            "WebSocket handshakes refused, by reason (per_address, origin, token).",
            ["reason"],
            registry=r,
        )
        self.requests = Counter("kit_gateway_ws_requests", "WebSocket requests, by method.", ["method"], registry=r)
        self.errors = Counter("kit_gateway_ws_errors", "WebSocket error answers, by code.", ["code"], registry=r)
        self.rate_limited = Counter(
            "kit_gateway_ws_rate_limited", "WebSocket requests refused for exceeding the rate.", registry=r
        )
        self.slow_closed = Counter(
            "kit_gateway_slow_consumers_closed", "Connections closed for falling behind (4008).", registry=r
        )
        self.revoked_closed = Counter(
            "kit_gateway_revoked_closed", "Connections closed because their token was revoked (4001).", registry=r
        )
        self.messages = Counter("kit_gateway_messages_sent", "WebSocket messages sent.", registry=r)
        self.http = Counter(
            "kit_gateway_http_requests", "REST requests, by route and status.", ["route", "status"], registry=r
        )
        self.subscriptions = Gauge(
            "kit_gateway_subscriptions", "Concrete streams subscribed, summed over connections.", registry=r
        )
        self.sources = Gauge("kit_gateway_sources", "Open (symbol, interval) sources.", registry=r)

    def track_sources(self, count: Callable[[], float]) -> None:
        self.sources.set_function(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
