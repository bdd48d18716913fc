"""The order state machine: what one live order is, and the only ways it may change. No I/O.

The daemon's live path drives it: it commits an :class:`Order` in state ``intent`` *before*
any request, feeds what happens as typed events (:func:`apply` returns the next order, or
raises :class:`IllegalTransition`), commits each result, and asks :func:`next_command` what
to do next. Everything here is pure, so the rules are tested without sockets or a database.

States::

    intent ──Sent──> sent ──Report(response|stream|query)──> new ─> partially_filled ─> filled
      │                │                                       └──────────┴──> canceled / expired
      │                ├──Rejected (a definite error answer)──> rejected
      │                └──Unknown (timeout, -1007, 5xx, disconnect)──> unknown
      ├──Skipped (filters: LOT_SIZE, NOTIONAL) ──> skipped         unknown ──Report(query)──> any status
      ├──Refused (risk limits, halt) ──> refused                   unknown ──QueryNotFound──> not_found
      └──Recovered (restart: was it sent?) ──> unknown

Rules that keep money right:

* **Unknown is not failed.** After a timeout, -1007, a 5xx or a disconnect the order may
  have executed. It leaves ``unknown`` only on the answer to a *query* by
  ``origClientOrderId`` (stream reports and fills are recorded meanwhile, the state stays);
  :func:`next_command` never resends it. "Not found" ends it (``not_found``: it never took
  effect) only once its request can no longer arrive: after the request's timestamp plus
  ``recvWindow`` (the exchange refuses older requests) plus a second of clock tolerance.
* **An intent found at a restart may have been sent** (the process can die between the
  request and recording it): ``Recovered`` makes it ``unknown``, resolved by a query as above.
* **Reports arrive out of order** (the REST answer, the user data stream and queries race):
  a report behind the current state is stale and ignored; a different final state than the
  one reached (filled, then canceled) is illegal, as is an executed quantity above the order's.
* **Fills are de-duplicated by trade id** and never exceed what the exchange says executed
  once the order is final; a final order whose fills fall short (:attr:`Order.missing_fills`)
  asks for ``myTrades`` (:class:`FetchTrades`) until they are all in.
* A rejection is final: nothing here ever retries it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from kit.orders._filters import ZERO, dec
from kit.orders._ids import client_order_id

Side = Literal["BUY", "SELL"]
OrderType = Literal["MARKET", "LIMIT"]
Source = Literal["response", "stream", "query"]

#: Clock tolerance added to ``recvWindow`` before "not found" is believed (Binance accepts a
#: timestamp up to 1 s ahead of its clock).
CLOCK_TOLERANCE_MS = 1_000


class State(StrEnum):
    INTENT = "intent"
    SENT = "sent"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    NOT_FOUND = "not_found"
    SKIPPED = "skipped"
    REFUSED = "refused"


#: States from which nothing more will execute on the exchange.
FINAL = frozenset({State.FILLED, State.CANCELED, State.EXPIRED, State.REJECTED, State.NOT_FOUND, State.SKIPPED,
                   State.REFUSED})  # fmt: skip
#: Final states in which nothing ever executed: no fill may arrive.
NEVER_EXECUTED = frozenset({State.REJECTED, State.NOT_FOUND, State.SKIPPED, State.REFUSED})
#: Binance order statuses -> state. EXPIRED_IN_MATCH (self-trade prevention) expired the rest.
EXCHANGE_STATUS = {
    "NEW": State.NEW, "PARTIALLY_FILLED": State.PARTIALLY_FILLED, "FILLED": State.FILLED,
    "CANCELED": State.CANCELED, "PENDING_CANCEL": State.NEW, "EXPIRED": State.EXPIRED,
    "EXPIRED_IN_MATCH": State.EXPIRED, "REJECTED": State.REJECTED,
}  # fmt: skip
# How far along an exchange status is: a report behind the order's current rank is stale.
_RANK = {State.SENT: 0, State.UNKNOWN: 0, State.NEW: 1, State.PARTIALLY_FILLED: 2}


class IllegalTransition(RuntimeError):
    """An event that cannot happen to the order in its state: a bug, or an exchange that lies.

    Never a user's mistake: the daemon pauses the strategy with the reason and does not guess.
    """


# ----- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """The request is about to leave; ``at_ms`` is its signed ``timestamp`` (exchange clock)."""

    at_ms: int
    recv_window_ms: int = 5_000


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A definite error answer: the exchange did not take the order (-2010, -1013, -1021, 429...)."""

    code: int | None
    message: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """No definite answer (timeout, -1007, 5xx, disconnect): the order may or may not exist."""

    reason: str


