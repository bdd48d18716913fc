"""kit.engine: one state per unique spec per stream, values == batch, history seam, sharing, teardown."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pandas as pd
import pytest

from kit.engine import IndicatorEngine, Row, StreamState
from kit.exchange import ExchangeSimulator
from kit.feed import Feed, KlineEvent
from kit.indicators import parse_spec, spec
from kit.market import Candle
from kit.market.files import read_candles, to_ms
from tests.fixtures.feed import sample_slice

MIN = 60_000
SPECS = [
    spec("rsi", 14), spec("ema", 50), spec("macd", 12, 26, 9), spec("bbands", 20, 2.0), spec("atr", 14),
    spec("adx", 14), spec("stoch", 14, 3, 3), spec("vwap"), spec("sar"), spec("mfi", 14), spec("obv"),
    spec("rsi", 7, source="open"), spec("supertrend", 10, 3.0),
]  # fmt: skip


def candles_of(frame: pd.DataFrame) -> list[Candle]:
    t = to_ms(frame.index)
    return [Candle(int(ts), *map(float, row)) for ts, row in zip(t, frame.itertuples(index=False), strict=True)]


def frame_of(candles: list[Candle]) -> pd.DataFrame:
    idx = pd.DatetimeIndex(pd.to_datetime([c.open_time for c in candles], unit="ms", utc=True), name="open_time")
    return pd.DataFrame([c[1:] for c in candles], columns=["open", "high", "low", "close", "volume"], index=idx)


def assert_rows_match_batch(rows: list[Row], specs, frame: pd.DataFrame) -> None:
    """Each row's value of each spec == the batch function over ``frame`` at that candle."""
    pos = {int(t): i for i, t in enumerate(to_ms(frame.index))}
    for sp in specs:
        batch = sp.batch(frame)
        for row in rows:
            i = pos[row.candle.open_time]
            got = row.values[sp]
            got = tuple(got) if isinstance(got, tuple) else (got,)
            for out, g in zip(sp.outputs, got, strict=True):
                want = batch[out][i]
                if math.isnan(want):
                    assert math.isnan(g), (sp.key, out, i)
                else:
                    assert g == pytest.approx(want, rel=1e-9, abs=1e-12), (sp.key, out, i)


@pytest.fixture(scope="module")
def btc() -> list[Candle]:
    return candles_of(sample_slice("BTCUSDT", "2025-06-01 00:00", "2025-06-01 12:00"))


# --------------------------------------------------------------------------- the synchronous core


def test_stream_state_equals_batch_and_warms_late_specs(btc):
    st = StreamState("BTCUSDT", "1m", keep=5000)
    st.add_specs(SPECS[:6])
    rows = [st.on_closed(c) for c in btc[:400]]
    assert all(r is not None and r.closed for r in rows)
    assert st.on_closed(btc[399]) is None and st.on_closed(btc[10]) is None  # duplicates ignored
    late = SPECS[6:]
    st.add_specs(late)  # warmed over the 400 kept rows: their values gain the late specs
    rows += [st.on_closed(c) for c in btc[400:600]]
    assert_rows_match_batch(rows, SPECS, frame_of(btc[:600]))
    assert st.updates == 600 * len(SPECS) and st.candles == 600


def test_stream_state_window_and_refcounts(btc):
    st = StreamState("BTCUSDT", "1m", keep=100)
    st.add_specs([spec("rsi", 14), "rsi(14)", spec("ema", 20)])
    assert st.slots[spec("rsi", 14)].refs == 2 and len(st.specs) == 2
    for c in btc[:300]:
        st.on_closed(c)
    assert len(st.rows) == 100
    st.add_specs(["sma(10)"])  # warmed over the 100 kept rows only
    assert_rows_match_batch(list(st.rows), [spec("sma", 10)], frame_of(btc[200:300]))
    st.remove_specs([spec("rsi", 14)])
    assert spec("rsi", 14) in st.slots
    st.remove_specs(["rsi(14)", "sma(10)"])
    assert set(st.slots) == {spec("ema", 20)}
    assert spec("sma", 10) in st.rows[-1].values  # published rows are not mutated
    assert set(st.on_closed(btc[300]).values) == {spec("ema", 20)}
    st.ensure_capacity(250)
    assert st.capacity == 250 and len(st.rows) == 100
    assert st.history(3) == list(st.rows)[-3:] and st.history(0) == []


