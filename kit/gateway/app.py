"""The gateway's ASGI app: REST routes, the WebSocket ``/api/v1/ws``, health, metrics, the example page.

:func:`create_app` builds a FastAPI app around one :class:`Gateway` (the process's feed, engine,
fan-out hub, token checks and limits), started in the app's lifespan on the server's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from kit.engine import IndicatorEngine
from kit.errors import KitError
from kit.feed import RestClient, shared_feed
from kit.gateway import _protocol as P
from kit.gateway import _tokens
from kit.gateway._account import router as account_router
from kit.gateway._config import GatewayConfig
from kit.gateway._fanout import CLOSE_REVOKED, Hub, Outbox, SinceTooOld
from kit.gateway._fault import FaultPlan
from kit.gateway._metrics import CONTENT_TYPE_LATEST, Metrics
from kit.gateway._private import PrivateStreams
from kit.gateway._rest import ApiError, router
from kit.gateway._streams import Private, Stream
from kit.gateway._tokens import Identity
from kit.relay import Keys, RedisFeed
from kit.settings import Settings
from kit.store import Store

log = logging.getLogger("kit.gateway")
_EXAMPLE = Path(__file__).resolve().parent / "example.html"
_PUBLIC = ("/health", "/ready", "/metrics", "/example", "/docs", "/openapi.json", "/docs/oauth2-redirect")
_TOKEN_CACHE_S = 5.0


class _Conn:
    """One open WebSocket: its protocol state, outbox and (if logged in) identity."""

    __slots__ = ("box", "identity", "protocol")

    def __init__(self, protocol: P.Protocol, box: Outbox, identity: Identity | None) -> None:
        self.protocol = protocol
        self.box = box
        self.identity = identity


class Gateway:
    """The runtime of one gateway process: feed, engine, hub, tokens, limits and counters.

    Args:
        config: the :class:`GatewayConfig`.
        feed: the candle source (default: a ``RedisFeed`` when ``KIT_REDIS_URL`` is set, else
            :func:`kit.feed.shared_feed`).
        store: the token store (default: ``kit.store.Store()``; ``KIT_DATABASE_URL``).
        symbols: the symbols served (default: ``config.symbols``, else the exchange's list).
    """

    def __init__(
        self, config: GatewayConfig, *, feed: Any = None, store: Any = None, symbols: tuple[str, ...] = ()
    ) -> None:
        self.config = config
        self.rest = RestClient(config.rest_url)
        self.metrics = Metrics()
        self._feed = feed
        self._store = store
        self.symbols: tuple[str, ...] = tuple(symbols or config.symbols)
        self.symbol_set = frozenset(self.symbols)
        self.engine: IndicatorEngine | None = None
        self.hub: Hub = None  # type: ignore[assignment] - set in start()
        self.private: PrivateStreams = None  # type: ignore[assignment] - set in start()
        self.conns: dict[_Conn, None] = {}
        self.per_address: Counter[str] = Counter()
        self._token_cache: dict[str, tuple[float, Identity | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._owned_feed: Any = None  # a RedisFeed this gateway opened (and closes)
        self._fault = FaultPlan.from_env()
        #: why a task of the gateway ended (it never should): then not ready, and the process exits 1
        self.task_failure: str | None = None
        self.started = False

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = Store()
        return self._store

    async def start(self) -> None:
        if self._feed is None:
            s = Settings.from_env()
            if s.redis_url:
                self._feed = self._owned_feed = await RedisFeed(s.redis_url, keys=Keys(s.redis_prefix)).start()
            else:
                self._feed = shared_feed()
        if not self.symbols:
            listed = await asyncio.to_thread(self.rest.symbols)
            self.symbols = tuple(sorted(listed))
            self.symbol_set = frozenset(self.symbols)
        await asyncio.to_thread(self.store.migrate)
        self.engine = IndicatorEngine(self._feed, keep=self.config.ring)
        self.hub = Hub(self.engine, ring=self.config.ring, grace_s=self.config.grace_s, fault=self._fault)
        self.metrics.track_sources(lambda: self.hub.stats()["sources"])
        self.metrics.track_ready(lambda: float(not self.problems()))
        self.metrics.track_feed(self._feed)
        self.private = PrivateStreams(self.store, fault=self._fault)
        self._spawn(self._watch_tokens(), "tokens")
        self._spawn(self.private.run(), "private")
        self.started = True
        log.info("gateway started", extra={"symbols": len(self.symbols), "token_required": self.config.token_required})

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"kit-gateway-{name}")
        task.add_done_callback(lambda t: self._ended(t, name))
        self._tasks.append(task)

    def _ended(self, task: asyncio.Task[None], name: str) -> None:
        if task.cancelled():
            return
        exc = task.exception()  # None: it returned, which a task that loops forever never should
        log.error("task %s failed; the gateway is not ready and stops", name, exc_info=exc)
        if self.task_failure is None:
            self.task_failure = f"task {name} failed: {exc!r}" if exc is not None else f"task {name} ended"

    @property
    def failure(self) -> str | None:
        """Why the gateway must stop (a stream source or one of its tasks failed), else None."""
        if self.hub is not None and self.hub.failure is not None:
            return f"a stream source failed: {self.hub.failure}"
        return self.task_failure

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for c in list(self.conns):
            c.box.close(1001, "the gateway is stopping")
        if self.hub is not None:
            await self.hub.close()
        if self.engine is not None:
            await self.engine.close()
        if self._owned_feed is not None:
            await self._owned_feed.stop()

    # -- health ----------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """What keeps the gateway from serving; empty when ready."""
        out = []
        if not self.started:
            out.append("starting")
        if self.hub is not None and self.hub.failure is not None:
            out.append(f"a stream source failed: {self.hub.failure}")
        if self.task_failure is not None:
            out.append(self.task_failure)
        stats = getattr(self._feed, "stats", None)
        if self.hub is not None and self.hub.stats()["sources"] and callable(stats):
            feed = stats()
            if feed.get("connections") == 0:  # a direct Feed serving streams with no exchange connection
                out.append("the exchange feed is disconnected (reconnecting)")
        return out

    # -- tokens ----------------------------------------------------------------------------------
    async def identify(self, token: str) -> Identity | None:
        """The identity of ``token``, cached a few seconds (revocation reaches sockets via the watcher)."""
        now = time.monotonic()
        hit = self._token_cache.get(token)
        if hit is not None and now - hit[0] < _TOKEN_CACHE_S:
            return hit[1]
        ident = await asyncio.to_thread(_tokens.verify, self.store, token)
        if len(self._token_cache) > 10_000:
            self._token_cache.clear()
        self._token_cache[token] = (now, ident)
        return ident

    async def _watch_tokens(self) -> None:
        while True:
            await asyncio.sleep(self.config.revoke_check_s)
            if self._fault is not None:
                self._fault.check("tokens")
            ids = {c.identity.token_id for c in self.conns if c.identity is not None}
            if not ids:
                continue
            try:
                gone = await asyncio.to_thread(_tokens.revoked_among, self.store, ids)
            except Exception as exc:  # the database is down: keep sockets, say so, retry
                log.warning("cannot check tokens for revocation", extra={"error": str(exc)})
                continue
            if gone:
                self._token_cache.clear()
                for c in list(self.conns):
                    if c.identity is not None and c.identity.token_id in gone:
                        self.metrics.revoked_closed.inc()
                        c.box.close(CLOSE_REVOKED, "token revoked", error_event=True)

    # -- WebSocket -------------------------------------------------------------------------------
    def origin_allowed(self, ws: WebSocket) -> bool:
        origin = ws.headers.get("origin")
        if origin is None:  # not a browser: nothing to forge
            return True
        netloc = origin.split("://", 1)[-1].rstrip("/").lower()
        return netloc == ws.headers.get("host", "").lower() or origin in self.config.allowed_origins

    async def serve(self, ws: WebSocket) -> None:
        cfg, m = self.config, self.metrics
        addr = ws.client.host if ws.client else "?"
        if not self.origin_allowed(ws):
            m.connections_refused.labels("origin").inc()
            await ws.close(1008)
            return
        if self.per_address[addr] >= cfg.max_connections_per_address:
            m.connections_refused.labels("per_address").inc()
            await ws.close(1008)
            return
        identity = None
        auth = ws.headers.get("authorization", "")
        if auth:
            token = auth.removeprefix("Bearer ").strip()
            identity = await self.identify(token)
            if identity is None:
                m.connections_refused.labels("token").inc()
                await ws.close(1008)
                return
        self.per_address[addr] += 1
        try:
            await ws.accept()
            m.connections_opened.inc()
            protocol = P.Protocol(
                lambda: self.symbols, max_streams=cfg.max_streams, rate=cfg.rate, login_required=cfg.token_required
            )
            if identity is not None:
                protocol.logged_in(identity.user)
            conn = _Conn(protocol, Outbox(cfg.max_queue, m.slow_closed.inc), identity)
            self.conns[conn] = None
            m.connections.inc()
            try:
                await self._run(ws, conn)
            finally:
                del self.conns[conn]
                m.connections.dec()
                m.subscriptions.dec(protocol.streams)
                self._detach(conn, tuple(protocol.refs))
        finally:
            self.per_address[addr] -= 1
            if self.per_address[addr] <= 0:
                del self.per_address[addr]

    async def _run(self, ws: WebSocket, conn: _Conn) -> None:
        reader = asyncio.create_task(self._read(ws, conn))
        writer = asyncio.create_task(self._write(ws, conn.box))
        try:
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (reader, writer):
                t.cancel()
            for t in (reader, writer):
                with contextlib.suppress(BaseException):
                    await t

    async def _write(self, ws: WebSocket, box: Outbox) -> None:
        sent = self.metrics.messages
        while True:
            await box.wait()
            q = box.queue
            while q:
                await ws.send_text(q.popleft())
                box.sent += 1
                sent.inc()
            if box.close_code is not None:
                await ws.close(box.close_code, box.close_reason[:120])
                return

    async def _read(self, ws: WebSocket, conn: _Conn) -> None:
        m, box, protocol = self.metrics, conn.box, conn.protocol
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            frame = msg.get("text")
            if frame is None:
                frame = msg.get("bytes") or b""
            before = protocol.rate_limited
            protocol.last_method = "invalid"
            cmd = protocol.receive(frame, time.monotonic())
            if protocol.rate_limited != before:
                m.rate_limited.inc()
            m.requests.labels(protocol.last_method).inc()
            if isinstance(cmd, P.Reply):
                if cmd.code is not None:
                    m.errors.labels(str(cmd.code)).inc()
                box.push(cmd.text)
            elif isinstance(cmd, P.Subscribe):
                await self._subscribe(conn, cmd)
            elif isinstance(cmd, P.Unsubscribe):
                self._detach(conn, cmd.streams)
                m.subscriptions.dec(len(cmd.streams))
                box.push(P.result(cmd.id))
            elif isinstance(cmd, P.Login):
                ident = await self.identify(cmd.token)
                if ident is None:
                    m.errors.labels(str(P.UNAUTHORIZED)).inc()
                    box.push(P.error(P.UNAUTHORIZED, "unauthorized: invalid or revoked token", cmd.id))
                else:
                    conn.identity = ident
                    protocol.logged_in(ident.user)
                    box.push(P.result(cmd.id, {"user": ident.user}))

    def _detach(self, conn: _Conn, streams: tuple[Stream | Private, ...]) -> None:
        for s in streams:
            if isinstance(s, Private):
                if conn.identity is not None:
                    self.private.detach(conn.identity.user_id, s.kind, conn.box)
            else:
                self.hub.detach(s, conn.box)

    async def _subscribe(self, conn: _Conn, cmd: P.Subscribe) -> None:
        box, m = conn.box, self.metrics
        private: dict[Private, tuple[list[str], Any]] = {}
        for s in cmd.streams:
            try:
                if isinstance(s, Private):
                    assert conn.identity is not None  # the protocol refuses private streams before LOGIN
                    private[s] = await self.private.prepare(conn.identity.user_id, s.kind, cmd.since)
                else:
                    await self.hub.prepare(s)
            except (KitError, ValueError) as exc:
                m.errors.labels(str(P.INVALID_VALUE)).inc()
                box.push(P.error(P.INVALID_VALUE, f"cannot open {s.name}: {exc}", cmd.id))
                return
            except Exception as exc:
                log.warning("stream failed to open", extra={"stream": s.name, "error": str(exc)})
                m.errors.labels(str(P.SERVER_ERROR)).inc()
                box.push(P.error(P.SERVER_ERROR, f"cannot open {s.name}", cmd.id))
                return
        # From here nothing awaits: history and live events meet with no hole and no overlap.
        history: list[list[str]] = []
        try:
            for s in cmd.streams:
                if isinstance(s, Private):
                    history.append(private[s][0])
                elif cmd.since is not None:
                    history.append(self.hub.history(s, cmd.since))
        except SinceTooOld as exc:
            m.errors.labels(str(P.SINCE_TOO_OLD)).inc()
            box.push(P.error(P.SINCE_TOO_OLD, str(exc), cmd.id))
            return
        total = sum(len(h) for h in history)
        if total and len(box.queue) + total > self.config.max_history:
            # Resume history is queued past max_queue (it is the answer to a request), so it has
            # its own bound: a client cannot make the gateway hold more than this for it.
            m.errors.labels(str(P.SINCE_TOO_OLD)).inc()
            msg = (f"resume too large: {total} events (at most {self.config.max_history} queued); subscribe "
                   "fewer streams per request, or read older candles from /api/v1/klines")  # fmt: skip
            box.push(P.error(P.SINCE_TOO_OLD, msg, cmd.id))
            return
        box.push(conn.protocol.subscribed(cmd))
        for events in history:
            for e in events:
                box.push(e)
        for s in cmd.streams:
            if isinstance(s, Private):
                assert conn.identity is not None
                self.private.attach(conn.identity.user_id, s.kind, box, private[s][1])
            else:
                self.hub.attach(s, box)
        m.subscriptions.inc(len(cmd.streams))


class _HostCheck:
    """Refuses requests whose ``Host`` does not name this gateway (DNS rebinding)."""

    def __init__(self, app: ASGIApp, config: GatewayConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not self.config.host_allowed(host):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008, "reason": ""})
                    return
                resp = JSONResponse({"code": -1002, "msg": "Host: not a name of this gateway", "param": "Host"}, 421)
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    config: GatewayConfig | None = None, *, feed: Any = None, store: Any = None, symbols: tuple[str, ...] = ()
) -> FastAPI:
    """The gateway app (serve it with uvicorn); see :class:`Gateway` for the arguments."""
    cfg = config or GatewayConfig()
    gw = Gateway(cfg, feed=feed, store=store, symbols=symbols)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = FastAPI(
        title="kit gateway",
        summary="Live candles and indicators from kit's shared feed and engine: REST and WebSocket.",
        lifespan=lifespan,
    )
    app.state.gateway = gw
    app.include_router(router)
    app.include_router(account_router)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _bad_param(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {}
        param = str(err.get("loc", ("", "?"))[-1])
        code = -1102 if err.get("type") == "missing" else -1100
        return JSONResponse({"code": code, "msg": f"{param}: {err.get('msg', 'invalid')}", "param": param}, 400)

    @app.middleware("http")
    async def _auth_and_count(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if cfg.token_required and path not in _PUBLIC:
            token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not token or await gw.identify(token) is None:
                gw.metrics.http.labels("unauthorized", "401").inc()
                return JSONResponse({"code": -2015, "msg": "Authorization: a valid Bearer token is required"}, 401)
        resp = await call_next(request)
        route = request.scope.get("route")
        gw.metrics.http.labels(getattr(route, "path", "unmatched"), str(resp.status_code)).inc()
        return resp

    @app.get("/health", summary="200 while the process serves and no stream source has failed")
    async def health() -> JSONResponse:
        problems = gw.problems()
        return JSONResponse({"status": "fail" if problems else "ok", "problems": problems}, 503 if problems else 200)

    @app.get("/ready", summary="200 when started and every stream source is healthy")
    async def ready() -> JSONResponse:
        problems = gw.problems()
        body = {"ready": not problems, "problems": problems, **gw.hub.stats(), "connections": len(gw.conns)}
        return JSONResponse(body, 503 if problems else 200)

    @app.get("/metrics", summary="Prometheus metrics (kit_gateway_...)")
    async def metrics() -> Response:
        return Response(gw.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/example", summary="An example browser client", response_class=HTMLResponse)
    async def example() -> HTMLResponse:
        return HTMLResponse(_EXAMPLE.read_text())

    @app.websocket("/api/v1/ws")
    async def ws_endpoint(ws: WebSocket) -> None:
        try:
            await gw.serve(ws)
        except WebSocketDisconnect:
            pass

    app.add_middleware(_HostCheck, config=cfg)
    return app
