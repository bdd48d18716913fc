"""kit: from a notebook strategy to a server that trades it 24/7.

The package reads top-down, one layer per folder:

    market -> exchange (simulator) -> feed -> data -> indicators -> engine
           -> strategy / strategies -> backtest / replay / daemon / dashboard

``import kit`` is deliberately cheap: the names below are resolved lazily, so a
process that never backtests never imports vectorbt, and the daemon never
imports panel.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute"; resolved on first access.
_LAZY = {
    "Feed": "kit.feed:Feed",
    "load": "kit.data:load",
    "Strategy": "kit.strategy:Strategy",
    "Param": "kit.strategy:Param",
    "backtest": "kit.backtest",  # a callable module: kit.backtest(...) runs, kit.backtest.sweep(...)
    "sweep": "kit.backtest:sweep",
    "walk_forward": "kit.backtest:walk_forward",
    "replay": "kit.replay",  # a callable module: kit.replay(...) replays
    "promote": "kit.store.promotion:promote",
    "demote": "kit.store.promotion:demote",
}

__all__ = [*sorted(_LAZY), "__version__"]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'kit' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
