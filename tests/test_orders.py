"""kit.orders: the live order path's core (state machine, client ids, filters, risk), with no socket or database."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.orders import (
    FINAL,
    Book,
    Cancel,
    CancelRequested,
    FetchTrades,
    IllegalTransition,
    Place,
    Query,
    QueryNotFound,
    Recovered,
    Refused,
    Rejected,
    Report,
    Sent,
    Sized,
    Skip,
    Skipped,
    State,
    StrategyLimits,
    SymbolFilters,
    Trade,
    Unknown,
    UserLimits,
    apply,
    check_order,
    client_order_id,
    daily_loss_reached,
    intent,
    next_command,
    outcome_of_error,
    parse_client_order_id,
    size_order,
)

T0 = 1_747_699_200_000
BINANCE_ID = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")
D = Decimal


def order(qty: str = "0.5", **kw):
    return intent(7, T0, "BUY", qty, "BTCUSDT", **kw)


def run(o, *events):
    for ev in events:
        o = apply(o, ev)
    return o


def sent(qty: str = "0.5"):
    return run(order(qty), Sent(T0 + 60_000, 5_000))


# ----- client order ids ---------------------------------------------------------------------------


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.integers(0, 36**2 - 1))
def test_client_order_ids_are_deterministic_short_valid_for_binance_and_map_back(sid, t, leg):
    cid = client_order_id(sid, t, leg)
    assert cid == client_order_id(sid, t, leg) and len(cid) <= 36 and BINANCE_ID.match(cid)
    assert parse_client_order_id(cid) == (sid, t, leg)  # one-to-one: no two intents share an id


def test_client_order_ids_of_others_and_bad_inputs():
    assert client_order_id(7, T0, 0) == "kt7-mavqz9c0-0"
    for foreign in ("web_a1b2", "x-7", "kt07-mavqz9c0-0", "kt7-mavqz9c0", "KT7-MAVQZ9C0-0", "", None, 7):
        assert parse_client_order_id(foreign) is None  # type: ignore[arg-type]
    for bad in ((-1, T0, 0), (7, -1, 0), (7, T0, 36**2), (True, T0, 0), (7.0, T0, 0), (2**63, T0, 0)):
        with pytest.raises(ValueError):
            client_order_id(*bad)  # type: ignore[arg-type]


# ----- the state machine ----------------------------------------------------------------------------


def test_an_order_goes_from_intent_to_filled_with_its_fills():
    o = order()
    assert (o.state, o.client_id, o.quantity) == (State.INTENT, "kt7-mavqz9c0-0", D("0.5"))
    assert next_command(o) == Place(o)
    o = apply(o, Sent(T0 + 60_000))
    assert o.state is State.SENT and next_command(o) is None
    o = apply(o, Report("NEW", "response", order_id=42))
    assert (o.state, o.order_id) == (State.NEW, 42)
    o = run(o, Trade(1, "0.2", "100", "0.02", "USDT"), Report("PARTIALLY_FILLED", "stream", 42, D("0.2")))
    assert (o.state, o.filled_qty, o.executed_qty) == (State.PARTIALLY_FILLED, D("0.2"), D("0.2"))
    o = run(o, Trade(2, "0.3", "110", "0.033", "USDT"), Report("FILLED", "stream", 42, D("0.5")))
    assert o.state is State.FILLED and o.complete and next_command(o) is None
    assert (o.filled_qty, o.quote_qty, o.commission, o.avg_price) == (D("0.5"), D("53.0"), D("0.053"), D("106"))


def test_a_timeout_is_unknown_resolved_only_by_a_query_and_never_resent():
    o = run(sent(), Unknown("timeout after 10 s"))
    assert o.state is State.UNKNOWN and o.reason == "timeout after 10 s"
    assert next_command(o) == Query("BTCUSDT", o.client_id)
    with pytest.raises(IllegalTransition, match="never resent"):
        apply(o, Sent(T0 + 70_000))
    # The user data stream says it filled: recorded (no fill waits), but the state waits for the query.
    o = run(o, Report("FILLED", "stream", 42, D("0.5")), Trade(9, "0.5", "100"))
    assert (o.state, o.filled_qty, o.executed_qty) == (State.UNKNOWN, D("0.5"), D("0.5"))
    assert isinstance(next_command(o), Query)
    o = apply(o, Report("FILLED", "query", 42, D("0.5")))
    assert o.state is State.FILLED and o.complete
    # -1007, 5xx and no answer are unknown; every other error is a rejection.
    assert outcome_of_error(None, None) == outcome_of_error(408, -1007) == outcome_of_error(503, None) == "unknown"
    assert outcome_of_error(200, -1006) == "unknown"
    for status, code in ((400, -2010), (400, -1013), (400, -1021), (429, -1003), (418, -1003), (401, -2015)):
        assert outcome_of_error(status, code) == "rejected"


def test_not_found_ends_an_unknown_order_only_once_its_request_can_no_longer_arrive():
    o = run(sent(), Unknown("disconnected"))  # signed at T0+60 s with recvWindow 5 s
    for at in (T0 + 60_000, T0 + 65_000, T0 + 66_000):  # it may still arrive (1 s clock tolerance)
        o = apply(o, QueryNotFound(at))
        assert o.state is State.UNKNOWN and isinstance(next_command(o), Query)
    o = apply(o, QueryNotFound(T0 + 66_001))
    assert o.state is State.NOT_FOUND and o.final and next_command(o) is None
    with pytest.raises(IllegalTransition):
        apply(o, Trade(1, "0.1", "100"))
    # An order the exchange executed is never "not found".
    seen = run(sent(), Unknown("timeout"), Trade(1, "0.1", "100"))
    with pytest.raises(IllegalTransition, match="executed"):
        apply(seen, QueryNotFound(T0 + 999_999))


def test_an_intent_found_at_a_restart_may_have_been_sent_so_it_is_queried():
    o = apply(order(), Recovered(T0 + 120_000, 5_000))
    assert o.state is State.UNKNOWN and next_command(o) == Query("BTCUSDT", o.client_id)
    assert apply(o, QueryNotFound(T0 + 126_000)).state is State.UNKNOWN
    assert apply(o, QueryNotFound(T0 + 126_001)).state is State.NOT_FOUND
    assert apply(o, Report("NEW", "query", 5)).state is State.NEW
    # A sent order is recovered the same way; one the exchange already answered is left alone.
    assert apply(sent(), Recovered(T0 + 120_000)).state is State.UNKNOWN
    new = apply(sent(), Report("NEW", "response", 5))
    assert apply(new, Recovered(T0 + 120_000)) == new


def test_fills_are_deduplicated_by_trade_id_and_missing_ones_are_fetched():
    o = run(sent(), Report("FILLED", "response", 42, D("0.5")))
    assert o.state is State.FILLED and not o.complete and o.missing_fills == D("0.5")
    assert next_command(o) == FetchTrades("BTCUSDT", 42)  # the stream was down: poll myTrades
    t1, t2 = Trade(1, "0.2", "100"), Trade(2, "0.3", "101")
    o = run(o, t1, t1, t2, t1, t2)  # the stream and the poll both deliver them
    assert o.complete and o.filled_qty == D("0.5") and o.trade_ids == {1, 2} and next_command(o) is None
    with pytest.raises(IllegalTransition, match=r"fills 0\.6"):
        apply(o, Trade(3, "0.1", "100"))
    canceled = run(sent(), Report("CANCELED", "query", 42, D("0.2")))
    with pytest.raises(IllegalTransition, match=r"beyond the 0\.2 executed"):
        apply(canceled, Trade(1, "0.3", "100"))
    assert apply(canceled, Trade(1, "0.2", "100")).complete


def test_reports_out_of_order_never_move_an_order_back_and_conflicting_ends_are_illegal():
    filled = run(sent(), Report("FILLED", "stream", 42, D("0.5")))
    for stale in (Report("NEW", "response", 42), Report("PARTIALLY_FILLED", "stream", 42, D("0.3"))):
        assert apply(filled, stale).state is State.FILLED  # the REST answer lost the race to the stream
    partial = run(sent(), Report("PARTIALLY_FILLED", "stream", 42, D("0.3")))
    late = apply(partial, Report("NEW", "response", 42))
    assert late.state is State.PARTIALLY_FILLED and late.executed_qty == D("0.3")
    assert apply(filled, Report("FILLED", "query", 42, D("0.5"))) == filled  # a repeat changes nothing
    with pytest.raises(IllegalTransition, match="already filled"):
        apply(filled, Report("CANCELED", "query", 42, D("0.5")))
    with pytest.raises(IllegalTransition, match=r"FILLED with 0\.4"):
        apply(partial, Report("FILLED", "stream", 42, D("0.4")))
    with pytest.raises(IllegalTransition, match=r"executed 0\.6"):
        apply(partial, Report("PARTIALLY_FILLED", "stream", 42, D("0.6")))
    with pytest.raises(IllegalTransition, match="not 42"):
        apply(partial, Report("FILLED", "stream", 43, D("0.5")))
    assert apply(partial, Report("NEW", "stream", 42)).state is State.PARTIALLY_FILLED


def test_a_rejection_is_final_recorded_with_its_reason_and_never_retried():
    o = apply(sent(), Rejected(-2010, "Account has insufficient balance for requested action."))
    assert (o.state, o.reject_code, o.final) == (State.REJECTED, -2010, True)
    assert "insufficient balance" in o.reason and next_command(o) is None
    with pytest.raises(IllegalTransition):
        apply(o, Sent(T0 + 61_000))
    skipped = apply(order(), Skipped("notional 4 under NOTIONAL minNotional 5"))
    refused = apply(order(), Refused("the user's live trading is halted"))
    for done in (skipped, refused):
        assert done.final and done.reason and next_command(done) is None


def test_cancel_is_asked_for_a_resting_order_only():
    resting = run(sent(), Report("NEW", "response", 42), CancelRequested())
    assert next_command(resting) == Cancel("BTCUSDT", resting.client_id)
    assert apply(resting, Report("CANCELED", "response", 42)).state is State.CANCELED
    filled = run(sent(), Report("FILLED", "response", 42, D("0.5")), Trade(1, "0.5", "1"))
    assert apply(filled, CancelRequested()) == filled and next_command(filled) is None


@pytest.mark.parametrize(
    ("setup", "event", "needle"),
    [
        ([], Report("NEW", "response", 1), "never placed"),
        ([], Trade(1, "0.1", "1"), "never executed"),
        ([], Rejected(-1013, "Filter failure"), "request in flight"),
        ([], Unknown("timeout"), "request in flight"),
        ([], QueryNotFound(T0), "unknown order"),
        ([Sent(T0)], Skipped("late"), "only an intent"),
        ([Sent(T0)], Refused("late"), "only an intent"),
        ([Sent(T0), Report("NEW", "response", 1)], Rejected(-2010, "x"), "request in flight"),
        ([Sent(T0), Report("NEW", "response", 1)], Unknown("x"), "request in flight"),
        ([Sent(T0), Report("NEW", "response", 1)], Sent(T0), "never resent"),
        ([Sent(T0), Unknown("t")], Rejected(-1007, "late answer"), "request in flight"),
        ([Sent(T0), Report("EXPIRED", "response", 1)], Report("FILLED", "stream", 1, D("0.5")), "already expired"),
        ([Sent(T0), Report("REJECTED", "stream", 1)], Trade(1, "0.1", "1"), "never executed"),
        ([Skipped("x")], Sent(T0), "never resent"),
        ([Refused("x")], Report("NEW", "query", 1), "never placed"),
    ],
)
def test_illegal_transitions_are_refused_naming_the_order_and_state(setup, event, needle):
    o = run(order(), *setup)
    with pytest.raises(IllegalTransition, match=needle) as exc:
        apply(o, event)
    assert o.client_id in str(exc.value) and str(o.state) in str(exc.value)


def test_bad_intents_and_events_are_refused():
    for kw in ({"type": "STOP"}, {"type": "LIMIT"}, {"type": "MARKET", "price": "1"}, {"type": "LIMIT", "price": 0}):
        with pytest.raises(ValueError):
            order(**kw)
    for qty in ("0", "-1", "nan", "inf", "abc"):
        with pytest.raises(ValueError):
            order(qty)
    with pytest.raises(ValueError):
        intent(7, T0, "SHORT", "1", "BTCUSDT")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Report("DONE", "stream")
    with pytest.raises(ValueError):
        Report("NEW", "gossip")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Trade(1, "0", "100")
    assert order(qty=0.1).quantity == D("0.1")  # a float goes in by its shortest repr, not 0.1000000000000000055


_STATUS = st.sampled_from(["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", "REJECTED"])
_QTY = st.sampled_from([D("0"), D("0.1"), D("0.2"), D("0.3"), D("0.5")])
_EVENTS = st.one_of(
    st.builds(Sent, st.integers(T0, T0 + 10**6), st.sampled_from([5_000, 60_000])),
    st.builds(Skipped, st.just("filters")),
    st.builds(Refused, st.just("risk")),
    st.builds(Rejected, st.sampled_from([-2010, -1013]), st.just("no")),
    st.builds(Unknown, st.just("timeout")),
    st.builds(Recovered, st.integers(T0, T0 + 10**6)),
    st.builds(Report, _STATUS, st.sampled_from(["response", "stream", "query"]), st.just(42), _QTY),
    st.builds(QueryNotFound, st.integers(T0, T0 + 2 * 10**6)),
    st.builds(Trade, st.integers(1, 6), st.sampled_from([D("0.1"), D("0.2")]), st.just(D("100"))),
    st.just(CancelRequested()),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_EVENTS, max_size=25))
def test_no_sequence_of_events_breaks_the_invariants(events):
    """Whatever the exchange sends in whatever order: an illegal event changes nothing, fills
    never exceed the order, a final state never changes, unknown ends only on a query, and only
    an intent is ever placed."""
    o = order()
    for ev in events:
        before = o
        try:
            o = apply(o, ev)
        except IllegalTransition:
            continue
        if isinstance(ev, Sent | Skipped | Refused | Rejected):  # one-shot: never a second time
            with pytest.raises(IllegalTransition):
                apply(o, ev)
        elif not isinstance(ev, QueryNotFound):  # a repeated report, trade or timeout changes nothing
            assert apply(o, ev) == o
        assert D(0) <= o.filled_qty <= o.executed_qty <= o.quantity
        assert len(o.trade_ids) * D("0.1") <= o.filled_qty <= len(o.trade_ids) * D("0.2")
        if before.final:
            assert o.state is before.state
        if before.state is State.UNKNOWN and o.state is not State.UNKNOWN:
            assert isinstance(ev, QueryNotFound) or (isinstance(ev, Report) and ev.source == "query")
        if o.state is State.NOT_FOUND:
            assert o.executed_qty == 0
        cmd = next_command(o)
        assert isinstance(cmd, Place) == (o.state is State.INTENT)
        if o.state in FINAL:
            assert cmd is None or isinstance(cmd, FetchTrades)


# ----- filters --------------------------------------------------------------------------------------

BTCUSDT_INFO = {
    "symbol": "BTCUSDT",
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01"},
        {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
        {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "87.0", "stepSize": "0.00000000"},
        {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
         "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        {"filterType": "ICEBERG_PARTS", "limit": 10},
    ],
}  # fmt: skip


def test_filters_are_read_from_exchange_info():
    f = SymbolFilters.from_exchange_info(BTCUSDT_INFO)
    assert (f.step_size, f.min_qty, f.max_qty, f.tick_size) == (D("0.00001"), D("0.00001"), D("9000"), D("0.01"))
    assert (f.min_notional, f.apply_min_to_market, f.max_num_orders) == (D("5"), True, 200)
    assert f.market_step_size == 0  # a zero MARKET_LOT_SIZE step defers to LOT_SIZE
    assert f.round_price("100.129", "BUY") == D("100.12") and f.round_price("100.121", "SELL") == D("100.13")


def test_quantities_round_down_to_lot_size_and_small_orders_are_skipped_with_the_reason():
    f = SymbolFilters.from_exchange_info(BTCUSDT_INFO)
    assert size_order(f, "0.123456789", "100000") == Sized(D("0.12345"), D("12345.00000"))
    assert size_order(f, 0.1 + 0.2, "100000").quantity == D("0.3")  # 0.30000000000000004 is not sent
    assert size_order(f, "0.000009", "100000") == Skip("quantity 0.000009 rounds to 0, under LOT_SIZE minQty 0.00001")
    skip = size_order(f, "0.00004", "100000")
    assert skip == Skip("notional 4 under NOTIONAL minNotional 5")
    assert size_order(f, "12000", "1").quantity == D("9000")  # capped at maxQty
    lax = SymbolFilters("X", step_size=D("0.1"), min_notional=D("5"), apply_min_to_market=False)
    assert size_order(lax, "0.15", "10") == Sized(D("0.1"), D("1.0"))  # market orders exempt from the minimum
    assert isinstance(size_order(lax, "0.15", "10", market=False), Skip)
    market = SymbolFilters("X", step_size=D("0.001"), market_step_size=D("0.1"), market_min_qty=D("0.1"),
                           market_max_qty=D("5"))  # fmt: skip
    assert size_order(market, "7.777", "1").quantity == D("5") and size_order(market, "1.27", "1").quantity == D("1.2")
    assert size_order(market, "1.277", "1", market=False).quantity == D("1.277")


@given(
    qty=st.decimals(min_value=D("0"), max_value=D("10000"), places=9),
    price=st.decimals(min_value=D("0.01"), max_value=D("200000"), places=2),
)
def test_a_sized_order_always_passes_the_filters_and_never_exceeds_what_was_asked(qty, price):
    f = SymbolFilters.from_exchange_info(BTCUSDT_INFO)
    r = size_order(f, qty, price)
    if isinstance(r, Skip):
        assert qty * price < D("5") + price * f.step_size or qty < f.min_qty + f.step_size
        return
    assert r.quantity <= qty and r.quantity <= f.max_qty and r.quantity >= f.min_qty
    assert (r.quantity - f.min_qty) % f.step_size == 0 and r.notional >= f.min_notional
    assert qty - r.quantity < f.step_size or qty > f.max_qty


# ----- risk limits ------------------------------------------------------------------------------------


def test_risk_limits_refuse_entries_with_the_reason_and_always_allow_exits():
    book = Book(position_notional=400.0, user_exposure=900.0, user_day_pnl=-10.0)
    strat, user = StrategyLimits(max_order_notional=500, max_position_notional=1_000), UserLimits(1_500, 100)
    assert check_order("BUY", 500, book, strat, user).ok
    v = check_order("BUY", 501, book, strat, user)
    assert not v.ok and v.reason == "order notional 501 over the strategy's limit 500" and not v.halt_user
    v = check_order("BUY", 450, Book(600, 900, 0), strat, user)
    assert not v.ok and "position notional 1050 would exceed the strategy's limit 1000" in v.reason
    v = check_order("BUY", 450, Book(0, 1_100, 0), strat, user)
    assert not v.ok and v.reason == "the user's exposure 1550 would exceed the limit 1500"
    assert check_order("SELL", 10_000, Book(10_000, 10_000, 0), strat, user).ok  # an exit is never refused
    assert check_order("BUY", 10**9, Book(0, 0, 0), StrategyLimits(), UserLimits()).ok  # no limits set


def test_the_daily_loss_limit_halts_the_user_and_a_halt_stops_everything_but_a_flatten():
    strat, user = StrategyLimits(), UserLimits(max_daily_loss=100)
    assert (
        not daily_loss_reached(-99.99, user)
        and daily_loss_reached(-100, user)
        and not daily_loss_reached(-1e9, UserLimits())
    )
    v = check_order("BUY", 10, Book(0, 0, -100), strat, user)
    assert (v.ok, v.halt_user) == (False, True) and v.reason == "daily loss 100 reached the limit 100"
    v = check_order("SELL", 10, Book(50, 50, -150), strat, user)
    assert (v.ok, v.halt_user) == (True, True)  # the exit goes; the halt follows
    halted = Book(50, 50, 0, user_halted=True)
    for side in ("BUY", "SELL"):
        v = check_order(side, 10, halted, strat, user)
        assert not v.ok and v.reason == "the user's live trading is halted"
    assert check_order("SELL", 50, halted, strat, user, flatten=True).ok
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            check_order("BUY", bad, halted, strat, user)
    for bad in (0, -5, float("nan"), True):
        with pytest.raises(ValueError):
            StrategyLimits(max_order_notional=bad)
        with pytest.raises(ValueError):
            UserLimits(max_daily_loss=bad)


# ----- Binance messages and one account's orders -------------------------------------------------------


def execution_report(cid: str, x: str, status: str, z: str, **kw) -> dict:
    """An ``executionReport`` as Binance's user data stream documents it (fields kit reads, and a few more)."""
    msg = {"e": "executionReport", "E": T0 + 60_001, "s": "BTCUSDT", "c": cid, "S": "BUY", "o": "MARKET", "f": "GTC",
           "q": "0.50000000", "p": "0.00000000", "x": x, "X": status, "r": "NONE", "i": 42, "l": "0.00000000",
           "z": z, "L": "0.00000000", "n": "0", "N": None, "T": T0 + 60_001, "t": -1, "C": ""}  # fmt: skip
    msg.update(kw)
    return msg


