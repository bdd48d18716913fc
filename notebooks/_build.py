# ruff: noqa: E501
"""Regenerate the notebooks from this file (outputs stripped): ``python notebooks/_build.py``.

The notebooks are the source users open; this script keeps them reviewable as plain Python.
"""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def md(s: str):
    return nbf.v4.new_markdown_cell(s.strip())


def code(s: str):
    return nbf.v4.new_code_cell(s.strip())


def write(name: str, cells: list) -> None:
    nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": KERNEL, "language_info": {"name": "python"}})
    nbf.write(nb, HERE / name)


SETUP = code(
    """
import os
from pathlib import Path

# Run from the repository root or from notebooks/: find the sample candles either way.
ROOT = Path.cwd() if (Path.cwd() / "data" / "sample").is_dir() else Path.cwd().parent
os.environ.setdefault("KIT_REPLAY_DATA", str(ROOT / "data" / "sample"))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
SAMPLE = Path(os.environ["KIT_REPLAY_DATA"])
"""
)

write(
    "01_quickstart.ipynb",
    [
        md(
            """
# kit quickstart: data, indicators, a backtest, charts

This notebook loads real Binance candles, computes indicators, backtests a ready strategy,
writes a strategy of its own, and plots the results. Everything runs offline on `data/sample`.
"""
        ),
        SETUP,
        md("## Load candles\n`kit.load` reads the local cache and sample files first (and the exchange for anything missing)."),
        code(
            """
import kit

eth = kit.load("ETHUSDT", "1h", "2023-01-01", "2023-07-01", offline=True, progress=False)
eth.tail()
"""
        ),
        md("## Indicators\nBatch functions take arrays or Series (TA-Lib names and conventions)."),
        code(
            """
from kit.indicators import bbands, ema, rsi

close = eth["close"]
pd_ind = {"rsi": rsi(close, 14), "ema50": ema(close, 50)}
bands = bbands(close.to_numpy(), 20, 2.0)
print({k: round(float(v.iloc[-1]), 2) for k, v in pd_ind.items()}, "upper band", round(float(bands.upper[-1]), 2))
"""
        ),
        md("## Backtest a ready strategy\nOne fill model: a signal decided on a closed candle fills at that candle's close, plus fees and slippage."),
        code(
            """
import kit.backtest as bt
from kit.strategies import EmaCross

res = bt.run(EmaCross(fast=12, slow=26), eth, fees=0.001, slippage=0.0005)
print(res)
res.stats()[["Total Return [%]", "Max Drawdown [%]", "Sharpe Ratio", "Total Closed Trades", "Win Rate [%]"]]
"""
        ),
        code("res.trades.head()"),
        md(
            """
## Write your own strategy
Parameters are typed and range-checked; `indicators()` names the specs (shared with every other
strategy that asks for the same one); `signals()` is written once over numpy columns and runs
unchanged over a whole frame here and on each closed candle live.
"""
        ),
        code(
            """
from kit.indicators import spec
from kit.strategy import Param, Signals, Strategy, crossed_above, crossed_below


class RsiTrend(Strategy):
    \"\"\"Buy when RSI crosses above `level` while price is above its long EMA; sell on the cross back.\"\"\"

    period: int = Param(14, ge=2, le=100, doc="RSI length")
    level: float = Param(55.0, ge=1, le=99, doc="RSI level")
    trend: int = Param(100, ge=10, le=500, doc="trend EMA length")
    lookback = 2  # crossovers look one row back

    def indicators(self):
        return {"rsi": spec("rsi", self.period), "trend": spec("ema", self.trend)}

    def signals(self, d):
        up = d.close > d.trend
        return Signals(crossed_above(d.rsi, self.level) & up, crossed_below(d.rsi, self.level))


mine = bt.run(RsiTrend(), eth)
print(mine)
try:
    RsiTrend(period=1)
except ValueError as exc:
    print("rejected:", exc)
"""
        ),
        md("## Charts\nCandles with the strategy's indicators and trades; equity and drawdown."),
        code(
            """
import holoviews as hv
from kit import plots

hv.extension("bokeh", logo=False)
plots.backtest(mine, max_candles=1500)
"""
        ),
        code("plots.equity(mine)"),
    ],
)

