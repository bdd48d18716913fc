"""``kit exchange``: a Binance-compatible spot exchange simulator on loopback.

``ExchangeSimulator`` replays candle files over Binance's REST and WebSocket protocols on one
port, on a simulated clock, with fault injection for tests. Names are imported lazily so that
``kit --help`` (which imports ``kit.exchange.cli``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kit.exchange._accounts import AccountSpec
    from kit.exchange._faults import Faults
    from kit.exchange.simulator import ExchangeSimulator

__all__ = ["AccountSpec", "ExchangeSimulator", "Faults"]


def __getattr__(name: str) -> Any:
    if name == "ExchangeSimulator":
        from kit.exchange.simulator import ExchangeSimulator

        return ExchangeSimulator
    if name == "AccountSpec":
        from kit.exchange._accounts import AccountSpec

        return AccountSpec
    if name == "Faults":
        from kit.exchange._faults import Faults

        return Faults
    raise AttributeError(f"module 'kit.exchange' has no attribute {name!r}")
