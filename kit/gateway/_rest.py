"""REST routes under ``/api/v1``: klines, latest price, 24 h statistics, indicators.

Candles come from the exchange's REST (``KIT_EXCHANGE_URL``: the simulator or Binance) through
:class:`kit.feed.RestClient` in a worker thread (rate limits respected), passed on in Binance's
shape after each row is checked to be a valid candle; indicator
series are the batch functions over exactly the candles returned, so they equal
``spec.batch(frame)`` on the same candles; the latest values of the indicators in use come from
the gateway's live engine. Every bad parameter is a 4xx ``{"code", "msg", "param"}``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from kit.errors import ExchangeError
from kit.gateway._fanout import _num
from kit.gateway._protocol import dumps
from kit.gateway._streams import StreamError, parse_spec_for_stream
from kit.market.candle import Candle
from kit.market.intervals import INTERVALS

if TYPE_CHECKING:
    from kit.gateway.app import Gateway

_DAY_MS = 86_400_000


class ApiError(Exception):
    """A 4xx/5xx answer ``{"code", "msg", "param"}`` (Binance's error codes where it has one)."""

    def __init__(self, status: int, code: int, msg: str, param: str | None = None) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.param = param

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "msg": self.msg}
        if self.param:
            out["param"] = self.param
        return out


def _gw(request: Request) -> Gateway:
    return request.app.state.gateway


def _symbol(gw: Gateway, value: str) -> str:
    sym = value.upper()
    if sym not in gw.symbol_set:
        raise ApiError(400, -1121, f"symbol: unknown symbol {value[:32]!r}", "symbol")
    return sym


def _interval(value: str) -> str:
    if value not in INTERVALS:
        raise ApiError(
            400, -1120, f"interval: unknown interval {value[:8]!r}; one of {' '.join(INTERVALS)}", "interval"
        )
    return value


def _range(start: int | None, end: int | None) -> None:
    if start is not None and end is not None and start > end:
        raise ApiError(400, -1023, "startTime: must not be after endTime", "startTime")


async def _klines(
    gw: Gateway, symbol: str, interval: str, start: int | None, end: int | None, limit: int
) -> list[list]:
    """The exchange's kline rows as it sent them (Binance's 12 fields; the quote volume is the
    exchange's, not re-derived from rounded strings), minus any row that is not a valid candle."""
    params = {"symbol": symbol, "interval": interval, "startTime": start, "endTime": end, "limit": limit}
    try:
        rows = await asyncio.to_thread(gw.rest.get, "/api/v3/klines", params, weight=2)
    except ExchangeError as exc:
        raise ApiError(502, -1001, f"the exchange did not answer: {exc}") from None
    if not isinstance(rows, list):
        raise ApiError(502, -1001, "the exchange sent klines that are not a list")
    return [r for r in rows if _valid(r)]


def _valid(row: object) -> bool:
    try:
        c = Candle(int(row[0]), *(float(row[i]) for i in range(1, 6)))  # type: ignore[index]
    except (TypeError, ValueError, IndexError, KeyError):
        return False
    return isinstance(row, list) and len(row) >= 8 and c.is_valid()


def _json(obj: Any) -> Response:
    return Response(dumps(obj), media_type="application/json")


router = APIRouter(prefix="/api/v1")

Symbol = Annotated[str, Query(min_length=1, max_length=32, description="e.g. BTCUSDT")]
Interval = Annotated[str, Query(min_length=1, max_length=4, description="a Binance interval, e.g. 1m")]
Start = Annotated[int | None, Query(ge=0, description="first open time, ms")]
End = Annotated[int | None, Query(ge=0, description="last open time, ms (inclusive)")]
Limit = Annotated[int, Query(ge=1, le=1000)]


class KlineQuery:
    """The query of ``/klines`` (and of ``/indicator``, which reads the same candles), Binance's names."""

    def __init__(
        self,
        symbol: Symbol,
        interval: Interval,
        startTime: Start = None,
        endTime: End = None,
        limit: Limit = 500,
    ) -> None:
        self.symbol, self.interval, self.start, self.end, self.limit = symbol, interval, startTime, endTime, limit

    async def fetch(self, request: Request) -> tuple[str, str, list[list]]:
        """Check the query against what the gateway serves; ``(symbol, interval, kline rows)``."""
        gw = _gw(request)
        sym, itv = _symbol(gw, self.symbol), _interval(self.interval)
        _range(self.start, self.end)
        return sym, itv, await _klines(gw, sym, itv, self.start, self.end, self.limit)