write(
    "02_parameter_sweep.ipynb",
    [
        md(
            """
# Parameter sweep

`kit.backtest.sweep` runs a whole grid as vectorbt columns (one simulation per chunk, not a
Python loop of backtests), computing each unique indicator once, with bounded memory.
"""
        ),
        SETUP,
        code(
            """
import holoviews as hv
import kit
import kit.backtest as bt
from kit import plots
from kit.strategies import EmaCross

hv.extension("bokeh", logo=False)
btc = kit.load("BTCUSDT", "1m", "2025-06-01", "2025-06-15", offline=True, progress=False)
len(btc)
"""
        ),
        code(
            """
grid = {"fast": [3, 5, 8, 12, 16, 20], "slow": [20, 30, 45, 60, 90, 120]}
table = bt.sweep(EmaCross, btc, grid, fees=0.0005)
print(f"{len(table)} parameter sets ({table.attrs['skipped']} invalid combinations skipped)")
table.sort_values("sharpe", ascending=False).head()
"""
        ),
        code('plots.heatmap(table, "fast", "slow", "total_return")'),
        md("A sweep row is exactly `run()` of that parameter set:"),
        code(
            """
best = table.sort_values("sharpe", ascending=False).iloc[0]
res = bt.run(EmaCross(fast=int(best.fast), slow=int(best.slow)), btc, fees=0.0005)
assert abs(res.stats()["Total Return [%]"] - best.total_return) < 1e-7  # stats() units: percent
print(res)
plots.equity(res)
"""
        ),
        md(
            """
Walk-forward: each fold sweeps five days, picks the best Sharpe, and trades the next three days with
indicators warmed up on everything before them. The stitched out-of-sample run is what choosing by
the sweep would have earned:
"""
        ),
        code(
            """
wf = bt.walk_forward(EmaCross, btc, {"fast": [5, 12], "slow": [30, 60]}, train="5D", test="3D", fees=0.0005)
print(wf)
wf.folds[["test_first", "fast", "slow", "train_sharpe", "test_return"]]
"""
        ),
        code("wf.plot()"),
    ],
)

write(
    "03_live_feed.ipynb",
    [
        md(
            """
# Live candles in a notebook

Start the exchange simulator inside the notebook (replaying the sample candles 600x faster than
real time), subscribe to the shared feed through the indicator engine, update a chart as candles
close, and watch a strategy's signals and paper fills as they happen. Point `Feed()` at a real
exchange URL (`KIT_EXCHANGE_URL`) to do the same live. The cell stops by itself after a few hundred candles.
"""
        ),
        SETUP,
        code(
            """
import asyncio

import holoviews as hv
import pandas as pd
from holoviews.streams import Buffer

from kit.broker import FillModel, PaperBroker
from kit.engine import IndicatorEngine
from kit.exchange import ExchangeSimulator
from kit.feed import Feed
from kit.strategies import EmaCross

hv.extension("bokeh", logo=False)
sim = ExchangeSimulator(data=SAMPLE, speed=600, start="2025-06-02T00:00Z", port=0)
await sim.start()
feed = Feed(sim.ws_url, sim.rest_url)
await feed.start()
engine = IndicatorEngine(feed)
print("simulator at", sim.rest_url)
"""
        ),
        code(
            """
from kit import plots  # plots.price_axis: 105,000 on the axis, not 1.050e+5

strategy = EmaCross(fast=5, slow=13)
fast, slow = strategy.specs
buffer = Buffer(pd.DataFrame({"time": pd.Series(dtype="datetime64[ns]"), "close": [], "fast": [], "slow": []}), length=300, index=False)
chart = hv.DynamicMap(
    lambda data: hv.Curve(data, "time", "close", label="close")
    * hv.Curve(data, "time", "fast", label="EMA 5")
    * hv.Curve(data, "time", "slow", label="EMA 13"),
    streams=[buffer],
).opts(
    hv.opts.Curve(width=850, height=320, show_grid=True),
    hv.opts.Overlay(xlabel="time (UTC)", ylabel="price", hooks=[plots.price_axis], legend_position="top_left"),
)
chart
"""
        ),
        code(
            """
live = strategy.live()
broker = PaperBroker(FillModel(), stop_loss=strategy.stops[0], take_profit=strategy.stops[1])
events = []

async with engine.subscribe("BTCUSDT", "1m", specs=strategy.specs, history=50) as sub:
    for row in sub.history:  # warm the rules on recent history, no trading
        live.on_row(row)
    seen = 0
    async with asyncio.timeout(90):
        async for row in sub:
            c = row.candle
            t = pd.Timestamp(c.open_time, unit="ms")
            buffer.send(pd.DataFrame({"time": [t], "close": [c.close], "fast": [row.values[fast]], "slow": [row.values[slow]]}))
            signal = live.on_row(row)
            for fill in broker.on_bar(c, signal):
                events.append(fill)
                print(f"{t:%Y-%m-%d %H:%M} {fill.reason:>6} {fill.side:4} {fill.qty:.5f} @ {fill.price:,.2f}")
            seen += 1
            if seen >= 300:
                break
print(f"{seen} closed candles, {len(events)} fills, {len(broker.trades)} closed trades, equity {broker.equity(c.close):,.2f}")
"""
        ),
        code(
            """
await engine.close()
await feed.stop()
await sim.stop()
"""
        ),
    ],
)

