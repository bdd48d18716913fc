"""Exchange simulator benchmark: closed-candle events per second at max speed, and REST klines pages per second.

Client and server share one process and one core (as in ``kit.replay``), over loopback.

Peers, measured in the same run:
- WebSocket: a bare ``websockets`` server sending the same pre-built kline frames with one
  ``await ws.send(frame)`` per frame (no clock, no subscriptions, no per-connection queue);
- REST: a bare ``websockets`` ``process_request`` answering a constant pre-built 1000-row body.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pandas as pd
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from kit.exchange import ExchangeSimulator, _wire
from kit.market.files import read_candles, to_ms

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"


def _frames(data: dict[tuple[str, str], pd.DataFrame], skip: int) -> list[str]:
    """The combined-stream frames the simulator sends for ``data`` (after its first ``skip`` rows)."""
    out: list[tuple[int, str, str]] = []
    for (sym, _), f in data.items():
        name = f"{sym.lower()}@kline_1m"
        t = to_ms(f.index)[skip:].tolist()
        rows = zip(
            t, *(f[c].to_numpy()[skip:].tolist() for c in ("open", "high", "low", "close", "volume")), strict=True
        )
        for ti, o, h, lo, c, v in rows:
            body = _wire.kline_body(sym, "1m", ti, ti + 60_000, o, h, lo, c, v, True)
            out.append((ti, name, _wire.combined(name, _wire.kline_event(sym, ti + 60_000, body))))
    out.sort()
    return [f for _, _, f in out]


async def _drain(url: str, n: int) -> float:
    async with connect(url, max_queue=None) as ws:
        t0 = time.perf_counter()
        for _ in range(n):
            await ws.recv()
        return time.perf_counter() - t0


async def _ws_sim(data: dict, n: int) -> float:
    sim = ExchangeSimulator(data=data, speed="max", weight_limit=None)
    sim.pause()
    async with sim, connect(f"{sim.ws_url}/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m", max_queue=None) as ws:
        sim.resume()
        t0 = time.perf_counter()
        for _ in range(n):
            await ws.recv()
        return time.perf_counter() - t0


async def _ws_peer(frames: list[str]) -> float:
    async def handler(ws) -> None:
        for f in frames:
            await ws.send(f)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        return await _drain(f"ws://127.0.0.1:{port}", len(frames))


async def _get(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    body = await reader.read()
    writer.close()
    return len(body)


async def _rest(port: int, path: str, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await _get(port, path)
    return time.perf_counter() - t0


async def _rest_sim_and_peer(data: dict, n: int) -> tuple[float, float]:
    sim = ExchangeSimulator(data=data, speed="max", weight_limit=None)
    sim.pause()
    path = "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000"
    async with sim:
        body = await asyncio.to_thread(_urlget, sim.rest_url + path)
        t_sim = await _rest(sim.port, path, n)

    def constant(_conn, _req) -> Response:
        headers = Headers(
            [("Connection", "close"), ("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return Response(200, "OK", headers, body)

    async with serve(lambda ws: None, "127.0.0.1", 0, process_request=constant) as server:
        t_peer = await _rest(server.sockets[0].getsockname()[1], path, n)
    return t_sim, t_peer


def _urlget(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url) as r:
        return r.read()


def main(quick: bool) -> str:
    rows = 6_000 if quick else 60_000
    data = {
        (s, "1m"): read_candles(SAMPLE / f"{s}_1m_20250520_20250818.csv.gz").iloc[:rows] for s in ("BTCUSDT", "ETHUSDT")
    }
    frames = _frames(data, 1000)  # the simulator starts 1000 candles in
    n = len(frames)
    t_sim = asyncio.run(_ws_sim(data, n))
    t_peer = asyncio.run(_ws_peer(frames))
    n_rest = 50 if quick else 300
    r_sim, r_peer = asyncio.run(_rest_sim_and_peer(data, n_rest))
    ws_sim, ws_peer = n / t_sim, n / t_peer
    rs_sim, rs_peer = n_rest / r_sim, n_rest / r_peer
    return "\n".join(
        [
            "## Exchange simulator",
            "",
            "Max-speed replay of real 1m candles (BTCUSDT + ETHUSDT, one combined connection), client in the",
            "same process; REST pages of 1000 klines, one TCP connection per request.",
            "",
            "| figure | kit simulator | peer | ratio |",
            "| --- | --- | --- | --- |",
            f"| closed-candle events/s over WebSocket ({n:,} events) | {ws_sim:,.0f} | {ws_peer:,.0f} "
            f"(bare `websockets` send loop) | {ws_sim / ws_peer:.2f}x |",
            f"| `/api/v3/klines` limit=1000 pages/s ({n_rest} requests) | {rs_sim:,.0f} | {rs_peer:,.0f} "
            f"(constant body) | {rs_sim / rs_peer:.2f}x |",
            "",
        ]
    )


if __name__ == "__main__":
    print(main(quick=True))
