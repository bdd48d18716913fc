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

The parts, each in its module: :class:`~kit.daemon._supervisor.Supervisor` (crash-only tasks),
:class:`~kit.daemon._writer.Writer` (the typed write queue), :class:`~kit.daemon._streams.Streams`
(one subscription task per stream), :class:`~kit.daemon._reconciler.Reconciler` (the strategies
table -> the book, and the verdicts on strategies), :mod:`kit.daemon._report` (``/status``,
``/metrics``). This class wires them, owns the database runner and the lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from kit.daemon import _report
from kit.daemon._alerts import AlertWatch
from kit.daemon._book import Book, describe
from kit.daemon._config import DaemonConfig
from kit.daemon._guard import InHand
from kit.daemon._health import FaultPlan, Health, TaskFailed, assess
from kit.daemon._live import LiveDesk
from kit.daemon._reconciler import Reconciler
from kit.daemon._records import CandleResult
from kit.daemon._shards import Shards
from kit.daemon._status import StatusServer
from kit.daemon._streams import Streams
from kit.daemon._supervisor import Supervisor
from kit.daemon._webhooks import Webhooks
from kit.daemon._writer import Writer
from kit.engine import IndicatorEngine, Row
from kit.feed import Feed
from kit.settings import Settings, _ws_twin
from kit.store import Store, events

log = logging.getLogger("kit.daemon")

_DB_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError)


class DaemonFailed(RuntimeError):
    """The daemon stopped because one of its tasks failed (already logged with its traceback)."""


def _is_db_down(exc: BaseException) -> bool:
    if isinstance(exc, _DB_ERRORS):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


