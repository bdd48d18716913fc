"""Daemon benchmark: 1,000 users x 10 strategies on one Book, candle close -> decisions persisted.

1. **Scale.** 10,000 active strategies (1,000 users x 10, drawn from 18 parameter sets of the
   three ready strategies) over 20 symbols x 3 intervals (1m, 5m, 15m). Each simulated minute,
   every stream whose candle closes is processed exactly as the daemon does (the engine's
   indicator state updates once per spec, each group of identical strategies is evaluated once,
   each strategy's paper broker steps) and all decisions are committed in one transaction to
   SQLite (WAL). Latency = first candle handed over -> commit returned, per minute boundary;
   the 15-minute boundaries are the worst case (all 60 streams, all 10,000 strategies decide).
   Peer: the same strategies evaluated one by one (no grouping), over the same minutes.
2. **Memory.** An accelerated replay of three months of real 1m candles (BTCUSDT and ETHUSDT,
   129,600 candles each) through 100 strategies with commits, RSS sampled along the way.

Candles: the real sample's BTCUSDT/ETHUSDT 1m, offset and scaled into 20 symbols on one
common clock (so their candles close together, as on an exchange); 5m/15m are aggregated.
The daemon's asyncio hop (feed -> book -> writer) is not included: it adds one loop iteration.
"""

from __future__ import annotations

import gc
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "numba"))

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
INTERVALS = ("1m", "5m", "15m")
STEP = {"1m": 60_000, "5m": 300_000, "15m": 900_000}


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _variants() -> list[Any]:
    from kit.strategies import BollingerBreakout, EmaCross, RsiReversion

    out: list[Any] = [EmaCross(fast=f, slow=s) for f in (5, 8, 12) for s in (21, 26, 50)]
    out += [RsiReversion(period=p, lower=lo, upper=100 - lo) for p in (7, 14, 21) for lo in (25.0, 30.0)]
    out += [BollingerBreakout(period=p) for p in (20, 30, 50)]
    return out


def _frames(n_symbols: int, minutes: int) -> dict[tuple[str, str], list[Any]]:
    """``{(symbol, interval): [Candle, ...]}`` on one clock, ``minutes`` 1m candles per symbol."""
    from kit.market import Candle
    from kit.market.aggregate import resample
    from kit.market.files import read_candles

    base = {s: read_candles(SAMPLE / f"{s}_1m_20250520_20250818.csv.gz") for s in ("BTCUSDT", "ETHUSDT")}
    clock = base["BTCUSDT"].index[:minutes]
    out: dict[tuple[str, str], list[Any]] = {}
    for k in range(n_symbols):
        src = base["BTCUSDT" if k % 2 == 0 else "ETHUSDT"]
        off = (k // 2) * 5_000
        f = src.iloc[off : off + minutes].copy()
        f[["open", "high", "low", "close"]] *= 1 + 0.05 * k
        f.index = clock[: len(f)]
        sym = f"SYM{k:02d}USDT"
        for itv in INTERVALS:
            g = f if itv == "1m" else resample(f, "1m", itv)
            ms = g.index.as_unit("ms").asi8
            out[(sym, itv)] = [Candle(int(t), *map(float, r)) for t, r in zip(ms, g.to_numpy(), strict=True)]
    return out


class _Rec:
    __slots__ = ("broker", "class_path", "id", "interval", "name", "params", "symbol", "user_id", "version")

    def __init__(self, **kw: Any) -> None:
        for k, v in kw.items():
            setattr(self, k, v)


def _setup_db(url: str, recs: list[_Rec], n_users: int, checkpoint: int) -> Any:
    """Users, strategies, checkpoints and positions rows, inserted in bulk."""
    import sqlalchemy as sa

    from kit.broker import BrokerState
    from kit.store import Store
    from kit.store.models import Checkpoint, Position, StrategyRecord, User, utcnow

    store = Store(url)
    store.migrate()
    now = utcnow()
    with store.begin() as conn:
        conn.execute(sa.insert(User.__table__), [
            {"id": u, "name": f"user{u:04d}", "password_hash": "x", "role": "viewer", "created_at": now}
            for u in range(1, n_users + 1)])  # fmt: skip
        conn.execute(sa.insert(StrategyRecord.__table__), [
            {"id": r.id, "user_id": r.user_id, "name": r.name, "class_path": r.class_path, "params": r.params,
             "broker": r.broker, "symbol": r.symbol, "interval": r.interval, "active": True, "state": "active",
             "failures": 0, "version": 1, "promoted_at": now, "updated_at": now} for r in recs])  # fmt: skip
        state = BrokerState(cash=10_000.0).to_dict()
        conn.execute(sa.insert(Checkpoint.__table__), [
            {"strategy_id": r.id, "user_id": r.user_id, "version": 1, "last_open_time": checkpoint,
             "broker_state": state, "updated_at": now} for r in recs])  # fmt: skip
        conn.execute(sa.insert(Position.__table__), [
            {"strategy_id": r.id, "user_id": r.user_id, "symbol": r.symbol, "size": 0.0, "cash": 10_000.0,
             "equity": 10_000.0, "updated_time": 0} for r in recs])  # fmt: skip
    return store


def _make_recs(n_users: int, per_user: int, symbols: list[str], seed: int = 11) -> list[_Rec]:
    from kit.broker import FillModel

    rng = random.Random(seed)
    variants = _variants()
    broker = FillModel(fees=0.001, slippage=0.0005).to_dict()
    recs = []
    sid = 0
    for u in range(1, n_users + 1):
        for j in range(per_user):
            sid += 1
            v = rng.choice(variants)
            recs.append(_Rec(id=sid, user_id=u, name=f"s{j}", class_path=type(v).path, params=v.params,
                             broker=broker, symbol=rng.choice(symbols), interval=rng.choice(INTERVALS),
                             version=1))  # fmt: skip
    return recs


def _run_minutes(
    book: Any,
    store: Any,
    frames: dict[tuple[str, str], list[Any]],
    t_from: int,
    t_to: int,
    *,
    persist: bool,
    cpu15: list[float] | None = None,
) -> tuple[list[float], list[float], int, float]:
    """Process every candle closing in [t_from, t_to) minute by minute; latencies per boundary."""
    from kit.store import ledger

    index = {key: {c[0]: c for c in cs} for key, cs in frames.items()}
    lat, lat15, n_candles = [], [], 0
    cpu15 = [] if cpu15 is None else cpu15
    cpu0 = time.process_time()
    for t in range(t_from, t_to, 60_000):
        close = t + 60_000
        batch = []
        for (sym, itv), by_t in index.items():
            if close % STEP[itv]:
                continue
            c = by_t.get(close - STEP[itv])
            if c is not None:
                batch.append((sym, itv, c))
        t0 = time.perf_counter()
        c0 = time.process_time()
        writes, advance = [], []
        for sym, itv, c in batch:
            res = book.on_candle(sym, itv, c)
            if res is not None:
                writes += res.writes
                if res.advance:
                    advance.append((res.open_time, res.advance))
        if persist:
            ledger.commit(store, writes, advance)
        dt = time.perf_counter() - t0
        n_candles += len(batch)
        lat.append(dt)
        if close % STEP["15m"] == 0:
            lat15.append(dt)
            cpu15.append(time.process_time() - c0)
    return lat, lat15, n_candles, time.process_time() - cpu0


def _pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p)) * 1000 if xs else float("nan")