write(
    "04_promote.ipynb",
    [
        md(
            """
# Prepare a strategy for the daemon

The daemon imports strategies by `module:Class` path, rebuilds them from stored parameters, and
trades them with the paper broker on the shared feed. Before promoting, check that it will
behave exactly as researched: the class is importable, the parameters round-trip, and the
live path (simulator -> feed -> engine -> live rules -> paper broker) reproduces the backtest's trades.
"""
        ),
        SETUP,
        code(
            """
import json

import kit
import kit.backtest as bt
from kit.broker import FillModel
from kit.strategies import RsiReversion
from kit.strategy import Strategy

candidate = RsiReversion(period=10, lower=25, upper=70, stop_loss=0.02)
model = FillModel(fees=0.001, slippage=0.0002)
print(candidate.path, candidate.importable())
stored = json.dumps(candidate.to_dict())
assert Strategy.from_dict(json.loads(stored)) == candidate
stored
"""
        ),
        md("A strategy class defined in a notebook cell is not importable by another process: put it in a module (e.g. `mystrategies.py` on the daemon's path)."),
        code(
            """
class NotebookOnly(RsiReversion):
    pass

print("importable by the daemon:", NotebookOnly.importable())
"""
        ),
        md("## Backtest and replay must agree"),
        code(
            """
data = kit.load("BTCUSDT", "1m", "2025-07-01", "2025-07-04", offline=True, progress=False)
backtest = bt.run(candidate, data, model=model)
replayed = kit.replay(candidate, data, symbol="BTCUSDT", interval="1m", model=model)[0]
a, b = backtest.trades, replayed.trades
assert len(a) == len(b) and (a.entry_time == b.entry_time).all() and (a.exit_time == b.exit_time).all()
assert ((a.exit_price - b.exit_price).abs() <= 1e-9 * a.exit_price).all() and ((a.pnl - b.pnl).abs() <= 1e-6).all()
print(f"{len(a)} trades, identical in the backtest and through the live path; P&L {a.pnl.sum():+.2f}")
"""
        ),
        md(
            """
## Promote

<!-- KIT.PROMOTE CELL: completed by the daemon issue (issue 5) -->
The next cell is where `kit.promote(candidate, user=..., symbol="BTCUSDT", interval="1m")` goes:
it validates again (importable, parameters, a short backtest), stores the strategy as active for
the user, and the running daemon picks it up within seconds.
"""
        ),
        code(
            """
# --- kit.promote (completed by the daemon issue) ---
import tempfile

from kit.store import Store, strategies, users

# The daemon's database is KIT_DATABASE_URL (default SQLite under data/). Without it this
# notebook promotes into a throwaway database, so a CI run never touches a real deployment.
if os.environ.get("KIT_DATABASE_URL"):
    store, owner = Store(), os.environ.get("KIT_USER", "demo")  # `kit users add NAME` first
else:
    store, owner = Store(f"sqlite:///{tempfile.mkdtemp()}/kit.db"), "researcher"
    store.migrate()
    users.get(store, owner) or users.add(store, owner, "not-a-real-password")
store.migrate()

rec = kit.promote(candidate, user=owner, symbol="BTCUSDT", interval="1m", store=store,
                  fees=model.fees, slippage=model.slippage, size=model.size, init_cash=model.init_cash)
print(f"promoted {rec.name} as strategy {rec.id} v{rec.version} for {owner}: the daemon trades it within seconds")

# New parameters: same strategy (id, ledger, position), next version; the daemon switches on the next candle.
rec = kit.promote(candidate.replace(lower=28), user=owner, symbol="BTCUSDT", interval="1m", store=store,
                  fees=model.fees, slippage=model.slippage)
print(f"re-promoted: v{rec.version}, params {rec.params}")
# kit.demote(rec, user=owner, store=store) switches it off again (its trades stay in the ledger).
[(r.id, r.name, r.version, r.active, r.state) for r in strategies.list(store, owner)]
"""
        ),
    ],
)
