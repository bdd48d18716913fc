"""The gateway's WebSocket protocol as a synchronous state machine: no sockets, no asyncio.

A connection's :class:`Protocol` takes each text frame the client sent (and the time), checks
it, and answers either at once (a :class:`Reply`: PING, LIST_SUBSCRIPTIONS, every error) or
with a command the I/O layer carries out (:class:`Subscribe`, :class:`Unsubscribe`,
:class:`Login`) and then confirms with :meth:`Protocol.subscribed` / :meth:`Protocol.logged_in`.
Requests are Binance's::

    {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m", "*@indicator_1m_rsi(14)"], "id": 1}
    {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "since": 1748736000000, "id": 2}
    {"method": "UNSUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 3}
    {"method": "LIST_SUBSCRIPTIONS", "id": 4}
    {"method": "PING", "id": 5}
    {"method": "LOGIN", "params": ["kit_..."], "id": 6}

Every request is answered with its id: ``{"result": ..., "id": 1}`` or
``{"error": {"code": 2, "msg": "..."}, "id": 1}``; a frame is never dropped silently.
Keeping this free of I/O lets the tests drive every rule (rate, limits, wildcards, refcounts)
without sockets, the way python-websockets tests its sans-I/O core.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from kit.gateway._streams import Private, Stream, StreamError, parse

#: Error codes in ``{"error": {"code": ..}}`` (0-3 are Binance's; the others kit's).
UNKNOWN_PROPERTY = 0
INVALID_VALUE = 1
INVALID_REQUEST = 2
INVALID_JSON = 3
TOO_MANY_REQUESTS = 4
TOO_MANY_STREAMS = 5
UNAUTHORIZED = 6
SINCE_TOO_OLD = 7
SERVER_ERROR = 8

MAX_FRAME = 16_384
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "PING", "LOGIN")
_KEYS = frozenset(("method", "params", "id", "since"))


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def result(req_id: object, value: object = None) -> str:
    return dumps({"result": value, "id": req_id})


def error(code: int, msg: str, req_id: object = None) -> str:
    return dumps({"error": {"code": code, "msg": msg}, "id": req_id})


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``text`` to the client; nothing else to do (``code``: the error code, if an error)."""

    text: str
    code: int | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Start ``streams`` (concrete, new to this connection) for the names the client gave.

    ``since``: resume: closed events after this sequence (a candle open time, ms) first.
    """

    id: object
    names: tuple[str, ...]
    streams: tuple[Stream | Private, ...]
    expansions: tuple[tuple[Stream | Private, ...], ...]
    since: int | None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop ``streams`` (concrete, no name of this connection refers to them any more)."""

    id: object
    streams: tuple[Stream | Private, ...]


@dataclass(frozen=True, slots=True)
class Login:
    """Check ``token`` and, if valid, confirm with :meth:`Protocol.logged_in`."""

    id: object
    token: str


Command = Reply | Subscribe | Unsubscribe | Login


class RateLimiter:
    """At most ``rate`` events in any ``window`` seconds (a sliding window of timestamps)."""

    __slots__ = ("_times", "rate", "window")

    def __init__(self, rate: int, window: float = 1.0) -> None:
        if rate < 1 or window <= 0:
            raise ValueError(f"rate must be >= 1 and window > 0, got {rate!r}, {window!r}")
        self.rate = int(rate)
        self.window = float(window)
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        t = self._times
        while t and now - t[0] >= self.window:
            t.popleft()
        if len(t) >= self.rate:
            return False
        t.append(now)
        return True


