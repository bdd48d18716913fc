"""kit.replay's API and the `kit replay` command."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from kit.errors import ConfigError, DataError
from kit.market.files import read_candles
from kit.replay import infer_interval, replay, replay_async
from kit.strategies import EmaCross, RsiReversion


@pytest.fixture(scope="module")
def eth(sample_dir):
    return read_candles(sample_dir / "ETHUSDT_1h_20230101_20240110.csv.gz").iloc[:1500]


def test_replay_from_a_running_event_loop_and_async(eth):
    s = EmaCross(fast=5, slow=20)

    async def inside_a_loop():
        # as in a notebook: replay() must work although a loop is running
        run_sync = replay(s, eth, symbol="ETHUSDT")
        run_async = await replay_async([s], eth, symbol="ETHUSDT")
        return run_sync, run_async

    a, b = asyncio.run(inside_a_loop())
    assert a.candles == b.candles == len(eth) and a.interval == "1h"
    assert len(a[0].trades) > 3
    assert a[0].trades.equals(b[0].trades)
    assert [f.time_ms for f in a[0].fills] == [f.time_ms for f in b[0].fills]
    assert all(sig.time_ms in {int(t.value // 1_000_000) for t in eth.index} for sig in a[0].signals)


def test_replay_bad_input(eth):
    with pytest.raises(ConfigError, match="Strategy"):
        replay("EmaCross", eth)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="close"):
        replay(EmaCross(), eth.drop(columns=["close"]))
    with pytest.raises(DataError, match="interval"):
        infer_interval(eth.index[:1])
    assert infer_interval(eth.index) == "1h"


def _kit(*args, cwd=None):
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "")}
    return subprocess.run(
        [sys.executable, "-m", "kit", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )


def test_cli_replays_and_checks_parity(tmp_path, eth):
    path = tmp_path / "ETHUSDT_1h_20230101_20230304.csv.gz"
    out = eth.copy()
    out.insert(0, "open_time", eth.index.as_unit("ms").asi8)
    out.to_csv(path, index=False)
    r = _kit("replay", str(path), "-s", "RsiReversion", "-p", "period=7", "-p", "lower=25", "--check", "--json")
    assert r.returncode == 0, r.stderr
    assert "parity OK" in r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    from kit.backtest import run

    want = run(RsiReversion(period=7, lower=25), eth).trades
    assert len(lines) == len(want) > 0
    bad = _kit("replay", str(path), "-p", "fast=50", "-p", "slow=10")
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "fast" in bad.stderr
    missing = _kit("replay", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "candle file" in missing.stderr


def test_replay_of_a_strategy_over_several_streams_refuses_missing_or_other_candles(shared_data_dir):
    from kit.market.aggregate import resample
    from kit.strategies import TrendFilter
    from tests.fixtures.daemon import EthFilter

    f5 = read_candles(shared_data_dir / "BTCUSDT_5m_20210101_20210513.csv.gz").iloc[:600]
    with pytest.raises(ConfigError, match=r"stream 'eth' \(ETHUSDT 5m\).*streams=\{'eth': frame\}"):
        replay(EthFilter(), f5, symbol="BTCUSDT")
    real = read_candles(shared_data_dir / "BTCUSDT_1h_20170817_20240421.csv.gz")
    real = real[(real.index >= f5.index[0]) & (real.index <= f5.index[-1])]
    with pytest.raises(ConfigError, match="aggregated from the 5m candles"):  # the real 1h file's volumes differ
        replay(TrendFilter(), f5, symbol="BTCUSDT", streams={"h1": real})
    with pytest.raises(ConfigError, match="own stream"):
        replay(TrendFilter(), resample(f5, "5m", "1h"), symbol="BTCUSDT", interval="1h")
    run = replay(TrendFilter(trend=5), f5, symbol="BTCUSDT", streams={"h1": resample(f5, "5m", "1h")})
    assert run.candles == len(f5)


def test_cli_replays_a_strategy_over_two_streams_and_checks_parity(tmp_path, shared_data_dir):
    f5 = read_candles(shared_data_dir / "BTCUSDT_5m_20210101_20210513.csv.gz").iloc[8_000:11_000]  # an outage
    path = tmp_path / "BTCUSDT_5m_20210128_20210207.csv.gz"
    out = f5.copy()
    out.insert(0, "open_time", f5.index.as_unit("ms").asi8)
    out.to_csv(path, index=False)
    r = _kit("replay", str(path), "-s", "TrendFilter", "-p", "trend=20", "--check")
    assert r.returncode == 0, r.stderr
    assert "parity OK" in r.stderr and "0 trades" not in r.stderr
