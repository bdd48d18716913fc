"""Text from users' code, made safe for every database: the one place it is cleaned and capped.

PostgreSQL refuses NUL in text (``DataError``), no driver can encode a lone surrogate as UTF-8,
and a ``String(n)`` column refuses a longer value on PostgreSQL while SQLite keeps it. Raised
from the daemon's writer, any of these would stop every ledger write, so the columns that hold
text users' code produced (strategy names, class paths, parameters, error and event messages)
bind through these types: control characters other than tab and newline and what UTF-8 cannot
encode become U+FFFD (visible, so a reader sees something was there), and values are cut to the
column's length. The DDL is the plain ``String``/``Text``/``JSON`` underneath.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

# Control characters but tab and newline, and the surrogates UTF-8 cannot encode.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
REPLACEMENT = "\ufffd"
#: Longest string inside a JSON value (parameters): a parameter is a number or a short name.
JSON_STRING_MAX = 2000


def clean(text: object, limit: int) -> str:
    """``text`` as a string a database stores as is: no control characters but tab and newline,
    valid UTF-8, at most ``limit`` characters (a cut value ends with an ellipsis)."""
    s = text if isinstance(text, str) else str(text)
    if _UNSAFE.search(s):
        s = _UNSAFE.sub(REPLACEMENT, s)
    if len(s) > limit:
        s = s[: limit - 1] + "\u2026"
    return s


def clean_json(value: Any) -> Any:
    """``value`` with every string in it (keys too) cleaned; numbers, booleans and None unchanged."""
    if isinstance(value, str):
        return clean(value, JSON_STRING_MAX)
    if isinstance(value, dict):
        return {clean(k, JSON_STRING_MAX): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


class _Cleaned(sa.types.TypeDecorator[str]):
    """A text type whose bound values are :func:`clean`-ed to at most ``limit`` characters."""

    impl: Any = sa.Text
    cache_ok = True
    limit: int

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else clean(value, self.limit)


class SafeString(_Cleaned):
    """``String(limit)``, cleaned to fit."""

    impl = sa.String
    cache_ok = True  # set on each class: SQLAlchemy does not inherit it

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class SafeText(_Cleaned):
    """``Text``, cleaned and capped at ``limit`` characters."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit


class SafeJSON(sa.types.TypeDecorator[Any]):
    """``JSON`` whose strings (keys and values) are :func:`clean`-ed."""

    impl = sa.JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        return None if value is None else clean_json(value)
