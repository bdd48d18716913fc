"""Binance's public REST market data on the simulator's port: klines, ping, time, exchangeInfo.

Answered from the WebSocket server's ``process_request`` hook (plain HTTP GET, one request per
TCP connection: ``Connection: close``). Request weight is counted per client IP over a sliding
60 s window of real time; over ``weight_limit`` the answer is HTTP 429 with ``Retry-After``.
Every answer carries ``X-MBX-USED-WEIGHT-1M``.

``/_sim/*`` are the simulator's own controls (see :func:`_admin`): POST, bounded values, and
answered only to loopback clients or, with a control token, to requests that carry it.
"""

from __future__ import annotations

import bisect
import collections
import email.utils
import json
import math
import re
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from kit._guard import bearer_ok, is_loopback
from kit.errors import KitError
from kit.exchange import _faults, _params, _wire
from kit.exchange._params import BadRequest
from kit.market.intervals import INTERVALS

if TYPE_CHECKING:
    from kit.exchange.simulator import ExchangeSimulator

WEIGHTS = {"/api/v3/klines": 2, "/api/v3/ping": 1, "/api/v3/time": 1, "/api/v3/exchangeInfo": 20}
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 421: "Misdirected Request", 429: "Too Many Requests"}  # fmt: skip
# Each control and the parameters it takes; fault parameters depend on the kind.
_CONTROLS: dict[str, tuple[str, ...]] = {
    "/_sim/stats": (), "/_sim/pause": (), "/_sim/resume": (), "/_sim/speed": ("x",),
    "/_sim/fault": ("kind", "n", "seconds", "replace", "ms"),
}  # fmt: skip
_FAULT_PARAMS = {"drop": (), "stall": ("seconds",), "malformed": ("n", "replace"), "duplicate": ("n",),
                 "reorder": ("n",),
                 # Trading faults (kit.exchange._trading): the next n orders, or the signing clock's skew.
                 "order_timeout": ("n",), "order_unknown": ("n",), "reject_order": ("n",), "skew": ("ms",),
                 "drop_user_stream": ()}  # fmt: skip


