"""WebSocket control messages and connection limits: SUBSCRIBE & co, errors, pings, 5 msg/s, 1024 streams, 24 h."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.fixtures.exchange import recv_json


async def _answer(ws, msg: object) -> dict:
    """Send a control message and return its answer (skipping kline events)."""
    await ws.send(msg if isinstance(msg, str) else json.dumps(msg))
    while True:
        got = await recv_json(ws)
        if "result" in got or "error" in got:
            return got


async def test_subscribe_unsubscribe_list_and_properties(simulator):
    sim = await simulator(speed=600, max_incoming_per_s=1000)
    async with connect(f"{sim.ws_url}/ws", max_queue=None) as ws:
        assert await _answer(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3}) == {"result": [], "id": 3}
        got = await _answer(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m", "ethusdt@kline_5m"], "id": 1})
        assert got == {"result": None, "id": 1}
        ev = await recv_json(ws)  # raw payloads on /ws
        assert ev["e"] == "kline" and ev["k"]["i"] in ("1m", "5m")
        got = await _answer(ws, {"method": "LIST_SUBSCRIPTIONS", "id": "abc"})
        assert got == {"result": ["btcusdt@kline_1m", "ethusdt@kline_5m"], "id": "abc"}
        assert await _answer(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 2}) == {
            "result": False,
            "id": 2,
        }
        got = await _answer(ws, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 5})
        assert got == {"result": None, "id": 5}
        assert await _answer(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 6}) == {
            "result": True,
            "id": 6,
        }
        msg = await recv_json(ws)
        while "stream" not in msg:  # events queued before the switch were raw
            msg = await recv_json(ws)
        assert set(msg) == {"stream", "data"}
        got = await _answer(ws, {"method": "UNSUBSCRIBE", "params": ["ethusdt@kline_5m"], "id": 312})
        assert got == {"result": None, "id": 312}
        got = await _answer(ws, {"method": "LIST_SUBSCRIPTIONS", "id": None})
        assert got == {"result": ["btcusdt@kline_1m"], "id": None}
        assert sim.stats()["streams"] == 1
        got = await _answer(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 7})
        assert sim.stats()["streams"] == 0 and sim.stats()["subscriptions"] == 0


async def test_control_errors_use_binance_codes(simulator):
    sim = await simulator(paused=True, max_incoming_per_s=1000)
    cases = [
        ("{not json", 3, "Invalid JSON", None),
        ("[1, 2]", 2, "Invalid request", None),
        ({"method": "SUBSCRIB", "params": [], "id": 1}, 2, "unknown variant `SUBSCRIB`", 1),
        ({"params": [], "id": 4}, 2, "missing field `method`", 4),
        ({"method": "LIST_SUBSCRIPTIONS", "id": 1.5}, 2, "request ID", None),
        ({"method": "LIST_SUBSCRIPTIONS", "id": "x" * 37}, 2, "request ID", None),
        ({"method": "LIST_SUBSCRIPTIONS", "id": True}, 2, "request ID", None),
        ({"method": "LIST_SUBSCRIPTIONS", "id": 1, "extra": 1}, 2, "too many parameters", 1),
        ({"method": "SUBSCRIBE", "params": ["BTCUSDT@kline_1m"], "id": 8}, 2, "invalid stream name", 8),
        ({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 8}, 2, "invalid stream name", 8),
        ({"method": "SUBSCRIBE", "params": "btcusdt@kline_1m", "id": 8}, 2, "Invalid request", 8),
        ({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 9}, 1, "expected Boolean", 9),
        ({"method": "SET_PROPERTY", "params": ["colour", True], "id": 10}, 0, "Unknown property", 10),
        ({"method": "GET_PROPERTY", "params": [1], "id": 11}, 2, "property name must be a string", 11),
    ]
    async with connect(f"{sim.ws_url}/ws", max_queue=None) as ws:
        for msg, code, words, req_id in cases:
            got = await _answer(ws, msg)
            assert set(got) == {"error", "id"}, msg
            assert got["error"]["code"] == code, msg
            assert words in got["error"]["msg"], msg
            assert got["id"] == req_id, msg
        # The connection survives every error.
        assert await _answer(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}) == {"result": [], "id": 1}


async def test_unserved_stream_is_accepted_and_silent(simulator):
    sim = await simulator(speed=6000, max_incoming_per_s=1000)
    async with connect(f"{sim.ws_url}/ws", max_queue=None) as ws:
        got = await _answer(ws, {"method": "SUBSCRIBE", "params": ["xrpusdt@kline_1m", "btcusdt@kline_1s"], "id": 1})
        assert got == {"result": None, "id": 1}
        await _answer(ws, {"method": "SUBSCRIBE", "params": ["ethusdt@kline_1m"], "id": 2})
        for _ in range(5):
            assert (await recv_json(ws))["s"] == "ETHUSDT"


async def test_more_than_5_messages_per_second_drops_the_connection(simulator):
    sim = await simulator(paused=True)
    async with connect(f"{sim.ws_url}/ws", max_queue=None) as ws:
        for i in range(5):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        for i in range(5):
            assert await recv_json(ws) == {"result": [], "id": i}
    async with connect(f"{sim.ws_url}/ws", max_queue=None) as ws:
        for i in range(6):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    assert sim.stats()["dropped_rate_limit"] == 1


async def test_stream_limit_per_connection(simulator):
    sim = await simulator(paused=True, max_streams=3, max_incoming_per_s=100)
    async with connect(f"{sim.ws_url}/stream?streams=btcusdt@kline_1m/btcusdt@kline_5m", max_queue=None) as ws:
        got = await _answer(ws, {"method": "SUBSCRIBE", "params": ["ethusdt@kline_1m", "ethusdt@kline_5m"], "id": 1})
        assert got["error"]["code"] == 2 and "too many streams" in got["error"]["msg"]
        assert await _answer(ws, {"method": "SUBSCRIBE", "params": ["ethusdt@kline_1m"], "id": 2}) == {
            "result": None,
            "id": 2,
        }
        got = await _answer(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3})
        assert len(got["result"]) == 3
    names = "/".join(f"btcusdt@kline_{i}" for i in ("1m", "3m", "5m", "15m"))
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{sim.ws_url}/stream?streams={names}", max_queue=None):
            pass
    assert info.value.response.status_code == 400


async def test_connection_lifetime_is_enforced(simulator):
    sim = await simulator(speed=600, max_connection_age=0.3)
    async with connect(f"{sim.ws_url}/ws/btcusdt@kline_1m", max_queue=None) as ws:
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert sim.stats()["dropped_lifetime"] == 1


class RawWs:
    """A bare-bones WebSocket client on a plain socket, to see ping frames and to not answer them."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _read(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame; EOFError when the server closed the socket."""
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def pong(self, payload: bytes) -> None:
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask + body)

    def close(self) -> None:
        self.sock.close()