def test_binance_order_responses_trades_and_execution_reports_become_events():
    from kit.orders import events_from_execution_report, events_from_order, trade_from_my_trades

    full = {"symbol": "BTCUSDT", "orderId": 42, "orderListId": -1, "clientOrderId": "kt7-mavqz9c0-0",
            "transactTime": T0 + 60_001, "price": "0.00000000", "origQty": "0.50000000", "executedQty": "0.50000000",
            "cummulativeQuoteQty": "50050.00000000", "status": "FILLED", "timeInForce": "GTC", "type": "MARKET",
            "side": "BUY", "fills": [
                {"price": "100000.00", "qty": "0.20000000", "commission": "0.00020000", "commissionAsset": "BTC",
                 "tradeId": 11},
                {"price": "100250.00", "qty": "0.30000000", "commission": "0.00030000", "commissionAsset": "BTC",
                 "tradeId": 12}]}  # fmt: skip
    o = run(sent(), *events_from_order(full, "response"))
    assert o.state is State.FILLED and o.complete and o.order_id == 42 and o.trade_ids == {11, 12}
    assert o.avg_price == D("100150") and o.commission == D("0.0005")
    ack = events_from_order({"symbol": "BTCUSDT", "orderId": 42, "clientOrderId": "x", "transactTime": 1}, "response")
    assert ack == [Report("NEW", "response", 42, D(0))]
    row = {"symbol": "BTCUSDT", "id": 11, "orderId": 42, "orderListId": -1, "price": "100000.00", "qty": "0.2",
           "quoteQty": "20000", "commission": "0.0002", "commissionAsset": "BTC", "time": T0, "isBuyer": True,
           "isMaker": False, "isBestMatch": True}  # fmt: skip
    assert trade_from_my_trades(row) == Trade(11, D("0.2"), D("100000.00"), D("0.0002"), "BTC", T0)
    evs = events_from_execution_report(execution_report("c1", "TRADE", "PARTIALLY_FILLED", "0.2", t=11, l="0.2",
                                                        L="100000.00", n="0.0002", N="BTC"))  # fmt: skip
    assert evs == [Trade(11, D("0.2"), D("100000.00"), D("0.0002"), "BTC", T0 + 60_001),
                   Report("PARTIALLY_FILLED", "stream", 42, D("0.2"))]  # fmt: skip
    with pytest.raises(ValueError):
        events_from_execution_report({"e": "outboundAccountPosition"})


