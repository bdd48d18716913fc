"""Binance spot messages -> order events, with no I/O: what the daemon's live path feeds :func:`kit.orders.apply`.

Field names follow Binance's spot API documentation: the order endpoints' responses (``ACK``,
``RESULT``, ``FULL``; also the answer to a query), ``myTrades`` rows, and the user data
stream's ``executionReport``. Two details that matter:

* In an ``executionReport`` of a cancel, ``c`` is the *cancel request's* client id and ``C``
  the canceled order's: the order is found by ``C`` when it is set.
* Only ``x == "TRADE"`` carries a fill (``t``, ``l``, ``L``, ``n``, ``N``); every report carries
  the order's status ``X`` and cumulative executed quantity ``z``.
"""

from __future__ import annotations

from typing import Any

from kit.orders._machine import Report, Source, Trade


def client_id_of_report(msg: dict[str, Any]) -> str:
    """The client order id an ``executionReport`` is about (``C`` for cancels, else ``c``)."""
    return str(msg.get("C") or msg["c"])


def events_from_execution_report(msg: dict[str, Any]) -> list[Report | Trade]:
    """The events of one ``executionReport``: its fill first (if ``x`` is TRADE), then the status."""
    if msg.get("e") != "executionReport":
        raise ValueError(f"not an executionReport: {msg.get('e')!r}")
    out: list[Report | Trade] = []
    if msg.get("x") == "TRADE":
        out.append(Trade(int(msg["t"]), msg["l"], msg["L"], msg.get("n") or "0", msg.get("N") or "", int(msg["T"])))
    out.append(Report(str(msg["X"]), "stream", int(msg["i"]), msg["z"]))
    return out


def events_from_order(resp: dict[str, Any], source: Source) -> list[Report | Trade]:
    """The events of an order response (``source="response"``) or a query's answer (``"query"``).

    An ``ACK`` response has no status: it only names the exchange's order id, so it yields a
    ``NEW`` report (a later report moves the order on; a stale NEW never moves it back).
    ``FULL`` responses list their fills.
    """
    out: list[Report | Trade] = []
    for f in resp.get("fills") or ():
        out.append(Trade(int(f["tradeId"]), f["qty"], f["price"], f.get("commission") or "0",
                         f.get("commissionAsset") or "", int(resp.get("transactTime") or 0)))  # fmt: skip
    out.append(Report(str(resp.get("status") or "NEW"), source, int(resp["orderId"]), resp.get("executedQty") or "0"))
    return out


def trade_from_my_trades(row: dict[str, Any]) -> Trade:
    """One ``GET /api/v3/myTrades`` row (match it to its order by ``orderId``)."""
    return Trade(int(row["id"]), row["qty"], row["price"], row.get("commission") or "0",
                 row.get("commissionAsset") or "", int(row.get("time") or 0))  # fmt: skip
