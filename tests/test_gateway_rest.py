"""The gateway's REST API over loopback against a real simulator.

Binance shapes, values equal to the exchange's and the batch indicators', 4xx that name the parameter.
"""

from __future__ import annotations

import math
import urllib.parse

import numpy as np
import pytest

from tests.fixtures.exchange import http_get
from tests.fixtures.gateway import running_gateway


def _q(**params: object) -> str:
    return urllib.parse.urlencode(params)


def _frame(rows: list[list]) -> dict[str, np.ndarray]:
    a = np.array([[float(x) for x in r[1:6]] for r in rows])
    return {"open_time": np.array([r[0] for r in rows]), "open": a[:, 0], "high": a[:, 1], "low": a[:, 2],
            "close": a[:, 3], "volume": a[:, 4]}  # fmt: skip


def _same(a: float | None, b: float) -> bool:
    return (a is None and math.isnan(b)) or (a is not None and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12))


async def test_klines_equal_the_exchanges_klines(simulator, tmp_path):
    sim = await simulator(speed=1.0, start="2025-05-21T10:00Z", paused=True)
    async with running_gateway(sim, tmp_path) as gw:
        for params in (
            {"symbol": "BTCUSDT", "interval": "1m", "limit": 100},
            {"symbol": "ETHUSDT", "interval": "5m", "limit": 7},
            {"symbol": "BTCUSDT", "interval": "1m", "startTime": sim.now_ms() - 3_600_000, "limit": 1000},
            {
                "symbol": "BTCUSDT",
                "interval": "1h",
                "startTime": sim.now_ms() - 86_400_000,
                "endTime": sim.now_ms() - 7_200_000,
            },
        ):
            st, _, ours = await http_get(f"{gw.base}/api/v1/klines?{_q(**params)}")
            st2, _, theirs = await http_get(f"{sim.rest_url}/api/v3/klines?{_q(**params)}")
            assert st == st2 == 200
            assert ours == theirs and len(ours) > 0


async def test_indicator_series_equal_the_batch_functions_on_the_same_candles(simulator, tmp_path):
    import kit.indicators as ki

    @ki.register("gw_test_range", window="period", replace=True)
    def gw_test_range(high, low, period=5):
        r = np.full(len(high), np.nan)
        if len(high) >= period:
            w = np.lib.stride_tricks.sliding_window_view
            r[period - 1 :] = w(high, period).max(1) - w(low, period).min(1)
        return r

    sim = await simulator(speed=1.0, start="2025-05-21T10:00Z", paused=True)
    async with running_gateway(sim, tmp_path) as gw:
        _, _, rows = await http_get(f"{sim.rest_url}/api/v3/klines?{_q(symbol='BTCUSDT', interval='1m', limit=300)}")
        frame = _frame(rows)
        for key in ("rsi(14)", "hma(20)", "macd(12,26,9)", "gw_test_range(5)", "ema(open,10)"):
            st, _, body = await http_get(
                f"{gw.base}/api/v1/indicator?{_q(symbol='BTCUSDT', interval='1m', spec=key, limit=300)}"
            )
            assert st == 200, body
            spec = ki.parse_spec(key)
            want = spec.batch(frame)
            assert body["spec"] == spec.key and body["columns"] == ["openTime", *want]
            assert [r[0] for r in body["rows"]] == [r[0] for r in rows]
            for j, name in enumerate(want, start=1):
                assert all(_same(r[j], w) for r, w in zip(body["rows"], want[name], strict=True)), (key, name)


