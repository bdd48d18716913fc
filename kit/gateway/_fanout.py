"""Fan-out: one engine subscription per (symbol, interval), each event encoded once per stream.

The :class:`Hub` holds, for every (symbol, interval) some client follows, one
:class:`kit.engine.EngineSubscription` (forming rows included) and a ring of its recent closed
rows; each client stream (a kline stream or one indicator's) is a set of :class:`Outbox` es.
A row is encoded once per stream and the same string is offered to every outbox: the cost of
an event is one encoding per stream plus one append per client.

An :class:`Outbox` is a client's bounded send queue. A client that lets ``max_queue`` messages
pile up is not allowed to grow memory or slow the others: its queue is replaced by one error
event and the connection is closed with :data:`CLOSE_SLOW` (the writer sends what is queued).

Resume (``since``): the ring and the live fan-out are updated in the same synchronous step, and
a client's history is queued and its outbox registered in one synchronous step too, so the
closed events it gets are exactly those after ``since``, once each, in order: no hole, no overlap.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from kit.engine import IndicatorEngine, Row
from kit.exchange._wire import kline_body
from kit.gateway._fault import FaultPlan
from kit.gateway._protocol import dumps
from kit.gateway._streams import Stream
from kit.market.intervals import next_open

log = logging.getLogger("kit.gateway.fanout")

#: WebSocket close codes the gateway uses (documented in the README).
CLOSE_SLOW = 4008  # the client fell max_queue messages behind
CLOSE_REVOKED = 4001  # its token was revoked
CLOSE_SOURCE_FAILED = 1011  # the stream's source failed (the gateway goes not-ready)


class SinceTooOld(Exception):
    """``since`` is older than the closed candles the gateway keeps for a stream."""

    def __init__(self, stream: Stream, oldest: int | None) -> None:
        super().__init__(
            f"since is older than the candles kept for {stream.name}"
            + (f" (oldest {oldest})" if oldest is not None else "")
            + "; read the rest from /api/v1/klines and subscribe with the last open time you have"
        )
        self.oldest = oldest


class Outbox:
    """A client's bounded send queue (no I/O: the connection's writer drains it).

    ``offer`` (live events) respects ``max_queue``; ``push`` (answers, resume history) does not:
    answers are bounded by the request rate, resume history by ``GatewayConfig.max_history``.
    """

    __slots__ = ("_wake", "close_code", "close_reason", "max_queue", "on_overflow", "queue", "sent")

    def __init__(self, max_queue: int, on_overflow: Callable[[], None] | None = None) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue!r}")
        self.max_queue = max_queue
        self.queue: deque[str] = deque()
        self._wake = asyncio.Event()
        #: set when the connection must close once the queue is sent
        self.close_code: int | None = None
        self.close_reason = ""
        self.on_overflow = on_overflow
        self.sent = 0

    def offer(self, msg: str) -> None:
        if self.close_code is not None:
            return
        if len(self.queue) >= self.max_queue:
            self.queue.clear()
            self.close(CLOSE_SLOW, f"too slow: {self.max_queue} messages queued", error_event=True)
            if self.on_overflow is not None:
                self.on_overflow()
            return
        self.queue.append(msg)
        self._wake.set()

    def push(self, msg: str) -> None:
        if self.close_code is None:
            self.queue.append(msg)
            self._wake.set()

    def close(self, code: int, reason: str, *, error_event: bool = False) -> None:
        """Close after what is queued (with an error event telling why first, if asked)."""
        if self.close_code is not None:
            return
        if error_event:
            self.queue.append(dumps({"error": {"code": code, "msg": reason}, "id": None}))
        self.close_code = code
        self.close_reason = reason
        self._wake.set()

    async def wait(self) -> None:
        """Until something is queued or the outbox is closing."""
        while not self.queue and self.close_code is None:
            self._wake.clear()
            await self._wake.wait()


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def encode(stream: Stream, row: Row) -> str:
    """The event of ``row`` on ``stream``: ``{"stream", "seq", "data"}``; ``seq`` is the candle's open time."""
    c = row.candle
    t = int(c[0])
    now = int(time.time() * 1000)
    if stream.spec is None:
        body = kline_body(stream.symbol, stream.interval, t, next_open(t, stream.interval), *c[1:6], row.closed)
        data = f'{{"e":"kline","E":{now},"s":"{stream.symbol}","k":{body}}}'
        return f'{{"stream":"{stream.name}","seq":{t},"data":{data}}}'
    v = row.values.get(stream.spec)
    if isinstance(v, tuple):  # a multi-output indicator's NamedTuple
        value: Any = {k: _num(x) for k, x in zip(stream.spec.outputs, v, strict=True)}
    else:
        value = _num(v)
    data = {
        "e": "indicator",
        "E": now,
        "s": stream.symbol,
        "i": stream.interval,
        "spec": stream.spec.key,
        "t": t,
        "x": row.closed,
        "v": value,
    }
    return dumps({"stream": stream.name, "seq": t, "data": data})


