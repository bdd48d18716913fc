"""A signed Binance spot trading client for one account: stdlib HTTP, run off the event loop.

``TradingClient(rest_url, credentials)``; every call blocks (the daemon runs it in a worker
thread). What it takes care of, so that nothing above it has to:

* **Signatures**: HMAC-SHA256 of the query string or form body (``X-MBX-APIKEY``,
  ``timestamp``, ``recvWindow``, ``signature``), or Ed25519 with a PEM private key.
* **The exchange's clock**: the offset to the clock signed timestamps are checked against is
  measured from ``X-Kit-Signing-Time`` when the exchange sends it (kit's simulator, whose
  ``/api/v3/time`` is its replayed *market* clock), else from ``/api/v3/time``'s ``serverTime``
  (Binance, where both are one), on every answer; :meth:`fresh_clock` re-measures it when the
  last figure is older than 0.25 s, so a skewed local clock never fails an order; a clock that
  jumps right after a measure gets one -1021 (the exchange processed nothing), and the request
  is signed again after a new measure, once.
* **Request weight**: every request takes its weight from the host's shared budget
  (:mod:`kit.trading._budget`) first and reports ``X-MBX-USED-WEIGHT-1M`` back; a 429/418
  blocks the host for ``Retry-After``. An order request is never retried here: what happens
  to an order without an answer is the order machine's business (:class:`NoAnswer`).
* **Secrets**: the key and secret are never logged or put in an error; ``repr`` shows 4 characters.

Errors: :class:`ApiError` (an answer with Binance's ``{"code", "msg"}``, and its HTTP status),
:class:`NoAnswer` (timeout, connection reset: the request may or may not have been processed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from kit.errors import ExchangeError
from kit.trading._budget import BUDGETS, SharedBudgets

log = logging.getLogger("kit.trading")

RECV_WINDOW_MS = 5_000
#: Weights as Binance's (GET /api/v3/order is 4, myTrades and allOrders 20...).
WEIGHTS = {
    ("POST", "/api/v3/order"): 1, ("GET", "/api/v3/order"): 4, ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/openOrders"): 6, ("GET", "/api/v3/allOrders"): 20, ("GET", "/api/v3/myTrades"): 20,
    ("GET", "/api/v3/account"): 20, ("GET", "/api/v3/time"): 1, ("GET", "/api/v3/exchangeInfo"): 20,
}  # fmt: skip
_CLOCK_FRESH_S = 0.25  # a burst of orders shares one measure; a clock that jumps inside it costs one retry


class ApiError(ExchangeError):
    """The exchange answered with an error: ``status`` (HTTP) and ``code`` (Binance's)."""


class NoAnswer(ExchangeError):
    """No answer (timeout, reset, 5xx without a code): the request may have been processed."""


class TradingClient:
    """One account on one exchange; thread-safe (its state is the clock offset)."""

    def __init__(
        self, rest_url: str, credentials: Any, *, timeout: float = 10.0, budgets: SharedBudgets = BUDGETS
    ) -> None:
        self.base = rest_url.rstrip("/")
        self.host = urllib.parse.urlsplit(self.base).netloc
        self._creds = credentials  # kit.store.keys.ApiCredentials (its repr shows 4 characters)
        self._timeout = timeout
        self._budgets = budgets
        self._lock = threading.Lock()
        self.offset_ms = 0
        self.last_timestamp = 0
        self._clock_at = 0.0  # monotonic time of the last clock figure
        self._ed25519: Any = None
        if credentials.kind == "ed25519":
            # cryptography's key loading: only for an account with an Ed25519 key
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            self._ed25519 = load_pem_private_key(credentials.secret.encode(), password=None)

    def __repr__(self) -> str:
        return f"TradingClient({self.base!r}, key='...{self._creds.api_key[-4:]}')"

    # ----- the clock -----------------------------------------------------------------------------

    def now_ms(self) -> int:
        """The signing clock's time now, as measured."""
        return int(time.time() * 1000) + self.offset_ms

    def fresh_clock(self, *, force: bool = False) -> None:
        """Measure the offset again unless the last figure is under 0.25 s old."""
        if force or time.monotonic() - self._clock_at > _CLOCK_FRESH_S:
            self.request("GET", "/api/v3/time", signed=False)

    def _note_clock(self, headers: Any, body: Any, sent: float, received: float) -> None:
        signing = headers.get("X-Kit-Signing-Time") if headers is not None else None
        server = int(signing) if signing else None
        if server is None and isinstance(body, dict) and "serverTime" in body:
            server = int(body["serverTime"])
        if server is None:
            return
        with self._lock:  # the exchange stamped it about half-way through the round trip
            self.offset_ms = server - int((sent + received) / 2 * 1000)
            self._clock_at = time.monotonic()

    # ----- requests ------------------------------------------------------------------------------

    def _sign(self, payload: str) -> str:
        if self._ed25519 is not None:
            return base64.b64encode(self._ed25519.sign(payload.encode())).decode()
        return hmac.new(self._creds.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, *, signed: bool = True) -> Any:
        """One request's JSON; :class:`ApiError` or :class:`NoAnswer`. Waits for the host's weight budget.

        A signed request refused with -1021 (its timestamp outside the window: the exchange's
        clock jumped since the last measure) was not processed: the clock is measured again and
        the request sent once more. :attr:`last_timestamp` is the last signed ``timestamp`` sent.
        """
        try:
            return self._request(method, path, params, signed)
        except ApiError as exc:
            if not signed or exc.code != -1021:
                raise
        log.warning("the exchange refused a timestamp (-1021): measuring its clock again")
        self.fresh_clock(force=True)
        return self._request(method, path, params, signed)

    def _request(self, method: str, path: str, params: dict[str, Any] | None, signed: bool) -> Any:
        p = {k: v for k, v in (params or {}).items() if v is not None}
        headers: dict[str, str] = {}
        if signed:
            p["recvWindow"] = RECV_WINDOW_MS
            p["timestamp"] = self.last_timestamp = self.now_ms()
            payload = urllib.parse.urlencode(p)
            payload += "&signature=" + urllib.parse.quote(self._sign(payload), safe="")
            headers["X-MBX-APIKEY"] = self._creds.api_key
        else:
            payload = urllib.parse.urlencode(p)
        url, data = self.base + path, None
        if method == "POST":
            data = payload.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif payload:
            url += "?" + payload
        self._budgets.take(self.host, WEIGHTS.get((method, path), 1))
        sent = time.time()
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, data=data, method=method, headers=headers), timeout=self._timeout
            ) as r:
                raw, status, rh = r.read(), r.status, r.headers
        except urllib.error.HTTPError as e:
            raw, status, rh = e.read(), e.code, e.headers
        except (OSError, urllib.error.URLError) as exc:  # timeout, reset, refused: no answer
            raise NoAnswer(f"{method} {path}: no answer from {self.host} ({type(exc).__name__})") from None
        received = time.time()
        used = rh.get("X-MBX-USED-WEIGHT-1M") if rh is not None else None
        self._budgets.observe(self.host, int(used) if used and used.isdigit() else None)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._note_clock(rh, body, sent, received)
        if status in (429, 418):
            retry = rh.get("Retry-After") if rh is not None else None
            self._budgets.refused(self.host, float(retry) if retry and retry.isdigit() else 60.0)
        if status == 200:
            return body
        code = body.get("code") if isinstance(body, dict) else None
        msg = body.get("msg") if isinstance(body, dict) else ""
        if code is None and status >= 500:
            raise NoAnswer(f"{method} {path}: HTTP {status} from {self.host}", status=status)
        raise ApiError(f"{method} {path}: {code} {msg}", status=status, code=code)

    # ----- the calls the live path makes ---------------------------------------------------------

    def place(self, symbol: str, side: str, quantity: str, client_id: str) -> dict[str, Any]:
        """A MARKET order by base quantity, answered in full (with its fills)."""
        return self.request("POST", "/api/v3/order", {
            "symbol": symbol, "side": side, "type": "MARKET", "quantity": quantity,
            "newClientOrderId": client_id, "newOrderRespType": "FULL",
        })  # fmt: skip

    def query(self, symbol: str, client_id: str) -> dict[str, Any]:
        return self.request("GET", "/api/v3/order", {"symbol": symbol, "origClientOrderId": client_id})

    def cancel(self, symbol: str, client_id: str) -> dict[str, Any]:
        return self.request("DELETE", "/api/v3/order", {"symbol": symbol, "origClientOrderId": client_id})

    def my_trades(self, symbol: str, *, order_id: int | None = None, from_id: int | None = None) -> list[Any]:
        return self.request("GET", "/api/v3/myTrades", {"symbol": symbol, "orderId": order_id, "fromId": from_id,
                                                        "limit": 1000})  # fmt: skip

    def all_orders(self, symbol: str, *, from_order_id: int | None = None) -> list[Any]:
        """Up to 1,000 orders from ``from_order_id`` on (the oldest without it)."""
        return self.request("GET", "/api/v3/allOrders", {"symbol": symbol, "orderId": from_order_id, "limit": 1000})

    def open_orders(self, symbol: str) -> list[Any]:
        return self.request("GET", "/api/v3/openOrders", {"symbol": symbol})

    def exchange_info(self, symbol: str) -> dict[str, Any]:
        info = self.request("GET", "/api/v3/exchangeInfo", {"symbol": symbol}, signed=False)
        for s in info.get("symbols", ()):
            if s.get("symbol") == symbol:
                return s
        raise ApiError(f"the exchange does not list {symbol}", code=-1121)
