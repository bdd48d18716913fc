"""Alerts in the daemon: evaluated once per stream on closed candles, recorded exactly once.

:func:`crossed` and :class:`AlertBook` are the pure core (no I/O): given the previous and the
current values of an alert's two sides, did it cross? :class:`AlertWatch` keeps the book in step
with the ``alerts`` table (polled like the strategies table, so alerts are picked up without a
restart), subscribes the engine for every stream that has an alert (the engine computes each
indicator once per stream, whoever else reads it), and hands each candle's fires and checkpoints
to the writer: one transaction per candle (:func:`kit.store.alerts.record_for_daemon`), after
which the webhook worker is woken.

A crossing needs two candles, so a restart replays the stream from before the alerts' oldest
checkpoint: candles at or before an alert's checkpoint only set its previous values; later ones
can fire it. Together with the ``(alert, candle)`` key this means a crossing is never lost to a
crash and never recorded twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kit.daemon._book import describe
from kit.daemon._health import StreamHealth
from kit.daemon._supervisor import Supervisor
from kit.daemon._writer import RunDb, Writer
from kit.engine import IndicatorEngine, Row
from kit.indicators import IndicatorSpec
from kit.market.intervals import interval_ms
from kit.store import Store, alerts
from kit.store.models import AlertRecord

log = logging.getLogger("kit.daemon")

StreamKey = tuple[str, str]


def crossed(prev: tuple[float, float] | None, cur: tuple[float, float], direction: str) -> bool:
    """Did ``a`` cross ``b`` between the previous candle and this one?

    Up: ``a`` was below ``b`` and is now at or above it; down: the mirror; either: one of them.
    Touching the level and going back does not count twice: a side that sits exactly on ``b``
    has not crossed yet. No previous values, or a NaN (indicator warm-up), never crosses.
    """
    if prev is None:
        return False
    (pa, pb), (ca, cb) = prev, cur
    if not all(math.isfinite(x) for x in (pa, pb, ca, cb)):
        return False
    up = pa < pb and ca >= cb
    down = pa > pb and ca <= cb
    return up if direction == "up" else down if direction == "down" else up or down


def side_value(
    values: Mapping[IndicatorSpec, Any], close: float, spec: IndicatorSpec | None, output: str | None
) -> float:
    """The value of one side of a condition on a row: the close, or an indicator (output)."""
    if spec is None:
        return float(close)
    v = values.get(spec)
    if v is None:
        return math.nan
    return float(getattr(v, output) if output else v)


@dataclass(slots=True)
class Watch:
    """One alert as the book evaluates it; ``prev`` is the last candle's ``(a, b)``."""

    id: int
    user_id: int
    version: int
    direction: str
    once: bool
    checked: int
    level: float | None
    a: tuple[IndicatorSpec | None, str | None]
    b: tuple[IndicatorSpec | None, str | None] | None
    prev: tuple[float, float] | None = None

    @classmethod
    def of(cls, r: AlertRecord) -> Watch:
        assert r.id is not None and r.checked_time is not None
        b = None if r.other is None else alerts.subject_spec(r.other)
        return cls(r.id, r.user_id, r.version, r.direction, r.once, int(r.checked_time), r.level,
                   alerts.subject_spec(r.subject), b)  # fmt: skip

    def specs(self) -> set[IndicatorSpec]:
        return {s for s, _ in (self.a, self.b or (None, None)) if s is not None}


@dataclass
class AlertBook:
    """Alerts by stream, and their evaluation on a closed row. Pure: no I/O."""

    streams: dict[StreamKey, dict[int, Watch]] = field(default_factory=dict)

    def put(self, skey: StreamKey, w: Watch) -> None:
        self.remove(w.id)
        self.streams.setdefault(skey, {})[w.id] = w

    def remove(self, aid: int) -> None:
        for skey, ws in list(self.streams.items()):
            if ws.pop(aid, None) is not None and not ws:
                del self.streams[skey]

    def get(self, aid: int) -> Watch | None:
        return next((ws[aid] for ws in self.streams.values() if aid in ws), None)

    def specs(self, skey: StreamKey) -> frozenset[IndicatorSpec]:
        return frozenset(s for w in self.streams.get(skey, {}).values() for s in w.specs())

    def on_row(self, skey: StreamKey, open_time: int, close: float, values: Mapping[IndicatorSpec, Any]
               ) -> tuple[list[alerts.Fire], dict[int, int]]:  # fmt: skip
        """The fires on this closed candle, and the alerts whose checkpoint moves to it.

        A ``once`` alert that fires leaves the book at once (the same transaction switches it off).
        """
        fires: list[alerts.Fire] = []
        checked: dict[int, int] = {}
        for w in list(self.streams.get(skey, {}).values()):
            a = side_value(values, close, *w.a)
            b = w.level if w.b is None else side_value(values, close, *w.b)
            cur = (a, float(b if b is not None else math.nan))
            if open_time > w.checked:
                if crossed(w.prev, cur, w.direction):
                    fires.append(alerts.Fire(w.id, w.user_id, open_time, a))
                    if w.once:
                        self.remove(w.id)
                w.checked = open_time
                checked[w.id] = open_time
            w.prev = cur
        return fires, checked


