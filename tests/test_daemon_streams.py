"""The daemon's book running strategies over several streams: each stream's indicators once, a
base candle evaluated with the latest closed candles of the others whichever arrives first, the
outage rule, and trades equal to the backtest's on real data with outages."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import kit.backtest as bt
from kit.daemon import Book
from kit.indicators import spec
from kit.market import Candle
from kit.market.aggregate import resample
from kit.market.files import read_candles, to_ms
from kit.strategies import EmaCross, TrendFilter
from tests.fixtures.daemon import wait_for
from tests.test_daemon import Rec

H, M5 = 3_600_000, 300_000


def _candles(frame: pd.DataFrame) -> list[Candle]:
    return [Candle(int(t), *map(float, r)) for t, r in zip(to_ms(frame.index), frame.to_numpy(), strict=True)]


@pytest.fixture(scope="module")
def frames(shared_data_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Real 5m BTCUSDT through the 2021-02-11 and 2021-03-06 outages, and its 1h candles."""
    f5 = read_candles(shared_data_dir / "BTCUSDT_5m_20210101_20210513.csv.gz").iloc[8_000:20_000]
    return f5, resample(f5, "5m", "1h")


def test_a_stream_read_by_strategies_of_other_streams_is_served_once_and_dropped_when_unused():
    book = Book()
    book.add(Rec(1, TrendFilter(trend=20), interval="5m"), 0, {})
    book.add(Rec(2, TrendFilter(trend=30), interval="5m", user_id=2), 0, {})
    book.add(Rec(3, EmaCross(fast=20, slow=30), interval="1h"), 0, {})
    hour = book.streams[("BTCUSDT", "1h")]
    assert len(hour.groups) == 1 and len(hour.followers) == 2
    assert hour.specs() == {spec("ema", 20), spec("ema", 30)}  # ema(20) read by a follower and its own: once
    assert set(hour.own_state().slots) == {spec("ema", 20), spec("ema", 30)}
    book.remove(3)
    assert set(book.streams) == {("BTCUSDT", "5m"), ("BTCUSDT", "1h")} and not hour.groups  # still read
    book.remove(1)
    assert hour.specs() == {spec("ema", 30)}
    book.remove(2)
    assert book.streams == {}


def _run_book(frames, strategy, *, hour_late: bool, model: dict | None = None) -> list[dict]:
    """Feed both streams to a Book in close-time order (``hour_late``: an hour after the 5m candle
    closing with it); the trades the members' brokers recorded."""
    f5, f1 = frames
    book = Book()
    book.add(Rec(1, strategy, interval="5m", broker=model), int(to_ms(f5.index)[0]) - 1, {})
    events = [(c[0] + M5, int(hour_late), "5m", c) for c in _candles(f5)]
    events += [(c[0] + H, int(not hour_late), "1h", c) for c in _candles(f1)]
    trades, held = [], 0
    for _, _, itv, c in sorted(events, key=lambda e: (e[0], e[1])):
        res = book.on_candle("BTCUSDT", itv, c)
        drained = book.drain()
        held += len(drained)
        for r in ([res] if res is not None else []) + drained:
            trades += [t for w in r.writes for t in w.trades]
    if hour_late:
        assert held > 0  # candles were held for the hour closing with them, then released
    return trades


@pytest.mark.parametrize("hour_late", [False, True], ids=["hour-first", "hour-late"])
@pytest.mark.parametrize("fill", ["close", "next_open"])
def test_the_book_trades_a_strategy_over_two_streams_as_the_backtest_on_real_data_with_outages(frames, hour_late, fill):
    f5, f1 = frames
    s = TrendFilter(fast=5, slow=30, trend=20, short=True)
    got = _run_book(frames, s, hour_late=hour_late, model={"fill": fill})
    want = bt.run(s, f5, streams={"h1": f1}, fill=fill).trades
    want = want[want["exit_reason"] != "open"]
    assert len(want) > 20 and len(got) == len(want)
    assert [t["entry_time"] for t in got] == to_ms(pd.DatetimeIndex(want["entry_time"])).tolist()
    assert [t["side"] for t in got] == list(want["side"])
    np.testing.assert_allclose([t["exit_price"] for t in got], want["exit_price"], rtol=1e-9)
    np.testing.assert_allclose([t["pnl"] for t in got], want["pnl"], rtol=0, atol=1e-6)


