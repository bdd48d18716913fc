"""The live-parity check: its cost inside ``kit.backtest.run`` and in ``kit.promote`` (issue 13).

python -m bench parity [--quick]

Peers in the same run: ``run(check_parity=False)`` for the backtest's sample check, and the
backtest of the promotion's 500 check candles for the full check through the daemon's path.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "binance-spot"
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))


def _median_time(fn, repeat: int) -> float:
    fn()  # warm: numba compile / cache load
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_run(rows: int, repeat: int) -> list[str]:
    import kit.backtest as bt
    from kit.backtest._run import PARITY_EVERY, PARITY_ROWS
    from kit.broker import FillModel
    from kit.market.files import read_candles
    from kit.strategies import AtrTrend, EmaCross

    df = read_candles(DATA / "BTCUSDT_5m_20240301_20250702.csv.gz").iloc[:rows]
    model = FillModel(fees=0.001, slippage=0.0005)
    lines = [
        f"### Parity check in `kit.backtest.run` ({rows:,} bars of BTCUSDT 5m, median of {repeat})",
        "",
        "| strategy | `run(check_parity=False).trades` | `run(...).trades` (default) | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for s in (EmaCross(fast=12, slow=26), AtrTrend()):
        off = _median_time(lambda s=s: bt.run(s, df, model=model, check_parity=False).trades, repeat)
        on = _median_time(lambda s=s: bt.run(s, df, model=model).trades, repeat)
        lines.append(f"| {s!r} | {off * 1000:.1f} ms | {on * 1000:.1f} ms | {on / off:.2f}x |")
    lines += ["", f"The sample: the last {PARITY_ROWS} candles, rules evaluated on the live window at "
              f"every {PARITY_EVERY}th and at each signal. Goal: at most 1.1x."]  # fmt: skip
    return lines


def bench_promote(repeat: int) -> list[str]:
    import kit.backtest as bt
    from kit.market.files import read_candles
    from kit.strategies import AtrTrend, EmaCross
    from kit.strategy import check_parity

    df = read_candles(DATA / "BTCUSDT_1h_20170817_20240421.csv.gz").iloc[-500:]
    lines = [
        f"### Parity check in `kit.promote` (500 check candles of BTCUSDT 1h, every candle through engine state "
        f"and live evaluator, median of {repeat})",
        "",
        "| strategy | check backtest | `check_parity` | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for s in (EmaCross(fast=12, slow=26), AtrTrend()):
        base = _median_time(lambda s=s: bt.run(s, df, check_parity=False).trades, repeat)
        check = _median_time(lambda s=s: check_parity(s, df), repeat)
        lines.append(f"| {s!r} | {base * 1000:.1f} ms | {check * 1000:.1f} ms | {check / base:.2f}x |")
    return lines


def main(quick: bool) -> str:
    out = ["## Live-parity check (issue 13)", ""]
    if quick:
        out += [*bench_run(20_000, 3), "", *bench_promote(3)]
    else:
        out += [*bench_run(100_000, 7), "", *bench_promote(7)]
    return "\n".join(out)


if __name__ == "__main__":
    print(main(quick="--quick" in sys.argv))
