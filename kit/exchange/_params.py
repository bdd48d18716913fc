"""Request parameters as Binance parses them, shared by REST, signed trading and the WebSocket API.

Each helper raises :class:`BadRequest` with Binance's code and message for a bad value.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import parse_qsl

_INT_RE = re.compile(r"^[0-9]{1,20}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9-_.]{1,20}$")
_DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_QUOTES = ("USDT", "USDC", "FDUSD", "TUSD", "BUSD", "DAI", "EUR", "TRY", "BRL", "BTC", "ETH", "BNB")


class BadRequest(Exception):
    """A request Binance would refuse: its error ``code``, ``msg`` and HTTP ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def parse(query: str) -> dict[str, str]:
    """A query string or form body as a dict (a repeated name is -1101)."""
    out: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k in out:
            raise BadRequest(-1101, f"Duplicate values for parameter '{k}'.")
        out[k] = v
    return out


def merged(query: str, body: str) -> dict[str, str]:
    """Parameters from the query string and the body together (a name in both is -1101)."""
    q, b = parse(query), parse(body)
    both = set(q) & set(b)
    if both:
        raise BadRequest(-1101, f"Duplicate values for parameter '{sorted(both)[0]}'.")
    return {**q, **b}


def mandatory(params: dict[str, str], name: str) -> str:
    value = params.get(name, "")
    if value == "":
        raise BadRequest(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def integer(params: dict[str, str], name: str) -> int | None:
    """An unsigned integer parameter, None when absent or empty."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if not _INT_RE.match(value):
        raise BadRequest(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(value)


def decimal(params: dict[str, str], name: str) -> float | None:
    """A positive decimal amount, None when absent or empty."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if not _DECIMAL_RE.match(value):
        raise BadRequest(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.",
        )  # fmt: skip
    x = float(value)
    if x <= 0:
        raise BadRequest(-1013, f"Invalid {name}.")
    return x


def symbol(symbols: Collection[str], value: str) -> str:
    """``value`` if it is a well-formed symbol among ``symbols``."""
    if not _SYMBOL_RE.match(value):
        raise BadRequest(-1100, "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.")
    if value not in symbols:
        raise BadRequest(-1121, "Invalid symbol.")
    return value


def split_symbol(symbol: str) -> tuple[str, str]:
    """(base, quote) of a symbol, by the quote assets Binance lists."""
    for q in _QUOTES:
        if symbol.endswith(q) and len(symbol) > len(q):
            return symbol[: -len(q)], q
    return symbol[:-3], symbol[-3:]
