"""Live orders and fills in the database: every change to one is one transaction.

The daemon's live path (:mod:`kit.daemon._live`) commits an order's intent *with* the
strategy's checkpoint for that candle (:func:`commit_intent`) before any request leaves, then
each new state of the order together with its new fills and the strategy's position
(:func:`save`). A fill is unique per (user, symbol, trade id): a trade reported twice (the
REST answer, the user data stream, ``myTrades``) is stored once. A candle replayed after a
crash finds its intent by client id and never creates a second order.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from kit.errors import InputError
from kit.orders import Order, State, StrategyLimits, Trade, UserLimits
from kit.store._scope import NotFound, user_id
from kit.store._store import Store
from kit.store.models import Checkpoint, LiveFill, LiveLimits, LiveOrder, Position, StrategyRecord, User, utcnow


def _s(d: Decimal | None) -> str | None:
    return None if d is None else f"{d:f}"


def _row_values(o: Order) -> dict[str, Any]:
    return {
        "client_id": o.client_id, "strategy_id": o.strategy_id, "open_time": o.open_time, "leg": o.leg,
        "symbol": o.symbol, "side": o.side, "type": o.type, "quantity": _s(o.quantity), "price": _s(o.price),
        "state": str(o.state), "order_id": o.order_id, "executed_qty": _s(o.executed_qty),
        "filled_qty": _s(o.filled_qty), "quote_qty": _s(o.quote_qty), "commission": _s(o.commission),
        "reason": o.reason, "reject_code": o.reject_code, "effective_until_ms": o.effective_until_ms,
        "cancel_requested": o.cancel_requested,
    }  # fmt: skip


def order_of(row: LiveOrder, trade_ids: Iterable[int] = ()) -> Order:
    """The :class:`kit.orders.Order` a row holds (its trade ids from ``live_fills``)."""
    return Order(
        client_id=row.client_id, strategy_id=row.strategy_id, open_time=row.open_time, leg=row.leg,
        symbol=row.symbol, side=row.side, type=row.type, quantity=Decimal(row.quantity),  # type: ignore[arg-type]
        price=None if row.price is None else Decimal(row.price), state=State(row.state), order_id=row.order_id,
        executed_qty=Decimal(row.executed_qty), filled_qty=Decimal(row.filled_qty),
        quote_qty=Decimal(row.quote_qty), commission=Decimal(row.commission), trade_ids=frozenset(trade_ids),
        reason=row.reason, reject_code=row.reject_code, effective_until_ms=row.effective_until_ms,
        cancel_requested=row.cancel_requested,
    )  # fmt: skip


def _move_checkpoint(conn: sa.Connection, strategy_id: int, t: int) -> None:
    cp = Checkpoint.__table__
    conn.execute(
        cp.update()
        .where(cp.c.strategy_id == strategy_id, cp.c.last_open_time < t)
        .values(last_open_time=t, updated_at=utcnow())
    )


def commit_intent(store: Store, uid: int, order: Order, checkpoint: int | None = None) -> Order | None:
    """Insert ``order`` (an intent, or one already skipped or refused) and move the strategy's
    checkpoint to ``checkpoint``, in one transaction.

    Returns None when its client id is already taken (the candle was replayed): nothing changes.
    """
    lo = LiveOrder.__table__
    with store.begin() as conn:
        if conn.execute(sa.select(lo.c.id).where(lo.c.client_id == order.client_id)).first() is not None:
            return None
        now = utcnow()
        conn.execute(lo.insert().values(user_id=uid, created_at=now, updated_at=now, **_row_values(order)))
        if checkpoint is not None:
            _move_checkpoint(conn, order.strategy_id, checkpoint)
    return order


def advance(store: Store, strategy_id: int, t: int) -> None:
    """Move a live strategy's checkpoint to candle ``t`` (a candle that placed no order)."""
    with store.begin() as conn:
        _move_checkpoint(conn, strategy_id, t)


def advance_many(store: Store, t: int, strategy_ids: Iterable[int]) -> None:
    """Move the checkpoints of live strategies that placed nothing on candle ``t``, in one transaction."""
    cp = Checkpoint.__table__
    ids = builtins.list(strategy_ids)
    if not ids:
        return
    with store.begin() as conn:
        conn.execute(cp.update().where(cp.c.strategy_id.in_(ids), cp.c.last_open_time < t)
                     .values(last_open_time=t, updated_at=utcnow()))  # fmt: skip


def save(
    store: Store, uid: int, order: Order, fills: Iterable[Trade] = (), position: dict[str, Any] | None = None
) -> int:
    """Record ``order``'s new state, its ``fills`` not stored yet and the strategy's ``position``,
    in one transaction. Returns how many fills were new."""
    lo, lf = LiveOrder.__table__, LiveFill.__table__
    new = 0
    with store.begin() as conn:
        conn.execute(lo.update().where(lo.c.client_id == order.client_id).values(updated_at=utcnow(),
                                                                              **_row_values(order)))  # fmt: skip
        for t in fills:
            hit = conn.execute(
                sa.select(lf.c.id).where(lf.c.user_id == uid, lf.c.symbol == order.symbol, lf.c.trade_id == t.trade_id)
            ).first()
            if hit is not None:
                continue
            conn.execute(lf.insert().values(
                user_id=uid, strategy_id=order.strategy_id, client_id=order.client_id, symbol=order.symbol,
                trade_id=t.trade_id, side=order.side, quantity=_s(t.quantity), price=_s(t.price),
                commission=_s(t.commission), commission_asset=t.commission_asset, time_ms=t.time_ms,
                created_at=utcnow(),
            ))  # fmt: skip
            new += 1
        if position is not None:
            pt = Position.__table__
            conn.execute(pt.update().where(pt.c.strategy_id == order.strategy_id).values(**position))
    return new


