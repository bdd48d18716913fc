"""HTTP request bodies on the websockets server.

websockets parses only a request's head (a WebSocket handshake has no body): it refuses a
non-zero ``Content-Length`` and would read a body's bytes as WebSocket frames. Binance's signed
POST and DELETE requests carry their parameters in an ``application/x-www-form-urlencoded``
body, so :class:`BodyConnection` (passed as ``create_connection``) takes the ``Content-Length``
line out of the head it hands to websockets, keeps that many bytes after the head for itself,
and ``process_request`` awaits them with :meth:`read_body`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.server import ServerConnection

MAX_BODY = 64 * 1024  # Binance's signed requests are a few hundred bytes
_MAX_HEAD = 64 * 1024  # websockets refuses longer heads itself


class BodyTooLarge(Exception):
    pass


class BodyConnection(ServerConnection):
    """A server connection that sets a request's body aside instead of feeding it to the protocol."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head = bytearray()
        self._body = bytearray()
        self._want: int | None = None  # body length, once the head is complete; -1: no body
        self._body_done = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        if self._want is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > _MAX_HEAD:
                    self._want = -1  # let websockets refuse it
                    super().data_received(bytes(self._head))
                return
            head, rest = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
            self._head.clear()
            self._want, head = _content_length(head)
            super().data_received(head)
            if self._want < 0:
                if rest:
                    super().data_received(rest)
                self._body_done.set()
                return
            data = rest
        if self._want is not None and self._want >= 0 and not self._body_done.is_set():
            self._body += data
            if len(self._body) >= self._want or len(self._body) > MAX_BODY:
                self._body_done.set()
            return
        if self._want is not None and self._want >= 0:
            return  # bytes after a body: every answer closes the connection, nothing else is read
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._body_done.set()
        super().connection_lost(exc)

    async def read_body(self, timeout: float = 10.0) -> bytes:
        """The request's body (``b""`` if none was declared); BodyTooLarge over :data:`MAX_BODY`;
        TimeoutError if the client stops sending; EOFError if it hangs up first."""
        if self._want is not None and self._want > MAX_BODY:
            raise BodyTooLarge
        await asyncio.wait_for(self._body_done.wait(), timeout)
        if self._want is None or self._want < 0:
            return b""
        if len(self._body) > MAX_BODY:
            raise BodyTooLarge
        if len(self._body) < self._want:
            raise EOFError("connection closed in the middle of the body")
        return bytes(self._body[: self._want])


def _content_length(head: bytes) -> tuple[int, bytes]:
    """(the head's Content-Length, the head without it); -1 and the head unchanged when it has
    none, 0, several, or one that is not a number (websockets then answers as it does)."""
    lines = head.split(b"\r\n")
    found = [i for i, line in enumerate(lines) if line.partition(b":")[0].strip().lower() == b"content-length"]
    if len(found) != 1:
        return -1, head
    v = lines[found[0]].partition(b":")[2].strip()
    if not (v.isdigit() and len(v) < 12) or int(v) == 0:
        # websockets takes "Content-Length: 0" itself (some clients send it with a handshake,
        # whose WebSocket frames then follow): leave such a head alone.
        return -1, head
    del lines[found[0]]
    return int(v), b"\r\n".join(lines)
