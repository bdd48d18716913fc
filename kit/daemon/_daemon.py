"""The daemon: one feed, every active strategy of every user, a crash-safe ledger, a status server.

Flow of a candle: the feed yields a closed kline -> :meth:`Book.on_candle` updates the
stream's indicators once, evaluates each group of identical strategies once, steps each
member's paper broker -> the writer commits every pending candle's orders, fills, trades,
positions and checkpoints in one transaction (retrying while the database is unavailable;
nothing is dropped, the queue waits) -> ``/status`` and ``/metrics`` show it.

Start-up restores each strategy's broker state and checkpoint from the database, subscribes
each stream with enough history to cover the time it was down (plus indicator warm-up),
and replays the missed candles through the same path (see :mod:`kit.daemon._book` for the
policy). A poll of the strategies table's versions every ``poll_every`` seconds applies
promotions, parameter changes, (de)activations and demotions without touching the feed's
connection. SIGTERM/SIGINT: stop reading the feed after the candle in hand, commit
everything queued, record a stop event, close the feed and the database.

Crash-only: every long-lived task (writer, streams, poller, heartbeat, status server) is
supervised. An unexpected exception in one makes the daemon not ready, is logged at ERROR with
its traceback, and stops the daemon like SIGTERM (the writer commits what is queued; if the
writer itself failed nothing more is written, since committing later candles would move
checkpoints past the lost ones); the process then exits non-zero and systemd restarts it from
the checkpoints. A process that dies inside a strategy's evaluation is handled by the
crash-loop guard (:mod:`kit.daemon._guard`). Health: :mod:`kit.daemon._health`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from kit.daemon._book import Book, CandleResult, Failure, describe
from kit.daemon._config import DaemonConfig
from kit.daemon._guard import InHand
from kit.daemon._health import FaultPlan, Health, StreamHealth, TaskFailed, assess
from kit.daemon._status import StatusServer, prometheus
from kit.market.intervals import interval_ms

log = logging.getLogger("kit.daemon")

_DB_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError)
_HEAVY = ("vectorbt", "panel", "holoviews", "bokeh")


class DaemonFailed(RuntimeError):
    """The daemon stopped because one of its tasks failed (already logged with its traceback)."""


def _is_db_down(exc: BaseException) -> bool:
    if isinstance(exc, _DB_ERRORS):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


# ----- database work, run in a worker thread -------------------------------------------------


def _load_running(store: Any) -> tuple[list[Any], dict[int, Any], dict[int, str], dict[int, tuple[int, str, int]]]:
    from kit.store import ledger, strategies, users

    recs = strategies.list_all_for_daemon(store, active_only=False)
    cps = ledger.load_checkpoints(store)
    names = {u.id: u.name for u in users.list(store)}
    return recs, cps, names, {r.id: (r.user_id, r.state if r.active else "off", r.version) for r in recs}


def _prepare(store: Any, rec: Any, default_start: int) -> Any:
    """The checkpoint to resume ``rec`` from, creating it (flat, full cash) the first time."""
    from kit.broker import BrokerState, FillModel
    from kit.store import ledger

    model = FillModel(**rec.broker) if rec.broker else FillModel()
    start = rec.start_time if rec.start_time is not None else default_start
    state = BrokerState(cash=model.init_cash).to_dict()
    flat = {"size": 0.0, "cash": model.init_cash, "equity": model.init_cash}
    return ledger.ensure_checkpoint(store, rec, int(start) - 1, state, flat)


class Daemon:
    """Runs every active strategy of every user. ``await Daemon(config).run()`` until stopped."""

    def __init__(self, config: DaemonConfig | None = None) -> None:
        from kit.settings import Settings

        self.config = config or DaemonConfig()
        s = Settings.from_env()
        self.database_url = self.config.database_url or s.database_url
        self.exchange_url = self.config.exchange_url or s.exchange_url
        self.exchange_ws_url = self.config.exchange_ws_url or (
            s.exchange_ws_url if self.config.exchange_url is None else None
        )
        if self.exchange_ws_url is None:
            from kit.settings import _ws_twin

            self.exchange_ws_url = _ws_twin(self.exchange_url)
        self.book = Book(
            max_failures=self.config.max_failures,
            eval_timeout=self.config.eval_timeout,
            kill_after=self.config.eval_kill_after,
            keep=self.config.history,
        )
        self.store: Any = None
        self.feed: Any = None
        self.engine: Any = None
        self.status_server: StatusServer | None = None
        self.status_port: int | None = None
        self.guard_path = s.data_dir / "daemon" / f"in-hand-{_url_id(self.database_url)}.bin"
        self.started_at = datetime.now(UTC)
        self._t0 = time.monotonic()
        self._stop = asyncio.Event()
        self._queue: asyncio.Queue[tuple[str, Any, float]] = asyncio.Queue()
        self._waiting: deque[float] = deque()  # when each queued candle was received, oldest first
        self._streams: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._stream_health: dict[tuple[str, str], StreamHealth] = {}
        self._served: dict[tuple[str, str], Any] = {}  # the book's Stream object each task feeds
        self._known: dict[int, tuple[int, str, int]] = {}  # sid -> (user_id, state|"off", version)
        self._user_names: dict[int, str] = {}
        self._db_ok = False
        self._db_waits = 0
        self._counts: Counter[str] = Counter()
        self._latency: deque[float] = deque(maxlen=2048)
        self._server_offset_ms = 0
        self._lock: Any = None
        self._guard: InHand | None = None
        self._failed: tuple[str, BaseException] | None = None  # the task that stopped the daemon
        self._fault = FaultPlan.from_env()
        # Strategies not running for a reason the operator should see: sid -> detail (error, paused).
        self._problems: dict[int, dict[str, Any]] = {}
        self._failing: dict[int, str] = {}  # running strategies whose last evaluation failed -> error

    # ----- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the daemon to stop after the candle in hand (what SIGTERM/SIGINT do)."""
        self._stop.set()

    async def run(self) -> None:
        """Start, run until :meth:`stop` (or a signal), then shut down cleanly."""
        from kit.engine import IndicatorEngine
        from kit.feed import Feed
        from kit.store import Store

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        self.store = Store(self.database_url)
        if self.config.status_port is not None:
            self.status_server = StatusServer(
                self.config.status_host, self.config.status_port, status=self.status,
                ready=lambda: self.health().to_dict(), metrics=self.metrics,
            )  # fmt: skip
            self.status_port = await self.status_server.start()
            log.info("status server listening", extra={"port": self.status_port})
        status_task = self._spawn("status", self._watch_status()) if self.status_server is not None else None
        await self._db(self.store.migrate)
        # Before the first trade: a second daemon on this database refuses to start (one-line error).
        lock = self.store.daemon_lock()
        try:
            await asyncio.to_thread(lock.acquire)
        except BaseException:
            if status_task is not None:
                status_task.cancel()
            if self.status_server is not None:
                await self.status_server.stop()
            self.store.dispose()
            raise
        self._lock = lock
        # Only the lock holder touches the guard's file (a refused second daemon must not reset it).
        self._guard = InHand(self.guard_path)
        self.book.mark = self._guard.mark
        self.feed = Feed(self.exchange_ws_url, self.exchange_url)
        await self.feed.start()
        # One engine: one indicator state per (stream, spec), shared by every strategy. The queue
        # bound is generous: rows the daemon has not evaluated yet must never be skipped.
        self.engine = IndicatorEngine(
            self.feed, keep=self.config.history, max_queue=max(100_000, 2 * self.config.max_backfill)
        )
        writer = self._spawn("writer", self._writer())
        aux: list[asyncio.Task[None]] = [] if status_task is None else [status_task]
        try:
            await self._load()
            await self._event(
                "start", f"daemon {self.config.daemon_id} started with {len(self.book.members)} strategies"
            )
            aux += [self._spawn("poller", self._poller()), self._spawn("heartbeat", self._heartbeats())]
            await self._stop.wait()
        finally:
            log.info("stopping: finishing the candle in hand and writing what is queued")
            for t in [*aux, *self._streams.values()]:
                t.cancel()
            await asyncio.gather(*aux, *self._streams.values(), return_exceptions=True)
            self._streams.clear()
            await self._queue.put(("stop", None, time.monotonic()))
            await asyncio.gather(writer, return_exceptions=True)  # a failed writer is already done
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(self._final_event), 5.0)
            await self.engine.close()
            await self.feed.stop()
            if self.status_server is not None:
                await self.status_server.stop()
            self._guard.close()
            self._lock.release()
            self.store.dispose()
            log.info("stopped", extra={"candles": self._counts["candles"], "fills": self._counts["fills"]})
        if self._failed is not None:
            name, exc = self._failed
            raise DaemonFailed(f"task {name} failed: {describe(exc)}") from exc

    def _final_event(self) -> None:
        from kit.store import events

        if self._failed is None:
            events.record(self.store, "stop", f"daemon {self.config.daemon_id} stopped")
        else:
            name, exc = self._failed
            events.record(self.store, "crash", f"daemon {self.config.daemon_id} stopped: task {name} failed: "
                          f"{describe(exc)}", level="error")  # fmt: skip

    # ----- supervision -----------------------------------------------------------------------

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a long-lived task under supervision: if it raises, the daemon stops (crash-only)."""
        task = asyncio.create_task(coro, name=f"kit-daemon-{name}")
        task.add_done_callback(lambda t: self._on_task_done(name, t))
        return task

    def _on_task_done(self, name: str, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if self._failed is None:
            self._failed = (name, exc)
            log.error("task %s failed; stopping so that a restart resumes from the checkpoints", name,
                      exc_info=exc, extra={"task": name})  # fmt: skip
        self._stop.set()

    async def _watch_status(self) -> None:
        """The status server's supervisor: its listening socket must stay open."""
        assert self.status_server is not None
        while True:
            await asyncio.sleep(1.0)
            if self._fault is not None:
                self._fault.check("status")
            if not self.status_server.serving:
                raise RuntimeError("the status server stopped listening")

    # ----- the database, with waiting and retrying -------------------------------------------

    async def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a thread; while the database is unavailable, wait and retry forever."""
        delay = 0.2
        while True:
            try:
                out = await asyncio.to_thread(fn, *args, **kwargs)
                if not self._db_ok:
                    if self._db_waits:
                        log.warning("database reachable again")
                    self._db_ok = True
                return out
            except Exception as exc:
                if not _is_db_down(exc):
                    raise
                if self._db_ok or self._db_waits == 0:
                    log.warning("database unavailable; retrying", extra={"error": str(exc).splitlines()[0][:200]})
                self._db_ok = False
                self._db_waits += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.db_retry_max)

    async def _event(self, kind: str, message: str, **kw: Any) -> None:
        from kit.store import events

        await self._queue.put(("op", (events.record, self.store, kind, message, kw), time.monotonic()))

    # ----- loading and applying changes to strategies ----------------------------------------

    async def _server_now(self) -> int:
        try:
            server = await asyncio.to_thread(self.feed.rest.server_time)
            self._server_offset_ms = int(server) - int(time.time() * 1000)
        except Exception as exc:
            log.warning("exchange time unavailable", extra={"error": str(exc)[:200]})
        return int(time.time() * 1000) + self._server_offset_ms

    async def _load(self) -> None:
        recs, cps, names, known = await self._db(_load_running, self.store)
        self._user_names = names
        now = await self._server_now()
        for rec in recs:
            self._known[rec.id] = known[rec.id]
            if rec.active and rec.state == "active":
                await self._start_member(rec, cps.get(rec.id), now)
            elif rec.active:
                self._note_problem(rec.id, rec.user_id, rec.name, rec.state, rec.last_error)
        self._apply_guard()
        for skey in list(self.book.streams):
            self._ensure_stream(skey, now)

    def _apply_guard(self) -> None:
        """After a crash inside an evaluation: note the suspect, or pause it at the second crash."""
        from kit.store import events, strategies

        assert self._guard is not None
        v = self._guard.verdict
        if not v.in_hand:
            return
        members = [m for s in self.book.streams.values() for g in s.groups.values() if g.gid == v.in_hand
                   for m in g.members.values()]  # fmt: skip
        ids = sorted(m.id for m in members)
        if not v.pause:
            msg = (f"the last daemon process died while evaluating strategies {ids}; they are paused if "
                   "that happens again")  # fmt: skip
            log.warning(msg, extra={"group": v.in_hand})
            self._queue.put_nowait(("op", (events.record, self.store, "crash_suspect", msg, {"level": "warning"}), 0.0))
            return

        msg = ("paused: the daemon process died twice in a row while evaluating this strategy (a crash in "
               "native code, memory exhaustion or os.abort()); the other strategies resumed")  # fmt: skip
        log.error("pausing strategies the daemon died in twice", extra={"strategies": ids, "group": v.in_hand})
        for m in members:
            self.book.remove(m.id)
            self._known[m.id] = (m.user_id, "paused", m.version)
            self._counts["strategies_paused"] += 1
            self._note_problem(m.id, m.user_id, m.name, "paused", msg)
            op = (strategies.set_state_for_daemon, self.store, m.id, "paused", {"last_error": msg})
            self._queue.put_nowait(("op", op, 0.0))
            kw = {"level": "error", "strategy_id": m.id, "user_id": m.user_id}
            self._queue.put_nowait(("op", (events.record, self.store, "strategy_paused", msg, kw), 0.0))

    def _note_problem(self, sid: int, uid: int, name: str, state: str, error: str | None) -> None:
        self._problems[sid] = {"id": sid, "user": self._user_names.get(uid, str(uid)), "name": name,
                               "state": state, "error": error or ""}  # fmt: skip

    async def _start_member(self, rec: Any, cp: Any, now: int, carry: Any = None) -> None:
        from kit.store import strategies

        try:
            if carry is not None:  # a new version of a running strategy: keep its live state
                checkpoint, state = carry.checkpoint, carry.broker.state.to_dict()
            else:
                if cp is None:
                    cp = await self._db(_prepare, self.store, rec, now)
                checkpoint, state = cp.last_open_time, cp.broker_state
            self.book.add(rec, checkpoint, state)
            self._problems.pop(rec.id, None)
            self._failing.pop(rec.id, None)
        except Exception as exc:
            msg = describe(exc)
            log.error("strategy cannot start", extra={"strategy_id": rec.id, "error": msg[:300]})
            self._known[rec.id] = (rec.user_id, "error", rec.version)
            self._note_problem(rec.id, rec.user_id, rec.name, "error", msg)
            await self._db(lambda: strategies.set_state_for_daemon(self.store, rec.id, "error", last_error=msg))
            await self._event("strategy_error", msg, level="error", strategy_id=rec.id, user_id=rec.user_id)

    async def _poller(self) -> None:
        from kit.store import strategies, users

        while True:
            await asyncio.sleep(self.config.poll_every)
            if self._fault is not None:
                self._fault.check("poller")
            versions = await self._db(strategies.versions_for_daemon, self.store)
            await self._apply(versions, strategies, users)

    async def _apply(self, versions: dict[int, tuple[int, bool]], strategies: Any, users: Any) -> None:
        changed = [sid for sid, (v, _a) in versions.items() if sid not in self._known or self._known[sid][2] != v]
        gone = [sid for sid in self._known if sid not in versions]
        for sid in gone:
            self._known.pop(sid, None)
            self._problems.pop(sid, None)
            self._failing.pop(sid, None)
            if self.book.remove(sid) is not None:
                log.info("strategy removed", extra={"strategy_id": sid})
        if not changed:
            return
        recs = {r.id: r for r in await self._db(strategies.list_all_for_daemon, self.store, active_only=False)}
        if any(r.user_id not in self._user_names for r in recs.values()):
            self._user_names = {u.id: u.name for u in await self._db(users.list, self.store)}
        now = await self._server_now()
        for sid in changed:
            rec = recs.get(sid)
            if rec is None:
                continue
            old = self.book.members.get(sid)
            self._known[sid] = (rec.user_id, rec.state if rec.active else "off", rec.version)
            self._failing.pop(sid, None)
            if rec.active and rec.state != "active":
                self._note_problem(sid, rec.user_id, rec.name, rec.state, rec.last_error)
            else:
                self._problems.pop(sid, None)
            if not rec.active or rec.state != "active":
                if old is not None:
                    self.book.remove(sid)
                    log.info("strategy stopped", extra={"strategy_id": sid, "version": rec.version})
                continue
            carry = old if old is not None and (rec.symbol, rec.interval) == self._stream_of(sid) else None
            await self._start_member(rec, None, now, carry=carry)
            if sid in self.book.members:
                log.info("strategy started", extra={"strategy_id": sid, "version": rec.version, "strategy": rec.name})
        for skey in list(self.book.streams):
            self._ensure_stream(skey, now)
        for skey in [k for k in self._streams if k not in self.book.streams]:
            self._streams.pop(skey).cancel()

    def _stream_of(self, sid: int) -> tuple[str, str] | None:
        return self.book.stream_of(sid)

    # ----- streams ---------------------------------------------------------------------------

    def _ensure_stream(self, skey: tuple[str, str], now: int) -> None:
        task = self._streams.get(skey)
        stream = self.book.streams[skey]
        if task is not None and not task.done():
            if self._served.get(skey) is stream:
                return
            # The book rebuilt this stream (its strategies all left, then came back): resubscribe,
            # so the engine follows the new stream's specs and its strategies warm up again.
            task.cancel()
        self._served[skey] = stream
        iv = interval_ms(skey[1])
        oldest = min((m.checkpoint for g in stream.groups.values() for m in g.members.values()), default=now)
        missed = max(0, math.ceil((now - oldest) / iv))
        history = min(max(self.config.history, missed + self.config.history // 4), self.config.max_backfill)
        self._streams[skey] = self._spawn(f"stream {skey[0]}/{skey[1]}", self._run_stream(skey, history))

    async def _run_stream(self, skey: tuple[str, str], history: int) -> None:
        """Feed one stream's closed candles to the book. A failing subscription (the feed, the
        exchange) is retried with a growing pause and counted in the health; a failure while
        processing a candle is a bug (:class:`TaskFailed`) and stops the daemon."""
        symbol, interval = skey
        health = self._stream_health.setdefault(skey, StreamHealth())
        log.info("subscribing", extra={"stream": f"{symbol}/{interval}", "history": history})
        while True:
            stream = self.book.streams.get(skey)
            if stream is None:
                return
            attached = None
            try:
                async with self.engine.subscribe(symbol, interval, sorted(stream.specs(), key=str),
                                                 history=history) as sub:  # fmt: skip
                    stream = self.book.streams.get(skey)
                    if stream is None or self._served.get(skey) is not stream:
                        return
                    stream.attach(sub, self.engine.state(symbol, interval))
                    attached = sub
                    for i, row in enumerate(sub.history):  # the backfill: replayed exactly like live rows
                        self._on_row(symbol, interval, row)
                        if i % 50 == 49:
                            await asyncio.sleep(0)  # let the writer, other streams and /status run
                    health.ok()
                    async for row in sub:
                        if row.closed:
                            self._on_row(symbol, interval, row)
                        if sub.dropped:
                            raise RuntimeError(f"{sub.dropped} rows skipped by the engine (daemon too slow)")
                return  # the source ended
            except (asyncio.CancelledError, TaskFailed):
                raise
            except Exception as exc:
                n = health.failed(describe(exc))
                self._counts["stream_failures"] += 1
                where = {"stream": f"{symbol}/{interval}", "failures": n}
                if n == 1:
                    log.exception("stream failed; resubscribing", extra=where)
                else:  # the traceback was logged at the first failure; one line each time after
                    log.warning("stream failed again; resubscribing", extra={**where, "error": health.last_error})
                await asyncio.sleep(min(30.0, 2.0 ** (n - 1)))
                # Resume from the last candle processed: ask for everything since, plus warm-up.
                last = stream.last_time if stream is not None else None
                now = int(time.time() * 1000) + self._server_offset_ms
                missed = 0 if last is None else max(0, (now - last) // interval_ms(interval))
                history = min(max(self.config.history, missed + self.config.history // 4), self.config.max_backfill)
            finally:
                if attached is not None and stream is not None and stream.sub is attached:
                    stream.detach()

    def _on_row(self, symbol: str, interval: str, row: Any) -> None:
        received = time.monotonic()
        try:
            if self._fault is not None:
                self._fault.check("stream")
            res = self.book.on_row(symbol, interval, row.candle, row.values)
            if res is None:
                return
            self._counts["candles"] += 1
            self._counts["analyses"] += len(self.book.streams[(symbol, interval)].groups)
            for w in res.writes:
                self._counts["fills"] += len(w.fills)
                self._counts["trades"] += len(w.trades)
            if res.writes or res.advance:  # warm-up candles (at or before every checkpoint) write nothing
                self._waiting.append(received)
                self._queue.put_nowait(("candle", res, received))
            for f in res.failures:
                self._on_failure(f)
        except Exception as exc:  # the book contains strategies' failures: anything here is a bug
            raise TaskFailed(f"processing a {symbol}/{interval} candle failed") from exc

    def _on_failure(self, f: Failure) -> None:
        from kit.store import events, strategies

        self._counts["strategy_failures"] += len(f.group.members)
        log.warning("strategy failed", extra={"strategy": repr(f.group.strategy), "members": len(f.group.members),
                                               "error": f.error[:300]})  # fmt: skip
        for m in list(f.group.members.values()):
            kw = {"level": "warning", "strategy_id": m.id, "user_id": m.user_id}
            if m in f.paused:
                self.book.remove(m.id)
                self._failing.pop(m.id, None)
                self._note_problem(m.id, m.user_id, m.name, "paused", f.error)
                self._known[m.id] = (m.user_id, "paused", m.version)
                self._counts["strategies_paused"] += 1
                op = (strategies.set_state_for_daemon, self.store, m.id, "paused")
                self._queue.put_nowait(("op", (*op, {"failures": m.failures, "last_error": f.error}), time.monotonic()))
                msg = f"paused after {m.failures} failures: {f.error}"
                self._queue.put_nowait(
                    ("op", (events.record, self.store, "strategy_paused", msg, kw), time.monotonic())
                )
                log.warning("strategy paused", extra={"strategy_id": m.id, "failures": m.failures})
            else:
                self._failing[m.id] = f.error
                op = (strategies.set_state_for_daemon, self.store, m.id, "active")
                self._queue.put_nowait(("op", (*op, {"failures": m.failures, "last_error": f.error}), time.monotonic()))
                self._queue.put_nowait(
                    ("op", (events.record, self.store, "strategy_failed", f.error, kw), time.monotonic())
                )
        for skey in [k for k in self._streams if k not in self.book.streams]:
            self._streams.pop(skey).cancel()  # every strategy of the stream paused: unsubscribe

    # ----- the writer ------------------------------------------------------------------------

    async def _writer(self) -> None:
        from kit.store import ledger

        stopping = False
        while not stopping:
            items = [await self._queue.get()]
            if self._fault is not None:
                self._fault.check("writer")
            while not self._queue.empty() and len(items) < 256:
                items.append(self._queue.get_nowait())
            writes: list[Any] = []
            advance: list[tuple[int, list[int]]] = []
            received: list[float] = []
            ops: list[Any] = []
            for kind, payload, t in items:
                if kind == "candle":
                    res: CandleResult = payload
                    writes.extend(res.writes)
                    if res.advance:
                        advance.append((res.open_time, res.advance))
                    received.append(t)
                elif kind == "op":
                    ops.append(payload)
                else:
                    stopping = True
            if writes or advance:
                await self._db(ledger.commit, self.store, writes, advance)
                done = time.monotonic()
                self._latency.extend(done - t for t in received)
                self._counts["commits"] += 1
            for _ in received:  # committed, or (no writes at all) nothing to wait for
                self._waiting.popleft()
            for fn, *args, kw in ops:
                await self._db(lambda fn=fn, args=args, kw=kw: fn(*args, **kw))

    # ----- heartbeats, status, metrics -------------------------------------------------------

    async def _heartbeats(self) -> None:
        from kit.store import events

        while True:
            if self._fault is not None:
                self._fault.check("heartbeat")
            st = self.status(brief=True)
            await self._db(
                events.heartbeat, self.store, self.config.daemon_id, self.started_at.replace(tzinfo=None), st
            )
            log.info(
                "status",
                extra={k: st[k] for k in ("uptime_s", "streams", "strategies", "analyses", "candles", "fills",
                                          "trades", "queue", "db_ok", "feed_connected")},
            )  # fmt: skip
            now = datetime.now(UTC).replace(tzinfo=None)
            hb, ev = await self._db(
                events.prune, self.store,
                heartbeats_older_than=now - timedelta(days=self.config.keep_heartbeats_days),
                events_older_than=now - timedelta(days=self.config.keep_events_days),
            )  # fmt: skip
            if hb or ev:
                log.info("pruned old operator rows", extra={"heartbeats": hb, "events": ev})
            await asyncio.sleep(self.config.heartbeat_every)

    def ready(self) -> bool:
        """Nothing fails: see :meth:`health`."""
        return self.health().ready

    def health(self) -> Health:
        """The verdict ``/ready`` serves: ok, or degraded/down with the reasons (:func:`assess`)."""
        failing = []
        for sid, err in list(self._failing.items()):
            m = self.book.members.get(sid)
            if m is None or m.failures == 0:
                del self._failing[sid]  # paused, removed or recovered
            else:
                user = self._user_names.get(m.user_id, str(m.user_id))
                failing.append(f"strategy {sid} ({user}/{m.name}) ({m.failures} in a row): {err}")
        return assess(
            failed_task=self._failed[0] if self._failed else None,
            stopping=self._stop.is_set(),
            db_ok=self._db_ok,
            feed_connected=self._feed_connected(),
            streams={f"{s}/{i}": h for (s, i), h in self._subscribed_health()},
            write_queue=len(self._waiting),
            write_lag_s=self._write_lag(),
            max_write_lag=self.config.max_write_lag,
            cannot_load=[
                f"strategy {p['id']} ({p['user']}/{p['name']}): {p['error']}"
                for p in self._problems.values()
                if p["state"] == "error"
            ],
            failing=failing,
        )

    def _subscribed_health(self) -> list[tuple[tuple[str, str], StreamHealth]]:
        """Health of the streams subscribed now (a stream whose strategies all left does not count)."""
        return [(k, h) for k, h in self._stream_health.items() if k in self._streams]

    def _write_lag(self) -> float:
        return time.monotonic() - self._waiting[0] if self._waiting else 0.0

    def _feed_connected(self) -> bool:
        if self.feed is None:
            return False
        try:
            return self.feed.stats()["connections"] > 0
        except Exception:
            return False

    def _by_user(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for sid, (uid, state, _v) in self._known.items():
            if state == "off":
                continue
            name = self._user_names.get(uid, str(uid))
            d = out.setdefault(name, {"active": 0, "paused": 0, "error": 0, "running": 0})
            d[state] = d.get(state, 0) + 1
            d["running"] += 1 if sid in self.book.members else 0
        return out

    def _latency_ms(self) -> dict[str, float | None]:
        lat = sorted(self._latency)
        if not lat:
            return {"p50": None, "p99": None, "n": 0}
        q = lambda p: round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 3)  # noqa: E731
        return {"p50": q(0.5), "p99": q(0.99), "n": len(lat)}

    def status(self, brief: bool = False) -> dict[str, Any]:
        """The ``/status`` document (``brief``: the heartbeat's summary)."""
        groups = sum(len(s.groups) for s in self.book.streams.values())
        c = self._counts
        health = self.health()
        st: dict[str, Any] = {
            "daemon_id": self.config.daemon_id,
            "started_at": self.started_at.isoformat(),
            "uptime_s": round(time.monotonic() - self._t0, 1),
            "ready": health.ready,
            "health": health.state,
            "reasons": list(health.reasons),
            "db_ok": self._db_ok,
            "db_waits": self._db_waits,
            "feed_connected": self._feed_connected(),
            "streams": len(self.book.streams),
            "strategies": len(self.book.members),
            "analyses": groups,
            "candles": c["candles"],
            "evaluations": c["analyses"],
            "fills": c["fills"],
            "trades": c["trades"],
            "strategy_failures": c["strategy_failures"],
            "strategies_paused": c["strategies_paused"],
            "strategies_failing": len(self._failing),
            "strategies_cannot_load": sum(p["state"] == "error" for p in self._problems.values()),
            "stream_failures": c["stream_failures"],
            "streams_failing": sum(h.failing for _k, h in self._subscribed_health()),
            "commits": c["commits"],
            "queue": len(self._waiting),
            "write_lag_s": round(self._write_lag(), 3),
            "persist_latency_ms": self._latency_ms(),
        }
        if brief:
            return st
        st["strategies_by_user"] = self._by_user()
        st["stream_detail"] = [
            {
                "symbol": s.symbol,
                "interval": s.interval,
                "groups": len(s.groups),
                "strategies": s.members,
                "indicators": 0 if s.state is None else len(s.state.slots),
                "candles": s.candles,
                "last_candle": None
                if s.last_time is None
                else datetime.fromtimestamp(s.last_time / 1000, UTC).isoformat(),
                "failures": h.failures,
                "failures_total": h.total,
                "last_error": h.last_error,
            }
            for s in self.book.streams.values()
            for h in [self._stream_health.get((s.symbol, s.interval), StreamHealth())]
        ]
        st["strategy_detail"] = [
            {"id": m.id, "user": self._user_names.get(m.user_id, str(m.user_id)), "name": m.name, "version": m.version,
             "checkpoint": m.checkpoint, "position": m.broker.state.position, "fills": m.fills, "trades": m.trades,
             "failures": m.failures, "last_signal": m.last_signal, "last_error": self._failing.get(m.id)}
            for m in self.book.members.values()
        ]  # fmt: skip
        st["strategy_problems"] = list(self._problems.values())
        st["feed"] = self.feed.stats() if self.feed is not None else None
        if self.engine is not None:
            es = self.engine.stats()
            st["engine"] = {k: es[k] for k in ("streams", "subscribers", "unique_specs", "updates")}
        st["modules"] = {name: name in sys.modules for name in _HEAVY}
        st["python"] = sys.version.split()[0]
        return st

    def metrics(self) -> str:
        """Prometheus text for ``/metrics``."""
        c = self._counts
        lat = sorted(self._latency)
        by_state: Counter[str] = Counter(state for _u, state, _v in self._known.values() if state != "off")
        m: list[tuple[str, str, str, list[tuple[dict[str, str], float]]]] = [
            ("kit_daemon_up", "gauge", "1 while the daemon runs", [({}, 1)]),
            ("kit_daemon_ready", "gauge", "1 when nothing fails (/ready is 200)", [({}, int(self.ready()))]),
            ("kit_daemon_uptime_seconds", "gauge", "seconds since start", [({}, time.monotonic() - self._t0)]),
            ("kit_daemon_database_up", "gauge", "1 when the last database call succeeded", [({}, int(self._db_ok))]),
            ("kit_daemon_streams", "gauge", "streams subscribed", [({}, len(self.book.streams))]),
            ("kit_daemon_strategies", "gauge", "strategies by daemon state",
             [({"state": s}, by_state.get(s, 0)) for s in ("active", "paused", "error")]),
            ("kit_daemon_strategies_running", "gauge", "strategies being evaluated", [({}, len(self.book.members))]),
            ("kit_daemon_analyses", "gauge", "unique evaluations per candle (groups)",
             [({}, sum(len(s.groups) for s in self.book.streams.values()))]),
            ("kit_daemon_candles_total", "counter", "closed candles processed", [({}, c["candles"])]),
            ("kit_daemon_evaluations_total", "counter", "group evaluations", [({}, c["analyses"])]),
            ("kit_daemon_fills_total", "counter", "paper fills", [({}, c["fills"])]),
            ("kit_daemon_trades_total", "counter", "closed trades", [({}, c["trades"])]),
            ("kit_daemon_strategy_failures_total", "counter", "failed strategy evaluations",
             [({}, c["strategy_failures"])]),
            ("kit_daemon_commits_total", "counter", "ledger transactions", [({}, c["commits"])]),
            ("kit_daemon_database_waits_total", "counter", "retries while the database was down",
             [({}, self._db_waits)]),
            ("kit_daemon_write_queue", "gauge", "closed candles waiting to be committed", [({}, len(self._waiting))]),
            ("kit_daemon_write_lag_seconds", "gauge", "age of the oldest candle waiting to be committed",
             [({}, self._write_lag())]),
            ("kit_daemon_stream_failures_total", "counter", "failed stream subscriptions",
             [({}, c["stream_failures"])]),
            ("kit_daemon_streams_failing", "gauge", "streams failing repeatedly",
             [({}, sum(h.failing for _k, h in self._subscribed_health()))]),
            ("kit_daemon_strategies_failing", "gauge", "running strategies whose last evaluation failed",
             [({}, len(self._failing))]),
            ("kit_daemon_persist_latency_seconds", "summary", "closed candle received -> decisions committed",
             [({"quantile": str(q)}, lat[min(len(lat) - 1, int(q * len(lat)))] if lat else math.nan)
              for q in (0.5, 0.9, 0.99)]),
        ]  # fmt: skip
        if self.feed is not None:
            fs = self.feed.stats()
            for key in ("connections", "streams", "messages", "reconnects", "stalls", "backfilled", "gaps", "lagging"):
                v = fs.get(key)
                if isinstance(v, int | float):
                    kind = "gauge" if key in ("connections", "streams") else "counter"
                    name = f"kit_feed_{key}" + ("_total" if kind == "counter" else "")
                    m.append((name, kind, f"feed {key}", [({}, v)]))
        return prometheus(m)


def _url_id(url: str) -> str:
    """A short stable name for a database (the guard's file is per database, as the lock is)."""
    return hashlib.blake2b(url.encode(), digest_size=6).hexdigest()


async def _run(config: DaemonConfig) -> None:
    await Daemon(config).run()


def run(config: DaemonConfig | None = None) -> None:
    """Run the daemon in the foreground until SIGTERM/SIGINT; exit 1 when a task failed (so that
    systemd restarts it from the checkpoints)."""
    try:
        asyncio.run(_run(config or DaemonConfig()))
    except DaemonFailed:
        sys.exit(1)  # logged with its traceback when it happened
