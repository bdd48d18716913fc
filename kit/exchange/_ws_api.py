"""Binance's spot WebSocket API (``/ws-api/v3``) on the simulator's port, with the user data stream.

Requests are ``{"id", "method", "params"}``; answers ``{"id", "status", "result" | "error",
"rateLimits"}``. Methods: ``ping``, ``time``, ``order.place``, ``order.test``, ``order.cancel``,
``order.status``, ``openOrders.status``, ``openOrders.cancelAll``, ``allOrders``, ``myTrades``,
``account.status``, ``userDataStream.subscribe.signature``, ``userDataStream.unsubscribe``.
Signed requests carry ``apiKey``, ``timestamp`` and ``signature`` among their params; the
signature covers every other param sorted by name as ``name=value`` joined by ``&`` (Binance's
rule), and is checked exactly as REST's (same codes, same signing clock).

A subscription (at most 1,000 accounts per connection, as Binance) receives
``{"subscriptionId": n, "event": {...}}`` frames: ``executionReport`` for every change of the
account's orders (NEW, TRADE, CANCELED, EXPIRED) then ``outboundAccountPosition`` with the
balances of the assets it touched. There are no deposits or withdrawals here, so no
``balanceUpdate``. Fills of resting orders happen as the replay's clock moves: while anyone is
subscribed a ticker applies due fills every ``_TICK`` seconds of real time. The server pings
like the stream server; ``max_connection_age`` closes a connection (Binance: 24 h). The
``drop_user_stream`` fault cuts every connection that holds a subscription.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kit.exchange._params import BadRequest
from kit.exchange._records import Order, Trade, fmt
from kit.exchange._routes import ROUTES

if TYPE_CHECKING:
    from kit.exchange._trading import Trading

log = logging.getLogger("kit.exchange")

PATH = "/ws-api/v3"
MAX_SUBSCRIPTIONS = 1000
_TICK = 0.02
#: method -> (REST route, HTTP method) it answers like, or None for the WebSocket-only ones.
_METHODS: dict[str, tuple[str, str] | None] = {
    "ping": None, "time": None, "userDataStream.subscribe.signature": None, "userDataStream.unsubscribe": None,
    "order.place": ("/api/v3/order", "POST"), "order.test": ("/api/v3/order/test", "POST"),
    "order.cancel": ("/api/v3/order", "DELETE"), "order.status": ("/api/v3/order", "GET"),
    "openOrders.status": ("/api/v3/openOrders", "GET"), "openOrders.cancelAll": ("/api/v3/openOrders", "DELETE"),
    "allOrders": ("/api/v3/allOrders", "GET"), "myTrades": ("/api/v3/myTrades", "GET"),
    "account.status": ("/api/v3/account", "GET"),
}  # fmt: skip


class _Client:
    """One WebSocket API connection: its subscriptions and its outgoing frames."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.subs: dict[int, str] = {}  # subscription id -> account key
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    def send(self, frame: str) -> None:
        self.queue.put_nowait(frame)


