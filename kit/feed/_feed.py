"""The Feed: one process-wide market feed that many subscribers share."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

from kit.errors import ConfigError, ExchangeError
from kit.feed._connection import Connection
from kit.feed._events import GapEvent, KlineEvent
from kit.feed._rest import RestClient
from kit.feed._stream import Stream, stream_name
from kit.feed._subscription import Subscription, check_request
from kit.market.candle import Candle
from kit.market.intervals import next_open

try:  # orjson parses kline frames ~2x faster; the stdlib is the fallback, not a requirement.
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - depends on the environment
    from json import loads as _loads

log = logging.getLogger("kit.feed")

_COUNTERS = (
    "messages",
    "malformed",
    "invalid",
    "unknown_stream",
    "duplicates",
    "stale",
    "out_of_order",
    "reconnects",
    "stalls",
    "backfilled",
    "gaps",
    "gap_candles",
    "lagging",
    "control_sent",
    "control_errors",
)


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
            from kit.settings import Settings

            s = Settings.from_env()
            ws_url = s.exchange_ws_url if ws_url is None else ws_url
            rest_url = s.exchange_url if rest_url is None else rest_url
        if not isinstance(ws_url, str) or not ws_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"ws_url must start with ws:// or wss://, got {ws_url!r}")
        _positive("stall_timeout", stall_timeout)
        _positive("backoff_initial", backoff_initial)
        _positive("backoff_max", backoff_max)
        _positive("control_rate", control_rate)
        _positive("open_timeout", open_timeout)
        _positive("catch_up_after", catch_up_after)
        if control_rate >= 5:
            raise ConfigError(f"control_rate must be below Binance's 5 messages/s, got {control_rate!r}")
        if not 1 <= int(max_streams_per_connection) <= 1024:
            raise ConfigError(f"max_streams_per_connection must be 1..1024, got {max_streams_per_connection!r}")
        if int(max_queue) < 16:
            raise ConfigError(f"max_queue must be >= 16, got {max_queue!r}")
        if int(rest_concurrency) < 1:
            raise ConfigError(f"rest_concurrency must be >= 1, got {rest_concurrency!r}")
        self.ws_url = ws_url.rstrip("/")
        self.rest = RestClient(rest_url, max_retries=1)
        self.rest_url = self.rest.base_url
        self.stall_timeout = float(stall_timeout)
        self.max_streams_per_connection = int(max_streams_per_connection)
        self.max_queue = int(max_queue)
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.backoff_reset = float(backoff_reset)
        self.control_rate = float(control_rate)
        self.open_timeout = float(open_timeout)
        self.catch_up_after = float(catch_up_after)
        self._catch_ups: set[asyncio.Task] = set()
        self._rest_concurrency = int(rest_concurrency)
        self._rest_sem: asyncio.Semaphore | None = None
        self._streams: dict[str, Stream] = {}
        self._conns: list[Connection] = []
        self._pending: dict[int, asyncio.Future] = {}
        self._symbols: set[str] | None = None
        self._watchers: set[asyncio.Task] = set()
        self._counts: Counter[str] = Counter({k: 0 for k in _COUNTERS})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_at = 0.0
        self._rate_mark = (time.monotonic(), 0)
        self._rate = 0.0
        self._stopping = False

    def __repr__(self) -> str:
        return f"Feed({self.ws_url!r}, streams={len(self._streams)}, running={self.running})"

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._loop is not None

    async def start(self) -> Feed:
        """Bind the feed to the running loop. Idempotent; ``async with feed`` calls it."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return self
        if self._loop is not None:
            raise RuntimeError("this Feed runs on another event loop; use kit.feed.shared_feed() per loop")
        self._loop = loop
        self._stopping = False
        self._rest_sem = asyncio.Semaphore(self._rest_concurrency)
        self._started_at = time.monotonic()
        log.debug("feed started", extra={"ws_url": self.ws_url, "rest_url": self.rest_url})
        return self

    async def stop(self) -> None:
        """Close every subscription and connection. The feed can be started again afterwards."""
        if self._loop is None:
            return
        self._stopping = True
        for task in list(self._catch_ups):
            task.cancel()
        for stream in list(self._streams.values()):
            stream.close()
        self._streams.clear()
        for conn in self._conns:
            await conn.stop()
        self._conns.clear()
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

        task = asyncio.get_running_loop().create_task(
            pump(), name=f"kit-feed-watch-{stream_name(sub.symbol, interval)}"
        )
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return sub

    async def _attach(self, sub: Subscription) -> None:
        await self.start()
        name = stream_name(sub.symbol, sub.interval)
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = Stream(self, sub.symbol, sub.interval)
            conn = self._conn_for_new_stream()
            stream.conn = conn
            conn.add(name)
            # Binance accepts a SUBSCRIBE to any well-formed name and then stays silent: ask
            # REST whether the symbol is listed, so a typo fails instead of waiting forever.
            task = asyncio.get_running_loop().create_task(self._check_symbol(stream), name=f"kit-feed-check-{name}")
            self._watchers.add(task)  # the loop holds tasks weakly
            task.add_done_callback(self._watchers.discard)
        stream.add(sub)

    async def _check_symbol(self, stream: Stream) -> None:
        try:
            if self._symbols is None or stream.symbol not in self._symbols:
                async with self._rest_sem:  # type: ignore[union-attr]
                    self._symbols = await asyncio.to_thread(self.rest.symbols)
        except Exception as exc:  # unreachable now: the stream keeps waiting and reconnecting
            log.debug("could not check the symbol list", extra={"error": str(exc)})
            return
        if stream.symbol not in self._symbols:
            err = ExchangeError(f"unknown symbol {stream.symbol!r}: the exchange at {self.rest_url} does not list it")
            for sub in list(stream.subs):
                sub._fail(err)

    def _detach(self, sub: Subscription) -> None:
        stream = sub._stream
        if stream is None:
            return
        stream.remove(sub)
        if not stream.subs and self._streams.get(stream.name) is stream:
            # Last subscriber gone: UNSUBSCRIBE (reference counting) and forget the stream's state.
            del self._streams[stream.name]
            stream.close()
            conn = stream.conn
            if isinstance(conn, Connection):
                conn.discard(stream.name)

    def _conn_for_new_stream(self) -> Connection:
        for conn in self._conns:
            if len(conn.streams) < self.max_streams_per_connection:
                return conn
        conn = Connection(self, len(self._conns))
        self._conns.append(conn)
        conn.start()
        return conn

    # -- the hot path: one frame from the wire ----------------------------------------------------
    def _on_frame(self, raw: str | bytes, conn: Connection | None = None) -> None:
        counts = self._counts
        counts["messages"] += 1
        try:
            msg = _loads(raw)
        except ValueError:
            counts["malformed"] += 1
            _log_bad("malformed JSON", raw)
            return
        if type(msg) is not dict:
            counts["malformed"] += 1
            _log_bad("frame is not an object", raw)
            return
        data = msg.get("data")
        if data is None:
            self._on_control(msg, raw)
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
            _log_bad("malformed kline", raw)
            return
        if stream is None:
            counts["unknown_stream"] += 1  # e.g. a frame that crossed our UNSUBSCRIBE
            return
        if not candle.is_valid() or (stream._fixed and (t - stream._offset) % stream.step):
            counts["invalid"] += 1
            _log_bad("invalid candle values", raw)
            return
        stream.on_kline(candle, x, event_ms if type(event_ms) is int else 0)

    def _on_control(self, msg: dict, raw: str | bytes) -> None:
        rid = msg.get("id")
        fut = self._pending.get(rid) if isinstance(rid, int) else None
        err = msg.get("error") if isinstance(msg.get("error"), dict) else (msg if "code" in msg else None)
        if err is not None and "result" not in msg:
            # Binance's stream servers answer {"error": {"code", "msg"}, "id"}; older docs show it flat.
            self._counts["control_errors"] += 1
            log.warning("exchange refused a control message", extra={"code": err.get("code"), "msg": err.get("msg")})
            if fut is not None and not fut.done():
                fut.set_exception(ExchangeError(f"exchange refused: {err.get('msg')}", code=err.get("code")))
            return
        if "result" in msg:
            if fut is not None and not fut.done():
                fut.set_result(msg["result"])
            return
        if msg.get("e") == "serverShutdown" or msg.get("stream") == "!serverShutdown":
            log.info("exchange announced a shutdown")
            return
        self._counts["malformed"] += 1
        _log_bad("unexpected frame", raw)

    # -- after a reconnect -----------------------------------------------------------------------
    def _schedule_catch_up(self, names: list[str]) -> None:
        """Called on a reconnect: later, catch up the streams among ``names`` that stayed silent."""
        marks = {n: st._last_event_ms for n in names if (st := self._streams.get(n)) is not None}
        if not marks:
            return
        task = asyncio.get_running_loop().create_task(self._catch_up(marks), name="kit-feed-catch-up")
        self._catch_ups.add(task)
        task.add_done_callback(self._catch_ups.discard)

    async def _catch_up(self, marks: dict[str, int]) -> None:
        await asyncio.sleep(self.catch_up_after)
        silent = [st for n, mark in marks.items() if (st := self._streams.get(n)) is not None
                  and st._last_event_ms == mark]  # fmt: skip
        if not silent:
            return
        try:
            now = await asyncio.to_thread(self.rest.server_time)
        except Exception as exc:  # the next reconnect tries again
            log.warning("cannot read the exchange's clock to catch up", extra={"error": str(exc)})
            return
        for st in silent:
            st.catch_up(now)

    # -- REST ------------------------------------------------------------------------------------
    async def _fetch_events(
        self, stream: Stream, start: int, end: int, *, lead_gap: bool, settle: bool = True
    ) -> list[Any]:
        """Closed candles with ``start <= open_time < end`` as events, plus GapEvents for holes.

        Retries transient failures forever (the exchange may be restarting); a 4xx answer
        (unknown symbol...) raises :class:`ExchangeError`. A hole at the start counts only if
        ``lead_gap`` (a backfill from a known candle); history windows start at an arbitrary time.
        ``settle``: ``end`` is the live edge, where REST may lag the WebSocket by a moment, so a
        hole at the end is checked twice before it is believed.
        """
        if start >= end:
            return []
        candles = await self._rest_range(stream, start, end)
        if settle and (not candles or candles[-1].open_time < _prev_open(end, stream)):
            # A trailing hole might be REST lagging the WebSocket by a moment: look once more.
            await asyncio.sleep(0.5)
            candles = await self._rest_range(stream, start, end)
        events: list[Any] = []
        sym, iv = stream.symbol, stream.interval
        expected = start if lead_gap else (candles[0].open_time if candles else end)
        for c in candles:
            if c.open_time > expected:
                events.append(GapEvent(sym, iv, expected, c.open_time))
            events.append(KlineEvent(sym, iv, c, True))
            expected = next_open(c.open_time, iv)
        if expected < end and (candles or lead_gap):
            events.append(GapEvent(sym, iv, expected, end))
        return events

    async def _rest_range(self, stream: Stream, start: int, end: int) -> list[Candle]:
        return await self._rest_call(stream, self.rest.klines_range, stream.symbol, stream.interval, start, end)

    async def _first_open(self, stream: Stream) -> int | None:
        """Open time of the exchange's first candle of ``stream`` (None: it has none yet)."""
        first = await self._rest_call(
            stream, lambda: self.rest.klines(stream.symbol, stream.interval, start_ms=0, limit=1)
        )
        return first[0].open_time if first else None

    async def _rest_call(self, stream: Stream, fn: Callable[..., Any], *args: Any) -> Any:
        attempt = 0
        assert self._rest_sem is not None
        while True:
            try:
                async with self._rest_sem:
                    return await asyncio.to_thread(fn, *args)
            except ExchangeError as exc:
                if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (418, 429):
                    raise
                wait = min(self.backoff_max, self.backoff_initial * 2**attempt)
                attempt += 1
                log.warning(
                    "REST backfill failed; retrying", extra={"stream": stream.name, "error": str(exc), "wait_s": wait}
                )
                await asyncio.sleep(wait)

    # -- bookkeeping -----------------------------------------------------------------------------
    def _note_gap(self, stream: Stream, ev: GapEvent, *, live: bool) -> None:
        self._counts["gaps"] += 1
        step = stream.step or 1
        self._counts["gap_candles"] += max(1, (ev.end_ms - ev.start_ms) // step)
        log.warning(
            "exchange has no candles in a range (real outage)",
            extra={
                "stream": stream.name,
                "start": _iso(ev.start_ms),
                "end": _iso(ev.end_ms),
                "where": "live" if live else "history",
            },
        )

    def _note_lagging(self, sub: Subscription) -> None:
        self._counts["lagging"] += 1
        log.warning(
            "subscriber lags; it will be resynced from the feed's buffer or REST",
            extra={"stream": stream_name(sub.symbol, sub.interval), "queued": len(sub._q)},
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
        last = max((c.last_frame for c in self._conns if c.connects), default=None)
        c = self._counts
        return {
            "running": self.running,
            "ws_url": self.ws_url,
            "rest_url": self.rest_url,
            "connections": sum(1 for x in self._conns if x.connected),
            "connections_total": len(self._conns),
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
        out: list[str] = []
        for conn in self._conns:
            if conn.connected:
                result = await conn.request("LIST_SUBSCRIPTIONS")
                out.extend(result if isinstance(result, list) else [])
        return sorted(out)


def _positive(name: str, value: float) -> None:
    if not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a number > 0, got {value!r}")


def _prev_open(t: int, stream: Stream) -> int:
    return stream._prev(t)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


_bad_logged = [0.0, 0]


def _log_bad(what: str, raw: str | bytes) -> None:
    # At most one line per second: a flood of bad frames must not become a flood of logs.
    now = time.monotonic()
    _bad_logged[1] += 1
    if now - _bad_logged[0] >= 1.0:
        log.warning(
            "dropped bad frame from the exchange",
            extra={"reason": what, "frame": str(raw[:160]), "since_last_log": _bad_logged[1]},
        )
        _bad_logged[0], _bad_logged[1] = now, 0


# -- one feed per event loop ------------------------------------------------------------------------
_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Feed] = weakref.WeakKeyDictionary()


def shared_feed(**kwargs: Any) -> Feed:
    """The process-wide :class:`Feed` of the running event loop (created on first use).

    For notebooks and the Panel server: every cell or session that calls this shares one
    exchange connection. Call it from the loop (a coroutine, a loop callback, a Jupyter cell);
    called outside any loop it returns a feed that binds to the first loop that starts it.
    Keyword arguments apply only when the feed is first created.
    """
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        # Called outside a loop (a plain notebook cell on an old kernel, a module import): one
        # feed that binds to the first loop it is started on.
        global _unbound
        if _unbound is None or (_unbound._loop is not None and not _unbound._loop.is_running()):
            _unbound = Feed(**kwargs)
        return _unbound
    feed = _shared.get(loop)
    if feed is None:
        feed = _unbound if _unbound is not None and _unbound._loop is loop else Feed(**kwargs)
        _shared[loop] = feed
    return feed


_unbound: Feed | None = None
