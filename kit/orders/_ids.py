"""Deterministic client order ids: the same (strategy, candle, leg) always gives the same id.

Binance accepts ``newClientOrderId`` matching ``^[a-zA-Z0-9-_]{1,36}$`` and rejects a second
*open* order with the same id, but accepts the id again once the first order is done. So the
id alone cannot prevent a double fill (a resent MARKET order that already filled trades
again): it is how an order whose outcome is unknown is found again (``origClientOrderId``),
and how reconciliation maps the exchange's orders back to a strategy and candle.

Format: ``kt`` + base-36 strategy id + ``-`` + base-36 candle open time (ms) + ``-`` + base-36
leg. With ids and times below 2**63 and legs below 36**2 it is at most 33 characters.
"""

from __future__ import annotations

import re

PREFIX = "kt"
MAX_LEN = 36
_MAX = 2**63
_MAX_LEG = 36**2
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_PARSE = re.compile(r"^kt([0-9a-z]{1,13})-([0-9a-z]{1,13})-([0-9a-z]{1,2})$")


def _b36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if not n:
            return out


def client_order_id(strategy_id: int, open_time_ms: int, leg: int = 0) -> str:
    """The ``newClientOrderId`` of ``strategy_id``'s order number ``leg`` on the candle opening at ``open_time_ms``."""
    for name, v, hi in (
        ("strategy_id", strategy_id, _MAX),
        ("open_time_ms", open_time_ms, _MAX),
        ("leg", leg, _MAX_LEG),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < hi:
            raise ValueError(f"{name} must be an integer in [0, {hi}), got {v!r}")
    cid = f"{PREFIX}{_b36(strategy_id)}-{_b36(open_time_ms)}-{_b36(leg)}"
    assert len(cid) <= MAX_LEN
    return cid


def parse_client_order_id(cid: str) -> tuple[int, int, int] | None:
    """``(strategy_id, open_time_ms, leg)`` of one of kit's ids, or None for anyone else's order."""
    m = _PARSE.match(cid) if isinstance(cid, str) else None
    if m is None:
        return None
    sid, t, leg = (int(g, 36) for g in m.groups())
    # Only the canonical spelling is ours (no leading zeros): the mapping is one-to-one.
    return (sid, t, leg) if client_order_id(sid, t, leg) == cid else None
