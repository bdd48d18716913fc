"""The simulator's WebSocket streams over real sockets: raw and combined, forming and final events, max speed."""

from __future__ import annotations

import asyncio
import json

import pandas as pd
import pytest
from websockets.asyncio.client import connect

from kit.market.aggregate import resample
from kit.market.files import to_ms
from tests.fixtures.exchange import recv_json, small_frames

MIN = 60_000


def _ohlcv(k: dict) -> list[float]:
    return [float(k[x]) for x in ("o", "h", "l", "c", "v")]


def _row(frame: pd.DataFrame, t: int) -> list[float]:
    r = frame.loc[pd.Timestamp(t, unit="ms", tz="UTC")]
    return [r.open, r.high, r.low, r.close, r.volume]


async def test_raw_stream_forming_updates_then_final_equal_to_the_file(simulator, sample_frames):
    frame = small_frames(sample_frames)[("BTCUSDT", "1m")]
    t = [int(x) for x in to_ms(frame.index)]
    sim = await simulator(start=t[1000] + 1000, speed=600, paused=True, max_update_rate=None)
    async with connect(f"{sim.ws_url}/ws/btcusdt@kline_1m", max_queue=None) as ws:
        sim.resume()
        events = []
        while True:
            ev = await recv_json(ws)
            events.append(ev)
            if ev["k"]["x"]:
                break
        nxt = await recv_json(ws)
    final = events[-1]
    forming = events[:-1]
    assert final["e"] == "kline" and final["s"] == "BTCUSDT"
    k = final["k"]
    assert (k["t"], k["T"], k["s"], k["i"], k["n"], k["x"]) == (t[1000], t[1000] + MIN - 1, "BTCUSDT", "1m", 0, True)
    assert final["E"] == t[1001]
    assert _ohlcv(k) == _row(frame, t[1000])  # exactly the file
    assert set(k) == {"t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"}
    assert all(isinstance(k[x], str) for x in ("o", "c", "h", "l", "v", "q", "V", "Q", "B"))
    # Forming updates: several, on 2 s boundaries of simulated time, never beyond the final range.
    assert len(forming) >= 5
    o, h, lo, _c, v = _row(frame, t[1000])
    last_v, last_e = 0.0, 0
    for ev in forming:
        fk = ev["k"]
        assert fk["x"] is False and fk["t"] == t[1000]
        assert ev["E"] % 2000 == 0 and t[1000] < ev["E"] < t[1001] and ev["E"] > last_e
        fo, fh, fl, fc, fv = _ohlcv(fk)
        assert fo == o and lo <= fl <= min(fo, fc) and max(fo, fc) <= fh <= h
        assert fv == pytest.approx(v * (ev["E"] - t[1000]) / MIN, rel=1e-7) and fv > last_v
        last_v, last_e = fv, ev["E"]
    # Then the next candle forms.
    assert nxt["k"]["t"] == t[1001] and nxt["k"]["x"] is False


async def test_forming_updates_are_capped_per_real_second(simulator, sample_frames):
    frame = small_frames(sample_frames)[("BTCUSDT", "1m")]
    t = [int(x) for x in to_ms(frame.index)]
    # Speed 60: a 1m candle lasts 1 s of real time; 2 s boundaries would be 30 updates, the cap is 10/s.
    sim = await simulator(start=t[1000], speed=60, paused=True, max_update_rate=10)
    async with connect(f"{sim.ws_url}/ws/btcusdt@kline_1m", max_queue=None) as ws:
        sim.resume()
        forming = []
        while True:
            ev = await recv_json(ws)
            if ev["k"]["x"]:
                break
            forming.append(ev)
    assert 1 <= len(forming) <= 11
    assert all(ev["E"] % 2000 == 0 for ev in forming)  # still on Binance's 2 s boundaries
    assert sorted({ev["E"] for ev in forming}) == [ev["E"] for ev in forming]


async def test_combined_stream_wraps_events_and_aggregates(simulator, sample_frames):
    frames = small_frames(sample_frames)
    btc, eth = frames[("BTCUSDT", "1m")], frames[("ETHUSDT", "1m")]
    t = [int(x) for x in to_ms(btc.index)]
    start = t[1000] + 4 * MIN + 58_000  # 2 s before a 5m close
    sim = await simulator(start=start, speed=60, paused=True)
    async with connect(f"{sim.ws_url}/stream?streams=btcusdt@kline_5m/ethusdt@kline_1m", max_queue=None) as ws:
        sim.resume()
        finals = {}
        while len(finals) < 2:
            msg = await recv_json(ws)
            assert set(msg) == {"stream", "data"}
            assert msg["stream"] in ("btcusdt@kline_5m", "ethusdt@kline_1m")
            assert msg["data"]["s"] == ("BTCUSDT" if msg["stream"].startswith("btc") else "ETHUSDT")
            if msg["data"]["k"]["x"]:
                finals[msg["stream"]] = msg["data"]["k"]
    five = resample(btc, "1m", "5m")
    k5 = finals["btcusdt@kline_5m"]
    assert k5["t"] == t[1000] and k5["T"] == t[1000] + 5 * MIN - 1 and k5["i"] == "5m"
    expected = five.loc[pd.Timestamp(t[1000], unit="ms", tz="UTC")]
    assert _ohlcv(k5)[:4] == [expected.open, expected.high, expected.low, expected.close]
    assert _ohlcv(k5)[4] == pytest.approx(expected.volume, rel=1e-12)
    k1 = finals["ethusdt@kline_1m"]
    assert _ohlcv(k1) == _row(eth, k1["t"])