def test_forming_rows_peek_without_changing_state(btc):
    st = StreamState("BTCUSDT", "1m")
    st.add_specs(SPECS)
    for c in btc[:100]:
        st.on_closed(c)
    c = btc[100]
    forming = c._replace(close=(c.open + c.close) / 2, volume=c.volume / 3)
    f1 = st.on_forming(forming)
    f2 = st.on_forming(c)
    assert not f1.closed and not f2.closed
    row = st.on_closed(c)
    assert repr(row.values) == repr(f2.values)  # peek of the final candle == its update
    assert repr(f1.values) != repr(f2.values)


def test_specs_must_read_candle_columns():
    st = StreamState("BTCUSDT", "1m")
    with pytest.raises(ValueError, match="specs"):
        st.add_specs([spec("rsi", 14, source="hl2")])
    with pytest.raises(ValueError, match="name"):
        st.add_specs(["nope(3)"])
    assert Row("BTCUSDT", "1m", None, True, {spec("rsi", 14): 1.0}).value("rsi(14)") == 1.0


# --------------------------------------------------------------------------- an in-process source


class ListSource:
    """A finite candle source shaped like kit.feed.Feed: ``history`` closed candles before ``start``,
    then for each later candle a forming update and the closed candle, one per loop turn."""

    def __init__(self, candles: list[Candle], start: int, pace: float = 0.0005) -> None:
        self.candles = candles
        self.start = start
        self.pace = pace
        self.opened = 0
        self.active = 0
        self.requests: list[tuple[str, str, int, str]] = []

    def subscribe(self, symbol: str, interval: str, *, history: int = 0, mode: str = "lossless") -> _ListSub:
        self.requests.append((symbol, interval, history, mode))
        return _ListSub(self, symbol, interval, history)


class _ListSub:
    def __init__(self, src: ListSource, symbol: str, interval: str, history: int) -> None:
        self.src, self.symbol, self.interval = src, symbol, interval
        hist = src.candles[max(0, src.start - history) : src.start]
        self.events = [KlineEvent(symbol, interval, c, True) for c in hist]
        self.n_history = len(self.events)
        for c in src.candles[src.start :]:
            partial = c._replace(close=(c.open + c.close) / 2, volume=c.volume / 2)
            self.events += [KlineEvent(symbol, interval, partial, False), KlineEvent(symbol, interval, c, True)]
        self.i = 0

    @property
    def queued(self) -> int:  # like kit.feed's Subscription: the history is queued at once
        return max(0, self.n_history - self.i)

    async def __aenter__(self) -> _ListSub:
        self.src.opened += 1
        self.src.active += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.src.active -= 1

    def __aiter__(self) -> _ListSub:
        return self

    async def __anext__(self) -> KlineEvent:
        if self.i >= self.n_history:
            await asyncio.sleep(self.src.pace)
        if self.i >= len(self.events):
            raise StopAsyncIteration
        ev = self.events[self.i]
        self.i += 1
        return ev


async def take(sub, n: int, closed_only: bool = True) -> list[Row]:
    out = []
    async for row in sub:
        if row.closed or not closed_only:
            out.append(row)
        if len([r for r in out if r.closed]) >= n:
            break
    return out