class AlertWatch:
    """The alerts table -> the book; one engine subscription per alerted stream."""

    def __init__(
        self,
        store: Store,
        supervisor: Supervisor,
        writer: Writer,
        run_db: RunDb,
        server_now: Callable[[], Awaitable[int]],
        now_ms: Callable[[], int],
        counts: Counter[str],
        *,
        history: int,
        max_backfill: int,
        on_fired: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.book = AlertBook()
        self.engine: IndicatorEngine | None = None
        self._supervisor = supervisor
        self._writer = writer
        self._run_db = run_db
        self._server_now = server_now
        self._now_ms = now_ms
        self._counts = counts
        self._history = history
        self._max_backfill = max_backfill
        self._on_fired = on_fired
        self._known: dict[int, int] = {}  # alert id -> version last applied
        self._tasks: dict[StreamKey, tuple[frozenset[IndicatorSpec], asyncio.Task[None]]] = {}
        self._health: dict[StreamKey, StreamHealth] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def count(self) -> int:
        """Alerts being evaluated now."""
        return sum(len(ws) for ws in self.book.streams.values())

    def health(self) -> dict[str, StreamHealth]:
        """Health of the alert subscriptions running now, by ``alerts SYMBOL/interval`` (for ``/ready``)."""
        return {f"alerts {s}/{i}": h for (s, i), h in self._health.items() if (s, i) in self._tasks}

    async def load(self) -> None:
        """Pick up every active alert and subscribe their streams."""
        self._loop = asyncio.get_running_loop()
        await self._apply(await self._run_db(alerts.start_for_daemon, self.store, await self._server_now()))

    async def poll(self) -> None:
        """Apply added, changed, switched-off and removed alerts since the last poll."""
        versions = await self._run_db(alerts.versions_for_daemon, self.store)
        if versions == self._known:
            return
        await self._apply(await self._run_db(alerts.start_for_daemon, self.store, await self._server_now()))

    async def _apply(self, recs: list[AlertRecord]) -> None:
        live = {r.id: r for r in recs}
        for aid in [a for a in self._known if a not in live]:
            self.book.remove(aid)
            log.info("alert stopped", extra={"alert_id": aid})
        for aid, r in live.items():
            assert aid is not None
            w = self.book.get(aid)
            if w is not None and w.version == r.version:
                continue
            if w is None and aid in self._known and self._known[aid] == r.version:
                continue  # fired once and left the book: its switch-off is being written
            try:
                self.book.put((r.symbol, r.interval), Watch.of(r))
            except Exception as exc:  # validated on add; a hand-edited row must not stop the daemon
                log.error("alert cannot be evaluated", extra={"alert_id": aid, "error": describe(exc)[:300]})
                continue
            log.info("alert started", extra={"alert_id": aid, "stream": f"{r.symbol}/{r.interval}"})
        self._known = {aid: r.version for aid, r in live.items() if aid is not None}
        self._sync()

    def _sync(self) -> None:
        for skey in [k for k in self._tasks if k not in self.book.streams]:
            self._tasks.pop(skey)[1].cancel()
        for skey in self.book.streams:
            specs = self.book.specs(skey)
            have = self._tasks.get(skey)
            if have is not None and not have[1].done() and have[0] >= specs:
                continue
            if have is not None:
                have[1].cancel()  # a new indicator: resubscribe, replaying from the checkpoints
            task = self._supervisor.spawn(f"alerts {skey[0]}/{skey[1]}", self._run(skey, specs))
            self._tasks[skey] = (specs, task)

    async def close(self) -> None:
        tasks = [t for _, t in self._tasks.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def _backfill(self, skey: StreamKey) -> int:
        """Candles to replay: back to the oldest checkpoint (+2 for the previous values), capped."""
        ws = self.book.streams.get(skey, {})
        oldest = min((w.checked for w in ws.values()), default=None)
        if oldest is None:
            return 2
        missed = max(0, (self._now_ms() - oldest) // interval_ms(skey[1]))
        return int(min(self._max_backfill, max(2, missed + 2)))

    async def _run(self, skey: StreamKey, specs: frozenset[IndicatorSpec]) -> None:
        assert self.engine is not None
        symbol, interval = skey
        health = self._health.setdefault(skey, StreamHealth())
        while skey in self.book.streams:
            for w in self.book.streams[skey].values():
                w.prev = None  # a (re)subscription replays from before the checkpoints
            try:
                async with self.engine.subscribe(symbol, interval, sorted(specs, key=str),
                                                 history=self._backfill(skey)) as sub:  # fmt: skip
                    for i, row in enumerate(sub.history):
                        self._on_row(skey, row)
                        if i % 50 == 49:
                            await asyncio.sleep(0)
                    health.ok()
                    async for row in sub:
                        if row.closed:
                            self._on_row(skey, row)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                n = health.failed(describe(exc))
                self._counts["alert_stream_failures"] += 1
                where = {"stream": f"{symbol}/{interval}", "failures": n, "error": health.last_error}
                log.warning("alert stream failed; resubscribing", extra=where)
                await asyncio.sleep(min(30.0, 2.0 ** (n - 1)))

    def _on_row(self, skey: StreamKey, row: Row) -> None:
        c = row.candle
        fires, checked = self.book.on_row(skey, int(c.open_time), float(c.close), row.values)
        if fires:
            self._counts["alerts_fired"] += len(fires)
            log.info("alerts fired", extra={"stream": f"{skey[0]}/{skey[1]}", "alerts": [f.alert_id for f in fires]})
        if fires or checked:
            self._writer.op(self._record, fires, checked)

    def _record(self, fires: list[alerts.Fire], checked: dict[int, int]) -> None:
        """In the writer's database thread: commit, then wake the webhook worker."""
        new = alerts.record_for_daemon(self.store, fires, checked)
        if new and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_fired)