class _Source:
    """One (symbol, interval): an engine subscription, a ring of closed rows, the listening outboxes."""

    def __init__(self, hub: Hub, symbol: str, interval: str) -> None:
        self.hub = hub
        self.symbol = symbol
        self.interval = interval
        self.sub = hub.engine.subscribe(symbol, interval, history=hub.ring, forming=True)
        self.ring: deque[Row] = deque(maxlen=hub.ring)
        self.forming: Row | None = None
        self.listeners: dict[Stream, dict[Outbox, None]] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        self.idle_handle: asyncio.TimerHandle | None = None
        self.events = 0

    async def start(self) -> None:
        try:
            await self.sub.start()
        except BaseException as exc:
            self.ready.set_exception(exc)
            self.ready.exception()  # retrieved: every waiter re-raises it from `await ready`
            raise
        self.ring.extend(self.sub.history)
        self.ready.set_result(None)
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"kit-gateway-{self.symbol}-{self.interval}"
        )

    async def _run(self) -> None:
        try:
            fault = self.hub.fault
            async for row in self.sub:
                self.events += 1
                if fault is not None:
                    fault.check("source")
                if row.closed:
                    self.ring.append(row)
                    self.forming = None
                else:
                    self.forming = row
                offered = False
                for stream, boxes in self.listeners.items():
                    if boxes:
                        msg = encode(stream, row)
                        for box in list(boxes):
                            box.offer(msg)
                        offered = True
                if offered:
                    # Let the writers drain before the next row: after the loop was busy (a large
                    # resume), the engine hands over its backlog without suspending, and a burst
                    # must not overflow the queues of clients that read as fast as they can.
                    await asyncio.sleep(0)
            raise RuntimeError(f"the candle source of {self.symbol} {self.interval} ended")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.hub.source_failed(self, exc)

    def add_spec(self, stream: Stream) -> None:
        if stream.spec is not None and stream.spec not in self.sub.specs:
            self.sub.add(stream.spec)  # warmed over the engine's kept rows: the ring's rows gain it

    def history(self, stream: Stream, since: int) -> list[str]:
        ring = self.ring
        if ring and since < int(ring[0].candle[0]) and not self._covers(since):
            raise SinceTooOld(stream, int(ring[0].candle[0]))
        return [encode(stream, r) for r in ring if int(r.candle[0]) > since]

    def _covers(self, since: int) -> bool:
        # `since` is the last candle the client has: the ring must hold the one right after it.
        return next_open(since, self.interval) >= int(self.ring[0].candle[0])