class WeightMeter:
    """Request weight per IP over the last 60 s of real time."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._log: dict[str, collections.deque[tuple[float, int]]] = {}

    def used(self, ip: str, now: float) -> int:
        q = self._log.setdefault(ip, collections.deque())
        while q and q[0][0] <= now - 60.0:
            q.popleft()
        return sum(w for _, w in q)

    def take(self, ip: str, weight: int) -> tuple[bool, int, int]:
        """(allowed, used weight after this request, seconds to wait if refused)."""
        now = time.monotonic()
        used = self.used(ip, now)
        if self.limit is not None and used + weight > self.limit:
            q = self._log[ip]
            # Wait until enough weight has left the window for this request to fit.
            need, freed, retry = used + weight - self.limit, 0, 60.0
            for ts, w in q:
                freed += w
                if freed >= need:
                    retry = ts + 60.0 - now
                    break
            return False, used, max(1, math.ceil(retry))
        self._log[ip].append((now, weight))
        return True, used + weight, 0


def respond(status: int, body: bytes, used: int | None = None, extra: dict[str, str] | None = None) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", "application/json;charset=UTF-8"),
            ("Content-Length", str(len(body))),
        ]
    )
    if used is not None:
        headers["X-MBX-USED-WEIGHT-1M"] = str(used)
    for k, v in (extra or {}).items():
        headers[k] = v
    return Response(status, _REASONS.get(status, "Error"), headers, body)


def handle(sim: ExchangeSimulator, request: Request, ip: str) -> Response:
    """Answer one plain HTTP request (GET; POST for the controls)."""
    sim.counters.http_requests += 1
    url = urlsplit(request.path)
    route = url.path.rstrip("/") or "/"
    if route.startswith("/_sim"):
        return _admin(sim, route, request, url.query, ip)
    if request.method not in ("GET", "HEAD"):
        return respond(405, _wire.rest_error(-1000, "GET only"), extra={"Allow": "GET"})
    weight = WEIGHTS.get(route)
    if weight is None:
        return respond(404, _wire.rest_error(-1000, f"Unknown path {url.path!r}"))
    banned = sim.trading.refuse_banned(ip)  # one ban per IP, market data and trading alike
    if banned is not None:
        return banned
    ok, used, retry = sim.weights.take(ip, weight)
    if not ok:
        sim.counters.http_429 += 1
        sim.trading.note_429(ip, retry)
        msg = (
            f"Too much request weight used; current limit is {sim.config.weight_limit} request weight per 1 MINUTE. "
            "Please use WebSocket Streams for live updates to avoid polling the API."
        )
        return respond(429, _wire.rest_error(-1003, msg), used, {"Retry-After": str(retry)})
    try:
        params = _params.parse(url.query)
        if route == "/api/v3/klines":
            body = _klines(sim, params)
        elif route == "/api/v3/ping":
            body = b"{}"
        elif route == "/api/v3/time":
            body = b'{"serverTime":%d}' % sim.now_ms()
        else:
            body = _exchange_info(sim, params)
    except BadRequest as exc:
        return respond(exc.status, _wire.rest_error(exc.code, exc.msg), used)
    # The market clock is in the body; the clock signed requests are checked against in a header.
    return respond(200, body, used, sim.trading.clock_headers())


def _klines(sim: ExchangeSimulator, params: dict[str, str]) -> bytes:
    symbol = _params.symbol(sim.data.symbols, _params.mandatory(params, "symbol"))
    interval = _params.mandatory(params, "interval")
    if interval not in INTERVALS:
        raise BadRequest(-1120, "Invalid interval.")
    start, end, limit = (
        _params.integer(params, "startTime"),
        _params.integer(params, "endTime"),
        _params.integer(params, "limit"),
    )
    if limit is None:
        limit = 500
    if not 1 <= limit <= 1000:
        raise BadRequest(-1130, "Invalid data sent for a parameter: 'limit' must be between 1 and 1000.")
    if start is not None and end is not None and start > end:
        raise BadRequest(-1023, "Start time is greater than end time.")
    series = sim.data.series(symbol, interval)
    if series is None:
        raise BadRequest(-1120, "Invalid interval.")
    now = sim.now_ms()
    n_closed = series.closed_count(now)
    lo = 0 if start is None else bisect.bisect_left(series.open, start)
    hi = n_closed if end is None else min(n_closed, bisect.bisect_right(series.open, end))
    rows: list[str] = []
    forming = series.forming(now)
    if forming is not None and (start is None or forming.t >= start) and (end is None or forming.t <= end):
        tail = [_wire.rest_row(*forming)]
    else:
        tail = []
    if start is None:
        # The most recent `limit`, the forming candle (Binance's last element) included.
        lo = max(lo, hi - (limit - len(tail)))
        rows_idx = range(lo, hi) if hi > lo else range(0)
    else:
        rows_idx = range(lo, min(hi, lo + limit)) if hi > lo else range(0)
        if len(rows_idx) >= limit:
            tail = []
    o, h, low, c, v, t, e = series.o, series.h, series.lo, series.c, series.v, series.open, series.end
    rows = [_wire.rest_row(t[i], e[i], o[i], h[i], low[i], c[i], v[i]) for i in rows_idx]
    rows.extend(tail)
    return ("[" + ",".join(rows) + "]").encode()


def _exchange_info(sim: ExchangeSimulator, params: dict[str, str]) -> bytes:
    symbols = list(sim.data.symbols)
    if "symbol" in params:
        symbols = [_params.symbol(sim.data.symbols, params["symbol"])]
    elif "symbols" in params:
        try:
            wanted = json.loads(params["symbols"])
        except ValueError:
            raise BadRequest(-1100, "Illegal characters found in parameter 'symbols'.") from None
        if not isinstance(wanted, list):
            raise BadRequest(-1100, "Illegal characters found in parameter 'symbols'.")
        symbols = [_params.symbol(sim.data.symbols, str(s)) for s in wanted]
    out = []
    for s in symbols:
        base, quote = _params.split_symbol(s)
        out.append(
            {
                "symbol": s,
                "status": "TRADING",
                "baseAsset": base,
                "baseAssetPrecision": 8,
                "quoteAsset": quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
                "icebergAllowed": True,
                "ocoAllowed": True,
                "otoAllowed": True,
                "quoteOrderQtyMarketAllowed": True,
                "allowTrailingStop": True,
                "cancelReplaceAllowed": True,
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": sim.trading.matcher.rules[s].filters(),
                "permissions": [],
                "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
                # Not Binance: what this simulator can serve for the symbol.
                "kitIntervals": list(sim.data.intervals(s)),
            }
        )
    info = {
        "timezone": "UTC",
        "serverTime": sim.now_ms(),
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": sim.config.weight_limit or 0,
            },
            *sim.trading.rate_limits(),
        ],
        "exchangeFilters": [],
        "symbols": out,
    }
    return json.dumps(info, separators=(",", ":")).encode()


def _admin(sim: ExchangeSimulator, route: str, request: Request, query: str, ip: str) -> Response:
    """``/_sim/...``: control a simulator running as its own process (see the CLI's help).

    Guarded first: with a control token every request needs ``Authorization: Bearer <token>``
    (a refused one counts against the client's request weight, so guessing is rate limited);
    without one only loopback clients are answered. Then POST for whatever changes the simulator
    (``stats`` may also be read with GET), and every parameter checked: unknown or inapplicable
    names, duplicates, and values out of bounds are a 400, never a dead dispatcher.
    """
    allowed = _CONTROLS.get(route)
    if allowed is None:
        return respond(404, _wire.rest_error(-1000, f"Unknown path {route!r}"))
    refused = None
    if sim.config.control_token:
        if not bearer_ok(_one(request.headers, "Authorization"), sim.config.control_token):
            refused = (401, "Authorization: Bearer <control token> required", {"WWW-Authenticate": "Bearer"})
    elif not is_loopback(ip):
        refused = (403, "controls answer loopback clients only; start the simulator with --control-token", {})
    if refused is not None:
        ok, used, retry = sim.weights.take(ip, 1)
        if not ok:
            msg = _wire.rest_error(-1003, "Too many refused requests.")
            return respond(429, msg, used, {"Retry-After": str(retry)})
        return respond(refused[0], _wire.rest_error(-1002, refused[1]), extra=refused[2])
    if request.method != "POST" and not (route == "/_sim/stats" and request.method == "GET"):
        return respond(405, _wire.rest_error(-1000, f"{route} takes POST"), extra={"Allow": "POST"})
    try:
        q = _params.parse(query)
        unknown = sorted(set(q) - set(allowed))
        if unknown:
            raise BadRequest(-1104, f"{route} takes no parameter {', '.join(map(repr, unknown))}")
        if route == "/_sim/fault":
            _fault(sim, q)
        elif route == "/_sim/pause":
            sim.pause()
        elif route == "/_sim/resume":
            sim.resume()
        elif route == "/_sim/speed":
            sim.set_speed(_params.mandatory(q, "x"))
    except BadRequest as exc:
        return respond(exc.status, _wire.rest_error(exc.code, exc.msg))
    except (ValueError, KitError) as exc:
        return respond(400, _wire.rest_error(-1100, str(exc)))
    return respond(200, json.dumps(sim.stats(), default=str).encode())


def _fault(sim: ExchangeSimulator, q: dict[str, str]) -> None:
    kind = q.get("kind", "")
    takes = _FAULT_PARAMS.get(kind)
    if takes is None:
        raise ValueError(f"unknown fault kind {kind!r}; expected {', '.join(_FAULT_PARAMS)}")
    extra = sorted(set(q) - {"kind", *takes})
    if extra:
        raise ValueError(f"fault {kind} takes no parameter {', '.join(map(repr, extra))}")
    n = _params.integer(q, "n")
    n = 1 if n is None else n
    if not 1 <= n <= _faults.MAX_COUNT:
        raise ValueError(f"n must be between 1 and {_faults.MAX_COUNT}, got {n}")
    if kind in sim.trading.FAULT_KINDS:
        sim.trading.fault(kind, n, int(_int_signed(q, "ms")) if q.get("ms") else None)
    elif kind == "drop":
        sim.faults.drop_all()
    elif kind == "stall":
        raw = q.get("seconds", "5")
        try:
            seconds = float(raw)
        except ValueError:
            raise ValueError(f"seconds must be a number, got {raw!r}") from None
        sim.faults.stall(seconds)  # checks 0 <= seconds <= MAX_STALL_S; 0 ends a stall
    elif kind == "malformed":
        replace = q.get("replace", "true").lower()
        if replace not in ("true", "false"):
            raise ValueError(f"replace must be true or false, got {q['replace']!r}")
        sim.faults.malformed(n, replace=replace == "true")
    elif kind == "duplicate":
        sim.faults.duplicate(n)
    else:
        sim.faults.reorder(n)


def _int_signed(q: dict[str, str], name: str) -> int:
    raw = q[name]
    if not re.match(r"^-?[0-9]{1,12}$", raw):
        raise ValueError(f"{name} must be an integer, got {raw!r}")
    return int(raw)


def _one(headers: Headers, name: str) -> str | None:
    """The header's value if sent exactly once (a repeated one is ambiguous: None)."""
    values = headers.get_all(name)
    return values[0] if len(values) == 1 else None
