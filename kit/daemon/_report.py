"""What the daemon reports: the ``/status`` document and the ``/metrics`` text, read from its parts.

Nothing here changes state; both are built on demand from the daemon's public figures (its book,
writer, streams, reconciler, counters) and its :meth:`~kit.daemon._daemon.Daemon.health` verdict.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psutil

from kit import _metrics

if TYPE_CHECKING:
    from kit.daemon._daemon import Daemon

#: This process, for its resident memory in ``/status``.
_PROCESS = psutil.Process()
#: Modules the daemon must never import; ``/status`` shows it does not.
HEAVY = ("vectorbt", "panel", "holoviews", "bokeh")
#: The heartbeat's status line.
LOGGED = ("uptime_s", "streams", "strategies", "analyses", "candles", "fills", "trades", "queue", "db_ok",
          "feed_connected")  # fmt: skip


def quantile(ordered: Sequence[float], p: float) -> float:
    """The ``p`` quantile of ascending ``ordered`` (nearest rank below); NaN when empty."""
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else math.nan


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def status(d: Daemon, brief: bool = False) -> dict[str, Any]:
    """The ``/status`` document (``brief``: the heartbeat's summary)."""
    book, c, rec = d.book, d.counts, d.reconciler
    health = d.health()
    lat = sorted(d.writer.latency)
    st: dict[str, Any] = {
        "daemon_id": d.config.daemon_id,
        "started_at": d.started_at.isoformat(),
        "uptime_s": round(d.uptime(), 1),
        "ready": health.ready,
        "health": health.state,
        "reasons": list(health.reasons),
        "db_ok": d.db_ok,
        "db_waits": d.db_waits,
        "feed_connected": d.feed_connected(),
        "streams": len(book.streams),
        "strategies": len(book.members),
        "analyses": sum(len(s.groups) for s in book.streams.values()),
        "candles": c["candles"],
        "evaluations": c["analyses"],
        "fills": c["fills"],
        "trades": c["trades"],
        "strategy_failures": c["strategy_failures"],
        "strategies_paused": c["strategies_paused"],
        "strategies_failing": len(rec.failing()),
        "strategies_cannot_load": sum(p.state == "error" for p in rec.problems.values()),
        "stream_failures": c["stream_failures"],
        "streams_failing": sum(h.failing for h in d.streams.health().values()),
        "commits": d.writer.commits,
        "queue": d.writer.waiting,
        "write_lag_s": round(d.writer.lag(), 3),
        "rss_mb": round(_PROCESS.memory_info().rss / 2**20, 1),  # the admin page plots it
        "persist_latency_ms": {"p50": round(1000 * quantile(lat, 0.5), 3) if lat else None,
                               "p99": round(1000 * quantile(lat, 0.99), 3) if lat else None, "n": len(lat)},
    }  # fmt: skip
    if d.shards is not None:
        st["fenced_writes"] = d.writer.fenced
        st["shards"] = d.shards.status() if not brief else d.shards.status()["owned"]
    if brief:
        return st
    st["strategies_by_user"] = rec.by_user()
    st["stream_detail"] = [
        {"symbol": s.symbol, "interval": s.interval, "groups": len(s.groups), "strategies": s.members,
         "read_by_groups": len(s.followers),  # strategies on other streams that read this one
         "indicators": 0 if s.state is None else len(s.state.slots), "candles": s.candles,
         "last_candle": _iso(s.last_time), "failures": h.failures, "failures_total": h.total,
         "last_error": h.last_error}
        for s in book.streams.values()
        for h in [d.streams.health_of((s.symbol, s.interval))]
    ]  # fmt: skip
    failing = rec.failing()
    st["strategy_detail"] = [
        {"id": m.id, "user": rec.user_names.get(m.user_id, str(m.user_id)), "name": m.name, "version": m.version,
         "checkpoint": m.checkpoint, "position": m.broker.state.position, "fills": m.fills, "trades": m.trades,
         "failures": m.failures, "last_signal": m.last_signal, "last_error": failing.get(m.id)}
        for m in book.members.values()
    ]  # fmt: skip
    st["strategy_problems"] = [p.to_dict() for p in rec.problems.values()]
    st["feed"] = d.feed.stats() if d.feed is not None else None
    if d.engine is not None:
        es = d.engine.stats()
        st["engine"] = {k: es[k] for k in ("streams", "subscribers", "unique_specs", "updates")}
    st["modules"] = {name: name in sys.modules for name in HEAVY}
    st["python"] = sys.version.split()[0]
    return st


def metrics(d: Daemon) -> str:
    """Prometheus text for ``/metrics`` (``prometheus_client``; the names are the README's table)."""
    reg = _metrics.registry()  # one per scrape: the figures live in the daemon, read when asked
    reg.register(_metrics.Snapshot(lambda: families(d)))
    return _metrics.render(reg).decode()


def families(d: Daemon) -> list[_metrics.Family]:
    """The daemon's metric families, read from its parts now."""
    book, c = d.book, d.counts
    g, n = _metrics.gauge, _metrics.counter
    by_state: Counter[str] = Counter(k.state for k in d.reconciler.known.values() if k.state != "off")
    m = [
        g("kit_daemon_up", "1 while the daemon runs", 1),
        g("kit_daemon_ready", "1 when nothing fails (/ready is 200)", int(d.health().ready)),
        g("kit_daemon_uptime_seconds", "seconds since start", d.uptime()),
        g("kit_daemon_database_up", "1 when the last database call succeeded", int(d.db_ok)),
        g("kit_daemon_streams", "streams subscribed", len(book.streams)),
        g("kit_daemon_strategies", "strategies by daemon state",
          {(s,): by_state.get(s, 0) for s in ("active", "paused", "error")}, ["state"]),
        g("kit_daemon_strategies_running", "strategies being evaluated", len(book.members)),
        g("kit_daemon_analyses", "unique evaluations per candle (groups)",
          sum(len(s.groups) for s in book.streams.values())),
        n("kit_daemon_candles_total", "closed candles processed", c["candles"]),
        n("kit_daemon_evaluations_total", "group evaluations", c["analyses"]),
        n("kit_daemon_fills_total", "paper fills", c["fills"]),
        n("kit_daemon_trades_total", "closed trades", c["trades"]),
        n("kit_daemon_strategy_failures_total", "failed strategy evaluations", c["strategy_failures"]),
        n("kit_daemon_commits_total", "ledger transactions", d.writer.commits),
        n("kit_daemon_database_waits_total", "retries while the database was down", d.db_waits),
        g("kit_daemon_write_queue", "closed candles waiting to be committed", d.writer.waiting),
        g("kit_daemon_write_lag_seconds", "age of the oldest candle waiting to be committed", d.writer.lag()),
        n("kit_daemon_stream_failures_total", "failed stream subscriptions", c["stream_failures"]),
        g("kit_daemon_streams_failing", "streams failing repeatedly",
          sum(h.failing for h in d.streams.health().values())),
        g("kit_daemon_strategies_failing", "running strategies whose last evaluation failed",
          len(d.reconciler.failing())),
        _metrics.summary("kit_daemon_persist_latency_seconds", "closed candle received -> decisions committed",
                         sorted(d.writer.latency)),
    ]  # fmt: skip
    m += d.live.metrics()
    if d.shards is not None:
        sh = d.shards.status()
        m += [
            g("kit_daemon_shards_owned", "shards this daemon holds a lease on and runs", len(sh["owned"])),
            n("kit_daemon_shards_taken_total", "shards taken (free, expired or handed over)", sh["taken"]),
            n("kit_daemon_shards_dropped_total", "shards stopped (given, lost or not renewed in time)", sh["dropped"]),
            n("kit_daemon_lease_round_failures_total", "lease rounds that failed", sh["round_failures"]),
            n("kit_daemon_fenced_writes_total", "writes the database refused: their lease was lost", d.writer.fenced),
        ]
    if d.feed is not None:
        m += _metrics.feed_metrics(d.feed.stats())
    return m
