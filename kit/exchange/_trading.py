"""Binance's signed spot trading REST API on the simulator's port.

Routes (weights as Binance's): ``POST /api/v3/order`` (1), ``POST /api/v3/order/test`` (1),
``GET /api/v3/order`` (4), ``DELETE /api/v3/order`` (1), ``GET /api/v3/openOrders`` (6, 80 for
every symbol), ``DELETE /api/v3/openOrders`` (1), ``GET /api/v3/allOrders`` (20),
``GET /api/v3/myTrades`` (20), ``GET /api/v3/account`` (20). Parameters come from the query
string, the form body, or both (a name in both is -1101). The matching itself is
:class:`kit.exchange._matching.Matcher`; this module is the wire: keys, signatures, time, limits,
faults and Binance's JSON.

**The two clocks.** Klines, streams and ``/api/v3/time`` follow the simulated *market* clock.
Signed ``timestamp`` values are checked against the *signing* clock instead: the wall clock
plus the ``skew`` fault (0 unless a test sets one). A request is refused with -1021 when its
timestamp is more than 1,000 ms ahead of the signing clock or older than its ``recvWindow``
(default 5,000 ms, at most 60,000). So a real client signing with its own clock (ccxt's
default) works whatever the replay's date and speed, and a client that ignores a skew gets
-1021. Every REST answer carries the signing clock in ``X-Kit-Signing-Time`` (ms): a client
measures its offset from it (on Binance, where both clocks are one, from ``serverTime``).

**Limits.** Request weight per IP per minute (shared with market data); new orders per account
per 10 s and per day (``X-MBX-ORDER-COUNT-10S``/``-1D``); over one: HTTP 429 with
``Retry-After``. An IP that keeps sending while told to wait is banned: its ``ban_after``-th
request inside the wait gets HTTP 418 and every request for ``ban_seconds`` after it too.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from kit.exchange import _params, _rest, _views, _wire
from kit.exchange._accounts import AccountSpec, signed_payload
from kit.exchange._httpbody import BodyConnection, BodyTooLarge
from kit.exchange._matching import Matcher
from kit.exchange._params import BadRequest
from kit.exchange._records import SIDES, TIFS, TYPES, OrderRejected, OrderRequest
from kit.exchange._routes import ROUTES
from kit.exchange._ws_api import WsApi

if TYPE_CHECKING:
    from kit.exchange.simulator import ExchangeSimulator

log = logging.getLogger("kit.exchange")

FAULTS = ("order_timeout", "order_unknown", "reject_order", "skew", "drop_user_stream")
MAX_SKEW_MS = 86_400_000
_CLIENT_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,36}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_RESP_TYPES = ("ACK", "RESULT", "FULL")


class _TooManyOrders(BadRequest):
    def __init__(self, msg: str, retry: int) -> None:
        super().__init__(-1015, msg, 429)
        self.retry = retry


class Trading:
    """The trading side of one simulator: the matching core plus what the wire needs (``sim.trading``)."""

    FAULT_KINDS = FAULTS

    def __init__(self, sim: ExchangeSimulator, accounts: dict[str, AccountSpec]) -> None:
        self.sim = sim
        self.accounts = accounts
        c = sim.config
        self.matcher = Matcher(
            sim.data, accounts.values(), half_spread_bps=c.half_spread_bps, volume_share=c.volume_share,
            split=_params.split_symbol,
        )  # fmt: skip
        self.orders_per_10s, self.orders_per_day = c.orders_per_10s, c.orders_per_day
        self.ban_after, self.ban_seconds = c.ban_after, c.ban_seconds
        self.skew_ms = 0
        self.pending: dict[str, int] = dict.fromkeys(FAULTS[:3], 0)  # counted faults still to apply
        self.injected: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self._orders_10s: dict[str, collections.deque[float]] = {}
        self._orders_day: dict[str, tuple[int, int]] = {}  # key -> (UTC day, count)
        self._wait_until: dict[str, float] = {}  # ip -> monotonic time its Retry-After ends
        self._ignored: dict[str, int] = {}  # ip -> requests sent while told to wait
        self._banned_until: dict[str, float] = {}
        self.counters: dict[str, int] = dict.fromkeys(
            ("orders_placed", "orders_rejected", "signed_requests", "http_418", "clock_refusals"), 0
        )
        self.ws_api = WsApi(self)

    # ------------------------------------------------------------------ clocks and limits
    def signing_ms(self) -> int:
        """The clock signed timestamps are checked against: wall clock + skew fault."""
        return int(time.time() * 1000) + self.skew_ms

    def clock_headers(self) -> dict[str, str]:
        return {"X-Kit-Signing-Time": str(self.signing_ms())}

    def refuse_banned(self, ip: str) -> Response | None:
        """418 for a banned IP, or for the request that earns the ban; None to go on."""
        now = time.monotonic()
        until = self._banned_until.get(ip, 0.0)
        if until <= now and self._wait_until.get(ip, 0.0) > now:
            self._ignored[ip] = self._ignored.get(ip, 0) + 1
            if self._ignored[ip] >= self.ban_after:
                until = self._banned_until[ip] = now + self.ban_seconds
                self._ignored.pop(ip, None)
                log.warning("%s: kept sending after 429s; banned for %.0f s (HTTP 418)", ip, self.ban_seconds)
        if until <= now:
            return None
        self.counters["http_418"] += 1
        retry = max(1, math.ceil(until - now))
        unix_until = int((time.time() + (until - now)) * 1000)
        msg = f"Way too much request weight used; IP banned until {unix_until}. Please use WebSocket Streams."
        return _rest.respond(418, _wire.rest_error(-1003, msg), extra={"Retry-After": str(retry)})

    def note_429(self, ip: str, retry_s: int) -> None:
        """A 429 told ``ip`` to wait ``retry_s`` seconds: requests before then count towards a ban."""
        self._wait_until[ip] = max(self._wait_until.get(ip, 0.0), time.monotonic() + retry_s)

    def _count_order(self, key: str) -> tuple[bool, dict[str, str], int]:
        """Count a new order of ``key``: (allowed, count headers, seconds to wait if not)."""
        now = time.monotonic()
        q = self._orders_10s.setdefault(key, collections.deque())
        while q and q[0] <= now - 10.0:
            q.popleft()
        day = int(time.time() // 86400)
        d, n_day = self._orders_day.get(key, (day, 0))
        if d != day:
            n_day = 0
        if len(q) >= self.orders_per_10s:
            retry = max(1, math.ceil(q[0] + 10.0 - now))
            return False, self._count_headers(len(q), n_day), retry
        if n_day >= self.orders_per_day:
            retry = max(1, math.ceil((day + 1) * 86400 - time.time()))
            return False, self._count_headers(len(q), n_day), retry
        q.append(now)
        self._orders_day[key] = (day, n_day + 1)
        return True, self._count_headers(len(q), n_day + 1), 0

    @staticmethod
    def _count_headers(n10: int, nday: int) -> dict[str, str]:
        return {"X-MBX-ORDER-COUNT-10S": str(n10), "X-MBX-ORDER-COUNT-1D": str(nday)}

    def rate_limits(self) -> list[dict[str, Any]]:
        return [
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": self.orders_per_10s},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": self.orders_per_day},
        ]

    # ------------------------------------------------------------------ faults
    def fault(self, kind: str, n: int, ms: int | None) -> None:
        """Inject a trading fault (see the CLI's help); ``skew`` sets the signing clock's offset."""
        if kind == "drop_user_stream":
            self.ws_api.drop_subscribed()
        elif kind == "skew":
            if ms is None or not -MAX_SKEW_MS <= ms <= MAX_SKEW_MS:
                raise ValueError(f"skew needs ms between -{MAX_SKEW_MS} and {MAX_SKEW_MS}")
            self.skew_ms = ms
        else:
            self.pending[kind] += n
        self.injected[kind] += n if kind in self.pending else 1
        if kind != "drop_user_stream":
            log.warning("fault: %s %s", kind, f"{ms} ms" if kind == "skew" else f"x{n}")

    def _take_fault(self) -> str | None:
        for kind in ("reject_order", "order_timeout", "order_unknown"):
            if self.pending[kind]:
                self.pending[kind] -= 1
                return kind
        return None

    def stats(self) -> dict[str, Any]:
        m = self.matcher
        return {
            **self.counters,
            "accounts": len(self.accounts),
            "orders": len(m.orders),
            "trades": len(m.trades),
            "skew_ms": self.skew_ms,
            "faults": dict(self.injected),
            **self.ws_api.counters,
        }

    # ------------------------------------------------------------------ HTTP
    async def handle(self, connection: ServerConnection, request: Request, ip: str) -> Response:
        """Answer one trading request (reads the form body first)."""
        url = urlsplit(request.path)
        route = url.path.rstrip("/")
        weight = ROUTES.get((request.method, route))
        if weight is None:
            allow = ", ".join(m for m, p in ROUTES if p == route)
            return _rest.respond(405, _wire.rest_error(-1000, f"{route} takes {allow}"), extra={"Allow": allow})
        body = b""
        if isinstance(connection, BodyConnection):
            try:
                body = await connection.read_body()
            except BodyTooLarge:
                return _rest.respond(413, _wire.rest_error(-1000, "Request body too large."))
            except (TimeoutError, EOFError):
                return _rest.respond(400, _wire.rest_error(-1000, "Incomplete request body."))
        banned = self.refuse_banned(ip)
        if banned is not None:
            return banned
        if route == "/api/v3/openOrders" and request.method == "GET":
            every_symbol = all(k != "symbol" for k, _ in parse_qsl(f"{url.query}&{body.decode('latin-1')}"))
            weight = 80 if every_symbol else weight
        sim = self.sim
        sim.counters.http_requests += 1
        ok, used, retry = sim.weights.take(ip, weight)
        extra = self.clock_headers()
        if not ok:
            sim.counters.http_429 += 1
            self.note_429(ip, retry)
            msg = (
                f"Too much request weight used; current limit is {sim.config.weight_limit} request weight per 1 MINUTE."
            )
            return _rest.respond(429, _wire.rest_error(-1003, msg), used, {**extra, "Retry-After": str(retry)})
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _rest.respond(400, _wire.rest_error(-1100, "Illegal characters found in the body."), used, extra)
        try:
            key = self._authenticate(request, url.query, text)
            params = _params.merged(url.query, text)
            status, payload = 200, None
            if request.method == "POST":  # a new order or a test order
                status, payload, more = self.new_order(connection, key, params, test=route.endswith("/test"))
                extra.update(more)
            else:
                payload = self.query(route, request.method, key, params)
        except BadRequest as exc:
            if isinstance(exc, _TooManyOrders):
                self.note_429(ip, exc.retry)
                extra["Retry-After"] = str(exc.retry)
            return _rest.respond(exc.status, _wire.rest_error(exc.code, exc.msg), used, extra)
        return _rest.respond(status, json.dumps(payload, separators=(",", ":")).encode(), used, extra)

    def _authenticate(self, request: Request, query: str, body: str) -> str:
        values = request.headers.get_all("X-MBX-APIKEY")
        payload, signature = signed_payload(query, body)
        key = values[0] if len(values) == 1 else None
        return self.check_signed(key, payload, signature and unquote(signature), _params.merged(query, body))

    def check_signed(self, api_key: str | None, payload: str, signature: str | None, params: dict[str, str]) -> str:
        """The account key of a correctly signed, timely request; else BadRequest with Binance's code.

        Shared by REST (payload: query + body) and the WebSocket API (payload: sorted params)."""
        if not api_key or not _KEY_RE.match(api_key):
            raise BadRequest(-2014, "API-key format invalid.", 401)
        spec = self.accounts.get(api_key)
        if spec is None:
            raise BadRequest(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        self.counters["signed_requests"] += 1
        if not signature:
            raise BadRequest(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        ts = _params.integer(params, "timestamp")
        if ts is None:
            raise BadRequest(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        window = _params.integer(params, "recvWindow")
        window = 5000 if window is None else window
        if window > 60_000:
            raise BadRequest(-1131, "recvWindow must be less than 60000")
        now = self.signing_ms()
        if ts > now + 1000:
            self.counters["clock_refusals"] += 1
            raise BadRequest(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - ts > window:
            self.counters["clock_refusals"] += 1
            raise BadRequest(-1021, "Timestamp for this request is outside of the recvWindow.")
        if not spec.verify(payload, signature):
            raise BadRequest(-1022, "Signature for this request is not valid.")
        return spec.key

    # ------------------------------------------------------------------ orders
    def new_order(
        self, connection: ServerConnection, key: str, params: dict[str, str], *, test: bool
    ) -> tuple[int, Any, dict[str, str]]:
        """Place (or with ``test`` only check) an order: (status, answer, count headers); BadRequest
        when refused. An ``order_timeout`` fault cuts ``connection`` after placing the order."""
        sim = self.sim
        req, resp_type = self._order_request(params)
        if test:
            try:
                self.matcher.check(key, req, sim.now_ms())
            except OrderRejected as exc:
                raise BadRequest(exc.code, exc.msg) from None
            return 200, {}, {}
        ok, headers, retry = self._count_order(key)
        if not ok:
            limit = (
                f"{self.orders_per_10s} orders per 10 SECOND"
                if headers["X-MBX-ORDER-COUNT-10S"] == str(self.orders_per_10s)
                else f"{self.orders_per_day} orders per 1 DAY"
            )
            raise _TooManyOrders(f"Too many new orders; current limit is {limit}.", retry)
        fault = self._take_fault()
        if fault == "reject_order":
            self.counters["orders_rejected"] += 1
            raise BadRequest(-2010, "Order rejected by the exchange (fault: reject_order).")
        try:
            order = self.matcher.place(key, req, sim.now_ms())
        except OrderRejected as exc:
            self.counters["orders_rejected"] += 1
            raise BadRequest(exc.code, exc.msg) from None
        self.counters["orders_placed"] += 1
        if fault == "order_timeout":
            # Accepted, then the connection dies before the answer: the client cannot know.
            log.warning("fault: order %d accepted, response dropped", order.order_id)
            if connection.transport is not None:
                connection.transport.abort()
        elif fault == "order_unknown":
            raise BadRequest(
                -1007, "Timeout waiting for response from backend server. Send status unknown; "
                "execution status unknown.", 503,
            )  # fmt: skip
        return 200, _views.order_answer(order, resp_type, self.matcher.order_trades(order.order_id)), headers

    def _order_request(self, p: dict[str, str]) -> tuple[OrderRequest, str]:
        symbol = _params.symbol(self.sim.data.symbols, _params.mandatory(p, "symbol"))
        side = _params.mandatory(p, "side")
        if side not in SIDES:
            raise BadRequest(-1117, "Invalid side.")
        typ = _params.mandatory(p, "type")
        if typ not in TYPES:
            raise BadRequest(-1116, "Invalid orderType.")
        tif = p.get("timeInForce") or None
        if tif is not None and tif not in TIFS:
            raise BadRequest(-1115, "Invalid timeInForce.")
        client_id = p.get("newClientOrderId") or None
        if client_id is not None and not _CLIENT_ID_RE.match(client_id):
            raise BadRequest(
                -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                "'^[a-zA-Z0-9-_]{1,36}$'."
            )  # fmt: skip
        resp_type = p.get("newOrderRespType") or ("FULL" if typ in ("MARKET", "LIMIT") else "ACK")
        if resp_type not in _RESP_TYPES:
            raise BadRequest(-1177, "Invalid newOrderRespType.")
        req = OrderRequest(
            symbol=symbol, side=side, type=typ, quantity=_params.decimal(p, "quantity"),
            quote_qty=_params.decimal(p, "quoteOrderQty"), price=_params.decimal(p, "price"),
            stop_price=_params.decimal(p, "stopPrice"), time_in_force=tif, client_id=client_id,
        )  # fmt: skip
        return req, resp_type

    # ------------------------------------------------------------------ queries and cancels
    def query(self, route: str, method: str, key: str, p: dict[str, str]) -> Any:
        """Answer a signed query or cancel, named by its REST route and method."""
        m, now = self.matcher, self.sim.now_ms()
        m.advance(now)
        try:
            if route == "/api/v3/account":
                return _views.account_view(self.matcher.accounts[key])
            if route == "/api/v3/openOrders":
                symbol = _params.symbol(self.sim.data.symbols, p["symbol"]) if p.get("symbol") else None
                if method == "GET":
                    return [_views.order_view(o) for o in m.open_orders(key, symbol)]
                if symbol is None:
                    _params.mandatory(p, "symbol")
                return [_views.cancel_view(o) for o in m.cancel_all(key, symbol, now)]  # type: ignore[arg-type]
            symbol = _params.symbol(self.sim.data.symbols, _params.mandatory(p, "symbol"))
            if route == "/api/v3/order":
                order_id, client_id = _params.integer(p, "orderId"), p.get("origClientOrderId") or None
                if order_id is None and client_id is None:
                    raise BadRequest(
                        -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
                    )
                if method == "GET":
                    return _views.order_view(m.find(key, symbol, order_id, client_id))
                return _views.cancel_view(m.cancel(key, symbol, order_id, client_id, now))
            if route == "/api/v3/allOrders":
                orders = m.account_orders(key, symbol)
                from_id = _params.integer(p, "orderId")
                if from_id is not None:
                    orders = [o for o in orders if o.order_id >= from_id]
                return [_views.order_view(o) for o in _views.window(orders, p, lambda o: o.time)]
            trades = m.account_trades(key, symbol)  # /api/v3/myTrades
            order_id, from_id = _params.integer(p, "orderId"), _params.integer(p, "fromId")
            if order_id is not None:
                trades = [t for t in trades if t.order_id == order_id]
            if from_id is not None:
                trades = [t for t in trades if t.trade_id >= from_id]
            return [_views.trade_view(t) for t in _views.window(trades, p, lambda t: t.time)]
        except OrderRejected as exc:
            raise BadRequest(exc.code, exc.msg) from None
