"""Persistence for users, their promoted strategies and the daemon's ledger (SQLModel + Alembic).

    from kit.store import Store, users, strategies, trades
    store = Store()            # KIT_DATABASE_URL, default SQLite (WAL) under KIT_DATA_DIR
    store.migrate()            # alembic upgrade head
    alice = users.add(store, "alice", "s3cret")
    strategies.list(store, alice); trades.list(store, alice)

User scoping lives here, in the data layer: every function that reads or writes a user's
data takes the user and never returns another user's rows; someone else's strategy id is
:class:`NotFound`, exactly like a missing one. An administrator acts on other users'
strategies only through :mod:`kit.store.admin`, which checks the actor's role.
"""

from kit.store import admin, alerts, events, keys, leases, ledger, live, strategies, trades, users
from kit.store._scope import NotFound
from kit.store._store import Store
from kit.store.models import (
    ApiKeyRecord,
    Checkpoint,
    Event,
    FillRecord,
    Heartbeat,
    Order,
    Position,
    SignalRecord,
    StrategyRecord,
    TradeRecord,
    User,
)

__all__ = [
    "ApiKeyRecord",
    "Checkpoint",
    "Event",
    "FillRecord",
    "Heartbeat",
    "NotFound",
    "Order",
    "Position",
    "SignalRecord",
    "Store",
    "StrategyRecord",
    "TradeRecord",
    "User",
    "admin",
    "alerts",
    "events",
    "keys",
    "leases",
    "ledger",
    "live",
    "strategies",
    "trades",
    "users",
]
