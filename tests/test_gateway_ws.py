"""The gateway's WebSocket over loopback against a real simulator: streams, wildcards, resume, limits, slow clients."""

from __future__ import annotations

import asyncio
import json
import socket

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kit.indicators import rsi
from tests.fixtures.exchange import http_get
from tests.fixtures.gateway import events, metrics_text, request, running_gateway

START = "2025-05-21T10:00Z"


async def test_candle_and_indicator_streams_carry_forming_and_closed_events_with_their_sequence(simulator, tmp_path):
    sim = await simulator(speed=60, start=START)
    async with running_gateway(sim, tmp_path) as gw, connect(gw.ws) as ws:
        streams = ["btcusdt@kline_1m", "btcusdt@indicator_1m_rsi(14)"]
        assert await request(ws, "SUBSCRIBE", streams, 1) == {"result": None, "id": 1}
        got = await events(ws, 80, timeout=60)
        kl = [e for e in got if e["stream"] == streams[0]]
        ind = [e for e in got if e["stream"] == streams[1]]
        assert all(e["seq"] == e["data"]["k"]["t"] and e["data"]["k"]["s"] == "BTCUSDT" for e in kl)
        assert all(e["seq"] == e["data"]["t"] and e["data"]["spec"] == "rsi(14)" for e in ind)
        assert any(not e["data"]["k"]["x"] for e in kl), "forming updates are streamed"
        closed = [e for e in await events(ws, 6, closed_only=True) if e["stream"] == streams[1]]
        assert closed
        for e in closed:  # the live value equals the batch RSI over the candles up to it
            _, _, rows = await http_get(
                f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m&endTime={e['seq']}&limit=1000"
            )
            assert rows[-1][0] == e["seq"]
            want = rsi(np.array([float(r[4]) for r in rows]), 14)[-1]
            assert e["data"]["v"] == pytest.approx(want, rel=1e-9)


async def test_wildcards_expand_to_every_symbol_and_unsubscribe_stops_them(simulator, tmp_path):
    sim = await simulator(speed=60, start=START)
    async with running_gateway(sim, tmp_path) as gw, connect(gw.ws) as ws:
        assert (await request(ws, "SUBSCRIBE", ["*@kline_1m"], 1))["result"] is None
        assert (await request(ws, "LIST_SUBSCRIPTIONS", None, 2))["result"] == ["*@kline_1m"]
        assert (await request(ws, "PING", None, 3))["result"] == "pong"
        got = await events(ws, 40)
        assert {e["stream"] for e in got} == {"btcusdt@kline_1m", "ethusdt@kline_1m"}
        assert (await request(ws, "UNSUBSCRIBE", ["*@kline_1m"], 4)) == {"result": None, "id": 4}
        with pytest.raises(TimeoutError):
            await events(ws, 1, timeout=2.0)
        assert (await request(ws, "LIST_SUBSCRIPTIONS", None, 5))["result"] == []


async def test_resume_with_since_gets_every_closed_candle_once_in_order_across_a_forced_disconnect(simulator, tmp_path):
    sim = await simulator(speed=60, start=START)
    async with running_gateway(sim, tmp_path) as gw:
        seen: list[int] = []
        ws = await connect(gw.ws)
        await request(ws, "SUBSCRIBE", ["ethusdt@kline_1m"], 1)
        seen += [e["seq"] for e in await events(ws, 3, closed_only=True)]
        ws.transport.abort()  # no close handshake: a dropped connection
        await asyncio.sleep(3.5)  # candles close while the client is away
        async with connect(gw.ws) as ws2:
            ans = await request(ws2, "SUBSCRIBE", ["ethusdt@kline_1m"], 2, since=seen[-1])
            assert ans == {"result": None, "id": 2}
            seen += [e["seq"] for e in await events(ws2, 8, closed_only=True)]
        assert seen == list(range(seen[0], seen[0] + 60_000 * len(seen), 60_000))