async def test_server_pings_and_drops_a_client_that_never_pongs(simulator):
    sim = await simulator(paused=True, ping_interval=0.1, pong_timeout=0.3)

    def answering() -> int:
        ws = RawWs(sim.port, "/ws/btcusdt@kline_1m")
        pings = 0
        try:
            while pings < 4:
                op, payload = ws.frame()
                if op == 0x9:
                    pings += 1
                    ws.pong(payload)
        finally:
            ws.close()
        return pings

    def silent() -> list[int]:
        ws = RawWs(sim.port, "/ws/btcusdt@kline_1m")
        ops = []
        try:
            while True:
                ops.append(ws.frame()[0])
        except (EOFError, ConnectionResetError):
            return ops
        finally:
            ws.close()

    assert await asyncio.to_thread(answering) == 4
    ops = await asyncio.to_thread(silent)
    assert ops and ops[0] == 0x9  # it was pinged, did not answer, and was cut off
    assert sim.stats()["dropped_pong"] == 1
    assert sim.stats()["pongs_received"] >= 3


async def test_connection_attempts_are_limited_per_ip(simulator):
    sim = await simulator(paused=True, max_connects=2)
    for _ in range(2):
        async with connect(f"{sim.ws_url}/ws", max_queue=None):
            pass
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{sim.ws_url}/ws", max_queue=None):
            pass
    assert info.value.response.status_code == 429
    assert 1 <= int(info.value.response.headers["Retry-After"]) <= 300
    assert sim.stats()["refused_connects"] == 1
