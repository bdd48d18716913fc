"""``kit gateway`` as a real process against ``kit exchange``: ready, served, the example page draws live candles
in headless Chromium, a clean stop; an unreachable exchange is one error line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.dashboard import SAMPLE_DIR, stop, wait_http
from tests.fixtures.gateway import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen]]:
    tmp = tmp_path_factory.mktemp("gateway")
    sim_port, gw_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_")}
    env.update(KIT_DATA_DIR=str(tmp), KIT_DATABASE_URL=f"sqlite:///{tmp / 'kit.db'}", KIT_REPLAY_DATA=str(SAMPLE_DIR),
               KIT_EXCHANGE_URL=f"http://127.0.0.1:{sim_port}")  # fmt: skip
    procs: list[subprocess.Popen] = []
    try:
        sim_log = tmp / "simulator.log"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "kit", "exchange", "--port", str(sim_port), "--speed", "60",
             "--start", "2025-06-01T00:00Z", "--symbols", "BTCUSDT,ETHUSDT"],
            env=env, stdout=sim_log.open("wb"), stderr=subprocess.STDOUT,
        ))  # fmt: skip
        wait_http(f"http://127.0.0.1:{sim_port}/api/v3/time", procs[0], sim_log)
        gw_log = tmp / "gateway.log"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "kit", "gateway", "--port", str(gw_port)],
            env=env, stdout=gw_log.open("wb"), stderr=subprocess.STDOUT,
        ))  # fmt: skip
        wait_http(f"http://127.0.0.1:{gw_port}/ready", procs[1], gw_log)
        yield f"http://127.0.0.1:{gw_port}", procs[1]
    finally:
        for p in reversed(procs):
            stop(p)


def test_the_example_page_draws_live_candles_and_rsi_in_chromium(gateway_proc, chromium, artifacts: Path):
    base, _ = gateway_proc
    page = chromium.new_page(viewport={"width": 1100, "height": 600})
    try:
        page.goto(f"{base}/example")
        page.wait_for_function("window.kitExample.bars.size >= 100 && window.kitExample.rsi.size >= 80", timeout=60_000)
        seen = page.evaluate("window.kitExample.events")
        page.wait_for_function(f"window.kitExample.events > {seen}", timeout=30_000)  # still live
        page.screenshot(path=str(artifacts / "gateway_example.png"))
    finally:
        page.close()


def test_the_readme_client_prints_closed_candles_and_rsi_once_each_in_order(gateway_proc, tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = readme.split("<!-- gateway-client -->\n```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 25
    (tmp_path / "client.py").write_text(code)
    env = {**os.environ, "KIT_GATEWAY": gateway_proc[0].split("://", 1)[1]}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "client.py")], env=env, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=12)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    lines = [ln.split() for ln in out.splitlines()]
    kl = [int(seq) for stream, seq, _ in lines if stream == "btcusdt@kline_1m"]
    rs = [int(seq) for stream, seq, _ in lines if stream.startswith("btcusdt@indicator_1m_rsi")]
    assert len(kl) >= 3 and kl == list(range(kl[0], kl[0] + 60_000 * len(kl), 60_000))
    assert len(rs) >= 3 and rs == sorted(set(rs))


def test_the_gateway_process_is_ready_serves_metrics_and_stops_cleanly(gateway_proc):
    base, proc = gateway_proc
    with urllib.request.urlopen(f"{base}/ready", timeout=30) as r:
        assert r.status == 200 and json.loads(r.read())["ready"] is True
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as r:
        text = r.read().decode()
    assert "kit_gateway_connections " in text and "kit_gateway_messages_sent_total" in text
    with urllib.request.urlopen(f"{base}/docs", timeout=30) as r:
        assert r.status == 200
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully (sockets closed with 1001), then re-raises the signal it caught,
    # so the exit status says "stopped by SIGTERM" (what systemd counts as a clean stop).
    assert proc.wait(timeout=30) == -signal.SIGTERM


def test_an_unreachable_exchange_is_one_error_line_and_a_nonzero_exit(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_")}
    env.update(KIT_DATA_DIR=str(tmp_path), KIT_EXCHANGE_URL=f"http://127.0.0.1:{free_port()}")
    done = subprocess.run([sys.executable, "-m", "kit", "gateway", "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: cannot reach the exchange") and "Traceback" not in done.stderr
