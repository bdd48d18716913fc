"""``kit up`` end to end: simulator + daemon + dashboard as real processes, login, Ctrl-C."""

from __future__ import annotations

import http.cookiejar
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.fixtures.dashboard import SAMPLE_DIR, free_port_now

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp: Path, sim_port: int, status_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIT_", "PANEL_", "BOKEH_"))}
    env.update(
        KIT_DATA_DIR=str(tmp), KIT_REPLAY_DATA=str(SAMPLE_DIR), KIT_EXCHANGE_URL=f"http://127.0.0.1:{sim_port}",
        KIT_STATUS_PORT=str(status_port), KIT_DEMO_PASSWORD="demo-pass-for-tests",
        KIT_GATEWAY_PORT=str(free_port_now()),
    )  # fmt: skip
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
    return env


class Output:
    """Lines of a child's stdout, read on a thread so the test can wait with a timeout."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self._q.put(line)
        self._q.put(None)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return "".join(self.lines)
        raise AssertionError(f"{text!r} not printed; output so far:\n{''.join(self.lines)}")


def _login(base: str, user: str, password: str) -> tuple[str, int, str]:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    opener.open(f"{base}/login", timeout=30).read()
    with opener.open(f"{base}/login", data=data, timeout=60) as resp:
        return resp.geturl(), resp.status, resp.read().decode(errors="replace")


def _ctrl_c_stops_everything(proc: subprocess.Popen, children: list[psutil.Process]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"still running after Ctrl-C: {alive}"


def _kill(proc: subprocess.Popen, children: list[psutil.Process]) -> None:
    """After a failure: nothing of this kit up may outlive the test."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    for c in children:
        if c.is_running():
            c.kill()


@pytest.mark.slow
def test_kit_up_runs_everything_and_stops_cleanly_on_ctrl_c(tmp_path):
    dash, sim, status = free_port_now(), free_port_now(), free_port_now()
    env = _env(tmp_path, sim, status)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit", "up", "--port", str(dash), "--speed", "60"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out = Output(proc)
    children: list[psutil.Process] = []
    try:
        text = out.wait_for("Press Ctrl-C", timeout=300)
        base = f"http://127.0.0.1:{dash}"
        assert f"dashboard   {base}/" in text
        assert "user demo (viewer), password from KIT_DEMO_PASSWORD" in text
        assert "demo-pass-for-tests" not in text  # the operator set it: never printed
        assert "REPLAY (simulator" in text
        children = psutil.Process(proc.pid).children(recursive=True)
        cmds = [" ".join(c.cmdline()) for c in children]
        assert any("kit exchange" in c for c in cmds)
        assert any("panel serve" in c for c in cmds)
        assert any("kit daemon" in c for c in cmds)
        assert any("kit gateway" in c for c in cmds)
        gw = f"http://127.0.0.1:{env['KIT_GATEWAY_PORT']}"
        assert f"gateway     {gw}/" in text
        with urllib.request.urlopen(f"{gw}/api/v1/ticker/price?symbol=BTCUSDT", timeout=30) as r:
            assert r.status == 200 and float(json.loads(r.read())["price"]) > 0

        # the demo user logs in; a wrong password does not
        url, code, body = _login(base, "demo", "demo-pass-for-tests")
        assert code == 200 and urllib.parse.urlparse(url).path == "/"
        assert "kit · dashboard" in body
        url, _, _ = _login(base, "demo", "wrong")
        assert "/login?error" in url

        # first run: two promoted example strategies for demo, trading from the simulator's clock
        from kit.store import Store, strategies

        store = Store(f"sqlite:///{tmp_path / 'kit.db'}")
        recs = strategies.list(store, "demo")
        store.dispose()
        assert sorted(r.symbol for r in recs) == ["BTCUSDT", "ETHUSDT"] and all(r.active for r in recs)
        assert all(r.start_time < 1_800_000_000_000 for r in recs)  # simulated 2025, not the wall clock

        # the daemon answers on its status port
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{status}/health", timeout=3) as r:
                    assert r.status == 200
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

        # a second kit up on the same port fails with a readable error
        second = subprocess.run(
            [sys.executable, "-m", "kit", "up", "--port", str(dash)], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert second.returncode != 0
        assert f"port {dash} (dashboard) is already in use" in second.stdout + second.stderr
        assert "Traceback" not in second.stdout + second.stderr

        _ctrl_c_stops_everything(proc, children)
        out.wait_for("stopped.", timeout=5)
    finally:
        _kill(proc, children)


@pytest.mark.slow
@pytest.mark.redis
def test_kit_up_with_redis_relays_the_one_feed_to_the_dashboard(tmp_path, redis_url):
    """With KIT_REDIS_URL, `kit up` adds `kit relay`, and the dashboard's candles come through Redis."""
    import asyncio
    import json
    import uuid

    import redis
    from websockets.asyncio.client import connect

    from tests.fixtures.dashboard import login_cookie

    prefix = f"kit-test-up-{uuid.uuid4().hex[:8]}"
    dash, sim, status = free_port_now(), free_port_now(), free_port_now()
    env = _env(tmp_path, sim, status) | {"KIT_REDIS_URL": redis_url, "KIT_REDIS_PREFIX": prefix}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit", "up", "--port", str(dash), "--speed", "60"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out = Output(proc)
    r = redis.Redis.from_url(redis_url)
    children: list[psutil.Process] = []
    try:
        text = out.wait_for("Press Ctrl-C", timeout=300)
        assert "starting the relay" in text and "feed        relayed through Redis at redis://" in text
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("kit relay" in " ".join(c.cmdline()) for c in children)
        base = f"http://127.0.0.1:{dash}"
        cookie = login_cookie(base, "demo", "demo-pass-for-tests")

        async def watch() -> list[dict]:
            url = base.replace("http://", "ws://") + "/kit/live?stream=BTCUSDT@1m&since=0"
            async with connect(url, additional_headers={"Cookie": cookie}) as ws:
                async with asyncio.timeout(120):
                    return [json.loads(await ws.recv()) for _ in range(6)]

        msgs = asyncio.run(watch())
        assert msgs[0]["rows"] and all(m["s"] == "BTCUSDT@1m" for m in msgs)
        # the dashboard asked the relay for the stream, and the relay keeps it in Redis
        assert any(b"btcusdt" in k.lower() for k in r.zrange(f"{prefix}:demand", 0, -1))
        assert any(r.xlen(k) > 0 for k in r.scan_iter(f"{prefix}:closed:*"))
        _ctrl_c_stops_everything(proc, children)
    finally:
        _kill(proc, children)
        for key in r.scan_iter(f"{prefix}:*"):
            r.delete(key)


def test_kit_up_names_an_unreachable_redis(tmp_path):
    env = _env(tmp_path, free_port_now(), free_port_now()) | {"KIT_REDIS_URL": "redis://:pw@127.0.0.1:1/0"}
    res = subprocess.run([sys.executable, "-m", "kit", "up", "--port", str(free_port_now())], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode != 0
    text = res.stdout + res.stderr
    assert "KIT_REDIS_URL is set but Redis at redis://:***@127.0.0.1:1/0 does not answer" in text
    assert "Traceback" not in text and ":pw@" not in text
