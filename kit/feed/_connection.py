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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from kit.errors import ExchangeError

if TYPE_CHECKING:
    from kit.feed._config import FeedConfig

log = logging.getLogger("kit.feed")

#: Params per SUBSCRIBE/UNSUBSCRIBE message (keeps each control frame a few KB).
BATCH = 200
#: Connection attempts allowed per 5 minutes (Binance bans at 300 per IP).
MAX_ATTEMPTS_5MIN = 100


class Connection:
    """Owns a set of stream names, one WebSocket carrying them, and its control requests.

    Frames go to ``on_frame(raw, conn)``; after a reconnect ``on_reconnect(stream_names)`` is
    called (the feed catches up streams that stay silent).
    """

    def __init__(
        self,
        config: FeedConfig,
        index: int,
        on_frame: Callable[[str | bytes, Connection], None],
        on_reconnect: Callable[[list[str]], None],
    ) -> None:
        self.config = config
        self.index = index
        self._on_frame = on_frame
        self._on_reconnect = on_reconnect
        self._pending: dict[int, asyncio.Future[Any]] = {}  # control requests awaiting their answer
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
        self.reconnects = 0
        self.stalls = 0
        self.control_sent = 0
        self.control_errors = 0

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
        cfg = self.config
        failures = 0
        while not self._closing:
            if not self.streams:
                # Nothing to carry: wait for a subscription instead of holding an idle socket.
                self._dirty.clear()
                await self._dirty.wait()
                continue
            await self._respect_attempt_limit()
            url = cfg.ws_url + "/stream"
            try:
                async with connect(
                    url,
                    open_timeout=cfg.open_timeout,
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
                        self.reconnects += 1
                        log.info("reconnected", extra={"connection": self.index, "streams": len(self.streams)})
                        self._on_reconnect(list(self.streams))
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
            failures = 0 if lived > cfg.backoff_reset else failures + 1
            delay = min(cfg.backoff_max, cfg.backoff_initial * 2 ** max(failures - 1, 0))
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
        on_frame = self._on_frame
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
        timeout = self.config.stall_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            if self._sent and time.monotonic() - self.last_frame > timeout:
                self.stalls += 1
                log.warning("no frame for stall_timeout seconds; reconnecting", extra={"connection": self.index})
                ws.transport.abort()  # a stalled peer may not answer a close handshake
                return

    def _pace_wait(self) -> float:
        """Seconds to wait before the next control message keeps us under ``control_rate``/s."""
        now = time.monotonic()
        sent = self._sent_times
        while sent and now - sent[0] >= 1.0:
            sent.popleft()
        if len(sent) < int(self.config.control_rate):
            return 0.0
        return 1.0 - (now - sent[0]) + 0.01

    async def _send_control(self, ws: ClientConnection, msg: dict) -> None:
        while (wait := self._pace_wait()) > 0:
            await asyncio.sleep(wait)
        self._sent_times.append(time.monotonic())
        await ws.send(json.dumps(msg))
        self.control_sent += 1

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
        self._pending[rid] = fut
        try:
            msg = {"method": method, "id": rid} | ({"params": params} if params is not None else {})
            await self._send_control(ws, msg)
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(rid, None)

    def on_control(self, msg: dict) -> bool:
        """An answer to a control message (``{"result", "id"}`` or an error); False if ``msg`` is none."""
        rid = msg.get("id")
        fut = self._pending.get(rid) if isinstance(rid, int) else None
        err = msg.get("error") if isinstance(msg.get("error"), dict) else (msg if "code" in msg else None)
        if err is not None and "result" not in msg:
            # Binance's stream servers answer {"error": {"code", "msg"}, "id"}; older docs show it flat.
            self.control_errors += 1
            log.warning("exchange refused a control message", extra={"code": err.get("code"), "msg": err.get("msg")})
            if fut is not None and not fut.done():
                fut.set_exception(ExchangeError(f"exchange refused: {err.get('msg')}", code=err.get("code")))
            return True
        if "result" in msg:
            if fut is not None and not fut.done():
                fut.set_result(msg["result"])
            return True
        return False


class ConnectionPool:
    """The feed's connections: a new stream goes on the first with room; a new socket only past it.

    The pool keeps the counters of connections it has closed, so the feed's figures outlive them.
    """

    COUNTERS = ("reconnects", "stalls", "control_sent", "control_errors")

    def __init__(
        self,
        config: FeedConfig,
        on_frame: Callable[[str | bytes, Connection], None],
        on_reconnect: Callable[[list[str]], None],
    ) -> None:
        self.config = config
        self._on_frame = on_frame
        self._on_reconnect = on_reconnect
        self.conns: list[Connection] = []
        self._retired = dict.fromkeys(self.COUNTERS, 0)

    def assign(self, name: str) -> Connection:
        """The connection that carries stream ``name`` from now on (it subscribes at its pace)."""
        conn = next((c for c in self.conns if len(c.streams) < self.config.max_streams_per_connection), None)
        if conn is None:
            conn = Connection(self.config, len(self.conns), self._on_frame, self._on_reconnect)
            self.conns.append(conn)
            conn.start()
        conn.add(name)
        return conn

    async def stop(self) -> None:
        for conn in self.conns:
            await conn.stop()
            for k in self.COUNTERS:
                self._retired[k] += getattr(conn, k)
        self.conns.clear()

    def counters(self) -> dict[str, int]:
        return {k: self._retired[k] + sum(getattr(c, k) for c in self.conns) for k in self.COUNTERS}

    @property
    def connected(self) -> int:
        return sum(1 for c in self.conns if c.connected)

    def last_frame(self) -> float | None:
        """``time.monotonic()`` of the newest frame on any connection (None before the first connect)."""
        return max((c.last_frame for c in self.conns if c.connects), default=None)

    async def list_subscriptions(self) -> list[str]:
        out: list[str] = []
        for conn in self.conns:
            if conn.connected:
                result = await conn.request("LIST_SUBSCRIPTIONS")
                out.extend(result if isinstance(result, list) else [])
        return sorted(out)
