"""Cancellation that survives redis-py: a loop over Redis commands checks it after each one."""

from __future__ import annotations

import asyncio


def honour_cancel() -> None:
    """Raise ``CancelledError`` if this task was cancelled during an await that swallowed it.

    redis-py's asyncio client sometimes absorbs a cancellation that lands inside a command (the
    command then returns normally). A loop that relies on the cancel alone lives on: a released
    relay pump keeps its feed subscription, a closed reader keeps renewing its demand, and the
    ``stop()`` waiting for them runs into its timeout. ``Task.cancelling()`` still counts the request.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