def test_an_account_tracker_routes_reports_dedups_trades_and_never_reuses_an_id():
    from kit.orders import Tracker

    a, b = order(), intent(7, T0 + 60_000, "SELL", "0.5", "BTCUSDT")
    tr = Tracker([a])
    tr.add(b)
    with pytest.raises(ValueError, match="already used"):
        tr.add(order())  # the same (strategy, candle, leg): the same client id
    assert tr.commands() == [Place(a), Place(b)]
    tr.apply(a.client_id, Sent(T0 + 60_000))
    tr.apply(a.client_id, Unknown("timeout"))
    assert tr.commands() == [Query("BTCUSDT", a.client_id), Place(b)]  # never a second Place for a
    fill = execution_report(a.client_id, "TRADE", "FILLED", "0.5", t=11, l="0.5", L="100000")
    for _ in range(2):  # the stream repeats itself after a reconnect
        assert tr.on_execution_report(fill).filled_qty == D("0.5")
    assert tr.get(a.client_id).state is State.UNKNOWN  # a query resolves it
    tr.apply(a.client_id, Report("FILLED", "query", 42, D("0.5")))
    assert tr.get(a.client_id).complete
    assert tr.on_execution_report(execution_report("web_123", "NEW", "NEW", "0")) is None
    assert tr.foreign_reports == 1
    tr.apply(b.client_id, Sent(T0 + 120_000))
    tr.apply(b.client_id, Report("NEW", "response", 43))
    with pytest.raises(IllegalTransition, match="already order"):  # trade 11 is a's, whatever a message says
        tr.apply(b.client_id, Trade(11, "0.5", "100000"))
    # A cancel's report names the cancel request in c and the order in C.
    tr.apply(b.client_id, CancelRequested())
    assert tr.commands() == [Cancel("BTCUSDT", b.client_id)]
    canceled = tr.on_execution_report(execution_report("cancel-1", "CANCELED", "CANCELED", "0", C=b.client_id, i=43))
    assert canceled.state is State.CANCELED and tr.commands() == []
    with pytest.raises(KeyError):
        tr.apply("kt1-0-0", Sent(T0))
    c = run(intent(7, T0 + 120_000, "BUY", "0.5", "BTCUSDT"), Sent(T0 + 180_000), Report("NEW", "response", 44))
    reloaded = Tracker([*tr.orders(), c])  # at a restart, from the database: trade ownership included
    assert len(reloaded) == 3
    with pytest.raises(IllegalTransition, match="already order"):
        reloaded.apply(c.client_id, Trade(11, "0.1", "1"))
