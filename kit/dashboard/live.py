"""Live candles to every browser: each feed event is encoded **once** per stream and the same bytes
are written to every page watching that stream.

Why not Bokeh document patches: a Bokeh server turns every change into a message per session
(document lock, event serialisation, three WebSocket frames), about 8 ms of the one server loop
per update per session; 100 sessions at five updates a second need more than a core. Candles are
the same for every viewer, so they travel on a side channel instead:

- :class:`StreamBroadcast` is the hub's one listener per stream for all pages. It encodes a bar
  as one JSON row (overlay values computed once by the shared engine, the price header rendered
  once) and hands the same bytes to every :class:`LiveSocket`.
- :class:`LiveSocket` (``GET /kit/live?stream=BTCUSDT@1m&since=<open time>&sid=<session>``) is a
  plain WebSocket for logged-in users. On open it sends the bars the page lacks (open time >=
  ``since``), then every update. A socket whose previous write has not drained yet does not queue:
  it keeps the newest state of each candle and sends them together when the write completes, so a
  slow browser gets fewer, fuller messages and the server never holds a backlog.
- The page's JavaScript (:data:`kit.dashboard.chart.LIVE_JS`) applies each row to its chart's
  ``ColumnDataSource`` with ``patch``/``stream`` and ``sync: false``: nothing comes back to the
  server.

Message: ``{"s": "BTCUSDT@1m", "h": "<price header html>", "rows": [{column: value, ...}, ...]}``,
with ``null`` for a missing (NaN) value. The exchange connection's state travels on the same socket
(see :class:`FeedWatch`): ``{"s": "BTCUSDT@1m", "rows": [], "feed": "connected" | "reconnecting",
"reconnects": n}``, whenever it changes and on open unless connected (what a page assumes). The page
shows it with its own socket's state and the data's age: a stalled chart never looks like a quiet market.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

from tornado.ioloop import PeriodicCallback
from tornado.web import HTTPError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from kit.dashboard.chart import chart_row
from kit.dashboard.hub import CHART_BARS, Bar, FeedState, Hub, get_hub
from kit.dashboard.market import INTERVALS, price_header, served_symbols
from kit.settings import Settings

log = logging.getLogger("kit.dashboard.live")

#: WebSocket close codes the page's script does not retry.
CLOSE_BAD_REQUEST = 4400
#: Seconds between the server's pings; a page that answers no ping, or takes no data, for
#: :data:`DEAD_AFTER_S` is closed (a vanished laptop must not hold a socket for days).
PING_EVERY_S = 20.0
DEAD_AFTER_S = 60.0
#: Seconds between looks at the feed's connection (a dropped connection is re-opened within about
#: half a second: the watcher also notices one by the reconnect count, see :class:`FeedWatch`).
WATCH_EVERY_S = 0.25


def encode_row(bar: Bar, columns: list[str]) -> bytes:
    """One chart row as JSON bytes (NaN as ``null``: JSON has no NaN)."""
    row = chart_row(bar, columns)
    return json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()},
                      separators=(",", ":")).encode()  # fmt: skip


class _Client:
    """One page's socket as the broadcast sees it: a writer and, while a write is in flight, the
    newest row of each candle waiting for it to drain."""

    __slots__ = ("backlog", "busy", "busy_since", "coalesced", "on_sent", "sent", "write")

    def __init__(self, write: Callable[[bytes], Any], on_sent: Callable[[], None] | None = None) -> None:
        self.write = write
        self.backlog: dict[int, bytes] = {}
        self.busy: Any = None
        self.busy_since = 0.0
        self.sent = 0
        self.coalesced = 0
        self.on_sent = on_sent


class FeedWatch:
    """One stream's view of the feed's exchange connection, as the pages are told it (no I/O).

    ``reconnecting`` while the feed says a connection is down, and after a reconnect until this
    stream has had an event again: a reconnect can be quicker than one look at the feed, and the
    candles missed meanwhile are only back once the feed has caught the stream up.
    """

    __slots__ = ("down", "reconnects", "status", "waiting")

    def __init__(self) -> None:
        self.status = "connected"
        self.reconnects: int | None = None  # the feed's count at the previous look
        self.down = False
        self.waiting = False

    def observe(self, state: FeedState) -> bool:
        """Take a look at the feed; True when the status changed."""
        if self.reconnects is not None and state.reconnects > self.reconnects:
            self.waiting = True
        self.reconnects = state.reconnects
        self.down = state.connected is False
        return self._update()

    def event(self) -> bool:
        """The stream had an event; True when the status changed."""
        self.waiting = False
        return self._update()

    def _update(self) -> bool:
        before = self.status
        self.status = "reconnecting" if self.down or self.waiting else "connected"
        return self.status != before


class StreamBroadcast:
    """The hub's single listener of one stream for every live socket on it (see module docstring).

    ``write`` of a client takes the message bytes and returns an awaitable-like object with
    ``done()`` and ``add_done_callback`` (Tornado's write future), or None when it wrote at once.
    """

    def __init__(self, hub: Hub, symbol: str, interval: str) -> None:
        self.hub = hub
        self.symbol = symbol
        self.interval = interval
        self.key = f"{symbol}@{interval}"
        self.columns = hub.columns()
        self.clients: set[_Client] = set()
        self.attached = False
        self.events = 0
        self.messages = 0
        self.bytes = 0
        self.coalesced = 0
        self.watch = FeedWatch()
        self._head = b'{"s":' + json.dumps(self.key).encode()

    # -- clients ----------------------------------------------------------------------------------
    def add(self, client: _Client, since: int) -> None:
        """Register ``client`` and send it the bars it lacks (open time >= ``since``)."""
        snap = (
            self.hub.attach(self.symbol, self.interval, self)
            if not self.attached
            else self.hub.snapshot(self.symbol, self.interval)
        )
        self.attached = True
        self.clients.add(client)
        rows = [encode_row(b, self.columns) for b in snap if b.open_time >= since][-CHART_BARS:]
        if rows:
            self._send(client, self._message(rows, snap[-1]))
        if self.watch.status != "connected":  # a page assumes connected until told otherwise
            self._send(client, self._status())

    def remove(self, client: _Client) -> None:
        self.clients.discard(client)
        client.backlog.clear()
        if not self.clients and self.attached:
            self.hub.detach(self.symbol, self.interval, self)
            self.attached = False
            self.hub.broadcasts.pop((self.symbol, self.interval), None)

    # -- fan-out ----------------------------------------------------------------------------------
    def push(self, bar: Bar) -> None:
        """Called by the hub on the server loop for every event: encode once, write to all."""
        self.events += 1
        if not self.clients:
            return
        if self.watch.event():
            self._status_to_all()
        row = encode_row(bar, self.columns)
        msg = self._message([row], bar)
        for client in tuple(self.clients):
            if client.backlog or (client.busy is not None and not client.busy.done()):
                # behind: fold into the backlog, so an older state can never overtake a newer one
                client.backlog[bar.open_time] = row  # newest state of each candle wins
                if len(client.backlog) > CHART_BARS:  # a page away for hours: only what its chart shows
                    del client.backlog[min(client.backlog)]
                client.coalesced += 1
                self.coalesced += 1
                if client.busy is None or client.busy.done():
                    self._flush(client)
                continue
            self._send(client, msg)

    def feed_changed(self, state: FeedState) -> None:
        """The watcher's look at the feed: tell every page when the connection's status changed."""
        if self.watch.observe(state):
            self._status_to_all()

    def _status(self) -> bytes:
        # ``rows`` too: every message has the same shape, a page applies it the same way
        body = json.dumps({"rows": [], "feed": self.watch.status, "reconnects": self.watch.reconnects or 0})
        return self._head + b"," + body[1:].encode()

    def _status_to_all(self) -> None:
        # a status is small and rare: written even to a page whose previous write has not drained
        msg = self._status()
        for client in tuple(self.clients):
            try:
                client.write(msg)
            except WebSocketClosedError:
                self.remove(client)

    def _message(self, rows: list[bytes], last: Bar) -> bytes:
        header = json.dumps(price_header(self.hub, self.symbol, self.interval, last)).encode()
        return self._head + b',"h":' + header + b',"rows":[' + b",".join(rows) + b"]}"

    def _send(self, client: _Client, msg: bytes) -> None:
        try:
            fut = client.write(msg)
        except WebSocketClosedError:
            self.remove(client)
            return
        client.sent += 1
        self.messages += 1
        self.bytes += len(msg)
        if client.on_sent is not None:
            client.on_sent()
        if fut is not None and not fut.done():
            client.busy = fut
            client.busy_since = time.monotonic()
            fut.add_done_callback(lambda f, c=client: self._drained(c, f))
        else:
            client.busy = None

    def _drained(self, client: _Client, fut: Any) -> None:
        if client.busy is fut:
            client.busy = None
        if client.busy is None and client.backlog and client in self.clients:
            self._flush(client)

    def _flush(self, client: _Client) -> None:
        """Send a client's backlog as one message: the newest state of each candle, oldest first."""
        rows = [client.backlog[t] for t in sorted(client.backlog)]
        client.backlog = {}
        last = self.hub.latest(self.symbol, self.interval)
        if last is not None:
            self._send(client, self._message(rows, last))

    def stats(self) -> dict[str, Any]:
        return {
            "stream": self.key,
            "sockets": len(self.clients),
            "events": self.events,
            "messages": self.messages,
            "bytes": self.bytes,
            "coalesced": self.coalesced,
        }


def broadcast_for(hub: Hub, symbol: str, interval: str) -> StreamBroadcast:
    """The hub's broadcast of ``symbol@interval`` (created on first use)."""
    b = hub.broadcasts.get((symbol, interval))
    if b is None:
        b = hub.broadcasts[(symbol, interval)] = StreamBroadcast(hub, symbol, interval)
    return b


def watch_feed(hub: Hub, every_s: float = WATCH_EVERY_S) -> None:
    """Start the hub's one look at the feed's connection for all its broadcasts (if not running);
    it stops by itself once no broadcast is left."""
    if hub.live_watch is not None:
        return

    def look() -> None:
        if not hub.broadcasts:
            pc.stop()
            hub.live_watch = None
            return
        state = hub.feed_state()
        for b in tuple(hub.broadcasts.values()):
            b.feed_changed(state)

    pc = PeriodicCallback(look, every_s * 1000)
    hub.live_watch = pc
    pc.start()


#: ``since``: a candle open time in ms (15 digits last until the year 33658; a page may send "....0").
_SINCE = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,6})?$")
_MAX_ARG = 64


