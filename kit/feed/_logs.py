"""The feed's log helpers: bad frames logged at most once a second, times as ISO text."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("kit.feed")

_bad_logged = [0.0, 0]


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def log_bad_frame(what: str, raw: str | bytes) -> None:
    """Log a dropped frame. At most one line per second: a flood of bad frames must not become a
    flood of logs (the line says how many were dropped since the last one)."""
    now = time.monotonic()
    _bad_logged[1] += 1
    if now - _bad_logged[0] >= 1.0:
        log.warning(
            "dropped bad frame from the exchange",
            extra={"reason": what, "frame": str(raw[:160]), "since_last_log": _bad_logged[1]},
        )
        _bad_logged[0], _bad_logged[1] = now, 0
