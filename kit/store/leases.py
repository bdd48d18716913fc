"""Shard leases on PostgreSQL: the rules of :mod:`kit.store._leases` applied under row locks.

Tables: ``shard_leases`` (one row per shard: owner, fencing token, expiry, when acquired),
``shard_daemons`` (each daemon's last sign of life: who counts when sharing out) and
``shard_lease_log`` (every acquisition and release, the history a handover is audited from).
Times are the server's clock, ``extract(epoch from clock_timestamp())``.

Concurrency: ``(shard, token)`` is a unique key. A ledger write locks its shards' rows
``FOR KEY SHARE`` and compares owner and token (:func:`check_fence`) in the same transaction.
Changing the token (a takeover) needs ``FOR UPDATE``, which conflicts with that lock: a takeover
never lands between a write's check and its commit, and a write after a takeover is refused.
Renewing and releasing leave the token alone (``FOR NO KEY UPDATE``), so a daemon renews its
leases while its own writer is busy on them. :func:`tick` takes rows ``FOR UPDATE SKIP LOCKED``
(a row whose owner is writing is in use, not free), waiting at most ``lock_timeout`` elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from kit.errors import ConfigError, KitError
from kit.store._leases import Lease, acquire, plan, release, renew, shard_of
from kit.store._store import Store

log = logging.getLogger(__name__)

#: Daemons not seen for this long are forgotten (their rows only help sharing out).
FORGET_AFTER_S = 3600.0


class ShardLease(SQLModel, table=True):
    """One shard's lease: ``owner`` None when free; ``token`` only grows."""

    __tablename__ = "shard_leases"
    __table_args__ = (sa.UniqueConstraint("shard", "token", name="uq_shard_leases_token"),)
    shard: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True, autoincrement=False))
    owner: str | None = Field(default=None, sa_column=sa.Column(sa.String(128), nullable=True))
    token: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    expires: float = Field(sa_column=sa.Column(sa.Float, nullable=False))
    acquired: float = Field(sa_column=sa.Column(sa.Float, nullable=False))


class ShardDaemon(SQLModel, table=True):
    """A daemon taking part in sharing (``seen``: its last lease round)."""

    __tablename__ = "shard_daemons"
    owner: str = Field(sa_column=sa.Column(sa.String(128), primary_key=True))
    seen: float = Field(sa_column=sa.Column(sa.Float, nullable=False))


class ShardLeaseLog(SQLModel, table=True):
    """One acquisition (``acquired``, or ``took_over`` an expired lease of ``previous``) or ``released``."""

    __tablename__ = "shard_lease_log"
    id: int | None = Field(default=None, primary_key=True)
    at: float = Field(sa_column=sa.Column(sa.Float, nullable=False))
    shard: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, index=True))
    owner: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    token: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    action: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    previous: str | None = Field(default=None, sa_column=sa.Column(sa.String(128), nullable=True))


class FencingError(KitError):
    """A ledger write carried a lease token that is no longer its shard's current one."""

    def __init__(self, shards: Iterable[int]) -> None:
        self.shards = tuple(sorted(set(shards)))
        super().__init__(f"shards {list(self.shards)} are no longer held by this daemon: their writes were refused")


@dataclass(frozen=True, slots=True)
class Fence:
    """What a writer holds: ``owner``'s token per shard, out of ``n`` shards."""

    owner: str
    n: int
    tokens: Mapping[int, int] = field(default_factory=dict)

    def shard(self, strategy_id: int) -> int:
        return shard_of(strategy_id, self.n)


@dataclass(frozen=True, slots=True)
class Tick:
    """One lease round's outcome for a daemon: what it holds now and what changed."""

    now: float
    held: dict[int, Lease]
    taken: tuple[int, ...]
    lost: tuple[int, ...]
    given: tuple[int, ...]
    live: tuple[str, ...]
    share: int


def require_postgresql(store: Store) -> None:
    """Sharding needs PostgreSQL's row locks: a one-line :class:`ConfigError` otherwise."""
    if store.dialect != "postgresql":
        raise ConfigError(f"sharded daemons need PostgreSQL (KIT_SHARDS is set, the database is {store.dialect})")


