"""The daemon's health verdict and its supervision helpers, with no I/O.

``/ready`` is 200 only when nothing fails (:func:`assess`); otherwise 503 with the reasons and a
state: ``down`` when the daemon itself cannot do its job (a task failed, the database or the feed
is unavailable, a stream keeps failing, the writer is behind) and ``degraded`` when it runs but
some user's strategy does not (it cannot load, or its evaluations are failing). A paused strategy
is not a reason: the daemon handled it, and ``/status`` and the admin page list it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from kit.errors import ConfigError

#: Consecutive failures after which a stream counts as failing (one failure is a reconnect).
STREAM_FAILING_AFTER = 3
#: Reasons of one kind listed by name; the rest are counted.
MAX_LISTED = 5
#: Test-only: ``<task>[:<n>]`` makes the named task raise at its n-th pass (see :class:`FaultPlan`).
FAULT_ENV = "KIT_DAEMON_TEST_FAULT"
TASKS = ("writer", "stream", "poller", "heartbeat", "status")


class TaskFailed(Exception):
    """An unexpected failure inside a daemon task: never retried; the supervisor stops the daemon."""


@dataclass(slots=True)
class StreamHealth:
    """One stream's subscription record: consecutive failures reset by a working subscription."""

    failures: int = 0
    total: int = 0
    last_error: str | None = None

    def failed(self, error: str) -> int:
        self.failures += 1
        self.total += 1
        self.last_error = error
        return self.failures

    def ok(self) -> None:
        self.failures = 0

    @property
    def failing(self) -> bool:
        return self.failures >= STREAM_FAILING_AFTER


@dataclass(frozen=True, slots=True)
class Health:
    """``state`` is ok, degraded or down; ``reasons`` say why it is not ok."""

    state: str
    reasons: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return self.state == "ok"

    def to_dict(self) -> dict[str, object]:
        return {"ready": self.ready, "state": self.state, "reasons": list(self.reasons)}


def _listed(items: list[str]) -> list[str]:
    extra = len(items) - MAX_LISTED
    return items[:MAX_LISTED] + ([f"... and {extra} more"] if extra > 0 else [])


def assess(
    *,
    failed_task: str | None,
    stopping: bool,
    db_ok: bool,
    feed_connected: bool,
    streams: dict[str, StreamHealth],
    write_queue: int,
    write_lag_s: float,
    max_write_lag: float,
    cannot_load: list[str],
    failing: list[str],
) -> Health:
    """The verdict from plain figures (the daemon gathers them; this decides)."""
    down: list[str] = []
    if failed_task is not None:
        down.append(f"task {failed_task} failed; the daemon is stopping")
    elif stopping:
        down.append("stopping")
    if not db_ok:
        down.append("database unavailable")
    if not feed_connected:
        down.append("feed not connected")
    down += _listed(
        [f"stream {name} failing ({h.failures} times in a row): {h.last_error}" for name, h in streams.items()
         if h.failing]
    )  # fmt: skip
    if write_lag_s > max_write_lag:
        down.append(f"writer behind: {write_queue} candles waiting, the oldest for {write_lag_s:.1f} s")
    degraded = _listed([f"cannot load {s}" for s in cannot_load]) + _listed([f"failing {s}" for s in failing])
    if down:
        return Health("down", tuple(down + degraded))
    if degraded:
        return Health("degraded", tuple(degraded))
    return Health("ok", ())


class FaultPlan:
    """Test-only fault injection: ``KIT_DAEMON_TEST_FAULT=writer:3`` makes the writer raise at its
    3rd pass, so the tests can prove each task is supervised. Unset (always, in production) it
    costs one ``is None`` test per pass."""

    def __init__(self, spec: str | None) -> None:
        self.task: str | None = None
        self.at = 1
        self.passes = 0
        if not spec:
            return
        task, _, n = spec.partition(":")
        if task not in TASKS or (n and not n.isdigit()):
            raise ConfigError(f"{FAULT_ENV} must be <task>[:<n>] with task one of {', '.join(TASKS)}, got {spec!r}")
        self.task, self.at = task, int(n or 1)

    @classmethod
    def from_env(cls) -> FaultPlan | None:
        spec = os.environ.get(FAULT_ENV)
        return cls(spec) if spec else None

    def check(self, task: str) -> None:
        if task == self.task:
            self.passes += 1
            if self.passes == self.at:
                raise RuntimeError(f"injected test fault in {task} (pass {self.passes})")
