"""A user's own signals and ledger as streams: ``user@signals``, ``@orders``, ``@fills``, ``@trades``, ``@positions``.

The daemon writes signals, orders, fills, trades and positions in one transaction per candle
(:mod:`kit.store.ledger`); the gateway reads them back by polling the store (one query per
(user, kind) per poll, whatever the number of that user's sockets), always filtered by the
``user_id`` of the socket's token: a stream name never names a user, so no request can reach
another user's rows.

Signals, orders, fills and trades carry their row id as ``seq`` (ids grow in commit order: the daemon is
the one writer); ``since`` resumes after an id. Positions are a snapshot per strategy whose ``seq``
is the candle it was updated on; subscribing sends the current ones (after ``since``), then each
change.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import sqlalchemy as sa

from kit.gateway._fanout import Outbox
from kit.gateway._fault import FaultPlan
from kit.gateway._protocol import dumps
from kit.store.models import FillRecord, Order, Position, SignalRecord, TradeRecord

log = logging.getLogger("kit.gateway.private")

_TABLES: dict[str, tuple[Any, tuple[str, ...]]] = {
    "signals": (SignalRecord, ("strategy_id", "open_time", "name")),
    "orders": (Order, ("strategy_id", "open_time", "seq", "side", "size", "reason")),
    "fills": (FillRecord, ("strategy_id", "open_time", "seq", "side", "size", "price", "fee")),
    "trades": (
        TradeRecord,
        ("strategy_id", "seq", "entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "pnl", "fees"),
    ),
}
_POSITION_COLS = ("strategy_id", "symbol", "size", "entry_price", "entry_time", "cash", "equity", "updated_time")
_BATCH = 1000


def _event(kind: str, seq: int, row: dict[str, Any]) -> str:
    return dumps({"stream": f"user@{kind}", "seq": seq, "data": {"e": kind[:-1], **row}})


class PrivateStreams:
    """Polls the store for the ledger rows of users with open private streams."""

    def __init__(self, store: Any, *, poll_s: float = 1.0, fault: FaultPlan | None = None) -> None:
        self.store = store
        self.fault = fault
        self.poll_s = float(poll_s)
        #: (user_id, kind) -> outbox -> cursor (last id sent; positions: last snapshot sent)
        self._groups: dict[tuple[int, str], dict[Outbox, Any]] = {}

    # -- queries (in worker threads) -------------------------------------------------------------
    def _rows_after(self, user_id: int, kind: str, after: int) -> list[tuple[int, dict[str, Any]]]:
        table, cols = _TABLES[kind]
        q = (
            sa.select(table.id, *(getattr(table, c) for c in cols))
            .where(table.user_id == user_id, table.id > after)
            .order_by(table.id)
            .limit(_BATCH)
        )
        with self.store.engine.connect() as conn:
            return [(int(r[0]), dict(zip(cols, r[1:], strict=True))) for r in conn.execute(q).all()]

    def _last_id(self, user_id: int, kind: str) -> int:
        table, _ = _TABLES[kind]
        with self.store.engine.connect() as conn:
            got = conn.execute(sa.select(sa.func.max(table.id)).where(table.user_id == user_id)).scalar()
        return int(got or 0)

    def _positions(self, user_id: int) -> dict[int, dict[str, Any]]:
        q = sa.select(*(getattr(Position, c) for c in _POSITION_COLS)).where(Position.user_id == user_id)
        with self.store.engine.connect() as conn:
            return {int(r[0]): dict(zip(_POSITION_COLS, r, strict=True)) for r in conn.execute(q).all()}

    # -- subscriptions ---------------------------------------------------------------------------
    async def prepare(self, user_id: int, kind: str, since: int | None) -> tuple[list[str], Any]:
        """The events a new subscriber gets first and its cursor; then :meth:`attach` it (no await between)."""
        if kind == "positions":
            snap = await asyncio.to_thread(self._positions, user_id)
            after = -1 if since is None else since
            events = [
                _event(kind, int(p["updated_time"]), p)
                for p in sorted(snap.values(), key=lambda p: (p["updated_time"], p["strategy_id"]))
                if p["updated_time"] > after
            ]
            return events, snap
        if since is None:
            return [], await asyncio.to_thread(self._last_id, user_id, kind)
        events: list[str] = []
        cursor = since
        while True:  # everything after `since`, page by page
            rows = await asyncio.to_thread(self._rows_after, user_id, kind, cursor)
            events += [_event(kind, i, r) for i, r in rows]
            if rows:
                cursor = rows[-1][0]
            if len(rows) < _BATCH:
                return events, cursor

    def attach(self, user_id: int, kind: str, box: Outbox, cursor: Any) -> None:
        self._groups.setdefault((user_id, kind), {})[box] = cursor

    def detach(self, user_id: int, kind: str, box: Outbox) -> None:
        group = self._groups.get((user_id, kind))
        if group is not None:
            group.pop(box, None)
            if not group:
                del self._groups[(user_id, kind)]

    async def run(self) -> None:
        """Poll forever (a task of the gateway); a failing database is logged and retried, anything
        else ends the task (and the gateway: crash-only)."""
        while True:
            await asyncio.sleep(self.poll_s)
            if self.fault is not None:
                self.fault.check("private")
            for (uid, kind), group in list(self._groups.items()):
                try:
                    await self._poll(uid, kind, group)
                except Exception as exc:
                    log.warning("cannot read private streams", extra={"kind": kind, "error": str(exc)})

    async def _poll(self, uid: int, kind: str, group: dict[Outbox, Any]) -> None:
        if kind == "positions":
            snap = await asyncio.to_thread(self._positions, uid)
            for box, last in list(group.items()):
                for sid, p in sorted(snap.items()):
                    if last.get(sid) != p:
                        box.offer(_event(kind, int(p["updated_time"]), p))
                if box in group:
                    group[box] = snap
            return
        rows = await asyncio.to_thread(self._rows_after, uid, kind, min(group.values(), default=0))
        for box, cursor in list(group.items()):
            fresh = [(i, r) for i, r in rows if i > cursor]
            for i, r in fresh:
                box.offer(_event(kind, i, r))
            if fresh and box in group:
                group[box] = fresh[-1][0]