def _scale(quick: bool) -> tuple[str, dict[str, float]]:
    from kit.daemon import Book

    n_users, per_user, n_symbols = (100, 10, 20) if quick else (1000, 10, 20)
    warm, measured, peer_minutes = (300, 90, 30) if quick else (300, 240, 30)
    frames = _frames(n_symbols, warm + measured + 30)
    symbols = sorted({s for s, _ in frames})
    recs = _make_recs(n_users, per_user, symbols)
    t_start = frames[(symbols[0], "1m")][0][0]
    warm_end = t_start + warm * 60_000
    out: dict[str, float] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, group, minutes in (("kit (grouped)", True, measured), ("naive (one by one)", False, peer_minutes)):
            gc.collect()
            rss0 = _rss_mib()
            store = _setup_db(f"sqlite:///{tmp}/{label[:3]}.db", recs, n_users, warm_end - 1)
            book = Book(group=group, keep=1000, eval_timeout=60.0)
            t0 = time.perf_counter()
            for r in recs:
                book.add(r, warm_end - 1, {})
            setup_s = time.perf_counter() - t0
            groups = sum(len(s.groups) for s in book.streams.values())
            _run_minutes(book, store, frames, t_start, warm_end, persist=False)  # indicator warm-up
            cpu15: list[float] = []
            load = os.getloadavg()[0]
            lat, lat15, n, cpu = _run_minutes(book, store, frames, warm_end, warm_end + minutes * 60_000,
                                              persist=True, cpu15=cpu15)  # fmt: skip
            rss = _rss_mib()
            key = "kit" if group else "naive"
            out[f"{key}_cpu_ms_per_candle"] = 1000 * cpu / n
            out[f"{key}_p50"], out[f"{key}_p99"] = _pct(lat, 50), _pct(lat, 99)
            out[f"{key}_p50_15"] = _pct(lat15, 50)
            rows.append(
                f"| {label} | {len(recs):,} | {groups:,} | {minutes} | {n:,} | {_pct(lat, 50):.1f} | "
                f"{_pct(lat, 99):.1f} | {_pct(lat15, 50):.1f} | {max(lat15) * 1000 if lat15 else float('nan'):.1f} | "
                f"{_pct(cpu15, 50):.1f} | {1000 * cpu / n:.2f} | {rss:.0f} (+{rss - rss0:.0f}) | {setup_s:.1f} | "
                f"{load:.1f} |"
            )
            store.dispose()
            del book, store
    md = [
        f"### Scale: {n_users:,} users x {per_user} strategies over {n_symbols} symbols x 3 intervals",
        "",
        "| run | strategies | evaluations per full candle set | minutes | candles | p50 ms | p99 ms | "
        "15m-boundary p50 ms | 15m-boundary max ms | 15m-boundary CPU ms | CPU ms / candle | RSS MiB (growth) | "
        "start-up s | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Latency is per minute boundary: every candle closing at that instant handed to the book, every "
        f"decision committed (one SQLite WAL transaction); wall time, so other load on the machine (the "
        f"1-minute load average when the run started is shown; 2 cores) inflates it, while the CPU columns "
        f"do not. Goal p99 < 250 ms: "
        f"**{'met' if out['kit_p99'] < 250 else 'missed'}** ({out['kit_p99']:.1f} ms). "
        f"Grouping vs one-by-one: CPU per candle {out['naive_cpu_ms_per_candle'] / out['kit_cpu_ms_per_candle']:.1f}x "
        f"lower, 15m-boundary p50 {out['naive_p50_15'] / out['kit_p50_15']:.1f}x lower.",
    ]
    return "\n".join(md), out


