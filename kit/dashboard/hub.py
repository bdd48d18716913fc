"""The process-wide hub: one feed and one indicator engine shared by every dashboard session.

A ``panel serve`` process holds one :class:`Hub` (:func:`get_hub`). For each stream
``(symbol, interval)`` that at least one session shows, the hub keeps **one** subscription
(through the indicator engine when it is available, so the chart menu's overlays and panes
(:mod:`kit.dashboard.menu`) are computed once per stream and process,
else straight on the feed), a ring buffer of recent bars, and the set of session listeners. A
session attaches a listener when it opens (getting the buffer as its initial history) and
detaches it when it closes; a stream nobody watches is closed after a short grace period, so
nothing outlives its sessions.

Pages get their live candles through one :class:`kit.dashboard.live.StreamBroadcast` per
stream (held in :attr:`Hub.broadcasts`), which encodes each event once for all of them; a
session's chart stays attached as a listener so its stream lives as long as the session.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from kit.dashboard.menu import OVERLAYS, PANES, MenuItem, Overlay, Pane, flatten, item_columns
from kit.engine import IndicatorEngine
from kit.feed import CandleSource
from kit.indicators import spec as make_spec
from kit.market.intervals import interval_ms

log = logging.getLogger("kit.dashboard.hub")

#: Bars a chart shows (the hub may keep more to compute the 24 h change).
CHART_BARS = 300
#: Longest history the hub asks the feed for per stream.
MAX_HISTORY = 1500
#: Seconds a stream lives on after its last session leaves (a page reload reuses it).
GRACE_S = 10.0
_DAY_MS = 86_400_000


class Bar(NamedTuple):
    """One candle as the dashboard sees it: OHLCV, whether it closed, overlay values, receive time."""

    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool
    values: dict[str, float]
    recv_ms: float


class FeedState(NamedTuple):
    """The shared feed's exchange connection as the live sockets report it to pages.

    ``connected`` is None when the source does not say (a relayed feed: the relay watches its own
    connection); ``reconnects`` counts the connections re-opened since the feed started.
    """

    connected: bool | None
    reconnects: int


class Listener(Protocol):
    """What a session attaches to a stream. ``push`` runs on the server loop and must not block."""

    def push(self, bar: Bar) -> None: ...


@dataclass
class SessionInfo:
    """One open dashboard session, for the admin page."""

    sid: str
    user: str
    page: str
    opened: float = field(default_factory=time.time)
    stream: str = ""
    updates: int = 0


class _Stream:
    def __init__(self, symbol: str, interval: str) -> None:
        self.symbol = symbol
        self.interval = interval
        step = interval_ms(interval)
        self.history = max(CHART_BARS, min(MAX_HISTORY, _DAY_MS // step + 1))
        self.bars: deque[Bar] = deque(maxlen=self.history)
        self.forming: Bar | None = None
        self.listeners: set[Listener] = set()
        self.task: asyncio.Task[None] | None = None
        self.stop_handle: asyncio.TimerHandle | None = None
        self.events = 0
        self.last_event = 0.0
        self.errors = 0
        self.source = ""

    @property
    def key(self) -> str:
        return f"{self.symbol}@{self.interval}"


class Hub:
    """One per ``panel serve`` process (see :func:`get_hub`); all methods run on the server's loop.

    ``feed_factory`` returns the process's feed (default :func:`default_feed`); ``engine_factory``
    its indicator engine (default: one :class:`kit.engine.IndicatorEngine` over that feed, when the
    engine layer is installed).
    """

    def __init__(
        self,
        feed_factory: Callable[[], CandleSource] | None = None,
        engine_factory: Callable[[CandleSource], IndicatorEngine] | None = None,
        *,
        overlays: tuple[Overlay, ...] = OVERLAYS,
        panes: tuple[Pane, ...] = PANES,
        grace_s: float = GRACE_S,
    ) -> None:
        if grace_s < 0:
            raise ValueError(f"grace_s must be >= 0, got {grace_s!r}")
        self._feed_factory = feed_factory
        self._engine_factory = engine_factory
        self.overlays = overlays
        self.panes = panes
        self.grace_s = grace_s
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._feed: CandleSource | None = None
        self._engine: IndicatorEngine | None = None
        self._specs: list[tuple[MenuItem, Any]] | None = None
        self.sessions: dict[str, SessionInfo] = {}
        #: (symbol, interval) -> the stream's live broadcast (see :mod:`kit.dashboard.live`)
        self.broadcasts: dict[tuple[str, str], Any] = {}
        #: the live sockets' watcher of the feed's connection (see :mod:`kit.dashboard.live`)
        self.live_watch: Any = None
        self.errors: deque[tuple[float, str]] = deque(maxlen=50)
        self.started = time.time()
        self.sessions_opened = 0
        self.sessions_closed = 0

    # -- the shared feed and engine -------------------------------------------------------------
    @property
    def feed(self) -> CandleSource:
        if self._feed is None:
            self._feed = self._feed_factory() if self._feed_factory is not None else default_feed()
        return self._feed

    @property
    def engine(self) -> IndicatorEngine:
        """The shared indicator engine (one per process, made on first use)."""
        if self._engine is None:
            if self._engine_factory is not None:
                self._engine = self._engine_factory(self.feed)
            else:
                self._engine = IndicatorEngine(self.feed)
        return self._engine

    def specs(self) -> list[tuple[MenuItem, Any]]:
        """The chart's menu (overlays, then panes) as indicator specs, every one computed once per
        stream; items whose indicator does not exist are left out."""
        if self._specs is None:
            out: list[tuple[MenuItem, Any]] = []
            for item in (*self.overlays, *self.panes):
                try:
                    out.append((item, make_spec(item.name, *item.params)))
                except Exception as exc:  # an indicator the engine does not offer: skip it
                    log.warning("indicator %s unavailable: %s", item.label, exc)
            self._specs = out
        return self._specs

    def overlay_columns(self) -> dict[str, list[str]]:
        """Overlay label -> the chart columns it draws (one per output)."""
        return {it.label: item_columns(it, sp) for it, sp in self.specs() if isinstance(it, Overlay)}

    def pane_menu(self) -> list[tuple[Pane, list[str]]]:
        """The indicator panes a chart offers, each with the chart columns it draws (one per output)."""
        return [(it, item_columns(it, sp)) for it, sp in self.specs() if isinstance(it, Pane)]

    def columns(self) -> list[str]:
        """Every indicator column of a chart row (overlays and panes)."""
        return [c for it, sp in self.specs() for c in item_columns(it, sp)]

    def feed_state(self) -> FeedState:
        """Whether the feed's exchange connections are all up, from its public ``stats()``."""
        if self._feed is None:
            return FeedState(None, 0)
        try:
            st = self._feed.stats()
        except Exception:  # a source without figures says nothing about its connection
            return FeedState(None, 0)
        total, up = st.get("connections_total"), st.get("connections")
        connected = None if total is None or up is None else up >= total
        return FeedState(connected, int(st.get("reconnects") or 0))

    # -- sessions ------------------------------------------------------------------------------
    def attach(self, symbol: str, interval: str, listener: Listener) -> list[Bar]:
        """Register ``listener`` on a stream (starting it if needed); return its recent bars, oldest first."""
        key = (symbol, interval)
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream(symbol, interval)
        if st.stop_handle is not None:
            st.stop_handle.cancel()
            st.stop_handle = None
        st.listeners.add(listener)
        if st.task is None or st.task.done():
            st.task = asyncio.get_running_loop().create_task(self._run(st), name=f"kit-dashboard-{st.key}")
        return self.snapshot(symbol, interval)

    def snapshot(self, symbol: str, interval: str) -> list[Bar]:
        """The stream's last :data:`CHART_BARS` bars and the forming one, oldest first ([] if not held)."""
        st = self._streams.get((symbol, interval))
        if st is None:
            return []
        snap = list(st.bars)[-CHART_BARS:]
        if st.forming is not None:
            snap.append(st.forming)
        return snap

    def latest(self, symbol: str, interval: str) -> Bar | None:
        """The stream's newest bar (forming or closed), or None."""
        st = self._streams.get((symbol, interval))
        if st is None:
            return None
        return st.forming or (st.bars[-1] if st.bars else None)

    def detach(self, symbol: str, interval: str, listener: Listener) -> None:
        """Unregister ``listener``; a stream left without listeners stops after ``grace_s``."""
        st = self._streams.get((symbol, interval))
        if st is None:
            return
        st.listeners.discard(listener)
        if not st.listeners and st.stop_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._stop(st)
                return
            st.stop_handle = loop.call_later(self.grace_s, self._stop, st)

    def _stop(self, st: _Stream) -> None:
        st.stop_handle = None
        if st.listeners:
            return
        if st.task is not None:
            st.task.cancel()
        self._streams.pop((st.symbol, st.interval), None)

    def reference_close(self, symbol: str, interval: str) -> tuple[float, float] | None:
        """(close 24 h before the last bar, hours actually covered) for the 24 h change, or None."""
        st = self._streams.get((symbol, interval))
        if st is None or not st.bars:
            return None
        last = st.forming or st.bars[-1]
        target = last.open_time - _DAY_MS
        first = st.bars[0]
        if first.open_time > target:
            return first.close, (last.open_time - first.open_time) / 3_600_000
        # bars are sorted: bisect on open_time
        lo, hi = 0, len(st.bars) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if st.bars[mid].open_time <= target:
                lo = mid
            else:
                hi = mid - 1
        return st.bars[lo].close, 24.0

    def listeners(self) -> int:
        """Listeners attached over all streams: session charts, live broadcasts, open-position price watches."""
        return sum(len(st.listeners) for st in self._streams.values())

    def last_price(self, symbol: str) -> float | None:
        """The newest close of ``symbol`` on any stream the hub holds, or None."""
        best: Bar | None = None
        for sym, iv in self._streams:
            if sym != symbol:
                continue
            bar = self.latest(sym, iv)
            if bar is not None and (best is None or bar.recv_ms > best.recv_ms):
                best = bar
        return None if best is None else best.close

    def open_session(self, info: SessionInfo) -> None:
        self.sessions[info.sid] = info
        self.sessions_opened += 1

    def close_session(self, sid: str) -> None:
        if self.sessions.pop(sid, None) is not None:
            self.sessions_closed += 1

    def record_error(self, message: str) -> None:
        self.errors.append((time.time(), message))

    def close(self) -> None:
        """Stop every stream's task and the live sockets' feed watcher (a hub being forgotten)."""
        for st in list(self._streams.values()):
            if st.task is not None:
                st.task.cancel()
        if self.live_watch is not None:
            self.live_watch.stop()
            self.live_watch = None

    # -- the stream loop -----------------------------------------------------------------------
    async def _run(self, st: _Stream) -> None:
        backoff = 1.0
        while True:
            try:
                await self._consume(st)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                st.errors += 1
                msg = f"stream {st.key}: {type(exc).__name__}: {exc}"
                log.warning(msg)
                self.record_error(msg)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _consume(self, st: _Stream) -> None:
        engine = self.engine if self.specs() else None
        if engine is not None:
            st.source = "engine"
            specs = [sp for _, sp in self.specs()]
            items = {sp: it for it, sp in self.specs()}
            async with engine.subscribe(st.symbol, st.interval, specs=specs, history=st.history, forming=True) as sub:
                for row in sub.history:  # the engine hands history over on entering
                    self._on(st, row.candle, True, flatten(row.values, items))
                async for row in sub:
                    self._on(st, row.candle, bool(row.closed), flatten(row.values, items))
        else:
            st.source = "feed"
            async with self.feed.subscribe(st.symbol, st.interval, history=st.history, mode="conflate") as sub:
                async for ev in sub:
                    if ev.is_gap:  # nothing to draw
                        continue
                    self._on(st, ev.candle, ev.closed, {})

    def _on(self, st: _Stream, c: Any, closed: bool, values: dict[str, float]) -> None:
        bar = Bar(int(c.open_time), c.open, c.high, c.low, c.close, c.volume, closed, values, time.time() * 1000.0)
        st.events += 1
        st.last_event = time.time()
        if closed:
            if st.bars and st.bars[-1].open_time >= bar.open_time:
                if st.bars[-1].open_time == bar.open_time:
                    st.bars[-1] = bar
                else:
                    return  # out of order: the feed promises this never happens
            else:
                st.bars.append(bar)
            if st.forming is not None and st.forming.open_time <= bar.open_time:
                st.forming = None
        else:
            if st.bars and bar.open_time <= st.bars[-1].open_time:
                return
            st.forming = bar
        for listener in tuple(st.listeners):
            try:
                listener.push(bar)
            except Exception as exc:  # one broken session must not starve the others
                self.record_error(f"listener on {st.key}: {type(exc).__name__}: {exc}")

    # -- admin --------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Hub and feed figures for the admin page (everything here is cheap to compute)."""
        feed_stats: dict[str, Any] = {}
        if self._feed is not None:
            try:
                feed_stats = dict(self._feed.stats())
            except Exception as exc:
                feed_stats = {"error": str(exc)}
        engine_stats: dict[str, Any] = {}
        if self._engine is not None:
            try:
                engine_stats = {k: v for k, v in self._engine.stats().items() if k != "per_stream"}
            except Exception as exc:
                engine_stats = {"error": str(exc)}
        return {
            "uptime_s": time.time() - self.started,
            "engine": engine_stats,
            "sessions": len(self.sessions),
            "sessions_opened": self.sessions_opened,
            "sessions_closed": self.sessions_closed,
            "streams": [
                {
                    "stream": st.key,
                    "source": st.source,
                    "listeners": len(st.listeners),
                    "bars": len(st.bars),
                    "events": st.events,
                    "errors": st.errors,
                    "last_event_age_s": (time.time() - st.last_event) if st.last_event else None,
                    **_live_stats(self.broadcasts.get(key)),
                }
                for key, st in self._streams.items()
            ],
            "feed": feed_stats,
        }