async def test_engine_shares_states_and_rows_and_matches_batch(btc):
    src = ListSource(btc, start=300)
    engine = IndicatorEngine(src, keep=2000)
    a_specs = [spec("rsi", 14), spec("ema", 50), spec("macd")]
    b_specs = [spec("rsi", 14), spec("bbands", 20, 2.0), "ema(50)"]
    async with (
        engine.subscribe("btcusdt", "1m", specs=a_specs, history=100) as a,
        engine.subscribe("BTCUSDT", "1m", specs=b_specs, history=20) as b,
    ):
        assert len(a.history) == 100 and len(b.history) == 20
        assert a.history[-20:] == b.history  # the very same row objects
        assert src.opened == 1 and src.requests[0][2] == 2000
        st = engine.stats()
        assert st["streams"] == 1 and st["subscribers"] == 2 and st["unique_specs"] == 4
        ra, rb = await asyncio.gather(take(a, 50), take(b, 50))
        assert [r.candle.open_time for r in ra] == [r.candle.open_time for r in rb]
        assert all(x is y for x, y in zip(ra, rb, strict=True))  # one row, published to both
        seam = [*a.history, *ra]
        opens = [r.candle.open_time for r in seam]
        assert opens == list(range(opens[0], opens[0] + MIN * len(opens), MIN))  # no gap, no overlap
        assert opens[-1] == btc[349].open_time
        # the engine started at the first candle it was given: batch over the same candles
        assert_rows_match_batch(seam, [spec("rsi", 14), spec("ema", 50), spec("macd")], frame_of(btc[:350]))
        assert engine.stats()["per_stream"]["BTCUSDT 1m"]["updates"] == engine.state("BTCUSDT", "1m").candles * 4
    assert engine.stats()["streams"] == 0
    await asyncio.sleep(0.01)
    assert src.active == 0  # the last subscriber left: the upstream subscription is closed


async def test_late_subscriber_with_new_spec_is_warmed_without_gap(btc):
    src = ListSource(btc, start=200)
    engine = IndicatorEngine(src, keep=150)
    async with engine.subscribe("BTCUSDT", "1m", specs=["rsi(14)"], history=10) as first:
        await take(first, 30)
        state = engine.state("BTCUSDT", "1m")
        assert state.specs == (spec("rsi", 14),)
        async with engine.subscribe("BTCUSDT", "1m", specs=["rsi(14)", "atr(14)"], history=40) as late:
            kept_from = next(i for i, c in enumerate(btc) if c.open_time == state.rows[0].candle.open_time)
            assert len(state.rows) == 150 and kept_from > 0
            assert len(late.history) == 40
            live = await take(late, 20)
            seam = [*late.history, *live]
            opens = [r.candle.open_time for r in seam]
            assert opens == list(range(opens[0], opens[0] + MIN * len(opens), MIN))
            # atr was warmed over the kept window (150 rows): it equals the batch started there
            assert not math.isnan(late.history[0].values[spec("atr", 14)])
            assert_rows_match_batch(seam, [spec("atr", 14)], frame_of(btc[kept_from:]))
            assert engine.stats()["unique_specs"] == 2
            late.add("ema(5)")
            assert spec("ema", 5) in state.slots and spec("ema", 5) in late.specs
        # the late subscriber left: specs only it used are dropped, shared ones kept
        assert set(state.slots) == {spec("rsi", 14)}
        mark = state.last_open
        async for row in first:
            if row.candle.open_time > mark:
                assert set(row.values) == {spec("rsi", 14)}
                break


async def test_forming_rows_only_for_forming_subscribers(btc):
    src = ListSource(btc, start=100)
    engine = IndicatorEngine(src)
    async with (
        engine.subscribe("BTCUSDT", "1m", specs=["ema(10)"], forming=True) as viewer,
        engine.subscribe("BTCUSDT", "1m", specs=["ema(10)"]) as strategy,
    ):
        seen = await take(viewer, 10, closed_only=False)
        closed = await take(strategy, 10)
        assert engine.stats()["per_stream"]["BTCUSDT 1m"]["forming_subscribers"] == 1
    assert all(r.closed for r in closed)
    formed = [r for r in seen if not r.closed]
    assert formed, "a viewer gets forming rows"
    by_open = {r.candle.open_time: r for r in closed}
    for f in formed:
        if f.candle.open_time in by_open:  # the forming value is a peek: the closed value is unaffected
            c = by_open[f.candle.open_time]
            assert f.candle.close != c.candle.close
    assert_rows_match_batch(closed, [spec("ema", 10)], frame_of(btc[:200]))


