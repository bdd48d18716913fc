"""Feed benchmark: kline frames parsed and delivered per second, and delivery latency under fan-out.

Frames are Binance combined-stream kline events (the exact wire format) built from real candles
of ``data/sample``. They enter the feed where a WebSocket frame does (``Feed._on_frame``), so the
figures are the feed's own cost: parse, validate, order, fan out, wake the subscriber.

Peers, measured in the same run:
- a plain ``json.loads`` loop over the same frames (parse only, nothing delivered);
- the textbook fan-out: ``json.loads`` + one ``asyncio.Queue`` per subscriber (``put_nowait``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import time
from pathlib import Path

import numpy as np

from kit.feed import Feed, Lifecycle, Subscription
from kit.feed._stream import Stream, stream_name
from kit.market.candle import Candle
from kit.market.files import read_candles, to_ms
from kit.market.intervals import interval_ms

try:
    import orjson
except ImportError:  # pragma: no cover
    orjson = None

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS_50 = [f"S{i:02d}USDT" for i in range(50)]
INTERVALS_6 = ["1m", "5m", "15m", "1h", "4h", "1d"]


def _frame(symbol: str, interval: str, t: int, step: int, e: int, o, h, lo, c, v, closed: bool) -> str:
    k = (
        f'{{"t":{t},"T":{t + step - 1},"s":"{symbol}","i":"{interval}","f":100,"L":200,"o":"{o:.8f}",'
        f'"c":"{c:.8f}","h":"{h:.8f}","l":"{lo:.8f}","v":"{v:.8f}","n":100,"x":{"true" if closed else "false"},'
        f'"q":"{v * c:.8f}","V":"{v / 2:.8f}","Q":"{v * c / 2:.8f}","B":"0"}}'
    )
    return f'{{"stream":"{stream_name(symbol, interval)}","data":{{"e":"kline","E":{e},"s":"{symbol}","k":{k}}}}}'


def _frames_one_stream(n_candles: int) -> tuple[list[str], int]:
    """Binance's pattern for one 1m stream: 29 forming updates (every 2 s) then the closed candle."""
    df = read_candles(ROOT / "data" / "sample" / "BTCUSDT_1m_20250520_20250818.csv.gz").iloc[:n_candles]
    t = to_ms(df.index)
    step = 60_000
    out = []
    for ti, o, h, lo, c, v in zip(t, df.open, df.high, df.low, df.close, df.volume, strict=True):
        ti = int(ti)
        for j in range(1, 30):
            out.append(_frame("BTCUSDT", "1m", ti, step, ti + 2000 * j, o, h, lo, c, v * j / 30, False))
        out.append(_frame("BTCUSDT", "1m", ti, step, ti + step, o, h, lo, c, v, True))
    return out, int(t[0])


def _attach(feed: Feed, symbol: str, interval: str, first_open: int, **kw) -> Stream:
    """Register a live stream whose next candle opens at ``first_open``; no socket (frames are injected)."""
    name = stream_name(symbol, interval)
    st = feed._streams.get(name)
    if st is None:
        st = feed._streams[name] = Stream(symbol, interval)
        # The ordering's own path to live, without the history fetch: the first update, then go live.
        step = interval_ms(interval)
        st.order.on_kline(Candle(first_open - step, 1.0, 1.0, 1.0, 1.0, 0.0), True, 0)
        st.order.go_live(first_open)
        st.order.resume()
    return st


def _subscribe(feed: Feed, st: Stream, **kw) -> Subscription:
    sub = feed.subscribe(st.symbol, st.interval, **kw)
    sub.state = Lifecycle.ACTIVE
    st.subs.append(sub)
    sub.move_cursor(st.last_closed)
    return sub