async def test_price_and_24h_statistics_come_from_the_candles(simulator, tmp_path):
    sim = await simulator(speed=1.0, start="2025-05-21T10:00Z", paused=True)
    async with running_gateway(sim, tmp_path) as gw:
        _, _, day = await http_get(f"{sim.rest_url}/api/v3/klines?{_q(symbol='ETHUSDT', interval='1m', limit=1000)}")
        last = day[-1]
        st, _, price = await http_get(f"{gw.base}/api/v1/ticker/price?symbol=ETHUSDT")
        assert st == 200 and price["symbol"] == "ETHUSDT" and price["price"] == last[4]
        start = last[0] - 86_400_000 + 60_000
        _, _, a = await http_get(
            f"{sim.rest_url}/api/v3/klines?{_q(symbol='ETHUSDT', interval='1m', startTime=start, limit=1000)}"
        )
        more = _q(symbol="ETHUSDT", interval="1m", startTime=a[-1][0] + 60_000, endTime=last[0], limit=1000)
        _, _, b = await http_get(f"{sim.rest_url}/api/v3/klines?{more}")
        rows = a + b
        st, _, t = await http_get(f"{gw.base}/api/v1/ticker/24hr?symbol=ethusdt")
        assert st == 200
        o, c = float(rows[0][1]), float(rows[-1][4])
        assert t["count"] == len(rows) and t["openTime"] == rows[0][0] and t["closeTime"] == last[6]
        assert float(t["openPrice"]) == o and float(t["lastPrice"]) == c
        assert float(t["highPrice"]) == max(float(r[2]) for r in rows)
        assert float(t["lowPrice"]) == min(float(r[3]) for r in rows)
        assert math.isclose(float(t["volume"]), sum(float(r[5]) for r in rows), rel_tol=1e-9)
        assert math.isclose(float(t["quoteVolume"]), sum(float(r[7]) for r in rows), rel_tol=1e-9)
        assert math.isclose(float(t["priceChangePercent"]), (c - o) / o * 100, abs_tol=1e-3)


@pytest.mark.parametrize(
    ("path", "param", "status"),
    [
        ("/api/v1/klines?interval=1m", "symbol", 400),
        ("/api/v1/klines?symbol=NOPEUSDT&interval=1m", "symbol", 400),
        ("/api/v1/klines?symbol=BTCUSDT&interval=7m", "interval", 400),
        ("/api/v1/klines?symbol=BTCUSDT&interval=1m&limit=0", "limit", 400),
        ("/api/v1/klines?symbol=BTCUSDT&interval=1m&limit=1001", "limit", 400),
        ("/api/v1/klines?symbol=BTCUSDT&interval=1m&startTime=abc", "startTime", 400),
        ("/api/v1/klines?symbol=BTCUSDT&interval=1m&startTime=5&endTime=4", "startTime", 400),
        ("/api/v1/klines?symbol=BTCUSDT&interval=1m&endTime=-1", "endTime", 400),
        ("/api/v1/klines?symbol=" + "A" * 500 + "&interval=1m", "symbol", 400),
        ("/api/v1/indicator?symbol=BTCUSDT&interval=1m&spec=nope(3)", "spec", 400),
        ("/api/v1/indicator?symbol=BTCUSDT&interval=1m&spec=rsi(0)", "spec", 400),
        ("/api/v1/indicator?symbol=BTCUSDT&interval=1m&spec=%27%3Bdrop", "spec", 400),
        ("/api/v1/ticker/price?symbol=%00", "symbol", 400),
        ("/api/v1/ticker/24hr", "symbol", 400),
        ("/api/v1/indicators/latest?symbol=BTCUSDT&interval=2m", "interval", 400),
    ],
)
async def test_bad_parameters_get_a_4xx_naming_the_parameter(simulator, tmp_path, path, param, status):
    sim = await simulator(speed=1.0, paused=True)
    async with running_gateway(sim, tmp_path) as gw:
        st, _, body = await http_get(gw.base + path)
        assert st == status and body["param"] == param and param in body["msg"], body


def test_the_gateway_imports_neither_vectorbt_nor_panel_nor_bokeh():
    import subprocess
    import sys

    code = (
        "import sys; from kit.gateway import create_app, GatewayConfig; import kit.gateway.cli; "
        "create_app(GatewayConfig()); "
        "print(sorted(m for m in ('vectorbt', 'panel', 'bokeh', 'holoviews', 'dask') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