def _live_stats(broadcast: Any) -> dict[str, int]:
    """A stream's live-socket figures: pages on it, messages and bytes written, updates coalesced."""
    if broadcast is None:
        return {"sockets": 0, "messages": 0, "bytes": 0, "coalesced": 0}
    st = broadcast.stats()
    return {k: st[k] for k in ("sockets", "messages", "bytes", "coalesced")}


def default_feed() -> CandleSource:
    """The dashboard's candle source: with ``KIT_REDIS_URL`` set, the feed ``kit relay`` publishes to
    Redis (:class:`kit.relay.RedisFeed`), so any number of dashboard processes and hosts share the
    relay's one exchange connection; otherwise this process's own :func:`kit.feed.shared_feed`."""
    from kit.settings import Settings

    settings = Settings.from_env()
    if settings.redis_url:
        from kit.relay import Keys, RedisFeed

        log.info("dashboard feed: relayed through Redis (prefix %r)", settings.redis_prefix)
        return RedisFeed(settings.redis_url, keys=Keys(settings.redis_prefix))
    from kit.feed import shared_feed

    return shared_feed()


_hub_lock = threading.Lock()
_hub: Hub | None = None


def get_hub() -> Hub:
    """The process's hub (created on first use; ``panel serve`` runs one per process)."""
    global _hub
    with _hub_lock:
        if _hub is None:
            _hub = Hub()
        return _hub


def reset_hub() -> None:
    """Forget the process's hub (tests that start several servers in one process)."""
    global _hub
    with _hub_lock:
        if _hub is not None:
            _hub.close()
        _hub = None
