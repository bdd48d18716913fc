"""kit.data.load: local files, aggregation, REST through the simulator, the cache and its gaps, errors."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import pandas as pd
import pytest

from kit.data import gaps, load
from kit.errors import ConfigError, DataError, DataWarning, ExchangeError, KitError
from kit.exchange import ExchangeSimulator
from kit.market.aggregate import resample
from kit.market.files import read_candles
from tests.fixtures.feed import OUTAGE_END, OUTAGE_START, sample_slice

MS = 1_000_000


def _ms(ts: str | pd.Timestamp) -> int:
    return int(pd.Timestamp(ts, tz="UTC").value // MS) if isinstance(ts, str) else int(ts.value // MS)


def _check_frame(df: pd.DataFrame) -> None:
    assert isinstance(df.index, pd.DatetimeIndex) and str(df.index.tz) == "UTC"
    assert df.index.name == "open_time"
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert all(str(t) == "float64" for t in df.dtypes)
    assert df.index.is_monotonic_increasing and df.index.is_unique


def test_offline_from_the_sample_files(sample_dir):
    df = load("BTCUSDT", "1m", "2025-06-01", "2025-06-02", progress=False, offline=True)
    _check_frame(df)
    want = sample_slice("BTCUSDT", "2025-06-01", "2025-06-02")
    assert len(df) == 1440
    pd.testing.assert_frame_equal(df, want, check_index_type=False, check_freq=False, check_exact=True)


def test_coarser_interval_is_aggregated_from_finer_local_data(sample_dir):
    df = load("BTCUSDT", "1h", "2025-06-01 00:30", "2025-06-03", progress=False, offline=True)
    _check_frame(df)
    want = resample(sample_slice("BTCUSDT", "2025-06-01 01:00", "2025-06-03"), "1m", "1h")
    assert df.index[0] == pd.Timestamp("2025-06-01 01:00", tz="UTC"), "start is the first open >= start"
    assert len(df) == 47
    pd.testing.assert_frame_equal(df, want, check_index_type=False, check_freq=False)


def test_a_file_of_the_exact_interval_keeps_its_real_gap(sample_dir):
    df = load("ETHUSDT", "1h", "2023-03-01", "2023-12-01", progress=False, offline=True)
    _check_frame(df)
    src = read_candles(sample_dir / "ETHUSDT_1h_20230101_20240110.csv.gz").loc["2023-03-01":"2023-11-30 23:00"]
    pd.testing.assert_frame_equal(df, src, check_index_type=False, check_freq=False)
    assert len(gaps(df, "1h")) == 1


@pytest.fixture
def no_local_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "nofiles"
    empty.mkdir()
    monkeypatch.setenv("KIT_REPLAY_DATA", str(empty))


async def test_rest_fetch_caches_candles_and_remembers_real_gaps(outage_1m, no_local_files, tmp_path):
    src = outage_1m[("BTCUSDT", "1m")]
    start, end = "2023-03-24 10:00", "2023-03-24 15:00"
    async with ExchangeSimulator(data=outage_1m, speed=1.0, start="2023-03-24 15:30") as sim:
        df = await asyncio.to_thread(load, "BTCUSDT", "1m", start, end, progress=False, rest_url=sim.rest_url)
        requests_first = sim.stats()["http_requests"]
        # Beyond the exchange's clock: only closed candles come back, the forming one does not.
        tail = await asyncio.to_thread(
            load, "BTCUSDT", "1m", "2023-03-24 15:00", "2023-03-24 17:00", progress=False, rest_url=sim.rest_url
        )
        url = sim.rest_url
    _check_frame(df)
    want = src.loc[pd.Timestamp(start, tz="UTC") : pd.Timestamp(end, tz="UTC") - pd.Timedelta("1min")]
    pd.testing.assert_frame_equal(df, want, check_index_type=False, check_freq=False)
    assert gaps(df, "1m") == [(_ms(OUTAGE_START), _ms(OUTAGE_END))]
    assert requests_first >= 2  # server time + at least one page (300 candles - 80 missing)
    assert tail.index[-1] == pd.Timestamp("2023-03-24 15:29", tz="UTC") and len(tail) == 30
    cache = tmp_path / "kitdata" / "cache" / "BTCUSDT"
    assert (cache / "1m.parquet").exists() and (cache / "1m.json").exists()

    # The exchange is gone: the cached range (outage included) still loads, nothing refetched.
    again = await asyncio.to_thread(load, "BTCUSDT", "1m", start, end, progress=False, rest_url=url)
    pd.testing.assert_frame_equal(again, df)
    # 1h from the cached 1m: the outage hour has no candle at all, the partial hours keep theirs.
    hourly = await asyncio.to_thread(load, "BTCUSDT", "1h", start, end, progress=False, rest_url=url)
    assert list(hourly.index.hour) == [10, 11, 12, 14]
    pd.testing.assert_frame_equal(hourly, resample(want, "1m", "1h"), check_index_type=False, check_freq=False)
    # Outside the cache, with the exchange gone: a one-line error.
    with pytest.raises(ExchangeError, match="cannot reach"):
        await asyncio.to_thread(load, "BTCUSDT", "1m", "2023-03-24 09:00", end, progress=False, rest_url=url)


async def test_unknown_symbol_on_the_exchange(outage_1m, no_local_files):
    async with ExchangeSimulator(data=outage_1m, speed=1.0, start="2023-03-24 15:30") as sim:
        with pytest.raises(DataError, match="unknown symbol 'DOGEUSDT'"):
            await asyncio.to_thread(
                load, "DOGEUSDT", "1m", "2023-03-24 10:00", "2023-03-24 11:00", progress=False, rest_url=sim.rest_url
            )


def test_argument_errors_are_kit_errors(free_port, no_local_files):
    with pytest.raises(ConfigError, match="unknown interval"):
        load("BTCUSDT", "7m", "2025-06-01", "2025-06-02")
    with pytest.raises(ConfigError, match="must be before"):
        load("BTCUSDT", "1m", "2025-06-02", "2025-06-01")
    with pytest.raises(ConfigError, match="not a date"):
        load("BTCUSDT", "1m", "yesterday-ish", "2025-06-01")
    with pytest.raises(ConfigError, match="invalid symbol"):
        load("BTC/USDT", "1m", "2025-06-01", "2025-06-02")
    with pytest.raises(ExchangeError, match="cannot reach") as err:
        load("BTCUSDT", "1m", "2025-06-01", "2025-06-02", progress=False, rest_url=f"http://127.0.0.1:{free_port}")
    assert isinstance(err.value, KitError) and "\n" not in str(err.value)


def test_load_refuses_a_candle_file_with_impossible_rows(sample_dir, tmp_path, monkeypatch):
    src = read_candles(sample_dir / "ETHUSDT_1h_20230101_20240110.csv.gz").iloc[:100].copy()
    src.iloc[40, src.columns.get_loc("high")] = src.iloc[40, src.columns.get_loc("low")] - 5.0
    src.iloc[70, src.columns.get_loc("volume")] = -1.0
    folder = tmp_path / "bad"
    folder.mkdir()
    out = src.reset_index()
    out["open_time"] = out["open_time"].astype("datetime64[ms, UTC]").astype("int64")
    out.to_csv(folder / "ETHUSDT_1h_20230101_20230105.csv.gz", index=False)
    monkeypatch.setenv("KIT_REPLAY_DATA", str(folder))
    with pytest.raises(DataError, match="high < low") as err:
        load("ETHUSDT", "1h", "2023-01-01", "2023-01-05", progress=False, offline=True)
    assert f"row 40 ({src.index[40]})" in str(err.value) and "2 bad rows" in str(err.value)


@pytest.mark.parametrize(
    ("symbol", "interval", "start", "end", "needles"),
    [
        ("DOGEUSDT", "1m", "2025-06-01", "2025-06-02", ["no DOGEUSDT 1m candles", "BTCUSDT 1m", "ETHUSDT 1h"]),
        ("BTCUSTD", "1h", "2025-06-01", "2025-06-02", ["no BTCUSTD 1h candles", "BTCUSDT 1m"]),
        (
            "BTCUSDT",
            "1m",
            "2026-01-01",
            "2026-01-02",
            ["no BTCUSDT 1m candles", "2025-05-20 00:00:00Z", "2025-08-18 18:28:00Z"],
        ),
        ("BTCUSDT", "1m", "2026-01-01", None, ["no BTCUSDT 1m candles", "2025-08-18 18:28:00Z"]),
        ("ETHUSDT", "1h", "2021-01-01", "2022-01-01", ["no ETHUSDT 1h candles", "2023-01-01 00:00:00Z"]),
    ],
    ids=["unknown symbol", "typo", "range past the files", "start past the files", "range before the files"],
)
def test_load_finding_nothing_offline_raises_naming_what_the_local_data_holds(symbol, interval, start, end, needles):
    with pytest.raises(DataError) as err:
        load(symbol, interval, start, end, progress=False, offline=True)
    msg = str(err.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_load_finding_nothing_with_the_exchange_down_raises(free_port, sample_dir):
    with pytest.raises(DataError, match="no DOGEUSDT 1m candles"):
        load("DOGEUSDT", "1m", "2025-06-01", progress=False, rest_url=f"http://127.0.0.1:{free_port}")


def test_load_warns_naming_the_covered_range_when_data_is_partial(sample_dir):
    with pytest.warns(DataWarning) as record:
        df = load("BTCUSDT", "1m", "2025-08-18", "2025-08-25", progress=False, offline=True)
    assert len(df) == 18 * 60 + 28 and len(record) == 1
    msg = str(record[0].message)
    assert "BTCUSDT 1m" in msg and "2025-08-18 00:00:00Z to 2025-08-18 18:28:00Z" in msg, msg
    assert "2025-08-25 00:00:00Z" in msg, msg
    assert record[0].filename == __file__  # points at the caller's line, not kit's


def test_load_fully_covered_or_with_real_outages_does_not_warn(sample_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load("BTCUSDT", "1m", "2025-06-01", "2025-06-02", progress=False, offline=True)
        df = load("ETHUSDT", "1h", "2023-03-01", "2023-12-01", progress=False, offline=True)
    assert len(gaps(df, "1h")) == 1  # a real outage inside the file is not missing data


async def test_load_past_the_exchange_clock_warns_and_before_it_finds_nothing(outage_1m, no_local_files):
    async with ExchangeSimulator(data=outage_1m, speed=1.0, start="2023-03-24 15:30") as sim:
        with pytest.warns(DataWarning, match="2023-03-24 15:30:00Z"):
            await asyncio.to_thread(
                load, "BTCUSDT", "1m", "2023-03-24 15:00", "2023-03-24 17:00", progress=False, rest_url=sim.rest_url
            )
        with pytest.raises(DataError, match="no BTCUSDT 1m candles"):
            await asyncio.to_thread(
                load, "BTCUSDT", "1m", "2023-03-25 00:00", "2023-03-26 00:00", progress=False, rest_url=sim.rest_url
            )


def test_load_without_an_end_offline_reaches_the_end_of_finer_local_data(sample_dir):
    # No 1h file for BTCUSDT: the 1m files are aggregated, and "up to the end of the local
    # data" must mean theirs (it used to mean "nothing", an empty frame)
    df = load("BTCUSDT", "1h", "2025-08-18", progress=False, offline=True)
    assert df.index[0] == pd.Timestamp("2025-08-18 00:00", tz="UTC")
    assert df.index[-1] == pd.Timestamp("2025-08-18 17:00", tz="UTC")  # 18:00 is not a whole hour yet


def test_load_of_several_symbols_returns_frames_aligned_on_one_index(shared_data_dir, tmp_path, monkeypatch):
    # BTC through the 2023-03-24 halt (1m files, aggregated to 1h); ETH 1h with that hour missing too,
    # and two more hours of its own taken out: outages that differ between the symbols
    eth = read_candles(shared_data_dir / "ETHUSDT_1h_20230101_20240110.csv.gz")
    own = pd.DatetimeIndex(["2023-03-24 03:00", "2023-03-24 20:00"], tz="UTC")
    eth = eth.drop(own)
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "BTCUSDT_1m_20230316_20230501.csv.gz").symlink_to(shared_data_dir / "BTCUSDT_1m_20230316_20230501.csv.gz")
    out = eth.copy()
    out.insert(0, "open_time", eth.index.as_unit("ms").asi8)
    out.to_csv(folder / "ETHUSDT_1h_20230101_20240110.csv.gz", index=False)
    monkeypatch.setenv("KIT_REPLAY_DATA", str(folder))
    args = (["btcusdt", "ETHUSDT"], "1h", "2023-03-24", "2023-03-25")
    btc = load("BTCUSDT", *args[1:], progress=False, offline=True)
    assert len(btc) == 23  # the halt's hour is missing
    inner = load(*args, progress=False, offline=True)
    assert list(inner) == ["BTCUSDT", "ETHUSDT"]
    assert inner["BTCUSDT"].index.equals(inner["ETHUSDT"].index) and len(inner["BTCUSDT"]) == 21
    assert not inner["ETHUSDT"].isna().any().any() and not inner["BTCUSDT"].index.isin(own).any()
    pd.testing.assert_frame_equal(inner["BTCUSDT"], btc.drop(own), check_freq=False)
    _check_frame(inner["ETHUSDT"])
    outer = load(*args, progress=False, offline=True, align="outer")
    assert outer["BTCUSDT"].index.equals(outer["ETHUSDT"].index) and len(outer["ETHUSDT"]) == 23
    assert outer["ETHUSDT"].loc[own, "close"].isna().all() and not outer["BTCUSDT"].isna().any().any()
    each = load(*args, progress=False, offline=True, align="none")
    assert (len(each["BTCUSDT"]), len(each["ETHUSDT"])) == (23, 21)
    with pytest.raises(ConfigError, match="align"):
        load(*args, progress=False, offline=True, align="left")
    with pytest.raises(ConfigError, match="twice"):
        load(["BTCUSDT", "btcusdt"], "1h", "2023-03-24", "2023-03-25", progress=False, offline=True)
