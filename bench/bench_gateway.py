"""Gateway: many WebSocket clients on one ``kit gateway`` process, against a naive fan-out.

The feed is synthetic (a :class:`kit.feed.CandleSource`): 50 symbols x 6 intervals = 300 candle
streams, each pushing a forming update every 2 s (Binance's kline rate) and its closed candle when
the interval ends, phases spread over the 2 s. Each event carries its emission time (epoch ms) in
the candle's volume, so a client measures feed event -> client: emission -> the gateway's engine
and fan-out -> the socket -> the client's receipt.

Clients run in separate processes (several, ``asyncio`` + ``websockets`` each), connect, wait, then
each subscribes to 10 of the 300 streams at random (the same draw for both servers). Measured:
delivery latency p50/p99 (after a warm-up), the server's CPU (percent of one core) over the window,
RSS per idle client (connected, not yet subscribed) over the server's baseline, and messages per
second delivered.

Peer, in the same run with the same clients and feed: a FastAPI/uvicorn WebSocket server that
does what a first version does: per event, per subscribed client, one ``json.dumps`` and one
awaited ``send_text`` (no shared encoding, no per-client queue).

    python -m bench gateway --quick
    python -m bench.bench_gateway serve kit 9500     # one server, by hand
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

# at the top: FastAPI resolves the endpoint's annotations (``ws: WebSocket``) in module globals
from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = tuple(f"S{i:02d}USDT" for i in range(50))
INTERVALS = ("1m", "3m", "5m", "15m", "1h", "4h")
STREAMS = tuple(f"{s.lower()}@kline_{i}" for s in SYMBOLS for i in INTERVALS)
PUSH_S = 2.0  # Binance pushes a forming kline every 2 s per stream
PER_CLIENT = 10
_V = re.compile(r'"v": ?"([0-9.]+)"')


# --------------------------------------------------------------------------- the synthetic feed


class Synthetic:
    """A :class:`kit.feed.CandleSource` pushing every stream at Binance's rate, stamped with the time."""

    def subscribe(
        self,
        symbol: str,
        interval: str,
        *,
        history: int = 0,
        mode: str = "lossless",
        gaps: bool = False,
        max_queue: int | None = None,
    ) -> Any:
        return _Sub(symbol, interval, history)


def _interval_ms(interval: str) -> int:
    from kit.market.intervals import interval_ms

    return interval_ms(interval)


class _Sub:
    """History (closed candles, volume 0: not measured), then live events on wall-clock time."""

    def __init__(self, symbol: str, interval: str, history: int) -> None:
        self.symbol, self.interval = symbol, interval
        self.ims = _interval_ms(interval)
        self.phase = (hash((symbol, interval)) % 2000) / 1000.0
        now = int(time.time() * 1000)
        self.open = now - now % self.ims
        self.price = 100.0 + (hash(symbol) % 100)
        self.pending: deque[Any] = deque(self._candle(self.open - k * self.ims, True, 0.0)
                                         for k in range(min(history, 100), 0, -1))  # fmt: skip
        self.next = time.time() + self.phase
        self.closed = False

    @property
    def queued(self) -> int:
        return len(self.pending)

    def _candle(self, t: int, closed: bool, stamp: float) -> Any:
        from kit.feed import KlineEvent
        from kit.market.candle import Candle

        self.price *= 1.0 + random.uniform(-1e-4, 1e-4)
        p = self.price
        return KlineEvent(self.symbol, self.interval, Candle(t, p, p * 1.001, p * 0.999, p, stamp), closed)

    async def start(self) -> _Sub:
        return self

    def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> _Sub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> _Sub:
        return self

    async def __anext__(self) -> Any:
        if self.pending:
            return self.pending.popleft()
        if self.closed:
            raise StopAsyncIteration
        await asyncio.sleep(max(0.0, self.next - time.time()))
        self.next += PUSH_S
        now = time.time() * 1000
        opened = int(now) - int(now) % self.ims
        if opened > self.open:  # the interval ended: its closed candle, then the new one forming
            self.pending.append(self._candle(opened, False, now))
            last, self.open = self.open, opened
            return self._candle(last, True, now)
        return self._candle(self.open, False, now)


# --------------------------------------------------------------------------- the servers