def test_a_held_candle_is_released_with_the_last_hour_only_once_the_silent_hour_stream_is_live():
    book = Book()
    book.add(Rec(1, TrendFilter(), interval="5m"), 0, {})
    hour, base = book.streams[("BTCUSDT", "1h")], book.streams[("BTCUSDT", "5m")]
    book.on_candle("BTCUSDT", "1h", Candle(8 * H, 1, 1, 1, 1, 1))
    res = book.on_candle("BTCUSDT", "5m", Candle(9 * H + 55 * 60_000, 1, 1, 1, 1, 1))  # closes with 09:00's hour
    assert res.writes == [] and res.advance == [] and book.drain() == []  # held
    group = next(iter(base.groups.values()))
    assert group.join.pending == 1 and group.waiting_since is not None
    later = group.waiting_since + 60
    assert book.give_up_waiting(later, 10.0) == []  # the hour stream is not live (subscribing): wait
    hour.live = True
    assert book.give_up_waiting(group.waiting_since + 5, 10.0) == []  # not for long enough yet
    (released,) = book.give_up_waiting(later, 10.0)
    assert released.open_time == 9 * H + 55 * 60_000 and released.advance == [1]
    assert group.join.pending == 0 and group.waiting_since is None


@pytest.mark.slow
def test_the_daemon_process_trades_strategies_over_several_streams_as_the_backtest_through_a_sigkill(
    sqlite_url, cluster_factory
):
    """Real ``kit exchange`` and ``kit daemon`` processes: a BTC strategy filtered by ETH's 5m stream
    (the same for two users: one evaluation) and one on BTC 1m with its own 15m trend, killed with
    SIGKILL mid-run; the ledgers equal the backtests over the same candles."""
    from kit.broker import FillModel
    from kit.store import Store, strategies, users
    from tests.fixtures.daemon import EthFilter, QuarterTrend
    from tests.test_daemon_kill import _assert_equals_backtest, _wait_until_done

    cluster, frames = cluster_factory(sqlite_url, rows=900, start_row=250, speed=900)
    store = Store(sqlite_url)
    store.migrate()
    users.add(store, "alice", "pw-a")
    users.add(store, "bob", "pw-b")
    model, next_open = FillModel(fees=0.001, slippage=0.0005), FillModel(fees=0.001, fill="next_open")
    plan = {"alice": [(EthFilter(), model), (QuarterTrend(fast=3, slow=8, trend=4, short=True), next_open)],
            "bob": [(EthFilter(), model), (QuarterTrend(fast=3, slow=8, trend=4), model)]}  # fmt: skip
    first = int(frames["BTCUSDT"].index[0].value // 1_000_000)
    ids: dict[str, list] = {}
    for user, items in plan.items():
        for i, (strat, m) in enumerate(items):
            rec = strategies.upsert(store, user, name=f"multi-{i}", class_path=type(strat).path, params=strat.params,
                                    symbol="BTCUSDT", interval="1m", broker=m.to_dict(), start_time=first)  # fmt: skip
            ids.setdefault(user, []).append((rec.id, strat))
    cluster.exchange_start()
    cluster.daemon_start()
    st = cluster.status()
    streams = {(s["symbol"], s["interval"]): (s["groups"], s["read_by_groups"]) for s in st["stream_detail"]}
    # EthFilter once for both users; the extra streams are served for the groups that read them
    assert streams == {("BTCUSDT", "1m"): (3, 0), ("ETHUSDT", "5m"): (0, 1), ("BTCUSDT", "15m"): (0, 2)}
    before = st["fills"]
    wait_for(lambda: cluster.status()["fills"] > before, 60, "a fill")
    cluster.daemon_kill()
    time.sleep(1.0)  # candles of every stream close while it is down
    cluster.daemon_start()
    _wait_until_done(cluster, store, frames, [sid for items in ids.values() for sid, _ in items], timeout=180)
    assert cluster.daemon_term() == 0
    _assert_equals_backtest(store, ids, frames)
    store.dispose()