class WsApi:
    """The WebSocket API of one simulator (``sim.trading.ws_api``)."""

    def __init__(self, trading: Trading) -> None:
        self.trading = trading
        self.clients: set[_Client] = set()
        self._next_sub = 0
        self._ticker: asyncio.Task[None] | None = None
        self.counters = {"ws_api_requests": 0, "user_events": 0, "user_stream_drops": 0}
        trading.matcher.listeners.append(self._on_change)

    # ------------------------------------------------------------------ connection
    async def serve(self, ws: ServerConnection, ip: str) -> None:
        client = _Client(ws)
        self.clients.add(client)
        tasks = [asyncio.create_task(self._writer(client)), asyncio.create_task(self._pinger(ws))]
        tasks.append(asyncio.create_task(self._lifetime(ws)))
        try:
            async for raw in ws:
                client.send(self._answer(client, raw, ip))
        except ConnectionClosed:
            pass
        finally:
            for t in tasks:
                t.cancel()
            self.clients.discard(client)
            if not any(c.subs for c in self.clients) and self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None
            log.info("ws-api (%s): closed", ip)

    async def _writer(self, client: _Client) -> None:
        try:
            while True:
                frame = await client.queue.get()
                await self.trading.sim.faults.wait_stall()
                await client.ws.send(frame)
        except ConnectionClosed:
            return  # the reader sees it too and ends the connection

    async def _pinger(self, ws: ServerConnection) -> None:
        config = self.trading.sim.config
        while True:
            await asyncio.sleep(config.ping_interval)
            try:
                pong = await ws.ping()
                await asyncio.wait_for(pong, config.pong_timeout)
            except TimeoutError:
                log.warning("ws-api: no pong within %.6g s, disconnecting", config.pong_timeout)
                if ws.transport is not None:
                    ws.transport.abort()
                return
            except ConnectionClosed:
                return

    async def _lifetime(self, ws: ServerConnection) -> None:
        await asyncio.sleep(self.trading.sim.config.max_connection_age)
        await ws.close(1001, "connection lifetime reached")

    async def _tick(self) -> None:
        """Apply due fills while anyone listens, so subscribers hear them as the clock moves."""
        sim, matcher = self.trading.sim, self.trading.matcher
        while True:
            await asyncio.sleep(_TICK)
            matcher.advance(sim.now_ms())

    def drop_subscribed(self) -> int:
        """The ``drop_user_stream`` fault: cut every connection holding a subscription."""
        dropped = [c for c in self.clients if c.subs]
        for c in dropped:
            if c.ws.transport is not None:
                c.ws.transport.abort()
        self.counters["user_stream_drops"] += len(dropped)
        log.warning("fault: dropped %d user data stream connections", len(dropped))
        return len(dropped)

    # ------------------------------------------------------------------ requests
    def _answer(self, client: _Client, raw: str | bytes, ip: str) -> str:
        self.counters["ws_api_requests"] += 1
        req_id: Any = None
        trading = self.trading
        try:
            msg = json.loads(raw)
            if not isinstance(msg, dict):
                raise BadRequest(-1100, "Request must be a JSON object.")
            req_id = msg.get("id")
            method = msg.get("method")
            params = msg.get("params", {})
            if not isinstance(method, str) or method not in _METHODS:
                raise BadRequest(-1100, f"Unknown method {method!r}.")
            if not isinstance(params, dict) or not all(isinstance(v, (str, int, float)) for v in params.values()):
                raise BadRequest(-1100, "params must be an object of strings and numbers.")
        except (ValueError, UnicodeDecodeError):
            return _error(None, 400, -1100, "Malformed request.", [])
        except BadRequest as exc:
            return _error(req_id, exc.status, exc.code, exc.msg, [])
        banned = trading.refuse_banned(ip)
        if banned is not None:
            return _error(req_id, 418, -1003, json.loads(banned.body)["msg"], [])
        route = _METHODS[method]
        weight = 1 if route is None else _weight(route, params)
        sim = trading.sim
        ok, used, retry = sim.weights.take(ip, weight)
        limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                   "limit": sim.config.weight_limit or 0, "count": used}]  # fmt: skip
        if not ok:
            trading.note_429(ip, retry)
            return _error(req_id, 429, -1003, "Too much request weight used.", limits, retry)
        p = {k: _text(v) for k, v in params.items()}
        try:
            if method == "ping":
                return _result(req_id, {}, limits)
            if method == "time":
                return _result(req_id, {"serverTime": sim.now_ms()}, limits)
            key = self._signed(p)
            if method == "userDataStream.subscribe.signature":
                return _result(req_id, {"subscriptionId": self._subscribe(client, key)}, limits)
            if method == "userDataStream.unsubscribe":
                self._unsubscribe(client, p.get("subscriptionId"))
                return _result(req_id, {}, limits)
            assert route is not None
            rest = {k: v for k, v in p.items() if k not in ("apiKey", "signature")}
            if route[1] == "POST":
                _, answer, headers = trading.new_order(client.ws, key, rest, test=method == "order.test")
                limits += [
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                     "limit": trading.orders_per_10s, "count": int(headers.get("X-MBX-ORDER-COUNT-10S", 0))},
                    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1,
                     "limit": trading.orders_per_day, "count": int(headers.get("X-MBX-ORDER-COUNT-1D", 0))},
                ]  # fmt: skip
                return _result(req_id, answer, limits)
            return _result(req_id, trading.query(route[0], route[1], key, rest), limits)
        except BadRequest as exc:
            retry_after = getattr(exc, "retry", None)
            if retry_after is not None:
                trading.note_429(ip, retry_after)
            return _error(req_id, exc.status, exc.code, exc.msg, limits, retry_after)

    def _signed(self, p: dict[str, str]) -> str:
        signature = p.get("signature")
        payload = "&".join(f"{k}={v}" for k, v in sorted(p.items()) if k != "signature")
        return self.trading.check_signed(p.get("apiKey"), payload, signature, p)

    # ------------------------------------------------------------------ user data stream
    def _subscribe(self, client: _Client, key: str) -> int:
        if len(client.subs) >= MAX_SUBSCRIPTIONS:
            raise BadRequest(-1210, f"Too many subscriptions: at most {MAX_SUBSCRIPTIONS} per connection.")
        sub = self._next_sub
        self._next_sub += 1
        client.subs[sub] = key
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name="kit.exchange.user-streams")
        return sub

    def _unsubscribe(self, client: _Client, sub: str | None) -> None:
        if sub is None:
            client.subs.clear()
        elif not sub.isdigit() or int(sub) not in client.subs:
            raise BadRequest(-2011, "Unknown subscription.")
        else:
            client.subs.pop(int(sub))

    def _on_change(self, key: str, order: Order, trade: Trade | None) -> None:
        targets = [(c, sub) for c in self.clients for sub, k in c.subs.items() if k == key]
        if not targets:
            return
        now = self.trading.sim.now_ms()
        report = _execution_report(order, trade, now)
        rules = self.trading.matcher.rules[order.symbol]
        acct = self.trading.matcher.accounts[key]
        position = {
            "e": "outboundAccountPosition", "E": now, "u": acct.update_time or now,
            "B": [{"a": a, "f": fmt(acct.free.get(a, 0.0)), "l": fmt(acct.locked.get(a, 0.0))}
                  for a in (rules.base, rules.quote)],
        }  # fmt: skip
        for client, sub in targets:
            client.send(json.dumps({"subscriptionId": sub, "event": report}, separators=(",", ":")))
            client.send(json.dumps({"subscriptionId": sub, "event": position}, separators=(",", ":")))
            self.counters["user_events"] += 2


