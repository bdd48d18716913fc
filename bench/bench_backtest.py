"""Backtest, sweep and replay: kit against plain vectorbt / a loop of backtests / the bare feed.

python -m bench backtest [--quick]
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "binance-spot"
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))


def _frame(rows: int):
    from kit.market.files import read_candles

    return read_candles(DATA / "BTCUSDT_5m_20240301_20250702.csv.gz").iloc[:rows]


def _median_time(fn, repeat: int) -> float:
    fn()  # warm: numba compile / cache load
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_overhead(rows: int, repeat: int) -> list[str]:
    import vectorbt as vbt

    import kit.backtest as bt
    from kit.broker import FillModel
    from kit.indicators import ema
    from kit.strategies import EmaCross
    from kit.strategy import crossed_above, crossed_below

    df = _frame(rows)
    s = EmaCross(fast=12, slow=26)
    model = FillModel(fees=0.001, slippage=0.0005)

    def kit_run():
        return bt.run(s, df, model=model).trades

    close_naive = df["close"].copy()
    close_naive.index = close_naive.index.tz_localize(None)

    def plain():
        c = close_naive.to_numpy()
        f, sl = ema(c, 12), ema(c, 26)
        e, x = crossed_above(f, sl), crossed_below(f, sl)
        pf = vbt.Portfolio.from_signals(
            close_naive,
            e,
            x,
            fees=0.001,
            slippage=0.0005,
            size=1.0,
            size_type="percent",
            init_cash=10_000.0,
            freq="5min",
        )
        return pf.exit_trades.values

    t_kit = _median_time(kit_run, repeat)
    t_vbt = _median_time(plain, repeat)
    return [
        f"### Backtest overhead ({rows:,} bars of BTCUSDT 5m, EmaCross 12/26, median of {repeat})",
        "",
        "| | time | ratio |",
        "| --- | ---: | ---: |",
        f"| plain vectorbt on the same signals (ema, crossover, from_signals, trade records) "
        f"| {t_vbt * 1000:.1f} ms | 1.00x |",
        f"| `kit.backtest.run(...).trades` (input checks, indicators, signals, fill model, trades frame) "
        f"| {t_kit * 1000:.1f} ms | {t_kit / t_vbt:.2f}x |",
        "",
        "Goal: at most 1.2x.",
    ]


def bench_stops(rows: int, repeat: int) -> list[str]:
    """Per-signal ATR stops and trailing stops (AtrTrend) against plain vectorbt given the same arrays."""
    import vectorbt as vbt

    import kit.backtest as bt
    from kit.broker import FillModel
    from kit.indicators import atr, ema
    from kit.strategies import AtrTrend, EmaCross
    from kit.strategy import crossed_above, crossed_below

    df = _frame(rows)
    model = FillModel(fees=0.001, slippage=0.0005)
    naive = df.copy()
    naive.index = naive.index.tz_localize(None)
    h, lo, c = (naive[k].to_numpy() for k in ("high", "low", "close"))

    def plain(trail: bool):
        def go():
            f, sl_ = ema(c, 20), ema(c, 50)
            up, down = crossed_above(f, sl_), crossed_below(f, sl_)
            frac = 2.0 * atr(h, lo, c, 14) / c
            pf = vbt.Portfolio.from_signals(
                naive["close"], up, down, down, up, open=naive["open"], high=naive["high"], low=naive["low"],
                sl_stop=frac, sl_trail=trail, fees=0.001, slippage=0.0005, size=1.0, size_type="percent",
                accumulate="removeonly", upon_opposite_entry="reversereduce", init_cash=10_000.0, freq="5min",
            )  # fmt: skip
            return pf.exit_trades.values

        return go

    def kit_run(s):
        return lambda: bt.run(s, df, model=model).trades

    t_plain_fixed = _median_time(plain(False), repeat)
    t_plain_trail = _median_time(plain(True), repeat)
    t_kit_fixed = _median_time(kit_run(AtrTrend(trail=False)), repeat)
    t_kit_trail = _median_time(kit_run(AtrTrend()), repeat)
    t_kit_none = _median_time(kit_run(EmaCross(fast=20, slow=50, short=True)), repeat)
    return [
        f"### Stops per signal ({rows:,} bars of BTCUSDT 5m, EMA 20/50 long/short, 2 x ATR(14) stops, "
        f"median of {repeat})",
        "",
        "| | plain vectorbt (same arrays) | `kit.backtest.run(...).trades` | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| fixed stop per signal | {t_plain_fixed * 1000:.1f} ms | {t_kit_fixed * 1000:.1f} ms "
        f"| {t_kit_fixed / t_plain_fixed:.2f}x |",
        f"| trailing stop per signal | {t_plain_trail * 1000:.1f} ms | {t_kit_trail * 1000:.1f} ms "
        f"| {t_kit_trail / t_plain_trail:.2f}x |",
        f"| kit, same crossover without stops (EmaCross) | | {t_kit_none * 1000:.1f} ms | |",
        "",
        "kit's side includes the ATR, the signals, the per-row stop fractions, exit reasons and excursions.",
    ]


def bench_levels_trailing_margin(rows: int, repeat: int) -> list[str]:
    """Stops as price levels, a trailing fraction on the strategy, per-signal stops in a sweep, and the
    margin model's cost, each against plain vectorbt doing the same in the same run."""
    import numpy as np
    import vectorbt as vbt

    import kit.backtest as bt
    from kit.broker import FillModel
    from kit.indicators import atr, ema
    from kit.strategies import AtrTrend, EmaCross
    from kit.strategy import Columns, Signals, Strategy, crossed_above, crossed_below

    class Levels(Strategy):  # EMA 20/50 long/short, stop at 2 ATR as a price level
        lookback = 2

        def indicators(self) -> dict:
            from kit.indicators import spec

            return {"f": spec("ema", 20), "s": spec("ema", 50), "atr": spec("atr", 14)}

        def signals(self, d: Columns) -> Signals:
            up, down = crossed_above(d.f, d.s), crossed_below(d.f, d.s)
            level = np.where(down, d.close + 2 * d.atr, d.close - 2 * d.atr)
            return Signals(up, down, down, up, stop_loss_price=level)

    df = _frame(rows)
    model = FillModel(fees=0.001, slippage=0.0005)
    naive = df.copy()
    naive.index = naive.index.tz_localize(None)
    h, lo, c = (naive[k].to_numpy() for k in ("high", "low", "close"))
    base = dict(
        fees=0.001, slippage=0.0005, size=1.0, size_type="percent", accumulate="removeonly",
        upon_opposite_entry="reversereduce", init_cash=10_000.0, freq="5min",
    )  # fmt: skip

    def plain(**stops):
        def go():
            f, sl_ = ema(c, 20), ema(c, 50)
            up, down = crossed_above(f, sl_), crossed_below(f, sl_)
            kw = dict(stops)
            if kw.pop("levels", False):
                kw["sl_stop"] = 2.0 * atr(h, lo, c, 14) / c  # |close - level| / close, either side
            pf = vbt.Portfolio.from_signals(
                naive["close"], up, down, down, up, open=naive["open"], high=naive["high"], low=naive["low"],
                **kw, **base,
            )  # fmt: skip
            return pf.exit_trades.values

        return go

    def kit_run(s, m=model):
        return lambda: bt.run(s, df, model=m).trades

    rows_out = []
    for label, vb, kt in (
        ("stop-loss as a price level per signal", plain(levels=True), kit_run(Levels())),
        (
            "trailing stop as a fraction on the strategy (2 %)",
            plain(sl_stop=0.02, sl_trail=True),
            kit_run(EmaCross(fast=20, slow=50, short=True, trailing_stop=0.02)),
        ),
        ("long/short, margin model on (liquidation check)", plain(), kit_run(EmaCross(fast=20, slow=50, short=True))),
        (
            "long/short, margin model off",
            plain(),
            kit_run(EmaCross(fast=20, slow=50, short=True), model.replace(maintenance_margin=0.0)),
        ),
    ):
        t_v, t_k = _median_time(vb, repeat), _median_time(kt, repeat)
        rows_out.append(f"| {label} | {t_v * 1000:.1f} ms | {t_k * 1000:.1f} ms | {t_k / t_v:.2f}x |")
    # what vectorbt cannot do: the paper broker decides the fills (percent reversal below 1.0)
    t_broker = _median_time(kit_run(EmaCross(fast=20, slow=50, short=True), model.replace(size=0.5)), repeat)
    t_v = _median_time(plain(), repeat)
    rows_out.append(
        f"| percent size 0.5 reversing (paper broker + vectorbt accounting; vectorbt: size 1.0) "
        f"| {t_v * 1000:.1f} ms | {t_broker * 1000:.1f} ms | {t_broker / t_v:.2f}x |"
    )
    # a sweep with per-signal stops against a loop of plain vectorbt over the same sets
    grid = {"fast": [10, 20], "stop_atr": [1.5, 2.0, 3.0], "trail": [True, False]}

    def kit_sweep():
        return bt.sweep(AtrTrend, df, grid, model=model, progress=False)

    def plain_loop():
        for fast in grid["fast"]:
            for k in grid["stop_atr"]:
                for trail in grid["trail"]:
                    f, sl_ = ema(c, fast), ema(c, 50)
                    up, down = crossed_above(f, sl_), crossed_below(f, sl_)
                    pf = vbt.Portfolio.from_signals(
                        naive["close"], up, down, down, up, open=naive["open"], high=naive["high"], low=naive["low"],
                        sl_stop=k * atr(h, lo, c, 14) / c, sl_trail=trail, **base,
                    )  # fmt: skip
                    pf.total_return(), pf.sharpe_ratio(), pf.max_drawdown(), pf.exit_trades.closed.count()

    t_s, t_l = _median_time(kit_sweep, repeat), _median_time(plain_loop, repeat)
    rows_out.append(
        f"| sweep of 12 AtrTrend sets (per-signal ATR stops; vectorbt: a loop, same metrics) "
        f"| {t_l * 1000:.1f} ms | {t_s * 1000:.1f} ms | {t_s / t_l:.2f}x |"
    )
    return [
        f"### Stop levels, trailing fractions, margin ({rows:,} bars of BTCUSDT 5m, EMA 20/50, median of {repeat})",
        "",
        "| | plain vectorbt | kit | ratio |",
        "| --- | ---: | ---: | ---: |",
        *rows_out,
        "",
        "kit's side includes the indicators, the signals, the stop fractions, exit reasons and excursions.",
    ]