class LiveSocket(WebSocketHandler):
    """``/kit/live``: a logged-in page's live candles (same-origin only: Tornado checks ``Origin``)."""

    def initialize(
        self,
        hub_factory: Callable[[], Hub] = get_hub,
        ping_every: float = PING_EVERY_S,
        dead_after: float = DEAD_AFTER_S,
    ) -> None:
        self._hub_factory = hub_factory
        self._ping_every = ping_every
        self._dead_after = dead_after
        self._broadcast: StreamBroadcast | None = None
        self._client: _Client | None = None

    def prepare(self) -> None:  # before the upgrade: a refusal is a plain HTTP status
        from kit.dashboard.auth import current_user

        self.session = current_user(self.request.cookies)
        if self.session is None:
            raise HTTPError(403, "log in first")
        self.user = self.session.name

    def open(self, *_args: Any) -> None:
        stream = self.get_query_argument("stream", "")[:_MAX_ARG]
        symbol, _, interval = stream.partition("@")
        raw_since = self.get_query_argument("since", "0") or "0"
        if interval not in INTERVALS or symbol not in symbols() or not _SINCE.match(raw_since):
            # ``since=inf`` once raised OverflowError here: every value is checked, none converted blindly
            self.close(CLOSE_BAD_REQUEST, f"bad stream or since: {stream!r}"[:120])
            return
        since = int(float(raw_since))
        from kit.dashboard.guard import REVOKER

        REVOKER.add(self.session, self)  # closed when the user's session ends
        hub = self._hub_factory()
        info = hub.sessions.get(self.get_query_argument("sid", "")[:_MAX_ARG])
        counter = None
        if info is not None and info.user == self.user:  # the admin page's per-session update count

            def counter(info: Any = info) -> None:
                info.updates += 1

        self._client = _Client(lambda msg: self.write_message(msg, binary=False), counter)
        self._broadcast = broadcast_for(hub, symbol, interval)
        self._broadcast.add(self._client, since)
        watch_feed(hub)
        self._last_pong = time.monotonic()
        self._pinger = PeriodicCallback(self._check, self._ping_every * 1000)
        self._pinger.start()

    def on_pong(self, data: bytes) -> None:
        self._last_pong = time.monotonic()

    def _check(self) -> None:
        """Close a page that stopped answering pings or stopped taking data; otherwise ping it."""
        now = time.monotonic()
        c = self._client
        stuck = c is not None and c.busy is not None and not c.busy.done() and now - c.busy_since > self._dead_after
        if now - self._last_pong > self._dead_after or stuck:
            log.info("closing a dead live socket (%s)", "no data taken" if stuck else "no pong")
            self.close(1001, "no answer")
            self.on_close()  # the peer may never finish the close handshake
            return
        try:
            self.ping()
        except WebSocketClosedError:
            pass

    def on_message(self, message: str | bytes) -> None:
        pass  # the page only listens

    def on_close(self) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            from kit.dashboard.guard import REVOKER

            REVOKER.discard(session.name, self)
        pinger = getattr(self, "_pinger", None)
        if pinger is not None:
            pinger.stop()
        if self._broadcast is not None and self._client is not None:
            self._broadcast.remove(self._client)
        self._broadcast = self._client = None


def symbols() -> frozenset[str]:
    """The symbols this dashboard serves: every symbol the configured exchange lists (see
    :func:`kit.dashboard.market.served_symbols`)."""
    return frozenset(served_symbols(_settings()))


_settings = functools.cache(Settings.from_env)  # read once per process, as before