async def serve_kit(port: int) -> None:
    import uvicorn

    from kit.gateway import GatewayConfig, create_app
    from kit.store import Store

    tmp = tempfile.mkdtemp(prefix="kit-bench-gateway-")
    cfg = GatewayConfig(host="127.0.0.1", port=port, symbols=SYMBOLS, max_connections_per_address=1_000_000,
                        ring=100, grace_s=600.0)  # fmt: skip
    app = create_app(cfg, feed=Synthetic(), store=Store(f"sqlite:///{tmp}/bench.db"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets-sansio",
                                           access_log=False, log_level="warning", backlog=4096))  # fmt: skip
    await server.serve()


def naive_app() -> Any:
    """The peer: per event, per client, one json.dumps and one awaited send."""
    app = FastAPI()
    feed = Synthetic()
    listeners: dict[str, set[WebSocket]] = {}
    tasks: dict[str, asyncio.Task[None]] = {}

    async def pump(name: str) -> None:
        sym, _, kind = name.partition("@")
        interval = kind.removeprefix("kline_")
        async for ev in feed.subscribe(sym.upper(), interval):
            c = ev.candle
            for ws in list(listeners.get(name, ())):
                body = {"e": "kline", "E": int(time.time() * 1000), "s": ev.symbol,
                        "k": {"t": c[0], "i": interval, "o": f"{c[1]:.8f}", "c": f"{c[4]:.8f}", "h": f"{c[2]:.8f}",
                              "l": f"{c[3]:.8f}", "v": f"{c[5]:.8f}", "x": ev.closed}}  # fmt: skip
                try:
                    await ws.send_text(json.dumps({"stream": name, "data": body}))
                except Exception:
                    listeners[name].discard(ws)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/api/v1/ws")
    async def ws_endpoint(ws: WebSocket) -> None:
        await ws.accept()
        mine: list[str] = []
        try:
            while True:
                req = json.loads(await ws.receive_text())
                for name in req.get("params", []):
                    if name in STREAMS:
                        listeners.setdefault(name, set()).add(ws)
                        mine.append(name)
                        if name not in tasks:
                            tasks[name] = asyncio.create_task(pump(name))
                await ws.send_text(json.dumps({"result": None, "id": req.get("id")}))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for name in mine:
                listeners.get(name, set()).discard(ws)

    return app


async def serve_naive(port: int) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(naive_app(), host="127.0.0.1", port=port, ws="websockets-sansio",
                                           access_log=False, log_level="warning", backlog=4096))  # fmt: skip
    await server.serve()


# --------------------------------------------------------------------------- the clients


async def run_clients(url: str, n: int, seed: int, subscribe_at: float, measure_at: float, end_at: float) -> dict:
    from websockets.asyncio.client import connect

    lat: list[float] = []
    got = [0]
    conns: list[Any] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(32)
    rng = random.Random(seed)
    picks = [rng.sample(STREAMS, PER_CLIENT) for _ in range(n)]

    async def one(i: int) -> None:
        try:
            async with gate:
                ws = await connect(url, ping_interval=None, max_size=2**20, open_timeout=120)
            conns.append(ws)
            await asyncio.sleep(max(0.0, subscribe_at - time.time()))
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": picks[i], "id": 1}))
            async for msg in ws:
                now = time.time()
                m = _V.search(msg)
                if m is None:
                    continue
                stamp = float(m.group(1))
                if stamp > 1e12 and now >= measure_at:
                    got[0] += 1
                    lat.append(now * 1000 - stamp)
        except Exception as exc:
            errors.append(type(exc).__name__)

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await asyncio.sleep(max(0.0, end_at - time.time()))
    connected = len(conns)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    return {"lat": lat, "messages": got[0], "connected": connected, "errors": errors[:20]}


# --------------------------------------------------------------------------- the run


