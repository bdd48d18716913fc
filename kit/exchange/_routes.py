"""The signed trading routes and their request weights, as Binance's (REST and WebSocket API alike)."""

from __future__ import annotations

#: (method, path) -> request weight.
ROUTES: dict[tuple[str, str], int] = {
    ("POST", "/api/v3/order"): 1, ("POST", "/api/v3/order/test"): 1, ("GET", "/api/v3/order"): 4,
    ("DELETE", "/api/v3/order"): 1, ("GET", "/api/v3/openOrders"): 6, ("DELETE", "/api/v3/openOrders"): 1,
    ("GET", "/api/v3/allOrders"): 20, ("GET", "/api/v3/myTrades"): 20, ("GET", "/api/v3/account"): 20,
}  # fmt: skip
PATHS = frozenset(p for _, p in ROUTES)
