"""The live desk's decisions, with no I/O: what a live strategy holds and what its signal trades.

A live strategy's position is what its fills say, never what a model predicts: :class:`Holding`
folds fills (base quantity, the allocation's quote cash, commissions in whichever asset the
exchange charged). :func:`decide` turns one candle's signal into an order to place, a skip
with its reason, or nothing:

* an entry when flat buys with the strategy's own cash (its allocation, grown or shrunk by
  its trades): ``size_type`` percent spends that share of it, ``value`` that many quote units,
  ``amount`` that many base units; the quantity is sized at the close with the fees,
  slippage and :data:`PRICE_MARGIN` on top (the order fills at the next open, which may be
  higher), then rounded down to LOT_SIZE; under NOTIONAL it is skipped;
* an exit when long sells the whole position (spot: live strategies are long-only);
* while an earlier order of the strategy is unfinished (unknown, in flight, fills missing),
  a new signal is skipped: its position is not known yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kit.broker import FillModel
from kit.orders import Order, Skip, SymbolFilters, Trade, parse_client_order_id, size_order

ZERO = Decimal(0)
#: Room kept for the next open being above the close the quantity is sized at.
PRICE_MARGIN = Decimal("0.005")


@dataclass(slots=True)
class Holding:
    """One live strategy's position and cash, from its fills."""

    base: str
    quote: str
    cash: Decimal
    qty: Decimal = ZERO
    entry_price: Decimal | None = None
    entry_time: int | None = None
    last_price: Decimal = ZERO

    def fill(self, side: str, t: Trade, open_time: int) -> None:
        """Apply one new fill of an order ``side`` placed on candle ``open_time``."""
        value = t.quantity * t.price
        if side == "BUY":
            if self.qty == 0:
                self.entry_price, self.entry_time = t.price, open_time
            else:
                assert self.entry_price is not None
                self.entry_price = (self.entry_price * self.qty + value) / (self.qty + t.quantity)
            self.qty += t.quantity
            self.cash -= value
        else:
            self.qty -= t.quantity
            self.cash += value
            if self.qty <= 0:
                self.entry_price, self.entry_time = None, None
        if t.commission_asset == self.base:
            self.qty -= t.commission
        elif t.commission_asset == self.quote or not t.commission_asset:
            self.cash -= t.commission
        # A commission in a third asset (BNB) is not the strategy's cash: the account pays it.
        self.last_price = t.price

    def notional(self, price: float | Decimal) -> float:
        return float(self.qty * Decimal(repr(float(price))))

    def row(self, price: float | Decimal | None = None, time_ms: int | None = None) -> dict[str, Any]:
        """The strategy's ``positions`` row."""
        p = Decimal(repr(float(price))) if price is not None else self.last_price
        out: dict[str, Any] = {
            "size": float(self.qty), "cash": float(self.cash), "equity": float(self.cash + self.qty * p),
            "entry_price": None if self.entry_price is None else float(self.entry_price),
            "entry_time": self.entry_time,
        }  # fmt: skip
        if time_ms is not None:
            out["updated_time"] = time_ms
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    """An order to place (``skip`` empty) or to record as skipped with the reason."""

    side: str
    quantity: Decimal
    notional: float
    skip: str = ""


def decide(
    signal: Any, close: float, holding: Holding, model: FillModel, filters: SymbolFilters, *, busy: bool
) -> Decision | None:
    """What ``signal`` (a :class:`kit.strategy.Signal` or None) of a candle closing at ``close`` trades."""
    if signal is None:
        return None
    if signal.entry and holding.qty <= 0:
        side = "BUY"
    elif signal.exit and holding.qty > 0:
        side = "SELL"
    else:
        return None  # nothing to do (already in, already out, or a short signal: spot is long-only)
    price = Decimal(repr(float(close)))
    if side == "SELL":
        qty = holding.qty
    else:
        size = Decimal(repr(float(model.size)))
        cost = price * (1 + Decimal(repr(model.fees)) + Decimal(repr(model.slippage)) + PRICE_MARGIN)
        if model.size_type == "amount":
            qty = size
        else:
            spend = holding.cash * size if model.size_type == "percent" else min(size, holding.cash)
            qty = spend / cost if spend > 0 else ZERO
        if qty * cost > holding.cash:
            qty = holding.cash / cost if holding.cash > 0 else ZERO
    if qty <= 0:
        return None  # no cash left in the allocation, or nothing to sell: no order to speak of
    if busy:
        return Decision(side, qty, float(qty * price),
                        "an earlier order of this strategy is not finished: its position is not known yet")  # fmt: skip
    sized = size_order(filters, qty, price, market=True)
    if isinstance(sized, Skip):
        return Decision(side, qty, float(qty * price), sized.reason)
    return Decision(side, sized.quantity, float(sized.notional))


def mismatches(
    strategy_id: int, ours: dict[str, Order], holding: Holding, ex_orders: list[Any], ex_trades: list[Any]
) -> list[str]:
    """Where the ledger of a live strategy disagrees with the exchange's record (empty: they agree).

    ``ours`` are its orders by client id, resolved as far as the exchange answers; ``ex_orders``
    and ``ex_trades`` the account's ``allOrders`` and ``myTrades`` rows on its symbol. An order
    with the strategy's client id that the ledger lacks, an executed quantity that differs, or a
    position its trades do not give is a mismatch.
    """
    out: list[str] = []
    order_ids: set[int] = set()
    for row in ex_orders:
        cid = str(row.get("clientOrderId") or "")
        parsed = parse_client_order_id(cid)
        if parsed is None or parsed[0] != strategy_id:
            continue  # another strategy's, or not kit's
        order_ids.add(int(row["orderId"]))
        o = ours.get(cid)
        if o is None:
            out.append(f"the exchange has order {cid} that the ledger does not")
        elif Decimal(str(row.get("executedQty") or "0")) != o.executed_qty:
            out.append(f"order {cid} executed {row.get('executedQty')} on the exchange, {o.executed_qty} in the ledger")
    qty = ZERO
    for r in ex_trades:
        if int(r["orderId"]) in order_ids:
            q = Decimal(str(r["qty"]))
            qty += q if r.get("isBuyer") else -q
            if r.get("commissionAsset") == holding.base:
                qty -= Decimal(str(r["commission"]))
    if qty != holding.qty:
        out.append(f"position {holding.qty} in the ledger, {qty} by the exchange's trades")
    return out
