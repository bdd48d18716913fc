"""The simulator's surfaces (issue 11 items 10 and 11), over real sockets.

- Only requests naming the simulator in ``Host`` are answered (DNS rebinding), REST and WebSocket.
- ``/_sim/*`` controls are POST, every value bounded (a bad one is a 400, never a dead
  dispatcher), ``seconds=0`` ends a stall, and they answer loopback clients only or, with a
  control token, requests carrying it.
- A dispatcher that dies takes ``kit exchange`` down with a non-zero exit, so ``kit up`` notices.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from kit._guard import HostCheck, bearer_ok, host_name, is_loopback
from kit.errors import ConfigError
from kit.exchange import ExchangeSimulator
from tests.fixtures.exchange import SAMPLE_DIR, http_get, http_post

ROOT = Path(__file__).resolve().parent.parent


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def _raw(port: int, request: str) -> tuple[int, bytes]:
    """Send ``request`` as is (off the event loop the simulator runs on); the status and the head."""
    return await asyncio.to_thread(_raw_sync, port, request)


def _raw_sync(port: int, request: str) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
            data += chunk
    return int(data.split()[1]), data


def _handshake(path: str, host: str) -> str:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")  # fmt: skip


async def test_simulator_answers_only_requests_naming_it(simulator):
    sim = await simulator(speed=600, allowed_hosts=["sim.example.org"])
    port = sim.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "sim.example.org", f"SIM.example.org:{port}"):
        status, _, _ = await http_get(f"{sim.rest_url}/api/v3/ping", headers={"Host": host})
        assert status == 200, host
    for host in (f"evil.example:{port}", "sim.example.org.evil.example", "127.0.0.1.evil.example"):
        status, _, body = await http_get(f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m",
                                         headers={"Host": host})  # fmt: skip
        assert status == 421 and "Host" in body["msg"], host
        assert (await http_post(f"{sim.rest_url}/_sim/pause", headers={"Host": host}))[0] == 421
        assert (await _raw(port, _handshake("/ws/btcusdt@kline_1m", host)))[0] == 421
    assert (await _raw(port, "GET /api/v3/ping HTTP/1.1\r\n\r\n"))[0] == 421  # no Host at all
    assert (await _raw(port, f"GET /api/v3/ping HTTP/1.1\r\nHost: a\r\nHost: 127.0.0.1:{port}\r\n\r\n"))[0] == 421
    assert (await _raw(port, _handshake("/ws/btcusdt@kline_1m", f"127.0.0.1:{port}")))[0] == 101
    assert not sim.stats()["paused"]
    assert sim.stats()["refused_hosts"] >= 9


async def test_controls_change_the_simulator_only_by_post(simulator):
    sim = await simulator(speed=600)
    for route in ("pause", "resume", "speed?x=60", "fault?kind=drop"):
        status, headers, _ = await http_get(f"{sim.rest_url}/_sim/{route}")
        assert status == 405 and headers["Allow"] == "POST", route
    assert not sim.stats()["paused"] and sim.stats()["speed"] == 600 and sim.stats()["faults"]["drop"] == 0
    assert (await http_get(f"{sim.rest_url}/_sim/stats"))[0] == 200  # reading is a GET
    status, _, stats = await http_post(f"{sim.rest_url}/_sim/pause")
    assert status == 200 and stats["paused"] is True
    assert (await http_post(f"{sim.rest_url}/api/v3/ping"))[0] == 405  # the market data is GET only


@pytest.mark.parametrize(
    "query",
    [
        "speed?x=1e308", "speed?x=1e-9", "speed?x=nan", "speed?x=-1", "speed?x=", "speed", "speed?x=60&x=1e308",
        "fault?kind=stall&seconds=inf", "fault?kind=stall&seconds=nan", "fault?kind=stall&seconds=1e308",
        "fault?kind=stall&seconds=-1", "fault?kind=stall&seconds=3601", "fault?kind=stall&seconds=abc",
        "fault?kind=malformed&n=1e308", "fault?kind=duplicate&n=99999999", "fault?kind=reorder&n=0",
        "fault?kind=reorder&n=-3", "fault?kind=malformed&replace=maybe", "fault?kind=drop&n=3",
        "fault?kind=stall&n=2", "fault", "pause?x=1", "resume?please=1", "stats?x=1",
    ],
)  # fmt: skip
async def test_control_values_out_of_bounds_are_refused_and_the_dispatcher_lives_on(simulator, query):
    sim = await simulator(speed=600)
    before = sim.stats()
    status, _, body = await http_post(f"{sim.rest_url}/_sim/{query}")
    assert status == 400, body
    assert body["code"] < 0 and body["msg"]
    after = sim.stats()
    assert after["speed"] == 600 and after["faults"] == before["faults"] and not after["paused"]
    t0 = sim.now_ms()
    await asyncio.sleep(0.3)
    status, _, body = await http_get(f"{sim.rest_url}/api/v3/time")
    assert status == 200 and body["serverTime"] > t0  # the clock still moves: the dispatcher is alive


def test_speeds_beyond_the_bounds_are_refused_at_start():
    for speed in (1e308, 1e8, 0.001, "1e308"):
        with pytest.raises(ConfigError, match="speed"):
            ExchangeSimulator(data=SAMPLE_DIR, speed=speed)


async def test_a_stall_of_zero_seconds_ends_the_stall(simulator):
    sim = await simulator(speed=6000)
    async with connect(f"{sim.ws_url}/ws/btcusdt@kline_1m", max_queue=None) as ws:
        await asyncio.wait_for(ws.recv(), 10)
        status, _, _ = await http_post(f"{sim.rest_url}/_sim/fault?kind=stall&seconds=600")
        assert status == 200
        await asyncio.sleep(0.3)
        while True:  # drain what was sent before the stall took hold
            try:
                await asyncio.wait_for(ws.recv(), 0.3)
            except TimeoutError:
                break
        status, _, _ = await http_post(f"{sim.rest_url}/_sim/fault?kind=stall&seconds=0")
        assert status == 200
        t0 = time.monotonic()
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert frame["e"] == "kline" and time.monotonic() - t0 < 3


async def test_controls_need_the_control_token_when_one_is_set(simulator):
    sim = await simulator(speed=600, control_token="sim-token-123")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic sim-token-123"}):
        status, got, _ = await http_post(f"{sim.rest_url}/_sim/pause", headers=headers)
        assert status == 401 and got["WWW-Authenticate"] == "Bearer", headers
        assert (await http_get(f"{sim.rest_url}/_sim/stats", headers=headers))[0] == 401
    assert not sim.stats()["paused"]
    status, _, stats = await http_post(f"{sim.rest_url}/_sim/pause", headers={"Authorization": "Bearer sim-token-123"})
    assert status == 200 and stats["paused"] is True


def test_loopback_only_means_loopback_addresses():
    assert all(is_loopback(a) for a in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"))
    assert not any(is_loopback(a) for a in ("10.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "fe80::1", "", None, "?"))


def test_host_names_are_parsed_strictly():
    check = HostCheck.for_server("0.0.0.0", ["kit.example.org"])
    assert check.allows("kit.example.org:443") and check.allows("KIT.EXAMPLE.ORG.") and check.allows("[::1]:9")
    assert check.allows("10.1.2.3:9401", local_addr="10.1.2.3")  # reached by the address it listens on
    assert not check.allows("10.1.2.3:9401", local_addr="127.0.0.1")
    assert not check.allows("0.0.0.0") and not check.allows("") and not check.allows(None)
    assert [host_name(h) for h in ("a:b", "[::1", "[::1]x", "x:80:90")] == [None, None, None, None]
    assert bearer_ok("Bearer abc", "abc") and bearer_ok("bearer  abc ", "abc")
    assert not bearer_ok("Bearer abc", "") and not bearer_ok(None, "abc") and not bearer_ok("abc", "abc")


def test_a_dead_dispatcher_ends_kit_exchange_with_a_non_zero_exit(free_port):
    # A bug in the dispatcher, injected into a real `kit exchange` process: it must not live on
    # with a clock that no longer moves (every REST call would answer 500 while the process lives).
    code = (
        "import kit.exchange.simulator as m\n"
        "class Broken(m.ExchangeSimulator):\n"
        "    def _tick(self):\n"
        "        raise RuntimeError('dispatcher bug')\n"
        "m.ExchangeSimulator = Broken\n"
        "from kit.cli import main\n"
        f"main(['exchange', '--port', '{free_port}', '--data', {str(SAMPLE_DIR)!r}, '--speed', '600'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "exchange simulator failed: RuntimeError: dispatcher bug; exiting" in out.stderr


@pytest.mark.slow
def test_kit_up_notices_a_simulator_whose_dispatcher_died(tmp_path, free_port):
    # The same injected bug, in the simulator `kit up` starts (through a sitecustomize on the
    # children's path): kit up must stop and say so, not keep serving a frozen replay.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\n"
        "if sys.argv[1:2] == ['exchange'] or 'exchange' in sys.argv[:3]:\n"
        "    import kit.exchange.simulator as m\n"
        "    def _tick(self):\n"
        "        raise RuntimeError('dispatcher bug')\n"
        "    m.ExchangeSimulator._tick = _tick\n"
    )
    dash_port, status_port = _free_ports(2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIT_", "PANEL_", "BOKEH_"))}
    env.update(KIT_DATA_DIR=str(tmp_path / "data"), KIT_REPLAY_DATA=str(SAMPLE_DIR),
               KIT_EXCHANGE_URL=f"http://127.0.0.1:{free_port}", KIT_STATUS_PORT=str(status_port),
               KIT_DEMO_PASSWORD="demo-pass-for-tests-0", PYTHONPATH=f"{hook}{os.pathsep}{ROOT}")  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "kit", "up", "--port", str(dash_port)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "simulator exited with code 1" in text
    assert "dispatcher bug" in text


def test_kit_exchange_takes_its_control_token_and_host_names_from_settings_and_options(free_port):
    import urllib.error
    import urllib.request

    env = {**os.environ, "KIT_SIM_CONTROL_TOKEN": "sim-token-env", "KIT_ALLOWED_HOSTS": "a.example.org",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "kit", "exchange", "--port", str(free_port), "--data",
                             str(SAMPLE_DIR), "--allowed-host", "b.example.org"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip

    def call(path: str, method: str = "GET", **headers: str) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{free_port}{path}", method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if call("/api/v3/ping") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "kit exchange did not start"
            time.sleep(0.2)
        auth = {"Authorization": "Bearer sim-token-env"}
        assert call("/_sim/pause", "POST") == 401
        assert call("/_sim/pause", "POST", **auth) == 200
        assert call("/api/v3/ping", Host="a.example.org") == 200
        assert call("/api/v3/ping", Host="b.example.org:9400") == 200
        assert call("/api/v3/ping", Host="c.example.org") == 421
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert b"sim-token-env" not in err
