"""Test-only fault injection for the gateway's tasks, like the daemon's ``KIT_DAEMON_TEST_FAULT``.

``KIT_GATEWAY_TEST_FAULT=source:5`` makes a stream source raise at its 5th event (``private``:
the private streams' poller at its Nth pass, ``tokens``: the revocation watcher), so the tests
prove a failing task makes the process not ready and exit 1. Unset (always, in production) it
costs one ``is None`` test per pass.
"""

from __future__ import annotations

import os

from kit.errors import ConfigError

FAULT_ENV = "KIT_GATEWAY_TEST_FAULT"
TASKS = ("source", "private", "tokens")


class FaultPlan:
    """Raise in ``task`` at its ``at``-th pass (once)."""

    def __init__(self, spec: str) -> None:
        task, _, n = spec.partition(":")
        if task not in TASKS or (n and not n.isdigit()):
            raise ConfigError(f"{FAULT_ENV} must be <task>[:<n>] with task one of {', '.join(TASKS)}, got {spec!r}")
        self.task, self.at, self.passes = task, int(n or 1), 0

    @classmethod
    def from_env(cls) -> FaultPlan | None:
        spec = os.environ.get(FAULT_ENV)
        return cls(spec) if spec else None

    def check(self, task: str) -> None:
        if task == self.task:
            self.passes += 1
            if self.passes == self.at:
                raise RuntimeError(f"injected test fault in {task} (pass {self.passes})")
