"""Daemon settings: everything ``kit daemon`` takes, validated in one place."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from kit.errors import ConfigError


def _default_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class DaemonConfig:
    """How the daemon runs. Defaults suit a server; tests shorten the intervals.

    Args:
        database_url: SQLAlchemy URL (default ``KIT_DATABASE_URL``).
        exchange_url, exchange_ws_url: REST and WebSocket bases (default ``KIT_EXCHANGE_URL``).
        status_port: HTTP status server port (None: no server; 0: any free port).
        status_host: interface of the status server (loopback by default).
        heartbeat_every: seconds between heartbeat rows and status log lines (5 minutes).
        poll_every: seconds between checks of the strategies table for promotions and changes.
        history: candles of history loaded per stream on start (indicator warm-up).
        max_backfill: the most candles replayed per stream after downtime (older ones are skipped).
        max_failures: consecutive failures (raise, garbage, too slow) before a strategy is paused.
        eval_timeout: seconds one evaluation may take before it counts as a failure.
        eval_kill_after: seconds after which a still-running evaluation is interrupted and its
            strategy paused at once (an endless loop must not stall everyone else).
        db_retry_max: longest wait in seconds between retries while the database is unavailable.
        max_write_lag: seconds a closed candle may wait for its commit before ``/ready`` says the
            writer is behind (503).
        stream_wait: seconds a strategy over several streams waits, after its own candle closed, for
            the candle of another (live) stream closing with it before that stream counts as in an
            outage and its last closed candle is used (see :mod:`kit.daemon._follow`).
        keep_heartbeats_days, keep_events_days: heartbeat and event rows older than this are
            deleted at each heartbeat (the ledger is never pruned).
        daemon_id: name in heartbeats (default ``host:pid``).
    """

    database_url: str | None = None
    exchange_url: str | None = None
    exchange_ws_url: str | None = None
    status_port: int | None = None
    status_host: str = "127.0.0.1"
    heartbeat_every: float = 300.0
    poll_every: float = 2.0
    history: int = 1000
    max_backfill: int = 20_000
    max_failures: int = 3
    eval_timeout: float = 1.0
    eval_kill_after: float = 10.0
    db_retry_max: float = 10.0
    max_write_lag: float = 30.0
    stream_wait: float = 10.0
    keep_heartbeats_days: float = 7.0
    keep_events_days: float = 90.0
    daemon_id: str = field(default_factory=_default_id)

    def __post_init__(self) -> None:
        for name in ("heartbeat_every", "poll_every", "eval_timeout", "eval_kill_after", "db_retry_max",
                     "max_write_lag", "keep_heartbeats_days", "keep_events_days", "stream_wait"):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, int | float) or isinstance(v, bool) or not v > 0:
                raise ConfigError(f"{name} must be a number of seconds > 0, got {v!r}")
        for name, lo in (("history", 1), ("max_backfill", 1), ("max_failures", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")
        if self.eval_kill_after <= self.eval_timeout:
            raise ConfigError(
                f"eval_kill_after ({self.eval_kill_after} s) must be longer than eval_timeout ({self.eval_timeout} s)"
            )
        p = self.status_port
        if p is not None and (not isinstance(p, int) or not 0 <= p <= 65535):
            raise ConfigError(f"status_port must be a port number 0..65535, got {p!r}")
