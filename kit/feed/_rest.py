"""A small Binance REST client for klines: stdlib only (urllib), rate-limit aware.

Shared by :mod:`kit.feed` (history, backfill after reconnects) and :mod:`kit.data` (the candle
store). Calls are blocking; the feed runs them in a worker thread (``asyncio.to_thread``) so the
event loop never waits on the network.

Rate limits: an HTTP 429 or 418 answer is retried after its ``Retry-After`` seconds; the
``X-MBX-USED-WEIGHT-1M`` header is tracked and, when the used weight nears ``weight_limit``, the
client waits for the next minute before sending more.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from kit.errors import ConfigError, ExchangeError
from kit.market.candle import Candle
from kit.market.intervals import next_open, validate_interval

log = logging.getLogger("kit.feed.rest")

#: Binance's maximum klines per request.
MAX_LIMIT = 1000
_KLINES_WEIGHT = 2


class RestClient:
    """Blocking client for the public market-data endpoints of a Binance-compatible exchange.

    Args:
        base_url: REST base, e.g. ``http://127.0.0.1:9400`` or ``https://api.binance.com``.
        timeout: seconds per HTTP request.
        weight_limit: request weight allowed per minute (Binance spot: 6000); the client keeps
            under 90 % of it using the exchange's ``X-MBX-USED-WEIGHT-1M`` header.
        max_retries: retries of one request after 429/418/5xx/network errors before giving up
            with :class:`ExchangeError`.
        sleep: the sleep function (tests and the async wrapper use the default).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        weight_limit: int = 6000,
        max_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"rest_url must start with http:// or https://, got {base_url!r}")
        if timeout <= 0:
            raise ConfigError(f"timeout must be > 0, got {timeout!r}")
        if weight_limit <= 0:
            raise ConfigError(f"weight_limit must be > 0, got {weight_limit!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.weight_limit = int(weight_limit)
        self.max_retries = int(max_retries)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._used_weight = 0
        self._used_at = 0.0
        #: Counters for stats: requests sent, 429/418 answers, seconds slept for rate limits.
        self.requests = 0
        self.rate_limited = 0
        self.waited_s = 0.0

    def __repr__(self) -> str:
        return f"RestClient({self.base_url!r})"

    # -- low level -----------------------------------------------------------------------------
    def get(self, path: str, params: dict[str, Any] | None = None, *, weight: int = 1) -> Any:
        """GET ``path`` and return the decoded JSON, retrying rate limits and transient failures.

        Raises :class:`ExchangeError` (with ``status`` and Binance ``code``) for a 4xx answer,
        or when the exchange cannot be reached after ``max_retries`` retries.
        """
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        attempt = 0
        while True:
            self._respect_weight(weight)
            req = urllib.request.Request(url, headers={"User-Agent": "kit/0.1", "Accept": "application/json"})
            try:
                self.requests += 1
                resp = urllib.request.urlopen(req, timeout=self.timeout)
                with resp:
                    body = resp.read()
                    self._note_weight(resp.headers.get("X-MBX-USED-WEIGHT-1M"))
                return json.loads(body)
            except urllib.error.HTTPError as exc:
                body = exc.read() if exc.fp is not None else b""
                self._note_weight(exc.headers.get("X-MBX-USED-WEIGHT-1M") if exc.headers else None)
                if exc.code in (429, 418):
                    self.rate_limited += 1
                    wait = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                    log.warning("rate limited by the exchange; waiting", extra={"status": exc.code, "wait_s": wait})
                    if attempt >= self.max_retries:
                        raise ExchangeError(
                            f"exchange at {self.base_url} keeps rate-limiting (HTTP {exc.code})", status=exc.code
                        ) from None
                    self.waited_s += wait
                    self._sleep(wait)
                    attempt += 1
                    continue
                code, msg = _binance_error(body)
                if 400 <= exc.code < 500:
                    raise ExchangeError(
                        f"exchange refused {path}: {msg or exc.reason} (HTTP {exc.code}"
                        + (f", code {code})" if code is not None else ")"),
                        status=exc.code,
                        code=code,
                    ) from None
                err = f"HTTP {exc.code} {msg or exc.reason}"
            except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                err = str(reason) or type(exc).__name__
            if attempt >= self.max_retries:
                raise ExchangeError(f"cannot reach the exchange at {self.base_url}: {err}")
            wait = min(0.2 * 2**attempt, 5.0)
            log.debug("REST request failed; retrying", extra={"url": url, "error": err, "wait_s": wait})
            self._sleep(wait)
            attempt += 1

    def _note_weight(self, header: str | None) -> None:
        if not header:
            return
        try:
            used = int(header)
        except ValueError:
            return
        with self._lock:
            self._used_weight = used
            self._used_at = time.time()

    def _respect_weight(self, weight: int) -> None:
        with self._lock:
            if time.time() - self._used_at > 60.0:
                self._used_weight = 0  # the last figure the exchange gave is over a minute old
            near = self._used_weight + weight > 0.9 * self.weight_limit
        if near:
            wait = 60.0 - time.time() % 60 + 0.05
            log.info("near the exchange's request-weight limit; waiting for the next minute", extra={"wait_s": wait})
            self.waited_s += wait
            self._sleep(wait)
            with self._lock:
                self._used_weight = 0  # a new minute; the exchange's next answer tells the truth

    # -- endpoints -------------------------------------------------------------------------------
    def server_time(self) -> int:
        """The exchange's clock in ms (the simulator's simulated clock)."""
        return int(self.get("/api/v3/time")["serverTime"])

    def symbols(self) -> set[str]:
        """Symbols the exchange lists (``/api/v3/exchangeInfo``)."""
        info = self.get("/api/v3/exchangeInfo", weight=20)
        return {s["symbol"] for s in info.get("symbols", [])}

    def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = MAX_LIMIT,
    ) -> list[Candle]:
        """One ``GET /api/v3/klines`` request: up to ``limit`` candles, ``end_ms`` inclusive.

        Rows the exchange sends malformed are dropped (and logged), never repaired.
        """
        rows = self.get(
            "/api/v3/klines",
            {"symbol": symbol, "interval": interval, "startTime": start_ms, "endTime": end_ms, "limit": limit},
            weight=_KLINES_WEIGHT,
        )
        if not isinstance(rows, list):
            raise ExchangeError(f"exchange sent klines that are not a list: {str(rows)[:80]}")
        out = []
        for row in rows:
            try:
                c = Candle(int(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[5]))
            except (TypeError, ValueError, IndexError):
                log.warning("dropped a malformed REST kline", extra={"row": str(row)[:120]})
                continue
            if c.is_valid():
                out.append(c)
            else:
                log.warning("dropped an invalid REST kline", extra={"row": str(row)[:120]})
        return out

    def klines_range(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        end_ms: int,
        *,
        on_page: Callable[[int, int], None] | None = None,
    ) -> list[Candle]:
        """Every candle with ``start_ms <= open_time < end_ms``, paging 1000 per request.

        ``on_page(n_candles, reached_ms)`` is called after each page (progress bars).
        The result is sorted and unique by open time. Like Binance, the exchange includes its
        forming candle when the range reaches its clock: callers that want closed candles only
        end the range at the forming candle's open time (the feed and :func:`kit.data.load` do).
        """
        validate_interval(interval)
        out: list[Candle] = []
        cursor = start_ms
        while cursor < end_ms:
            page = self.klines(symbol, interval, start_ms=cursor, end_ms=end_ms - 1, limit=MAX_LIMIT)
            page = [c for c in page if cursor <= c.open_time < end_ms]
            if out:
                page = [c for c in page if c.open_time > out[-1].open_time]
            if not page:
                break
            out.extend(page)
            cursor = next_open(page[-1].open_time, interval)
            if on_page:
                on_page(len(page), cursor)
            if len(page) < MAX_LIMIT:
                break  # a short page: the exchange has nothing more up to end_ms (or up to its clock)
        return out


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, min(float(value), 300.0)) if value else 1.0
    except ValueError:
        return 1.0


def _binance_error(body: bytes) -> tuple[int | None, str]:
    try:
        data = json.loads(body)
        return (int(data["code"]) if "code" in data else None), str(data.get("msg", ""))
    except (ValueError, TypeError, AttributeError):
        return None, body[:120].decode("utf-8", "replace").strip()