def _q(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else math.nan


def _wait(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=3):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def measure(mode: str, clients: int, procs: int, window: float, warm: float) -> dict[str, Any]:
    import psutil

    from tests.fixtures.dashboard import free_port_now

    port = free_port_now()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "bench.bench_gateway", "serve", mode, str(port)], env=env,
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    outs: list[str] = []
    workers: list[subprocess.Popen] = []
    try:
        _wait(f"http://127.0.0.1:{port}/health", server)
        ps = psutil.Process(server.pid)
        time.sleep(1.0)
        base_rss = ps.memory_info().rss
        connect_s = max(6.0, clients / 60)
        subscribe_at = time.time() + connect_s
        measure_at = subscribe_at + warm
        end_at = measure_at + window
        share = [clients // procs + (1 if k < clients % procs else 0) for k in range(procs)]
        tmp = tempfile.mkdtemp(prefix="kit-bench-gateway-")
        for k, n in enumerate(share):
            out = os.path.join(tmp, f"clients{k}.json")
            outs.append(out)
            args = [f"ws://127.0.0.1:{port}/api/v1/ws", str(n), str(k), str(subscribe_at), str(measure_at),
                    str(end_at), out]  # fmt: skip
            workers.append(subprocess.Popen([sys.executable, "-m", "bench.bench_gateway", "clients", *args],
                                            env=env, cwd=ROOT))  # fmt: skip
        _sleep_until(subscribe_at - 0.5)
        idle_rss = ps.memory_info().rss
        _sleep_until(measure_at)
        c0, t0 = ps.cpu_times(), time.monotonic()
        _sleep_until(end_at)
        c1, t1 = ps.cpu_times(), time.monotonic()
        for w in workers:
            w.wait(timeout=120)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
    results = [json.loads(Path(o).read_text()) for o in outs if Path(o).exists()]
    lat = sorted(x for r in results for x in r["lat"])
    connected = sum(r["connected"] for r in results)
    return {
        "mode": mode,
        "clients": clients,
        "connected": connected,
        "p50": _q(lat, 0.5),
        "p99": _q(lat, 0.99),
        "cpu": 100.0 * ((c1.user + c1.system) - (c0.user + c0.system)) / (t1 - t0),
        "idle_kib": (idle_rss - base_rss) / max(1, connected) / 1024,
        "rate": sum(r["messages"] for r in results) / window,
        "errors": sorted({e for r in results for e in r["errors"]}),
    }


def main(quick: bool) -> str:
    clients, procs = (60, 2) if quick else (2000, 4)
    window, warm = (8.0, 3.0) if quick else (30.0, 6.0)
    rows = [measure(mode, clients, procs, window, warm) for mode in ("kit", "naive")]
    kit, naive = rows
    lines = [
        f"### {clients:,} WebSocket clients x {PER_CLIENT} of {len(STREAMS)} streams, one gateway process",
        "",
        f"Synthetic feed: {len(SYMBOLS)} symbols x {len(INTERVALS)} intervals, a forming update per stream every "
        f"{PUSH_S:g} s; clients in {procs} separate processes; {window:g} s measured after {warm:g} s.",
        "",
        "| server | connected | p50 ms | p99 ms | CPU % of a core | RSS KiB per idle client | messages/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = "kit gateway" if r["mode"] == "kit" else "naive (json.dumps + send per client)"
        lines.append(f"| {name} | {r['connected']:,} | {r['p50']:.1f} | {r['p99']:.1f} | {r['cpu']:.0f} | "
                     f"{r['idle_kib']:.1f} | {r['rate']:,.0f} |")  # fmt: skip
    ratio = naive["p99"] / kit["p99"] if kit["p99"] > 0 else math.nan
    cpu = naive["cpu"] / kit["cpu"] if kit["cpu"] > 0 else math.nan
    lines += ["", f"p99: the naive peer's is {ratio:.2f}x kit's; CPU: {cpu:.2f}x. Goal: p99 < 50 ms at 2,000 "
              "clients on one core, < 50 KiB per idle client."]  # fmt: skip
    errs = [f"{r['mode']}: {', '.join(r['errors'])}" for r in rows if r["errors"]]
    if errs:
        lines += ["", f"Client errors: {'; '.join(errs)}."]
    return "\n".join(lines)


def _cli(argv: list[str]) -> None:
    if argv[0] == "serve":
        asyncio.run(serve_kit(int(argv[2])) if argv[1] == "kit" else serve_naive(int(argv[2])))
    elif argv[0] == "clients":
        url, n, seed, sub_at, measure_at, end_at, out = argv[1:8]
        res = asyncio.run(run_clients(url, int(n), int(seed), float(sub_at), float(measure_at), float(end_at)))
        Path(out).write_text(json.dumps(res))
    else:
        raise SystemExit("usage: python -m bench.bench_gateway serve kit|naive PORT | clients ...")


if __name__ == "__main__":
    _cli(sys.argv[1:])
