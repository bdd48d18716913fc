"""``kit gateway``: the shared feed and indicator engine as a public realtime API.

    kit gateway --port 9402        # REST /api/v1/..., WebSocket /api/v1/ws, /docs, /metrics, /example
    kit tokens create --user alice # a token, printed once

One process reads the one shared feed (or the relay's, with ``KIT_REDIS_URL``) and the
indicator engine, and serves any client: candles (forming and closed) and indicator values per
stream, wildcards over symbols, resume with ``since`` without a hole, Binance-shaped REST.
Modules: ``_streams`` (stream names), ``_protocol`` (the WebSocket protocol, no I/O),
``_fanout`` (one engine subscription per stream, encode once, bounded client queues),
``_private`` (a user's signals and ledger as streams), ``_tokens`` (API tokens and scopes),
``_rest`` (market REST routes), ``_account`` (the token's own strategies), ``_metrics``,
``_fault`` (test-only fault injection), ``app`` (the ASGI app).
Importing this package imports neither FastAPI nor the engine; :func:`create_app` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kit.gateway._config import GatewayConfig
    from kit.gateway.app import Gateway, create_app

__all__ = ["Gateway", "GatewayConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "GatewayConfig":
        from kit.gateway._config import GatewayConfig

        return GatewayConfig
    if name in ("Gateway", "create_app"):
        from kit.gateway import app

        return getattr(app, name)
    raise AttributeError(f"module 'kit.gateway' has no attribute {name!r}")
