"""Backtests and parameter sweeps on vectorbt, with the fill model shared with the paper broker.

This is the only package (with :mod:`kit.plots`) that imports vectorbt, and only when a
backtest actually runs.
"""

import sys
import types
from typing import Any

from kit.backtest._run import (
    BacktestResult,
    Stops,
    from_signals,
    infer_freq,
    resolve_model,
    run,
    size_array,
    stop_arrays,
    trades_from_portfolio,
)

__all__ = [
    "BacktestResult",
    "Stops",
    "WalkForwardResult",
    "from_signals",
    "infer_freq",
    "resolve_model",
    "run",
    "size_array",
    "stop_arrays",
    "sweep",
    "trades_from_portfolio",
    "walk_forward",
]


def __getattr__(name: str):
    if name == "sweep":
        from kit.backtest._sweep import sweep

        return sweep
    if name in ("walk_forward", "WalkForwardResult"):
        from kit.backtest import _walk

        return getattr(_walk, name)
    raise AttributeError(f"module 'kit.backtest' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """``kit.backtest(strategy, data, ...)`` is ``kit.backtest.run(...)``."""

    def __call__(self, *args: Any, **kwargs: Any) -> BacktestResult:
        return run(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
