"""A user's trades, fills, positions and equity as DataFrames. Every function takes the user.

:func:`list` returns the backtest's ``.trades`` columns (``kit.broker.TRADE_COLUMNS``: times
are the open times of the candles the fills happened on, UTC; exit reason, duration, return,
excursions) plus ``strategy_id``, so a live strategy's trades compare one to one with
``kit.backtest.run``, an open position included as a row with ``exit_reason="open"``.
"""

from __future__ import annotations

import builtins
from typing import Any

import pandas as pd
import sqlalchemy as sa

from kit.broker import BrokerState, finish_trades, open_trade
from kit.store import strategies as _strategies
from kit.store._scope import user_id
from kit.store._store import Store
from kit.store.models import Checkpoint, FillRecord, Order, Position, StrategyRecord, TradeRecord, User

#: What the ledger stores per trade (``kit.broker.STORED_COLUMNS``); :func:`list` adds the derived
#: columns of ``kit.broker.TRADE_COLUMNS``.
STORED_COLUMNS = (
    "entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "pnl", "fees", "exit_reason", "mae", "mfe",
)  # fmt: skip


def _frame(rows: builtins.list[Any], columns: builtins.list[str], times: tuple[str, ...] = ()) -> Any:
    df = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    for col in times:
        df[col] = pd.to_datetime(df[col].astype("int64") if len(df) else df[col], unit="ms", utc=True)
    for col in ("size", "entry_price", "exit_price", "pnl", "fees", "price", "fee", "cash", "equity", "mae", "mfe"):
        if col in df:
            df[col] = df[col].astype("float64")
    return df


def _scope(store: Store, user: User | str, strategy_id: int | None) -> tuple[int, int | None]:
    uid = user_id(store, user)
    if strategy_id is not None:
        _strategies.get(store, user, strategy_id)  # NotFound if it is not this user's
        strategy_id = int(strategy_id)
    return uid, strategy_id


def list(store: Store, user: User | str, strategy_id: int | None = None, *, include_open: bool = True) -> Any:
    """``user``'s trades (optionally of one strategy), oldest exit first per strategy: a DataFrame.

    With ``include_open`` a strategy's open position is its last row, ``exit_reason="open"``:
    valued (``exit_time``, ``exit_price``, unrealised ``pnl``, excursions) at the close of the
    last candle whose processing the ledger recorded a change for (a fill, a signal waiting for
    the next open, a new high or low of the trade), which may be older than the checkpoint.
    """
    uid, sid = _scope(store, user, strategy_id)
    t = TradeRecord
    q = sa.select(*(getattr(t, c) for c in STORED_COLUMNS), t.strategy_id).where(t.user_id == uid)
    if sid is not None:
        q = q.where(t.strategy_id == sid)
    q = q.order_by(t.strategy_id, t.exit_time, t.seq)
    with store.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(q).all()]
        if include_open:
            c = Checkpoint
            cq = sa.select(c.strategy_id, c.broker_state).where(c.user_id == uid)
            if sid is not None:
                cq = cq.where(c.strategy_id == sid)
            for strategy, state in conn.execute(cq).all():
                try:
                    tr = open_trade(BrokerState.from_dict(dict(state))) if state else None
                except (TypeError, ValueError):  # not a broker's state (hand-written rows): no open row
                    tr = None
                if tr is not None:
                    rows.append((*tr, strategy))
    rows.sort(key=lambda r: r[-1])  # stable: each strategy's closed trades, then its open one
    df = _frame(rows, [*STORED_COLUMNS, "strategy_id"], ("entry_time", "exit_time"))
    return finish_trades(df)


def fills(store: Store, user: User | str, strategy_id: int | None = None, *, limit: int | None = None) -> Any:
    """``user``'s fills (newest last); ``limit`` keeps only the most recent ones."""
    uid, sid = _scope(store, user, strategy_id)
    f = FillRecord
    q = sa.select(f.strategy_id, f.open_time, f.seq, f.side, f.size, f.price, f.fee).where(f.user_id == uid)
    if sid is not None:
        q = q.where(f.strategy_id == sid)
    q = q.order_by(f.open_time.desc(), f.strategy_id.desc(), f.seq.desc())
    if limit is not None:
        q = q.limit(int(limit))
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()[::-1]
    return _frame(rows, ["strategy_id", "time", "seq", "side", "size", "price", "fee"], ("time",))


def orders(store: Store, user: User | str, strategy_id: int | None = None, *, limit: int | None = None) -> Any:
    """``user``'s orders (newest last)."""
    uid, sid = _scope(store, user, strategy_id)
    o = Order
    q = sa.select(o.strategy_id, o.open_time, o.seq, o.side, o.size, o.reason).where(o.user_id == uid)
    if sid is not None:
        q = q.where(o.strategy_id == sid)
    q = q.order_by(o.open_time.desc(), o.strategy_id.desc(), o.seq.desc())
    if limit is not None:
        q = q.limit(int(limit))
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()[::-1]
    return _frame(rows, ["strategy_id", "time", "seq", "side", "size", "reason"], ("time",))


def positions(store: Store, user: User | str) -> Any:
    """``user``'s current position per strategy (``size`` signed; 0 when flat)."""
    uid = user_id(store, user)
    p = Position
    q = (
        sa.select(p.strategy_id, StrategyRecord.name, p.symbol, p.size, p.entry_price, p.entry_time, p.cash,
                  p.equity, p.updated_time)
        .join(StrategyRecord, StrategyRecord.id == p.strategy_id)
        .where(p.user_id == uid)
        .order_by(p.strategy_id)
    )  # fmt: skip
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    df = _frame(rows, ["strategy_id", "name", "symbol", "size", "entry_price", "entry_time", "cash", "equity",
                       "updated_time"])  # fmt: skip
    df["entry_time"] = pd.to_datetime(df["entry_time"], unit="ms", utc=True)
    df["updated_time"] = pd.to_datetime(df["updated_time"], unit="ms", utc=True)
    return df


def equity(store: Store, user: User | str, strategy_id: int) -> Any:
    """Realised equity of ``user``'s strategy: ``init_cash`` plus cumulative trade P&L, by exit time.

    A pandas Series indexed by exit time (UTC) and starting with ``init_cash`` (from the
    strategy's broker settings, default 10,000) where trading started: the strategy's
    ``start_time`` (else its promotion time), or its first entry if that is earlier (a replay
    trades in simulated time, before the wall-clock promotion).
    """
    rec = _strategies.get(store, user, strategy_id)
    tr = list(store, user, strategy_id, include_open=False)
    init = float(rec.broker.get("init_cash", 10_000.0))
    if rec.start_time is not None:
        start = pd.Timestamp(rec.start_time, unit="ms", tz="UTC")
    else:
        start = pd.Timestamp(rec.promoted_at, tz="UTC")
    if len(tr):
        start = min(start, tr["entry_time"].min())
    idx = pd.DatetimeIndex([start, *tr["exit_time"]], name="time")
    values = [init, *(init + tr["pnl"].cumsum()).tolist()]
    return pd.Series(values, index=idx, name="equity", dtype="float64")
