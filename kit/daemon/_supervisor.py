"""Crash-only supervision of the daemon's long-lived tasks.

Every task the daemon runs for its lifetime (writer, one per stream, poller, heartbeat, status
watch) is started by :meth:`Supervisor.spawn`. The first one to raise is kept in ``failed``,
logged at ERROR with its traceback, and the daemon is asked to stop: it then shuts down as on
SIGTERM and exits non-zero, so that systemd restarts it from its checkpoints. A task that is
cancelled, or returns, is not a failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("kit.daemon")


class Supervisor:
    """Starts supervised tasks; ``on_failure`` (the daemon's stop) runs when one raises."""

    def __init__(self, on_failure: Callable[[], None]) -> None:
        self._on_failure = on_failure
        #: (task name, exception) of the first task that failed, or None.
        self.failed: tuple[str, BaseException] | None = None

    def spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=f"kit-daemon-{name}")
        task.add_done_callback(lambda t: self._done(name, t))
        return task

    def _done(self, name: str, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if self.failed is None:
            self.failed = (name, exc)
            log.error("task %s failed; stopping so that a restart resumes from the checkpoints", name,
                      exc_info=exc, extra={"task": name})  # fmt: skip
        self._on_failure()
