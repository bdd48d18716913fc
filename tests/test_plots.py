"""kit.plots: charts build and render to Bokeh with the data they claim to show."""

from __future__ import annotations

import numpy as np
import pytest

import kit.backtest as bt
from kit.market.files import read_candles
from kit.strategies import BollingerBreakout, RsiReversion


@pytest.fixture(scope="module")
def frame(sample_dir):
    return read_candles(sample_dir / "ETHUSDT_1h_20230101_20240110.csv.gz").iloc[:1500]


def _renderers(model):
    from bokeh.models import GlyphRenderer

    return list(model.select({"type": GlyphRenderer}))


def _columns(model, name):
    out = []
    for r in _renderers(model):
        data = r.data_source.data
        if name in data:
            out.append(np.asarray(data[name]))
    return out


def test_backtest_chart_has_candles_overlays_subplot_and_trades(frame):
    from kit import plots

    res = bt.run(BollingerBreakout(), frame)
    assert len(res.trades) > 3
    fig = plots.to_bokeh(plots.backtest(res))
    # bodies and wicks for every candle
    assert any(len(c) == len(frame) for c in _columns(fig, "x0"))
    # the three bands are overlaid on the price chart (price-scale columns, no subplot)
    from bokeh.models import GridPlot, LegendItem

    assert not isinstance(fig, GridPlot)
    legend_items = [item.label["value"] for item in fig.select({"type": LegendItem})]
    assert {"upper", "middle", "lower"} <= set(legend_items), legend_items
    # entry markers at every trade's entry price
    ys = [c for c in _columns(fig, "price") if len(c) == (res.trades["side"] == "long").sum()]
    assert any(np.allclose(np.sort(c), np.sort(res.trades["entry_price"].to_numpy())) for c in ys)


def test_oscillators_go_to_a_subplot(frame):
    from bokeh.models import GridPlot

    from kit import plots

    res = bt.run(RsiReversion(), frame)
    fig = plots.to_bokeh(plots.backtest(res))
    assert isinstance(fig, GridPlot)  # price + RSI panel
    rsi = [c for c in _columns(fig, "rsi") if len(c) == len(frame)]
    assert rsi and np.nanmax(rsi[0]) <= 100


def test_equity_and_heatmap(frame):
    from kit import plots

    res = bt.run(RsiReversion(), frame)
    fig = plots.to_bokeh(plots.equity(res))
    eq = [c for c in _columns(fig, "equity") if len(c) == len(frame)]
    assert eq and np.allclose(eq[0], res.equity.to_numpy())
    dd = [c for c in _columns(fig, "y") if len(c) >= len(frame)]
    assert dd and np.nanmax(dd[0]) <= 0
    table = bt.sweep(RsiReversion, frame, {"period": [7, 14], "lower": [20, 30]}, progress=False)
    hm = plots.to_bokeh(plots.heatmap(table, "period", "lower", "total_return"))
    vals = _columns(hm, "zvalues")
    assert vals and np.allclose(np.sort(vals[0]), np.sort(table["total_return"].to_numpy()))
    with pytest.raises(ValueError, match="nope"):
        plots.heatmap(table, "period", "nope")


def test_an_open_position_has_its_entry_marker_but_no_exit_marker(frame):
    import pandas as pd

    from kit import plots

    full = bt.run(BollingerBreakout(), frame).trades
    k = int(full["duration"].idxmax())
    cut = frame.loc[: full["entry_time"].iloc[k] + pd.Timedelta(hours=1)]
    res = bt.run(BollingerBreakout(), cut)
    tr = res.trades
    assert tr["exit_reason"].iloc[-1] == "open"
    fig = plots.to_bokeh(plots.backtest(res))
    closed = tr[tr["exit_reason"] != "open"]["exit_price"].to_numpy()
    prices = _columns(fig, "price")
    assert any(len(c) == len(tr) for c in prices)  # every entry, the open one included
    assert any(len(c) == len(closed) and np.allclose(np.sort(c), np.sort(closed)) for c in prices)
    assert not any(len(c) == len(tr) and np.isclose(c, cut["close"].iloc[-1]).any() for c in prices)
