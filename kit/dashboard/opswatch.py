"""The dashboard process's one look at the system for the admin page: every
:data:`~kit.dashboard.timeline.SAMPLE_S` seconds it fetches the daemon's ``/status`` (off the
loop's critical path: an async request with short timeouts) and samples the hub's figures and this
process's memory into a :class:`~kit.dashboard.timeline.Timeline`.

One per process (:func:`get_ops_watch`, started by ``--setup``), whatever the number of admin
pages open: the plots have the last hours as soon as a page opens, and the daemon is asked once
per period, not once per admin session.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import psutil
from tornado.ioloop import IOLoop, PeriodicCallback

from kit.dashboard.hub import Hub, get_hub
from kit.dashboard.timeline import SAMPLE_S, Timeline
from kit.settings import Settings

log = logging.getLogger("kit.dashboard.ops")


class OpsWatch:
    """The latest daemon ``/status`` (``status``, ``ok``) and the :attr:`timeline` of samples."""

    def __init__(self, hub: Hub, status_url: str, every_s: float = SAMPLE_S) -> None:
        self.hub = hub
        self.status_url = status_url
        self.every_s = every_s
        self.timeline = Timeline(every_s)
        self.status: dict[str, Any] = {}
        self.ok = False
        self._proc = psutil.Process()
        self._pc: PeriodicCallback | None = None

    async def tick(self) -> None:
        """Fetch the daemon's status and add a sample (never raises: a sample is always taken)."""
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        try:
            resp = await AsyncHTTPClient().fetch(self.status_url, request_timeout=2.0, connect_timeout=1.0)
            self.status, self.ok = json.loads(resp.body), True
        except (OSError, HTTPClientError, ValueError) as exc:
            self.status, self.ok = {"status endpoint": self.status_url, "error": str(exc)}, False
        try:
            self.timeline.sample(time.time(), self.status if self.ok else None, self.hub.stats(),
                                 self._proc.memory_info().rss / 2**20)  # fmt: skip
        except Exception as exc:  # a figure that cannot be read must not stop the plots
            log.warning("ops sample failed: %s", exc)

    def start(self) -> None:
        """Sample now and every ``every_s`` seconds on the current loop (idempotent)."""
        if self._pc is None:
            self._pc = PeriodicCallback(self.tick, self.every_s * 1000)
            self._pc.start()
            IOLoop.current().add_callback(self.tick)

    def stop(self) -> None:
        if self._pc is not None:
            self._pc.stop()
            self._pc = None


_lock = threading.Lock()
_watch: OpsWatch | None = None


def get_ops_watch() -> OpsWatch:
    """The process's ops watcher, started on first use (on the server's loop)."""
    global _watch
    with _lock:
        if _watch is None:
            settings = Settings.from_env()
            _watch = OpsWatch(get_hub(), f"http://127.0.0.1:{settings.status_port}/status")
            _watch.start()
        return _watch