async def _throughput_kit(frames: list[str], first_open: int) -> float:
    feed = Feed("ws://127.0.0.1:9", "http://127.0.0.1:9", max_queue=1_000_000)
    await feed.start()
    st = _attach(feed, "BTCUSDT", "1m", first_open)
    sub = _subscribe(feed, st)
    n = len(frames)
    got = 0

    async def consume() -> None:
        nonlocal got
        async for _ev in sub:
            got += 1
            if got == n:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    on_frame = feed._on_frame
    gc.collect()
    t0 = time.perf_counter()
    for i in range(0, n, 256):
        for raw in frames[i : i + 256]:
            on_frame(raw)
        await asyncio.sleep(0)  # the consumer drains, as between two socket reads
    await task
    dt = time.perf_counter() - t0
    assert got == n, (got, n, feed.stats()["dropped"])
    await feed.stop()
    return n / dt


def _throughput_loads(frames: list[str], loads) -> float:
    gc.collect()
    t0 = time.perf_counter()
    for raw in frames:
        loads(raw)
    return len(frames) / (time.perf_counter() - t0)


def _rate_frames(seconds: float, burst: bool = False) -> list[tuple[float, str, int]]:
    """(send time, frame, id) at Binance's real rate: each of 300 streams pushes every 2 s."""
    streams = [(s, iv) for s in SYMBOLS_50 for iv in INTERVALS_6]
    period = 2.0
    out = []
    seq = 0
    base = 1_748_736_000_000  # a Monday 00:00 UTC-aligned day: every interval's bucket starts here
    for k in range(int(seconds / period)):
        for j, (s, iv) in enumerate(streams):
            seq += 1
            # Spread evenly, as independent streams are; or all 300 at once (one TCP read, worst case).
            at = k * period + (0.0 if burst else j * period / len(streams))
            step = interval_ms(iv)
            # The id rides in the volume field; forming updates of one candle with rising E.
            out.append(
                (at, _frame(s, iv, base, step, base + 2000 * (k + 1), 100.0, 101.0, 99.0, 100.5, seq, False), seq)
            )
    return out


def _assign(n_subs: int, n_streams: int) -> list[int]:
    """Stream index of each subscription: round-robin; fewer subscribers than streams take several."""
    return [i % n_streams for i in range(max(n_subs, n_streams))]


async def _latency_kit(n_subs: int, seconds: float, burst: bool = False) -> tuple[float, float, int]:
    feed = Feed("ws://127.0.0.1:9", "http://127.0.0.1:9")
    await feed.start()
    base = 1_748_736_000_000
    streams = [_attach(feed, s, iv, base) for s in SYMBOLS_50 for iv in INTERVALS_6]
    subs = [_subscribe(feed, streams[i], mode="conflate") for i in _assign(n_subs, len(streams))]
    sent: dict[int, int] = {}
    lat: list[int] = []

    async def consume(sub) -> None:
        async for ev in sub:
            lat.append(time.perf_counter_ns() - sent[int(ev.candle.volume)])

    tasks = [asyncio.create_task(consume(s)) for s in subs]
    await asyncio.sleep(0)
    plan = _rate_frames(seconds, burst)
    on_frame = feed._on_frame
    t_start = time.perf_counter()
    for at, raw, seq in plan:
        delay = t_start + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[seq] = time.perf_counter_ns()
        on_frame(raw)
    await asyncio.sleep(0.05)
    for t in tasks:
        t.cancel()
    await feed.stop()
    return (*_pcts(lat), len(lat))


async def _latency_naive(n_subs: int, seconds: float, burst: bool = False) -> tuple[float, float, int]:
    """json.loads + dict lookups + one asyncio.Queue per subscriber."""
    by_stream: dict[str, list[asyncio.Queue]] = {}
    names = [stream_name(s, iv) for s in SYMBOLS_50 for iv in INTERVALS_6]
    assign = _assign(n_subs, len(names))
    queues = [asyncio.Queue() for _ in assign]
    for i, q in zip(assign, queues, strict=True):
        by_stream.setdefault(names[i], []).append(q)
    sent: dict[int, int] = {}
    lat: list[int] = []

    async def consume(q: asyncio.Queue) -> None:
        while True:
            ev = await q.get()
            lat.append(time.perf_counter_ns() - sent[int(float(ev["k"]["v"]))])

    tasks = [asyncio.create_task(consume(q)) for q in queues]
    await asyncio.sleep(0)
    plan = _rate_frames(seconds, burst)
    t_start = time.perf_counter()
    for at, raw, seq in plan:
        delay = t_start + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[seq] = time.perf_counter_ns()
        msg = json.loads(raw)
        for q in by_stream.get(msg["stream"], ()):
            q.put_nowait(msg["data"])
    await asyncio.sleep(0.05)
    for t in tasks:
        t.cancel()
    return (*_pcts(lat), len(lat))


