"""One account's live orders, by client order id: routes the exchange's messages to them. No I/O.

The daemon's live path keeps one :class:`Tracker` per exchange account, adds each committed
intent, feeds it what the exchange says, commits every order :meth:`Tracker.apply` returns,
and runs :meth:`Tracker.commands`. Across the account it guarantees what one order cannot see
by itself: a client order id is used once, and a trade id (unique per symbol on Binance)
belongs to one order only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kit.orders._binance import client_id_of_report, events_from_execution_report
from kit.orders._machine import Command, Event, IllegalTransition, Order, Trade, apply, next_command


class Tracker:
    """An account's orders; mutable, single-threaded (the daemon's event loop)."""

    def __init__(self, orders: Iterable[Order] = ()) -> None:
        self._orders: dict[str, Order] = {}
        self._trade_owner: dict[tuple[str, int], str] = {}  # (symbol, trade id) -> client id
        self.foreign_reports = 0  # reports about orders that are not kit's (placed by hand, another tool)
        for o in orders:
            self.add(o)

    def __len__(self) -> int:
        return len(self._orders)

    def get(self, client_id: str) -> Order | None:
        return self._orders.get(client_id)

    def orders(self) -> list[Order]:
        return list(self._orders.values())

    def add(self, order: Order) -> None:
        """Track ``order`` (a new intent, or one loaded at a restart). A client id is never reused."""
        if order.client_id in self._orders:
            raise ValueError(f"client order id {order.client_id} is already used by an order of this account")
        for tid in order.trade_ids:
            self._own(order, tid)
        self._orders[order.client_id] = order

    def apply(self, client_id: str, event: Event) -> Order:
        """Apply ``event`` to the order ``client_id`` and keep the result (commit it, then act on it)."""
        order = self._orders.get(client_id)
        if order is None:
            raise KeyError(f"no order {client_id} in this account")
        if isinstance(event, Trade):
            owner = self._trade_owner.get((order.symbol, event.trade_id))
            if owner is not None and owner != client_id:
                raise IllegalTransition(f"trade {event.trade_id} of {order.symbol} is already order {owner}'s, "
                                        f"not {client_id}'s")  # fmt: skip
        new = apply(order, event)
        if isinstance(event, Trade):
            self._own(new, event.trade_id)
        self._orders[client_id] = new
        return new

    def on_execution_report(self, msg: dict[str, Any]) -> Order | None:
        """Apply a user data stream ``executionReport``; None when the order is not kit's."""
        cid = client_id_of_report(msg)
        if cid not in self._orders:
            self.foreign_reports += 1
            return None
        order = self._orders[cid]
        for ev in events_from_execution_report(msg):
            order = self.apply(cid, ev)
        return order

    def commands(self) -> list[Command]:
        """What to do now for every order that needs something (place, query, cancel, fetch trades)."""
        return [c for o in self._orders.values() if (c := next_command(o)) is not None]

    def _own(self, order: Order, trade_id: int) -> None:
        self._trade_owner[(order.symbol, trade_id)] = order.client_id