def _now(conn: sa.Connection) -> float:
    return float(conn.execute(sa.text("SELECT extract(epoch from clock_timestamp())::float8")).scalar_one())


_COLS = "shard, owner, token, expires"


def _leases(conn: sa.Connection, where: str, lock: str, **params: object) -> list[Lease]:
    rows = conn.execute(sa.text(f"SELECT {_COLS} FROM shard_leases {where} ORDER BY shard {lock}"), params).all()
    return [Lease(int(r.shard), r.owner, int(r.token), float(r.expires)) for r in rows]


def _put(conn: sa.Connection, lease: Lease, *, acquired: float | None = None) -> None:
    extra = ", acquired = :acq" if acquired is not None else ""
    conn.execute(
        sa.text(f"UPDATE shard_leases SET owner = :o, token = :t, expires = :e{extra} WHERE shard = :s"),
        {"o": lease.owner, "t": lease.token, "e": lease.expires, "s": lease.shard, "acq": acquired},
    )


def _log(conn: sa.Connection, now: float, lease: Lease, owner: str, action: str, previous: str | None) -> None:
    conn.execute(
        sa.insert(ShardLeaseLog.__table__),
        {"at": now, "shard": lease.shard, "owner": owner, "token": lease.token, "action": action, "previous": previous},
    )


def bound_idle_transactions(store: Store, seconds: float) -> None:
    """Make the server end any transaction of ``store``'s connections left idle for ``seconds``.

    A daemon paused (SIGSTOP, a long GC) in the middle of a ledger write holds its shards' rows
    locked; without this bound no other daemon could take them over until it woke up. Applies
    to connections opened from now on (call it before the first query).
    """
    require_postgresql(store)
    ms = max(1, int(seconds * 1000))

    def _on_connect(dbapi_conn: object, _record: object) -> None:
        cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
        cur.execute(f"SET idle_in_transaction_session_timeout = {ms}")
        cur.close()
        dbapi_conn.commit()  # type: ignore[attr-defined]

    sa.event.listen(store.engine, "connect", _on_connect)


def setup(store: Store, n: int) -> None:
    """Create the ``n`` lease rows if none exist; refuse a database already split another way.

    The number of shards is fixed per database: changing it while strategies are assigned would
    give one strategy two owners.
    """
    require_postgresql(store)
    if n < 1:
        raise ConfigError(f"KIT_SHARDS must be >= 1, got {n}")
    with store.begin() as conn:
        conn.execute(sa.text("LOCK TABLE shard_leases IN SHARE ROW EXCLUSIVE MODE"))
        have = conn.execute(sa.text("SELECT count(*) FROM shard_leases")).scalar_one()
        if have == 0:
            conn.execute(
                sa.insert(ShardLease.__table__),
                [{"shard": i, "owner": None, "token": 0, "expires": 0.0, "acquired": 0.0} for i in range(n)],
            )
        elif have != n:
            raise ConfigError(
                f"this database is split into {have} shards but KIT_SHARDS is {n}: stop every daemon and "
                f"start them all with KIT_SHARDS={have}"
            )


