"""The live order path's I/O to the exchange, between the order core (:mod:`kit.orders`) and the daemon.

- :mod:`kit.trading._client`: :class:`TradingClient`, one account's signed REST client (HMAC or
  Ed25519, the exchange's signing clock measured, errors as :class:`ApiError` / :class:`NoAnswer`).
- :mod:`kit.trading._budget`: one request-weight budget per exchange host for every account of
  the process (``X-MBX-USED-WEIGHT-1M``, ``Retry-After``; never provoking a 418).
"""

from kit.trading._budget import BUDGETS, SharedBudgets, WeightBudget
from kit.trading._client import RECV_WINDOW_MS, ApiError, NoAnswer, TradingClient

__all__ = ["BUDGETS", "RECV_WINDOW_MS", "ApiError", "NoAnswer", "SharedBudgets", "TradingClient", "WeightBudget"]
