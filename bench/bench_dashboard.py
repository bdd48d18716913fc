"""Dashboard: concurrent live sessions on one ``panel serve`` process, opened by headless clients.

The stack is the real one: the simulator (60x: a 1m candle closes every second, four forming
updates per second) and ``panel serve`` as subprocesses, a SQLite store, and a logged-in user.
Each headless client does what a browser does on the wire: ``GET /dashboard`` with the login
cookie (the server builds the session's document), opens the Bokeh WebSocket with the page's
token and pulls the document; for kit's page it then opens ``/kit/live`` for the stream named in
the chart's tags, as the page's script does. It does not render.

Measured on the server process: RSS per session, CPU; on the clients: update latency from the
moment the dashboard's hub received the feed event (the ``recv_ms`` column it stamps on every
candle row) to the moment the client has the whole message, and bytes per update. RSS is also
measured after many session open/close cycles against its baseline.

Peer, in the same run and the same server: the same page whose chart is updated the way Panel
documents it, with ``source.patch``/``source.stream`` on each session's Bokeh document under its
lock (kit's own design until the live socket replaced it), paced to a process-wide budget of
updates per second and coalesced.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.fixtures.dashboard import free_port_now, login_cookie, wait_http

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "data" / "sample"
USER, PASSWORD = "bench", "bench-password-1"
ADMIN, ADMIN_PASSWORD = "benchadmin", "bench-admin-password-1"

PEER_APP = """\
from bench.bench_dashboard import ServerPushChart
from kit.dashboard.app import dashboard

dashboard(chart_cls=ServerPushChart).servable(title="peer")
"""

#: The peer's process-wide update budget (updates/s over all sessions) and least seconds between
#: two updates of one session: what kit used before the live socket, tuned on this machine.
PEER_BUDGET_PER_S = 200.0
#: kit's page with every pane open (volume, RSI, MACD): their values ride in the same rows.
PANES_PATH = "/dashboard?panes=volume,rsi,macd"
PEER_MIN_PACE_S = 0.1


def _server_push_chart_class() -> type:

    from kit.dashboard.chart import CandleChart, chart_row
    from kit.dashboard.hub import CHART_BARS, get_hub
    from kit.dashboard.market import price_header

    class ServerPushChart(CandleChart):
        """The peer: each session's chart patched on the server, one Bokeh message per update."""

        def __init__(self, doc: Any, interval: str, overlay_columns: dict[str, list[str]], **kw: Any) -> None:
            super().__init__(None, interval, overlay_columns, **kw)  # no page script, no live socket
            self.doc = doc
            self.stream = ("", interval)
            self._pending: list[Any] = []
            self._scheduled = False
            self._last_flush = 0.0

        def follow(self, symbol: str, interval: str, session_id: str = "") -> None:
            self.stream = (symbol, interval)

        def push(self, bar: Any) -> None:
            if self.closed:
                return
            self._pending.append(bar)
            if self._scheduled or self.doc is None:
                return
            self._scheduled = True
            pace = max(PEER_MIN_PACE_S, get_hub().listeners() / PEER_BUDGET_PER_S)
            wait = self._last_flush + pace - time.monotonic()
            if wait <= 0:
                self.doc.add_next_tick_callback(self.flush)
            else:
                self.doc.add_timeout_callback(self.flush, max(1, int(wait * 1000)))

        def flush(self) -> None:
            self._scheduled = False
            self._last_flush = time.monotonic()
            if self.closed or not self._pending:
                return
            latest = {b.open_time: b for b in self._pending}  # coalesce: newest state of each candle
            self._pending.clear()
            self.doc.hold("combine")  # one message for the whole flush
            try:
                for bar in latest.values():
                    self._apply(bar)
                self._fit_volume()
                self.header.text = price_header(get_hub(), self.stream[0], self.stream[1], bar)
            finally:
                self.doc.unhold()

        def _apply(self, bar: Any) -> None:
            times = self.source.data["open_time"]
            n, t = len(times), float(bar.open_time)
            row = chart_row(bar, self._columns)
            if n and times[n - 1] == t:
                self.source.patch({k: [(n - 1, v)] for k, v in row.items() if k not in ("open_time", "open")})
            elif n == 0 or t > times[n - 1]:
                self.source.stream({k: [v] for k, v in row.items()}, rollover=CHART_BARS)

    return ServerPushChart