_SWEEP_CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
import kit.backtest as bt
from kit.market.files import read_candles
from kit.strategies import EmaCross
df = read_candles({path!r}).iloc[:{rows}]
grid = {{"fast": list(range(2, 2 + {nf})), "slow": list(range(50, 50 + 10 * {ns}, 10))}}
bt.sweep(EmaCross, df.iloc[:2000], {{"fast": [5], "slow": [50, 60]}}, progress=False)  # warm numba
t0 = time.perf_counter()
table = bt.sweep(EmaCross, df, grid, progress=False)
dt = time.perf_counter() - t0
loop_n = {loop_n}
t1 = time.perf_counter()
for _, row in table.head(loop_n).iterrows():
    pf = bt.run(EmaCross(fast=int(row.fast), slow=int(row.slow)), df).portfolio
    pf.total_return(), pf.sharpe_ratio(), pf.max_drawdown(), pf.exit_trades.closed.count()
loop = (time.perf_counter() - t1) / loop_n
print(json.dumps({{"sets": len(table), "seconds": dt, "loop_per_set": loop,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""


def bench_sweep(rows: int, nf: int, ns: int, loop_n: int) -> list[str]:
    code = _SWEEP_CHILD.format(
        root=str(ROOT), path=str(DATA / "BTCUSDT_5m_20240301_20250702.csv.gz"), rows=rows, nf=nf, ns=ns, loop_n=loop_n
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    loop_total = r["loop_per_set"] * r["sets"]
    return [
        f"### Sweep: {r['sets']:,} parameter sets x {rows:,} bars (EmaCross grid, one process, chunks of 50)",
        "",
        "| | time | peak RSS | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| `kit.backtest.sweep` | {r['seconds']:.1f} s | {r['peak_rss_gb']:.2f} GB | 1.00x |",
        f"| a Python loop of `run()` + the same metrics ({loop_n} sets measured, extrapolated) "
        f"| {loop_total:.0f} s | - | "
        f"{loop_total / r['seconds']:.1f}x slower |",
        "",
        "Goal: 1,000 sets x 100,000 bars under 60 s and under 4 GB on 2 cores.",
    ]


async def _feed_only(frame, interval: str) -> float:
    from kit.exchange import ExchangeSimulator
    from kit.feed import Feed
    from kit.market.files import to_ms

    t = to_ms(frame.index)
    first, last = int(t[0]), int(t[-1])
    t0 = time.perf_counter()
    n = 0
    sim = ExchangeSimulator(data={("BTCUSDT", interval): frame}, speed="max", start=first, port=0, weight_limit=None)
    async with sim, Feed(sim.ws_url, sim.rest_url) as feed, feed.subscribe("BTCUSDT", interval) as sub:
        async for ev in sub:
            if ev.closed:
                n += 1
                if ev.candle[0] >= last:
                    break
    return n / (time.perf_counter() - t0)


def bench_replay(rows: int) -> list[str]:
    from kit.market.files import read_candles
    from kit.replay import replay
    from kit.strategies import BollingerBreakout, EmaCross, RsiReversion

    df = read_candles(DATA / "BTCUSDT_1m_20250520_20250818.csv.gz").iloc[:rows]
    strategies = [RsiReversion(), EmaCross(), BollingerBreakout()]
    replay(strategies, df.iloc[:500], interval="1m")  # warm
    run = replay(strategies, df, interval="1m")
    one = replay([EmaCross()], df, interval="1m")
    feed_rate = asyncio.run(_feed_only(df, "1m"))
    return [
        f"### Replay through the live path ({rows:,} closed 1m candles)",
        "",
        "simulator (speed=max) -> WebSocket -> Feed -> IndicatorEngine -> live rules -> PaperBroker",
        "",
        "| | closed candles/s | ratio to the bare feed |",
        "| --- | ---: | ---: |",
        f"| bare feed: simulator -> Feed, no engine, no strategy (the transport's ceiling) "
        f"| {feed_rate:,.0f} | 1.00x |",
        f"| full path, 1 strategy (EmaCross) | {one.candles_per_second:,.0f} "
        f"| {one.candles_per_second / feed_rate:.2f}x |",
        f"| full path, 3 strategies (RsiReversion, EmaCross, BollingerBreakout) | {run.candles_per_second:,.0f} | "
        f"{run.candles_per_second / feed_rate:.2f}x |",
        "",
        "Goal: at least 10,000 closed candles/s.",
    ]


def main(quick: bool) -> str:
    out = ["## Backtest, sweep and replay (issue 4)", ""]
    if quick:
        out += [*bench_overhead(20_000, 3), ""]
        out += [*bench_stops(20_000, 3), ""]
        out += [*bench_levels_trailing_margin(20_000, 3), ""]
        out += [*bench_sweep(20_000, 10, 10, 5), ""]
        out += bench_replay(5_000)
    else:
        out += [*bench_overhead(100_000, 5), ""]
        out += [*bench_stops(100_000, 5), ""]
        out += [*bench_levels_trailing_margin(100_000, 5), ""]
        out += [*bench_sweep(100_000, 40, 25, 5), ""]
        out += bench_replay(30_000)
    return "\n".join(out)


if __name__ == "__main__":
    print(main(quick="--quick" in sys.argv))