def tick(store: Store, me: str, holding: Mapping[int, int], ttl: float, lock_timeout_s: float) -> Tick:
    """One lease round for daemon ``me`` holding ``holding`` (shard -> token), in one transaction.

    Renews what ``me`` still holds; frees its rows that it no longer acts for (lost locally,
    given up in the round before, or expired); gives up shards beyond its fair share (``given``:
    the daemon stops acting for them, the next round frees them); takes free or expired shards
    up to it.
    """
    require_postgresql(store)
    with store.begin() as conn:
        conn.execute(sa.text(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'"))
        now = _now(conn)
        conn.execute(
            sa.text("INSERT INTO shard_daemons (owner, seen) VALUES (:o, :n) "
                    "ON CONFLICT (owner) DO UPDATE SET seen = excluded.seen"),
            {"o": me, "n": now},
        )  # fmt: skip
        conn.execute(sa.text("DELETE FROM shard_daemons WHERE seen < :old"), {"old": now - FORGET_AFTER_S})
        alive = sa.text("SELECT owner FROM shard_daemons WHERE seen > :t ORDER BY owner")
        live = tuple(conn.execute(alive, {"t": now - ttl}).scalars())
        rows = {lease.shard: lease for lease in _leases(conn, "", "")}
        held: dict[int, Lease] = {}
        lost: list[int] = [s for s in holding if s not in rows or rows[s].owner != me]
        for lease in _leases(conn, "WHERE owner = :me", "FOR NO KEY UPDATE", me=me):
            token = holding.get(lease.shard)
            new = None if token is None else renew(lease, me, token, now, ttl)
            if new is None:  # not acting for it (or expired): free it, the next owner draws a new token
                freed = release(lease, me, lease.token, now)
                assert freed is not None
                _put(conn, freed)
                _log(conn, now, freed, me, "released", None)
                rows[lease.shard] = freed
                if token is not None:
                    lost.append(lease.shard)
            else:
                _put(conn, new)
                rows[lease.shard] = held[lease.shard] = new
        p = plan(list(rows.values()), me, live, now)
        for s in p.give:
            # Not released yet: the daemon stops acting for it now, and the next round frees it
            # (no longer held by the daemon), by when its writer has committed what it queued.
            held.pop(s)
        taken = []
        if p.take:
            for lease in _leases(conn, "WHERE shard = ANY(:s)", "FOR UPDATE SKIP LOCKED", s=list(p.take)):
                new = acquire(lease, me, now, ttl)
                if new is None or lease.held_by(me, now):
                    continue
                _put(conn, new, acquired=now)
                took = lease.owner is not None and lease.owner != me
                _log(conn, now, new, me, "took_over" if took else "acquired", lease.owner)
                held[new.shard] = new
                taken.append(new.shard)
        return Tick(now, held, tuple(taken), tuple(sorted(set(lost))), p.give, live, p.share)


def release_all(store: Store, me: str, holding: Mapping[int, int]) -> list[int]:
    """Free every lease ``me`` holds with the given tokens at once (a clean stop); returns the shards freed."""
    require_postgresql(store)
    freed = []
    with store.begin() as conn:
        now = _now(conn)
        for lease in _leases(conn, "WHERE owner = :me", "FOR NO KEY UPDATE", me=me):
            token = holding.get(lease.shard, lease.token)
            new = release(lease, me, token, now)
            if new is not None:
                _put(conn, new)
                _log(conn, now, new, me, "released", None)
                freed.append(lease.shard)
        conn.execute(sa.text("DELETE FROM shard_daemons WHERE owner = :o"), {"o": me})
    return freed


def check_fence(conn: sa.Connection, fence: Fence, strategy_ids: Iterable[int]) -> None:
    """Inside a ledger transaction: lock the shards of ``strategy_ids`` ``FOR KEY SHARE`` and raise
    :class:`FencingError` naming those ``fence`` no longer holds (another owner or a newer token)."""
    shards = sorted({fence.shard(sid) for sid in strategy_ids})
    if not shards:
        return
    lost = {s for s in shards if s not in fence.tokens}
    rows = conn.execute(
        sa.text("SELECT shard, owner, token FROM shard_leases WHERE shard = ANY(:s) ORDER BY shard FOR KEY SHARE"),
        {"s": shards},
    ).all()
    seen = {int(r.shard) for r in rows}
    lost |= set(shards) - seen
    lost |= {int(r.shard) for r in rows if r.owner != fence.owner or int(r.token) != fence.tokens.get(int(r.shard))}
    if lost:
        raise FencingError(lost)


def history(store: Store) -> list[dict[str, object]]:
    """The lease log, oldest first (for audits and tests)."""
    with store.begin() as conn:
        rows = conn.execute(sa.text("SELECT at, shard, owner, token, action, previous FROM shard_lease_log "
                                    "ORDER BY id")).mappings().all()  # fmt: skip
    return [dict(r) for r in rows]


def leases(store: Store) -> list[dict[str, object]]:
    """Every lease row with the server's clock (``now``), for ``kit`` tools and tests."""
    with store.begin() as conn:
        now = _now(conn)
        rows = conn.execute(sa.text("SELECT shard, owner, token, expires, acquired FROM shard_leases "
                                    "ORDER BY shard")).mappings().all()  # fmt: skip
    return [{**dict(r), "now": now} for r in rows]
