"""The strategy reconciler: keeps the book in step with the strategies table.

At start it loads every strategy and starts the active ones from their checkpoints; then every
``poll_every`` seconds it compares the table's versions with what it knows and applies each change
(a promotion, new parameters, switched off, demoted, removed) without touching the feed's
connection. It is also where the daemon's verdicts on strategies are decided and recorded: a
strategy that cannot load (state ``error``), one paused after repeated failures or by the
crash-loop guard (state ``paused``), one whose evaluations are failing now. Those verdicts are
what ``/ready`` (``degraded``), ``/status`` and the admin page report.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from kit.broker import BrokerState, FillModel
from kit.daemon._book import Book, describe
from kit.daemon._guard import Verdict
from kit.daemon._live import LiveDesk
from kit.daemon._records import Failure, Member
from kit.daemon._streams import Streams
from kit.daemon._writer import RunDb, Writer
from kit.errors import ConfigError
from kit.store import Store, events, ledger, strategies, users
from kit.store.models import Checkpoint, StrategyRecord
from kit.strategy import check_module_allowed

log = logging.getLogger("kit.daemon")

#: Why the crash-loop guard paused a strategy (its ``last_error`` and the event's message).
GUARD_PAUSE = ("paused: the daemon process died twice in a row while evaluating this strategy (a crash in "
               "native code, memory exhaustion or os.abort()); the other strategies resumed")  # fmt: skip


class Known(NamedTuple):
    """What the daemon last saw of a strategy row (``state`` is "off" when switched off)."""

    user_id: int
    state: str
    version: int


@dataclass(slots=True)
class Problem:
    """A strategy that is switched on but does not run, and why."""

    id: int
    user: str
    name: str
    state: str  # error (cannot load) or paused
    error: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load_running(store: Store) -> tuple[list[StrategyRecord], dict[int, Checkpoint], dict[int, str]]:
    recs = strategies.list_all_for_daemon(store, active_only=False)
    return recs, ledger.load_checkpoints(store), {u.id: u.name for u in users.list(store)}


def _prepare(store: Store, rec: StrategyRecord, default_start: int) -> Checkpoint:
    """The checkpoint to resume ``rec`` from, creating it (flat, full cash) the first time."""
    model = FillModel(**rec.broker) if rec.broker else FillModel()
    start = rec.start_time if rec.start_time is not None else default_start
    state = BrokerState(cash=model.init_cash).to_dict()
    flat = {"size": 0.0, "cash": model.init_cash, "equity": model.init_cash}
    return ledger.ensure_checkpoint(store, rec, int(start) - 1, state, flat)


class Reconciler:
    """The strategies the daemon knows, and the verdicts on them."""

    def __init__(
        self,
        store: Store,
        book: Book,
        writer: Writer,
        streams: Streams,
        run_db: RunDb,
        server_now: Callable[[], Awaitable[int]],
        counts: Counter[str],
        strategy_modules: tuple[str, ...] = (),
    ) -> None:
        self.store = store
        self.book = book
        self._writer = writer
        self._streams = streams
        self._run_db = run_db
        self._server_now = server_now
        self._counts = counts
        self._strategy_modules = strategy_modules  # KIT_STRATEGY_MODULES: what may be imported
        self.known: dict[int, Known] = {}
        self.user_names: dict[int, str] = {}
        self.problems: dict[int, Problem] = {}
        self._failing: dict[int, str] = {}  # running strategies whose last evaluation failed -> error
        #: The daemon's live desk (real orders for live strategies), set by the daemon; without one a
        #: live strategy is refused, never paper-traded.
        self.live: LiveDesk | None = None
        #: Whether this daemon runs a strategy (sharded daemons: its shard is held); others are unknown here.
        self.owns: Callable[[int], bool] = lambda _sid: True

    # ----- start and poll --------------------------------------------------------------------

    async def load(self, guard: Verdict) -> None:
        """Start every active strategy from its checkpoint, apply the crash-loop guard's verdict,
        subscribe the streams."""
        recs, cps, self.user_names = await self._run_db(_load_running, self.store)
        now = await self._server_now()
        await self._start_all([r for r in recs if self.owns(r.id)], cps, now)
        self._apply_guard(guard)
        self._streams.sync(now)

    async def _start_all(self, recs: list[StrategyRecord], cps: dict[int, Checkpoint], now: int) -> None:
        for rec in recs:
            self.known[rec.id] = Known(rec.user_id, rec.state if rec.active else "off", rec.version)
            if rec.active and rec.state == "active":
                await self._start(rec, cps.get(rec.id), now)
            elif rec.active:
                self._note(rec.id, rec.user_id, rec.name, rec.state, rec.last_error)

    async def gain(self) -> int:
        """Start the strategies of shards just taken over, from their checkpoints, replaying what they
        missed (exactly as after a restart); returns how many strategies were added."""
        recs, cps, self.user_names = await self._run_db(_load_running, self.store)
        new = [r for r in recs if r.id not in self.known and self.owns(r.id)]
        now = await self._server_now()
        # Their streams may be running here already: rebuilt, so they are replayed from the oldest checkpoint.
        for skey in {(r.symbol, r.interval) for r in new if r.active and r.state == "active"}:
            self.book.rebuild(skey)
        await self._start_all(new, cps, now)
        self._streams.sync(now)
        return len(new)

    def lose(self) -> list[int]:
        """Stop at once every strategy this daemon no longer owns (a shard lost or given up)."""
        gone = [sid for sid in self.known if not self.owns(sid)]
        for sid in gone:
            self.known.pop(sid, None)
            self.problems.pop(sid, None)
            self._failing.pop(sid, None)
            self.book.remove(sid)
        if gone:
            self._streams.prune()
        return gone

    async def poll(self) -> None:
        """Apply whatever changed in the strategies table since the last poll."""
        versions = await self._run_db(strategies.versions_for_daemon, self.store)
        gone = [sid for sid in self.known if sid not in versions]
        for sid in gone:
            self._forget(sid)
        if gone:
            self._streams.prune()  # a deleted row may have been the last on its stream
        changed = [sid for sid, (v, _a) in versions.items()
                   if self.owns(sid) and (sid not in self.known or self.known[sid].version != v)]  # fmt: skip
        if not changed:
            return
        recs = {r.id: r for r in await self._run_db(strategies.list_all_for_daemon, self.store, active_only=False)}
        if any(r.user_id not in self.user_names for r in recs.values()):
            self.user_names = {u.id: u.name for u in await self._run_db(users.list, self.store)}
        now = await self._server_now()
        for sid in changed:
            if sid in recs:
                await self._apply(recs[sid], now)
        self._streams.sync(now)

    def _forget(self, sid: int) -> None:
        """A row deleted from the table."""
        self.known.pop(sid, None)
        self.problems.pop(sid, None)
        self._failing.pop(sid, None)
        if self.book.remove(sid) is not None:
            log.info("strategy removed", extra={"strategy_id": sid})
        if self.live is not None:
            self.live.remove(sid)

    async def _apply(self, rec: StrategyRecord, now: int) -> None:
        """One changed row: stop it, note why it cannot run, or (re)start it."""
        sid = rec.id
        old = self.book.members.get(sid)
        self.known[sid] = Known(rec.user_id, rec.state if rec.active else "off", rec.version)
        self._failing.pop(sid, None)
        if rec.active and rec.state != "active":
            self._note(sid, rec.user_id, rec.name, rec.state, rec.last_error)
        else:
            self.problems.pop(sid, None)
        if not rec.active or rec.state != "active":
            if old is not None:
                self.book.remove(sid)
                if self.live is not None:
                    self.live.remove(sid)
                log.info("strategy stopped", extra={"strategy_id": sid, "version": rec.version})
            return
        same_stream = old is not None and (rec.symbol, rec.interval) == self.book.stream_of(sid)
        await self._start(rec, None, now, carry=old if same_stream else None)
        if sid in self.book.members:
            log.info("strategy started", extra={"strategy_id": sid, "version": rec.version, "strategy": rec.name})

    async def _start(self, rec: StrategyRecord, cp: Checkpoint | None, now: int, carry: Member | None = None) -> None:
        if rec.mode == "live" and self.live is None:
            self.book.remove(rec.id)
            await self._refuse(rec, "paused", "live orders need the daemon's live desk", "strategy_paused", "error")
            return
        try:
            check_module_allowed(rec.class_path, self._strategy_modules)
        except ConfigError as exc:
            # Before importing anything: importing the class is what would run its code here.
            log.error("strategy refused", extra={"strategy_id": rec.id, "path": rec.class_path})
            self.book.remove(rec.id)  # a running version of it stops too
            await self._refuse(rec, "paused", f"refused, not imported: {exc}", "strategy_refused", "error")
            return
        try:
            if carry is not None:  # a new version of a running strategy: keep its live state
                checkpoint, state = carry.checkpoint, carry.broker.state.to_dict()
            else:
                if cp is None:
                    cp = await self._run_db(_prepare, self.store, rec, now)
                checkpoint, state = cp.last_open_time, cp.broker_state
            self.book.add(rec, checkpoint, state)
            self.problems.pop(rec.id, None)
            self._failing.pop(rec.id, None)
            if self.live is not None and rec.mode == "live":  # its orders: the live desk, once reconciled
                self.live.add(rec, self.user_names.get(rec.user_id, ""))
        except Exception as exc:
            msg = describe(exc)
            log.error("strategy cannot start", extra={"strategy_id": rec.id, "error": msg[:300]})
            await self._refuse(rec, "error", msg, "strategy_error", "error")

    async def _refuse(self, rec: StrategyRecord, state: str, why: str, kind: str, level: str) -> None:
        """Record that ``rec`` does not run: ``state`` with ``why`` in the table, the admin page and an event."""
        self.known[rec.id] = Known(rec.user_id, state, rec.version)
        self._note(rec.id, rec.user_id, rec.name, state, why)
        await self._run_db(strategies.set_state_for_daemon, self.store, rec.id, state, last_error=why)
        self._writer.op(events.record, self.store, kind, why, level=level, strategy_id=rec.id, user_id=rec.user_id)

    def _note(self, sid: int, uid: int, name: str, state: str, error: str | None) -> None:
        self.problems[sid] = Problem(sid, self.user_names.get(uid, str(uid)), name, state, error or "")

    # ----- verdicts ----------------------------------------------------------------------------

    def pause_live(self, sid: int, why: str) -> None:
        """The live desk's verdict: pause live strategy ``sid`` (no keys, a mismatch with the exchange)."""
        m = self.book.members.get(sid)
        if m is None:
            return
        log.error("live strategy paused", extra={"strategy_id": sid, "error": why[:300]})
        self._pause(m, why, "error", f"live strategy paused: {why}")
        self._streams.prune()

    def _pause(self, m: Member, error: str, level: str, message: str) -> None:
        """Stop running ``m`` and record state ``paused`` with ``error`` (the writer, in order)."""
        self.book.remove(m.id)
        if self.live is not None:
            self.live.remove(m.id)
        self._failing.pop(m.id, None)
        self._note(m.id, m.user_id, m.name, "paused", error)
        self.known[m.id] = Known(m.user_id, "paused", m.version)
        self._counts["strategies_paused"] += 1
        self._writer.op(strategies.set_state_for_daemon, self.store, m.id, "paused", failures=m.failures,
                        last_error=error)  # fmt: skip
        self._writer.op(events.record, self.store, "strategy_paused", message, level=level, strategy_id=m.id,
                        user_id=m.user_id)  # fmt: skip

    def _apply_guard(self, v: Verdict) -> None:
        """After a crash inside an evaluation: note the suspect, or pause it at the second crash."""
        if not v.in_hand:
            return
        members = [m for s in self.book.streams.values() for g in s.groups.values() if g.gid == v.in_hand
                   for m in g.members.values()]  # fmt: skip
        ids = sorted(m.id for m in members)
        if not v.pause:
            msg = (f"the last daemon process died while evaluating strategies {ids}; they are paused if "
                   "that happens again")  # fmt: skip
            log.warning(msg, extra={"group": v.in_hand})
            self._writer.op(events.record, self.store, "crash_suspect", msg, level="warning")
            return
        log.error("pausing strategies the daemon died in twice", extra={"strategies": ids, "group": v.in_hand})
        for m in members:
            self._pause(m, GUARD_PAUSE, "error", GUARD_PAUSE)

    def on_failure(self, f: Failure) -> None:
        """A group's failed evaluation: record it for each member, pause those at the limit."""
        self._counts["strategy_failures"] += len(f.group.members)
        log.warning("strategy failed", extra={"strategy": repr(f.group.strategy), "members": len(f.group.members),
                                               "error": f.error[:300]})  # fmt: skip
        for m in list(f.group.members.values()):
            if m in f.paused:
                self._pause(m, f.error, "warning", f"paused after {m.failures} failures: {f.error}")
                log.warning("strategy paused", extra={"strategy_id": m.id, "failures": m.failures})
            else:
                self._failing[m.id] = f.error
                self._writer.op(strategies.set_state_for_daemon, self.store, m.id, "active", failures=m.failures,
                                last_error=f.error)  # fmt: skip
                self._writer.op(events.record, self.store, "strategy_failed", f.error, level="warning",
                                strategy_id=m.id, user_id=m.user_id)  # fmt: skip
        self._streams.prune()  # every strategy of a stream paused: unsubscribe

    # ----- reports -----------------------------------------------------------------------------

    def failing(self) -> dict[int, str]:
        """Running strategies whose last evaluation failed -> its error (recovered ones drop out)."""
        for sid in list(self._failing):
            m = self.book.members.get(sid)
            if m is None or m.failures == 0:
                del self._failing[sid]  # paused, removed or recovered
        return dict(self._failing)

    def failing_reasons(self) -> list[str]:
        out = []
        for sid, err in self.failing().items():
            m = self.book.members[sid]
            out.append(f"strategy {sid} ({self.user_names.get(m.user_id, m.user_id)}/{m.name}) "
                       f"({m.failures} in a row): {err}")  # fmt: skip
        return out

    def cannot_load_reasons(self) -> list[str]:
        return [f"strategy {p.id} ({p.user}/{p.name}): {p.error}" for p in self.problems.values() if p.state == "error"]

    def by_user(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for sid, k in self.known.items():
            if k.state == "off":
                continue
            d = out.setdefault(self.user_names.get(k.user_id, str(k.user_id)),
                               {"active": 0, "paused": 0, "error": 0, "running": 0})  # fmt: skip
            d[k.state] = d.get(k.state, 0) + 1
            d["running"] += 1 if sid in self.book.members else 0
        return out
