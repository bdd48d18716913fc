"""The feed's stream ordering as a state machine: no socket, no loop, no REST (kit.feed._order)."""

from __future__ import annotations

import pytest

from kit.feed import GapEvent, KlineEvent
from kit.feed._history import events_from_candles
from kit.feed._order import DUPLICATE, OUT_OF_ORDER, STALE, Backfill, Phase, Seed, StreamOrder
from kit.market.candle import Candle

MIN = 60_000
T0 = 1_748_736_000_000  # 2025-06-01 00:00 UTC


def c(i: int, close: float = 100.0) -> Candle:
    """The candle ``i`` minutes after T0."""
    return Candle(T0 + i * MIN, 100.0, 101.0, 99.0, close, 1.0)


def live(at: int = 0) -> StreamOrder:
    """A 1m ordering that went live with its next candle opening ``at`` minutes after T0."""
    o = StreamOrder("BTCUSDT", "1m")
    assert o.on_kline(c(at), False, 1) == Seed(T0 + at * MIN)
    o.go_live(T0 + at * MIN)
    assert [a.candle for a in o.resume()] == [c(at)]
    return o


def test_first_update_asks_for_history_then_buffered_updates_follow_the_seam():
    o = StreamOrder("BTCUSDT", "1m")
    assert o.phase is Phase.WAITING
    assert o.on_kline(c(5), False, 10) == Seed(T0 + 5 * MIN)
    assert o.phase is Phase.SEEDING
    assert o.on_kline(c(5), True, 20) is None, "buffered while the history is fetched"
    assert o.on_kline(c(6), False, 30) is None
    o.go_live(T0 + 5 * MIN)
    assert o.last_closed == T0 + 4 * MIN, "the cursor sits right before the first live candle"
    actions = o.resume()
    assert [(a.candle.open_time, a.closed) for a in actions] == [(T0 + 5 * MIN, False), (T0 + 5 * MIN, True),
                                                                (T0 + 6 * MIN, False)]  # fmt: skip
    assert o.phase is Phase.LIVE and o.last_closed == T0 + 5 * MIN


def test_the_expected_candle_is_delivered_as_the_event_itself():
    o = live()
    forming = o.on_kline(c(0), False, 2)
    assert forming == KlineEvent("BTCUSDT", "1m", c(0), False) and o.forming is forming
    closed = o.on_kline(c(0, 101.0), True, 3)
    assert closed == KlineEvent("BTCUSDT", "1m", c(0, 101.0), True)
    assert o.last_closed == T0 and o.forming is None and o.last_event_ms == 3


def test_repeats_and_stale_updates_are_dropped_with_their_reason():
    o = live()
    o.on_kline(c(0), False, 5)
    assert o.on_kline(c(0), False, 5) is DUPLICATE, "the same forming update twice"
    assert o.on_kline(c(0), False, 4) is OUT_OF_ORDER, "an older forming update after a newer one"
    o.on_kline(c(0), True, 6)
    assert o.on_kline(c(0), True, 6) is DUPLICATE, "a closed candle again"
    assert o.on_kline(c(0), False, 7) is STALE, "a forming update of a closed candle"
    assert o.last_closed == T0


def test_a_hole_asks_for_a_backfill_and_buffers_until_it_is_accepted():
    o = live()
    o.on_kline(c(0), True, 1)
    fill = o.on_kline(c(3), False, 2)
    assert fill == Backfill(T0 + MIN, T0 + 3 * MIN), "candles 1 and 2 are missing"
    assert o.phase is Phase.BACKFILLING
    assert o.on_kline(c(3), True, 3) is None and o.buffered == 2
    rest = events_from_candles("BTCUSDT", "1m", [c(1), c(2)], fill.start, fill.end, lead_gap=True)
    assert [e.candle.open_time for e in o.accept_backfill(rest, fill.end)] == [T0 + MIN, T0 + 2 * MIN]
    assert [(a.candle.open_time, a.closed) for a in o.resume()] == [(T0 + 3 * MIN, False), (T0 + 3 * MIN, True)]
    assert o.phase is Phase.LIVE and o.buffered == 0


def test_a_range_rest_confirms_empty_becomes_a_gap_and_the_cursor_moves_past_it():
    o = live()
    o.on_kline(c(0), True, 1)
    fill = o.on_kline(c(10), True, 2)
    rest = events_from_candles("BTCUSDT", "1m", [c(1)], fill.start, fill.end, lead_gap=True)
    out = o.accept_backfill(rest, fill.end)
    assert out[0].candle == c(1) and out[1] == GapEvent("BTCUSDT", "1m", T0 + 2 * MIN, T0 + 10 * MIN)
    assert o.last_closed == T0 + 9 * MIN
    assert [a.candle for a in o.resume()] == [c(10)]


