"""The admin page's time series, kept in memory by the dashboard process (no I/O here).

Every :data:`SAMPLE_S` seconds the process's ops watcher (:mod:`kit.dashboard.opswatch`) hands
:meth:`Timeline.sample` the daemon's ``/status`` (None when it did not answer), the hub's figures
and its own resident memory; the timeline turns the daemon's cumulative counters into rates
against the previous sample (a counter that went down is a restarted daemon: no rate for that
step) and keeps :data:`KEEP_S` seconds of rows for the plots.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

#: Seconds between samples, and seconds of history kept (two hours: the plots show the last hour
#: and more).
SAMPLE_S = 5.0
KEEP_S = 7200.0

#: The fixed series of a row (besides ``t``, the sample's time in ms) and what they mean.
SERIES: dict[str, str] = {
    "p50": "close-to-commit latency p50 (ms)",
    "p99": "close-to-commit latency p99 (ms)",
    "evals_pm": "evaluations per minute",
    "fills_pm": "fills per minute",
    "queue": "write queue (candles waiting)",
    "daemon_rss": "daemon RSS (MiB)",
    "dash_rss": "dashboard RSS (MiB)",
    "d_reconnects": "daemon feed reconnects",
    "d_gaps": "daemon feed gaps",
    "h_reconnects": "dashboard feed reconnects",
    "h_gaps": "dashboard feed gaps",
    "sessions": "dashboard sessions",
    "sockets": "live sockets",
}
NAN = math.nan


def _num(x: Any) -> float:
    try:
        return float(x) if x is not None else NAN
    except (TypeError, ValueError):
        return NAN


class Timeline:
    """Rows of the admin plots: ``rows`` (fixed series) and ``streams`` (closed candles per second
    of each daemon stream, ``{"t": [...], "BTCUSDT/1m": [...]}``-like rows), oldest first."""

    def __init__(self, every_s: float = SAMPLE_S, keep_s: float = KEEP_S) -> None:
        if every_s <= 0 or keep_s < every_s:
            raise ValueError(f"need 0 < every_s <= keep_s, got {every_s!r}, {keep_s!r}")
        n = int(keep_s / every_s) + 1
        self.rows: deque[dict[str, float]] = deque(maxlen=n)
        self.streams: deque[dict[str, float]] = deque(maxlen=n)
        self._prev: tuple[float, dict[str, float]] | None = None

    def sample(self, t_s: float, daemon: dict[str, Any] | None, hub: dict[str, Any], rss_mb: float) -> dict[str, float]:
        """Add the sample taken at ``t_s`` (epoch seconds); returns its row."""
        d = daemon or {}
        lat = d.get("persist_latency_ms") or {}
        feed = d.get("feed") or {}
        hub_feed = hub.get("feed") or {}
        counters = {"evals": _num(d.get("evaluations")), "fills": _num(d.get("fills"))}
        for st in d.get("stream_detail") or ():
            counters[f"c:{st.get('symbol')}/{st.get('interval')}"] = _num(st.get("candles"))
        rates = self._rates(t_s, counters)
        row = {
            "t": t_s * 1000.0,
            "p50": _num(lat.get("p50")), "p99": _num(lat.get("p99")),
            "evals_pm": rates.get("evals", NAN) * 60.0, "fills_pm": rates.get("fills", NAN) * 60.0,
            "queue": _num(d.get("queue")), "daemon_rss": _num(d.get("rss_mb")), "dash_rss": float(rss_mb),
            "d_reconnects": _num(feed.get("reconnects")), "d_gaps": _num(feed.get("gaps")),
            "h_reconnects": _num(hub_feed.get("reconnects")), "h_gaps": _num(hub_feed.get("gaps")),
            "sessions": _num(hub.get("sessions")),
            "sockets": float(sum(s.get("sockets", 0) for s in hub.get("streams") or ())),
        }  # fmt: skip
        self.rows.append(row)
        self.streams.append({"t": row["t"], **{k[2:]: v for k, v in rates.items() if k.startswith("c:")}})
        return row

    def _rates(self, t_s: float, counters: dict[str, float]) -> dict[str, float]:
        prev, self._prev = self._prev, (t_s, counters)
        if prev is None or t_s <= prev[0]:
            return {}
        dt = t_s - prev[0]
        out = {}
        for k, v in counters.items():
            before = prev[1].get(k, NAN)
            # a counter that went down (a restarted daemon) or was not there before: no rate this step
            out[k] = (v - before) / dt if v >= before else NAN
        return out

    def stream_names(self) -> list[str]:
        """Every daemon stream seen in the kept history, sorted."""
        return sorted({k for r in self.streams for k in r if k != "t"})

    def since(self, t_ms: float) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
        """The rows (fixed, per stream) sampled after ``t_ms``."""
        return [r for r in self.rows if r["t"] > t_ms], [r for r in self.streams if r["t"] > t_ms]
