"""``kit gateway`` is crash-only: a real process whose stream source or one of whose tasks fails
(``KIT_GATEWAY_TEST_FAULT``) turns not ready and exits 1.

Apart from ``test_gateway_cli``: its Chromium fixture holds an event loop that async tests cannot share.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.fixtures.dashboard import stop, wait_http
from tests.fixtures.exchange import http_get
from tests.fixtures.gateway import free_port

pytestmark = pytest.mark.slow


async def _gateway_exit(sim, tmp_path: Path, fault: str, subscribe: list[str]) -> tuple[int, str, list[float]]:
    """A real ``kit gateway`` with ``KIT_GATEWAY_TEST_FAULT=fault``, a client subscribed to ``subscribe``:
    (exit status, log, the times /ready answered 503 before the exit)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_")}
    env.update(KIT_DATA_DIR=str(tmp_path), KIT_DATABASE_URL=f"sqlite:///{tmp_path / 'kit.db'}",
               KIT_EXCHANGE_URL=sim.rest_url, KIT_GATEWAY_TEST_FAULT=fault)  # fmt: skip
    log = tmp_path / "gateway.log"
    proc = subprocess.Popen([sys.executable, "-m", "kit", "gateway", "--port", str(port), "--symbols", "BTCUSDT"],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    not_ready: list[float] = []
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/health", proc, log)
        with contextlib.suppress(OSError, ConnectionClosed):
            async with connect(f"ws://127.0.0.1:{port}/api/v1/ws") as ws:
                await ws.send(json.dumps({"method": "SUBSCRIBE", "params": subscribe, "id": 1}))
                async with asyncio.timeout(60):
                    while proc.poll() is None:
                        st, _, _ = await http_get(f"http://127.0.0.1:{port}/ready")
                        if st == 503:
                            not_ready.append(time.monotonic())
                        await asyncio.sleep(0.1)
        code = await asyncio.to_thread(proc.wait, 60)
    finally:
        stop(proc)
    return code, log.read_text(), not_ready


@pytest.mark.parametrize("fault", ["source:5", "private:2", "tokens:2"])
async def test_the_gateway_process_exits_1_when_a_stream_source_or_task_fails(fault, simulator, tmp_path):
    sim = await simulator(speed=60, start="2025-05-21T10:00Z")
    code, log, not_ready = await _gateway_exit(sim, tmp_path, fault, ["btcusdt@kline_1m"])
    assert code == 1, log[-3000:]
    task = fault.split(":")[0]
    assert f"injected test fault in {task}" in log and "error: the gateway stopped:" in log
    assert not_ready, "/ready never said 503 before the exit"
