"""Prometheus metrics for every kit process, on ``prometheus_client`` (one library, one scheme).

Names: ``kit_<component>_<what>[_<unit>]`` (``kit_daemon_...``, ``kit_gateway_...``,
``kit_dashboard_...``, ``kit_feed_...`` for the feed of whichever process serves it), counters
end in ``_total``, durations are in seconds; the README has the table.

Each component keeps its own :class:`~prometheus_client.CollectorRegistry` (never the library's
global one), so several in one process (the tests) neither share nor clash. A component whose
figures already live in its state (the daemon's counts, the dashboard's hub) exposes them with a
:class:`Snapshot`: a collector that reads them when scraped, so nothing is counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "CONTENT_TYPE_LATEST",
    "Snapshot",
    "counter",
    "feed_metrics",
    "gauge",
    "registry",
    "render",
    "summary",
]

Family = Metric
#: one value, or label values -> value
Value = float | Mapping[tuple[str, ...], float]


def registry() -> CollectorRegistry:
    """A registry of one component (not the global default)."""
    return CollectorRegistry(auto_describe=True)


def render(reg: CollectorRegistry) -> bytes:
    """The text exposition (``CONTENT_TYPE_LATEST``) of ``reg``."""
    return generate_latest(reg)


class Snapshot:
    """A collector whose families ``read()`` builds at each scrape (from a component's own figures)."""

    def __init__(self, read: Callable[[], Iterable[Family]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Family]:
        return list(self._read())

    def describe(self) -> Iterable[Family]:
        return []  # names vary with the figures present (feed stats): never checked for clashes up front


def gauge(name: str, help_: str, value: Value, labels: Sequence[str] = ()) -> Family:
    """A gauge; with ``labels``, ``value`` maps label values to values."""
    g = GaugeMetricFamily(name, help_, labels=list(labels) if labels else None)
    _fill(g, value, labels)
    return g


def counter(name: str, help_: str, value: Value, labels: Sequence[str] = ()) -> Family:
    """A counter (``name`` ends in ``_total``); with ``labels``, ``value`` maps label values to values."""
    c = CounterMetricFamily(name, help_, labels=list(labels) if labels else None)
    _fill(c, value, labels)
    return c


def summary(name: str, help_: str, ordered: Sequence[float], quantiles: Sequence[float] = (0.5, 0.9, 0.99)) -> Family:
    """A summary of recent observations ``ordered`` (ascending): its quantiles (NaN when empty),
    ``_count`` and ``_sum`` over them."""
    m = Metric(name, help_, "summary")
    for q in quantiles:
        v = ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan
        m.add_sample(name, {"quantile": str(q)}, float(v))
    m.add_sample(name + "_count", {}, float(len(ordered)))
    m.add_sample(name + "_sum", {}, float(sum(ordered)))
    return m


_FEED_GAUGES = ("connections", "streams")
_FEED_COUNTERS = ("messages", "reconnects", "stalls", "backfilled", "gaps", "lagging")


def feed_metrics(stats: Mapping[str, Any]) -> list[Family]:
    """``kit_feed_...`` from a feed's ``stats()`` (its numeric figures; the same in every process)."""
    out: list[Family] = []
    for key in (*_FEED_GAUGES, *_FEED_COUNTERS):
        v = stats.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            if key in _FEED_GAUGES:
                out.append(gauge(f"kit_feed_{key}", f"feed {key}", v))
            else:
                out.append(counter(f"kit_feed_{key}_total", f"feed {key}", v))
    return out


def _fill(m: Metric, value: Value, labels: Sequence[str]) -> None:
    if labels:
        assert isinstance(value, Mapping)
        for key, v in value.items():
            m.add_metric(list(key), float(v))  # type: ignore[attr-defined]
    else:
        assert not isinstance(value, Mapping)
        m.add_metric([], float(value))  # type: ignore[attr-defined]
