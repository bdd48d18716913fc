"""The daemon's writes: one transaction per closed candle, idempotent per (strategy, candle).

Every strategy has one :class:`~kit.store.models.Checkpoint` row holding the open time of
the last candle it fully processed and the broker's state after it. :func:`commit` writes
a batch of candles' orders, fills, trades, positions and checkpoints in ONE transaction.
A checkpoint only moves forward (``WHERE last_open_time < :t``), and fills, orders and
trades carry unique ``(strategy_id, open_time, seq)`` keys: a candle replayed after a crash
is either skipped (its checkpoint is already past it) or rejected by the constraint; it
never trades twice.

With sharded daemons (:mod:`kit.store.leases`) every transaction also carries the writer's
:class:`~kit.store.leases.Fence`: the shards it writes for are locked ``FOR KEY SHARE`` and their
owner and token compared first, so a daemon that lost a lease (paused past its expiry) cannot
write a single row for it (:class:`~kit.store.leases.FencingError`, nothing of the batch applied).
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from kit.errors import ConfigError
from kit.store._store import Store
from kit.store.leases import Fence, check_fence
from kit.store.models import (
    Checkpoint,
    FillRecord,
    Order,
    Position,
    SignalRecord,
    StrategyRecord,
    TradeRecord,
    utcnow,
)


@dataclass(slots=True)
class CandleWrite:
    """Everything one strategy produced on one closed candle."""

    strategy_id: int
    user_id: int
    open_time: int
    version: int
    broker_state: dict[str, Any] | None = None  # None: unchanged since the last write
    orders: builtins.list[dict[str, Any]] = field(default_factory=builtins.list)
    fills: builtins.list[dict[str, Any]] = field(default_factory=builtins.list)
    trades: builtins.list[dict[str, Any]] = field(default_factory=builtins.list)
    position: dict[str, Any] | None = None  # None: unchanged
    last_signal: str | None = None


def load_checkpoints(store: Store) -> dict[int, Checkpoint]:
    """Every strategy's checkpoint, by strategy id.

    Except a checkpoint whose position is on another symbol than its strategy (one moved by a
    re-promotion before kit refused that): resuming it would carry the position across
    symbols, so it is left out and :func:`ensure_checkpoint` refuses it instead.
    """
    q = (
        select(Checkpoint)
        .join(StrategyRecord, StrategyRecord.id == Checkpoint.strategy_id)
        .outerjoin(Position, Position.strategy_id == Checkpoint.strategy_id)
        .where(sa.or_(Position.symbol.is_(None), Position.symbol == StrategyRecord.symbol))
    )
    with store.session() as s:
        return {c.strategy_id: c for c in s.exec(q).all()}


def ensure_checkpoint(
    store: Store, rec: StrategyRecord, last_open_time: int, broker_state: dict[str, Any], position: dict[str, Any]
) -> Checkpoint:
    """Create the checkpoint and flat position of a strategy the daemon starts for the first time.

    Returns the existing checkpoint unchanged if one is already there, unless its position is
    on another symbol than ``rec`` (:class:`ConfigError`: never resumed). A strategy promoted
    without a start (the exchange was unreachable) records the one the daemon chose,
    ``last_open_time + 1``, so its P&L curve and the dashboard start where trading did.
    """
    with store.session(write=True) as s:
        cp = s.exec(select(Checkpoint).where(Checkpoint.strategy_id == rec.id)).first()
        if cp is not None:
            pos = s.get(Position, rec.id)
            if pos is not None and pos.symbol != rec.symbol:
                raise ConfigError(
                    f"strategy {rec.name!r} (id {rec.id}) trades {rec.symbol} but its ledger and position are on "
                    f"{pos.symbol} (it was re-promoted on another symbol): it will not resume there; promote the new "
                    "definition under another name and switch this one off"
                )
            return cp
        cp = Checkpoint(strategy_id=rec.id, user_id=rec.user_id, version=rec.version, last_open_time=last_open_time,
                        broker_state=broker_state)  # fmt: skip
        s.add(cp)
        if s.get(Position, rec.id) is None:
            s.add(Position(strategy_id=rec.id, user_id=rec.user_id, symbol=rec.symbol, **position))
        st = StrategyRecord.__table__
        s.execute(st.update().where(st.c.id == rec.id, st.c.start_time.is_(None)).values(start_time=last_open_time + 1))
        s.flush()
        return cp


def commit(
    store: Store,
    writes: builtins.list[CandleWrite],
    advance: builtins.list[tuple[int, builtins.list[int]]] | None = None,
    fence: Fence | None = None,
) -> int:
    """Write ``writes`` and ``advance`` in one transaction; returns how many writes were applied.

    ``advance`` is ``[(open_time, [strategy_id, ...]), ...]``: strategies that processed that
    candle with nothing to record but the checkpoint (the common case), moved forward with
    one statement per candle instead of one per strategy. A write that only moves a strategy's
    broker state is skipped when a later one in the batch carries a newer state (the checkpoint
    then moves straight to the later candle).

    If the batch hits a replayed candle, the writes are retried one strategy at a time and
    the replayed ones are skipped (their checkpoint is already at or past the candle).

    ``fence``: every transaction first checks that the writer still holds the shards it writes
    for, and raises :class:`~kit.store.leases.FencingError` (rolled back) if not.
    """
    if not writes and not advance:
        return 0
    writes = _fold(writes)
    # Strictly in candle order: a checkpoint only moves forward, so a later candle's advance
    # must never overtake an earlier candle's write (whose broker state would be dropped).
    times = sorted({w.open_time for w in writes} | {t for t, _ in advance or []})
    by_time: dict[int, builtins.list[CandleWrite]] = {}
    for w in writes:
        by_time.setdefault(w.open_time, []).append(w)
    adv: dict[int, builtins.list[int]] = {}
    for t, ids in advance or []:
        adv.setdefault(t, []).extend(ids)
    try:
        with store.begin() as conn:
            if fence is not None:
                check_fence(conn, fence, [w.strategy_id for w in writes] + [i for _, ids in advance or [] for i in ids])
            for t in times:
                _advance(conn, t, adv.get(t, []))
                _write(conn, by_time.get(t, []))
        return len(writes)
    except sa.exc.IntegrityError:
        pass
    applied = 0
    for t in times:
        with store.begin() as conn:
            if fence is not None:
                check_fence(conn, fence, adv.get(t, []))
            _advance(conn, t, adv.get(t, []))
        for w in by_time.get(t, []):
            with store.begin() as conn:
                if fence is not None:
                    check_fence(conn, fence, [w.strategy_id])
                last = conn.execute(
                    sa.select(Checkpoint.last_open_time).where(Checkpoint.strategy_id == w.strategy_id)
                ).scalar_one_or_none()
                if last is not None and last >= w.open_time:
                    continue
                _write(conn, [w])
                applied += 1
    return applied


def _fold(writes: builtins.list[CandleWrite]) -> builtins.list[CandleWrite]:
    """Drop the writes that only carry broker state when a later write of the same strategy in the
    batch carries a newer state: in one transaction only the last state survives anyway, and a
    trailing stop or a trade's new high can change the state on every candle (a backlog after a
    database outage must not cost a statement per candle for each of them)."""
    latest: dict[int, int] = {}
    for w in writes:
        if w.broker_state is not None and w.open_time > latest.get(w.strategy_id, -1):
            latest[w.strategy_id] = w.open_time
    return [
        w
        for w in writes
        if not (
            w.broker_state is not None
            and not w.orders
            and not w.fills
            and not w.trades
            and w.position is None
            and w.last_signal is None
            and latest[w.strategy_id] > w.open_time
        )
    ]


_ADVANCE_CHUNK = 5000


def _advance(conn: sa.Connection, t: int, ids: builtins.list[int]) -> None:
    """Move many checkpoints to ``t`` in one statement with one bound parameter (no 10,000-``?`` IN list)."""
    if not ids:
        return
    now = utcnow()
    dialect = conn.dialect.name
    if dialect == "sqlite":
        conn.execute(
            sa.text(
                "UPDATE checkpoints SET last_open_time = :t, updated_at = :now WHERE last_open_time < :t "
                "AND strategy_id IN (SELECT value FROM json_each(:ids))"
            ),
            {"t": t, "now": now, "ids": json.dumps(ids)},
        )
    elif dialect == "postgresql":
        conn.execute(
            sa.text(
                "UPDATE checkpoints SET last_open_time = :t, updated_at = :now WHERE last_open_time < :t "
                "AND strategy_id = ANY(:ids)"
            ),
            {"t": t, "now": now, "ids": list(ids)},
        )
    else:
        cp = Checkpoint.__table__
        for i in range(0, len(ids), _ADVANCE_CHUNK):
            chunk = ids[i : i + _ADVANCE_CHUNK]
            conn.execute(
                cp.update()
                .where(cp.c.strategy_id.in_(chunk), cp.c.last_open_time < t)
                .values(last_open_time=t, updated_at=now)
            )


def _write(conn: sa.Connection, writes: builtins.list[CandleWrite]) -> None:
    if not writes:
        return
    now = utcnow()
    cp = Checkpoint.__table__
    plain = [{"b_sid": w.strategy_id, "b_t": w.open_time, "b_v": w.version} for w in writes if w.broker_state is None]
    full = [
        {"b_sid": w.strategy_id, "b_t": w.open_time, "b_v": w.version, "b_s": w.broker_state}
        for w in writes
        if w.broker_state is not None
    ]
    cond = (cp.c.strategy_id == sa.bindparam("b_sid")) & (cp.c.last_open_time < sa.bindparam("b_t"))
    if plain:
        conn.execute(
            cp.update().where(cond).values(last_open_time=sa.bindparam("b_t"), version=sa.bindparam("b_v"),
                                           updated_at=now),
            plain,
        )  # fmt: skip
    if full:
        conn.execute(
            cp.update().where(cond).values(last_open_time=sa.bindparam("b_t"), version=sa.bindparam("b_v"),
                                           broker_state=sa.bindparam("b_s"), updated_at=now),
            full,
        )  # fmt: skip
    orders = [{"strategy_id": w.strategy_id, "user_id": w.user_id, "open_time": w.open_time, "created_at": now, **o}
              for w in writes for o in w.orders]  # fmt: skip
    fills = [{"strategy_id": w.strategy_id, "user_id": w.user_id, "open_time": w.open_time, "created_at": now, **f}
             for w in writes for f in w.fills]  # fmt: skip
    trades = [{"strategy_id": w.strategy_id, "user_id": w.user_id, **t} for w in writes for t in w.trades]
    if orders:
        conn.execute(sa.insert(Order.__table__), orders)
    if fills:
        conn.execute(sa.insert(FillRecord.__table__), fills)
    if trades:
        conn.execute(sa.insert(TradeRecord.__table__), trades)
    pos = [{"b_sid": w.strategy_id, "updated_time": w.open_time, **w.position} for w in writes if w.position]
    if pos:
        pt = Position.__table__
        conn.execute(
            pt.update()
            .where(pt.c.strategy_id == sa.bindparam("b_sid"))
            .values(**{k: sa.bindparam(k) for k in pos[0] if k != "b_sid"}),
            pos,
        )
    sig = [{"b_sid": w.strategy_id, "b_sig": w.last_signal} for w in writes if w.last_signal]
    if sig:
        # the history (the gateway's user@signals); its unique (strategy, candle) key makes a
        # replayed candle an IntegrityError, like its orders and fills
        conn.execute(
            sa.insert(SignalRecord.__table__),
            [{"strategy_id": w.strategy_id, "user_id": w.user_id, "open_time": w.open_time, "name": w.last_signal,
              "created_at": now} for w in writes if w.last_signal],
        )  # fmt: skip
        st = StrategyRecord.__table__
        conn.execute(st.update().where(st.c.id == sa.bindparam("b_sid")).values(last_signal=sa.bindparam("b_sig")),
                     sig)  # fmt: skip
