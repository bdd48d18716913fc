"""A symbol's trading filters (``exchangeInfo``) and the sizing rule that applies them, with no I/O.

Quantities and prices are :class:`~decimal.Decimal`: the exchange checks them exactly
(``(quantity - minQty) % stepSize == 0``), and a float that prints as ``0.30000000000000004``
would be refused with -1013.

The rule (:func:`size_order`): the quantity is rounded *down* to LOT_SIZE (MARKET_LOT_SIZE
for market orders when the exchange gives one), so an order never spends more than the
strategy decided; capped at maxQty; an order whose quantity rounds below minQty, or whose
notional at the reference price is under NOTIONAL's minNotional (for market orders only when
``applyMinToMarket``), is *skipped* with the reason, never sent to be refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

ZERO = Decimal(0)


def dec(value: Any, name: str = "value") -> Decimal:
    """``value`` (str, int, Decimal or float) as a finite Decimal; a float goes through its shortest repr."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        d = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return d


def _s(d: Decimal) -> str:
    return f"{d.normalize():f}"


def _s(d: Decimal) -> str:
    return f"{d.normalize():f}"


def _floor_step(value: Decimal, step: Decimal, base: Decimal = ZERO) -> Decimal:
    if step <= 0:
        return value
    return base + ((value - base) / step).to_integral_value(ROUND_FLOOR) * step


@dataclass(frozen=True, slots=True)
class SymbolFilters:
    """The filters kit applies before sending an order. A zero limit means "none" (Binance's convention)."""

    symbol: str
    tick_size: Decimal = ZERO
    min_price: Decimal = ZERO
    max_price: Decimal = ZERO
    step_size: Decimal = ZERO
    min_qty: Decimal = ZERO
    max_qty: Decimal = ZERO
    market_step_size: Decimal = ZERO
    market_min_qty: Decimal = ZERO
    market_max_qty: Decimal = ZERO
    min_notional: Decimal = ZERO
    max_notional: Decimal = ZERO
    apply_min_to_market: bool = True
    apply_max_to_market: bool = False
    max_num_orders: int = 0

    @classmethod
    def from_exchange_info(cls, info: dict[str, Any]) -> SymbolFilters:
        """From one entry of ``exchangeInfo``'s ``symbols`` (unknown filter types are ignored)."""
        kw: dict[str, Any] = {}
        for f in info.get("filters", ()):
            t = f.get("filterType")
            if t == "PRICE_FILTER":
                kw.update(tick_size=dec(f["tickSize"]), min_price=dec(f["minPrice"]), max_price=dec(f["maxPrice"]))
            elif t == "LOT_SIZE":
                kw.update(step_size=dec(f["stepSize"]), min_qty=dec(f["minQty"]), max_qty=dec(f["maxQty"]))
            elif t == "MARKET_LOT_SIZE":
                kw.update(market_step_size=dec(f["stepSize"]), market_min_qty=dec(f["minQty"]),
                          market_max_qty=dec(f["maxQty"]))  # fmt: skip
            elif t in ("NOTIONAL", "MIN_NOTIONAL"):
                kw.update(min_notional=dec(f.get("minNotional", 0)), max_notional=dec(f.get("maxNotional", 0)),
                          apply_min_to_market=bool(f.get("applyMinToMarket", f.get("applyToMarket", True))),
                          apply_max_to_market=bool(f.get("applyMaxToMarket", False)))  # fmt: skip
            elif t == "MAX_NUM_ORDERS":
                kw["max_num_orders"] = int(f.get("maxNumOrders", f.get("limit", 0)))
        return cls(symbol=str(info["symbol"]), **kw)

    def round_price(self, price: Any, side: str) -> Decimal:
        """``price`` on the tick grid, never worse for the order: buys round down, sells up."""
        p = dec(price, "price")
        if self.tick_size <= 0:
            return p
        mode = ROUND_FLOOR if side == "BUY" else ROUND_CEILING
        return (p / self.tick_size).to_integral_value(mode) * self.tick_size


@dataclass(frozen=True, slots=True)
class Sized:
    """An order quantity that passes the filters."""

    quantity: Decimal
    notional: Decimal


@dataclass(frozen=True, slots=True)
class Skip:
    """Why an order is not sent (recorded with the intent)."""

    reason: str


def size_order(filters: SymbolFilters, quantity: Any, ref_price: Any, *, market: bool = True) -> Sized | Skip:
    """``quantity`` rounded and checked against ``filters`` at ``ref_price`` (see the module docstring)."""
    q, p = dec(quantity, "quantity"), dec(ref_price, "ref_price")
    if q < 0 or p <= 0:
        raise ValueError(f"quantity must be >= 0 and ref_price > 0, got {quantity!r} and {ref_price!r}")
    step, lo, hi = filters.step_size, filters.min_qty, filters.max_qty
    if market and filters.market_step_size > 0:  # MARKET_LOT_SIZE, where given, rules market orders
        step, lo, hi = filters.market_step_size, filters.market_min_qty, filters.market_max_qty
    if hi > 0 and q > hi:
        q = hi
    q = _floor_step(q, step, lo if lo > 0 and q >= lo else ZERO)
    if q <= 0 or q < lo:
        if lo > 0:
            return Skip(f"quantity {quantity} rounds to {_s(q)}, under LOT_SIZE minQty {_s(lo)}")
        return Skip(f"quantity {quantity} rounds to 0 at LOT_SIZE stepSize {_s(step)}")
    notional = q * p
    if filters.min_notional > 0 and notional < filters.min_notional and (filters.apply_min_to_market or not market):
        return Skip(f"notional {_s(notional)} under NOTIONAL minNotional {_s(filters.min_notional)}")
    if filters.max_notional > 0 and notional > filters.max_notional and (filters.apply_max_to_market or not market):
        q = _floor_step(filters.max_notional / p, step, lo)
        notional = q * p
        if q < lo or q <= 0:
            return Skip(f"NOTIONAL maxNotional {_s(filters.max_notional)} leaves no valid quantity")
    return Sized(q, notional)
