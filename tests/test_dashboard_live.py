"""``/kit/live`` on a real ``panel serve``: who may open it, what a page receives, what the server counts.

The stack is the browser tests' (simulator at 30x + SQLite + dashboard subprocess); the client is
a plain ``websockets`` connection carrying the login cookie, as the page's script does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.fixtures.dashboard import MINUTE, USERS, login_cookie

pytestmark = pytest.mark.slow


def _ws(base: str, query: str) -> str:
    return base.replace("http://", "ws://") + "/kit/live?" + query


def _cookie(stack, user: str = "alice") -> str:
    return login_cookie(stack.base_url, user, USERS[user][0])


def _stats(stack) -> dict:
    req = urllib.request.Request(f"{stack.base_url}/kit/stats", headers={"Cookie": _cookie(stack, "root")})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _metrics_text(stack) -> str:
    req = urllib.request.Request(f"{stack.base_url}/kit/metrics", headers={"Cookie": _cookie(stack, "root")})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read().decode()


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} missing from /kit/metrics"
    return float(m.group(1))


async def _messages(ws, n: int, timeout: float = 60.0) -> list[dict]:
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.append(json.loads(await ws.recv()))
    return out


async def test_refused_without_a_login_or_from_another_origin(dashboard_stack):
    base = dashboard_stack.base_url
    with pytest.raises(InvalidStatus) as e:
        async with connect(_ws(base, "stream=BTCUSDT@1m")):
            pass
    assert e.value.response.status_code == 403
    cookie = _cookie(dashboard_stack)
    with pytest.raises(InvalidStatus) as e:
        async with connect(_ws(base, "stream=BTCUSDT@1m"), additional_headers={"Cookie": cookie},
                           origin="http://evil.example"):  # fmt: skip
            pass
    assert e.value.response.status_code == 403
    forged = cookie.replace("user=", "user=x", 1)  # a cookie the server did not sign
    with pytest.raises(InvalidStatus):
        async with connect(_ws(base, "stream=BTCUSDT@1m"), additional_headers={"Cookie": forged}):
            pass


@pytest.mark.parametrize(
    "query",
    [
        "stream=BTCUSDT@7m",
        "stream=NOPE@1m",
        "stream=BTCUSDT",
        "stream=BTCUSDT@1m&since=x",
        "stream=BTCUSDT@1m&since=inf",
        "stream=BTCUSDT@1m&since=1e308",
        "stream=BTCUSDT@1m&since=nan",
        "stream=BTCUSDT@1m&since=-5",
        "stream=BTCUSDT@1m&since=9999999999999999999999",
    ],
)
async def test_a_bad_stream_is_closed_with_a_reason(dashboard_stack, query):
    cookie = _cookie(dashboard_stack)
    async with connect(_ws(dashboard_stack.base_url, query), additional_headers={"Cookie": cookie}) as ws:
        with pytest.raises(ConnectionClosed) as e:
            await asyncio.wait_for(ws.recv(), 30)
    assert e.value.rcvd.code == 4400 and "bad stream" in e.value.rcvd.reason


async def test_a_page_gets_what_it_lacks_then_every_update(dashboard_stack):
    cookie = _cookie(dashboard_stack)
    url = _ws(dashboard_stack.base_url, "stream=BTCUSDT@1m&since=0")
    async with connect(url, additional_headers={"Cookie": cookie}) as ws:
        first, *live = await _messages(ws, 12)
        assert first["s"] == "BTCUSDT@1m" and "BTCUSDT" in first["h"]
        window = [r["open_time"] for r in first["rows"]]
        assert len(window) >= 50 and all(b - a == MINUTE for a, b in itertools.pairwise(window))
        assert {"open", "high", "low", "close", "volume", "color", "recv_ms", "ov_ema_20"} <= set(first["rows"][0])
        # then the forming candle patched and new ones streamed, never going back in time
        seen = window[-1]
        for msg in live:
            for row in msg["rows"]:
                assert row["open_time"] >= seen - MINUTE
                assert row["open_time"] - seen in (-MINUTE, 0, MINUTE)  # no hole
                seen = max(seen, row["open_time"])
        assert seen > window[-1]  # the simulator closed at least one candle meanwhile
        # the shared engine's overlays ride along (EMA 20 is warm after the history)
        assert any(row["ov_ema_20"] is not None for msg in live for row in msg["rows"])
        # a reconnecting page asks only for what it lacks
        async with connect(url.replace("since=0", f"since={seen}"), additional_headers={"Cookie": cookie}) as ws2:
            (again,) = await _messages(ws2, 1)
            assert again["rows"][0]["open_time"] >= seen


async def test_the_server_counts_one_broadcast_per_stream_and_releases_it(dashboard_stack):
    cookie = _cookie(dashboard_stack, "bob")
    url = _ws(dashboard_stack.base_url, "stream=ETHUSDT@5m&since=0")
    sockets = [await connect(url, additional_headers={"Cookie": cookie}) for _ in range(3)]
    try:
        for ws in sockets:
            await _messages(ws, 2)
        row = next(
            s for s in (await asyncio.to_thread(_stats, dashboard_stack))["streams"] if s["stream"] == "ETHUSDT@5m"
        )
        assert row["sockets"] == 3 and row["listeners"] == 1  # three pages, one listener on the hub
        assert row["messages"] >= 6
        text = await asyncio.to_thread(_metrics_text, dashboard_stack)  # the same figures for Prometheus
        assert (
            _metric(text, "kit_dashboard_live_sockets") >= 3 and _metric(text, "kit_dashboard_live_messages_total") >= 6
        )
    finally:
        for ws in sockets:
            await ws.close()
    for _ in range(100):
        rows = [s for s in (await asyncio.to_thread(_stats, dashboard_stack))["streams"] if s["stream"] == "ETHUSDT@5m"]
        if not rows or rows[0]["sockets"] == 0:
            break
        await asyncio.sleep(0.1)
    assert not rows or (rows[0]["sockets"] == 0 and rows[0]["listeners"] == 0)


@pytest.mark.parametrize("interval", ["3m", "4h", "1d", "1w"])
async def test_every_interval_the_feed_serves_is_streamed(dashboard_stack, interval):
    """4h and the others the selector once lacked are served, not refused with 4400."""
    from kit.market.intervals import bucket_start

    cookie = _cookie(dashboard_stack)
    url = _ws(dashboard_stack.base_url, f"stream=ETHUSDT@{interval}&since=0")
    async with connect(url, additional_headers={"Cookie": cookie}) as ws:
        (first,) = await _messages(ws, 1)
    assert first["s"] == f"ETHUSDT@{interval}" and first["rows"]
    assert all(bucket_start(int(r["open_time"]), interval) == r["open_time"] for r in first["rows"])


async def test_a_dropped_exchange_connection_is_told_to_the_page_and_the_candles_resume_without_a_hole(
    dashboard_stack,
):
    from tests.fixtures.exchange import http_post

    cookie = _cookie(dashboard_stack, "bob")
    url = _ws(dashboard_stack.base_url, "stream=BTCUSDT@1m&since=0")
    async with connect(url, additional_headers={"Cookie": cookie}) as ws:
        (first,) = await _messages(ws, 1)
        assert "feed" not in first  # connected: what a page assumes, not sent
        seen = [r["open_time"] for r in first["rows"]]
        code, _, _ = await http_post(f"{dashboard_stack.sim_url}/_sim/fault?kind=drop")
        assert code == 200
        feed: list[str] = []
        async with asyncio.timeout(60):
            while feed[-1:] != ["connected"] or "reconnecting" not in feed or len(seen) < len(first["rows"]) + 5:
                msg = json.loads(await ws.recv())
                if "feed" in msg:
                    feed.append(msg["feed"])
                    assert set(msg) == {"s", "rows", "feed", "reconnects"} and msg["rows"] == []
                for row in msg["rows"]:
                    if row["open_time"] > seen[-1]:
                        seen.append(row["open_time"])
    assert feed[0] == "reconnecting" and feed[-1] == "connected"
    assert all(b - a == MINUTE for a, b in itertools.pairwise(seen))  # no hole across the reconnect
