"""One WebSocket client of the simulator: its streams, its send queue, its limits, its control messages.

Sending goes through one bounded queue and one writer task per connection, so a slow client
never slows the others: at a finite speed a client whose queue overflows is disconnected (like
Binance); at max speed the replay waits for it instead (lossless backpressure).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import time
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kit.exchange import _wire
from kit.exchange._faults import GARBAGE
from kit.market.intervals import INTERVALS

if TYPE_CHECKING:
    from kit.exchange.simulator import ExchangeSimulator

log = logging.getLogger("kit.exchange")

STREAM_RE = re.compile(r"^([a-z0-9]{2,20})@kline_(" + "|".join(INTERVALS) + r")$")
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_ID_RE = re.compile(r"^[A-Za-z0-9]{1,36}$")
_EVENT = 0
_BATCH = 256  # frames per socket write
_CONTROL = 1


class RequestError(Exception):
    """A control message Binance would refuse: answered with ``{"error": {code, msg}, "id": ...}``."""

    def __init__(self, code: int, msg: str, req_id: object = None) -> None:
        super().__init__(msg)
        self.code, self.msg, self.req_id = code, msg, req_id


class Connection:
    """Server side of one client connection."""

    _ids = 0

    def __init__(self, sim: ExchangeSimulator, ws: ServerConnection, combined: bool) -> None:
        Connection._ids += 1
        self.id = Connection._ids
        self.sim = sim
        self.ws = ws
        self.combined = combined
        self.streams: dict[str, None] = {}  # ordered set of stream names
        # Unbounded on purpose: control answers always fit; events are bounded by `capacity` below.
        self.queue: asyncio.Queue[tuple[int, str | bytes]] = asyncio.Queue()
        self.capacity = sim.send_queue
        self._room = asyncio.Event()
        self.closed = False
        self.opened = time.monotonic()
        self.peer = ws.remote_address[0] if ws.remote_address else "?"
        self._recent: collections.deque[float] = collections.deque()
        self.malformed = self.duplicate = self.reorder = 0
        self.malformed_replace = True
        self._held: str | None = None
        self._garbage = 0
        self.sent = 0
        self.received = 0

    # ------------------------------------------------------------------ sending
    def offer(self, frame: str) -> None:
        """Queue an event without waiting (finite speed); a full queue disconnects the slow client."""
        if self.closed:
            return
        if self.queue.qsize() >= self.capacity:
            self.sim._counters["dropped_slow"] += 1
            self.abort(f"slow consumer: {self.capacity} frames queued")
            return
        self.queue.put_nowait((_EVENT, frame))

    async def put(self, frame: str) -> None:
        """Queue an event, waiting for room (max speed: lossless backpressure)."""
        while not self.closed and self.queue.qsize() >= self.capacity:
            self._room.clear()
            await self._room.wait()
        if not self.closed:
            self.queue.put_nowait((_EVENT, frame))

    def answer(self, text: str) -> None:
        if not self.closed:
            self.queue.put_nowait((_CONTROL, text))

    def _faulted(self, frame: str) -> list[str | bytes]:
        out: list[str | bytes] = [frame]
        if self.malformed:
            self.malformed -= 1
            garbage = GARBAGE[self._garbage % len(GARBAGE)]
            self._garbage += 1
            out = [garbage] if self.malformed_replace else [garbage, frame]
        elif self.duplicate:
            self.duplicate -= 1
            out = [frame, frame]
        elif self.reorder or self._held is not None:
            if self._held is None:
                self._held = frame
                return []
            out = [frame, self._held]
            self._held = None
            self.reorder -= 1
        return out

    async def writer(self) -> None:
        """Send queued frames in order; everything already queued goes out in one socket write."""
        faults = self.sim.faults
        counters = self.sim._counters
        ws = self.ws
        queue = self.queue
        protocol = ws.protocol
        try:
            while True:
                batch = [await queue.get()]
                while queue.qsize() and len(batch) < _BATCH:
                    batch.append(queue.get_nowait())
                if not self._room.is_set() and queue.qsize() <= self.capacity // 2:
                    self._room.set()
                if faults.stalled_for():
                    await faults.wait_stall()
                frames: list[str | bytes] = []
                for kind, frame in batch:
                    if kind == _EVENT and (self.malformed or self.duplicate or self.reorder or self._held is not None):
                        out = self._faulted(frame)  # type: ignore[arg-type]
                        counters["faulty_frames"] += len(out)
                        frames.extend(out)
                    else:
                        frames.append(frame)
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
        sim = self.sim
        try:
            while True:
                await asyncio.sleep(sim.ping_interval)
                if sim.faults.stalled_for():
                    await sim.faults.wait_stall()
                waiter = await self.ws.ping(str(int(time.time() * 1000)))
                sim._counters["pings_sent"] += 1
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), sim.pong_timeout)
                except TimeoutError:
                    sim._counters["dropped_pong"] += 1
                    self.abort(f"no pong within {sim.pong_timeout:g} s")
                    return
                sim._counters["pongs_received"] += 1
        except ConnectionClosed:
            pass

    async def lifetime(self) -> None:
        """Binance drops every connection after 24 h (``max_connection_age`` real seconds here)."""
        await asyncio.sleep(self.sim.max_connection_age)
        self.sim._counters["dropped_lifetime"] += 1
        log.info("conn %d: connection lifetime %.6g s reached, closing", self.id, self.sim.max_connection_age)
        await self.ws.close(1001, "connection lifetime reached")

    def abort(self, why: str) -> None:
        """Close the TCP connection at once, without a close frame."""
        if not self.closed:
            log.warning("conn %d (%s): disconnected: %s", self.id, self.peer, why)
        self.closed = True
        self._room.set()
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
        return len(recent) > self.sim.max_incoming_per_s

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
                if len(self.streams) + len(set(new)) > self.sim.max_streams:
                    raise RequestError(
                        2,
                        f"Invalid request: too many streams; a connection can listen to at most "
                        f"{self.sim.max_streams} streams",
                        req_id,
                    )
                self.sim._subscribe(self, new)
            else:
                self.sim._unsubscribe(self, [n for n in names if n in self.streams])
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
