"""The market layer: intervals, candle files and aggregation on real data."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from kit.errors import ConfigError, DataError
from kit.market import Candle, bucket_start, interval_ms, validate_interval, validate_symbol
from kit.market.aggregate import resample
from kit.market.files import count_gaps, read_candles, scan, to_ms
from kit.market.intervals import INTERVALS, interval_for_ms, next_open
from kit.market.times import iso, parse_ms


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def test_interval_lengths() -> None:
    assert interval_ms("1s") == 1_000
    assert interval_ms("1m") == 60_000
    assert interval_ms("15m") == 900_000
    assert interval_ms("4h") == 14_400_000
    assert interval_ms("1w") == 604_800_000
    assert len(INTERVALS) == 16


@pytest.mark.parametrize("bad", ["1H", "2m", "", "1y", "60s"])
def test_unknown_interval_is_named(bad: str) -> None:
    with pytest.raises(ConfigError, match="unknown interval"):
        validate_interval(bad)


def test_month_has_no_fixed_length() -> None:
    with pytest.raises(ConfigError, match="1M"):
        interval_ms("1M")


def test_buckets_align_like_binance() -> None:
    t = ms(2025, 5, 21, 13, 47, 12)
    assert bucket_start(t, "1m") == ms(2025, 5, 21, 13, 47)
    assert bucket_start(t, "15m") == ms(2025, 5, 21, 13, 45)
    assert bucket_start(t, "4h") == ms(2025, 5, 21, 12)
    assert bucket_start(t, "1d") == ms(2025, 5, 21)
    # Binance weeks open on Monday 00:00 UTC; 2025-05-21 was a Wednesday.
    assert bucket_start(t, "1w") == ms(2025, 5, 19)
    assert bucket_start(t, "1M") == ms(2025, 5, 1)
    assert next_open(ms(2025, 12, 1), "1M") == ms(2026, 1, 1)
    assert next_open(ms(2025, 5, 19), "1w") == ms(2025, 5, 26)


def test_symbols_are_normalised_and_checked() -> None:
    assert validate_symbol("btcusdt") == "BTCUSDT"
    with pytest.raises(ConfigError, match="invalid symbol"):
        validate_symbol("BTC/USDT")


def test_candle_validity() -> None:
    assert Candle(0, 10.0, 11.0, 9.0, 10.5, 1.0).is_valid()
    assert not Candle(0, 10.0, 11.0, 9.0, float("nan"), 1.0).is_valid()
    assert not Candle(0, 10.0, 9.5, 9.0, 10.5, 1.0).is_valid()  # high below close
    assert not Candle(0, 10.0, 11.0, 9.0, 10.5, -1.0).is_valid()


def test_sample_files_are_scanned_and_read(sample_dir) -> None:
    files = {(f.symbol, f.interval) for f in scan(sample_dir)}
    assert {("BTCUSDT", "1m"), ("ETHUSDT", "1m"), ("ETHUSDT", "1h")} <= files
    frame = read_candles(sample_dir / "ETHUSDT_1h_20230101_20240110.csv.gz")
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame.index.name == "open_time" and str(frame.index.tz) == "UTC"
    assert (frame.dtypes == np.float64).all()
    assert len(frame) == 8996
    assert count_gaps(frame, "1h") == 1  # the README's one real missing hour


def test_unsorted_file_is_refused(tmp_path) -> None:
    p = tmp_path / "X_1m_20250101_20250102.csv"
    p.write_text("open_time,open,high,low,close,volume\n120000,1,1,1,1,1\n60000,1,1,1,1,1\n")
    with pytest.raises(DataError, match="not sorted"):
        read_candles(p)


def test_missing_folder_is_a_data_error(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        scan(tmp_path / "nope")


def test_resampled_1m_equals_binance_1h(shared_data_dir) -> None:
    """1m candles aggregated to 1h equal Binance's own 1h candles where the files overlap."""
    m1 = read_candles(shared_data_dir / "ETHUSDT_1m_20230316_20230501.csv.gz")
    h1 = read_candles(shared_data_dir / "ETHUSDT_1h_20230101_20240110.csv.gz")
    agg = resample(m1, "1m", "1h")
    common = agg.index.intersection(h1.index)[1:-1]
    assert len(common) > 1000
    pd.testing.assert_frame_equal(
        agg.loc[common, ["open", "high", "low", "close"]], h1.loc[common, ["open", "high", "low", "close"]]
    )
    np.testing.assert_allclose(agg.loc[common, "volume"], h1.loc[common, "volume"], rtol=1e-9)


def test_resample_keeps_outages(shared_data_dir) -> None:
    """The 80-minute halt (no 1m candle opens 12:40-13:59 UTC on 2023-03-24) leaves the five
    15m buckets 12:45-13:45 empty: a hole, nothing invented."""
    m1 = read_candles(shared_data_dir / "BTCUSDT_1m_20230316_20230501.csv.gz")
    day = m1.loc["2023-03-24 10:00":"2023-03-24 16:00"]
    m15 = resample(day, "1m", "15m")
    t = to_ms(m15.index)
    halted = (t >= ms(2023, 3, 24, 12, 45)) & (t < ms(2023, 3, 24, 14, 0))
    assert not halted.any()
    assert count_gaps(m15, "15m") == 5


