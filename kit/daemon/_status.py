"""The daemon's HTTP status server: plain asyncio, GET only, four endpoints.

* ``/health``  200 while the process and its event loop are alive.
* ``/ready``   200 when nothing fails, else 503; JSON ``{"ready", "state", "reasons"}`` says why
  (state ``down`` or ``degraded``: see :mod:`kit.daemon._health`).
* ``/status``  JSON: uptime, streams, strategies by user and state, analyses, trades, feed stats.
* ``/metrics`` Prometheus text exposition format (``prometheus_client``, see :mod:`kit._metrics`).

Every request must name this server in ``Host`` (loopback, the bound address, the address the
client connected to, or ``KIT_ALLOWED_HOSTS``), else 421: a web page cannot read ``/status``
through DNS rebinding. With a token (``KIT_STATUS_TOKEN``), ``/status`` and ``/metrics`` also
need ``Authorization: Bearer <token>`` (else 401); ``/health`` and ``/ready`` stay open to probes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from kit._guard import HostCheck, bearer_ok
from kit._metrics import CONTENT_TYPE_LATEST

log = logging.getLogger("kit.daemon.status")

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            421: "Misdirected Request", 503: "Service Unavailable"}  # fmt: skip
_PROTECTED = ("/status", "/metrics")  # what lists users, strategies, positions and exchange URLs


class StatusServer:
    """Serves the callbacks' answers. ``status()`` -> dict, ``ready()`` -> ``{"ready": bool, ...}`` (the
    ``/ready`` body), ``metrics()`` -> str."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        status: Callable[[], dict[str, Any]],
        ready: Callable[[], dict[str, Any]],
        metrics: Callable[[], str],
        token: str = "",
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.host, self.port = host, port
        self._status, self._ready, self._metrics = status, ready, metrics
        self._token = token
        self._hosts = HostCheck.for_server(host, allowed_hosts)
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    @property
    def serving(self) -> bool:
        """True while the listening socket accepts connections."""
        return self._server is not None and self._server.is_serving()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except TimeoutError:
                pass
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split()
            if len(parts) != 3:
                await self._send(writer, 400, "text/plain", "bad request\n")
                return
            headers = _headers(lines[1:])
            method, target = parts[0], parts[1].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                await self._send(writer, 405, "text/plain", "GET only\n")
                return
            local = writer.get_extra_info("sockname")
            if not self._hosts.allows(headers.get("host"), local[0] if local else None):
                await self._send(writer, 421, "text/plain", "unknown Host: add it to KIT_ALLOWED_HOSTS\n")
                return
            if target in _PROTECTED and self._token and not bearer_ok(headers.get("authorization"), self._token):
                await self._send(writer, 401, "text/plain", "Authorization: Bearer <KIT_STATUS_TOKEN> required\n",
                                 {"WWW-Authenticate": 'Bearer realm="kit"'})  # fmt: skip
                return
            if target == "/health":
                await self._send(writer, 200, "application/json", '{"status": "ok"}\n')
            elif target == "/ready":
                doc = self._ready()
                await self._send(writer, 200 if doc["ready"] else 503, "application/json", json.dumps(doc) + "\n")
            elif target == "/status":
                body = json.dumps(self._status(), default=str, indent=1) + "\n"
                await self._send(writer, 200, "application/json", body)
            elif target == "/metrics":
                await self._send(writer, 200, CONTENT_TYPE_LATEST, self._metrics())
            else:
                await self._send(writer, 404, "text/plain", "not found: try /health /ready /status /metrics\n")
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except Exception:
            log.exception("status request failed")
            try:
                await self._send(writer, 500, "text/plain", "internal error\n")
            except Exception:
                pass
        finally:
            writer.close()

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter, code: int, ctype: str, body: str, extra: dict[str, str] | None = None
    ) -> None:
        data = body.encode()
        more = "".join(f"{k}: {v}\r\n" for k, v in (extra or {}).items())
        head = (
            f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\nCache-Control: no-store\r\n{more}\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()


def _headers(lines: list[str]) -> dict[str, str]:
    """Header fields by lowercase name; a repeated Host or Authorization makes the value unusable."""
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        out[key] = "" if key in out else value.strip()
    return out
