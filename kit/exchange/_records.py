"""The matching core's vocabulary: symbol rules, order requests, orders, trades, balances, numbers.

Plain records with no behaviour beyond their own fields; :class:`kit.exchange._matching.Matcher`
applies the rules to them. ``fmt`` writes numbers as Binance does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kit.exchange._accounts import AccountSpec

SIDES = ("BUY", "SELL")
TYPES = ("MARKET", "LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
TIFS = ("GTC", "IOC", "FOK")
OPEN_STATES = ("NEW", "PARTIALLY_FILLED")
EPS = 1e-9  # relative slack for float comparisons of amounts the client sent as decimals


class OrderRejected(Exception):
    """A request the exchange refuses: Binance's error ``code`` and ``msg``."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


def fmt(x: float) -> str:
    """A float as Binance writes numbers: a positional decimal string, exact (shortest round trip)."""
    if x == 0:
        return "0.00000000"
    s = format(Decimal(repr(float(x))), "f")
    if "." not in s:
        s += ".0"
    whole, frac = s.split(".")
    return f"{whole}.{frac.ljust(8, '0')}"


def _decimals(step: float) -> int:
    return max(0, -math.floor(math.log10(step) + 1e-9))


def floor_step(q: float, step: float) -> float:
    """``q`` rounded down to a multiple of ``step`` (tolerating float noise just below a multiple)."""
    n = math.floor(q / step + EPS)
    return round(n * step, _decimals(step))


def is_multiple(x: float, step: float) -> bool:
    n = x / step
    return abs(n - round(n)) <= EPS * max(1.0, abs(n))


@dataclass(frozen=True)
class SymbolRules:
    """A symbol's trading filters, as ``exchangeInfo`` lists them."""

    symbol: str
    base: str
    quote: str
    tick: float
    step: float
    min_qty: float
    max_qty: float
    min_notional: float
    max_notional: float
    min_price: float = 0.0
    max_price: float = 1e7
    max_num_orders: int = 200

    @classmethod
    def for_price(cls, symbol: str, base: str, quote: str, price: float) -> SymbolRules:
        """Binance-like filters for a market trading around ``price``: a tick of 0.01 (finer for
        prices under 1), a step worth about 1 quote unit (BTC at 100,000: 0.00001), 5 quote minimum."""
        mag = math.floor(math.log10(price)) if price > 0 else 0
        tick = 0.01 if mag >= 0 else 10.0 ** (mag - 4)
        step = min(1.0, max(1e-8, 10.0 ** (-mag)))
        return cls(
            symbol, base, quote, tick=tick, step=step, min_qty=step, max_qty=9000.0 if mag >= 3 else 9_000_000.0,
            min_notional=5.0, max_notional=9_000_000.0, min_price=tick, max_price=1e7,
        )  # fmt: skip

    def filters(self) -> list[dict[str, Any]]:
        return [
            {"filterType": "PRICE_FILTER", "minPrice": fmt(self.min_price), "maxPrice": fmt(self.max_price),
             "tickSize": fmt(self.tick)},
            {"filterType": "LOT_SIZE", "minQty": fmt(self.min_qty), "maxQty": fmt(self.max_qty),
             "stepSize": fmt(self.step)},
            {"filterType": "MARKET_LOT_SIZE", "minQty": fmt(self.min_qty), "maxQty": fmt(self.max_qty),
             "stepSize": fmt(self.step)},
            {"filterType": "NOTIONAL", "minNotional": fmt(self.min_notional), "applyMinToMarket": True,
             "maxNotional": fmt(self.max_notional), "applyMaxToMarket": False, "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": self.max_num_orders},
        ]  # fmt: skip


@dataclass(frozen=True)
class OrderRequest:
    """A new order as parsed from the wire (amounts already numbers)."""

    symbol: str
    side: str
    type: str
    quantity: float | None = None
    quote_qty: float | None = None
    price: float | None = None
    stop_price: float | None = None
    time_in_force: str | None = None
    client_id: str | None = None


@dataclass
class Order:
    order_id: int
    client_id: str
    account: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    price: float
    stop_price: float
    orig_qty: float
    orig_quote_qty: float
    time: int
    executed: float = 0.0
    cum_quote: float = 0.0
    status: str = "NEW"
    update_time: int = 0
    working_time: int = -1  # -1: a stop order not triggered yet (Binance's value)
    next_idx: int = 0  # next base candle this order looks at
    locked: float = 0.0  # amount of lock_asset this order holds
    lock_asset: str = ""
    reason: str = ""  # why it expired, when it did

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATES

    @property
    def remaining(self) -> float:
        return self.orig_qty - self.executed


@dataclass(frozen=True)
class Trade:
    trade_id: int
    order_id: int
    account: str
    symbol: str
    side: str
    price: float
    qty: float
    quote_qty: float
    commission: float
    commission_asset: str
    time: int
    is_maker: bool


@dataclass
class AccountState:
    spec: AccountSpec
    free: dict[str, float] = field(default_factory=dict)
    locked: dict[str, float] = field(default_factory=dict)
    update_time: int = 0

    def balance(self, asset: str) -> tuple[float, float]:
        return self.free.get(asset, 0.0), self.locked.get(asset, 0.0)


#: What a listener hears after each change: (account key, order, the trade if one happened).
Listener = Callable[[str, Order, Trade | None], None]
