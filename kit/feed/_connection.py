"""One WebSocket connection to the combined-stream endpoint, kept alive forever.

It connects to ``<ws_url>/stream``, (re)subscribes its streams with live ``SUBSCRIBE`` messages
(batched, at most ``control_rate`` messages per second: Binance drops a connection that sends
more than 5 per second, pongs included), and hands every frame to the feed. It reconnects after
any drop, stall (no frame for ``stall_timeout`` seconds while streams are subscribed; Binance
pings every 20 s and pushes every kline stream every 2 s) or the exchange's 24-hour cut, with
capped exponential backoff and full jitter, never faster than Binance's 300 attempts per 5 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from typing import TYPE_CHECKING

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

if TYPE_CHECKING:
    from kit.feed._feed import Feed

log = logging.getLogger("kit.feed")

#: Params per SUBSCRIBE/UNSUBSCRIBE message (keeps each control frame a few KB).
BATCH = 200
#: Connection attempts allowed per 5 minutes (Binance bans at 300 per IP).
MAX_ATTEMPTS_5MIN = 100


class Connection:
    """Owns a set of stream names and one WebSocket carrying them."""

    def __init__(self, feed: Feed, index: int) -> None:
        self.feed = feed
        self.index = index
        self.streams: dict[str, None] = {}  # wanted, in subscription order
        self._sent: set[str] = set()  # subscribed on the current socket
        self._dirty = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self._next_id = 1
        self._attempts: deque[float] = deque()
        self._sent_times: deque[float] = deque()  # control messages sent in the last second
        self.connected = False
        self.last_frame = time.monotonic()
        self.connected_at = 0.0
        self.connects = 0

    def __repr__(self) -> str:
        return f"Connection({self.index}, streams={len(self.streams)}, connected={self.connected})"

    # -- bookkeeping (synchronous; the sender task does the talking) -----------------------------
    def add(self, name: str) -> None:
        self.streams[name] = None
        self._dirty.set()

    def discard(self, name: str) -> None:
        self.streams.pop(name, None)
        self._dirty.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"kit-feed-conn-{self.index}")

    async def stop(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None
        self.connected = False

    # -- the connection loop ---------------------------------------------------------------------
    async def _run(self) -> None:
        feed = self.feed
        failures = 0
        while not self._closing:
            if not self.streams:
                # Nothing to carry: wait for a subscription instead of holding an idle socket.
                self._dirty.clear()
                await self._dirty.wait()
                continue
            await self._respect_attempt_limit()
            url = feed.ws_url.rstrip("/") + "/stream"
            try:
                async with connect(
                    url,
                    open_timeout=feed.open_timeout,
                    close_timeout=1.0,
                    ping_interval=None,  # the server pings; we answer (each pong counts toward 5 msg/s)
                    max_size=2**22,
                    max_queue=None,
                    compression=None,
                ) as ws:
                    self._ws = ws
                    self.connected = True
                    self.connects += 1
                    self.connected_at = self.last_frame = time.monotonic()
                    if self.connects > 1:
                        feed._counts["reconnects"] += 1
                        log.info("reconnected", extra={"connection": self.index, "streams": len(self.streams)})
                        feed._schedule_catch_up(list(self.streams))
                    self._sent = set()
                    self._dirty.set()
                    await self._serve(ws)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI) as exc:
                log.warning(
                    "exchange connection lost",
                    extra={"connection": self.index, "error": f"{type(exc).__name__}: {exc}"},
                )
            finally:
                self._ws = None
                self.connected = False
            if self._closing:
                break
            # A connection that lived a while resets the backoff; a flapping one keeps growing it.
            lived = time.monotonic() - self.connected_at if self.connected_at else 0.0
            failures = 0 if lived > feed.backoff_reset else failures + 1
            delay = min(feed.backoff_max, feed.backoff_initial * 2 ** max(failures - 1, 0))
            await asyncio.sleep(random.uniform(delay / 2, delay))  # jitter: many feeds don't reconnect in lockstep

    async def _respect_attempt_limit(self) -> None:
        now = time.monotonic()
        att = self._attempts
        while att and now - att[0] > 300:
            att.popleft()
        if len(att) >= MAX_ATTEMPTS_5MIN:
            wait = 300 - (now - att[0])
            log.warning("too many connection attempts; waiting", extra={"wait_s": round(wait, 1)})
            await asyncio.sleep(wait)
        att.append(time.monotonic())

    async def _serve(self, ws: ClientConnection) -> None:
        sender = asyncio.get_running_loop().create_task(self._sender(ws), name=f"kit-feed-send-{self.index}")
        watchdog = asyncio.get_running_loop().create_task(self._watchdog(ws), name=f"kit-feed-watch-{self.index}")
        on_frame = self.feed._on_frame
        try:
            async for raw in ws:
                self.last_frame = time.monotonic()
                on_frame(raw, self)
        finally:
            sender.cancel()
            watchdog.cancel()
            for t in (sender, watchdog):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if sender.done() and not sender.cancelled() and sender.exception() is not None:
                raise sender.exception()  # type: ignore[misc]

    async def _watchdog(self, ws: ClientConnection) -> None:
        timeout = self.feed.stall_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            if self._sent and time.monotonic() - self.last_frame > timeout:
                self.feed._counts["stalls"] += 1
                log.warning("no frame for stall_timeout seconds; reconnecting", extra={"connection": self.index})
                ws.transport.abort()  # a stalled peer may not answer a close handshake
                return

    def _pace_wait(self) -> float:
        """Seconds to wait before the next control message keeps us under ``control_rate``/s."""
        now = time.monotonic()
        sent = self._sent_times
        while sent and now - sent[0] >= 1.0:
            sent.popleft()
        if len(sent) < int(self.feed.control_rate):
            return 0.0
        return 1.0 - (now - sent[0]) + 0.01

    async def _send_control(self, ws: ClientConnection, msg: dict) -> None:
        while (wait := self._pace_wait()) > 0:
            await asyncio.sleep(wait)
        self._sent_times.append(time.monotonic())
        await ws.send(json.dumps(msg))
        self.feed._counts["control_sent"] += 1

    async def _sender(self, ws: ClientConnection) -> None:
        """Bring the socket's subscriptions in line with ``streams``, paced under 5 messages/s."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            while True:
                wait = self._pace_wait()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue  # recompute: streams may have changed while waiting
                add = [n for n in self.streams if n not in self._sent][:BATCH]
                drop = [n for n in self._sent if n not in self.streams][:BATCH] if not add else []
                if not add and not drop:
                    break
                method, params = ("SUBSCRIBE", add) if add else ("UNSUBSCRIBE", drop)
                msg = {"method": method, "params": params, "id": self._next_id}
                self._next_id += 1
                await self._send_control(ws, msg)
                if add:
                    self._sent.update(add)
                else:
                    self._sent.difference_update(drop)

    async def request(self, method: str, params: list | None = None, timeout: float = 5.0) -> object:
        """Send one control request (e.g. ``LIST_SUBSCRIPTIONS``) and return its ``result``."""
        ws = self._ws
        if ws is None:
            raise ConnectionError("not connected")
        rid = self._next_id
        self._next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.feed._pending[rid] = fut
        try:
            msg = {"method": method, "id": rid} | ({"params": params} if params is not None else {})
            await self._send_control(ws, msg)
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.feed._pending.pop(rid, None)
