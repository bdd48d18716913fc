"""A user's promoted strategies. Every function takes the user; another user's id is "not found".

The functions whose names say so (``*_for_daemon``, ``*_as_operator``) are deliberately
unscoped: the daemon runs everyone's strategies, and a shell operator administers them.
The dashboard never calls them for a viewer.
"""

from __future__ import annotations

import builtins
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from kit.errors import ConfigError
from kit.market.intervals import validate_interval, validate_symbol
from kit.store._scope import NotFound, user_id
from kit.store._store import Store
from kit.store.models import STATES, StrategyRecord, User, utcnow


def list(store: Store, user: User | str) -> builtins.list[StrategyRecord]:
    """``user``'s strategies (active or not), by id."""
    uid = user_id(store, user)
    with store.session() as s:
        q = select(StrategyRecord).where(StrategyRecord.user_id == uid).order_by(StrategyRecord.id)
        return builtins.list(s.exec(q).all())


def get(store: Store, user: User | str, strategy_id: int) -> StrategyRecord:
    """``user``'s strategy ``strategy_id``; :class:`NotFound` if it is missing or someone else's."""
    uid = user_id(store, user)
    with store.session() as s:
        row = s.exec(
            select(StrategyRecord).where(StrategyRecord.id == int(strategy_id), StrategyRecord.user_id == uid)
        ).first()
    if row is None:
        raise NotFound(f"no strategy {strategy_id} for user {_name(user)!r}")
    return row


def find(store: Store, user: User | str, name: str) -> StrategyRecord | None:
    """``user``'s strategy called ``name``, or None."""
    uid = user_id(store, user)
    with store.session() as s:
        return s.exec(select(StrategyRecord).where(StrategyRecord.user_id == uid, StrategyRecord.name == name)).first()


def set_active(store: Store, user: User | str, strategy_id: int, active: bool) -> StrategyRecord:
    """Switch ``user``'s strategy on or off. Activating clears a pause (state and failure count)."""
    uid = user_id(store, user)
    return _set_active(store, int(strategy_id), bool(active), uid, _name(user))


def set_active_as_operator(store: Store, strategy_id: int, active: bool) -> StrategyRecord:
    """Operator (shell) version of :func:`set_active`: any user's strategy."""
    return _set_active(store, int(strategy_id), bool(active), None, None)


def _set_active(store: Store, sid: int, active: bool, uid: int | None, uname: str | None) -> StrategyRecord:
    values: dict[str, Any] = {"active": active, "version": StrategyRecord.version + 1, "updated_at": utcnow()}
    if active:
        values.update(state="active", failures=0, last_error=None)
    cond = [StrategyRecord.id == sid]
    if uid is not None:
        cond.append(StrategyRecord.user_id == uid)
    with store.session(write=True) as s:
        n = s.execute(sa.update(StrategyRecord).where(*cond).values(**values)).rowcount
        if not n:
            who = f" for user {uname!r}" if uname else ""
            raise NotFound(f"no strategy {sid}{who}")
        return s.exec(select(StrategyRecord).where(StrategyRecord.id == sid)).one()


def upsert(
    store: Store,
    user: User | str,
    *,
    name: str,
    class_path: str,
    params: dict[str, Any],
    symbol: str,
    interval: str,
    broker: dict[str, Any] | None = None,
    start_time: int | None = None,
) -> StrategyRecord:
    """Create ``user``'s strategy ``name``, or replace its definition and bump its version.

    ``start_time`` (ms, default now) is the first candle open time a new strategy trades;
    a re-promoted strategy keeps its ledger and position and only changes how it decides.
    Used by :func:`kit.promote`; validation of the class and parameters happens there.
    """
    uid = user_id(store, user)
    symbol = validate_symbol(symbol)
    interval = validate_interval(interval)
    if not name or len(name) > 128:
        raise ConfigError(f"name must be 1-128 characters, got {name!r}")
    now = utcnow()
    with store.session(write=True) as s:
        row = s.exec(select(StrategyRecord).where(StrategyRecord.user_id == uid, StrategyRecord.name == name)).first()
        if row is None:
            row = StrategyRecord(
                user_id=uid, name=name, class_path=class_path, params=dict(params), broker=dict(broker or {}),
                symbol=symbol, interval=interval, promoted_at=now, updated_at=now,
                start_time=int(now.replace(tzinfo=UTC).timestamp() * 1000) if start_time is None else int(start_time),
            )  # fmt: skip
        else:
            row.class_path, row.params, row.broker = class_path, dict(params), dict(broker or {})
            row.symbol, row.interval = symbol, interval
            row.active, row.state, row.failures, row.last_error = True, "active", 0, None
            row.version += 1
            row.promoted_at = row.updated_at = now
        s.add(row)
        s.flush()
        s.refresh(row)
        return row


def list_all_for_daemon(store: Store, *, active_only: bool = True) -> builtins.list[StrategyRecord]:
    """Every user's strategies (active ones by default). For the daemon and admin views only."""
    with store.session() as s:
        q = select(StrategyRecord).order_by(StrategyRecord.id)
        if active_only:
            q = q.where(StrategyRecord.active == sa.true())
        return builtins.list(s.exec(q).all())


def versions_for_daemon(store: Store) -> dict[int, tuple[int, bool]]:
    """``{strategy_id: (version, active)}`` for every strategy: the daemon's cheap change poll."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(StrategyRecord.id, StrategyRecord.version, StrategyRecord.active)).all()
    return {int(i): (int(v), bool(a)) for i, v, a in rows}


def set_state_for_daemon(
    store: Store, strategy_id: int, state: str, *, failures: int | None = None, last_error: str | None = None
) -> None:
    """The daemon's verdict on a strategy (active, paused, error). Does not bump ``version``."""
    if state not in STATES:
        raise ConfigError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    values: dict[str, Any] = {"state": state, "updated_at": utcnow()}
    if failures is not None:
        values["failures"] = int(failures)
    if last_error is not None:
        values["last_error"] = last_error
    with store.begin() as conn:
        conn.execute(sa.update(StrategyRecord).where(StrategyRecord.id == int(strategy_id)).values(**values))


def counts_for_admin(store: Store) -> builtins.list[dict[str, Any]]:
    """Per user: number of strategies by state and how many are switched on (admin page)."""
    q = (
        sa.select(User.name, StrategyRecord.state, StrategyRecord.active, sa.func.count())
        .join(StrategyRecord, StrategyRecord.user_id == User.id)
        .group_by(User.name, StrategyRecord.state, StrategyRecord.active)
        .order_by(User.name)
    )
    out: dict[str, dict[str, Any]] = {}
    with store.engine.connect() as conn:
        for name, state, active, n in conn.execute(q):
            d = out.setdefault(name, {"user": name, "total": 0, "on": 0, **{st: 0 for st in STATES}})
            d["total"] += n
            d[state] += n
            d["on"] += n if active else 0
    return builtins.list(out.values())


def _name(user: User | str) -> str:
    return user.name if isinstance(user, User) else str(user)
