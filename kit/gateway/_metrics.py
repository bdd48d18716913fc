"""The gateway's Prometheus metrics (``prometheus_client``), named ``kit_gateway_...`` (and
``kit_feed_...`` for its feed), in the scheme of :mod:`kit._metrics`.

Each gateway app has its own registry (not the library's global one), so several apps in one
process (the tests) count separately and ``/metrics`` shows only the gateway's series.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from kit import _metrics
from kit._metrics import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """Counters and gauges of one gateway; ``render()`` is the ``/metrics`` body."""

    def __init__(self) -> None:
        r = self.registry = _metrics.registry()
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
        self.ready = Gauge("kit_gateway_ready", "1 when /ready is 200 (no stream source failed).", registry=r)

    def track_sources(self, count: Callable[[], float]) -> None:
        self.sources.set_function(count)

    def track_ready(self, ready: Callable[[], float]) -> None:
        self.ready.set_function(ready)

    def track_feed(self, feed: Any) -> None:
        """``kit_feed_...`` from ``feed.stats()`` at each scrape (a feed without stats has none)."""
        stats = getattr(feed, "stats", None)
        if callable(stats):
            self.registry.register(_metrics.Snapshot(lambda: _metrics.feed_metrics(stats())))

    def render(self) -> bytes:
        return _metrics.render(self.registry)