def _pcts(lat_ns: list[int]) -> tuple[float, float]:
    if not lat_ns:
        return float("nan"), float("nan")
    a = np.asarray(lat_ns) / 1e6
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def main(quick: bool) -> str:
    n_candles = 600 if quick else 3000
    frames, first_open = _frames_one_stream(n_candles)
    reps = 3
    kit_eps = statistics.median(asyncio.run(_throughput_kit(frames, first_open)) for _ in range(reps))
    json_eps = statistics.median(_throughput_loads(frames, json.loads) for _ in range(reps))
    rows = [
        "## Feed",
        "",
        f"Kline frames in Binance's combined-stream format, {len(frames):,} for one 1m stream (29 forming "
        "updates + the closed candle per minute), injected where a WebSocket frame enters the feed; "
        f"JSON parser in use: {'orjson' if orjson else 'json (stdlib)'}.",
        "",
        "| throughput into one subscriber | events/s | vs `json.loads` loop |",
        "| --- | ---: | ---: |",
        f"| kit.feed: parse + validate + order + deliver | {kit_eps:,.0f} | {kit_eps / json_eps:.2f}x |",
        f"| plain `json.loads` loop (parse only) | {json_eps:,.0f} | 1.00x |",
    ]
    if orjson is not None:
        oj = statistics.median(_throughput_loads(frames, orjson.loads) for _ in range(reps))
        rows.append(f"| plain `orjson.loads` loop (parse only) | {oj:,.0f} | {oj / json_eps:.2f}x |")
    rows += [
        "",
        f"Goal: >= 50,000 events/s into one subscriber on one core: **{'met' if kit_eps >= 50_000 else 'NOT met'}**.",
        "",
    ]
    seconds = 4.0 if quick else 20.0
    rows += [
        f"Delivery latency, frame received -> subscriber's `async for`, at Binance's real rate for 50 symbols x "
        f"6 intervals (300 streams, each pushing every 2 s: 150 frames/s, {seconds:g} s per row). Subscriptions "
        "round-robin over the streams, one consumer task each (1 or 100 subscribers: each takes several streams, "
        "so every stream has one). *spread*: frames evenly spaced, as independent streams arrive; *burst*: all "
        "300 frames of a 2 s tick at once (one TCP read, worst case). Peer: `json.loads` + one `asyncio.Queue` "
        "per subscription.",
        "",
        "| subscribers | arrival | kit p50 ms | kit p99 ms | naive p50 ms | naive p99 ms | p99 naive/kit | events |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    worst = 0.0
    for n, burst in ((1, False), (100, False), (1000, False), (1000, True)):
        k50, k99, kn = asyncio.run(_latency_kit(n, seconds, burst))
        n50, n99, _ = asyncio.run(_latency_naive(n, seconds, burst))
        if n == 1000 and not burst:
            worst = k99
        how = "burst" if burst else "spread"
        rows.append(
            f"| {n:,} ({max(n, 300):,} subscriptions) | {how} | {k50:.3f} | {k99:.3f} | {n50:.3f} | {n99:.3f} "
            f"| {n99 / k99:.2f}x | {kn:,} |"
        )
    rows += ["", f"Goal: p99 < 5 ms with 1,000 subscribers (spread): **{'met' if worst < 5 else 'NOT met'}**."]
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    print(main(quick="--quick" in sys.argv))