def _memory(quick: bool) -> str:
    from kit.daemon import Book
    from kit.market import Candle
    from kit.market.files import read_candles
    from kit.store import ledger

    minutes = 20_000 if quick else 129_600
    frames = {}
    for s in ("BTCUSDT", "ETHUSDT"):
        f = read_candles(SAMPLE / f"{s}_1m_20250520_20250818.csv.gz").iloc[:minutes]
        ms = f.index.as_unit("ms").asi8
        frames[s] = [Candle(int(t), *map(float, r)) for t, r in zip(ms, f.to_numpy(), strict=True)]
    variants = _variants()[:10]
    recs = [
        _Rec(id=i + 1, user_id=i % 10 + 1, name=f"s{i}", class_path=type(variants[i % 10]).path,
             params=variants[i % 10].params, broker={}, symbol=("BTCUSDT", "ETHUSDT")[i % 2], interval="1m",
             version=1)
        for i in range(100)
    ]  # fmt: skip
    t0 = frames["BTCUSDT"][0][0]
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        store = _setup_db(f"sqlite:///{tmp}/mem.db", recs, 10, t0 - 1)
        book = Book(keep=1000)
        for r in recs:
            book.add(r, t0 - 1, {})
        writes, advance = [], []
        start = time.perf_counter()
        n = len(frames["BTCUSDT"])
        every = max(1, n // 20)
        for i in range(n):
            for sym in ("BTCUSDT", "ETHUSDT"):
                c = frames[sym][i] if i < len(frames[sym]) else None
                if c is None:
                    continue
                res = book.on_candle(sym, "1m", c)
                writes += res.writes
                advance.append((res.open_time, res.advance))
            if i % 60 == 59:  # an accelerated replay commits a simulated hour at a time
                ledger.commit(store, writes, advance)
                writes, advance = [], []
            if i % every == 0:
                gc.collect()
                samples.append((i, _rss_mib()))
        ledger.commit(store, writes, advance)
        elapsed = time.perf_counter() - start
        fills = sum(m.fills for m in book.members.values())
        store.dispose()
    base = samples[len(samples) // 4]  # after warm-up (imports, caches, SQLite page cache)
    last = samples[-1]
    per_min = (last[1] - base[1]) / max(1, last[0] - base[0])
    xs = np.array([s[0] for s in samples[len(samples) // 4 :]], float)
    ys = np.array([s[1] for s in samples[len(samples) // 4 :]], float)
    slope = float(np.polyfit(xs, ys, 1)[0]) if len(xs) > 2 else float("nan")
    return "\n".join([
        f"### Memory over an accelerated replay: {n:,} 1m candles x 2 symbols (~{n / 1440:.0f} days), 100 strategies",
        "",
        "| candles replayed | RSS MiB |",
        "|---:|---:|",
        *[f"| {i:,} | {r:.1f} |" for i, r in samples[:: max(1, len(samples) // 8)]],
        f"| {last[0]:,} | {last[1]:.1f} |",
        "",
        f"Replay speed {2 * n / elapsed:,.0f} candles/s with {fills:,} fills committed. RSS after warm-up "
        f"{base[1]:.1f} MiB -> {last[1]:.1f} MiB at the end: {per_min * 1024:+.3f} KiB per simulated minute "
        f"(fitted slope {slope * 1024:+.3f} KiB/min); freqtrade users report 2-4 MiB/min"
        + (
            f" (~{2048 / (per_min * 1024):,.0f}x more)."
            if per_min * 1024 > 0.01
            else ": here no growth is measurable at the sampling resolution."
        ),
    ])  # fmt: skip


def main(quick: bool = False) -> str:
    scale_md, _ = _scale(quick)
    return "\n\n".join(["## Daemon", scale_md, _memory(quick)])


if __name__ == "__main__":
    import sys

    print(main(quick="--quick" in sys.argv))
