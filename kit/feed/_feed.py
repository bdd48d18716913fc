"""The Feed: one process-wide market feed that many subscribers share."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from kit.errors import ConfigError, ExchangeError
from kit.feed._config import FeedConfig
from kit.feed._connection import Connection, ConnectionPool
from kit.feed._events import GapEvent, KlineEvent
from kit.feed._history import History
from kit.feed._logs import iso, log_bad_frame
from kit.feed._order import Action, Backfill, Drop, Seed
from kit.feed._rest import RestClient
from kit.feed._stream import Stream, stream_name
from kit.feed._subscription import Subscription, check_request
from kit.market.candle import Candle
from kit.settings import Settings

try:  # orjson parses kline frames ~2x faster; the stdlib is the fallback, not a requirement.
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - depends on the environment
    from json import loads as _loads

log = logging.getLogger("kit.feed")

# The feed's own counters; its connections count reconnects, stalls and control messages.
_COUNTERS = ("messages", "malformed", "invalid", "unknown_stream", "duplicates", "stale", "out_of_order",
             "backfilled", "gaps", "gap_candles", "lagging")  # fmt: skip


class Feed:
    """One shared market feed: a multiplexed exchange connection fanned out to subscribers.

    Args:
        ws_url: WebSocket base (``ws://127.0.0.1:9400``; Binance ``wss://stream.binance.com:9443``).
            Default: ``KIT_EXCHANGE_WS_URL`` (the ``ws://`` twin of ``KIT_EXCHANGE_URL``).
        rest_url: REST base for history and backfill. Default: ``KIT_EXCHANGE_URL``.
        stall_timeout: seconds without a frame (while streams are subscribed) before reconnecting.
        max_streams_per_connection: streams per WebSocket (Binance allows 1024); a second
            connection is opened only past it.
        max_queue: default bound of each subscription's queue (see :class:`Subscription`).
        backoff_initial, backoff_max: reconnect delay bounds in seconds (full jitter, doubling).
        backoff_reset: a connection that lived this many seconds resets the backoff.
        control_rate: SUBSCRIBE/UNSUBSCRIBE messages per second per connection (Binance: < 5).
        rest_concurrency: REST requests in flight at once (history, backfill).
        open_timeout: seconds to wait for the WebSocket handshake.
        catch_up_after: seconds after a reconnect at which a stream that has had no frame since
            is caught up over REST. Candles that closed while disconnected are normally found when
            the next frame reveals the hole; a quiet stream, or a replay that has ended, sends none.

    The feed's tasks live on the event loop it was started on (``async with feed`` or
    :meth:`start`): a plain ``asyncio.run`` program, Jupyter's running loop, or a Panel/Tornado
    server's loop all work; the library never starts a loop of its own. Its methods must be
    called from that loop. :func:`shared_feed` gives one feed per loop for notebooks and servers.
    """

    def __init__(
        self,
        ws_url: str | None = None,
        rest_url: str | None = None,
        *,
        stall_timeout: float = 60.0,
        max_streams_per_connection: int = 1024,
        max_queue: int = 10_000,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        backoff_reset: float = 30.0,
        control_rate: float = 4.0,
        rest_concurrency: int = 4,
        open_timeout: float = 10.0,
        catch_up_after: float = 5.0,
    ) -> None:
        if ws_url is None or rest_url is None:
            s = Settings.from_env()
            ws_url = s.exchange_ws_url if ws_url is None else ws_url
            rest_url = s.exchange_url if rest_url is None else rest_url
        self.config = FeedConfig(
            ws_url,
            rest_url,
            stall_timeout=stall_timeout,
            max_streams_per_connection=max_streams_per_connection,
            max_queue=max_queue,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            backoff_reset=backoff_reset,
            control_rate=control_rate,
            rest_concurrency=rest_concurrency,
            open_timeout=open_timeout,
            catch_up_after=catch_up_after,
        )
        self.ws_url = self.config.ws_url
        self.rest = RestClient(rest_url, max_retries=1)
        self.rest_url = self.rest.base_url
        self.max_queue = self.config.max_queue
        self._catch_ups: set[asyncio.Task] = set()
        self._history: History | None = None
        self._streams: dict[str, Stream] = {}
        self._conns = ConnectionPool(self.config, self._on_frame, self._schedule_catch_up)
        self._watchers: set[asyncio.Task] = set()
        self._counts: Counter[str] = Counter(dict.fromkeys(_COUNTERS, 0))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rate_mark = (time.monotonic(), 0)
        self._rate = 0.0

    def __repr__(self) -> str:
        return f"Feed({self.ws_url!r}, streams={len(self._streams)}, running={self.running})"

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._loop is not None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the feed runs on (None until started, and after :meth:`stop`)."""
        return self._loop

    async def start(self) -> Feed:
        """Bind the feed to the running loop. Idempotent; ``async with feed`` calls it."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return self
        if self._loop is not None:
            raise RuntimeError("this Feed runs on another event loop; use kit.feed.shared_feed() per loop")
        self._loop = loop
        self._history = History(
            self.rest,
            concurrency=self.config.rest_concurrency,
            backoff_initial=self.config.backoff_initial,
            backoff_max=self.config.backoff_max,
        )
        log.debug("feed started", extra={"ws_url": self.ws_url, "rest_url": self.rest_url})
        return self

    async def stop(self) -> None:
        """Close every subscription and connection. The feed can be started again afterwards."""
        if self._loop is None:
            return
        for task in list(self._catch_ups):
            task.cancel()
        for stream in list(self._streams.values()):
            stream.close()
        self._streams.clear()
        await self._conns.stop()
        self._loop = None

    async def run(self) -> None:
        """Start and keep running until cancelled (for ``pn.state.schedule_task`` and the like)."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> Feed:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- subscriptions ---------------------------------------------------------------------------
    def subscribe(
        self,
        symbol: str,
        interval: str,
        *,
        history: int = 0,
        mode: str = "lossless",
        gaps: bool = False,
        max_queue: int | None = None,
    ) -> Subscription:
        """A subscription to ``symbol``'s ``interval`` klines; use ``async with`` and ``async for``.

        Args:
            history: the last ``history`` closed candles are yielded first (from the feed's recent
                buffer or REST), then live events, with no hole and no overlap at the seam. An
                outage inside the window leaves fewer candles (and a GapEvent if ``gaps``).
            mode: ``"lossless"`` (every closed candle, even for a slow consumer) or
                ``"conflate"`` (closed candles plus only the latest forming update).
            gaps: also yield :class:`GapEvent` for ranges the exchange confirms empty.
            max_queue: bound of this subscription's queue (default: the feed's ``max_queue``).
        """
        symbol = check_request(symbol, interval, history, mode)
        mq = self.max_queue if max_queue is None else int(max_queue)
        if mq < 16:
            raise ConfigError(f"max_queue must be >= 16, got {max_queue!r}")
        return Subscription(self, symbol, interval, history=history, mode=mode, gaps=bool(gaps), max_queue=mq)

    def watch(
        self,
        symbol: str,
        interval: str,
        callback: Callable[[KlineEvent | GapEvent], object],
        **kwargs: Any,
    ) -> Subscription:
        """Call ``callback(event)`` for every event, from a task on the running loop; no ``async for``.

        For notebook cells and Panel sessions: ``sub = feed.watch("BTCUSDT", "1m", on_event,
        history=200, mode="conflate")`` then ``sub.close()`` (e.g. in ``on_session_destroyed``).
        ``kwargs`` are :meth:`subscribe`'s. A callback that raises is logged and keeps receiving;
        a coroutine function's result is awaited before the next event is taken.
        """
        sub = self.subscribe(symbol, interval, **kwargs)

        async def pump() -> None:
            async with sub:
                async for ev in sub:
                    try:
                        result = callback(ev)
                        if asyncio.iscoroutine(result):
                            await result
                    except Exception:
                        log.exception("a feed watch callback failed", extra={"stream": stream_name(symbol, interval)})

        self._spawn(pump(), f"kit-feed-watch-{stream_name(sub.symbol, interval)}")
        return sub

    async def attach(self, sub: Subscription) -> None:
        """Register ``sub`` (its ``start()`` calls this): every update after the stream's cursor,
        its history before it."""
        await self.start()
        if sub.closed:  # closed while the feed started
            return
        name = stream_name(sub.symbol, sub.interval)
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = Stream(sub.symbol, sub.interval)
            stream.conn = self._conns.assign(name)
            # Binance accepts a SUBSCRIBE to any well-formed name and then stays silent: ask
            # REST whether the symbol is listed, so a typo fails instead of waiting forever.
            self._spawn(self._check_symbol(stream), f"kit-feed-check-{name}")
        assert self._history is not None
        stream.join(sub, self._history)

    def detach(self, sub: Subscription) -> None:
        """Forget ``sub`` (its ``close()`` calls this); the last subscriber's leaving unsubscribes."""
        stream = self._streams.get(stream_name(sub.symbol, sub.interval))
        if stream is None or sub not in stream.subs:
            return
        stream.subs.remove(sub)
        if not stream.subs:
            # Last subscriber gone: UNSUBSCRIBE (reference counting) and forget the stream's state.
            del self._streams[stream.name]
            stream.close()
            if stream.conn is not None:
                stream.conn.discard(stream.name)

    def resync(self, sub: Subscription) -> None:
        """Re-attach a lagging lossless ``sub``: closed candles after its cursor up to the stream's."""
        stream = self._streams.get(stream_name(sub.symbol, sub.interval))
        if stream is not None and not sub.closed and sub in stream.subs:
            assert self._history is not None
            stream.resync(sub, self._history)

    def note_lagging(self, sub: Subscription) -> None:
        """A lossless ``sub`` was cut because its consumer lags (it calls this)."""
        self._counts["lagging"] += 1
        log.warning(
            "subscriber lags; it will be resynced from the feed's buffer or REST",
            extra={"stream": stream_name(sub.symbol, sub.interval), "queued": sub.queued},
        )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._watchers.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self._watchers.discard)

    async def _check_symbol(self, stream: Stream) -> None:
        assert self._history is not None
        if await self._history.listed(stream.symbol) is False:
            err = ExchangeError(f"unknown symbol {stream.symbol!r}: the exchange at {self.rest_url} does not list it")
            for sub in list(stream.subs):
                sub.fail(err)

    # -- the hot path: one frame from the wire ----------------------------------------------------
    def _on_frame(self, raw: str | bytes, conn: Connection | None = None) -> None:
        counts = self._counts
        counts["messages"] += 1
        try:
            msg = _loads(raw)
        except ValueError:
            counts["malformed"] += 1
            log_bad_frame("malformed JSON", raw)
            return
        if type(msg) is not dict:
            counts["malformed"] += 1
            log_bad_frame("frame is not an object", raw)
            return
        data = msg.get("data")
        if data is None:
            self._on_control(msg, raw, conn)
            return
        try:
            stream = self._streams.get(msg["stream"])
            k = data["k"]
            t = k["t"]
            x = k["x"]
            if type(t) is not int or type(x) is not bool:
                raise TypeError("t must be an int and x a bool")
            candle = Candle(t, float(k["o"]), float(k["h"]), float(k["l"]), float(k["c"]), float(k["v"]))
            event_ms = data.get("E", 0)
            if stream is not None and (k["s"] != stream.symbol or k["i"] != stream.interval):
                raise ValueError("symbol or interval does not match the stream name")
        except (KeyError, TypeError, ValueError, AttributeError):
            counts["malformed"] += 1
            log_bad_frame("malformed kline", raw)
            return
        if stream is None:
            counts["unknown_stream"] += 1  # e.g. a frame that crossed our UNSUBSCRIBE
            return
        order = stream.order
        if not candle.is_valid() or (order.fixed and (t - order.offset) % order.step):
            counts["invalid"] += 1
            log_bad_frame("invalid candle values", raw)
            return
        action = order.on_kline(candle, x, event_ms if type(event_ms) is int else 0)
        if type(action) is KlineEvent:  # the common case, inlined: deliver
            if x:
                stream.recent.append(action)
            for sub in stream.subs:
                sub.put(action)
        elif action is not None:
            self._carry_out(stream, action)

    def _on_control(self, msg: dict, raw: str | bytes, conn: Connection | None) -> None:
        if conn is not None and conn.on_control(msg):
            return
        if msg.get("e") == "serverShutdown" or msg.get("stream") == "!serverShutdown":
            log.info("exchange announced a shutdown")
            return
        self._counts["malformed"] += 1
        log_bad_frame("unexpected frame", raw)

    # -- carrying out what a stream's ordering asks for -------------------------------------------
    def _carry_out(self, stream: Stream, action: Action) -> None:
        if type(action) is KlineEvent:
            stream.deliver(action)
        elif type(action) is Drop:
            self._counts[action.counter] += 1
        elif type(action) is Backfill:
            self._fetch(stream, self._backfill(stream, action))
        elif type(action) is Seed:
            self._fetch(stream, self._seed(stream, action.end))

    def _fetch(self, stream: Stream, coro: Coroutine[Any, Any, None]) -> None:
        stream.task = asyncio.get_running_loop().create_task(
            self._guard(stream, coro), name=f"kit-feed-sync-{stream.name}"
        )

    async def _guard(self, stream: Stream, coro: Coroutine[Any, Any, None]) -> None:
        # REST fetches retry transient failures forever; what escapes is permanent (an unknown
        # symbol, a refused request): every subscriber of the stream gets the error.
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("stream failed", extra={"stream": stream.name, "error": str(exc)})
            stream.order.fail()
            for sub in list(stream.subs):
                sub.fail(exc)

    def _resume(self, stream: Stream) -> None:
        """A fetch is done: replay what the stream buffered meanwhile."""
        stream.task = None
        for action in stream.order.resume():
            self._carry_out(stream, action)

    async def _seed(self, stream: Stream, first_open: int) -> None:
        """The stream's first update opens at ``first_open``: fetch the history subscribers want, go live."""
        assert self._history is not None
        want = max((s.history for s in stream.subs), default=0)
        events = await self._history.last(stream.order, want, first_open) if want else []
        n_closed = sum(1 for e in events if not e.is_gap)
        stream.exhausted = n_closed < want
        stream.recent.extend(events)
        stream.order.go_live(first_open)
        stream.seed_waiting(self._history)
        for ev in events:
            if ev.is_gap:
                self._note_gap(stream, ev, live=False)
        self._resume(stream)

    async def _backfill(self, stream: Stream, fill: Backfill) -> None:
        """Closed candles in ``[fill.start, fill.end)`` were missed: fetch, deliver, report real gaps."""
        assert self._history is not None
        events = await self._history.events(stream.order, fill.start, fill.end, lead_gap=True)
        n = 0
        for ev in stream.order.accept_backfill(events, fill.end):
            if ev.is_gap:
                self._note_gap(stream, ev, live=True)
            else:
                n += 1
            stream.deliver(ev)
        self._counts["backfilled"] += n
        if n:
            log.info("backfilled missed candles", extra={"stream": stream.name, "candles": n})
        self._resume(stream)

    # -- after a reconnect -----------------------------------------------------------------------
    def _schedule_catch_up(self, names: list[str]) -> None:
        """Called on a reconnect: later, catch up the streams among ``names`` that stayed silent."""
        marks = {n: st.order.last_event_ms for n in names if (st := self._streams.get(n)) is not None}
        if not marks:
            return
        task = asyncio.get_running_loop().create_task(self._catch_up(marks), name="kit-feed-catch-up")
        self._catch_ups.add(task)
        task.add_done_callback(self._catch_ups.discard)

    async def _catch_up(self, marks: dict[str, int]) -> None:
        await asyncio.sleep(self.config.catch_up_after)
        silent = [st for n, mark in marks.items() if (st := self._streams.get(n)) is not None
                  and st.order.last_event_ms == mark]  # fmt: skip
        if not silent:
            return
        try:
            now = await asyncio.to_thread(self.rest.server_time)
        except Exception as exc:  # the next reconnect tries again
            log.warning("cannot read the exchange's clock to catch up", extra={"error": str(exc)})
            return
        for st in silent:
            fill = st.order.catch_up(now)
            if fill is not None:
                self._carry_out(st, fill)

    # -- bookkeeping -----------------------------------------------------------------------------
    def _note_gap(self, stream: Stream, ev: GapEvent, *, live: bool) -> None:
        self._counts["gaps"] += 1
        step = stream.order.step or 1
        self._counts["gap_candles"] += max(1, (ev.end_ms - ev.start_ms) // step)
        log.warning(
            "exchange has no candles in a range (real outage)",
            extra={
                "stream": stream.name,
                "start": iso(ev.start_ms),
                "end": iso(ev.end_ms),
                "where": "live" if live else "history",
            },
        )

    def stats(self) -> dict[str, Any]:
        """A snapshot for dashboards and health checks (plain JSON-able dict).

        Keys: ``connections`` (open / total), ``streams``, ``subscribers`` (per stream name),
        ``messages``, ``messages_per_s`` (since the previous ``stats()`` call, or start),
        ``reconnects``, ``stalls``, ``backfilled`` (candles fetched over REST after a hole),
        ``gaps`` / ``gap_candles`` (real outages seen), ``last_message_age_s``, ``dropped``
        (``malformed`` + ``invalid`` frames, ``duplicates``, ``stale`` and ``out_of_order``
        updates), ``lagging`` (lossless subscribers cut and resynced), ``rest_requests``.
        """
        now = time.monotonic()
        t0, n0 = self._rate_mark
        n = self._counts["messages"]
        if now - t0 >= 0.5:
            self._rate = (n - n0) / (now - t0)
            self._rate_mark = (now, n)
        last = self._conns.last_frame()
        c = {**self._counts, **self._conns.counters()}
        return {
            "running": self.running,
            "ws_url": self.ws_url,
            "rest_url": self.rest_url,
            "connections": self._conns.connected,
            "connections_total": len(self._conns.conns),
            "streams": len(self._streams),
            "subscribers": {name: len(s.subs) for name, s in self._streams.items()},
            "messages": n,
            "messages_per_s": round(self._rate, 1),
            "reconnects": c["reconnects"],
            "stalls": c["stalls"],
            "backfilled": c["backfilled"],
            "gaps": c["gaps"],
            "gap_candles": c["gap_candles"],
            "last_message_age_s": None if last is None else round(now - last, 3),
            "dropped": {
                k: c[k] for k in ("malformed", "invalid", "duplicates", "stale", "out_of_order", "unknown_stream")
            },
            "lagging": c["lagging"],
            "control_sent": c["control_sent"],
            "control_errors": c["control_errors"],
            "rest_requests": self.rest.requests,
            "rest_rate_limited": self.rest.rate_limited,
        }

    async def list_subscriptions(self) -> list[str]:
        """Ask the exchange which streams each connection carries (``LIST_SUBSCRIPTIONS``)."""
        return await self._conns.list_subscriptions()
