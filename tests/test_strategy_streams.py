"""Strategies over several streams: the declaration, the as-of rule (no look-ahead, outages) in the
backtest's frame join and in the live row join, and live signals equal to batch signals."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

import kit.backtest as bt
from kit.engine import Joined, StreamJoin, StreamState
from kit.errors import InputError
from kit.indicators import spec
from kit.market import Candle
from kit.market.asof import asof_index, close_times, take
from kit.market.files import read_candles, to_ms
from kit.strategies import TrendFilter
from kit.strategy import Columns, Signals, Strategy, on

H = 3_600_000
M5 = 300_000


def _frame(open_ms: list[int], close: list[float] | None = None) -> pd.DataFrame:
    c = np.asarray(close if close is not None else np.arange(len(open_ms)) + 100.0, dtype=np.float64)
    idx = pd.DatetimeIndex(pd.to_datetime(open_ms, unit="ms", utc=True), name="open_time")
    return pd.DataFrame({"open": c, "high": c + 1, "low": c - 1, "close": c, "volume": np.ones(len(c))}, index=idx)


class Peek(Strategy):
    """Exposes an extra stream's close and EMA on each base row (and never signals)."""

    streams: ClassVar = {"h1": (None, "1h")}

    def indicators(self) -> dict:
        return {"h1_close": on("h1", "close"), "h1_ema": on("h1", spec("ema", 3)), "own": spec("sma", 2)}

    def signals(self, d: Columns) -> Signals:
        z = np.zeros(d.rows, dtype=bool)
        return Signals(z, z)


# ----- the as-of rule -----------------------------------------------------------------------


def test_a_coarser_row_is_visible_from_the_base_row_that_closes_with_it_never_before():
    base_open = np.arange(8 * H, 11 * H, M5)  # 5m rows 08:00 .. 10:55
    other_open = np.array([7 * H, 8 * H, 9 * H, 10 * H])
    idx = asof_index(close_times(base_open, "5m"), close_times(other_open, "1h"))
    at = dict(zip(base_open.tolist(), idx.tolist(), strict=True))
    assert at[8 * H + 50 * 60_000] == 0  # 08:50-08:55: the 07:00 hour, as 08:00 has not closed
    assert at[8 * H + 55 * 60_000] == 1  # 08:55-09:00 closes with the 08:00 hour: visible
    assert at[9 * H] == 1
    assert at[10 * H + 55 * 60_000] == 3  # 10:55-11:00 closes with the 10:00 hour


def test_an_outage_of_the_other_stream_leaves_its_last_closed_row_visible_and_nothing_before_its_first():
    base_open = np.arange(8 * H, 12 * H, M5)
    other_open = np.array([9 * H, 11 * H])  # the 10:00 hour is missing
    vals = take(np.array([1.0, 2.0]), asof_index(close_times(base_open, "5m"), close_times(other_open, "1h")))
    t = base_open
    assert np.isnan(vals[t < 9 * H + 55 * 60_000]).all()  # the first hour closes at 10:00
    assert (vals[(t >= 9 * H + 55 * 60_000) & (t < 11 * H + 55 * 60_000)] == 1.0).all()  # stale over the outage
    assert vals[-1] == 2.0


def test_a_finer_stream_shows_its_last_row_closed_by_the_base_close():
    base_open = np.array([8 * H, 9 * H])
    other_open = np.arange(8 * H, 10 * H, M5)
    idx = asof_index(close_times(base_open, "1h"), close_times(other_open, "5m"))
    assert other_open[idx].tolist() == [8 * H + 55 * 60_000, 9 * H + 55 * 60_000]


# ----- the declaration ----------------------------------------------------------------------


def test_streams_are_declared_with_an_alias_and_checked_when_the_class_is_defined():
    assert TrendFilter.streams == {"h1": (None, "1h")}
    with pytest.raises(InputError, match="interval"):

        class BadInterval(Strategy):
            streams: ClassVar = {"h1": (None, "7m")}

    with pytest.raises(InputError, match="alias"):

        class BadAlias(Strategy):
            streams: ClassVar = {"1h": (None, "1h")}

    with pytest.raises(InputError, match=r"\(symbol, interval\)"):

        class BadShape(Strategy):
            streams: ClassVar = {"h1": "1h"}