def load_orders(store: Store, strategy_id: int) -> builtins.list[Order]:
    """Every order of a live strategy with its recorded trade ids, oldest first."""
    with store.session() as s:
        rows = s.exec(select(LiveOrder).where(LiveOrder.strategy_id == strategy_id).order_by(LiveOrder.id)).all()
        fills = s.exec(select(LiveFill.client_id, LiveFill.trade_id).where(LiveFill.strategy_id == strategy_id)).all()
    by: dict[str, builtins.list[int]] = {}
    for cid, tid in fills:
        by.setdefault(cid, []).append(int(tid))
    return [order_of(r, by.get(r.client_id, ())) for r in rows]


def load_fills(store: Store, strategy_id: int) -> builtins.list[LiveFill]:
    """A live strategy's fills in the order they happened."""
    with store.session() as s:
        q = select(LiveFill).where(LiveFill.strategy_id == strategy_id).order_by(LiveFill.time_ms, LiveFill.trade_id)
        return builtins.list(s.exec(q).all())


def orders(store: Store, user: User | str, strategy_id: int | None = None) -> builtins.list[LiveOrder]:
    """A user's live orders (one strategy's with ``strategy_id``), oldest first."""
    uid = user_id(store, user)
    with store.session() as s:
        q = select(LiveOrder).where(LiveOrder.user_id == uid)
        if strategy_id is not None:
            q = q.where(LiveOrder.strategy_id == strategy_id)
        return builtins.list(s.exec(q.order_by(LiveOrder.id)).all())


def fills(store: Store, user: User | str, strategy_id: int | None = None) -> builtins.list[LiveFill]:
    """A user's live fills (one strategy's with ``strategy_id``) in the order they happened."""
    uid = user_id(store, user)
    with store.session() as s:
        q = select(LiveFill).where(LiveFill.user_id == uid)
        if strategy_id is not None:
            q = q.where(LiveFill.strategy_id == strategy_id)
        return builtins.list(s.exec(q.order_by(LiveFill.time_ms, LiveFill.trade_id)).all())


# ----- risk limits and halts ---------------------------------------------------------------------

LIMIT_NAMES = ("max_order_notional", "max_position_notional", "max_exposure", "max_daily_loss")
_STRATEGY_LIMITS = LIMIT_NAMES[:2]
_USER_LIMITS = LIMIT_NAMES[2:]


def _limits_row(s: Any, uid: int, sid: int | None) -> LiveLimits | None:
    q = select(LiveLimits).where(LiveLimits.user_id == uid)
    q = q.where(LiveLimits.strategy_id.is_(None) if sid is None else LiveLimits.strategy_id == sid)  # type: ignore[union-attr]
    return s.exec(q).first()


def set_limits(store: Store, user: User | str, strategy: str | None = None, **limits: float | None) -> LiveLimits:
    """Set a user's limits (``max_exposure``, ``max_daily_loss``) or, with ``strategy`` (its name),
    one strategy's (``max_order_notional``, ``max_position_notional``). None clears a limit; a
    limit not named keeps its value."""
    allowed = _USER_LIMITS if strategy is None else _STRATEGY_LIMITS
    bad = sorted(set(limits) - set(allowed))
    if bad:
        raise InputError(f"{', '.join(bad)}: not a {'user' if strategy is None else 'strategy'} limit "
                         f"(those are {', '.join(allowed)})")  # fmt: skip
    try:  # the same validation the daemon applies when it reads them
        (UserLimits if strategy is None else StrategyLimits)(**limits)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    uid = user_id(store, user)
    with store.session(write=True) as s:
        sid = None
        if strategy is not None:
            rec = s.exec(select(StrategyRecord).where(StrategyRecord.user_id == uid,
                                                      StrategyRecord.name == strategy)).first()  # fmt: skip
            if rec is None:
                raise NotFound(f"no strategy {strategy!r}")
            sid = rec.id
        row = _limits_row(s, uid, sid) or LiveLimits(user_id=uid, strategy_id=sid)
        for k, v in limits.items():
            setattr(row, k, v)
        row.updated_at = utcnow()
        s.add(row)
        s.flush()
        return row


def set_halt(store: Store, user: User | str, halted: bool, reason: str = "") -> None:
    """Halt (or resume) a user's live trading: no order but a flatten's is placed while halted."""
    set_halt_for_daemon(store, user_id(store, user), halted, reason)


def set_halt_for_daemon(store: Store, uid: int, halted: bool, reason: str = "") -> None:
    with store.session(write=True) as s:
        row = _limits_row(s, uid, None) or LiveLimits(user_id=uid)
        row.halted, row.halt_reason, row.updated_at = halted, (reason or None) if halted else None, utcnow()
        s.add(row)


def limits_for_daemon(store: Store) -> builtins.list[LiveLimits]:
    """Every limits row (the daemon reads them at start and on each poll)."""
    with store.session() as s:
        return builtins.list(s.exec(select(LiveLimits)).all())