def test_candles_the_backfill_already_covered_are_not_delivered_twice():
    o = live()
    o.on_kline(c(0), True, 1)
    fill = o.on_kline(c(2), True, 2)
    rest = events_from_candles("BTCUSDT", "1m", [c(1)], fill.start, fill.end, lead_gap=True)
    o.accept_backfill(rest, fill.end)
    assert [a.candle for a in o.resume()] == [c(2)]
    assert o.on_kline(c(1), True, 3) is DUPLICATE


def test_a_reordered_burst_replays_sorted_without_a_second_backfill():
    o = live()
    o.on_kline(c(0), True, 1)
    fill = o.on_kline(c(3), True, 5)
    o.on_kline(c(2), True, 4)  # arrives late, while the backfill runs
    rest = events_from_candles("BTCUSDT", "1m", [c(1)], fill.start, T0 + 2 * MIN, lead_gap=True)
    o.accept_backfill(rest, T0 + 2 * MIN)
    assert [a.candle for a in o.resume()] == [c(2), c(3)]


def test_a_second_hole_in_the_buffer_stops_the_replay_and_keeps_the_rest():
    o = live()
    o.on_kline(c(0), True, 1)
    fill = o.on_kline(c(2), True, 2)
    o.on_kline(c(5), True, 3)
    o.on_kline(c(6), False, 4)
    o.accept_backfill(events_from_candles("BTCUSDT", "1m", [c(1)], fill.start, fill.end, lead_gap=True), fill.end)
    actions = o.resume()
    assert actions[0].candle == c(2) and actions[-1] == Backfill(T0 + 3 * MIN, T0 + 5 * MIN)
    assert o.phase is Phase.BACKFILLING and o.buffered == 2


def test_catch_up_fetches_up_to_the_exchange_clock_only_when_live():
    o = live()
    o.on_kline(c(0), True, 1)
    assert o.catch_up(T0 + 4 * MIN + 30_000) == Backfill(T0 + MIN, T0 + 4 * MIN), "the forming candle excluded"
    assert o.catch_up(T0 + 9 * MIN) is None, "a fetch is already running"
    assert live().catch_up(T0 + 30_000) is None, "nothing closed since the cursor"
    assert StreamOrder("BTCUSDT", "1m").catch_up(T0) is None, "never started"


def test_a_failed_fetch_forgets_the_buffer_and_a_stream_that_never_went_live_starts_over():
    o = StreamOrder("BTCUSDT", "1m")
    o.on_kline(c(0), False, 1)
    o.fail()
    assert o.phase is Phase.WAITING and o.buffered == 0
    assert o.on_kline(c(1), False, 2) == Seed(T0 + MIN)
    o2 = live()
    o2.on_kline(c(0), True, 1)
    o2.on_kline(c(4), True, 2)
    o2.fail()
    assert o2.phase is Phase.LIVE and o2.on_kline(c(5), True, 3) == Backfill(T0 + MIN, T0 + 5 * MIN)


def test_calls_out_of_phase_are_refused():
    o = live()
    with pytest.raises(RuntimeError, match="live"):
        o.go_live(T0)
    with pytest.raises(RuntimeError, match="live"):
        o.accept_backfill([], T0)


def test_weekly_and_monthly_open_times():
    w = StreamOrder("BTCUSDT", "1w")
    monday = T0 - 6 * 86_400_000  # 2025-05-26, a Monday
    assert w.aligned(monday) and not w.aligned(T0)
    m = StreamOrder("BTCUSDT", "1M")
    assert m.next_open(T0) == T0 + 30 * 86_400_000 and m.prev_open(T0) == T0 - 31 * 86_400_000


def test_history_events_report_holes_only_where_rest_confirms_them():
    candles = [c(1), c(2), c(5)]
    window = events_from_candles("BTCUSDT", "1m", candles, T0, T0 + 7 * MIN, lead_gap=False)
    assert window[0].candle == c(1), "a history window starts anywhere: no leading gap"
    assert GapEvent("BTCUSDT", "1m", T0 + 3 * MIN, T0 + 5 * MIN) in window
    assert window[-1] == GapEvent("BTCUSDT", "1m", T0 + 6 * MIN, T0 + 7 * MIN)
    fill = events_from_candles("BTCUSDT", "1m", candles, T0, T0 + 6 * MIN, lead_gap=True)
    assert fill[0] == GapEvent("BTCUSDT", "1m", T0, T0 + MIN), "a backfill starts at a known candle"
    assert events_from_candles("BTCUSDT", "1m", [], T0, T0 + MIN, lead_gap=False) == []