async def test_a_resume_older_than_what_is_kept_or_larger_than_max_history_is_an_error(simulator, tmp_path):
    sim = await simulator(speed=60, start=START)
    async with running_gateway(sim, tmp_path, ring=50) as gw, connect(gw.ws) as ws:
        ans = await request(ws, "SUBSCRIBE", ["btcusdt@kline_1m"], 1, since=0)
        assert ans["error"]["code"] == 7 and "/api/v1/klines" in ans["error"]["msg"]
        assert (await request(ws, "LIST_SUBSCRIPTIONS", None, 2))["result"] == []
    async with running_gateway(sim, tmp_path, max_history=20) as gw, connect(gw.ws) as ws:
        since = sim.now_ms() - 15 * 60_000  # 15 candles per stream, 30 in all: over the bound
        ans = await request(ws, "SUBSCRIBE", ["btcusdt@kline_1m", "ethusdt@kline_1m"], 3, since=since)
        assert ans["error"]["code"] == 7 and "resume too large" in ans["error"]["msg"]
        assert (await request(ws, "SUBSCRIBE", ["btcusdt@kline_1m"], 4, since=since))["result"] is None


async def test_limits_streams_rate_and_connections_per_address_are_enforced_and_counted(simulator, tmp_path):
    sim = await simulator(speed=60, start=START)
    async with running_gateway(sim, tmp_path, max_streams=3, max_connections_per_address=2) as gw:
        async with connect(gw.ws) as ws, connect(gw.ws):
            ans = await request(ws, "SUBSCRIBE", ["*@kline_1m", "*@kline_5m"], 1)
            assert ans["error"]["code"] == 5
            for i in range(6):
                await ws.send(json.dumps({"method": "PING", "id": 10 + i}))
            answers = [json.loads(await ws.recv()) for _ in range(6)]
            assert sum("error" in a and a["error"]["code"] == 4 for a in answers) >= 1
            with pytest.raises(Exception) as e:  # a third connection from the same address
                async with connect(gw.ws):
                    pass
            assert "403" in str(e.value)
        text = await metrics_text(gw.base)
        assert 'kit_gateway_connections_refused_total{reason="per_address"} 1.0' in text
        assert "kit_gateway_ws_rate_limited_total" in text and 'kit_gateway_ws_errors_total{code="5"} 1.0' in text


async def test_a_slow_client_gets_an_error_event_and_is_closed_with_4008_without_slowing_others(simulator, tmp_path):
    sim = await simulator(speed=600, start=START)
    async with running_gateway(sim, tmp_path, max_queue=16, max_history=50_000) as gw:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(gw.base.rsplit(":", 1)[1])))
        slow = await connect(gw.ws, sock=sock, max_queue=1)
        fast = await connect(gw.ws)
        # ~36,000 history events (~9 MB): more than every buffer between the gateway and a client that
        # does not read can hold, so the next live events find its queue full.
        names = [f"*@indicator_1m_sma({n})" for n in range(2, 32)]
        since = sim.now_ms() - 600 * 60_000
        await slow.send(json.dumps({"method": "SUBSCRIBE", "params": names, "id": 1, "since": since}))
        await request(fast, "SUBSCRIBE", ["btcusdt@kline_1m"], 1)
        assert len(await events(fast, 100, timeout=30)) == 100  # the fast client is served all along
        async with asyncio.timeout(60):
            while "kit_gateway_slow_consumers_closed_total 1.0" not in await metrics_text(gw.base):
                await asyncio.sleep(0.2)
        last = None
        with pytest.raises(ConnectionClosed) as e:
            async with asyncio.timeout(60):
                while True:
                    last = json.loads(await slow.recv())
        assert e.value.rcvd is not None and e.value.rcvd.code == 4008
        assert last is not None and last["error"]["code"] == 4008
        await fast.close()


async def test_malformed_frames_over_the_socket_are_answered_and_the_connection_lives_on(simulator, tmp_path):
    sim = await simulator(speed=60, start=START)
    async with running_gateway(sim, tmp_path, rate=100) as gw, connect(gw.ws, max_size=2**20) as ws:
        hostile = ('{"method": "SUBSCRIBE", "params": ["../../etc"], "id": 1}',
                   '{"method": "PING", "id": 1, "pad": "' + "x" * 100_000 + '"}')  # fmt: skip
        for frame in (b"\x00\xff binary", "{not json", "[]", *hostile):
            await ws.send(frame)
            got = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert got["error"]["code"] in (1, 2, 3) and got["error"]["msg"]
        assert (await request(ws, "PING", None, 99)) == {"result": "pong", "id": 99}
        text = await metrics_text(gw.base)
        assert (
            'kit_gateway_ws_requests_total{method="PING"}' in text and 'kit_gateway_ws_errors_total{code="3"}' in text
        )
