"""The simulator's subscribed kline streams: who listens to what, and the one fan-out of an event.

A :class:`Stream` exists while it has subscribers; :class:`Streams` is the registry connections
subscribe through. :meth:`Stream.fan_out` is how every event reaches its subscribers (the raw
frame, or Binance's combined ``{"stream", "data"}`` wrapper built once per event), whether the
dispatcher offers it (finite speed) or waits for room (max speed).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from kit.exchange import _wire
from kit.exchange._data import MarketData, Series
from kit.market.intervals import INTERVALS

if TYPE_CHECKING:
    from kit.exchange._ws import Connection

log = logging.getLogger("kit.exchange")

STREAM_RE = re.compile(r"^([a-z0-9]{2,20})@kline_(" + "|".join(INTERVALS) + r")$")


class Stream:
    """One subscribed stream: its series, its subscribers, and how far its events have gone."""

    __slots__ = ("idx", "interval", "last_g", "name", "series", "subs", "symbol")

    def __init__(self, name: str, symbol: str, interval: str, series: Series | None, now: int) -> None:
        self.name, self.symbol, self.interval, self.series = name, symbol, interval, series
        self.subs: dict[Connection, None] = {}
        self.idx = series.closed_count(now) if series is not None else 0  # next candle to finalize
        self.last_g = -1  # last forming boundary sent

    def final_event(self, i: int) -> str:
        """The ``x:true`` event of candle ``i`` (sent at its close)."""
        s = self.series
        assert s is not None
        body = _wire.kline_body(
            self.symbol, self.interval, s.open[i], s.end[i], s.o[i], s.h[i], s.lo[i], s.c[i], s.v[i], True
        )
        return _wire.kline_event(self.symbol, s.end[i], body)

    def fan_out(self, raw: str) -> Iterator[tuple[Connection, str]]:
        """(subscriber, frame) for every subscriber of one event: combined ones get the wrapper.

        Iterates over a copy, so a subscriber may leave while the caller awaits room."""
        comb = None
        for conn in list(self.subs):
            if conn.combined:
                if comb is None:
                    comb = _wire.combined(self.name, raw)
                yield conn, comb
            else:
                yield conn, raw


class Streams:
    """Every stream with subscribers. ``changed`` is set by every (un)subscription (the max-speed
    schedule is rebuilt from it); ``on_subscribe`` wakes the dispatcher."""

    def __init__(self, data: MarketData, now: Callable[[], int], on_subscribe: Callable[[], None]) -> None:
        self._data = data
        self._now = now
        self._on_subscribe = on_subscribe
        self.by_name: dict[str, Stream] = {}
        self.changed = True

    def __len__(self) -> int:
        return len(self.by_name)

    def subscribe(self, conn: Connection, names: list[str]) -> None:
        now = self._now()
        for name in names:
            st = self.by_name.get(name)
            if st is None:
                m = STREAM_RE.match(name)
                assert m is not None
                symbol, interval = m.group(1).upper(), m.group(2)
                series = self._data.series(symbol, interval)
                if series is None:
                    log.warning("stream %s: not served (symbols: %s); subscribed but silent", name, self._data.symbols)
                st = self.by_name[name] = Stream(name, symbol, interval, series, now)
            st.subs[conn] = None
        self.changed = True
        self._on_subscribe()

    def unsubscribe(self, conn: Connection, names: list[str]) -> None:
        for name in names:
            st = self.by_name.get(name)
            if st is not None:
                st.subs.pop(conn, None)
                if not st.subs:
                    del self.by_name[name]
        self.changed = True


def route(path: str, max_streams: int) -> tuple[list[str], bool] | None:
    """(stream names, combined) for a WebSocket path, None if not a stream path; ValueError if invalid."""
    url = urlsplit(path)
    p = url.path
    if p in ("/ws", "/ws/"):
        names, combined = [], False
    elif p.startswith("/ws/"):
        names, combined = [n for n in p[4:].split("/") if n], False
    elif p in ("/stream", "/stream/"):
        raw = parse_qs(url.query).get("streams", [""])[0]
        names, combined = [n for n in raw.split("/") if n], True
    else:
        return None
    for n in names:
        if not STREAM_RE.match(n):
            raise ValueError(f"Invalid stream name {n!r} (expected e.g. btcusdt@kline_1m)")
    names = list(dict.fromkeys(names))
    if len(names) > max_streams:
        raise ValueError(f"Too many streams: {len(names)} > {max_streams} per connection")
    return names, combined
