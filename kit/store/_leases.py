"""The lease rules, with no I/O: who may own a shard, and when, decided from the rows and a clock.

A shard is owned through a lease ``(shard, owner, token, expires)``. The SQL in
:mod:`kit.store.leases` reads the rows under a row lock, asks these functions what to do, and
writes the answer in the same transaction. Times are the database server's clock (seconds since
the epoch), so daemons on hosts whose clocks disagree still agree on expiry.

- A lease is *held* while it has an owner and ``now < expires``.
- :func:`acquire` takes a free or expired lease with ``token + 1``: the token only ever grows, so
  every write fenced with an older token is refused (:mod:`kit.store.ledger`).
- :func:`renew` extends a lease only for its owner with its current token, and only before it
  expired: an owner that missed its expiry must acquire again (with a new token).
- :func:`release` clears the owner (keeping the token, so the next owner gets a higher one).
- :func:`plan` balances: each live daemon's fair share, taken from free or expired shards only (a
  held lease is never stolen; its owner gives it up when it is over its share), so no shard is
  ever owned twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from kit.errors import InputError


@dataclass(frozen=True, slots=True)
class Lease:
    """One shard's lease row. ``owner`` None: free."""

    shard: int
    owner: str | None
    token: int
    expires: float

    def __post_init__(self) -> None:
        if self.shard < 0 or self.token < 0:
            raise InputError(f"a lease needs shard >= 0 and token >= 0, got {self.shard}, {self.token}")
        if self.owner is not None and not self.owner:
            raise InputError("a lease's owner is a non-empty name or None")

    def held(self, now: float) -> bool:
        """Owned and not expired at ``now``."""
        return self.owner is not None and now < self.expires

    def held_by(self, me: str, now: float) -> bool:
        return self.owner == me and now < self.expires


def _ttl(ttl: float) -> float:
    if not ttl > 0:
        raise InputError(f"a lease's time must be > 0 seconds, got {ttl!r}")
    return ttl


def acquire(lease: Lease, me: str, now: float, ttl: float) -> Lease | None:
    """``me`` takes ``lease`` if it is free or expired (a new, higher token); None if another holds it.

    Taking one's own expired lease also draws a new token: writes queued under the old one must
    not land after a moment in which nobody held the shard.
    """
    _ttl(ttl)
    if lease.held(now):
        return None if lease.owner != me else replace(lease, expires=now + ttl)
    return Lease(lease.shard, me, lease.token + 1, now + ttl)


def renew(lease: Lease, me: str, token: int, now: float, ttl: float) -> Lease | None:
    """The lease extended to ``now + ttl``, or None: lost (another owner, a newer token, or expired)."""
    _ttl(ttl)
    if lease.owner != me or lease.token != token or now >= lease.expires:
        return None
    return replace(lease, expires=now + ttl)


def release(lease: Lease, me: str, token: int, now: float) -> Lease | None:
    """The lease freed at once, or None if ``me`` no longer holds it with ``token`` (nothing to do)."""
    if lease.owner != me or lease.token != token:
        return None
    return Lease(lease.shard, None, lease.token, now)


def shares(n: int, daemons: Iterable[str]) -> dict[str, int]:
    """How many of ``n`` shards each live daemon should own: ``n // k``, the first ``n % k`` by name one more."""
    names = sorted(set(daemons))
    if not names:
        return {}
    base, extra = divmod(n, len(names))
    return {name: base + (i < extra) for i, name in enumerate(names)}


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``me`` does this round: shards to take (free or expired) and to give up (over its share)."""

    take: tuple[int, ...]
    give: tuple[int, ...]
    share: int


def plan(leases: Sequence[Lease], me: str, live: Iterable[str], now: float) -> Plan:
    """Balance ``leases`` for ``me`` among the ``live`` daemons (``me`` counts as live).

    ``me`` gives up its highest shards beyond its share, and takes the lowest free or expired
    shards up to it. Nothing held by another is ever taken.
    """
    share = shares(len(leases), {*live, me})[me]
    mine = sorted(lease.shard for lease in leases if lease.held_by(me, now))
    if len(mine) > share:
        return Plan((), tuple(mine[share:]), share)
    free = sorted(lease.shard for lease in leases if not lease.held(now))
    return Plan(tuple(free[: share - len(mine)]), (), share)


def shard_of(strategy_id: int, n: int) -> int:
    """The shard a strategy belongs to: its id modulo the number of shards (fixed per database)."""
    if n < 1:
        raise InputError(f"the number of shards must be >= 1, got {n!r}")
    return strategy_id % n
