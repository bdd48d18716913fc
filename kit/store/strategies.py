"""A user's promoted strategies. Every function takes the user; another user's id is "not found".

The functions whose names say so (``*_for_daemon``, ``*_as_operator``) are deliberately
unscoped: the daemon runs everyone's strategies, and a shell operator administers them.
The dashboard never calls them for a viewer.
"""

from __future__ import annotations

import builtins
import logging
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from kit.errors import ConfigError
from kit.market.intervals import validate_interval, validate_symbol
from kit.store._scope import NotFound, user_id
from kit.store._store import Store
from kit.store.models import MODES, STATES, Position, StrategyRecord, User, utcnow

log = logging.getLogger(__name__)


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
    mode: str = "paper",
    allocation: float | None = None,
) -> StrategyRecord:
    """Create ``user``'s strategy ``name``, or replace its definition and bump its version.

    ``start_time`` (ms) is the first candle open time a new strategy trades; ``None`` leaves it
    to the daemon, which uses its feed's clock when it first loads the strategy (so a strategy
    promoted against a simulator replaying the past trades on the replay, not after it).

    A re-promotion that only changes parameters or the fill model keeps the strategy's id,
    ledger and position and only changes how it decides. One that changes the class, symbol,
    interval or ``mode`` (a paper position is not on the exchange) never inherits them: while the
    strategy holds a position it is refused
    (:class:`ConfigError` naming the position); when flat, the old strategy is switched off and
    renamed (its ledger stays, under its own id) and ``name`` starts afresh with a new id.
    Concurrent promotions of one name are serialised on the row: each gets its own version.
    Used by :func:`kit.promote`; validation of the class and parameters happens there.
    """
    uid = user_id(store, user)
    symbol = validate_symbol(symbol)
    interval = validate_interval(interval)
    if not name or len(name) > 128:
        raise ConfigError(f"name must be 1-128 characters, got {name!r}")
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    for attempt in range(3):
        try:
            return _upsert(store, uid, _name(user), name, class_path, dict(params), symbol, interval,
                           dict(broker or {}), start_time, mode, allocation)  # fmt: skip
        except sa.exc.IntegrityError as exc:
            # Two first promotions of one name raced (PostgreSQL): the loser re-reads the
            # winner's row and becomes its next version.
            if attempt == 2:
                why = str(exc.orig).strip().splitlines()[0][:200]
                raise ConfigError(f"strategy {name!r} conflicts with an existing one: {why}") from None
    raise AssertionError("unreachable")


def _upsert(
    store: Store, uid: int, uname: str, name: str, class_path: str, params: dict[str, Any], symbol: str,
    interval: str, broker: dict[str, Any], start_time: int | None, mode: str, allocation: float | None,
) -> StrategyRecord:  # fmt: skip
    st = StrategyRecord.__table__
    now = utcnow()
    with store.session(write=True) as s:
        # FOR UPDATE (PostgreSQL): a concurrent promotion of this name waits here and then sees
        # this one's version; SQLite's write transaction (BEGIN IMMEDIATE) serialises the same way.
        row = s.exec(
            select(StrategyRecord).where(StrategyRecord.user_id == uid, StrategyRecord.name == name).with_for_update()
        ).first()
        same = row is not None and (row.class_path, row.symbol, row.interval, row.mode) == (
            class_path, symbol, interval, mode)  # fmt: skip
        if row is not None and same:
            s.execute(
                sa.update(st).where(st.c.id == row.id).values(
                    class_path=class_path, params=params, broker=broker, allocation=allocation, active=True,
                    state="active", failures=0, last_error=None, version=st.c.version + 1, promoted_at=now,
                    updated_at=now,
                )
            )  # fmt: skip
            s.expire(row)
            return s.exec(select(StrategyRecord).where(StrategyRecord.id == row.id)).one()
        if row is not None:
            _retire(s, row, uname, class_path, symbol, interval, mode, now)
        new = StrategyRecord(
            user_id=uid, name=name, class_path=class_path, params=params, broker=broker, symbol=symbol,
            interval=interval, mode=mode, allocation=allocation, promoted_at=now, updated_at=now,
            start_time=None if start_time is None else int(start_time),
        )  # fmt: skip
        s.add(new)
        s.flush()
        s.refresh(new)
        return new


def _retire(
    s: Any, row: StrategyRecord, uname: str, class_path: str, symbol: str, interval: str, mode: str, now: Any
) -> None:
    """Switch ``row`` off under a new name, so ``row.name`` can start afresh on another stream, class or mode.

    Refused while it holds a position: that position belongs to its own symbol and ledger and
    must never be carried to (and closed at the prices of) another one.
    """
    # Read, not locked: the daemon's ledger transaction holds the position row while it updates
    # the strategy row (its last signal), so locking the position here, after the strategy row,
    # could deadlock with it. A fill committed just after this read stays in the old id's own
    # ledger, on its own symbol: nothing crosses over.
    pos = s.exec(select(Position).where(Position.strategy_id == row.id)).first()
    if pos is not None and pos.size:
        side = "long" if pos.size > 0 else "short"
        at = "" if pos.entry_price is None else f" entered at {pos.entry_price:g}"
        cls = class_path.rsplit(":", 1)[-1]
        raise ConfigError(
            f"strategy {row.name!r} (id {row.id}) holds a {side} position of {abs(pos.size):g} {pos.symbol}{at}; "
            f"re-promoting it as {cls} on {symbol}/{interval} ({mode}) would carry that position across: wait until "
            f"it is flat (it exits on its own signals on {row.symbol}/{row.interval}), or promote under another name "
            f"(name=...) and switch this one off with kit.demote({row.id}, user={uname!r})"
        )
    suffix = f" (#{row.id} {row.symbol}/{row.interval}, replaced)"
    st = StrategyRecord.__table__
    s.execute(
        sa.update(st).where(st.c.id == row.id).values(
            name=row.name[: 128 - len(suffix)] + suffix, active=False, version=st.c.version + 1, updated_at=now,
        )
    )  # fmt: skip
    log.info("strategy replaced by a new definition", extra={"strategy_id": row.id, "stream": f"{symbol}/{interval}"})


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