async def test_max_speed_is_lossless_and_ordered_across_streams(simulator, sample_frames):
    frames = small_frames(sample_frames)
    btc, eth = frames[("BTCUSDT", "1m")], frames[("ETHUSDT", "1m")]
    sim = await simulator(speed="max", paused=True)
    start = sim.now_ms()
    streams = ["btcusdt@kline_1m", "btcusdt@kline_5m", "ethusdt@kline_1m"]
    expected = {
        "btcusdt@kline_1m": btc[btc.index >= pd.Timestamp(start, unit="ms", tz="UTC")],
        "ethusdt@kline_1m": eth[eth.index >= pd.Timestamp(start, unit="ms", tz="UTC")],
        "btcusdt@kline_5m": resample(btc[btc.index >= pd.Timestamp(start, unit="ms", tz="UTC")], "1m", "5m"),
    }
    total = sum(len(f) for f in expected.values())
    async with connect(f"{sim.ws_url}/stream?streams={'/'.join(streams)}", max_queue=None) as ws:
        sim.resume()
        got = [json.loads(await asyncio.wait_for(ws.recv(), 30)) for _ in range(total)]
    assert sim.stats()["events_final"] == total
    # Order: by event time, and within one simulated instant by stream name; every event final.
    keys = [(m["data"]["E"], m["stream"]) for m in got]
    assert keys == sorted(keys)
    assert all(m["data"]["k"]["x"] for m in got)
    for name, want in expected.items():
        ks = [m["data"]["k"] for m in got if m["stream"] == name]
        assert [k["t"] for k in ks] == [int(x) for x in to_ms(want.index)], name
        values = [_ohlcv(k) for k in ks]
        assert [v[:4] for v in values] == want[["open", "high", "low", "close"]].to_numpy().tolist(), name
        assert [v[4] for v in values] == pytest.approx(want["volume"].tolist(), rel=1e-12), name
    # The clock stopped at the end of the data; REST agrees nothing is left to come.
    assert sim.now_ms() == int(to_ms(btc.index)[-1]) + MIN


async def test_real_outage_stays_an_outage_on_the_wire(simulator, shared_data_dir):
    from kit.market.files import read_candles

    m1 = read_candles(shared_data_dir / "BTCUSDT_1m_20230316_20230501.csv.gz")["2023-03-24 10:00":"2023-03-24 15:59"]
    sim = await simulator(data={("BTCUSDT", "1m"): m1}, speed="max", start="2023-03-24 12:00", paused=True)
    streams = ["btcusdt@kline_1m", "btcusdt@kline_5m", "btcusdt@kline_1h"]
    async with connect(f"{sim.ws_url}/stream?streams={'/'.join(streams)}", max_queue=None) as ws:
        sim.resume()
        await sim.wait_until("2023-03-24 16:00", timeout=30)
        got = []
        while sim.stats()["queued"] or len(got) < sim.stats()["events_final"]:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))

    def opens(name: str) -> list[str]:
        return [
            pd.Timestamp(m["data"]["k"]["t"], unit="ms", tz="UTC").strftime("%H:%M") for m in got if m["stream"] == name
        ]

    minutes = opens("btcusdt@kline_1m")
    assert minutes[:40] == [f"12:{m:02d}" for m in range(40)]
    assert minutes[40] == "14:00" and len(minutes) == 40 + 120  # 12:40-13:59 never happened
    fives = opens("btcusdt@kline_5m")
    assert fives[7:10] == ["12:35", "14:00", "14:05"]
    assert opens("btcusdt@kline_1h") == ["12:00", "14:00", "15:00"]  # no 13:00 candle
    first_hour = next(m["data"]["k"] for m in got if m["stream"] == "btcusdt@kline_1h")
    assert float(first_hour["v"]) == pytest.approx(m1["2023-03-24 12:00":"2023-03-24 12:39"].volume.sum(), rel=1e-12)


async def test_switching_to_max_speed_mid_run_loses_nothing(simulator, sample_frames):
    frame = small_frames(sample_frames)[("BTCUSDT", "1m")]
    t = [int(x) for x in to_ms(frame.index)]
    sim = await simulator(speed=3000, update_every=0)
    async with connect(f"{sim.ws_url}/ws/btcusdt@kline_1m", max_queue=None) as ws:
        got = [await recv_json(ws), await recv_json(ws)]
        sim.set_speed("max")
        while got[-1]["k"]["t"] != t[-1]:
            got.append(await recv_json(ws))
    opens = [g["k"]["t"] for g in got]
    assert opens == t[t.index(opens[0]) :]
    assert all(g["k"]["x"] for g in got)
    sim.set_speed(600)  # and back: the clock runs again from where max speed left it
    assert sim.stats()["speed"] == 600 and sim.now_ms() >= t[-1] + MIN
