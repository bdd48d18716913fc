"""``kit daemon``: run every active strategy of every user until SIGTERM/SIGINT."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("daemon")(daemon)


def daemon(
    status_port: int = typer.Option(
        None, "--status-port", min=0, max=65535, help="HTTP status port (/health /ready /status /metrics)."
    ),
    status_host: str = typer.Option("127.0.0.1", "--status-host", help="Interface of the status server."),
    heartbeat: float = typer.Option(300.0, "--heartbeat", help="Seconds between heartbeat rows and status lines."),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between checks for promotions and changes."),
    history: int = typer.Option(1000, "--history", help="Candles of history per stream on start (warm-up)."),
    max_backfill: int = typer.Option(20000, "--max-backfill", help="Most candles replayed per stream after downtime."),
    max_failures: int = typer.Option(3, "--max-failures", help="Consecutive failures before a strategy is paused."),
    eval_timeout: float = typer.Option(1.0, "--eval-timeout", help="Seconds an evaluation may take before failing."),
    eval_kill_after: float = typer.Option(
        10.0, "--eval-kill-after", help="Seconds after which a running evaluation is interrupted and paused."
    ),
    max_write_lag: float = typer.Option(
        30.0, "--max-write-lag", help="Seconds a candle may wait for its commit before /ready says 503."
    ),
    keep_heartbeats: float = typer.Option(7.0, "--keep-heartbeats", help="Days of heartbeat rows kept."),
    keep_events: float = typer.Option(90.0, "--keep-events", help="Days of event rows kept."),
) -> None:
    """Run the paper-trading daemon (reads KIT_DATABASE_URL and KIT_EXCHANGE_URL)."""
    from kit.daemon import DaemonConfig, run
    from kit.settings import Settings

    s = Settings.from_env()
    run(
        DaemonConfig(
            status_port=s.status_port if status_port is None else status_port,
            status_host=status_host,
            heartbeat_every=heartbeat,
            poll_every=poll,
            history=history,
            max_backfill=max_backfill,
            max_failures=max_failures,
            eval_timeout=eval_timeout,
            eval_kill_after=eval_kill_after,
            max_write_lag=max_write_lag,
            keep_heartbeats_days=keep_heartbeats,
            keep_events_days=keep_events,
        )
    )