class Hub:
    """Every stream clients follow, over one :class:`IndicatorEngine`.

    Args:
        engine: the engine over the process's feed (``shared_feed()`` or a ``RedisFeed``).
        ring: closed rows kept per (symbol, interval) for ``since`` (and asked of the engine).
        grace_s: seconds a (symbol, interval) nobody follows stays open (a reconnecting client
            resumes from its ring).
        fault: test-only fault injection (:mod:`kit.gateway._fault`).
    """

    def __init__(
        self, engine: IndicatorEngine, *, ring: int = 1000, grace_s: float = 60.0, fault: FaultPlan | None = None
    ) -> None:
        self.engine = engine
        self.fault = fault
        self.ring = int(ring)
        self.grace_s = float(grace_s)
        self._sources: dict[tuple[str, str], _Source] = {}
        #: the first failure of a running source: the gateway is then not ready, and exits
        self.failure: BaseException | None = None

    async def prepare(self, stream: Stream) -> None:
        """Open ``stream``'s source (waiting for its history) and add its indicator. May raise the
        source's error (an exchange that refuses the stream)."""
        src = self._sources.get(stream.source)
        if src is None:
            src = self._sources[stream.source] = _Source(self, stream.symbol, stream.interval)
            try:
                await src.start()
            except BaseException:
                self._sources.pop(stream.source, None)
                raise
        else:
            await asyncio.shield(src.ready)
        if self._sources.get(stream.source) is not src:
            raise RuntimeError(f"the source of {stream.name} closed while opening")
        src.add_spec(stream)

    def history(self, stream: Stream, since: int) -> list[str]:
        """The events of ``stream``'s closed candles after ``since`` (after :meth:`prepare`)."""
        return self._sources[stream.source].history(stream, since)

    def attach(self, stream: Stream, box: Outbox) -> None:
        """Offer ``stream``'s live events to ``box`` from now on (after :meth:`prepare`)."""
        src = self._sources[stream.source]
        if src.idle_handle is not None:
            src.idle_handle.cancel()
            src.idle_handle = None
        src.listeners.setdefault(stream, {})[box] = None

    def detach(self, stream: Stream, box: Outbox) -> None:
        src = self._sources.get(stream.source)
        if src is None:
            return
        boxes = src.listeners.get(stream)
        if boxes is not None:
            boxes.pop(box, None)
            if not boxes:
                del src.listeners[stream]
        if not src.listeners and src.idle_handle is None:
            loop = asyncio.get_running_loop()
            src.idle_handle = loop.call_later(self.grace_s, self._close_idle, src)

    def _close_idle(self, src: _Source) -> None:
        src.idle_handle = None
        if src.listeners or self._sources.get((src.symbol, src.interval)) is not src:
            return
        del self._sources[(src.symbol, src.interval)]
        self._stop(src)

    def _stop(self, src: _Source) -> None:
        if src.task is not None:
            src.task.cancel()
        src.sub.close()

    def source_failed(self, src: _Source, exc: BaseException) -> None:
        """A running source ended or raised: close its clients with 1011 and mark the gateway failed."""
        log.error(
            "stream source failed; the gateway is not ready",
            extra={"stream": f"{src.symbol} {src.interval}", "error": str(exc)},
        )
        if self.failure is None:
            self.failure = exc
        self._sources.pop((src.symbol, src.interval), None)
        for boxes in src.listeners.values():
            for box in boxes:
                box.close(CLOSE_SOURCE_FAILED, f"the source of {src.symbol} {src.interval} failed", error_event=True)
        src.listeners.clear()
        src.sub.close()

    def latest(self, symbol: str, interval: str) -> tuple[Row | None, Row | None]:
        """The last closed row and the forming row of an open (symbol, interval), else ``(None, None)``."""
        src = self._sources.get((symbol, interval))
        if src is None or not src.ready.done():
            return None, None
        return (src.ring[-1] if src.ring else None), src.forming

    def stats(self) -> dict[str, Any]:
        return {
            "sources": len(self._sources),
            "streams": sum(len(s.listeners) for s in self._sources.values()),
            "listeners": sum(len(b) for s in self._sources.values() for b in s.listeners.values()),
        }

    async def close(self) -> None:
        for src in list(self._sources.values()):
            if src.idle_handle is not None:
                src.idle_handle.cancel()
            self._stop(src)
        tasks = [s.task for s in self._sources.values() if s.task is not None]
        self._sources.clear()
        for t in tasks:
            try:
                await t
            except BaseException:
                pass
