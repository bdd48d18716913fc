"""Replay recorded candles through the live path (simulator, feed, engine, live rules, paper broker).

``kit.replay(strategies, data)`` returns per strategy the same ``.trades`` frame as a backtest;
the parity test (tests/test_replay_parity.py) proves they are equal on real data with outages.
"""

import sys
import types
from typing import Any

from kit.replay._replay import ReplayResult, ReplayRun, infer_interval, replay, replay_async

__all__ = ["ReplayResult", "ReplayRun", "infer_interval", "replay", "replay_async"]


class _CallableModule(types.ModuleType):
    """``kit.replay(strategies, data, ...)`` is ``kit.replay.replay(...)``."""

    def __call__(self, *args: Any, **kwargs: Any) -> ReplayRun:
        return replay(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