async def test_finite_source_ends_iteration_and_bad_arguments(btc):
    src = ListSource(btc[:60], start=50)
    engine = IndicatorEngine(src)
    async with engine.subscribe("BTCUSDT", "1m", specs=["sma(5)"], history=5) as sub:
        rows = [r async for r in sub]
    assert [r.candle.open_time for r in rows] == [c.open_time for c in btc[50:60]]
    with pytest.raises(ValueError, match="history"):
        engine.subscribe("BTCUSDT", "1m", ["sma(5)"], history=-1)
    with pytest.raises(ValueError, match="name"):
        engine.subscribe("BTCUSDT", "1m", ["nope(5)"])
    with pytest.raises(ValueError, match="feed"):
        IndicatorEngine(object())
    from kit.errors import ConfigError

    with pytest.raises(ConfigError):
        engine.subscribe("BTCUSDT", "7m", ["sma(5)"])


async def test_source_errors_reach_subscribers(btc):
    class Broken(ListSource):
        def subscribe(self, symbol, interval, *, history=0, mode="lossless"):
            raise RuntimeError("exchange down")

    engine = IndicatorEngine(Broken(btc, 10))
    with pytest.raises(RuntimeError, match="exchange down"):
        async with engine.subscribe("BTCUSDT", "1m", ["sma(5)"]):
            pass
    assert engine.stats()["streams"] == 0


async def test_thousand_subscribers_cost_the_unique_specs(btc):
    src = ListSource(btc, start=100)
    engine = IndicatorEngine(src)
    pool = [spec("rsi", p) for p in (7, 14, 21)] + [spec("ema", p) for p in (10, 20, 50)] + [spec("atr", 14)]
    subs = [engine.subscribe("BTCUSDT", "1m", specs=[pool[i % 7], pool[(i * 3) % 7]]) for i in range(1000)]
    for s in subs:
        await s.start()
    rows = await take(subs[0], 20)
    state = engine.state("BTCUSDT", "1m")
    assert len(state.slots) == 7
    assert state.updates == state.candles * 7  # one update per unique spec per candle
    assert engine.stats()["subscribers"] == 1000
    for s in subs:
        s.close()
    assert engine.stats()["streams"] == 0
    assert_rows_match_batch(rows, pool, frame_of(btc[:200]))


# --------------------------------------------------------------------------- the real feed


