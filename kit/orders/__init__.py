"""The live order path's core, no I/O: between the broker (what to trade) and the daemon (the exchange).

    from kit.orders import intent, apply, next_command, Sent, Report, Trade, State
    o = intent(strategy_id=7, open_time=t, side="BUY", quantity="0.0123", symbol="BTCUSDT")
    o.client_id                       # "kt7-mavqz9c0-0": deterministic, <= 36 characters
    o = apply(o, Sent(at_ms=now))     # commit, then send
    next_command(o)                   # Place / Query / Cancel / FetchTrades, or None

- :mod:`kit.orders._machine`: the order state machine (intent, sent, new, partially filled,
  filled, canceled, expired, rejected, unknown, not found, skipped, refused), its events and
  commands; ``unknown`` is resolved by a query, never by a resend.
- :mod:`kit.orders._ids`: ``newClientOrderId`` from (strategy, candle open time, leg) and back.
- :mod:`kit.orders._filters`: a symbol's ``exchangeInfo`` filters; LOT_SIZE rounding and the
  NOTIONAL check (an order under it is skipped with the reason).
- :mod:`kit.orders._risk`: pre-trade limits per strategy and per user, and the daily-loss halt.
- :mod:`kit.orders._binance`: Binance's order responses, ``myTrades`` rows and ``executionReport``
  messages as events.
- :mod:`kit.orders._tracker`: one account's orders by client id; a client id and a trade id
  belong to one order only.
"""

from kit.orders._binance import (
    client_id_of_report,
    events_from_execution_report,
    events_from_order,
    trade_from_my_trades,
)
from kit.orders._filters import Sized, Skip, SymbolFilters, size_order
from kit.orders._ids import client_order_id, parse_client_order_id
from kit.orders._machine import (
    FINAL,
    Cancel,
    CancelRequested,
    Command,
    Event,
    FetchTrades,
    IllegalTransition,
    Order,
    Place,
    Query,
    QueryNotFound,
    Recovered,
    Refused,
    Rejected,
    Report,
    Sent,
    Skipped,
    State,
    Trade,
    Unknown,
    apply,
    intent,
    next_command,
    outcome_of_error,
)
from kit.orders._risk import Book, StrategyLimits, UserLimits, Verdict, check_order, daily_loss_reached
from kit.orders._tracker import Tracker

__all__ = [
    "FINAL",
    "Book",
    "Cancel",
    "CancelRequested",
    "Command",
    "Event",
    "FetchTrades",
    "IllegalTransition",
    "Order",
    "Place",
    "Query",
    "QueryNotFound",
    "Recovered",
    "Refused",
    "Rejected",
    "Report",
    "Sent",
    "Sized",
    "Skip",
    "Skipped",
    "State",
    "StrategyLimits",
    "SymbolFilters",
    "Tracker",
    "Trade",
    "Unknown",
    "UserLimits",
    "Verdict",
    "apply",
    "check_order",
    "client_id_of_report",
    "client_order_id",
    "daily_loss_reached",
    "events_from_execution_report",
    "events_from_order",
    "intent",
    "next_command",
    "outcome_of_error",
    "parse_client_order_id",
    "size_order",
    "trade_from_my_trades",
]