def test_a_column_of_an_undeclared_stream_or_without_its_candles_is_one_clear_error():
    class Undeclared(Peek):
        def indicators(self) -> dict:
            return {"x": on("h4", "close")}

    df = _frame(list(range(0, 24 * M5, M5)))
    with pytest.raises(InputError, match="not declared"):
        Undeclared().columns(df)
    with pytest.raises(InputError, match=r"streams=\{'h1': frame\}"):
        bt.run(Peek(), df)
    with pytest.raises(InputError, match="candle column"):
        on("h1", "price")


def test_a_strategy_lists_the_specs_it_needs_per_stream_and_its_own_apart():
    s = TrendFilter(trend=30)
    assert s.specs == [spec("ema", 8), spec("ema", 21)]
    assert s.stream_specs() == {"h1": [spec("ema", 30)]}
    assert set(s.stream_columns()) == {"h1_close", "h1_trend"}


# ----- the backtest join --------------------------------------------------------------------


@pytest.fixture(scope="module")
def frames(shared_data_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """5m and 1h BTCUSDT of 2021-02..04: both streams have the real outages of 02-11, 03-06 and 04-20."""
    f5 = read_candles(shared_data_dir / "BTCUSDT_5m_20210101_20210513.csv.gz")
    f1 = read_candles(shared_data_dir / "BTCUSDT_1h_20170817_20240421.csv.gz")
    lo, hi = pd.Timestamp("2021-02-01", tz="UTC"), pd.Timestamp("2021-04-22", tz="UTC")
    return f5[(f5.index >= lo) & (f5.index < hi)], f1[(f1.index >= lo - pd.Timedelta("3D")) & (f1.index < hi)]


def test_backtest_columns_equal_a_row_by_row_reference_of_the_rule_on_real_data_with_outages(frames):
    f5, f1 = frames
    d = Peek().columns(f5, streams={"h1": f1})
    ema = spec("ema", 3).batch(f1)
    ema = np.asarray(ema if not isinstance(ema, dict) else next(iter(ema.values())), dtype=float)
    t5, t1 = to_ms(f5.index), to_ms(f1.index)
    j = 0
    for i in range(0, len(t5), 7):
        while j + 1 < len(t1) and t1[j + 1] + H <= t5[i] + M5:
            j += 1
        assert d.h1_close[i] == f1["close"].iloc[j]
        assert d.h1_ema[i] == ema[j]
        assert t1[j] + H <= t5[i] + M5  # closed by the base row's close: no look-ahead


def test_changing_an_hour_changes_no_base_row_that_closed_before_it(frames):
    f5, f1 = frames
    k = len(f1) // 2
    changed = f1.copy()
    changed.iloc[k:, changed.columns.get_loc("close")] *= 1.5
    a = Peek().columns(f5, streams={"h1": f1})
    b = Peek().columns(f5, streams={"h1": changed})
    base_close = to_ms(f5.index) + M5
    before = base_close < to_ms(f1.index)[k] + H
    assert before.any() and (~before).any()
    np.testing.assert_array_equal(a.h1_close[before], b.h1_close[before])
    np.testing.assert_array_equal(a.h1_ema[before], b.h1_ema[before])
    assert (a.h1_close[~before] != b.h1_close[~before]).all()


# ----- the live join ------------------------------------------------------------------------


class _R:
    def __init__(self, t: int) -> None:
        self.candle = (t,)


def test_the_live_join_holds_a_base_row_until_the_hour_closing_with_it_arrives_in_either_order():
    for hour_first in (True, False):
        j = StreamJoin(("BTCUSDT", "5m"), {"h1": ("BTCUSDT", "1h")})
        assert j.push(("BTCUSDT", "1h"), _R(8 * H)) == []
        b = _R(9 * H + 50 * 60_000)  # closes 09:55: sees 08:00, no need to wait
        out = j.push(("BTCUSDT", "5m"), b)
        assert [(x.row, x.extras["h1"].candle[0]) for x in out] == [(b, 8 * H)]
        last = _R(9 * H + 55 * 60_000)  # closes 10:00 with the 09:00 hour
        hour = _R(9 * H)
        if hour_first:
            assert j.push(("BTCUSDT", "1h"), hour) == []
            out = j.push(("BTCUSDT", "5m"), last)
        else:
            assert j.push(("BTCUSDT", "5m"), last) == []
            assert j.pending == 1 and j.oldest_pending_open() == last.candle[0]
            out = j.push(("BTCUSDT", "1h"), hour)
        assert out == [Joined(last, {"h1": hour})]


def test_the_live_join_over_an_outage_releases_when_the_stream_moves_on_is_finished_or_given_up():
    j = StreamJoin(("BTCUSDT", "5m"), {"h1": ("BTCUSDT", "1h")})
    h8 = _R(8 * H)
    j.push(("BTCUSDT", "1h"), h8)
    rows = [_R(9 * H + m * 60_000) for m in range(55, 55 + 5 * 14, 5)]  # 09:55 .. 11:00
    for r in rows:
        j.push(("BTCUSDT", "5m"), r)
    assert j.pending == len(rows)  # the 09:00 hour never came
    h10 = _R(10 * H)
    out = j.push(("BTCUSDT", "1h"), h10)  # the 10:00 hour: so 09:00 is missing and the stream moved on
    assert [x.row for x in out] == rows and j.pending == 0
    closes = [r.candle[0] + M5 for r in rows]
    assert [x.extras["h1"] for x in out] == [h8 if c < 11 * H else h10 for c in closes]  # stale until 11:00

    k = StreamJoin(("BTCUSDT", "5m"), {"h1": ("BTCUSDT", "1h")})
    k.push(("BTCUSDT", "5m"), _R(9 * H + 55 * 60_000))
    assert k.pending == 1
    assert [x.extras["h1"] for x in k.finish(("BTCUSDT", "1h"))] == [None]
    g = StreamJoin(("BTCUSDT", "5m"), {"h1": ("BTCUSDT", "1h")})
    g.push(("BTCUSDT", "1h"), h8)
    g.push(("BTCUSDT", "5m"), _R(9 * H + 55 * 60_000))
    assert [x.extras["h1"] for x in g.release_all()] == [h8]  # the daemon gave up waiting: stale row


def _live_signals(strategy: Strategy, f5: pd.DataFrame, f1: pd.DataFrame, *, hour_late: bool) -> dict[int, tuple]:
    """Drive two StreamStates and a StreamJoin as the daemon does, the two streams interleaved by close time
    (``hour_late``: an hour arrives after the 5m candle closing with it), and collect the live signals."""
    base, hour = ("BTCUSDT", "5m"), ("BTCUSDT", "1h")
    st5, st1 = StreamState(*base, keep=10), StreamState(*hour, keep=10)
    st5.add_specs(strategy.specs)
    st1.add_specs(strategy.stream_specs()["h1"])
    join = StreamJoin(base, {"h1": hour})
    ev = strategy.live()
    events = [(t + M5, 1 if hour_late else 0, base, c) for t, c in zip(to_ms(f5.index), f5.itertuples(), strict=True)]
    events += [(t + H, 0 if hour_late else 1, hour, c) for t, c in zip(to_ms(f1.index), f1.itertuples(), strict=True)]
    events.sort(key=lambda e: (e[0], e[1]))
    out = {}
    for _, _, key, c in events:
        candle = Candle(int(c.Index.value // 1_000_000), c.open, c.high, c.low, c.close, c.volume)
        row = (st5 if key == base else st1).on_closed(candle)
        for joined in join.push(key, row):
            sig = ev.on_joined(joined)
            if sig is not None:
                out[sig.time_ms] = (sig.entry, sig.exit, sig.short_entry, sig.short_exit)
    for joined in join.finish(hour) + join.finish(base):
        sig = ev.on_joined(joined)
        if sig is not None:
            out[sig.time_ms] = (sig.entry, sig.exit, sig.short_entry, sig.short_exit)
    return out


@pytest.mark.parametrize("hour_late", [False, True], ids=["hour-first", "hour-late"])
def test_live_signals_over_two_streams_equal_the_backtest_signals_on_real_data_with_outages(frames, hour_late):
    f5, f1 = frames
    s = TrendFilter(fast=8, slow=21, trend=20, short=True)
    sig = s.run_signals(f5, streams={"h1": f1})
    t = to_ms(f5.index)
    mask = sig.entries | sig.exits | sig.short_entries | sig.short_exits
    want = {
        int(t[i]): (bool(sig.entries[i]), bool(sig.exits[i]), bool(sig.short_entries[i]), bool(sig.short_exits[i]))
        for i in np.flatnonzero(mask)
    }
    got = _live_signals(s, f5, f1, hour_late=hour_late)
    assert len(want) > 100
    assert got == want