class Daemon:
    """Runs every active strategy of every user. ``await Daemon(config).run()`` until stopped."""

    def __init__(self, config: DaemonConfig | None = None) -> None:
        self.config = config or DaemonConfig()
        s = self._settings = Settings.from_env()
        self.database_url = self.config.database_url or s.database_url
        self.exchange_url = self.config.exchange_url or s.exchange_url
        self.exchange_ws_url = self.config.exchange_ws_url or (
            s.exchange_ws_url if self.config.exchange_url is None else None
        )
        if self.exchange_ws_url is None:
            self.exchange_ws_url = _ws_twin(self.exchange_url)
        self.book = Book(
            max_failures=self.config.max_failures,
            eval_timeout=self.config.eval_timeout,
            kill_after=self.config.eval_kill_after,
            keep=self.config.history,
        )
        self.store = Store(self.database_url)  # no connection until the first query
        # The daemon holds the exchange connection itself (a Feed: its REST clock and connection
        # figures feed /ready); strategies read it through the engine, typed on kit.feed.CandleSource.
        self.feed: Feed | None = None
        self.engine: IndicatorEngine | None = None
        self.status_server: StatusServer | None = None
        self.status_port: int | None = None
        self.guard_path = s.data_dir / "daemon" / f"in-hand-{_url_id(self.database_url)}.bin"
        self.started_at = datetime.now(UTC)
        self._t0 = time.monotonic()
        self._stop = asyncio.Event()
        self.db_ok = False
        self.db_waits = 0
        self.counts: Counter[str] = Counter()
        self._server_offset_ms = 0
        self._lock: Any = None
        self._guard: InHand | None = None
        self._fault = FaultPlan.from_env()
        self.supervisor = Supervisor(self.stop)
        self.writer = Writer(self.store, self._db, fault=self._fault)
        self.streams = Streams(self.book, self.config, self.supervisor, self._on_row, self._now_ms, self.counts)
        self.reconciler = Reconciler(self.store, self.book, self.writer, self.streams, self._db, self._server_now,
                                     self.counts, strategy_modules=s.strategy_module_prefixes)  # fmt: skip
        # Alerts: their own engine subscriptions and table poll; fires go through the writer, and
        # the webhook worker posts them apart from everything on the hot path.
        self.webhooks = Webhooks(self.store, self._db, self.counts, poll=self.config.poll_every)
        self.alerts = AlertWatch(self.store, self.supervisor, self.writer, self._db, self._server_now, self._now_ms,
                                 self.counts, history=self.config.history, max_backfill=self.config.max_backfill,
                                 on_fired=self.webhooks.wake)  # fmt: skip
        # Live strategies' orders on the exchange with their owners' keys (kit.daemon._live).
        self.live = LiveDesk(self.store, self._db, self.exchange_url, self.counts, is_current=self._is_current,
                             pause=self.reconciler.pause_live)  # fmt: skip
        self.reconciler.live = self.live
        # KIT_SHARDS (PostgreSQL): leases on shards instead of the one-daemon lock (kit.daemon._shards).
        self.shards: Shards | None = None
        if s.shards:
            self.shards = Shards(self.store, self.config.daemon_id, s.shards, s.lease_seconds,
                                 gained=self.reconciler.gain, lost=self.reconciler.lose)  # fmt: skip
            self.reconciler.owns = self.shards.owns
            self.writer.fence, self.writer.on_fenced = self.shards.current, self._fenced

    # ----- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the daemon to stop after the candle in hand (what SIGTERM/SIGINT do)."""
        self._stop.set()

    def uptime(self) -> float:
        return time.monotonic() - self._t0

    async def run(self) -> None:
        """Start, run until :meth:`stop` (or a signal), then shut down cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        aux: list[asyncio.Task[None]] = []
        if self.config.status_port is not None:
            self.status_server = StatusServer(
                self.config.status_host, self.config.status_port, status=self.status,
                ready=lambda: self.health().to_dict(), metrics=self.metrics,
                token=self._settings.status_token, allowed_hosts=self._settings.allowed_host_names,
            )  # fmt: skip
            self.status_port = await self.status_server.start()
            log.info("status server listening", extra={"port": self.status_port})
            aux.append(self.supervisor.spawn("status", self._watch_status()))
        await self._db(self.store.migrate)
        # Before the first trade: a second daemon on this database refuses to start (one-line error);
        # sharded, this daemon takes its first share of the leases instead.
        lock = self.store.daemon_lock() if self.shards is None else None
        try:
            if lock is not None:
                await asyncio.to_thread(lock.acquire)
            else:
                await self.shards.start(self._db)
        except BaseException:
            for t in aux:
                t.cancel()
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
        self.streams.engine = self.engine
        self.alerts.engine = self.engine
        writer = self.supervisor.spawn("writer", self.writer.run())
        aux.append(self.supervisor.spawn("live", self.live.run()))
        renewing: asyncio.Task[None] | None = None
        try:
            await self.reconciler.load(self._guard.verdict)
            await self.alerts.load()
            started = f"daemon {self.config.daemon_id} started with {len(self.book.members)} strategies"
            self.writer.op(events.record, self.store, "start", started)
            aux += [
                self.supervisor.spawn("poller", self._poller()),
                self.supervisor.spawn("heartbeat", self._heartbeats()),
                self.supervisor.spawn("held candles", self._held_candles()),
                self.supervisor.spawn("webhooks", self.webhooks.run()),
            ]
            if self.shards is not None:  # stopped after the writer: renewing while it drains
                renewing = self.supervisor.spawn("leases", self.shards.run())
            await self._stop.wait()
        finally:
            log.info("stopping: finishing the candle in hand and writing what is queued")
            for t in aux:
                t.cancel()
            await asyncio.gather(*aux, return_exceptions=True)
            await self.streams.close()
            await self.alerts.close()
            self.writer.stop()
            await asyncio.gather(writer, return_exceptions=True)  # a failed writer is already done
            if renewing is not None:
                renewing.cancel()
                await asyncio.gather(renewing, return_exceptions=True)
            if self.shards is not None:  # after the last write: the next owner resumes from it
                await self.shards.release()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(self._final_event), 5.0)
            await self.engine.close()
            await self.feed.stop()
            if self.status_server is not None:
                await self.status_server.stop()
            self._guard.close()
            if self._lock is not None:
                self._lock.release()
            self.store.dispose()
            log.info("stopped", extra={"candles": self.counts["candles"], "fills": self.counts["fills"]})
        if self.supervisor.failed is not None:
            name, exc = self.supervisor.failed
            raise DaemonFailed(f"task {name} failed: {describe(exc)}") from exc

    def _final_event(self) -> None:
        if self.supervisor.failed is None:
            events.record(self.store, "stop", f"daemon {self.config.daemon_id} stopped")
        else:
            name, exc = self.supervisor.failed
            events.record(self.store, "crash", f"daemon {self.config.daemon_id} stopped: task {name} failed: "
                          f"{describe(exc)}", level="error")  # fmt: skip

    # ----- the database, with waiting and retrying -------------------------------------------

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a thread; while the database is unavailable, wait and retry forever."""
        delay = 0.2
        while True:
            try:
                out = await asyncio.to_thread(fn, *args, **kwargs)
                if not self.db_ok:
                    if self.db_waits:
                        log.warning("database reachable again")
                    self.db_ok = True
                return out
            except Exception as exc:
                if not _is_db_down(exc):
                    raise
                if self.db_ok or self.db_waits == 0:
                    log.warning("database unavailable; retrying", extra={"error": str(exc).splitlines()[0][:200]})
                self.db_ok = False
                self.db_waits += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.db_retry_max)

    # ----- the exchange's clock --------------------------------------------------------------

    async def _server_now(self) -> int:
        """The exchange's time (ms), measured now; its offset is kept for :meth:`_now_ms`."""
        try:
            server = await asyncio.to_thread(self.feed.rest.server_time)
            self._server_offset_ms = int(server) - int(time.time() * 1000)
        except Exception as exc:
            log.warning("exchange time unavailable", extra={"error": str(exc)[:200]})
        return self._now_ms()

    def _is_current(self, strategy_id: int, open_time: int) -> bool:
        """Whether ``open_time`` is the newest closed candle of the strategy's stream (a live order's test)."""
        skey = self.book.stream_of(strategy_id)
        stream = self.book.streams.get(skey) if skey is not None else None
        return stream is not None and stream.last_time == open_time

    def _now_ms(self) -> int:
        return int(time.time() * 1000) + self._server_offset_ms

    # ----- the supervised tasks besides the writer and the streams -------------------------------

    async def _poller(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_every)
            if self._fault is not None:
                self._fault.check("poller")
            await self.reconciler.poll()
            await self.alerts.poll()

    async def _heartbeats(self) -> None:
        while True:
            if self._fault is not None:
                self._fault.check("heartbeat")
            st = self.status(brief=True)
            await self._db(
                events.heartbeat, self.store, self.config.daemon_id, self.started_at.replace(tzinfo=None), st
            )
            log.info("status", extra={k: st[k] for k in _report.LOGGED})
            now = datetime.now(UTC).replace(tzinfo=None)
            hb, ev = await self._db(
                events.prune, self.store,
                heartbeats_older_than=now - timedelta(days=self.config.keep_heartbeats_days),
                events_older_than=now - timedelta(days=self.config.keep_events_days),
            )  # fmt: skip
            if hb or ev:
                log.info("pruned old operator rows", extra={"heartbeats": hb, "events": ev})
            await asyncio.sleep(self.config.heartbeat_every)

    async def _watch_status(self) -> None:
        """The status server's supervisor: its listening socket must stay open."""
        assert self.status_server is not None
        while True:
            await asyncio.sleep(1.0)
            if self._fault is not None:
                self._fault.check("status")
            if not self.status_server.serving:
                raise RuntimeError("the status server stopped listening")

    def _fenced(self, shards: tuple[int, ...]) -> None:
        """The writer's commit was refused for ``shards``: stop their strategies at once."""
        assert self.shards is not None
        self.shards.fenced(shards)
        self.reconciler.lose()

    # ----- the hot path ----------------------------------------------------------------------

    def _on_row(self, symbol: str, interval: str, row: Row) -> None:
        received = time.monotonic()
        try:
            if self._fault is not None:
                self._fault.check("stream")
            res = self.book.on_row(symbol, interval, row.candle, row.values)
            if res is None:
                return
            self.counts["candles"] += 1
            self.counts["analyses"] += len(self.book.streams[(symbol, interval)].groups)
            for r in (res, *self.book.drain()):  # and candles of other streams this one released
                self._hand_over(r, received)
        except Exception as exc:  # the book contains strategies' failures: anything here is a bug
            raise TaskFailed(f"processing a {symbol}/{interval} candle failed") from exc

    def _hand_over(self, res: CandleResult, received: float) -> None:
        """A processed candle's writes to the writer, its failures to the reconciler."""
        for w in res.writes:
            self.counts["fills"] += len(w.fills)
            self.counts["trades"] += len(w.trades)
        self.writer.candle(res, received)
        if res.live:
            self.live.on_candle(res.live)
        for f in res.failures:
            self.reconciler.on_failure(f)

    async def _held_candles(self) -> None:
        """Strategies over several streams: evaluate candles held for a live but silent stream (an outage)."""
        wait = self.config.stream_wait
        while True:
            await asyncio.sleep(min(1.0, wait / 4))
            now = time.monotonic()
            for res in self.book.give_up_waiting(now, wait):
                self._hand_over(res, now)

    # ----- health, status, metrics -----------------------------------------------------------

    def ready(self) -> bool:
        """Nothing fails: see :meth:`health`."""
        return self.health().ready

    def health(self) -> Health:
        """The verdict ``/ready`` serves: ok, or degraded/down with the reasons (:func:`assess`)."""
        failed = self.supervisor.failed
        return assess(
            failed_task=failed[0] if failed else None,
            stopping=self._stop.is_set(),
            db_ok=self.db_ok,
            feed_connected=self.feed_connected(),
            streams={**self.streams.health(), **self.alerts.health()},
            write_queue=self.writer.waiting,
            write_lag_s=self.writer.lag(),
            max_write_lag=self.config.max_write_lag,
            cannot_load=self.reconciler.cannot_load_reasons(),
            failing=self.reconciler.failing_reasons(),
        )

    def feed_connected(self) -> bool:
        if self.feed is None:
            return False
        try:
            return self.feed.stats()["connections"] > 0
        except Exception:
            return False

    def status(self, brief: bool = False) -> dict[str, Any]:
        """The ``/status`` document (``brief``: the heartbeat's summary)."""
        st = _report.status(self, brief)
        c = self.counts
        st["alerts"] = {"evaluated": self.alerts.count, "fired": c["alerts_fired"],
                        "delivered": c["webhooks_delivered"], "failed": c["webhook_failures"]}  # fmt: skip
        return st

    def metrics(self) -> str:
        """Prometheus text for ``/metrics``."""
        return _report.metrics(self)


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
