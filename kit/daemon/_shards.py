"""This daemon's share of the strategies when several run against one PostgreSQL database.

Strategies map to ``KIT_SHARDS`` shards (strategy id mod N); a daemon runs the strategies of the
shards it holds a lease on (:mod:`kit.store.leases`). Every ``lease/4`` seconds one lease round,
in one transaction, renews what it holds, gives up shards beyond its fair share and takes free
or expired ones up to it. Each held shard has a local deadline, ``lease - margin`` after the
start of the round that last renewed it (the monotonic clock, so a slow or cut database only
makes it earlier): past it the daemon stops acting for the shard whether or not the database
answers, so it has stopped before the lease expires and another daemon may take it.

What it acts under is a :class:`~kit.store.leases.Fence` (owner and token per shard), replaced
whenever it changes; the writer stamps each candle with the current one and the database refuses
a stamp that is out of date (a daemon woken from SIGSTOP after losing its leases writes nothing).
SIGTERM: :meth:`release` frees every lease at once so the others take over without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from kit.store import Store, leases
from kit.store.leases import Fence, Tick, shard_of

log = logging.getLogger("kit.daemon")

_DB_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError)


class Shards:
    """The leases this daemon holds and acts under. ``await run()`` is the supervised lease task."""

    def __init__(
        self,
        store: Store,
        me: str,
        n: int,
        lease: float,
        *,
        gained: Callable[[], Awaitable[Any]],
        lost: Callable[[], Any],
    ) -> None:
        self.store, self.me, self.n, self.lease = store, me, n, lease
        self.renew_every = lease / 4
        self.margin = max(0.5, lease / 5)
        self._gained, self._lost = gained, lost
        # a write left open by a paused daemon must not keep its shards locked past the lease
        leases.bound_idle_transactions(store, lease / 2)
        self._deadline: dict[int, float] = {}  # acting shard -> monotonic time to stop acting
        self._since: dict[int, float] = {}  # acting shard -> monotonic time it was taken
        self.fence = Fence(me, n, {})
        self.rounds = 0
        self.round_failures = 0
        self.taken = 0
        self.lost_count = 0
        self.given = 0
        self.last_round: float | None = None
        self.live: tuple[str, ...] = ()
        self.share = 0

    # ----- what the rest of the daemon asks ----------------------------------------------------

    def owns(self, strategy_id: int) -> bool:
        """Whether this daemon runs ``strategy_id`` now."""
        return shard_of(strategy_id, self.n) in self._deadline

    def current(self) -> Fence:
        """The fence to stamp a candle's writes with."""
        return self.fence

    def fenced(self, shards: tuple[int, ...]) -> None:
        """The database refused writes for ``shards``: another daemon holds them now."""
        dropped = [s for s in shards if s in self._deadline]
        if dropped:
            log.error("lease lost: the database refused writes for these shards; stopping them",
                      extra={"shards": dropped})  # fmt: skip
            self._drop(dropped)

    # ----- the lease rounds ----------------------------------------------------------------------

    async def start(self, run_db: Callable[..., Awaitable[Any]]) -> None:
        """Create the lease rows (or check their number) and take a first share before loading strategies."""
        await run_db(leases.setup, self.store, self.n)
        started = time.monotonic()
        got = await run_db(leases.tick, self.store, self.me, {}, self.lease, self.renew_every)
        self._apply(got, started, notify=False)

    async def run(self) -> None:
        """Every ``renew_every`` seconds a lease round; every 0.2 s the local deadlines."""
        pending: asyncio.Future[Tick] | None = None
        started = next_round = time.monotonic()
        while True:
            now = time.monotonic()
            if self._expire(now):
                self._lost()
            if pending is None and now >= next_round:
                started = now
                holding = dict(self.fence.tokens)
                pending = asyncio.ensure_future(
                    asyncio.to_thread(leases.tick, self.store, self.me, holding, self.lease, self.renew_every)
                )
            if pending is not None and pending.done():
                task, pending = pending, None
                next_round = started + self.renew_every
                try:
                    got = task.result()
                except _DB_ERRORS as exc:  # the deadlines stop the shards if this lasts
                    self.round_failures += 1
                    log.warning("lease round failed", extra={"error": str(exc).splitlines()[0][:200]})
                else:
                    if self._apply(got, started):
                        await self._gained()
            await asyncio.sleep(0.2)

    async def release(self) -> None:
        """Free every lease at once (a clean stop); the others take over without waiting for expiry."""
        tokens = dict(self.fence.tokens)
        self._drop(list(self._deadline))
        try:
            freed = await asyncio.wait_for(asyncio.to_thread(leases.release_all, self.store, self.me, tokens), 5.0)
            log.info("leases released", extra={"shards": freed})
        except Exception as exc:  # they expire on their own
            log.warning("could not release the leases", extra={"error": str(exc).splitlines()[0][:200]})

    def _apply(self, got: Tick, started: float, notify: bool = True) -> bool:
        """Take a round's outcome; returns True when shards were gained (their strategies must start)."""
        self.rounds += 1
        self.last_round = time.monotonic()
        self.live, self.share = got.live, got.share
        deadline = started + self.lease - self.margin
        gone = [s for s in self._deadline if s not in got.held]
        if gone:
            if got.given:
                log.info("shards given to other daemons", extra={"shards": list(got.given)})
            if got.lost:
                log.warning("leases lost", extra={"shards": list(got.lost)})
            self.given += len(got.given)
            self._drop(gone)
            if notify:
                self._lost()
        new = []
        for s in got.held:
            if s in self._deadline:
                self._deadline[s] = deadline
            elif s in got.taken and deadline > time.monotonic():
                self._deadline[s] = deadline
                self._since[s] = started
                new.append(s)
            # else: renewed in the database but not acted for here (it expired locally meanwhile):
            # the next round frees it, and takes it again with a new token if it is still our share
        self.fence = Fence(self.me, self.n, {s: got.held[s].token for s in self._deadline})
        if new:
            self.taken += len(new)
            log.info("shards taken", extra={"shards": new, "tokens": [got.held[s].token for s in new]})
        return bool(new)

    def _expire(self, now: float) -> bool:
        late = [s for s, d in self._deadline.items() if now >= d]
        if late:
            log.warning("lease not renewed in time: stopping these shards before it expires",
                        extra={"shards": late})  # fmt: skip
            self._drop(late)
        return bool(late)

    def _drop(self, shards: list[int]) -> None:
        for s in shards:
            if self._deadline.pop(s, None) is not None:
                self.lost_count += 1
            self._since.pop(s, None)
        self.fence = Fence(self.me, self.n, {s: t for s, t in self.fence.tokens.items() if s in self._deadline})

    # ----- reports -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """``/status.shards``: what this daemon holds, for how long, and the handovers it saw."""
        now = time.monotonic()
        return {
            "shards": self.n,
            "lease_s": self.lease,
            "owned": sorted(self._deadline),
            "tokens": {str(s): t for s, t in sorted(self.fence.tokens.items())},
            "held_for_s": {str(s): round(now - t, 1) for s, t in sorted(self._since.items())},
            "renew_in_s": {str(s): round(d - now, 1) for s, d in sorted(self._deadline.items())},
            "share": self.share,
            "daemons": list(self.live),
            "taken": self.taken,
            "dropped": self.lost_count,
            "given": self.given,
            "rounds": self.rounds,
            "round_failures": self.round_failures,
            "last_round_s": None if self.last_round is None else round(now - self.last_round, 1),
        }