@dataclass(frozen=True, slots=True)
class Recovered:
    """At a restart, an order found in ``intent`` or ``sent``: it may have left before the crash.

    ``at_ms`` (exchange clock) bounds any request it could have sent from above.
    """

    at_ms: int
    recv_window_ms: int = 5_000


@dataclass(frozen=True, slots=True)
class Report:
    """The exchange's status of the order (``status`` as Binance spells it) and its executed quantity."""

    status: str
    source: Source
    order_id: int | None = None
    executed_qty: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.status not in EXCHANGE_STATUS:
            raise ValueError(f"unknown order status {self.status!r}")
        if self.source not in ("response", "stream", "query"):
            raise ValueError(f"source must be response, stream or query, got {self.source!r}")
        object.__setattr__(self, "executed_qty", dec(self.executed_qty, "executed_qty"))


@dataclass(frozen=True, slots=True)
class QueryNotFound:
    """A query by ``origClientOrderId`` answered "order does not exist" (-2013) at ``at_ms``."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class Trade:
    """One execution of the order (``executionReport`` ``x=TRADE``, or a ``myTrades`` row)."""

    trade_id: int
    quantity: Decimal
    price: Decimal
    commission: Decimal = ZERO
    commission_asset: str = ""
    time_ms: int = 0

    def __post_init__(self) -> None:
        for name in ("quantity", "price", "commission"):
            object.__setattr__(self, name, dec(getattr(self, name), name))
        if self.quantity <= 0 or self.price <= 0 or self.commission < 0:
            raise ValueError(f"a trade needs quantity > 0, price > 0 and commission >= 0, got {self!r}")


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """The daemon wants a resting order canceled (halt, flatten, a new signal)."""


Event = Sent | Skipped | Refused | Rejected | Unknown | Recovered | Report | QueryNotFound | Trade | CancelRequested


# ----- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Place:
    """Send the order (``newClientOrderId`` = ``order.client_id``). Only ever for an ``intent``."""

    order: Order


@dataclass(frozen=True, slots=True)
class Query:
    """Ask for the order by ``origClientOrderId``."""

    symbol: str
    client_id: str


@dataclass(frozen=True, slots=True)
class Cancel:
    symbol: str
    client_id: str


@dataclass(frozen=True, slots=True)
class FetchTrades:
    """Read ``myTrades`` for the order: its fills fall short of what the exchange says executed."""

    symbol: str
    order_id: int


Command = Place | Query | Cancel | FetchTrades


# ----- the order ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Order:
    """One live order and everything known about it. Build with :func:`intent`; change with :func:`apply`."""

    client_id: str
    strategy_id: int
    open_time: int
    leg: int
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None  # LIMIT only
    state: State = State.INTENT
    order_id: int | None = None
    executed_qty: Decimal = ZERO  # what the exchange last said executed (never decreases)
    filled_qty: Decimal = ZERO  # sum of the recorded trades
    quote_qty: Decimal = ZERO  # sum of trade quantity x price
    commission: Decimal = ZERO
    trade_ids: frozenset[int] = field(default_factory=frozenset)
    reason: str = ""  # why skipped, refused, rejected or unknown
    reject_code: int | None = None
    effective_until_ms: int | None = None  # after this, a request of this order can no longer arrive
    cancel_requested: bool = False

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def missing_fills(self) -> Decimal:
        """Executed quantity the recorded fills do not cover yet."""
        return self.executed_qty - self.filled_qty

    @property
    def complete(self) -> bool:
        """Final, with every fill recorded: nothing more will happen to it."""
        return self.final and self.missing_fills == 0

    @property
    def avg_price(self) -> Decimal | None:
        return self.quote_qty / self.filled_qty if self.filled_qty > 0 else None


def intent(
    strategy_id: int, open_time: int, side: Side, quantity: Decimal | str | float, symbol: str, *, leg: int = 0,
    type: OrderType = "MARKET", price: Decimal | str | float | None = None,
) -> Order:  # fmt: skip
    """A new order in state ``intent``, its client id derived from (strategy, candle, leg)."""
    if side not in ("BUY", "SELL"):
        raise ValueError(f"side must be BUY or SELL, got {side!r}")
    if type not in ("MARKET", "LIMIT"):
        raise ValueError(f"type must be MARKET or LIMIT, got {type!r}")
    q = dec(quantity, "quantity")
    if q <= 0:
        raise ValueError(f"quantity must be > 0, got {quantity!r}")
    p = None if price is None else dec(price, "price")
    if (type == "LIMIT") != (p is not None) or (p is not None and p <= 0):
        raise ValueError(f"a LIMIT order needs a price > 0 and a MARKET order none, got {type} at {price!r}")
    if not isinstance(symbol, str) or not symbol:
        raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
    cid = client_order_id(strategy_id, open_time, leg)
    return Order(cid, strategy_id, open_time, leg, symbol, side, type, q, p)


def _illegal(order: Order, event: object, why: str) -> IllegalTransition:
    return IllegalTransition(f"order {order.client_id} ({order.state}): {type(event).__name__} {why}")


def apply(order: Order, event: Event) -> Order:
    """The order after ``event``; :class:`IllegalTransition` if it cannot happen in its state.

    Idempotent: applying an event a second time (a repeated report or trade) changes nothing.
    """
    s = order.state
    if isinstance(event, Sent):
        if s is not State.INTENT:
            raise _illegal(order, event, "only an intent is sent, once: a sent order is never resent")
        return replace(order, state=State.SENT, effective_until_ms=event.at_ms + event.recv_window_ms)
    if isinstance(event, Skipped | Refused):
        if s is not State.INTENT:
            raise _illegal(order, event, "only an intent can be skipped or refused")
        return replace(order, state=State.SKIPPED if isinstance(event, Skipped) else State.REFUSED, reason=event.reason)
    if isinstance(event, Rejected):
        if s is not State.SENT:
            raise _illegal(order, event, "a rejection answers the request in flight only")
        return replace(order, state=State.REJECTED, reason=event.message, reject_code=event.code)
    if isinstance(event, Unknown):
        if s is State.UNKNOWN:
            return order
        if s is not State.SENT:
            raise _illegal(order, event, "only a request in flight can end without an answer")
        return replace(order, state=State.UNKNOWN, reason=event.reason)
    if isinstance(event, Recovered):
        if s not in (State.INTENT, State.SENT):
            return order  # its state came from the exchange: nothing to recover
        until = max(order.effective_until_ms or 0, event.at_ms + event.recv_window_ms)
        return replace(order, state=State.UNKNOWN, reason="in flight at a restart", effective_until_ms=until)
    if isinstance(event, QueryNotFound):
        if s is not State.UNKNOWN:
            raise _illegal(order, event, "a not-found answer only resolves an unknown order")
        if order.effective_until_ms is None or event.at_ms <= order.effective_until_ms + CLOCK_TOLERANCE_MS:
            return order  # the request may still arrive: ask again later
        if order.executed_qty > 0 or order.filled_qty > 0:
            raise _illegal(order, event, "says the order does not exist, but it executed")
        return replace(order, state=State.NOT_FOUND, reason=f"{order.reason}; the exchange has no such order")
    if isinstance(event, Report):
        return _report(order, event)
    if isinstance(event, Trade):
        return _trade(order, event)
    if isinstance(event, CancelRequested):
        if s in FINAL or order.cancel_requested:
            return order  # nothing left to cancel
        return replace(order, cancel_requested=True)
    raise TypeError(f"not an order event: {event!r}")


def _report(order: Order, ev: Report) -> Order:
    s, new = order.state, EXCHANGE_STATUS[ev.status]
    if s in (State.INTENT, State.SKIPPED, State.REFUSED, State.NOT_FOUND):
        raise _illegal(order, ev, f"{ev.status} for an order that was never placed")
    if ev.order_id is not None and order.order_id is not None and ev.order_id != order.order_id:
        raise _illegal(order, ev, f"names exchange order {ev.order_id}, not {order.order_id}")
    if ev.executed_qty > order.quantity:
        raise _illegal(order, ev, f"executed {ev.executed_qty} of an order for {order.quantity}")
    if new is State.FILLED and ev.executed_qty != order.quantity:
        raise _illegal(order, ev, f"FILLED with {ev.executed_qty} of {order.quantity} executed")
    if new in FINAL and ev.executed_qty < order.executed_qty:
        # An end is the exchange's last word: it cannot have executed less than it already reported.
        raise _illegal(order, ev, f"ends {ev.status} with {ev.executed_qty} executed, {order.executed_qty} is known")
    executed = max(order.executed_qty, ev.executed_qty)
    order_id = order.order_id if order.order_id is not None else ev.order_id
    if new is State.REJECTED and executed > 0:
        raise _illegal(order, ev, "REJECTED after executing")
    if s is State.UNKNOWN and ev.source != "query":
        # Resolved by a query only; what a stream says is kept meanwhile (fills never wait).
        return replace(order, executed_qty=executed, order_id=order_id)
    if s in FINAL:
        if new in FINAL and new is not s:
            raise _illegal(order, ev, f"{ev.status} for an order already {s}")
        if ev.executed_qty > order.executed_qty or (new is s and ev.executed_qty != order.executed_qty):
            raise _illegal(order, ev, f"executed {ev.executed_qty} after it ended with {order.executed_qty}")
        return replace(order, order_id=order_id)  # a repeat, or a stale report of an earlier status
    if new not in FINAL and _RANK[new] < _RANK[s]:
        return replace(order, executed_qty=executed, order_id=order_id)  # stale: the order is further along
    if new is State.NEW and executed > 0:
        new = State.PARTIALLY_FILLED  # PENDING_CANCEL with executions, or a NEW that raced a trade
    reason = order.reason if new is not State.REJECTED else f"rejected by the exchange ({ev.source})"
    return replace(order, state=new, executed_qty=executed, order_id=order_id, reason=reason)


def _trade(order: Order, t: Trade) -> Order:
    if t.trade_id in order.trade_ids:
        return order
    s = order.state
    if s is State.INTENT or s in NEVER_EXECUTED:
        raise _illegal(order, t, f"trade {t.trade_id} for an order that never executed")
    filled = order.filled_qty + t.quantity
    if filled > order.quantity:
        raise _illegal(order, t, f"trade {t.trade_id} fills {filled} of an order for {order.quantity}")
    if s in FINAL and filled > order.executed_qty:
        raise _illegal(order, t, f"trade {t.trade_id} beyond the {order.executed_qty} executed when it ended")
    return replace(
        order, filled_qty=filled, executed_qty=max(order.executed_qty, filled), quote_qty=order.quote_qty
        + t.quantity * t.price, commission=order.commission + t.commission, trade_ids=order.trade_ids | {t.trade_id},
    )  # fmt: skip


def next_command(order: Order) -> Command | None:
    """What the I/O layer should do for ``order`` now, or None. Only an ``intent`` is ever placed."""
    s = order.state
    if s is State.INTENT:
        return Place(order)
    if s is State.UNKNOWN:
        return Query(order.symbol, order.client_id)
    if s in (State.NEW, State.PARTIALLY_FILLED) and order.cancel_requested:
        return Cancel(order.symbol, order.client_id)
    if s in FINAL and order.missing_fills > 0 and order.order_id is not None:
        return FetchTrades(order.symbol, order.order_id)
    return None


def outcome_of_error(http_status: int | None, code: int | None) -> Literal["rejected", "unknown"]:
    """Whether an error answer to an order request is a rejection or leaves the outcome unknown.

    Binance: -1007 (timeout) and -1006 (unexpected response) say "execution status unknown", as
    does any 5xx; no answer at all (``http_status`` None) is unknown too. Every other error
    (4xx: -2010, -1013, -1021, 429, 418...) means the order was not taken.
    """
    if http_status is None or code in (-1006, -1007) or http_status >= 500:
        return "unknown"
    return "rejected"