def _execution_report(o: Order, t: Trade | None, now: int) -> dict[str, Any]:
    exec_type = "TRADE" if t is not None else "NEW" if o.status in ("NEW", "PARTIALLY_FILLED") else o.status
    return {
        "e": "executionReport", "E": now, "s": o.symbol, "c": o.client_id, "S": o.side, "o": o.type,
        "f": o.time_in_force or "GTC", "q": fmt(o.orig_qty), "p": fmt(o.price), "P": fmt(o.stop_price),
        "F": fmt(0), "g": -1, "C": o.client_id if o.status == "CANCELED" else "", "x": exec_type, "X": o.status,
        "r": o.reason.upper().replace(" ", "_") if o.reason else "NONE", "i": o.order_id,
        "l": fmt(t.qty if t else 0), "z": fmt(o.executed), "L": fmt(t.price if t else 0),
        "n": fmt(t.commission if t else 0), "N": t.commission_asset if t else None,
        "T": t.time if t else o.update_time, "t": t.trade_id if t else -1, "v": -1, "I": 0,
        "w": o.is_open and o.working_time >= 0, "m": bool(t and t.is_maker), "M": False, "O": o.time,
        "Z": fmt(o.cum_quote), "Y": fmt(t.quote_qty if t else 0), "Q": fmt(o.orig_quote_qty),
        "W": o.working_time, "V": "NONE",
    }  # fmt: skip


def _weight(route: tuple[str, str], params: dict[str, Any]) -> int:
    if route == ("/api/v3/openOrders", "GET") and "symbol" not in params:
        return 80
    return ROUTES[(route[1], route[0])]


def _text(v: str | int | float) -> str:
    return v if isinstance(v, str) else (str(v) if isinstance(v, int) else fmt(v).rstrip("0").rstrip("."))


def _result(req_id: Any, result: Any, limits: list[dict[str, Any]]) -> str:
    return json.dumps({"id": req_id, "status": 200, "result": result, "rateLimits": limits}, separators=(",", ":"))


def _error(
    req_id: Any, status: int, code: int, msg: str, limits: list[dict[str, Any]], retry: int | None = None
) -> str:
    out: dict[str, Any] = {"id": req_id, "status": status, "error": {"code": code, "msg": msg}}
    if retry is not None:
        out["error"]["data"] = {"retryAfter": retry}
    if limits:
        out["rateLimits"] = limits
    return json.dumps(out, separators=(",", ":"))
