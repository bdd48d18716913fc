"""The daemon's heartbeats and events: operator data, shown on the admin page (not user-scoped)."""

from __future__ import annotations

import builtins
from typing import Any

import sqlalchemy as sa

from kit.store._store import Store
from kit.store.models import Event, Heartbeat, utcnow


def record(
    store: Store,
    kind: str,
    message: str = "",
    *,
    level: str = "info",
    strategy_id: int | None = None,
    user_id: int | None = None,
) -> None:
    """Append one event (start, stop, strategy_failed, strategy_paused, feed_reconnect...)."""
    with store.begin() as conn:
        conn.execute(
            sa.insert(Event).values(
                time=utcnow(), level=level, kind=kind, message=message, strategy_id=strategy_id, user_id=user_id
            )
        )


def heartbeat(store: Store, daemon_id: str, started_at: Any, status: dict[str, Any]) -> None:
    """Append one heartbeat row with the daemon's status summary."""
    with store.begin() as conn:
        conn.execute(sa.insert(Heartbeat).values(daemon_id=daemon_id, time=utcnow(), started_at=started_at,
                                                 status=status))  # fmt: skip


def prune(store: Store, *, heartbeats_older_than: Any, events_older_than: Any) -> tuple[int, int]:
    """Delete heartbeats and events older than the given (naive UTC) datetimes, so a daemon running
    for years keeps these operator tables bounded. Returns (heartbeats, events) deleted."""
    with store.begin() as conn:
        hb = conn.execute(sa.delete(Heartbeat).where(Heartbeat.time < heartbeats_older_than)).rowcount
        ev = conn.execute(sa.delete(Event).where(Event.time < events_older_than)).rowcount
    return int(hb or 0), int(ev or 0)


def latest_heartbeat(store: Store) -> dict[str, Any] | None:
    """The newest heartbeat as a dict (``daemon_id, time, started_at, status``), or None."""
    h = Heartbeat
    with store.engine.connect() as conn:
        row = (
            conn.execute(sa.select(h.daemon_id, h.time, h.started_at, h.status).order_by(h.id.desc()).limit(1))
            .mappings()
            .first()
        )
    return dict(row) if row else None


def recent(store: Store, limit: int = 50, *, min_level: str | None = None) -> builtins.list[dict[str, Any]]:
    """The newest events first; ``min_level="warning"`` keeps warnings and errors."""
    e = Event
    q = sa.select(e.id, e.time, e.level, e.kind, e.strategy_id, e.user_id, e.message).order_by(e.id.desc())
    if min_level == "warning":
        q = q.where(e.level.in_(("warning", "error")))
    elif min_level == "error":
        q = q.where(e.level == "error")
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(q.limit(int(limit))).mappings()]