def test_resample_refuses_impossible_targets() -> None:
    frame = pd.DataFrame(
        {"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1.0]},
        index=pd.DatetimeIndex([pd.Timestamp(0, unit="ms", tz="UTC")], name="open_time"),
    )
    with pytest.raises(DataError, match="cannot build 5m"):
        resample(frame, "3m", "5m")


# ----- one time parser ---------------------------------------------------------------------


NOON = ms(2025, 6, 1, 12, 0)


@pytest.mark.parametrize(
    "value",
    [
        "2025-06-01T12:00",
        "2025-06-01 12:00",
        "2025-06-01T12:00Z",
        "2025-06-01T14:00+02:00",
        datetime(2025, 6, 1, 12),
        datetime(2025, 6, 1, 12, tzinfo=UTC),
        pd.Timestamp("2025-06-01 12:00"),
        pd.Timestamp("2025-06-01 08:00", tz="America/New_York"),
        NOON,
        np.int64(NOON),
        float(NOON),
        np.float64(NOON),
    ],
    ids=repr,
)
def test_every_form_of_a_time_reads_as_the_same_ms_utc(value: object) -> None:
    assert parse_ms(value, "start") == NOON


def test_a_date_is_its_midnight_utc() -> None:
    from datetime import date

    assert parse_ms("2025-06-01", "start") == parse_ms(date(2025, 6, 1), "start") == ms(2025, 6, 1)


@pytest.mark.parametrize("bad", [True, "yesterday-ish", "", float("nan"), float("inf"), None, [1], pd.NaT])
def test_what_is_not_a_time_is_one_config_error_naming_the_argument(bad: object) -> None:
    hint = r"\(try 2025-06-01, 2025-06-01T12:00Z or ms"
    with pytest.raises(ConfigError, match=r"^until is not a date or time: .* " + hint):
        parse_ms(bad, "until")


def test_the_simulator_and_the_store_read_times_with_the_one_parser(sample_dir) -> None:
    from kit.data import load
    from kit.exchange import ExchangeSimulator

    for bad in ("yesterday-ish", float("nan")):
        with pytest.raises(ConfigError, match=r"^start is not a date or time"):
            ExchangeSimulator(data=sample_dir, start=bad)
        with pytest.raises(ConfigError, match=r"^start is not a date or time"):
            load("BTCUSDT", "1m", bad, "2025-06-02", offline=True)


def test_kit_writes_a_time_in_one_form_that_it_reads_back() -> None:
    assert iso(NOON) == "2025-06-01 12:00:00Z"
    assert parse_ms(iso(NOON + 59_999), "t") == NOON + 59_000  # whole seconds


def test_vectorised_buckets_equal_bucket_start_for_every_fixed_interval() -> None:
    from kit.market.aggregate import bucket_starts

    t = np.random.default_rng(7).integers(0, 2_000_000_000_000, 500).astype(np.int64)
    for interval in INTERVALS[:-1]:  # 1M has no fixed length
        assert bucket_starts(t, interval).tolist() == [bucket_start(int(x), interval) for x in t], interval
    assert bucket_start(ms(2025, 6, 5, 13), "1w") == ms(2025, 6, 2)  # a Thursday -> its Monday


def test_the_interval_of_a_candle_spacing_comes_from_the_one_interval_table() -> None:
    from kit.replay._replay import infer_interval

    for interval in INTERVALS[:-1]:
        assert interval_for_ms(interval_ms(interval)) == interval
        idx = pd.DatetimeIndex(
            [
                pd.Timestamp(bucket_start(ms(2025, 6, 2), interval) + k * interval_ms(interval), unit="ms", tz="UTC")
                for k in range(3)
            ]
        )
        assert infer_interval(idx) == interval  # the replay knew no 3d or 1w
    assert interval_for_ms(7 * 60_000) is None


def test_a_candle_file_with_an_impossible_row_is_refused_by_every_reader(sample_dir, tmp_path) -> None:
    from kit.exchange import ExchangeSimulator

    src = read_candles(sample_dir / "ETHUSDT_1h_20230101_20240110.csv.gz").iloc[:50].copy()
    src.iloc[7, src.columns.get_loc("close")] = 0.0
    out = src.copy()
    out.insert(0, "open_time", src.index.as_unit("ms").asi8)
    path = tmp_path / "ETHUSDT_1h_20230101_20230103.csv.gz"
    out.to_csv(path, index=False)
    needle = f"row 7 ({src.index[7]}): close=0.0: prices must be > 0"
    with pytest.raises(DataError, match=r"ETHUSDT_1h_20230101_20230103") as err:
        read_candles(path)
    assert needle in str(err.value)
    with pytest.raises(DataError) as err:
        ExchangeSimulator(data=tmp_path)  # would serve the zero close to every client
    assert needle in str(err.value)
