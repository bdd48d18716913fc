"""The dashboard's Prometheus metrics (``/kit/metrics``), ``kit_dashboard_...`` and ``kit_feed_...``.

Read at each scrape from the figures the hub, the live sockets, the login counters and the socket
revoker already keep (the same as ``/kit/stats``), through :mod:`kit._metrics`; nothing is counted
twice. Who may scrape is decided in :mod:`kit.dashboard.routes`.
"""

from __future__ import annotations

from typing import Any

from kit import _metrics


def families(hub: dict[str, Any], logins: dict[str, int], sockets: dict[str, int]) -> list[_metrics.Family]:
    """The families from ``hub`` (``Hub.stats()``), ``logins`` (``auth.LOGIN_STATS``) and ``sockets``
    (``REVOKER.stats()``)."""
    g, n = _metrics.gauge, _metrics.counter
    streams = hub.get("streams", [])

    def total(key: str) -> float:
        return float(sum(s.get(key) or 0 for s in streams))

    out = [
        g("kit_dashboard_uptime_seconds", "seconds since the hub started", hub.get("uptime_s", 0.0)),
        g("kit_dashboard_sessions", "open Panel sessions", hub.get("sessions", 0)),
        n("kit_dashboard_sessions_opened_total", "Panel sessions opened", hub.get("sessions_opened", 0)),
        n("kit_dashboard_sessions_closed_total", "Panel sessions closed", hub.get("sessions_closed", 0)),
        g("kit_dashboard_streams", "candle streams the hub follows", len(streams)),
        n("kit_dashboard_stream_events_total", "feed events the hub received", total("events")),
        n("kit_dashboard_stream_errors_total", "errors of the hub's streams", total("errors")),
        g("kit_dashboard_live_sockets", "open /kit/live sockets (pages)", total("sockets")),
        n("kit_dashboard_live_messages_total", "messages sent on /kit/live", total("messages")),
        n("kit_dashboard_live_bytes_total", "bytes sent on /kit/live", total("bytes")),
        n("kit_dashboard_live_coalesced_total", "live updates merged into a later one", total("coalesced")),
        n("kit_dashboard_logins_total", "login attempts by result",
          {(k,): v for k, v in sorted(logins.items())}, ["result"]),
        g("kit_dashboard_sockets", "open session sockets (Bokeh and live)", sockets.get("open", 0)),
        n("kit_dashboard_sockets_revoked_total", "sockets closed because their session ended",
          sockets.get("closed_revoked", 0)),
    ]  # fmt: skip
    feed = hub.get("feed") or {}
    if "error" not in feed:
        out += _metrics.feed_metrics(feed)
    return out


def render(hub: dict[str, Any], logins: dict[str, int], sockets: dict[str, int]) -> bytes:
    """The ``/kit/metrics`` body (``kit._metrics.CONTENT_TYPE_LATEST``)."""
    reg = _metrics.registry()  # one per scrape: the figures live in the hub, read when asked
    reg.register(_metrics.Snapshot(lambda: families(hub, logins, sockets)))
    return _metrics.render(reg)
