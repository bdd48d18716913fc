"""Binance's spot wire format for klines: REST rows, WebSocket events and control answers.

The candle files carry only OHLCV. Binance's other kline fields are derived or zeroed, the
same way everywhere the simulator speaks:

- quote volume ``q`` = ``volume * (open + high + low + close) / 4`` (an approximation of the
  traded notional; the real one needs trades);
- trade count ``n`` = 0, first/last trade ids ``f``/``L`` = -1 (Binance's values for a kline
  without trades), taker-buy base/quote ``V``/``Q`` = ``"0.00000000"``, ignore field ``B`` = ``"0"``.

Prices and volumes are strings with 8 decimals, as Binance sends them; the candle files hold at
most 8 decimals, so ``float(string)`` gives back the file's float exactly.
"""

from __future__ import annotations

import json

_KLINE = (
    '{"t":%d,"T":%d,"s":"%s","i":"%s","f":-1,"L":-1,"o":"%.8f","c":"%.8f","h":"%.8f","l":"%.8f",'
    '"v":"%.8f","n":0,"x":%s,"q":"%.8f","V":"0.00000000","Q":"0.00000000","B":"0"}'
)
_REST_ROW = '[%d,"%.8f","%.8f","%.8f","%.8f","%.8f",%d,"%.8f",0,"0.00000000","0.00000000","0"]'


def kline_body(
    symbol: str, interval: str, t: int, end: int, o: float, h: float, lo: float, c: float, v: float, closed: bool
) -> str:
    """The ``k`` object of a kline event; ``end`` is the next candle's open (``T`` = ``end - 1``)."""
    return _KLINE % (
        t,
        end - 1,
        symbol,
        interval,
        o,
        c,
        h,
        lo,
        v,
        "true" if closed else "false",
        v * (o + h + lo + c) / 4.0,
    )


def kline_event(symbol: str, event_ms: int, body: str) -> str:
    """A raw-stream kline event around a ``k`` body."""
    return f'{{"e":"kline","E":{event_ms},"s":"{symbol}","k":{body}}}'


def combined(stream: str, payload: str) -> str:
    """The combined-stream wrapper ``{"stream":..,"data":..}``."""
    return f'{{"stream":"{stream}","data":{payload}}}'


def rest_row(t: int, end: int, o: float, h: float, lo: float, c: float, v: float) -> str:
    """One 12-field ``/api/v3/klines`` array."""
    return _REST_ROW % (t, o, h, lo, c, v, end - 1, v * (o + h + lo + c) / 4.0)


def result(req_id: object, value: object = None) -> str:
    """A control message's success answer: ``{"result": value, "id": id}``."""
    return json.dumps({"result": value, "id": req_id}, separators=(",", ":"))


def ws_error(code: int, msg: str, req_id: object = None) -> str:
    """A control message's error answer, as Binance's stream servers send it:
    ``{"error": {"code": 2, "msg": "Invalid request: ..."}, "id": ...}``."""
    return json.dumps({"error": {"code": code, "msg": msg}, "id": req_id}, separators=(",", ":"))


def rest_error(code: int, msg: str) -> bytes:
    """A REST error body: ``{"code": -1121, "msg": "Invalid symbol."}``."""
    return json.dumps({"code": code, "msg": msg}, separators=(",", ":")).encode()