async def test_engine_over_feed_and_simulator(btc_eth_1m):
    start = "2025-06-01 02:00"
    start_ms = int(pd.Timestamp(start, tz="UTC").value // 1_000_000)
    frame = btc_eth_1m[("BTCUSDT", "1m")]
    async with (
        ExchangeSimulator(data=btc_eth_1m, speed=3000.0, start=start) as sim,
        Feed(sim.ws_url, sim.rest_url, backoff_initial=0.05, backoff_max=0.5) as feed,
    ):
        engine = IndicatorEngine(feed, keep=500)
        async with (
            engine.subscribe("BTCUSDT", "1m", specs=SPECS[:8], history=60) as a,
            engine.subscribe("BTCUSDT", "1m", specs=SPECS[4:], history=30, forming=True) as b,
            engine.subscribe("ETHUSDT", "1m", specs=["rsi(14)"], history=10) as e,
        ):
            assert len(a.history) == 60 and a.history[-1].candle.open_time < start_ms + 30 * MIN
            assert a.history[-30:] == b.history
            ra, rb, re = await asyncio.wait_for(
                asyncio.gather(take(a, 30), take(b, 30, closed_only=False), take(e, 5)), 60
            )
            stats = engine.stats()
            assert stats["streams"] == 2 and stats["unique_specs"] == len(SPECS) + 1
        seam = [*a.history, *ra]
        opens = [r.candle.open_time for r in seam]
        assert opens == list(range(opens[0], opens[0] + MIN * len(opens), MIN))
        # the stream started at the first candle the feed delivered (all 120 before `start`)
        t = to_ms(frame.index)
        window = frame[t <= opens[-1]]
        assert_rows_match_batch(seam, SPECS[:8], window)
        assert_rows_match_batch([r for r in rb if r.closed], SPECS[4:], window)
        assert any(not r.closed for r in rb)
        assert [r.values[spec("rsi", 14)] for r in re] == pytest.approx(
            list(
                spec("rsi", 14).batch(btc_eth_1m[("ETHUSDT", "1m")])["rsi"][
                    np.searchsorted(to_ms(btc_eth_1m[("ETHUSDT", "1m")].index), [r.candle.open_time for r in re])
                ]
            ),
            rel=1e-9,
        )
        assert engine.stats()["streams"] == 0


def test_key_round_trip_used_by_engine_callers():
    assert parse_spec("macd(12,26,9)") == spec("macd")
    assert read_candles  # the real-data reader is what the fixtures use


async def test_slow_subscriber_skips_ahead_and_cancelled_reader_is_harmless(btc):
    src = ListSource(btc, start=50)
    engine = IndicatorEngine(src, max_queue=10)
    async with (
        engine.subscribe("BTCUSDT", "1m", specs=["ema(5)"]) as slow,
        engine.subscribe("BTCUSDT", "1m", specs=["ema(5)"]) as fast,
        engine.subscribe("BTCUSDT", "1m", specs=["ema(5)"]) as idle,
    ):
        waiter = asyncio.create_task(anext(idle))  # blocks on the shared wake-up, then is cancelled
        await asyncio.sleep(0)
        got = await take(fast, 40)
        waiter.cancel()
        got += await take(fast, 5)  # the others are not disturbed by the cancellation
        opens = [r.candle.open_time for r in got]
        assert opens == list(range(opens[0], opens[0] + MIN * len(opens), MIN))
        assert slow.queued <= 20
        first = await anext(slow)
        assert slow.dropped > 0
        assert first.candle.open_time > btc[50].open_time  # skipped ahead, then contiguous again
        nxt = await anext(slow)
        assert nxt.candle.open_time == first.candle.open_time + MIN
        assert engine.stats()["per_stream"]["BTCUSDT 1m"]["log_rows"] < 20


async def test_giving_up_while_the_stream_opens_drops_it(btc):
    src = ListSource(btc, start=0, pace=5.0)  # no history and a slow first event: never ready in time
    engine = IndicatorEngine(src)
    sub = engine.subscribe("BTCUSDT", "1m", ["sma(5)"])
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sub.start(), 0.05)
    await asyncio.sleep(0.01)
    assert engine.stats()["streams"] == 0
    assert src.active == 0  # the upstream subscription was closed


async def test_a_daily_stream_shorter_than_the_history_warms_up_on_what_exists():
    # The daemon asks for --history (1000) plus warm-up: a symbol with 16 closed days gets those 16
    # rows (the EMA still warming), then live rows; never an error from a request before 1970.
    data = {("BTCUSDT", "1m"): sample_slice("BTCUSDT", "2025-05-20 00:00", "2025-06-08 00:00")}
    async with (
        ExchangeSimulator(data=data, speed=20_000, start="2025-06-05 23:00") as sim,
        Feed(sim.ws_url, sim.rest_url) as feed,
        IndicatorEngine(feed, keep=1000) as engine,
        engine.subscribe("BTCUSDT", "1d", ["ema(20)"], history=1000) as sub,
    ):
        assert len(sub.history) == 16
        live = await asyncio.wait_for(anext(sub), 20)
    day = 86_400_000
    assert live.candle.open_time == sub.history[-1].candle.open_time + day
    assert math.isnan(live.values[spec("ema", 20)]), "20 days are not there yet: the EMA warms up"
