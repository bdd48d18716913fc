"""IndicatorEngine: one upstream subscription and one indicator state per (symbol, interval)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from kit.engine._state import Row, StreamState, as_spec
from kit.feed import BaseSubscription, CandleSource, Lifecycle
from kit.indicators import IndicatorSpec
from kit.market.intervals import validate_interval, validate_symbol

log = logging.getLogger("kit.engine")


class EngineSubscription(BaseSubscription):
    """One subscriber of one stream: ``async with`` to join, ``async for row in sub`` to read.

    ``history`` (set on entering) holds the last ``history`` closed rows, its specs warmed; the
    rows yielded next continue from there without a gap. Forming rows (``closed=False``) are
    yielded only with ``forming=True``, and only the latest one (a viewer wants the present).
    Its life is a :class:`~kit.feed.Lifecycle`, as a feed subscription's.

    Subscribers do not have queues of their own: each reads the stream's shared log of closed
    rows at its own cursor, so publishing a row costs the same for 1 or 10,000 subscribers. A
    subscriber more than ``max_queue`` rows behind skips ahead (counted in ``dropped``).
    """

    __slots__ = (
        "_cursor",
        "_engine",
        "_forming_seen",
        "_stream",
        "dropped",
        "forming",
        "history",
        "history_size",
        "interval",
        "specs",
        "symbol",
    )

    def __init__(
        self,
        engine: IndicatorEngine,
        symbol: str,
        interval: str,
        specs: tuple[IndicatorSpec, ...],
        history: int,
        forming: bool,
    ) -> None:
        super().__init__()
        self._engine = engine
        self.symbol = symbol
        self.interval = interval
        self.specs = specs
        self.history_size = history
        self.forming = forming
        #: the last ``history`` closed rows at the moment of joining
        self.history: list[Row] = []
        #: closed rows skipped because this subscriber fell more than ``max_queue`` rows behind
        self.dropped = 0
        self._stream: _LiveStream | None = None
        self._cursor = 0
        self._forming_seen = -1

    def __repr__(self) -> str:
        return f"EngineSubscription({self.symbol} {self.interval}, specs={len(self.specs)}, {self.state.value})"

    # -- lifecycle (BaseSubscription): closing leaves the stream; specs nobody else uses are dropped,
    # and the upstream subscription is closed when this was the stream's last subscriber.
    async def _attach(self) -> None:
        await self._engine.attach(self)

    def _detach(self, attached: bool) -> None:
        self._engine.detach(self)

    def add(self, *specs: IndicatorSpec | str) -> None:
        """Also follow ``specs`` from now on; new ones are warmed from the stream's kept rows (and
        appear in the ``values`` of ``history`` rows too)."""
        if self._stream is None or self.closed:
            raise RuntimeError("add() needs an active subscription (inside `async with`)")
        new = [s for s in (as_spec(x) for x in specs) if s not in self.specs]
        self._stream.state.add_specs(new)
        self.specs = (*self.specs, *new)

    @property
    def queued(self) -> int:
        """Closed rows waiting to be read (at most what the stream still keeps for laggards)."""
        st = self._stream
        return 0 if st is None else max(0, st.base + len(st.log) - max(self._cursor, st.base))

    @property
    def stream(self) -> _LiveStream | None:
        """The engine stream this subscription reads (None until it has joined)."""
        return self._stream

    def join(self, stream: _LiveStream, history: list[Row]) -> None:
        """Read ``stream`` from its next row on, after ``history`` (the engine calls this on entering)."""
        self.history = history
        self._stream = stream
        self._cursor = stream.base + len(stream.log)

    async def __anext__(self) -> Row:
        if self.state is Lifecycle.NEW:
            await self.start()
        while True:
            st = self._stream
            if st is None or self.closed:
                raise StopAsyncIteration
            log = st.log
            base = st.base
            c = self._cursor
            if c < base + len(log):
                if c < base:
                    self.dropped += base - c
                    c = base
                self._cursor = c + 1
                return log[c - base]
            if self.forming and st.forming is not None and st.forming_seq != self._forming_seen:
                self._forming_seen = st.forming_seq
                return st.forming
            if st.error is not None:
                raise st.error
            if st.ended:
                raise StopAsyncIteration
            fut = st.waiter
            if fut is None:
                fut = st.waiter = asyncio.get_running_loop().create_future()
            try:
                await fut  # one future shared by every waiting subscriber of the stream
            except asyncio.CancelledError:
                # Cancelling a task that awaits a future cancels the future, i.e. wakes every other
                # waiter with CancelledError: only the task that was really cancelled stops.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                if st.waiter is fut:
                    st.waiter = None


class _LiveStream:
    """A StreamState fed by one upstream subscription; publishes rows to a log all subscribers read."""

    def __init__(self, engine: IndicatorEngine, symbol: str, interval: str, upstream_history: int) -> None:
        # Rows go to subscribers through a shared log; the task below reads the one upstream.
        self.engine = engine
        self.state = StreamState(symbol, interval, keep=max(engine.keep, upstream_history))
        self.subs: dict[EngineSubscription, None] = {}  # insertion-ordered set
        self.pending = 0  # subscribers waiting for the stream to be ready
        self.forming_subs = 0
        self.ready = asyncio.Event()
        self.error: BaseException | None = None
        self.ended = False  # the source ran out (a finite replay)
        #: closed rows published; ``log[i]`` has sequence number ``base + i``
        self.log: list[Row] = []
        self.base = 0
        self.forming: Row | None = None
        self.forming_seq = 0
        self.waiter: asyncio.Future | None = None
        self.rows_published = 0
        self.upstream_history = upstream_history
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"kit-engine-{symbol}-{interval}")

    def wake(self) -> None:
        """Wake every subscriber waiting for a row."""
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def _publish(self, row: Row) -> None:
        log = self.log
        log.append(row)
        limit = self.engine.max_queue
        if len(log) >= 2 * limit:  # amortised trim: keep the last max_queue rows for laggards
            cut = len(log) - limit
            del log[:cut]
            self.base += cut
        self.forming = None  # superseded by its candle's closed row
        self.rows_published += 1
        self.wake()

    async def _run(self) -> None:
        st = self.state
        try:
            async with self.engine.feed.subscribe(
                st.symbol, st.interval, history=self.upstream_history, mode="lossless"
            ) as up:
                seen = 0
                async for ev in up:
                    if ev.is_gap:
                        continue
                    if ev.closed:
                        row = st.on_closed(ev.candle)
                        if row is not None:
                            seen += 1
                            if self.subs:
                                self._publish(row)
                    elif self.forming_subs and self.ready.is_set():
                        self.forming = st.on_forming(ev.candle)
                        self.forming_seq += 1
                        self.rows_published += 1
                        self.wake()
                    # Ready once the upstream history is in: caught up with what the source has
                    # queued (a Feed's ``queued``), or as many closed candles as were asked for.
                    if not self.ready.is_set() and (seen >= self.upstream_history or up.queued == 0):
                        self.ready.set()
            self.ended = True
            log.debug("engine stream source ended", extra={"stream": f"{st.symbol} {st.interval}"})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to every subscriber
            self.error = exc
        finally:
            self.ready.set()
            self.wake()
            if self.ended or self.error is not None:
                self.engine.drop_stream(self)


class IndicatorEngine:
    """Indicators computed once per stream, shared by every subscriber.

    Args:
        feed: the candle source, a :class:`kit.feed.CandleSource`: :class:`kit.feed.Feed` (live
            exchange, simulator, replay), :class:`kit.relay.RedisFeed`, or anything whose
            ``subscribe(symbol, interval, history=N, mode="lossless")`` yields feed events.
        keep: closed rows each stream remembers at least (warm-up of specs added later, and the
            upstream history asked for when a stream opens).
        max_queue: closed rows a slow subscriber may fall behind before it skips ahead (the
            stream keeps at most twice this many published rows).

    Per (symbol, interval) the engine holds one upstream subscription and one incremental
    state per unique spec any subscriber asked for; each closed candle updates each spec once
    and one :class:`Row` goes to every subscriber. Forming candles are peeked (no state
    change) only while a subscriber asked for ``forming=True``. Gap events are skipped: the
    indicators continue over a real outage as the batch functions do over a frame with
    missing rows. Nothing here is specific to live data.
    """

    def __init__(self, feed: CandleSource, *, keep: int = 1000, max_queue: int = 1000) -> None:
        if not isinstance(feed, CandleSource):
            raise ValueError(f"feed must be a candle source with subscribe() (a kit.feed.Feed), got {feed!r}")
        if int(keep) < 1:
            raise ValueError(f"keep must be >= 1, got {keep!r}")
        if int(max_queue) < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue!r}")
        self.feed = feed
        self.keep = int(keep)
        self.max_queue = int(max_queue)
        self._streams: dict[tuple[str, str], _LiveStream] = {}

    def __repr__(self) -> str:
        return f"IndicatorEngine(streams={len(self._streams)})"

    def subscribe(
        self,
        symbol: str,
        interval: str,
        specs: Iterable[IndicatorSpec | str] = (),
        *,
        history: int = 0,
        forming: bool = False,
    ) -> EngineSubscription:
        """Rows of ``symbol``'s ``interval`` stream with ``specs`` (specs or keys like ``"rsi(14)"``).

        ``history``: closed rows handed over on entering (``sub.history``), warmed: a stream
        opens by asking its source for ``max(keep, history + largest warm-up + 1)`` candles, and
        a spec new to a running stream is replayed over the rows the stream kept. A late
        subscriber asking for more history than the stream kept gets what it kept.
        ``forming``: also yield rows for forming candles (values peeked, ``closed=False``).

        Values depend on where a recursive indicator (EMA, RSI, ATR...) started: the engine
        starts at the first candle it was given, so its values equal the batch functions run
        over the same candles from that candle on.
        """
        sym = validate_symbol(symbol)
        itv = validate_interval(interval)
        if not isinstance(history, int) or isinstance(history, bool) or history < 0:
            raise ValueError(f"history must be an int >= 0, got {history!r}")
        seen: dict[IndicatorSpec, None] = {}
        for s in specs:
            seen[as_spec(s)] = None
        return EngineSubscription(self, sym, itv, tuple(seen), history, bool(forming))

    async def attach(self, sub: EngineSubscription) -> None:
        """Join ``sub`` to its stream (its ``start()`` calls this), opening the stream if needed."""
        key = (sub.symbol, sub.interval)
        warm = max((s.warmup for s in sub.specs), default=0)
        need = sub.history_size + warm + 1
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _LiveStream(self, sub.symbol, sub.interval, max(self.keep, need))
        stream.state.ensure_capacity(need)
        stream.pending += 1
        try:
            await stream.ready.wait()
        except asyncio.CancelledError:
            stream.pending -= 1
            self._maybe_drop(stream)  # nobody else may want this stream
            raise
        stream.pending -= 1
        if stream.error is not None:
            if not stream.subs and not stream.pending:
                self.drop_stream(stream)
            raise stream.error
        if sub.closed:  # closed while waiting
            self._maybe_drop(stream)
            return
        # From here to the end nothing awaits: history and live rows meet without a gap.
        stream.state.add_specs(sub.specs)
        sub.join(stream, stream.state.history(sub.history_size))
        if stream.ended:  # a finite source already ran out: history only
            stream.state.remove_specs(sub.specs)
            return
        stream.subs[sub] = None
        if sub.forming:
            stream.forming_subs += 1

    def detach(self, sub: EngineSubscription) -> None:
        """Take ``sub`` off its stream (its ``close()`` calls this)."""
        stream = sub.stream
        if stream is None:
            return
        if sub in stream.subs:
            del stream.subs[sub]
            if sub.forming:
                stream.forming_subs -= 1
            stream.state.remove_specs(sub.specs)
        stream.wake()  # a task of this subscriber blocked in __anext__ sees it closed
        self._maybe_drop(stream)

    def _maybe_drop(self, stream: _LiveStream) -> None:
        if not stream.subs and not stream.pending:
            self.drop_stream(stream)
            if not stream.task.done():
                stream.task.cancel()

    def drop_stream(self, stream: _LiveStream) -> None:
        """Forget ``stream`` (its source ended or failed, or nobody reads it)."""
        key = (stream.state.symbol, stream.state.interval)
        if self._streams.get(key) is stream:
            del self._streams[key]

    def state(self, symbol: str, interval: str) -> StreamState | None:
        """The live :class:`StreamState` of a stream (None if nobody subscribes to it)."""
        s = self._streams.get((validate_symbol(symbol), validate_interval(interval)))
        return s.state if s is not None else None

    async def close(self) -> None:
        """End every subscription and upstream subscription."""
        for stream in list(self._streams.values()):
            for sub in list(stream.subs):
                sub.close()
            stream.task.cancel()
            stream.wake()
            try:
                await stream.task
            except BaseException:
                pass
        self._streams.clear()

    async def __aenter__(self) -> IndicatorEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats(self) -> dict[str, Any]:
        """Streams, unique specs per stream, subscribers and indicator updates."""
        per = {}
        for (sym, itv), s in self._streams.items():
            per[f"{sym} {itv}"] = {
                "specs": len(s.state.slots),
                "subscribers": len(s.subs),
                "forming_subscribers": s.forming_subs,
                "candles": s.state.candles,
                "updates": s.state.updates,
                "rows_published": s.rows_published,
                "log_rows": len(s.log),
                "kept_rows": len(s.state.rows),
            }
        return {
            "streams": len(self._streams),
            "subscribers": sum(v["subscribers"] for v in per.values()),
            "unique_specs": sum(v["specs"] for v in per.values()),
            "updates": sum(v["updates"] for v in per.values()),
            "per_stream": per,
        }
