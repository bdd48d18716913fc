"""GatewayConfig: every knob of one gateway process, validated once."""

from __future__ import annotations

from dataclasses import dataclass

from kit.errors import ConfigError

DEFAULT_PORT = 9402
AUTH_MODES = ("auto", "required", "open")
_LOOPBACK = frozenset(("127.0.0.1", "localhost", "::1", "[::1]"))


@dataclass(frozen=True)
class GatewayConfig:
    """Settings of ``kit gateway``.

    Args:
        host, port: where it listens (default loopback, 9402).
        rest_url: the exchange REST base for klines, prices and 24 h statistics (``KIT_EXCHANGE_URL``).
        symbols: symbols served (wildcards expand over them); empty: the exchange's list.
        market_auth: ``"open"``: market data without a token; ``"required"``: a token for
            everything; ``"auto"`` (default): required when bound beyond loopback.
        max_streams: concrete streams per connection (Binance: 1,024).
        rate: WebSocket requests per second per connection (Binance: 5).
        max_connections_per_address: open WebSockets per client address.
        max_queue: live messages a client may fall behind before it is closed with 4008.
        max_history: resume (``since``) events one request may queue, on top of what is queued
            already: the bound of a client's memory while it catches up.
        ring: closed candles kept per (symbol, interval) for resuming with ``since``.
        grace_s: seconds a (symbol, interval) nobody follows stays open (resume after a reconnect).
        allowed_hosts: ``Host`` header names accepted besides the bound host and loopback names
            (DNS-rebinding guard); ``*`` accepts any.
        allowed_origins: browser origins accepted besides the gateway's own (same-origin).
        revoke_check_s: how often open sockets' tokens are re-checked (revoked ones close).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    rest_url: str = "http://127.0.0.1:9400"
    symbols: tuple[str, ...] = ()
    market_auth: str = "auto"
    max_streams: int = 1024
    rate: int = 5
    max_connections_per_address: int = 100
    max_queue: int = 4096
    max_history: int = 10_000
    ring: int = 1000
    grace_s: float = 60.0
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    revoke_check_s: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port!r}")
        if self.market_auth not in AUTH_MODES:
            raise ConfigError(f"market_auth must be one of {', '.join(AUTH_MODES)}, got {self.market_auth!r}")
        for name in ("max_streams", "rate", "max_connections_per_address", "max_queue", "max_history", "ring"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
        if self.grace_s < 0 or self.revoke_check_s <= 0:
            raise ConfigError("grace_s must be >= 0 and revoke_check_s > 0")
        if not self.rest_url.startswith(("http://", "https://")):
            raise ConfigError(f"rest_url must start with http:// or https://, got {self.rest_url!r}")
        object.__setattr__(self, "symbols", tuple(s.upper() for s in self.symbols))

    @property
    def loopback(self) -> bool:
        return self.host in _LOOPBACK

    @property
    def token_required(self) -> bool:
        """Whether market data needs a token (private streams always do)."""
        return self.market_auth == "required" or (self.market_auth == "auto" and not self.loopback)

    def host_allowed(self, host_header: str) -> bool:
        """Whether a request's ``Host`` names this gateway (not a rebinding attacker's name)."""
        if "*" in self.allowed_hosts or (self.host in ("0.0.0.0", "::") and not self.allowed_hosts):
            return True
        name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        name = name.lower()
        return name in _LOOPBACK or name == self.host.lower() or name in {h.lower() for h in self.allowed_hosts}
