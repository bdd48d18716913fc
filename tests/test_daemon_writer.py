"""The daemon's writer alone: no socket, no database (the commit and the database runner are plain
functions that record what they are given)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kit.daemon._records import CandleResult
from kit.daemon._writer import Writer
from kit.store.ledger import CandleWrite


def _candle(t: int, *, fill: bool = False, advance: tuple[int, ...] = ()) -> CandleResult:
    writes = [CandleWrite(1, 1, t, 1, fills=[{"seq": 0, "side": "buy", "size": 1.0, "price": 1.0, "fee": 0.0}])]
    return CandleResult(writes if fill else [], list(advance), [], t)


class Recorder:
    """Stands in for the database: records each commit and op in order; ``gate`` holds them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def run_db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        await self.gate.wait()
        return fn(*args, **kwargs)

    def commit(self, store: Any, writes: list[CandleWrite], advance: list[tuple[int, list[int]]]) -> None:
        self.calls.append(("commit", ([w.open_time for w in writes], advance)))

    def op(self, name: str, *, level: str = "info") -> None:
        self.calls.append(("op", (name, level)))


def test_a_batch_of_candles_is_one_commit_in_order_then_its_ops():
    async def main() -> tuple[Recorder, Writer]:
        rec = Recorder()
        w = Writer("store", rec.run_db, commit=rec.commit)
        w.candle(_candle(60, fill=True), 1.0)
        w.op(rec.op, "failed", level="warning")
        w.candle(_candle(120, advance=(2, 3)), 1.0)
        w.candle(_candle(180, fill=True, advance=(2,)), 1.0)
        w.stop()
        await w.run()
        return rec, w

    rec, w = asyncio.run(main())
    assert rec.calls == [("commit", ([60, 180], [(120, [2, 3]), (180, [2])])), ("op", ("failed", "warning"))]
    assert w.waiting == 0 and w.commits == 1 and len(w.latency) == 3


def test_a_candle_with_nothing_to_write_is_never_counted_as_waiting():
    async def main() -> tuple[Recorder, Writer]:
        rec = Recorder()
        w = Writer("store", rec.run_db, commit=rec.commit)
        for t in range(0, 1600 * 60, 60):  # warm-up candles replayed at a restart
            w.candle(_candle(t), 1.0)
        assert w.waiting == 0
        w.stop()
        await w.run()
        return rec, w

    rec, w = asyncio.run(main())
    assert rec.calls == [] and w.waiting == 0 and w.commits == 0


def test_while_the_database_holds_a_commit_the_candles_wait_and_the_lag_grows():
    async def main() -> None:
        rec = Recorder()
        rec.gate.clear()  # the database is not answering
        w = Writer("store", rec.run_db, commit=rec.commit)
        task = asyncio.create_task(w.run())
        loop = asyncio.get_running_loop()
        w.candle(_candle(60, fill=True), loop.time())
        await asyncio.sleep(0.05)
        w.candle(_candle(120, fill=True), loop.time())  # arrives while the first is being committed
        assert w.waiting == 2 and w.lag() >= 0.05
        rec.gate.set()
        w.stop()
        await task
        assert w.waiting == 0 and w.lag() == 0.0
        assert rec.calls == [("commit", ([60], [])), ("commit", ([120], []))]

    asyncio.run(main())


def test_a_failed_commit_ends_the_writer_and_nothing_after_it_is_written():
    def broken(*_a: Any) -> None:
        raise RuntimeError("disk full")

    async def main() -> Writer:
        rec = Recorder()
        w = Writer("store", rec.run_db, commit=broken)
        w.candle(_candle(60, fill=True), 1.0)
        w.op(rec.op, "after")
        with pytest.raises(RuntimeError, match="disk full"):
            await w.run()
        assert rec.calls == []  # the op queued after the candle was not run either
        return w

    assert asyncio.run(main()).waiting == 1  # still waiting: /ready reports it, a restart replays it
