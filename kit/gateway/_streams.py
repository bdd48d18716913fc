"""Stream names of the gateway's WebSocket, parsed once into a hashable :class:`Stream`.

Binance-like, lower-case symbol first:

- ``btcusdt@kline_1m``: the candles of BTCUSDT 1m (forming updates and closed candles);
- ``btcusdt@indicator_1m_rsi(14)``: one indicator's values on those candles (any spec key the
  engine knows, see :func:`kit.indicators.parse_spec`, registered custom ones included);
- ``*@kline_1m``, ``*@indicator_1m_rsi(14)``: the same for every symbol the gateway serves,
  expanded on the server;
- ``user@signals``, ``user@orders``, ``user@fills``, ``user@trades``, ``user@positions``: the
  logged-in user's own strategies' signals and ledger (the user is the token's, never named in
  the stream).
"""

from __future__ import annotations

from dataclasses import dataclass

from kit.engine import FIELDS
from kit.errors import ConfigError
from kit.indicators import IndicatorSpec, parse_spec
from kit.market.intervals import validate_interval, validate_symbol

WILDCARD = "*"
PRIVATE_KINDS = ("signals", "orders", "fills", "trades", "positions")
_KLINE = "kline_"
_INDICATOR = "indicator_"


class StreamError(ConfigError):
    """A stream name that does not parse, or names something the gateway does not serve."""


@dataclass(frozen=True, slots=True)
class Stream:
    """One concrete stream: ``symbol`` (upper case), ``interval``, and ``spec`` for indicator streams."""

    symbol: str
    interval: str
    spec: IndicatorSpec | None = None

    @property
    def name(self) -> str:
        kind = _KLINE + self.interval if self.spec is None else f"{_INDICATOR}{self.interval}_{self.spec.key}"
        return f"{self.symbol.lower()}@{kind}"

    @property
    def source(self) -> tuple[str, str]:
        """The (symbol, interval) whose candles this stream follows."""
        return self.symbol, self.interval


@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed stream name; ``symbol`` is :data:`WILDCARD` for a wildcard."""

    symbol: str
    interval: str
    spec: IndicatorSpec | None = None

    def expand(self, symbols: tuple[str, ...]) -> tuple[Stream, ...]:
        """The concrete streams: itself, or one per served symbol for a wildcard."""
        syms = symbols if self.symbol == WILDCARD else (self.symbol,)
        return tuple(Stream(s, self.interval, self.spec) for s in syms)


@dataclass(frozen=True, slots=True)
class Private:
    """One of the logged-in user's own streams (``kind``: one of :data:`PRIVATE_KINDS`)."""

    kind: str

    @property
    def name(self) -> str:
        return f"user@{self.kind}"

    def expand(self, symbols: tuple[str, ...]) -> tuple[Private, ...]:
        return (self,)


def parse(name: object, symbols: frozenset[str] | None = None) -> Pattern | Private:
    """Parse a stream name; ``symbols``: the served symbols (an unknown one is refused).

    Raises :class:`StreamError` with a message naming what is wrong.
    """
    if not isinstance(name, str) or "@" not in name or len(name) > 200:
        raise StreamError(f"invalid stream name {str(name)[:80]!r}: expected like btcusdt@kline_1m")
    sym_part, _, kind = name.partition("@")
    if sym_part == "user":
        if kind not in PRIVATE_KINDS:
            raise StreamError(
                f"unknown private stream {name!r}: one of {', '.join('user@' + k for k in PRIVATE_KINDS)}"
            )
        return Private(kind)
    if sym_part == WILDCARD:
        symbol = WILDCARD
    else:
        try:
            symbol = validate_symbol(sym_part.upper())
        except (ValueError, ConfigError):
            raise StreamError(f"invalid symbol in stream {name!r}") from None
        if symbols is not None and symbol not in symbols:
            raise StreamError(f"unknown symbol {symbol} in stream {name!r}")
    spec: IndicatorSpec | None = None
    if kind.startswith(_KLINE):
        interval = kind[len(_KLINE) :]
    elif kind.startswith(_INDICATOR):
        interval, sep, key = kind[len(_INDICATOR) :].partition("_")
        if not sep or not key:
            raise StreamError(f"invalid indicator stream {name!r}: expected like btcusdt@indicator_1m_rsi(14)")
        spec = parse_spec_for_stream(key, name)
    else:
        raise StreamError(
            f"unknown stream type in {name!r}: expected @kline_<interval> or @indicator_<interval>_<spec>"
        )
    try:
        interval = validate_interval(interval)
    except (ValueError, ConfigError):
        raise StreamError(f"unknown interval {interval!r} in stream {name!r}") from None
    return Pattern(symbol, interval, spec)


def parse_spec_for_stream(key: str, where: str) -> IndicatorSpec:
    """The engine spec for ``key`` (``rsi(14)``); a :class:`StreamError` naming ``where`` otherwise."""
    try:
        spec = parse_spec(key)
    except (ValueError, KeyError, TypeError) as exc:
        raise StreamError(f"unknown indicator spec {key!r} in {where!r}: {exc}") from None
    bad = [c for c in spec.inputs if c not in FIELDS]
    if bad:
        raise StreamError(f"indicator {spec.key} in {where!r} reads {bad}; candles have only {', '.join(FIELDS)}")
    return spec
