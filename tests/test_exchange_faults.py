"""Fault injection over real sockets: drop, stall, malformed, duplicate, reorder; the admin endpoint; slow clients."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kit.exchange._faults import GARBAGE
from kit.market.files import to_ms
from tests.fixtures.exchange import http_get, http_post, recv_json, small_frames

MIN = 60_000


async def _frames(ws, n: int) -> list[str | bytes]:
    return [await asyncio.wait_for(ws.recv(), 10) for _ in range(n)]


def _opens(frames: list) -> list[int]:
    return [json.loads(f)["k"]["t"] for f in frames]


async def _max_speed_connection(simulator, sample_frames):
    """A paused max-speed simulator and the 1m open times it will send from its start."""
    sim = await simulator(speed="max", paused=True)
    t = [int(x) for x in to_ms(small_frames(sample_frames)[("BTCUSDT", "1m")].index)]
    return sim, t[t.index(sim.now_ms()) :]


async def test_drop_all_closes_every_connection_abruptly(simulator):
    sim = await simulator(speed=600)
    async with (
        connect(f"{sim.ws_url}/ws/btcusdt@kline_1m", max_queue=None) as a,
        connect(f"{sim.ws_url}/ws/ethusdt@kline_1m", max_queue=None) as b,
    ):
        await recv_json(a)
        await recv_json(b)
        assert sim.faults.drop_all() == 2
        for ws in (a, b):
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is None  # no close frame: the TCP connection was cut
    assert sim.stats()["connections"] == 0
    # The server still accepts new connections.
    async with connect(f"{sim.ws_url}/ws/btcusdt@kline_1m", max_queue=None) as c:
        assert (await recv_json(c))["e"] == "kline"


async def test_stall_sends_nothing_for_a_while_then_resumes(simulator):
    sim = await simulator(speed=600)
    async with connect(f"{sim.ws_url}/ws/btcusdt@kline_1m", max_queue=None) as ws:
        await recv_json(ws)
        before = sim.now_ms()
        sim.faults.stall(0.6)
        t0 = time.monotonic()
        # Anything already on the wire may still arrive; then silence until the stall ends.
        ev = await recv_json(ws)
        while ev["E"] <= before + 600:
            ev = await recv_json(ws)
        assert time.monotonic() - t0 >= 0.55
        assert ev["e"] == "kline"


async def test_malformed_frames_replace_events(simulator, sample_frames):
    sim, opens = await _max_speed_connection(simulator, sample_frames)
    async with connect(f"{sim.ws_url}/ws/btcusdt@kline_1m", max_queue=None) as ws:
        await asyncio.sleep(0)
        sim.faults.malformed(len(GARBAGE))
        sim.resume()
        got = await _frames(ws, len(GARBAGE) + 2)
    assert got[: len(GARBAGE)] == list(GARBAGE)
    assert _opens(got[len(GARBAGE) :]) == opens[len(GARBAGE) : len(GARBAGE) + 2]  # the replaced ones are gone


async def test_malformed_frames_can_be_inserted_instead(simulator, sample_frames):
    sim, opens = await _max_speed_connection(simulator, sample_frames)
    async with connect(f"{sim.ws_url}/ws/btcusdt@kline_1m", max_queue=None) as ws:
        await asyncio.sleep(0)
        sim.faults.malformed(2, replace=False)
        sim.resume()
        got = await _frames(ws, 5)
    assert got[0] == GARBAGE[0] and got[2] == GARBAGE[1]
    assert _opens([got[1], got[3], got[4]]) == opens[:3]


async def test_duplicate_and_reorder(simulator, sample_frames):
    sim, opens = await _max_speed_connection(simulator, sample_frames)
    async with connect(f"{sim.ws_url}/ws/btcusdt@kline_1m", max_queue=None) as ws:
        await asyncio.sleep(0)
        sim.faults.duplicate(2)
        sim.faults.reorder(1)
        sim.resume()
        got = await _frames(ws, 8)
    # Duplicates first (each of the next 2 events twice), then one swapped pair, then in order.
    assert _opens(got) == [opens[0], opens[0], opens[1], opens[1], opens[3], opens[2], opens[4], opens[5]]
    assert sim.stats()["faults"] == {"drop": 0, "stall": 0, "malformed": 0, "duplicate": 2, "reorder": 1}


async def test_admin_endpoint_injects_faults_and_controls_the_clock(simulator):
    sim = await simulator(speed=600)
    async with connect(f"{sim.ws_url}/ws/btcusdt@kline_1m", max_queue=None) as ws:
        await recv_json(ws)
        status, _, stats = await http_post(f"{sim.rest_url}/_sim/fault?kind=drop")
        assert status == 200 and stats["faults"]["drop"] == 1
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    status, _, stats = await http_post(f"{sim.rest_url}/_sim/pause")
    assert stats["paused"] is True
    frozen = sim.now_ms()
    _, _, body = await http_get(f"{sim.rest_url}/api/v3/time")
    assert body["serverTime"] == frozen
    _, _, stats = await http_post(f"{sim.rest_url}/_sim/speed?x=max")
    assert stats["speed"] == "max"
    _, _, stats = await http_post(f"{sim.rest_url}/_sim/resume")
    assert stats["paused"] is False
    for kind in ("stall&seconds=0", "malformed&n=2", "duplicate&n=1", "reorder&n=1"):
        status, _, _ = await http_post(f"{sim.rest_url}/_sim/fault?kind={kind}")
        assert status == 200, kind
    status, _, body = await http_post(f"{sim.rest_url}/_sim/fault?kind=meteor")
    assert status == 400 and "meteor" in body["msg"]
    status, _, body = await http_post(f"{sim.rest_url}/_sim/speed?x=fast")
    assert status == 400 and "speed" in body["msg"]


async def test_a_stuck_client_is_disconnected_and_does_not_slow_the_others(simulator, sample_frames):
    frames = small_frames(sample_frames)
    sim = await simulator(speed=60_000, paused=True, send_queue=200, update_every=0)
    expected = len(frames[("ETHUSDT", "1m")]) - 1000  # candles closing after the default start
    # The stuck client: a tiny receive buffer and a reader that never reads.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", sim.port))
    stuck = await connect(f"{sim.ws_url}/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m", sock=sock, max_queue=1)
    try:
        async with connect(f"{sim.ws_url}/ws/ethusdt@kline_1m", max_queue=None) as ws:
            sim.resume()
            got = [json.loads(await asyncio.wait_for(ws.recv(), 30)) for _ in range(expected)]
            assert [g["k"]["x"] for g in got] == [True] * expected
            assert len({g["k"]["t"] for g in got}) == expected
        for _ in range(200):
            if sim.stats()["dropped_slow"]:
                break
            await asyncio.sleep(0.05)
        assert sim.stats()["dropped_slow"] == 1
    finally:
        stuck.transport.abort()