class Protocol:
    """One connection's protocol state: its subscriptions, its rate, whether it is logged in.

    Args:
        symbols: the served symbols (called on each wildcard, so a refreshed list applies).
        max_streams: concrete streams per connection (Binance: 1,024).
        rate: requests per second (Binance: 5); a request over it is answered with an error
            (:data:`TOO_MANY_REQUESTS`) and not carried out.
        login_required: market streams need a LOGIN first (or a token on the handshake).
    """

    def __init__(
        self,
        symbols: Callable[[], tuple[str, ...]],
        *,
        max_streams: int = 1024,
        rate: int = 5,
        login_required: bool = False,
    ) -> None:
        self._symbols = symbols
        self.max_streams = int(max_streams)
        self.limiter = RateLimiter(rate)
        self.login_required = login_required
        self.user: str | None = None
        #: names as the client gave them -> the concrete streams each stands for
        self.names: dict[str, tuple[Stream | Private, ...]] = {}
        #: concrete streams -> how many names refer to them
        self.refs: Counter[Stream | Private] = Counter()
        self.rate_limited = 0
        self.errors = 0
        #: the method of the last request (``invalid`` if it had none): the metrics' label
        self.last_method = "invalid"

    @property
    def streams(self) -> int:
        return len(self.refs)

    def receive(self, frame: str | bytes, now: float) -> Command:
        """The answer to one client frame (``now``: a monotonic clock, seconds)."""
        if isinstance(frame, bytes):
            try:
                frame = frame.decode()
            except UnicodeDecodeError:
                return self._err(INVALID_JSON, "frames must be UTF-8 JSON text")
        if len(frame) > MAX_FRAME:
            return self._err(INVALID_REQUEST, f"frame longer than {MAX_FRAME} characters")
        try:
            msg = json.loads(frame)
        except ValueError:
            return self._err(INVALID_JSON, "invalid JSON")
        if not isinstance(msg, dict):
            return self._err(INVALID_REQUEST, "a request is a JSON object with method, params and id")
        req_id = msg.get("id")
        if req_id is not None and (isinstance(req_id, bool) or not isinstance(req_id, (int, str))):
            return self._err(INVALID_VALUE, "id must be an integer or a string", None)
        if isinstance(req_id, str) and len(req_id) > 64:
            return self._err(INVALID_VALUE, "id longer than 64 characters", None)
        if not self.limiter.allow(now):
            self.rate_limited += 1
            return self._err(TOO_MANY_REQUESTS, f"too many requests: at most {self.limiter.rate} per second", req_id)
        unknown = set(msg) - _KEYS
        if unknown:
            return self._err(UNKNOWN_PROPERTY, f"unknown property {sorted(unknown)[0]!r}", req_id)
        method = msg.get("method")
        self.last_method = method if method in _METHODS else "invalid"
        if method not in _METHODS:
            return self._err(INVALID_REQUEST, f"method must be one of {', '.join(_METHODS)}", req_id)
        if "since" in msg and method != "SUBSCRIBE":
            return self._err(UNKNOWN_PROPERTY, "since applies to SUBSCRIBE only", req_id)
        params = msg.get("params", [])
        if not isinstance(params, list):
            return self._err(INVALID_VALUE, "params must be a list", req_id)
        if method == "PING":
            return Reply(result(req_id, "pong"))
        if method == "LIST_SUBSCRIPTIONS":
            return Reply(result(req_id, list(self.names)))
        if method == "LOGIN":
            if len(params) != 1 or not isinstance(params[0], str) or not params[0]:
                return self._err(INVALID_VALUE, "LOGIN takes one parameter: the token", req_id)
            if self.user is not None:  # one identity per connection: private streams stay its own
                return self._err(INVALID_REQUEST, "already logged in; open another connection", req_id)
            return Login(req_id, params[0])
        if not params or not all(isinstance(p, str) for p in params):
            return self._err(INVALID_VALUE, "params must be a non-empty list of stream names", req_id)
        if len(params) > self.max_streams:
            return self._err(TOO_MANY_STREAMS, f"at most {self.max_streams} streams per connection", req_id)
        if method == "UNSUBSCRIBE":
            return self._unsubscribe(req_id, params)
        since = msg.get("since")
        if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
            return self._err(INVALID_VALUE, "since must be a candle open time in ms (an integer >= 0)", req_id)
        if self.login_required and self.user is None:
            return self._err(UNAUTHORIZED, "unauthorized: LOGIN with a token first", req_id)
        return self._subscribe(req_id, params, since)

    def _subscribe(self, req_id: object, params: list[str], since: int | None) -> Command:
        served = self._symbols()
        known = frozenset(served)
        names: list[str] = []
        expansions: list[tuple[Stream | Private, ...]] = []
        for p in dict.fromkeys(params):
            try:
                pattern = parse(p, known)
            except StreamError as exc:
                return self._err(INVALID_VALUE, str(exc), req_id)
            if isinstance(pattern, Private) and self.user is None:
                return self._err(UNAUTHORIZED, f"unauthorized: {p} needs a LOGIN with your token first", req_id)
            names.append(p)
            expansions.append(pattern.expand(served))
        # A name already subscribed is a no-op, as on Binance (and is not replayed with `since`:
        # its events are flowing already).
        keep = [i for i, n in enumerate(names) if n not in self.names]
        names = [names[i] for i in keep]
        expansions = [expansions[i] for i in keep]
        new = {s: None for exp in expansions for s in exp if s not in self.refs}
        if len(self.refs) + len(new) > self.max_streams:
            return self._err(
                TOO_MANY_STREAMS,
                f"too many streams: {len(self.refs)} + {len(new)} new > {self.max_streams} per connection",
                req_id,
            )
        return Subscribe(req_id, tuple(names), tuple(new), tuple(expansions), since)

    def subscribed(self, cmd: Subscribe) -> str:
        """Record a carried-out :class:`Subscribe`; the reply to send (before any event)."""
        for name, exp in zip(cmd.names, cmd.expansions, strict=True):
            self.names[name] = exp
            self.refs.update(exp)
        return result(cmd.id)

    def _unsubscribe(self, req_id: object, params: list[str]) -> Command:
        gone: list[Stream | Private] = []
        for p in dict.fromkeys(params):
            exp = self.names.pop(p, None)
            if exp is None:
                continue  # Binance answers null for a stream it was not sending
            self.refs.subtract(exp)
            for s in exp:
                if self.refs[s] <= 0:
                    del self.refs[s]
                    gone.append(s)
        return Unsubscribe(req_id, tuple(dict.fromkeys(gone)))

    def logged_in(self, user: str) -> None:
        self.user = user

    def _err(self, code: int, msg: str, req_id: object = None) -> Reply:
        self.errors += 1
        return Reply(error(code, msg, req_id), code)
