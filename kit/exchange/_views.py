"""Binance's JSON for orders, trades and accounts, as the signed REST and WebSocket APIs answer them."""

from __future__ import annotations

from typing import Any

from kit.exchange import _params
from kit.exchange._records import AccountState, Order, Trade, fmt


def order_answer(o: Order, resp_type: str, trades: list[Trade]) -> dict[str, Any]:
    """A new order's answer in ``newOrderRespType`` (ACK, RESULT or FULL with its fills)."""
    out: dict[str, Any] = {
        "symbol": o.symbol, "orderId": o.order_id, "orderListId": -1, "clientOrderId": o.client_id,
        "transactTime": o.time,
    }  # fmt: skip
    if resp_type == "ACK":
        return out
    out.update(
        price=fmt(o.price), origQty=fmt(o.orig_qty), executedQty=fmt(o.executed),
        origQuoteOrderQty=fmt(o.orig_quote_qty), cummulativeQuoteQty=fmt(o.cum_quote), status=o.status,
        timeInForce=o.time_in_force or "GTC", type=o.type, side=o.side, workingTime=o.working_time,
        selfTradePreventionMode="NONE",
    )  # fmt: skip
    if o.stop_price:
        out["stopPrice"] = fmt(o.stop_price)
    if resp_type == "FULL":
        out["fills"] = [
            {"price": fmt(t.price), "qty": fmt(t.qty), "commission": fmt(t.commission),
             "commissionAsset": t.commission_asset, "tradeId": t.trade_id}
            for t in trades
        ]  # fmt: skip
    return out


def account_view(acct: AccountState) -> dict[str, Any]:
    """``GET /api/v3/account``'s object."""
    c = acct.spec.commission
    assets = sorted(set(acct.free) | set(acct.locked))
    return {
        "makerCommission": round(c * 10_000), "takerCommission": round(c * 10_000),
        "buyerCommission": 0, "sellerCommission": 0,
        "commissionRates": {"maker": fmt(c), "taker": fmt(c), "buyer": fmt(0), "seller": fmt(0)},
        "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
        "requireSelfTradePrevention": False, "preventSor": False, "updateTime": acct.update_time,
        "accountType": "SPOT",
        "balances": [{"asset": a, "free": fmt(acct.free.get(a, 0.0)), "locked": fmt(acct.locked.get(a, 0.0))}
                     for a in assets],
        "permissions": ["SPOT"], "uid": 0,
    }  # fmt: skip


def order_view(o: Order) -> dict[str, Any]:
    """``GET /api/v3/order``'s object."""
    return {
        "symbol": o.symbol, "orderId": o.order_id, "orderListId": -1, "clientOrderId": o.client_id,
        "price": fmt(o.price), "origQty": fmt(o.orig_qty), "executedQty": fmt(o.executed),
        "cummulativeQuoteQty": fmt(o.cum_quote), "status": o.status, "timeInForce": o.time_in_force or "GTC",
        "type": o.type, "side": o.side, "stopPrice": fmt(o.stop_price), "icebergQty": fmt(0), "time": o.time,
        "updateTime": o.update_time, "isWorking": o.working_time >= 0, "workingTime": o.working_time,
        "origQuoteOrderQty": fmt(o.orig_quote_qty), "selfTradePreventionMode": "NONE",
    }  # fmt: skip


def cancel_view(o: Order) -> dict[str, Any]:
    """``DELETE /api/v3/order``'s object."""
    return {
        "symbol": o.symbol, "origClientOrderId": o.client_id, "orderId": o.order_id, "orderListId": -1,
        "clientOrderId": f"cancel{o.order_id}", "transactTime": o.update_time, "price": fmt(o.price),
        "origQty": fmt(o.orig_qty), "executedQty": fmt(o.executed), "origQuoteOrderQty": fmt(o.orig_quote_qty),
        "cummulativeQuoteQty": fmt(o.cum_quote), "status": o.status, "timeInForce": o.time_in_force or "GTC",
        "type": o.type, "side": o.side, "selfTradePreventionMode": "NONE",
    }  # fmt: skip


def trade_view(t: Trade) -> dict[str, Any]:
    """One ``GET /api/v3/myTrades`` row."""
    return {
        "symbol": t.symbol, "id": t.trade_id, "orderId": t.order_id, "orderListId": -1, "price": fmt(t.price),
        "qty": fmt(t.qty), "quoteQty": fmt(t.quote_qty), "commission": fmt(t.commission),
        "commissionAsset": t.commission_asset, "time": t.time, "isBuyer": t.side == "BUY", "isMaker": t.is_maker,
        "isBestMatch": True,
    }  # fmt: skip


def window(rows: list[Any], p: dict[str, str], when: Any) -> list[Any]:
    """``startTime``/``endTime``/``limit`` (default 500, at most 1000) as Binance applies them."""
    start, end, limit = _params.integer(p, "startTime"), _params.integer(p, "endTime"), _params.integer(p, "limit")
    limit = 500 if limit is None else limit
    if not 1 <= limit <= 1000:
        raise _params.BadRequest(-1130, "Invalid data sent for a parameter: 'limit' must be between 1 and 1000.")
    if start is not None:
        rows = [r for r in rows if when(r) >= start]
    if end is not None:
        rows = [r for r in rows if when(r) <= end]
    if start is None and end is None and "orderId" not in p and "fromId" not in p:
        return rows[-limit:]  # the most recent
    return rows[:limit]
