"""The simulator's REST API over real sockets: klines semantics, errors, weight limit, no future candles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kit.market.files import read_candles, to_ms
from tests.fixtures.exchange import http_get, small_frames

MIN = 60_000


def _ms(frame: pd.DataFrame) -> np.ndarray:
    return to_ms(frame.index)


async def test_klines_rows_are_binance_arrays_equal_to_the_file(simulator, sample_frames):
    frame = small_frames(sample_frames)[("BTCUSDT", "1m")]
    t = _ms(frame)
    now = int(t[1500]) + 30_000  # half-way through candle 1500
    sim = await simulator(start=now, paused=True)
    status, headers, rows = await http_get(f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=5")
    assert status == 200
    assert headers["X-MBX-USED-WEIGHT-1M"] == "2"
    assert [r[0] for r in rows] == [int(x) for x in t[1496:1501]]
    for r in rows:
        assert len(r) == 12
        assert all(isinstance(r[i], str) for i in (1, 2, 3, 4, 5, 7, 9, 10, 11))
        assert r[6] == r[0] + MIN - 1
        assert r[8] == 0
    for r in rows[:-1]:  # closed candles: exactly the file's values
        src = frame.loc[pd.Timestamp(r[0], unit="ms", tz="UTC")]
        assert [float(x) for x in r[1:6]] == [src.open, src.high, src.low, src.close, src.volume]
        o, h, lo, c, v = (float(x) for x in r[1:6])
        assert float(r[7]) == pytest.approx(v * (o + h + lo + c) / 4, rel=1e-12)
    # The last element is the forming candle, as of now: half its volume, inside its final range.
    forming = rows[-1]
    src = frame.loc[pd.Timestamp(forming[0], unit="ms", tz="UTC")]
    assert float(forming[5]) == pytest.approx(src.volume / 2, rel=1e-7)
    assert float(forming[1]) == src.open
    assert src.low <= float(forming[3]) <= float(forming[4]) <= float(forming[2]) <= src.high


async def test_klines_start_end_limit_semantics(simulator, sample_frames):
    frame = small_frames(sample_frames)[("BTCUSDT", "1m")]
    t = [int(x) for x in _ms(frame)]
    sim = await simulator(start=t[2000], paused=True)  # exactly at an open: candle 2000 has not formed yet
    base = f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m"
    _, _, rows = await http_get(base)
    assert len(rows) == 500 and rows[-1][0] == t[1999]  # default limit, most recent, all closed
    _, _, rows = await http_get(f"{base}&startTime={t[10]}&limit=3")
    assert [r[0] for r in rows] == t[10:13]  # the oldest from startTime
    _, _, rows = await http_get(f"{base}&startTime={t[10] - 1}&limit=2")
    assert [r[0] for r in rows] == t[10:12]
    _, _, rows = await http_get(f"{base}&endTime={t[100]}&limit=4")
    assert [r[0] for r in rows] == t[97:101]  # the most recent up to endTime
    _, _, rows = await http_get(f"{base}&startTime={t[5]}&endTime={t[7]}")
    assert [r[0] for r in rows] == t[5:8]
    _, _, rows = await http_get(f"{base}&startTime={t[0]}&limit=1000")
    assert [r[0] for r in rows] == t[0:1000]


async def test_klines_never_return_the_future(simulator, sample_frames):
    frame = small_frames(sample_frames)[("BTCUSDT", "1m")]
    t = [int(x) for x in _ms(frame)]
    now = t[1200] + 45_000
    sim = await simulator(start=now, paused=True)
    base = f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT"
    _, _, rows = await http_get(f"{base}&interval=1m&startTime={t[1201]}")
    assert rows == []  # opens after now: not there yet
    _, _, rows = await http_get(f"{base}&interval=1m&startTime={t[1190]}&limit=1000")
    assert rows[-1][0] == t[1200] and all(r[0] < now for r in rows)
    assert all(r[6] < now for r in rows[:-1])
    # Every aggregated interval: closed candles closed before now, at most one forming candle, last.
    for interval in ("3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w"):
        status, _, rows = await http_get(f"{base}&interval={interval}&limit=1000")
        assert status == 200, interval
        assert rows, interval
        assert all(r[6] < now for r in rows[:-1]), interval
        assert rows[-1][0] < now, interval
        if rows[-1][6] >= now:  # forming: built from closed 1m candles plus the forming one
            src = frame[(frame.index >= pd.Timestamp(rows[-1][0], unit="ms", tz="UTC"))]
            src = src[src.index <= pd.Timestamp(now, unit="ms", tz="UTC")]
            assert float(rows[-1][1]) == src.open.iloc[0], interval
            assert float(rows[-1][2]) <= src.high.max() and float(rows[-1][3]) >= src.low.min(), interval
            assert float(rows[-1][5]) < src.volume.sum(), interval
    # Let the clock run; the previously forming candle is now closed and equals the file.
    sim.resume()
    await sim.wait_until(t[1202])
    _, _, rows = await http_get(f"{base}&interval=1m&startTime={t[1200]}&limit=1")
    src = frame.iloc[1200]
    assert [float(x) for x in rows[0][1:6]] == [src.open, src.high, src.low, src.close, src.volume]


async def test_klines_errors(simulator):
    sim = await simulator(paused=True)
    base = f"{sim.rest_url}/api/v3/klines"
    cases = [
        ("?interval=1m", -1102, "symbol"),
        ("?symbol=BTCUSDT", -1102, "interval"),
        ("?symbol=DOGEUSDT&interval=1m", -1121, "Invalid symbol"),
        ("?symbol=btcusdt&interval=1m", -1100, "symbol"),
        ("?symbol=BTCUSDT&interval=2m", -1120, "Invalid interval"),
        ("?symbol=BTCUSDT&interval=1s", -1120, "Invalid interval"),  # finer than the data: not served
        ("?symbol=BTCUSDT&interval=1m&startTime=abc", -1100, "startTime"),
        ("?symbol=BTCUSDT&interval=1m&limit=-5", -1100, "limit"),
        ("?symbol=BTCUSDT&interval=1m&limit=1001", -1130, "limit"),
        ("?symbol=BTCUSDT&interval=1m&limit=0", -1130, "limit"),
        ("?symbol=BTCUSDT&interval=1m&startTime=20&endTime=10", -1023, "Start time"),
        ("?symbol=BTCUSDT&symbol=ETHUSDT&interval=1m", -1101, "Duplicate"),
    ]
    for query, code, words in cases:
        status, _headers, body = await http_get(base + query)
        assert status == 400, query
        assert body["code"] == code, query
        assert words in body["msg"], query
        assert set(body) == {"code", "msg"}
    status, _, body = await http_get(f"{sim.rest_url}/api/v3/nothing")
    assert status == 404


async def test_ping_time_exchange_info(simulator):
    sim = await simulator(paused=True)
    status, _, body = await http_get(f"{sim.rest_url}/api/v3/ping")
    assert (status, body) == (200, {})
    _, _, body = await http_get(f"{sim.rest_url}/api/v3/time")
    assert body == {"serverTime": sim.now_ms()} and body["serverTime"] == sim.start_ms
    _, _, info = await http_get(f"{sim.rest_url}/api/v3/exchangeInfo")
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
    btc = info["symbols"][0]
    assert (btc["status"], btc["baseAsset"], btc["quoteAsset"]) == ("TRADING", "BTC", "USDT")
    assert {f["filterType"] for f in btc["filters"]} >= {"PRICE_FILTER", "LOT_SIZE"}
    assert "1m" in btc["kitIntervals"] and "1w" in btc["kitIntervals"] and "1s" not in btc["kitIntervals"]
    _, _, one = await http_get(f"{sim.rest_url}/api/v3/exchangeInfo?symbol=ETHUSDT")
    assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]
    status, _, err = await http_get(f"{sim.rest_url}/api/v3/exchangeInfo?symbol=XRPUSDT")
    assert status == 400 and err["code"] == -1121


async def test_weight_limit_answers_429_with_retry_after(simulator):
    sim = await simulator(paused=True, weight_limit=10)
    url = f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1"
    for i in range(5):  # klines weigh 2: 5 x 2 = 10 fits
        status, headers, _ = await http_get(url)
        assert status == 200
        assert headers["X-MBX-USED-WEIGHT-1M"] == str(2 * (i + 1))
    status, headers, body = await http_get(url)
    assert status == 429
    assert body["code"] == -1003 and "request weight" in body["msg"]
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["X-MBX-USED-WEIGHT-1M"] == "10"
    assert sim.stats()["http_429"] == 1


def _aggregate_check(served: list, expected: pd.DataFrame) -> None:
    assert [r[0] for r in served] == [int(x) for x in _ms(expected)]
    got = np.array([[float(x) for x in r[1:6]] for r in served])
    want = expected[["open", "high", "low", "close", "volume"]].to_numpy()
    assert np.array_equal(got[:, :4], want[:, :4])
    np.testing.assert_allclose(got[:, 4], want[:, 4], rtol=1e-11, atol=1e-8)


async def test_aggregated_hours_equal_the_real_1h_file_and_outages_stay(simulator, shared_data_dir):
    """1m data from March 2023 (with the 80-minute halt of 2023-03-24) served as 1h and 5m."""
    m1 = read_candles(shared_data_dir / "BTCUSDT_1m_20230316_20230501.csv.gz")
    m1 = m1["2023-03-23":"2023-03-25"]
    h1 = read_candles(shared_data_dir / "BTCUSDT_1h_20170817_20240421.csv.gz")["2023-03-23":"2023-03-25"]
    end = int(_ms(m1)[-1]) + MIN
    sim = await simulator(data={("BTCUSDT", "1m"): m1}, start=end, paused=True)
    first = int(_ms(m1)[0])
    _, _, hours = await http_get(
        f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1h&startTime={first}&limit=1000"
    )
    _aggregate_check(hours, h1)
    # The halt: no 1h candle at 13:00 (the 1h file has none either), no 1m/5m candle 12:40-13:59.
    halt = pd.Timestamp("2023-03-24 12:40", tz="UTC")
    assert pd.Timestamp("2023-03-24 13:00", tz="UTC") not in h1.index
    start = int(halt.value // 1_000_000) - 10 * MIN
    _, _, mins = await http_get(f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={start}&limit=12")
    times = [pd.Timestamp(r[0], unit="ms", tz="UTC") for r in mins]
    assert times[9] == pd.Timestamp("2023-03-24 12:39", tz="UTC")
    assert times[10] == pd.Timestamp("2023-03-24 14:00", tz="UTC")
    _, _, fives = await http_get(f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=5m&startTime={start}&limit=5")
    times = [pd.Timestamp(r[0], unit="ms", tz="UTC").strftime("%H:%M") for r in fives]
    assert times == ["12:30", "12:35", "14:00", "14:05", "14:10"]
    # Every interval matches kit.market.aggregate.resample of the same 1m data.
    from kit.market.aggregate import resample

    for interval in ("3m", "15m", "4h", "1d"):
        _, _, served = await http_get(
            f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval={interval}&startTime=0&limit=1000"
        )
        _aggregate_check(served, resample(m1, "1m", interval).iloc[:1000])