@router.get("/klines", summary="Candles, as Binance's /api/v3/klines")
async def klines(request: Request, q: Annotated[KlineQuery, Depends()]) -> Response:
    return _json((await q.fetch(request))[2])


@router.get("/ticker/price", summary="The latest price (the last 1m candle's close)")
async def ticker_price(request: Request, symbol: Symbol) -> Response:
    gw = _gw(request)
    sym = _symbol(gw, symbol)
    rows = await _klines(gw, sym, "1m", None, None, 1)
    if not rows:
        raise ApiError(404, -1121, f"symbol: no candles for {sym}", "symbol")
    return _json({"symbol": sym, "price": rows[-1][4], "time": rows[-1][6]})


@router.get("/ticker/24hr", summary="24-hour statistics from the last 1,440 1m candles")
async def ticker_24hr(request: Request, symbol: Symbol) -> Response:
    gw = _gw(request)
    sym = _symbol(gw, symbol)
    last = await _klines(gw, sym, "1m", None, None, 1)
    if not last:
        raise ApiError(404, -1121, f"symbol: no candles for {sym}", "symbol")
    end = int(last[-1][0])
    start = end - _DAY_MS + 60_000
    rows = await _klines(gw, sym, "1m", start, end, 1000)
    if rows and len(rows) == 1000:  # 1,440 candles: a second page
        rows += [r for r in await _klines(gw, sym, "1m", int(rows[-1][0]) + 1, end, 1000) if r[0] > rows[-1][0]]
    a = np.array([[float(x) for x in r[1:6]] + [float(r[7])] for r in rows], dtype=np.float64)
    o, c = a[0, 0], a[-1, 3]
    vol, qv = float(a[:, 4].sum()), float(a[:, 5].sum())
    return _json(
        {
            "symbol": sym,
            "priceChange": f"{c - o:.8f}",
            "priceChangePercent": f"{(c - o) / o * 100:.3f}" if o else "0.000",
            "weightedAvgPrice": f"{qv / vol:.8f}" if vol else "0.00000000",
            "openPrice": f"{o:.8f}",
            "highPrice": f"{a[:, 1].max():.8f}",
            "lowPrice": f"{a[:, 2].min():.8f}",
            "lastPrice": f"{c:.8f}",
            "volume": f"{vol:.8f}",
            "quoteVolume": f"{qv:.8f}",
            "openTime": int(rows[0][0]),
            "closeTime": int(rows[-1][6]),
            "count": len(rows),
        }
    )


@router.get("/indicator", summary="One indicator's series over the candles /klines returns for the same query")
async def indicator(
    request: Request,
    q: Annotated[KlineQuery, Depends()],
    spec: Annotated[str, Query(min_length=3, max_length=100, description="a spec key, e.g. rsi(14)")],
) -> Response:
    try:
        sp = parse_spec_for_stream(spec, "spec")
    except StreamError as exc:
        raise ApiError(400, -1102, f"spec: {exc}", "spec") from None
    sym, itv, rows = await q.fetch(request)
    t = np.array([int(r[0]) for r in rows], dtype=np.int64)
    cols = np.array([[float(x) for x in r[1:6]] for r in rows], dtype=np.float64).reshape(-1, 5)
    frame = {"open_time": t, **{k: cols[:, i] for i, k in enumerate(("open", "high", "low", "close", "volume"))}}
    out = sp.batch(frame) if len(rows) else {o: np.array([]) for o in sp.outputs}
    names = list(out)
    values = [out[n] for n in names]
    return _json(
        {
            "symbol": sym,
            "interval": itv,
            "spec": sp.key,
            "columns": ["openTime", *names],
            "rows": [[int(t[i]), *(_num(float(v[i])) for v in values)] for i in range(len(t))],
        }
    )


@router.get("/indicators/latest", summary="The latest values of every indicator the live engine computes for a stream")
async def indicators_latest(request: Request, symbol: Symbol, interval: Interval) -> Response:
    gw = _gw(request)
    sym, itv = _symbol(gw, symbol), _interval(interval)
    closed, forming = gw.hub.latest(sym, itv)

    def values(row: Any) -> dict[str, Any] | None:
        if row is None:
            return None
        out: dict[str, Any] = {}
        for sp, v in row.values.items():
            if isinstance(v, tuple):
                out[sp.key] = {k: _num(x) for k, x in zip(sp.outputs, v, strict=True)}
            else:
                out[sp.key] = _num(v)
        return {"openTime": int(row.candle[0]), "values": out}

    return _json({"symbol": sym, "interval": itv, "closed": values(closed), "forming": values(forming)})
