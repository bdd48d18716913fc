"""The REST client against the simulator: paging, rate limits (429 + Retry-After, used-weight header)."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from kit.errors import ExchangeError
from kit.exchange import ExchangeSimulator
from kit.feed import RestClient
from tests.fixtures.feed import assert_exactly_once_in_order, sample_slice


def _ms(ts: str) -> int:
    return int(pd.Timestamp(ts, tz="UTC").value // 1_000_000)


async def test_klines_range_pages_and_stops_at_the_clock():
    frame = sample_slice("BTCUSDT", "2025-06-01", "2025-06-02")
    async with ExchangeSimulator(data={("BTCUSDT", "1m"): frame}, speed=1.0, start="2025-06-01 23:30") as sim:
        client = RestClient(sim.rest_url)
        pages: list[int] = []
        got = await asyncio.to_thread(
            client.klines_range,
            "BTCUSDT",
            "1m",
            _ms("2025-06-01 00:00"),
            _ms("2025-06-02 00:00"),
            on_page=lambda n, _reached: pages.append(n),
        )
        one_page = await asyncio.to_thread(client.klines, "BTCUSDT", "1m", start_ms=_ms("2025-06-01 00:00"), limit=7)
    # 1000 per request; the second, short page ends at the exchange's clock with the forming
    # 23:30 candle, as Binance sends it (callers cut at the clock: kit.data and the feed do).
    assert pages == [1000, 411]
    assert got[-1].open_time == _ms("2025-06-01 23:30")
    assert got[-1].volume < frame.loc[pd.Timestamp("2025-06-01 23:30", tz="UTC"), "volume"], "still forming"
    assert_exactly_once_in_order([tuple(c) for c in got[:-1]], frame)
    assert [c.open_time for c in one_page] == [_ms("2025-06-01 00:00") + i * 60_000 for i in range(7)]


async def test_rate_limit_429_honours_retry_after(btc_eth_1m):
    slept: list[float] = []
    async with ExchangeSimulator(data=btc_eth_1m, speed=1.0, start="2025-06-01 07:30", weight_limit=4) as sim:
        client = RestClient(sim.rest_url, max_retries=2, sleep=slept.append)
        for _ in range(2):  # weight 2 each: the limit is reached
            await asyncio.to_thread(client.klines, "BTCUSDT", "1m", limit=5)
        with pytest.raises(ExchangeError, match="rate-limiting") as err:
            await asyncio.to_thread(client.klines, "BTCUSDT", "1m", limit=5)
        http_429 = sim.stats()["http_429"]
    assert err.value.status == 429
    assert http_429 == 3 and client.rate_limited == 3
    assert len(slept) == 2 and all(1 <= s <= 60 for s in slept), slept


async def test_used_weight_header_slows_down_before_the_limit(btc_eth_1m):
    slept: list[float] = []
    async with ExchangeSimulator(data=btc_eth_1m, speed=1.0, start="2025-06-01 07:30", weight_limit=6000) as sim:
        client = RestClient(sim.rest_url, weight_limit=10, sleep=slept.append)
        for _ in range(5):
            await asyncio.to_thread(client.klines, "BTCUSDT", "1m", limit=5)
        assert sim.stats()["http_429"] == 0
    # 4 requests of weight 2 reach 8 of 10 (the server's header says so); the 5th would pass 90 %.
    assert len(slept) == 1 and 0 < slept[0] <= 61
