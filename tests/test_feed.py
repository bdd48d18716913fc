"""kit.feed against the real exchange simulator over loopback: seams, multiplexing, faults, gaps."""

from __future__ import annotations

import asyncio
import time

import pandas as pd
import pytest

from kit.errors import ConfigError, ExchangeError
from kit.exchange import ExchangeSimulator
from kit.feed import Feed, GapEvent, KlineEvent, shared_feed, stream_name
from tests.fixtures.feed import (
    OUTAGE_END,
    OUTAGE_START,
    assert_exactly_once_in_order,
    collect_closed,
    sample_slice,
)

MIN = 60_000
SPEED = 3000.0  # one simulated minute every 20 ms of real time
START = "2025-06-01 02:00"
START_MS = int(pd.Timestamp(START, tz="UTC").value // 1_000_000)


def make_feed(sim: ExchangeSimulator, **kw) -> Feed:
    kw = {"backoff_initial": 0.05, "backoff_max": 0.5, "backoff_reset": 2.0} | kw
    return Feed(sim.ws_url, sim.rest_url, **kw)


async def eventually(cond, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not become true within {timeout} s")
        await asyncio.sleep(0.1)


# -- history seam ----------------------------------------------------------------------------------
async def test_history_then_live_has_no_hole_and_no_overlap(btc_eth_1m):
    frame = btc_eth_1m[("BTCUSDT", "1m")]
    async with (
        ExchangeSimulator(data=btc_eth_1m, speed=SPEED, start=START) as sim,
        make_feed(sim) as feed,
    ):
        sim.pause()  # the first live update is then the simulator's start, whatever the machine's load
        async with feed.subscribe("BTCUSDT", "1m", history=50) as sub:
            await eventually(lambda: sim.stats()["subscriptions"] >= 1, what="subscribed")
            sim.resume()
            events: list = []
            got = await collect_closed(sub, START_MS + 40 * MIN, events=events)
    assert all(isinstance(e, KlineEvent) for e in events)
    # The first 50 events are the history: closed candles only, the last one just before the start.
    assert all(e.closed for e in events[:50])
    assert got[0][0] == START_MS - 50 * MIN and got[49][0] == START_MS - MIN
    assert events[50].candle.open_time == START_MS, "live begins right after the history"
    assert_exactly_once_in_order(got, frame)
    assert len(got) == 50 + 41


async def test_late_joiners_get_history_from_buffer_and_rest(btc_eth_1m):
    frame = btc_eth_1m[("BTCUSDT", "1m")]
    async with (
        ExchangeSimulator(data=btc_eth_1m, speed=SPEED, start=START) as sim,
        make_feed(sim) as feed,
        feed.subscribe("BTCUSDT", "1m") as first,
    ):
        await collect_closed(first, START_MS + 25 * MIN)
        # 20 fit the feed's recent buffer; 100 do not (the stream started without history): REST.
        async with (
            feed.subscribe("BTCUSDT", "1m", history=20) as small,
            feed.subscribe("BTCUSDT", "1m", history=100) as big,
        ):
            until = START_MS + 50 * MIN
            got_small, got_big, got_first = await asyncio.gather(
                collect_closed(small, until), collect_closed(big, until), collect_closed(first, until)
            )
    for got in (got_small, got_big, got_first):
        assert_exactly_once_in_order(got, frame)
    # History ends exactly where the joiner's live events start: same last candle for all.
    assert got_small[-1] == got_big[-1] == got_first[-1]
    assert got_big[0][0] < got_small[0][0]
    assert len(got_big) - len(got_small) == 80


# -- multiplexing and reference counting ----------------------------------------------------------
async def test_one_connection_multiplexes_and_refcounts(btc_eth_1m):
    async with ExchangeSimulator(data=btc_eth_1m, speed=600, start=START) as sim, make_feed(sim) as feed:
        a1 = await feed.subscribe("BTCUSDT", "1m").start()
        a2 = await feed.subscribe("btcusdt", "1m", mode="conflate").start()
        b = await feed.subscribe("ETHUSDT", "1m").start()
        c = await feed.subscribe("BTCUSDT", "5m").start()
        want = sorted([stream_name("BTCUSDT", "1m"), stream_name("ETHUSDT", "1m"), stream_name("BTCUSDT", "5m")])

        async def listed() -> list[str]:
            return await feed.list_subscriptions()

        await eventually(lambda: _eq(listed(), want), what="three streams subscribed")
        assert sim.stats()["connections"] == 1
        st = feed.stats()
        assert st["connections"] == 1 and st["streams"] == 3
        assert st["subscribers"][stream_name("BTCUSDT", "1m")] == 2
        # Events flow to every subscriber of a shared stream.
        ev1, ev2, ev3 = await asyncio.wait_for(asyncio.gather(anext(a1), anext(a2), anext(c)), 10)
        assert ev1.symbol == ev2.symbol == "BTCUSDT" and ev3.interval == "5m"

        b.close()
        await eventually(lambda: _eq(listed(), sorted(set(want) - {stream_name("ETHUSDT", "1m")})), what="ETH gone")
        a1.close()
        await asyncio.sleep(0.3)
        assert stream_name("BTCUSDT", "1m") in await listed(), "a stream with a subscriber left must stay"
        a2.close()
        await eventually(lambda: _eq(listed(), [stream_name("BTCUSDT", "5m")]), what="only 5m left")
        c.close()
        await eventually(lambda: feed.stats()["streams"] == 0, what="no streams")
        # A closed subscription ends its iteration.
        with pytest.raises(StopAsyncIteration):
            await anext(a1)


async def _eq(coro, want) -> bool:
    return await coro == want


async def test_second_connection_only_past_the_stream_limit(btc_eth_1m):
    async with (
        ExchangeSimulator(data=btc_eth_1m, speed=600, start=START) as sim,
        make_feed(sim, max_streams_per_connection=2) as feed,
    ):
        s1 = await feed.subscribe("BTCUSDT", "1m").start()
        s2 = await feed.subscribe("ETHUSDT", "1m").start()
        await eventually(lambda: sim.stats()["subscriptions"] == 2, what="two streams")
        assert sim.stats()["connections"] == 1
        s3 = await feed.subscribe("BTCUSDT", "5m").start()
        await eventually(lambda: sim.stats()["connections"] == 2, what="a second connection")
        await eventually(lambda: feed.stats()["connections"] == 2, what="feed sees two connections")
        for s in (s1, s2, s3):
            ev = await asyncio.wait_for(anext(s), 10)
            assert ev.symbol == s.symbol and ev.interval == s.interval


# -- many subscribers, slow subscribers -----------------------------------------------------------
async def test_many_subscribers_all_see_the_same_candles(btc_eth_1m):
    async with ExchangeSimulator(data=btc_eth_1m, speed=SPEED, start=START) as sim, make_feed(sim) as feed:
        subs = [feed.subscribe(sym, "1m", history=5) for sym in ("BTCUSDT", "ETHUSDT") for _ in range(100)]
        for s in subs:
            await s.start()
        results = await asyncio.gather(*(collect_closed(s, START_MS + 25 * MIN) for s in subs))
        assert feed.stats()["connections"] == 1
        for s in subs:
            s.close()
    for s, got in zip(subs, results, strict=True):
        assert_exactly_once_in_order(got, btc_eth_1m[(s.symbol, "1m")])
    assert len({tuple(r) for r in results[:100]}) == 1 and len({tuple(r) for r in results[100:]}) == 1


async def test_slow_subscriber_never_slows_others_and_loses_no_closed_candle(btc_eth_1m):
    frame = btc_eth_1m[("BTCUSDT", "1m")]
    async with ExchangeSimulator(data=btc_eth_1m, speed=SPEED, start=START) as sim, make_feed(sim) as feed:
        fast = await feed.subscribe("BTCUSDT", "1m").start()
        slow = await feed.subscribe("BTCUSDT", "1m", max_queue=16).start()
        viewer = await feed.subscribe("BTCUSDT", "1m", mode="conflate", max_queue=16).start()
        first = await anext(slow)  # the slow one starts, then stops reading for a long while
        # 200 candles pass: more than the feed's recent buffer (128), so the resync needs REST.
        got_fast = await collect_closed(fast, START_MS + 200 * MIN, timeout=60)
        assert slow.lagging and slow.queued <= 16
        assert viewer.queued <= 16
        assert feed.stats()["lagging"] >= 1
        last = got_fast[-1][0]
        got_slow = await collect_closed(slow, last, timeout=60)
        got_view = await collect_closed(viewer, last, timeout=60)
    assert_exactly_once_in_order(got_fast, frame)
    if first.closed:
        got_slow.insert(0, tuple(first.candle))
    assert_exactly_once_in_order(got_slow, frame)
    assert got_slow[0][0] <= got_fast[0][0] and got_slow[-1] == got_fast[-1]
    assert slow.resyncs >= 1
    # The viewer kept the present: closed candles in order without repeats, the old backlog dropped.
    times = [g[0] for g in got_view]
    assert times == sorted(set(times)) and got_view[-1] == got_fast[-1]
    assert viewer.dropped > 0


# -- faults -----------------------------------------------------------------------------------------
FAULTS = {
    "drop": lambda sim: sim.faults.drop_all(),
    "malformed": lambda sim: sim.faults.malformed(12),
    "malformed_extra": lambda sim: sim.faults.malformed(12, replace=False),
    "duplicate": lambda sim: sim.faults.duplicate(20),
    "reorder": lambda sim: sim.faults.reorder(20),
    "stall": lambda sim: sim.faults.stall(1.2),
}


def _fault_seen(kind: str, st: dict) -> bool:
    d = st["dropped"]
    return {
        "drop": st["reconnects"] >= 1,
        "malformed": d["malformed"] + d["invalid"] >= 1,
        "malformed_extra": d["malformed"] + d["invalid"] >= 1,
        "duplicate": d["duplicates"] + d["stale"] >= 1,
        "reorder": d["duplicates"] + d["stale"] + d["out_of_order"] + st["backfilled"] >= 1,
        "stall": st["stalls"] >= 1 and st["reconnects"] >= 1,
    }[kind]


@pytest.mark.parametrize("kind", list(FAULTS))
async def test_every_closed_candle_exactly_once_through_fault(btc_eth_1m, kind):
    async with (
        ExchangeSimulator(data=btc_eth_1m, speed=SPEED, start=START) as sim,
        make_feed(sim, stall_timeout=0.4) as feed,
    ):
        # A swap is visible only within one stream: the reorder case watches one stream only.
        symbols = ("BTCUSDT",) * 3 if kind == "reorder" else ("BTCUSDT", "ETHUSDT", "BTCUSDT")
        subs = [await feed.subscribe(sym, "1m", history=3).start() for sym in symbols]
        before = await asyncio.gather(*(collect_closed(s, START_MS + 10 * MIN) for s in subs))
        FAULTS[kind](sim)
        until = START_MS + 60 * MIN
        after = await asyncio.gather(*(collect_closed(s, until, timeout=60) for s in subs))
        st = feed.stats()
    assert _fault_seen(kind, st), st
    for s, b, a in zip(subs, before, after, strict=True):
        assert_exactly_once_in_order(b + a, btc_eth_1m[(s.symbol, "1m")])


async def test_connection_lifetime_drop_is_repaired(btc_eth_1m):
    """Binance's 24 h cut, shortened to 0.5 s: the feed reconnects and loses nothing."""
    async with (
        ExchangeSimulator(data=btc_eth_1m, speed=SPEED, start=START, max_connection_age=0.5) as sim,
        make_feed(sim) as feed,
        feed.subscribe("BTCUSDT", "1m", history=2) as sub,
    ):
        got = await collect_closed(sub, START_MS + 120 * MIN, timeout=60)
        st = feed.stats()
    assert st["reconnects"] >= 2
    assert_exactly_once_in_order(got, btc_eth_1m[("BTCUSDT", "1m")])


@pytest.mark.parametrize("clock_jump_min", [15, -15])
async def test_exchange_restart_on_the_same_port(btc_eth_1m, clock_jump_min):
    """The new exchange's clock is ahead (a hole to backfill) or behind (candles sent again)."""
    frame = btc_eth_1m[("BTCUSDT", "1m")]
    sim = ExchangeSimulator(data=btc_eth_1m, speed=SPEED, start=START)
    await sim.start()
    port = sim.port
    feed = make_feed(sim)
    try:
        async with feed, feed.subscribe("BTCUSDT", "1m", history=2) as sub:
            got = await collect_closed(sub, START_MS + 10 * MIN)
            resume_at = sim.now_ms() + clock_jump_min * MIN
            await sim.stop()
            await asyncio.sleep(0.5)  # the feed retries against a closed port meanwhile
            sim = ExchangeSimulator(data=btc_eth_1m, speed=SPEED, start=resume_at, port=port)
            sim.pause()  # its clock waits until the feed is back, so the jump is exactly as set
            await sim.start()
            await eventually(lambda: sim.stats()["subscriptions"] >= 1, what="feed resubscribed")
            sim.resume()
            got += await collect_closed(sub, START_MS + 60 * MIN, timeout=60)
            st = feed.stats()
    finally:
        await sim.stop()
    assert st["reconnects"] >= 1
    if clock_jump_min > 0:
        assert st["backfilled"] >= 10
    else:
        assert st["dropped"]["duplicates"] >= 10  # the 15 candles sent again were each dropped
    assert_exactly_once_in_order(got, frame)


# -- real outages -------------------------------------------------------------------------------------
def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


async def test_real_outage_is_a_gap_event_never_invented(outage_1m):
    frame = outage_1m[("BTCUSDT", "1m")]
    async with (
        ExchangeSimulator(data=outage_1m, speed=SPEED, start="2023-03-24 12:20") as sim,
        make_feed(sim) as feed,
    ):
        with_gaps = await feed.subscribe("BTCUSDT", "1m", history=5, gaps=True).start()
        without = await feed.subscribe("BTCUSDT", "1m", history=5).start()
        events: list = []
        until = _ms(OUTAGE_END) + 10 * MIN
        got, got_plain = await asyncio.gather(
            collect_closed(with_gaps, until, events=events, timeout=60), collect_closed(without, until, timeout=60)
        )
        st = feed.stats()
    gap_events = [e for e in events if e.is_gap]
    assert gap_events == [GapEvent("BTCUSDT", "1m", _ms(OUTAGE_START), _ms(OUTAGE_END))]
    assert gap_events[0].closed is False
    # The gap comes between the last candle before the outage and the first after it.
    i = events.index(gap_events[0])
    assert events[i - 1].candle.open_time == _ms(OUTAGE_START) - MIN and events[i - 1].closed
    assert events[i + 1].candle.open_time == _ms(OUTAGE_END)
    assert got == got_plain
    assert_exactly_once_in_order(got, frame)
    assert not any(_ms(OUTAGE_START) <= g[0] < _ms(OUTAGE_END) for g in got)
    assert st["gaps"] == 1 and st["gap_candles"] == 80


async def test_outage_inside_history_is_reported(outage_1m):
    async with (
        ExchangeSimulator(data=outage_1m, speed=600, start="2023-03-24 14:30") as sim,
        make_feed(sim) as feed,
        feed.subscribe("BTCUSDT", "1m", history=100, gaps=True) as sub,
    ):
        events = [await asyncio.wait_for(anext(sub), 10) for _ in range(102)]
    gaps = [e for e in events if e.is_gap]
    assert gaps == [GapEvent("BTCUSDT", "1m", _ms(OUTAGE_START), _ms(OUTAGE_END))]
    closed = [e.candle.open_time for e in events if not e.is_gap and e.closed]
    assert len(closed) >= 100 and closed == sorted(set(closed))


@pytest.mark.parametrize("history", [1000, 30_000])
async def test_daily_stream_with_fewer_candles_than_history_starts_with_what_exists(history):
    # 16 closed days before the start: far fewer than asked. 30,000 days reach before 1970 at once;
    # 1,000 days did so only when the feed kept doubling its look-back for the missing candles.
    data = {("BTCUSDT", "1m"): sample_slice("BTCUSDT", "2025-05-20 00:00", "2025-06-08 00:00")}
    day = 86_400_000
    first, start = _ms(pd.Timestamp("2025-05-20", tz="UTC")), _ms(pd.Timestamp("2025-06-05", tz="UTC"))
    async with (
        ExchangeSimulator(data=data, speed=20_000, start="2025-06-05 23:00") as sim,
        make_feed(sim) as feed,
        feed.subscribe("BTCUSDT", "1d", history=history) as sub,
    ):
        got = await collect_closed(sub, start, timeout=20)
        st = feed.stats()
    assert [c[0] for c in got] == list(range(first, start + day, day)), "every day there is, then live"
    assert st["rest_requests"] < 10, "no retry loop"


# -- errors and loops -----------------------------------------------------------------------------------
async def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ConfigError, match="ws_url"):
        Feed("http://127.0.0.1:1", "http://127.0.0.1:1")
    feed = Feed("ws://127.0.0.1:1", "http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="interval"):
        feed.subscribe("BTCUSDT", "7m")
    with pytest.raises(ConfigError, match="mode"):
        feed.subscribe("BTCUSDT", "1m", mode="fast")
    with pytest.raises(ConfigError, match="history"):
        feed.subscribe("BTCUSDT", "1m", history=-1)
    with pytest.raises(ConfigError, match="max_streams_per_connection"):
        Feed("ws://127.0.0.1:1", "http://127.0.0.1:1", max_streams_per_connection=2000)


async def test_unknown_symbol_fails_the_subscription(btc_eth_1m):
    async with (
        ExchangeSimulator(data=btc_eth_1m, speed=600, start=START) as sim,
        make_feed(sim) as feed,
        feed.subscribe("DOGEUSDT", "1m") as sub,
    ):
        with pytest.raises(ExchangeError, match="DOGEUSDT"):
            await asyncio.wait_for(anext(sub), 10)


async def test_shared_feed_is_one_per_loop(btc_eth_1m):
    a, b = shared_feed(), shared_feed()
    assert a is b

    async def other() -> Feed:
        return shared_feed()

    c = await asyncio.to_thread(lambda: asyncio.run(other()))
    assert c is not a


def test_feed_runs_inside_a_tornado_ioloop(btc_eth_1m):
    """Panel serves on Tornado's IOLoop: the feed's tasks live on the loop it was entered on."""
    from tornado.ioloop import IOLoop

    async def main() -> list[tuple]:
        async with ExchangeSimulator(data=btc_eth_1m, speed=SPEED, start=START) as sim:
            feed = shared_feed(ws_url=sim.ws_url, rest_url=sim.rest_url)
            async with feed, feed.subscribe("ETHUSDT", "1m", history=3) as sub:
                return await collect_closed(sub, START_MS + 5 * MIN)

    loop = IOLoop(make_current=False)
    try:
        got = loop.run_sync(main, timeout=30)
    finally:
        loop.close()
    assert_exactly_once_in_order(got, btc_eth_1m[("ETHUSDT", "1m")])


async def test_watch_calls_back_for_every_event(btc_eth_1m):
    """The callback form (notebook cells, Panel sessions): same candles, no async for."""
    got: list[tuple] = []
    done = asyncio.Event()

    def on_event(ev) -> None:
        if ev.closed:
            got.append(tuple(ev.candle))
            if ev.candle.open_time >= START_MS + 20 * MIN:
                done.set()
        if len(got) == 3:
            raise RuntimeError("a failing callback must not stop the watch")

    async with (
        ExchangeSimulator(data=btc_eth_1m, speed=SPEED, start=START) as sim,
        make_feed(sim) as feed,
    ):
        sub = feed.watch("ETHUSDT", "1m", on_event, history=5, mode="conflate")
        await asyncio.wait_for(done.wait(), 30)
        sub.close()
        await eventually(lambda: feed.stats()["streams"] == 0, what="watch closed")
    assert_exactly_once_in_order(got, btc_eth_1m[("ETHUSDT", "1m")])


async def test_candles_missed_while_disconnected_are_caught_up_when_no_frame_follows(btc_eth_1m):
    """The replay ends while the feed is cut off: no later frame will reveal the hole, so after
    reconnecting the feed asks REST for what closed meanwhile (the last candles are not lost)."""
    from tests.fixtures.daemon import TcpProxy

    frame = btc_eth_1m[("BTCUSDT", "1m")]
    end = frame.index.get_loc(pd.Timestamp(START, tz="UTC")) + 12
    data = {("BTCUSDT", "1m"): frame.iloc[:end]}  # the data stops 12 minutes after START
    last_ms = int(frame.index[end - 1].value // 1_000_000)
    async with ExchangeSimulator(data=data, speed=60.0, start=START) as sim:
        proxy = TcpProxy(("127.0.0.1", int(sim.ws_url.rsplit(":", 1)[1])))
        try:
            async with (
                Feed(
                    f"ws://127.0.0.1:{proxy.port}",
                    sim.rest_url,
                    stall_timeout=1.0,
                    backoff_initial=0.05,
                    backoff_max=0.3,
                    catch_up_after=0.5,
                ) as feed,  # fmt: skip
                feed.subscribe("BTCUSDT", "1m", history=2) as sub,
            ):
                got = await collect_closed(sub, START_MS + 2 * MIN, timeout=30)
                proxy.block()  # cut off: the remaining candles close and the data ends meanwhile
                await eventually(lambda: sim.now_ms() > last_ms + 2 * MIN, 30, "the replay to pass its end")
                proxy.unblock()
                got += await collect_closed(sub, last_ms, timeout=30)
                st = feed.stats()
        finally:
            proxy.close()
    assert st["reconnects"] >= 1 and st["backfilled"] >= 5
    assert got[-1][0] == last_ms
    assert_exactly_once_in_order(got, frame)
