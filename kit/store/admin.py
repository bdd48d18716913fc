"""What an administrator may do to other users' strategies from the admin page: pause one, pause
every strategy of a user, resume one.

Each action checks, in the same transaction as the change, that the acting user is an admin
(whatever a page believed when it was built: a demoted admin is refused from that moment), and
records an event for the admin page's log. A pause is the state the daemon already gives a
strategy it stops after repeated failures (``paused``, with the reason in ``last_error``) and
bumps ``version``, so the daemon stops it at its next poll and it trades no more; its owner (or an
admin) resumes it by switching it on again, from its checkpoint.
"""

from __future__ import annotations

import builtins

import sqlalchemy as sa
from sqlmodel import Session, select

from kit.errors import KitError
from kit.store._scope import NotFound
from kit.store._store import Store
from kit.store.models import Event, StrategyRecord, User, utcnow


class Forbidden(KitError):
    """The acting user may not do this (not an administrator)."""


def pause_strategy(store: Store, actor: str, strategy_id: int) -> StrategyRecord:
    """Pause any user's strategy ``strategy_id`` as the administrator ``actor``."""
    with store.session(write=True) as s:
        _admin(s, actor)
        rec = _strategy(s, int(strategy_id))
        return _pause(s, actor, [rec])[0]


def pause_user(store: Store, actor: str, name: str) -> builtins.list[StrategyRecord]:
    """Pause every strategy of the user ``name`` as the administrator ``actor``; returns them."""
    with store.session(write=True) as s:
        _admin(s, actor)
        uid = s.execute(sa.select(User.id).where(User.name == name)).scalar_one_or_none()
        if uid is None:
            raise NotFound(f"unknown user {name!r}")
        recs = builtins.list(s.exec(select(StrategyRecord).where(StrategyRecord.user_id == uid)).all())
        paused = _pause(s, actor, recs)
        s.add(Event(level="warning", kind="user_paused", user_id=uid,
                    message=f"admin {actor} paused user {name} ({len(paused)} strategies)"))  # fmt: skip
        return paused


def resume_strategy(store: Store, actor: str, strategy_id: int) -> StrategyRecord:
    """Switch any user's strategy back on (state active, failures cleared) as the administrator ``actor``."""
    with store.session(write=True) as s:
        _admin(s, actor)
        rec = _strategy(s, int(strategy_id))
        s.execute(sa.update(StrategyRecord).where(StrategyRecord.id == rec.id).values(
            active=True, state="active", failures=0, last_error=None, version=StrategyRecord.version + 1,
            updated_at=utcnow()))  # fmt: skip
        s.add(Event(level="info", kind="strategy_resumed", strategy_id=rec.id, user_id=rec.user_id,
                    message=f"admin {actor} resumed strategy {rec.id} ({rec.name})"))  # fmt: skip
        s.flush()
        s.refresh(rec)
        return rec


def _admin(s: Session, actor: str) -> None:
    role = s.execute(sa.select(User.role).where(User.name == actor, User.disabled == sa.false())).scalar_one_or_none()
    if role != "admin":
        raise Forbidden(f"{actor!r} is not an administrator: only admins pause or resume others' strategies")


def _strategy(s: Session, sid: int) -> StrategyRecord:
    rec = s.exec(select(StrategyRecord).where(StrategyRecord.id == sid)).one_or_none()
    if rec is None:
        raise NotFound(f"no strategy {sid}")
    return rec


def _pause(s: Session, actor: str, recs: builtins.list[StrategyRecord]) -> builtins.list[StrategyRecord]:
    why = f"paused by admin {actor}"
    for rec in recs:
        s.execute(sa.update(StrategyRecord).where(StrategyRecord.id == rec.id).values(
            state="paused", last_error=why, version=StrategyRecord.version + 1, updated_at=utcnow()))  # fmt: skip
        s.add(Event(level="warning", kind="strategy_paused", strategy_id=rec.id, user_id=rec.user_id,
                    message=f"admin {actor} paused strategy {rec.id} ({rec.name})"))  # fmt: skip
    s.flush()
    for rec in recs:
        s.refresh(rec)
    return recs
