"""ExchangeSimulator: Binance's spot market data (REST + WebSocket on one port) replayed from candle files.

Timing model
------------
- The simulated clock starts at ``start`` (default: the first candle's open time plus 1000
  candles of the finest loaded interval, so ``/api/v3/klines`` has a full page of history).
- At a finite ``speed`` the clock is real time x speed. A single dispatcher wakes at every
  ``update_every`` boundary of simulated time (epoch-aligned, 2 s like Binance) and at candle
  closes; for each subscribed stream it sends the final ``x:true`` event of every candle that
  closed (``E`` = close_time + 1) and then one forming ``x:false`` event as of the latest boundary.
  Forming updates are conflated (the latest boundary wins) to at most ``max_update_rate`` per
  stream per real second (default 20; at speed 600 the 2 s cadence would be 300/s); final events
  are never skipped.
- At ``speed="max"`` the clock jumps from one candle close to the next over the streams that
  have subscribers, forming updates are skipped, and every event of one simulated instant is
  queued (waiting for room: lossless backpressure) on every subscribed connection before the
  clock moves on. With no subscribed stream the clock stands still (it waits for consumers), so
  a harness may ``pause()``, subscribe everything, then ``resume()``.
- REST never shows the future: ``/api/v3/klines`` returns candles with ``close_time < now`` plus,
  as Binance does, the forming candle as the last element with its values as of now (a candle
  forms once its open time is strictly in the past). ``/api/v3/time`` is the simulated clock.

Real-time limits (as Binance, in real seconds regardless of speed): ping every ``ping_interval``
and a drop without pong within ``pong_timeout``; more than ``max_incoming_per_s`` incoming messages
in one second drops the connection (close 1008); ``max_connection_age`` closes it (1001);
``max_streams`` per connection; ``max_connects`` handshakes per IP per 5 minutes (else HTTP 429);
the REST weight over a sliding 60 s window.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import math
import socket
import time
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from kit._guard import HostCheck
from kit.errors import ConfigError
from kit.exchange import _rest, _trading, _wire, _ws_api
from kit.exchange._accounts import AccountSpec, parse_account, unique
from kit.exchange._clock import SimClock, parse_speed
from kit.exchange._config import SimConfig
from kit.exchange._counters import Counters
from kit.exchange._data import DataSpec, MarketData, load
from kit.exchange._faults import Faults
from kit.exchange._httpbody import BodyConnection
from kit.exchange._routes import PATHS
from kit.exchange._streams import Stream, Streams, route
from kit.exchange._ws import Connection
from kit.market.times import iso, parse_ms
from kit.settings import Settings

log = logging.getLogger("kit.exchange")

_MIN_TICK = 0.005  # s of real time between dispatcher wake-ups at most speeds
_MAX_TICK = 0.25  # s; re-check the clock at least this often
_HISTORY_CANDLES = 1000
# Kernel send buffer per WebSocket connection: small enough that a client's lag shows up in our
# queue (where a stuck client gets dropped) instead of hiding megabytes in the kernel.
_SOCKET_SEND_BUFFER = 256 * 1024


def _parse_start(start: object, data: MarketData) -> int:
    if start is None:
        t = data.first_open + _HISTORY_CANDLES * data.finest_step
        return min(t, data.last_end)
    t = parse_ms(start, "start")
    if not data.first_open <= t <= data.last_end:
        raise ConfigError(f"start: {iso(t)} is outside the data ({iso(data.first_open)} to {iso(data.last_end)})")
    return t


class ExchangeSimulator:
    """A Binance-compatible spot exchange on loopback, replaying candle files on a simulated clock.

    ``async with ExchangeSimulator(data=..., speed=600, port=0) as sim:`` serves REST on
    ``sim.rest_url`` and WebSocket on ``sim.ws_url`` (the same port). See the module docstring
    for the timing model and :class:`kit.exchange._faults.Faults` for ``sim.faults``.

    Args:
        data: a folder of candle files, a list of candle files, or ``{(symbol, interval): frame}``;
            default ``Settings.replay_data`` (``data/sample``).
        speed: simulated seconds per real second, or ``"max"``/``inf`` for lossless as-fast-as-consumed.
        start: simulated start (ms, ISO string, Timestamp); default first open + 1000 finest candles.
        weight_limit: REST request weight per 60 s per IP (None: unlimited).
        max_connection_age: real seconds before a WebSocket connection is closed (Binance: 24 h).
        ping_interval, pong_timeout: real seconds (pongs count against the incoming message limit).
        update_every: simulated seconds between forming updates (0 disables them).
        symbols: serve only these symbols.
        send_queue: frames a connection may have queued before it is dropped as too slow.
        max_update_rate: forming updates per stream per real second at most (None: every boundary).
        max_connects: WebSocket connection attempts per IP per 5 minutes of real time (Binance: 300);
            beyond it the handshake is refused with HTTP 429 and ``Retry-After``. None: unlimited.
        allowed_hosts: names answered besides loopback and the bound address; any other ``Host``
            gets 421 (a web page cannot reach the simulator through DNS rebinding).
        control_token: when set, the ``/_sim/*`` controls need ``Authorization: Bearer <token>``;
            without it they answer loopback clients only.
        accounts: trading accounts (:class:`~kit.exchange._accounts.AccountSpec` or
            ``"KEY:SECRET:USDT=10000,BTC=0.5"``); see :mod:`kit.exchange._trading` for the signed API
            and :mod:`kit.exchange._matching` for how orders fill.
        half_spread_bps: added to (BUY) or taken from (SELL) the price of orders that take.
        volume_share: a resting order fills at most this share of a candle's volume per candle
            (None: no cap).
        orders_per_10s, orders_per_day: new orders per account (Binance's ORDERS limits).
        ban_after, ban_seconds: requests sent during a 429's Retry-After before an IP is banned
            (HTTP 418), and for how many real seconds.
    """

    def __init__(
        self,
        data: DataSpec | None = None,
        speed: float | str = 600.0,
        start: int | str | pd.Timestamp | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        weight_limit: int | None = 6000,
        max_connection_age: float = 86400.0,
        ping_interval: float = 20.0,
        update_every: float = 2.0,
        symbols: Iterable[str] | None = None,
        *,
        pong_timeout: float = 60.0,
        max_streams: int = 1024,
        max_incoming_per_s: int = 5,
        send_queue: int = 10_000,
        max_connects: int | None = 300,
        max_update_rate: float | None = 20.0,
        allowed_hosts: Iterable[str] = (),
        control_token: str | None = None,
        accounts: Iterable[AccountSpec | str] = (),
        half_spread_bps: float = 0.0,
        volume_share: float | None = 0.1,
        orders_per_10s: int = 100,
        orders_per_day: int = 200_000,
        ban_after: int = 10,
        ban_seconds: float = 120.0,
    ) -> None:
        self.config = config = SimConfig(
            speed=speed, host=host, port=port, weight_limit=weight_limit, max_connection_age=max_connection_age,
            ping_interval=ping_interval, pong_timeout=pong_timeout, update_every=update_every,
            max_streams=max_streams, max_incoming_per_s=max_incoming_per_s, send_queue=send_queue,
            max_connects=max_connects, max_update_rate=max_update_rate, control_token=control_token or "",
            half_spread_bps=half_spread_bps, volume_share=volume_share, orders_per_10s=orders_per_10s,
            orders_per_day=orders_per_day, ban_after=ban_after, ban_seconds=ban_seconds,
        )  # fmt: skip
        if data is None:
            data = Settings.from_env().replay_data
        if isinstance(data, (str, Path)) and not Path(data).exists():
            raise ConfigError(f"data: {str(data)!r} does not exist")
        self.data = load(data, symbols)
        self.start_ms = _parse_start(start, self.data)
        self.host, self._port = host, port
        self._hosts = HostCheck.for_server(host, allowed_hosts)
        self._last_forming = 0.0
        self._attempts: dict[str, collections.deque[float]] = {}
        self.clock = SimClock(self.start_ms, float(config.speed))  # parsed: a float, inf for "max"
        self.counters = Counters()
        self._conns: set[Connection] = set()
        self.faults = Faults(lambda: self._conns)
        self.weights = _rest.WeightMeter(weight_limit)
        specs = unique(parse_account(a) if isinstance(a, str) else a for a in accounts)
        try:
            self.trading = _trading.Trading(self, specs)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._wake = asyncio.Event()
        self.streams = Streams(self.data, self.clock.now_ms, lambda: self._wake.set())
        self._server: Server | None = None
        self._runner: asyncio.Task[None] | None = None
        self._heap: list[tuple[int, str, Stream]] = []
        self._processed = self.start_ms  # events due up to this simulated ms have been queued
        self._ended = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        return self._port

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self._port}"

    async def start(self) -> ExchangeSimulator:
        """Start serving (also done by ``async with``)."""
        if self._server is not None:
            return self
        self._wake = asyncio.Event()
        try:
            self._server = await serve(
                self._handler,
                self.host,
                self._port,
                process_request=self._process_request,
                create_connection=BodyConnection,  # signed POSTs carry their parameters in the body
                ping_interval=None,  # our own pinger: stallable, counted
                compression=None,
                max_size=1 << 20,
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.host}:{self._port}: {exc.strerror or exc}") from None
        self._port = self._server.sockets[0].getsockname()[1]
        self.clock.jump(self.start_ms)  # the clock starts when serving starts, not at construction
        self._runner = asyncio.create_task(self._run(), name="kit.exchange.dispatch")
        d = self.data
        log.info(
            "exchange simulator on %s (ws %s): %s; data %s to %s; simulated clock starts %s at speed %s",
            self.rest_url, self.ws_url,
            ", ".join(f"{s} {d.base(s).interval}" for s in d.symbols),
            iso(d.first_open), iso(d.last_end), iso(self.start_ms),
            "max (the clock moves only while a stream has subscribers)" if self.clock.is_max
            else f"{self.clock.speed:g}",
        )  # fmt: skip
        return self

    async def stop(self) -> None:
        """Close every connection and stop serving."""
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except (asyncio.CancelledError, Exception):
                pass
            self._runner = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            log.info("exchange simulator on port %d stopped", self._port)

    async def __aenter__(self) -> ExchangeSimulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Serve until cancelled. Raises what killed the dispatcher: a simulator whose clock no
        longer moves must not look alive (``kit exchange`` then exits non-zero and ``kit up`` notices)."""
        await self.start()
        assert self._runner is not None
        await self._runner  # the dispatcher runs until cancelled; an exception ends serving

    # ------------------------------------------------------------------ clock control
    def now_ms(self) -> int:
        """The simulated clock (ms UTC)."""
        return self.clock.now_ms()

    def pause(self) -> None:
        self.clock.pause()
        self._wake.set()

    def resume(self) -> None:
        self.clock.resume()
        self._wake.set()

    def set_speed(self, speed: float | str) -> None:
        try:
            value = parse_speed(speed)
        except ValueError as exc:
            raise ConfigError(f"speed: {exc}") from None
        if not self.clock.is_max and math.isinf(value):
            self._tick()  # events due up to now go out before the clock starts jumping
        self.clock.set_speed(value)
        self.streams.changed = True
        self._wake.set()

    async def wait_until(self, ms: int | str | pd.Timestamp, timeout: float | None = None) -> None:
        """Wait until the simulated clock has reached ``ms`` and every event due by then is queued."""
        target = parse_ms(ms, "ms")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._processed < target:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"simulated clock at {self.now_ms()}, still before {target}")
            c = self.clock
            if c.is_max or c.paused:
                await asyncio.sleep(0.002)
            else:
                await asyncio.sleep(min(0.05, max(0.002, (target - c.now_ms()) / c.speed / 1000.0)))

    def stats(self) -> dict[str, Any]:
        """Counters and state: connections, streams, messages sent/received, drops, faults, clock."""
        out: dict[str, Any] = self.counters.as_dict()
        out["messages_sent"] += sum(c.sent for c in self._conns)
        out["messages_received"] += sum(c.received for c in self._conns)
        out.update(
            connections=len(self._conns),
            streams=len(self.streams),
            subscribers={name: len(st.subs) for name, st in self.streams.by_name.items()},
            subscriptions=sum(len(c.streams) for c in self._conns),
            queued=sum(c.outbox.queue.qsize() for c in self._conns),
            now_ms=self.now_ms(),
            speed="max" if self.clock.is_max else self.clock.speed,
            paused=self.clock.paused,
            faults=dict(self.faults.injected),
            trading=self.trading.stats(),
        )
        return out

    # ------------------------------------------------------------------ HTTP + WS entry
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | Awaitable[Response] | None:
        ip = connection.remote_address[0] if connection.remote_address else "?"
        hosts = request.headers.get_all("Host")
        local = connection.local_address[0] if connection.local_address else None
        if len(hosts) != 1 or not self._hosts.allows(hosts[0], local):
            self.counters.refused_hosts += 1
            return _rest.respond(421, _wire.rest_error(-1000, "Unknown Host: not a name of this server."))
        if urlsplit(request.path).path.rstrip("/") in PATHS:
            return self.trading.handle(connection, request, ip)  # a coroutine: it reads the body first
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return _rest.handle(self, request, ip)
        max_connects = self.config.max_connects
        if max_connects is not None:
            now = time.monotonic()
            attempts = self._attempts.setdefault(ip, collections.deque())
            while attempts and attempts[0] <= now - 300.0:
                attempts.popleft()
            if len(attempts) >= max_connects:
                self.counters.refused_connects += 1
                retry = max(1, math.ceil(attempts[0] + 300.0 - now))
                log.warning("%s: more than %d connection attempts in 5 minutes, refusing", ip, max_connects)
                msg = f"Too many connection attempts: limit is {max_connects} per 5 minutes."
                return _rest.respond(429, _wire.rest_error(-1003, msg), extra={"Retry-After": str(retry)})
            attempts.append(now)
        if urlsplit(request.path).path == _ws_api.PATH:
            return None  # the WebSocket API (signed trading and user data streams)
        try:
            found = route(request.path, self.config.max_streams)
        except ValueError as exc:
            return _rest.respond(400, _wire.rest_error(-1100, str(exc)))
        if found is None:
            return _rest.respond(404, _wire.rest_error(-1000, f"Unknown path {request.path!r}"))
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        self.counters.connections_total += 1
        if ws.request is not None and urlsplit(ws.request.path).path == _ws_api.PATH:
            await self.trading.ws_api.serve(ws, ws.remote_address[0] if ws.remote_address else "?")
            return
        found = route(ws.request.path, self.config.max_streams) if ws.request else None
        names, combined = found if found else ([], False)
        sock = ws.transport.get_extra_info("socket") if ws.transport else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_SEND_BUFFER)
        conn = Connection(
            ws, combined, config=self.config, counters=self.counters, faults=self.faults, streams=self.streams
        )
        self._conns.add(conn)
        log.info("conn %d (%s): open %s", conn.id, conn.peer, ws.request.path if ws.request else "?")
        try:
            await conn.serve(names)
        finally:
            self._conns.discard(conn)
            self.counters.messages_sent += conn.sent
            self.counters.messages_received += conn.received
            log.info("conn %d (%s): closed after %d frames sent", conn.id, conn.peer, conn.sent)

    # ------------------------------------------------------------------ dispatch
    async def _run(self) -> None:
        try:
            while True:
                self._wake.clear()
                if self.clock.paused:
                    await self._wake.wait()
                elif self.clock.is_max:
                    if not await self._run_max():
                        await self._wake.wait()
                else:
                    timeout = self._tick()
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout)
                    except TimeoutError:
                        pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("exchange simulator dispatcher failed")
            raise

    def _tick(self) -> float:
        """Queue every event due by now; return the real seconds until the next one is due."""
        t = self.clock.now_ms()
        u = self.config.update_ms
        gap = self.config.forming_gap
        real = time.monotonic()
        # Forming updates: on update_every boundaries, but at most max_update_rate per second of
        # real time (at speed 600 Binance's 2 s cadence would be 300 updates/s per stream).
        forming = bool(u) and real - self._last_forming >= gap
        if forming:
            self._last_forming = real
        next_final = t + 3_600_000
        next_form = t + 3_600_000
        counters = self.counters
        for st in list(self.streams.by_name.values()):
            s = st.series
            if s is None:
                continue
            ends, i, n = s.end, st.idx, len(s.end)
            while i < n and ends[i] <= t:
                for conn, frame in st.fan_out(st.final_event(i)):
                    conn.offer(frame)
                counters.events_final += 1
                i += 1
            st.idx = i
            if i < n:
                next_final = min(next_final, ends[i])
            if u:
                g = t - t % u
                if forming and g > st.last_g:
                    st.last_g = g
                    bar = s.forming(g)
                    if bar is not None and bar.end > t:
                        body = _wire.kline_body(st.symbol, st.interval, bar.t, bar.end, *bar[2:], False)
                        for conn, frame in st.fan_out(_wire.kline_event(st.symbol, g, body)):
                            conn.offer(frame)
                        counters.events_forming += 1
                next_form = min(next_form, g + u)
        self._processed = max(self._processed, t)
        if t >= self.data.last_end and not self._ended:
            self._ended = True
            log.info("simulated clock passed the end of the data (%s): no more candles", iso(self.data.last_end))
        speed = self.clock.speed
        wait = (next_final - t) / speed / 1000.0
        if u:
            wait = min(wait, max((next_form - t) / speed / 1000.0, self._last_forming + gap - real))
        return min(_MAX_TICK, max(_MIN_TICK, wait))

    async def _run_max(self) -> bool:
        """Max speed: step from candle close to candle close; False when nothing is left to send."""
        heap, streams = self._heap, self.streams
        if streams.changed:
            streams.changed = False
            heap.clear()
            for st in streams.by_name.values():
                s = st.series
                if s is not None and st.idx < len(s.end):
                    heap.append((s.end[st.idx], st.name, st))
            heapq.heapify(heap)
        if not heap:
            self._processed = max(self._processed, self.clock.now_ms())
            if streams.by_name and not self._ended:
                self._ended = True
                log.info("max-speed replay reached the end of the data of every subscribed stream")
            return False
        clock, counters = self.clock, self.counters
        steps = 0
        while heap and not streams.changed and clock.is_max and not clock.paused:
            t = heap[0][0]
            clock.jump(t)
            while heap and heap[0][0] == t:
                st = heapq.heappop(heap)[2]
                if not st.subs:
                    continue
                i = st.idx
                for conn, frame in st.fan_out(st.final_event(i)):
                    await conn.put(frame)
                counters.events_final += 1
                st.idx = i + 1
                s = st.series
                assert s is not None
                if i + 1 < len(s.end):
                    heapq.heappush(heap, (s.end[i + 1], st.name, st))
            self._processed = t
            steps += 1
            if steps % 32 == 0:
                await asyncio.sleep(0)  # let writers, REST and control messages run
        return True
