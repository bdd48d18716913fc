"""The daemon's writer: the one task that writes, in the order things happened.

Typed items go into one queue: :class:`CandleItem` (one closed candle's ledger writes),
:class:`OpItem` (a state verdict or an event, written after the candles of its batch) and
:data:`STOP`. The writer takes up to ``batch`` items at a time and commits every candle of the
batch in ONE transaction (:func:`kit.store.ledger.commit`), through ``run_db``, the daemon's
runner that waits and retries while the database is unavailable: nothing is dropped, the queue
waits. ``waiting`` counts the candles queued and not yet committed (what ``/status.queue`` shows);
``lag()`` is the age of the oldest, which tells whether the writer is behind.

A candle with nothing to write (a warm-up candle at or before every checkpoint) is never queued,
so it is never counted as waiting.

Sharded daemons: each candle is stamped, when queued, with the daemon's :class:`~kit.store.leases.Fence`
(the leases it acted under), and committed with it. A write the database refuses
(:class:`~kit.store.leases.FencingError`: a lease was lost) is reported through ``on_fenced`` and
the rest of the batch, for the shards still held, is committed; the refused rows are the new
owner's to replay from the checkpoint.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kit.daemon._health import FaultPlan
from kit.daemon._records import CandleResult
from kit.store import Store, ledger
from kit.store.leases import Fence, FencingError


@dataclass(frozen=True, slots=True)
class CandleItem:
    """One closed candle's writes, and when the candle was received (monotonic seconds)."""

    result: CandleResult
    received: float
    fence: Fence | None = None


@dataclass(frozen=True, slots=True)
class OpItem:
    """``fn(*args, **kwargs)`` in the database thread: a strategy's state, an event."""

    fn: Callable[..., object]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


class _Stop:
    """Commit what came before, then end."""


STOP = _Stop()
Item = CandleItem | OpItem | _Stop
#: ``run_db(fn, *args)``: run ``fn`` in a thread, waiting while the database is unavailable.
RunDb = Callable[..., Awaitable[Any]]


class Writer:
    """Commits queued items in order; ``await run()`` until :meth:`stop` has been written."""

    def __init__(
        self,
        store: Store,
        run_db: RunDb,
        *,
        commit: Callable[..., object] = ledger.commit,
        fault: FaultPlan | None = None,
        batch: int = 256,
        fence: Callable[[], Fence | None] | None = None,
        on_fenced: Callable[[tuple[int, ...]], None] | None = None,
    ) -> None:
        self.store = store
        self._run_db = run_db
        self._commit = commit
        self._fault = fault
        self._batch = batch
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._waiting: deque[float] = deque()  # when each queued candle was received, oldest first
        #: Seconds from a candle's arrival to its commit, the most recent 2048.
        self.latency: deque[float] = deque(maxlen=2048)
        self.commits = 0
        self.fence = fence
        self.on_fenced = on_fenced
        #: Strategy-candle writes the database refused because their lease was lost.
        self.fenced = 0

    # ----- what the other tasks call ---------------------------------------------------------

    def candle(self, result: CandleResult, received: float) -> None:
        """Queue a candle's writes; one with nothing to write is not queued (nothing waits on it)."""
        if result.writes or result.advance:
            self._waiting.append(received)
            self._queue.put_nowait(CandleItem(result, received, None if self.fence is None else self.fence()))

    def op(self, fn: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Queue ``fn(*args, **kwargs)``, run after the candles queued before it are committed."""
        self._queue.put_nowait(OpItem(fn, args, kwargs))

    def stop(self) -> None:
        self._queue.put_nowait(STOP)

    @property
    def waiting(self) -> int:
        """Closed candles queued and not committed yet."""
        return len(self._waiting)

    def lag(self, now: float | None = None) -> float:
        """Seconds the oldest waiting candle has waited (0 when none waits)."""
        return ((time.monotonic() if now is None else now) - self._waiting[0]) if self._waiting else 0.0

    # ----- the task --------------------------------------------------------------------------

    async def run(self) -> None:
        stopping = False
        while not stopping:
            items = [await self._queue.get()]
            if self._fault is not None:
                self._fault.check("writer")
            while not self._queue.empty() and len(items) < self._batch:
                items.append(self._queue.get_nowait())
            # one commit per run of candles stamped with the same leases (one, unless a lease changed)
            runs: list[tuple[Fence | None, list[ledger.CandleWrite], list[tuple[int, list[int]]]]] = []
            received: list[float] = []
            ops: list[OpItem] = []
            for item in items:
                if isinstance(item, CandleItem):
                    if not runs or runs[-1][0] is not item.fence:
                        runs.append((item.fence, [], []))
                    runs[-1][1].extend(item.result.writes)
                    if item.result.advance:
                        runs[-1][2].append((item.result.open_time, item.result.advance))
                    received.append(item.received)
                elif isinstance(item, OpItem):
                    ops.append(item)
                else:
                    stopping = True
            if received:
                for fence, writes, advance in runs:
                    await self._commit_fenced(fence, writes, advance)
                done = time.monotonic()
                self.latency.extend(done - t for t in received)
                self.commits += 1
                for _ in received:
                    self._waiting.popleft()
            for op in ops:
                await self._run_db(op.fn, *op.args, **op.kwargs)

    async def _commit_fenced(
        self, fence: Fence | None, writes: list[ledger.CandleWrite], advance: list[tuple[int, list[int]]]
    ) -> None:
        if fence is None:
            await self._run_db(self._commit, self.store, writes, advance)
            return
        while writes or advance:
            try:
                await self._run_db(self._commit, self.store, writes, advance, fence=fence)
                return
            except FencingError as exc:
                lost = set(exc.shards)
                kept = [w for w in writes if fence.shard(w.strategy_id) not in lost]
                self.fenced += len(writes) - len(kept) + sum(fence.shard(i) in lost for _, ids in advance for i in ids)
                writes = kept
                advance = [(t, a) for t, ids in advance if (a := [i for i in ids if fence.shard(i) not in lost])]
                if self.on_fenced is not None:
                    self.on_fenced(exc.shards)
