"""kit.backtest.sweep over several candle streams (issue 15): one tidy table, each stream's rows its own sweep."""

from __future__ import annotations

import pandas as pd
import pytest

import kit.backtest as bt
from kit.errors import DataError, InputError
from kit.market.files import read_candles
from kit.strategies import EmaCross

GRID = {"fast": [5, 12, 30], "slow": [20, 50]}


@pytest.fixture(scope="module")
def streams(shared_data_dir) -> dict:
    btc15 = read_candles(shared_data_dir / "BTCUSDT_15m_20230401_20240409.csv.gz").iloc[:3000]
    eth15 = read_candles(shared_data_dir / "ETHUSDT_15m_20230401_20240409.csv.gz").iloc[:3000]
    eth1h = read_candles(shared_data_dir / "ETHUSDT_1h_20230101_20240110.csv.gz").iloc[:3000]
    return {"BTCUSDT": btc15, ("ETHUSDT", "15m"): eth15, ("ETHUSDT", "1h"): eth1h}


def test_a_sweep_over_several_symbols_and_intervals_is_one_table_of_each_streams_own_sweep(streams):
    table = bt.sweep(EmaCross, streams, GRID, progress=False)
    assert list(table.columns[:4]) == ["symbol", "interval", "fast", "slow"]
    assert table.attrs["streams"] == [("BTCUSDT", "15m"), ("ETHUSDT", "15m"), ("ETHUSDT", "1h")]
    assert table.attrs["skipped"] == 1  # fast=30, slow=20, once per grid, not once per stream
    assert len(table) == 3 * 5
    for (symbol, interval), frame in zip(table.attrs["streams"], streams.values(), strict=True):
        mine = table[(table.symbol == symbol) & (table.interval == interval)].drop(columns=["symbol", "interval"])
        alone = bt.sweep(EmaCross, frame, GRID, progress=False)
        pd.testing.assert_frame_equal(mine.reset_index(drop=True), alone, check_exact=True)
    # the tidy shape answers "which set is best on every stream" in one groupby
    worst = table.groupby(["fast", "slow"])["sharpe"].min()
    assert len(worst) == 5


def test_a_list_of_parameter_sets_is_swept_on_every_stream_even_from_a_generator(streams):
    sets = ({"fast": f, "slow": 40} for f in (5, 10))
    table = bt.sweep(EmaCross, streams, sets, progress=False)
    assert len(table) == 6 and list(table.fast) == [5, 10] * 3


def test_bad_streams_are_one_line_errors_naming_the_stream(streams):
    with pytest.raises(InputError, match="empty mapping"):
        bt.sweep(EmaCross, {}, GRID, progress=False)
    with pytest.raises(InputError, match=r"symbol or \(symbol, interval\), got 42"):
        bt.sweep(EmaCross, {42: streams["BTCUSDT"]}, GRID, progress=False)
    with pytest.raises(InputError, match="unknown interval '7m'"):
        bt.sweep(EmaCross, {("BTCUSDT", "7m"): streams["BTCUSDT"]}, GRID, progress=False)
    with pytest.raises(InputError, match="the same stream twice"):
        bt.sweep(EmaCross, {"BTCUSDT": streams["BTCUSDT"], ("BTCUSDT", "15m"): streams["BTCUSDT"]}, GRID)
    with pytest.raises(DataError, match=r"data\['ETHUSDT'\] lacks candle columns"):
        bt.sweep(EmaCross, {"BTCUSDT": streams["BTCUSDT"], "ETHUSDT": streams["BTCUSDT"][["close"]]}, GRID)
