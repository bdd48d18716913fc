"""One WebSocket client of the simulator: its streams, its limits, its control messages, its I/O.

Its life and send queue are an :class:`~kit.exchange._outbox.Outbox` (an explicit state, no I/O);
sending goes through that queue and one writer task per connection, so a slow client never slows
the others: at a finite speed a client whose queue overflows is disconnected (like Binance); at
max speed the replay waits for it instead (lossless backpressure). A connection reaches the rest
of the simulator only through what it is given: the settings, the counters, the fault switches
and the stream registry.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import time

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kit.exchange import _wire
from kit.exchange._config import SimConfig
from kit.exchange._counters import Counters
from kit.exchange._faults import Faults
from kit.exchange._outbox import ConnState, Outbox
from kit.exchange._streams import STREAM_RE, Streams

log = logging.getLogger("kit.exchange")

_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_ID_RE = re.compile(r"^[A-Za-z0-9]{1,36}$")


class RequestError(Exception):
    """A control message Binance would refuse: answered with ``{"error": {code, msg}, "id": ...}``."""

    def __init__(self, code: int, msg: str, req_id: object = None) -> None:
        super().__init__(msg)
        self.code, self.msg, self.req_id = code, msg, req_id


class Connection:
    """Server side of one client connection."""

    _ids = 0

    def __init__(
        self,
        ws: ServerConnection,
        combined: bool,
        *,
        config: SimConfig,
        counters: Counters,
        faults: Faults,
        streams: Streams,
    ) -> None:
        Connection._ids += 1
        self.id = Connection._ids
        self.ws = ws
        self.combined = combined
        self.streams: dict[str, None] = {}  # ordered set of stream names
        self.outbox = Outbox(config.send_queue)
        self._config, self._counters, self._faults, self._registry = config, counters, faults, streams
        self.opened = time.monotonic()
        self.peer = ws.remote_address[0] if ws.remote_address else "?"
        self._recent: collections.deque[float] = collections.deque()
        self.sent = 0
        self.received = 0

    @property
    def state(self) -> ConnState:
        return self.outbox.state

    # ------------------------------------------------------------------ life
    async def serve(self, names: list[str]) -> None:
        """The whole life of the connection: subscribe ``names``, answer control messages until it
        closes, then unsubscribe everything."""
        self.subscribe(names)
        tasks = [
            asyncio.create_task(self.writer()),
            asyncio.create_task(self.pinger()),
            asyncio.create_task(self.lifetime()),
        ]
        ws = self.ws
        try:
            async for raw in ws:
                self.received += 1
                if self.rate_limited():
                    self._counters.dropped_rate_limit += 1
                    log.warning(
                        "conn %d (%s): more than %d incoming messages in 1 s, disconnecting",
                        self.id, self.peer, self._config.max_incoming_per_s,
                    )  # fmt: skip
                    self.outbox.close("rate limit")
                    await ws.close(1008, "Too many requests")
                    break
                self.handle(raw)
        except ConnectionClosed:
            pass
        finally:
            self.outbox.finish()
            for t in tasks:
                t.cancel()
            self.unsubscribe(list(self.streams))

    def subscribe(self, names: list[str]) -> None:
        for name in names:
            self.streams[name] = None
        self._registry.subscribe(self, names)

    def unsubscribe(self, names: list[str]) -> None:
        for name in names:
            self.streams.pop(name, None)
        self._registry.unsubscribe(self, names)

    # ------------------------------------------------------------------ sending
    def offer(self, frame: str) -> None:
        """Queue an event without waiting (finite speed); a full queue disconnects the slow client."""
        if not self.outbox.offer(frame):
            self._counters.dropped_slow += 1
            self.abort(f"slow consumer: {self.outbox.capacity} frames queued")

    async def put(self, frame: str) -> None:
        """Queue an event, waiting for room (max speed: lossless backpressure)."""
        await self.outbox.put(frame)

    def answer(self, text: str) -> None:
        self.outbox.answer(text)

    async def writer(self) -> None:
        """Send queued frames in order; everything already queued goes out in one socket write."""
        faults, counters, outbox = self._faults, self._counters, self.outbox
        ws = self.ws
        protocol = ws.protocol
        try:
            while True:
                batch = await outbox.next_batch()
                if faults.stalled_for():
                    await faults.wait_stall()
                frames, faulty = outbox.frames(batch)
                counters.faulty_frames += faulty
                # One send_context for the whole batch: one transport write and one drain instead
                # of one per frame (websockets' send() does exactly this per message).
                async with ws.send_context():
                    for f in frames:
                        if isinstance(f, str):
                            protocol.send_text(f.encode())
                        else:
                            protocol.send_binary(f)
                self.sent += len(frames)
        except ConnectionClosed:
            pass

    async def pinger(self) -> None:
        """A ping frame every ``ping_interval`` real seconds; no pong within ``pong_timeout`` drops."""
        config, counters, faults = self._config, self._counters, self._faults
        try:
            while True:
                await asyncio.sleep(config.ping_interval)
                if faults.stalled_for():
                    await faults.wait_stall()
                waiter = await self.ws.ping(str(int(time.time() * 1000)))
                counters.pings_sent += 1
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), config.pong_timeout)
                except TimeoutError:
                    counters.dropped_pong += 1
                    self.abort(f"no pong within {config.pong_timeout:g} s")
                    return
                counters.pongs_received += 1
        except ConnectionClosed:
            pass

    async def lifetime(self) -> None:
        """Binance drops every connection after 24 h (``max_connection_age`` real seconds here)."""
        age = self._config.max_connection_age
        await asyncio.sleep(age)
        self._counters.dropped_lifetime += 1
        log.info("conn %d: connection lifetime %.6g s reached, closing", self.id, age)
        self.outbox.close("connection lifetime reached")
        await self.ws.close(1001, "connection lifetime reached")

    def abort(self, why: str) -> None:
        """Close the TCP connection at once, without a close frame."""
        if self.outbox.close(why):
            log.warning("conn %d (%s): disconnected: %s", self.id, self.peer, why)
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    # ------------------------------------------------------------------ receiving
    def rate_limited(self) -> bool:
        """True once more than ``max_incoming_per_s`` messages arrived within one second."""
        now = time.monotonic()
        recent = self._recent
        recent.append(now)
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        return len(recent) > self._config.max_incoming_per_s

    def handle(self, raw: str | bytes) -> None:
        """Answer one control message (or its error)."""
        try:
            self.answer(self._control(raw))
        except RequestError as exc:
            self.answer(_wire.ws_error(exc.code, exc.msg, exc.req_id))

    def _control(self, raw: str | bytes) -> str:
        try:
            msg = json.loads(raw)
        except ValueError as exc:
            raise RequestError(3, f"Invalid JSON: {exc}") from None
        if not isinstance(msg, dict):
            raise RequestError(2, "Invalid request: expected a JSON object")
        req_id = msg.get("id")
        if not _valid_id(req_id):
            raise RequestError(2, "Invalid request: request ID must be an unsigned integer")
        method = msg.get("method")
        if method is None:
            raise RequestError(2, "Invalid request: missing field `method`", req_id)
        if method not in _METHODS:
            raise RequestError(
                2,
                f"Invalid request: unknown variant `{method}`, expected one of "
                + ", ".join(f"`{m}`" for m in _METHODS),
                req_id,
            )
        if set(msg) - {"method", "params", "id"}:
            raise RequestError(2, "Invalid request: too many parameters", req_id)
        params = msg.get("params")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            names = self._stream_names(params, req_id)
            if method == "SUBSCRIBE":
                new = [n for n in names if n not in self.streams]
                if len(self.streams) + len(set(new)) > self._config.max_streams:
                    raise RequestError(
                        2,
                        f"Invalid request: too many streams; a connection can listen to at most "
                        f"{self._config.max_streams} streams",
                        req_id,
                    )
                self.subscribe(new)
            else:
                self.unsubscribe([n for n in names if n in self.streams])
            return _wire.result(req_id)
        if method == "LIST_SUBSCRIPTIONS":
            if params not in (None, []):
                raise RequestError(2, "Invalid request: too many parameters", req_id)
            return _wire.result(req_id, list(self.streams))
        # SET_PROPERTY / GET_PROPERTY
        if not isinstance(params, list) or not params or not isinstance(params[0], str):
            raise RequestError(2, "Invalid request: property name must be a string", req_id)
        if params[0] != "combined":
            raise RequestError(0, "Unknown property", req_id)
        if method == "GET_PROPERTY":
            if len(params) != 1:
                raise RequestError(2, "Invalid request: too many parameters", req_id)
            return _wire.result(req_id, self.combined)
        if len(params) != 2:
            raise RequestError(2, "Invalid request: too many parameters", req_id)
        if not isinstance(params[1], bool):
            raise RequestError(1, "Invalid value type: expected Boolean", req_id)
        self.combined = params[1]
        return _wire.result(req_id)

    def _stream_names(self, params: object, req_id: object) -> list[str]:
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            raise RequestError(2, "Invalid request: params must be a list of stream names", req_id)
        for p in params:
            if not STREAM_RE.match(p):
                raise RequestError(
                    2, f"Invalid request: invalid stream name `{p}` (expected e.g. btcusdt@kline_1m)", req_id
                )
        return list(dict.fromkeys(params))


def _valid_id(req_id: object) -> bool:
    if req_id is None:
        return True
    if isinstance(req_id, bool):
        return False
    if isinstance(req_id, int):
        return -(2**63) <= req_id < 2**63
    return isinstance(req_id, str) and bool(_ID_RE.match(req_id))
