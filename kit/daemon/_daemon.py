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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import sys
import time
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kit.daemon._book import Book, CandleResult, Failure
from kit.daemon._config import DaemonConfig
from kit.daemon._status import StatusServer, prometheus
from kit.market.intervals import interval_ms

if TYPE_CHECKING:
    from kit.engine import IndicatorEngine
    from kit.feed import Feed

log = logging.getLogger("kit.daemon")

_DB_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError)
_HEAVY = ("vectorbt", "panel", "holoviews", "bokeh")


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
        # The daemon holds the exchange connection itself (a Feed: its REST clock and connection
        # figures feed /ready); strategies read it through the engine, typed on kit.feed.CandleSource.
        self.feed: Feed | None = None
        self.engine: IndicatorEngine | None = None
        self.status_server: StatusServer | None = None
        self.status_port: int | None = None
        self.started_at = datetime.now(UTC)
        self._t0 = time.monotonic()
        self._stop = asyncio.Event()
        self._queue: asyncio.Queue[tuple[str, Any, float]] = asyncio.Queue()
        self._streams: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._served: dict[tuple[str, str], Any] = {}  # the book's Stream object each task feeds
        self._known: dict[int, tuple[int, str, int]] = {}  # sid -> (user_id, state|"off", version)
        self._user_names: dict[int, str] = {}
        self._db_ok = False
        self._db_waits = 0
        self._counts: Counter[str] = Counter()
        self._latency: deque[float] = deque(maxlen=2048)
        self._pending_candles = 0
        self._server_offset_ms = 0
        self._lock: Any = None

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
                self.config.status_host, self.config.status_port, status=self.status, ready=self.ready,
                metrics=self.metrics,
            )  # fmt: skip
            self.status_port = await self.status_server.start()
            log.info("status server listening", extra={"port": self.status_port})
        await self._db(self.store.migrate)
        # Before the first trade: a second daemon on this database refuses to start (one-line error).
        lock = self.store.daemon_lock()
        try:
            await asyncio.to_thread(lock.acquire)
        except BaseException:
            if self.status_server is not None:
                await self.status_server.stop()
            self.store.dispose()
            raise
        self._lock = lock
        self.feed = Feed(self.exchange_ws_url, self.exchange_url)
        await self.feed.start()
        # One engine: one indicator state per (stream, spec), shared by every strategy. The queue
        # bound is generous: rows the daemon has not evaluated yet must never be skipped.
        self.engine = IndicatorEngine(
            self.feed, keep=self.config.history, max_queue=max(100_000, 2 * self.config.max_backfill)
        )
        writer = asyncio.create_task(self._writer(), name="kit-daemon-writer")
        aux: list[asyncio.Task[None]] = []
        try:
            await self._load()
            await self._event(
                "start", f"daemon {self.config.daemon_id} started with {len(self.book.members)} strategies"
            )
            aux = [
                asyncio.create_task(self._poller(), name="kit-daemon-poller"),
                asyncio.create_task(self._heartbeats(), name="kit-daemon-heartbeat"),
            ]
            await self._stop.wait()
        finally:
            log.info("stopping: finishing the candle in hand and writing what is queued")
            for t in [*aux, *self._streams.values()]:
                t.cancel()
            await asyncio.gather(*aux, *self._streams.values(), return_exceptions=True)
            self._streams.clear()
            await self._queue.put(("stop", None, time.monotonic()))
            await asyncio.gather(writer, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(self._final_event), 5.0)
            await self.engine.close()
            await self.feed.stop()
            if self.status_server is not None:
                await self.status_server.stop()
            self._lock.release()
            self.store.dispose()
            log.info("stopped", extra={"candles": self._counts["candles"], "fills": self._counts["fills"]})

    def _final_event(self) -> None:
        from kit.store import events

        events.record(self.store, "stop", f"daemon {self.config.daemon_id} stopped")

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
        for skey in list(self.book.streams):
            self._ensure_stream(skey, now)

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
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}"
            log.error("strategy cannot start", extra={"strategy_id": rec.id, "error": msg})
            self._known[rec.id] = (rec.user_id, "error", rec.version)
            await self._db(lambda: strategies.set_state_for_daemon(self.store, rec.id, "error", last_error=msg))
            await self._event("strategy_error", msg, level="error", strategy_id=rec.id, user_id=rec.user_id)

    async def _poller(self) -> None:
        from kit.store import strategies, users

        while True:
            await asyncio.sleep(self.config.poll_every)
            try:
                versions = await self._db(strategies.versions_for_daemon, self.store)
                await self._apply(versions, strategies, users)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("applying strategy changes failed; retrying on the next poll")

    async def _apply(self, versions: dict[int, tuple[int, bool]], strategies: Any, users: Any) -> None:
        changed = [sid for sid, (v, _a) in versions.items() if sid not in self._known or self._known[sid][2] != v]
        gone = [sid for sid in self._known if sid not in versions]
        for sid in gone:
            self._known.pop(sid, None)
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
        where = self.book._where.get(sid)
        return where[0] if where else None

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
        self._streams[skey] = asyncio.create_task(self._run_stream(skey, history), name=f"kit-daemon-{skey}")

    async def _run_stream(self, skey: tuple[str, str], history: int) -> None:
        symbol, interval = skey
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
                    async for row in sub:
                        if row.closed:
                            self._on_row(symbol, interval, row)
                        if sub.dropped:
                            raise RuntimeError(f"{sub.dropped} rows skipped by the engine (daemon too slow)")
                return  # the source ended
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("stream failed; resubscribing", extra={"stream": f"{symbol}/{interval}"})
                await asyncio.sleep(1.0)
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
        res = self.book.on_row(symbol, interval, row.candle, row.values)
        if res is None:
            return
        self._counts["candles"] += 1
        self._counts["analyses"] += len(self.book.streams[(symbol, interval)].groups)
        for w in res.writes:
            self._counts["fills"] += len(w.fills)
            self._counts["trades"] += len(w.trades)
        self._pending_candles += 1
        self._queue.put_nowait(("candle", res, received))
        for f in res.failures:
            self._on_failure(f)

    def _on_failure(self, f: Failure) -> None:
        from kit.store import events, strategies

        self._counts["strategy_failures"] += len(f.group.members)
        log.warning("strategy failed", extra={"strategy": repr(f.group.strategy), "members": len(f.group.members),
                                               "error": f.error[:300]})  # fmt: skip
        for m in list(f.group.members.values()):
            kw = {"level": "warning", "strategy_id": m.id, "user_id": m.user_id}
            if m in f.paused:
                self.book.remove(m.id)
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
                self._pending_candles -= len(received)
                self._counts["commits"] += 1
            for fn, *args, kw in ops:
                await self._db(lambda fn=fn, args=args, kw=kw: fn(*args, **kw))

    # ----- heartbeats, status, metrics -------------------------------------------------------

    async def _heartbeats(self) -> None:
        from kit.store import events

        while True:
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
        """Feed connected and database reachable."""
        return bool(self._db_ok and self._feed_connected())

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
        st: dict[str, Any] = {
            "daemon_id": self.config.daemon_id,
            "started_at": self.started_at.isoformat(),
            "uptime_s": round(time.monotonic() - self._t0, 1),
            "ready": self.ready(),
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
            "commits": c["commits"],
            "queue": self._pending_candles,
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
            }
            for s in self.book.streams.values()
        ]
        st["strategy_detail"] = [
            {"id": m.id, "user": self._user_names.get(m.user_id, str(m.user_id)), "name": m.name, "version": m.version,
             "checkpoint": m.checkpoint, "position": m.broker.state.position, "fills": m.fills, "trades": m.trades,
             "failures": m.failures, "last_signal": m.last_signal}
            for m in self.book.members.values()
        ]  # fmt: skip
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
            ("kit_daemon_ready", "gauge", "1 when feed and database are up", [({}, int(self.ready()))]),
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
            ("kit_daemon_write_queue", "gauge", "closed candles not yet committed", [({}, self._pending_candles)]),
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


async def _run(config: DaemonConfig) -> None:
    await Daemon(config).run()


def run(config: DaemonConfig | None = None) -> None:
    """Run the daemon in the foreground until SIGTERM/SIGINT."""
    asyncio.run(_run(config or DaemonConfig()))