def __getattr__(name: str) -> Any:  # ServerPushChart is built lazily: importing bench must stay light
    if name == "ServerPushChart":
        cls = _server_push_chart_class()
        globals()["ServerPushChart"] = cls
        return cls
    raise AttributeError(name)


# -- the stack ---------------------------------------------------------------------------------
# The tests' helpers: one definition of 'a free port' and 'wait until it answers'.
_free_port = free_port_now
_wait_http = wait_http
_login = login_cookie


def _start(tmp: Path) -> tuple[str, dict[str, subprocess.Popen]]:
    from kit.dashboard.serve import panel_command, panel_env
    from kit.settings import Settings
    from kit.store import Store, strategies, users

    db = f"sqlite:///{tmp / 'kit.db'}"
    store = Store(db)
    store.migrate()
    users.add(store, USER, PASSWORD)
    users.add(store, ADMIN, ADMIN_PASSWORD, role="admin")
    strategies.upsert(store, USER, name="bench-rsi", class_path="kit.strategies:RsiReversion", params={},
                      symbol="BTCUSDT", interval="1m")  # fmt: skip
    store.dispose()
    sim_port, port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIT_", "PANEL_", "BOKEH_"))}
    env.update(
        KIT_DATA_DIR=str(tmp), KIT_DATABASE_URL=db, KIT_EXCHANGE_URL=f"http://127.0.0.1:{sim_port}",
        KIT_REPLAY_DATA=str(SAMPLE_DIR), KIT_STATUS_PORT=str(_free_port()),
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )  # fmt: skip
    procs: dict[str, subprocess.Popen] = {}
    sim_log, dash_log = tmp / "simulator.log", tmp / "dashboard.log"
    procs["simulator"] = subprocess.Popen(
        [sys.executable, "-m", "kit", "exchange", "--port", str(sim_port), "--speed", "60", "--update-every", "15",
         "--symbols", "BTCUSDT,ETHUSDT"],
        env=env, stdout=sim_log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    _wait_http(f"http://127.0.0.1:{sim_port}/api/v3/time", procs["simulator"], sim_log)
    peer = tmp / "peer.py"
    peer.write_text(PEER_APP)
    cmd = panel_command(port, more_apps=[str(peer)],
                        extra=["--unused-session-lifetime", "1000", "--check-unused-sessions", "500"])  # fmt: skip
    procs["dashboard"] = subprocess.Popen(
        cmd, env=panel_env(Settings.from_env(env), env), stdout=dash_log.open("wb"), stderr=subprocess.STDOUT, cwd=tmp
    )
    base = f"http://127.0.0.1:{port}"
    _wait_http(f"{base}/login", procs["dashboard"], dash_log)
    return base, procs


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for p in reversed(list(procs.values())):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def _get(url: str, cookie: str) -> str:
    req = urllib.request.Request(url, headers={"Cookie": cookie})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.read().decode()


# -- a headless Bokeh client -------------------------------------------------------------------
class Session:
    """One dashboard session over the Bokeh WebSocket protocol (no rendering)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.update_bytes: list[int] = []
        self.updates = 0
        self.ws: Any = None
        self.live: Any = None
        self.task: asyncio.Task | None = None
        self.live_task: asyncio.Task | None = None

    async def open(self, base: str, path: str, cookie: str) -> None:
        from bokeh.protocol import Protocol
        from bokeh.protocol.receiver import Receiver
        from websockets.asyncio.client import connect

        html = await asyncio.to_thread(_get, base + path, cookie)
        m = re.search(r'"token":\s*"([^"]+)"', html)
        if not m:
            raise RuntimeError(f"no session token in {path}: {html[:300]}")
        # the page's arguments (``?panes=``) travel in the session token, not in the socket's address
        ws_url = base.replace("http://", "ws://") + path.partition("?")[0] + "/ws"
        # no client pings (browsers send none): a saturated server must not look like a dead one
        self.ws = await connect(ws_url, subprotocols=["bokeh", m.group(1)], max_size=None, open_timeout=120,
                                ping_interval=None, additional_headers={"Cookie": cookie, "Origin": base})  # fmt: skip
        self.protocol = Protocol()
        self.receiver = Receiver(self.protocol)
        await self._expect("ACK")
        req = self.protocol.create("PULL-DOC-REQ")
        for part in (req.header_json, req.metadata_json, req.content_json):
            await self.ws.send(part)
        doc = await self._expect("PULL-DOC-REPLY")
        self.task = asyncio.get_running_loop().create_task(self._read())
        tag, since = _candles(doc.content)
        if tag:  # kit's page: its script opens the live socket for the stream in the chart's tags
            stream, _, sid = tag.partition("|")
            q = urllib.parse.urlencode({"stream": stream, "since": int(since), "sid": sid})
            self.live = await connect(f"{base.replace('http://', 'ws://')}/kit/live?{q}", max_size=None,
                                      open_timeout=120, ping_interval=None,
                                      additional_headers={"Cookie": cookie, "Origin": base})  # fmt: skip
            self.live_task = asyncio.get_running_loop().create_task(self._read_live())

    async def _next_message(self) -> tuple[Any, int]:
        size = 0
        while True:
            frame = await self.ws.recv()
            size += len(frame)
            msg = await self.receiver.consume(frame)
            if msg is not None:
                return msg, size

    async def _expect(self, msgtype: str) -> Any:
        while True:
            msg, _ = await self._next_message()
            if msg.msgtype == msgtype:
                return msg

    async def _read_live(self) -> None:
        try:
            while True:
                frame = await self.live.recv()
                now = time.time() * 1000.0
                rows = json.loads(frame)["rows"]
                self.updates += 1
                self.latencies.append(now - max(r["recv_ms"] for r in rows))
                self.update_bytes.append(len(frame))
        except Exception:
            return

    async def _read(self) -> None:
        try:
            while True:
                msg, size = await self._next_message()
                now = time.time() * 1000.0
                if msg.msgtype != "PATCH-DOC":
                    continue
                stamps = []
                for ev in msg.content.get("events", []):
                    data = ev.get("patches") or ev.get("data") or {}
                    if isinstance(data, dict) and data.get("type") == "map":
                        data = dict(data.get("entries", []))
                    if not isinstance(data, dict) or "recv_ms" not in data:
                        continue
                    col = data["recv_ms"]
                    if isinstance(col, dict):  # an encoded array
                        continue
                    stamps += [v[1] if isinstance(v, list) else v for v in col]
                if stamps:
                    self.updates += 1
                    self.latencies.append(now - max(stamps))
                    self.update_bytes.append(size)
        except Exception:
            return

    async def close(self) -> None:
        for task in (self.task, self.live_task):
            if task is not None:
                task.cancel()
        for ws in (self.live, self.ws):
            if ws is not None:
                await ws.close()


def _candles(content: Any) -> tuple[str, float]:
    """The chart source's tag (``"SYMBOL@interval|sid"``) and newest open time in a pulled document."""
    stack = [content]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            attrs = node.get("attributes")
            if node.get("name") == "ColumnDataSource" and isinstance(attrs, dict) and attrs.get("name") == "candles":
                data = attrs.get("data", {})
                cols = dict(data.get("entries", [])) if isinstance(data, dict) else {}
                times = cols.get("open_time") or [0]
                tags = attrs.get("tags") or [""]
                return str(tags[0]), float(times[-1]) if isinstance(times, list) else 0.0
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return "", 0.0


async def _open_many(base: str, path: str, cookie: str, n: int, concurrency: int = 6) -> list[Session]:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> Session:
        async with sem:
            s = Session()
            await s.open(base, path, cookie)
            return s

    return list(await asyncio.gather(*(one() for _ in range(n))))


def _stats(base: str, admin_cookie: str) -> dict[str, Any]:
    return json.loads(_get(f"{base}/kit/stats", admin_cookie))


async def _wait_sessions(base: str, admin_cookie: str, n: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = await asyncio.to_thread(_stats, base, admin_cookie)
        if st["sessions"] <= n or time.monotonic() > deadline:
            return st
        await asyncio.sleep(0.5)


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


async def _phase(base: str, path: str, cookie: str, admin: str, n: int, window: float, proc: Any) -> dict[str, Any]:
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    sessions = await _open_many(base, path, cookie, n)
    open_s = time.perf_counter() - t0
    await asyncio.sleep(2.0)  # let the first history/refresh messages pass
    for s in sessions:
        s.latencies.clear()
        s.update_bytes.clear()
        s.updates = 0
    proc.cpu_percent(None)
    await asyncio.sleep(window)
    cpu = proc.cpu_percent(None) / 100.0
    rss1 = proc.memory_info().rss
    lat = [x for s in sessions for x in s.latencies]
    sizes = [x for s in sessions for x in s.update_bytes]
    starved = sum(1 for s in sessions if s.updates == 0)
    for s in sessions:
        await s.close()
    st = await _wait_sessions(base, admin, 1)
    return {
        "n": n, "open_s": open_s, "rss_per_session_mb": (rss1 - rss0) / n / 2**20, "cpu_cores": cpu,
        "p50": _pct(lat, 0.5), "p95": _pct(lat, 0.95), "p99": _pct(lat, 0.99), "max": max(lat, default=float("nan")),
        "updates_per_s": len(lat) / window / n, "bytes_per_update": statistics.mean(sizes) if sizes else float("nan"),
        "starved": starved, "left_open": st["sessions"] - 1,
    }  # fmt: skip


async def _cycles(base: str, cookie: str, admin: str, total: int, batch: int) -> float:
    t0 = time.perf_counter()
    done = 0
    while done < total:
        k = min(batch, total - done)
        sessions = await _open_many(base, "/dashboard", cookie, k, concurrency=k)
        for s in sessions:
            await s.close()
        done += k
    return time.perf_counter() - t0


async def _run(base: str, pid: int, quick: bool) -> dict[str, Any]:
    import psutil

    proc = psutil.Process(pid)
    cookie = await asyncio.to_thread(_login, base, USER, PASSWORD)
    admin = await asyncio.to_thread(_login, base, ADMIN, ADMIN_PASSWORD)
    n = 20 if quick else 100
    cycles = 100 if quick else 1000
    window = 15.0 if quick else 30.0
    out: dict[str, Any] = {"n": n, "cycles": cycles, "window": window}
    # warm-up: imports, the shared stream, caches
    await _cycles(base, cookie, admin, 10, 5)
    await _wait_sessions(base, admin, 0)
    await asyncio.sleep(2)
    out["rss_idle_mb"] = proc.memory_info().rss / 2**20
    out["kit"] = await _phase(base, "/dashboard", cookie, admin, n, window, proc)
    await _wait_sessions(base, admin, 0)
    out["panes"] = await _phase(base, PANES_PATH, cookie, admin, n, window, proc)
    await _wait_sessions(base, admin, 0)
    await asyncio.sleep(2)
    out["rss_base_mb"] = proc.memory_info().rss / 2**20
    out["cycle_s"] = await _cycles(base, cookie, admin, cycles, 10)
    st = await _wait_sessions(base, admin, 0)
    await asyncio.sleep(2)
    out["rss_after_cycles_mb"] = proc.memory_info().rss / 2**20
    out["cycle_left_open"] = st["sessions"]
    out["cycle_listeners"] = sum(s["listeners"] for s in st["streams"])
    out["peer"] = await _phase(base, "/peer", cookie, admin, n, window, proc)
    return out


def main(quick: bool) -> str:
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
    with tempfile.TemporaryDirectory(prefix="kit-bench-dash-") as tmp:
        base, procs = _start(Path(tmp))
        try:
            r = asyncio.run(_run(base, procs["dashboard"].pid, quick))
        finally:
            _stop(procs)
    k, p, kp = r["kit"], r["peer"], r["panes"]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "n/a"

    growth = r["rss_after_cycles_mb"] / r["rss_base_mb"] - 1
    lines = [
        "## Dashboard: live sessions on one `panel serve` process",
        "",
        f"{r['n']} concurrent sessions of one logged-in user on the BTCUSDT 1m chart; simulator at 60x "
        "(a candle closes every second, 4 forming updates/s); headless clients speak the Bokeh WebSocket "
        "protocol and, for kit's page, open its `/kit/live` socket as its script does (no rendering); "
        f"{r['window']:.0f} s measuring window. Latency: from the dashboard's hub receiving the feed event to "
        "the client holding the whole update message. Peer: the same page whose chart is patched per session "
        "on the server (`source.patch`/`stream` under each Bokeh document's lock, Panel's documented way; kit's "
        f"own design before the live socket), paced to {PEER_BUDGET_PER_S:.0f} updates/s per process, coalesced.",
        "",
        "| | kit (live socket, encoded once) | kit, panes open | peer (Bokeh patch per session) | kit / peer |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| update latency p50 (ms) | {k['p50']:.1f} | {kp['p50']:.1f} | {p['p50']:.1f} | "
        f"{ratio(k['p50'], p['p50'])} |",
        f"| update latency p95 (ms) | {k['p95']:.1f} | {kp['p95']:.1f} | {p['p95']:.1f} | "
        f"{ratio(k['p95'], p['p95'])} |",
        f"| update latency p99 (ms) | {k['p99']:.1f} | {kp['p99']:.1f} | {p['p99']:.1f} | "
        f"{ratio(k['p99'], p['p99'])} |",
        f"| bytes per update | {k['bytes_per_update']:,.0f} | {kp['bytes_per_update']:,.0f} | "
        f"{p['bytes_per_update']:,.0f} | {ratio(k['bytes_per_update'], p['bytes_per_update'])} |",
        f"| updates/s per session | {k['updates_per_s']:.2f} | {kp['updates_per_s']:.2f} | {p['updates_per_s']:.2f} | "
        f"{ratio(k['updates_per_s'], p['updates_per_s'])} |",
        f"| server CPU (cores) | {k['cpu_cores']:.2f} | {kp['cpu_cores']:.2f} | {p['cpu_cores']:.2f} | "
        f"{ratio(k['cpu_cores'], p['cpu_cores'])} |",
        f"| RSS per session (MiB) | {k['rss_per_session_mb']:.2f} | {kp['rss_per_session_mb']:.2f} | "
        f"{p['rss_per_session_mb']:.2f}* | {ratio(k['rss_per_session_mb'], p['rss_per_session_mb'])} |",
        f"| time to open {r['n']} sessions (s) | {k['open_s']:.1f} | {kp['open_s']:.1f} | {p['open_s']:.1f} | "
        f"{ratio(k['open_s'], p['open_s'])} |",
        f"| sessions that got no update | {k['starved']} | {kp['starved']} | {p['starved']} | |",
        "",
        "\\* kit's per-session RSS is measured first, from the idle process (RSS "
        f"{r['rss_idle_mb']:.0f} MiB); the peer's last, on a heap already grown by the earlier phases, which "
        "flatters it.",
        "",
        f"Goal: {r['n']} live sessions with p95 < 500 ms: **{'met' if k['p95'] < 500 else 'NOT met'}** "
        f"(p95 {k['p95']:.0f} ms); with volume, RSI and MACD panes open: "
        f"**{'met' if kp['p95'] < 500 else 'NOT met'}** (p95 {kp['p95']:.0f} ms).",
        "",
        f"Open/close cycles: {r['cycles']} sessions opened and closed (10 at a time) in {r['cycle_s']:.0f} s "
        f"({r['cycle_s'] / r['cycles'] * 1000:.0f} ms each). Server RSS before {r['rss_base_mb']:.0f} MiB, after the "
        f"cycles {r['rss_after_cycles_mb']:.0f} MiB: **{growth:+.1%}** "
        f"(goal within 10%: **{'met' if abs(growth) <= 0.10 else 'NOT met'}**); sessions left open "
        f"{r['cycle_left_open']}, stream listeners left {r['cycle_listeners']}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(quick="--quick" in sys.argv))
