"""kit.plots: charts build and render to Bokeh with the data they claim to show."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import kit.backtest as bt
from kit.errors import KitError
from kit.indicators import spec
from kit.market.files import read_candles
from kit.strategies import BollingerBreakout, RsiReversion
from kit.strategy import Param, Signals, Strategy, crossed_above, crossed_below


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
    assert any(len(c) == len(frame) for c in _columns(fig, "time_end"))
    # the three bands are overlaid on the price chart (price-scale columns, no panel of their own)
    from bokeh.models import LegendItem

    price = _panel(fig, "price")
    assert not any(_ylabel(f) in ("upper", "middle", "lower", "bbands") for f in _figures(fig))
    legend_items = [item.label["value"] for item in price.select({"type": LegendItem})]
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
    with pytest.raises(KitError, match="nope"):  # one line for the user, no traceback
        plots.heatmap(table, "period", "nope")


# ----- issue 15: plots a quant trusts ---------------------------------------------------------


class MacdCross(Strategy):
    """Long while MACD is above its signal line (a test strategy reading all three MACD outputs)."""

    fast: int = Param(12, ge=2, le=100)
    slow: int = Param(26, ge=3, le=200)
    lookback = 2

    def indicators(self):
        m = spec("macd", self.fast, self.slow, 9)
        return {"macd": (m, "macd"), "signal": (m, "signal"), "hist": (m, "hist")}

    def signals(self, d):
        return Signals(crossed_above(d.macd, d.signal), crossed_below(d.macd, d.signal))


def _figures(model):
    from bokeh.models import Plot

    return list(model.select({"type": Plot}))


def _ylabel(fig) -> str:
    return str(fig.yaxis[0].axis_label or "")


def _panel(model, label):
    found = [f for f in _figures(model) if _ylabel(f).startswith(label)]
    assert len(found) == 1, f"one {label!r} panel expected, got {[_ylabel(f) for f in _figures(model)]}"
    return found[0]


def test_every_panel_of_a_backtest_chart_shares_one_x_range(frame):
    from kit import plots

    res = bt.run(RsiReversion(), frame)
    fig = plots.to_bokeh(plots.backtest(res))
    figs = _figures(fig)
    labels = [_ylabel(f) for f in figs]
    for panel in ("price", "volume", "rsi", "equity"):
        assert any(label.startswith(panel) for label in labels), labels
    # zooming or panning any panel moves every other one: they hold the very same range object
    assert len({id(f.x_range) for f in figs}) == 1, labels
    # and only the time axis is shared: the price axis spans the candles, not the volume or equity
    assert len({id(f.y_range) for f in figs}) == len(figs)
    price = _panel(fig, "price").y_range
    assert frame["low"].min() * 0.9 <= price.start < frame["low"].min() <= frame["high"].max() < price.end
    assert price.end <= frame["high"].max() * 1.1


def test_panels_have_room_to_read_their_data(frame):
    from kit import plots

    res = bt.run(MacdCross(), frame)
    fig = plots.to_bokeh(plots.backtest(res))
    for f in _figures(fig):
        # the plotting area itself (not the figure with its axes and labels) is at least 100 px
        assert f.frame_height is not None and f.frame_height >= 100, (_ylabel(f), f.frame_height, f.height)
    # one width: the time axes of the panels line up (the browser test measures the frames)
    assert len({f.width for f in _figures(fig)}) == 1


def test_macd_is_one_panel_with_line_signal_and_histogram_bars(frame):
    from bokeh.models import Line, Quad, Rect, VBar

    from kit import plots

    res = bt.run(MacdCross(), frame)
    fig = plots.to_bokeh(plots.backtest(res))
    macd = _panel(fig, "macd")
    glyphs = [r.glyph for r in macd.renderers if hasattr(r, "glyph")]
    assert sum(isinstance(g, Line) for g in glyphs) == 2  # the MACD line and its signal
    assert any(isinstance(g, VBar | Quad | Rect) for g in glyphs)  # the histogram as bars
    assert not any(_ylabel(f).startswith(("signal", "hist")) for f in _figures(fig))
    # and the same from a MACDResult handed to candles() directly
    from kit.indicators import macd as macd_fn

    m = macd_fn(frame["close"].to_numpy())
    fig2 = plots.to_bokeh(plots.candles(frame, indicators={"macd": m}))
    glyphs2 = [r.glyph for r in _panel(fig2, "macd").renderers if hasattr(r, "glyph")]
    assert sum(isinstance(g, Line) for g in glyphs2) == 2 and any(isinstance(g, VBar | Quad | Rect) for g in glyphs2)


def test_rsi_panel_has_30_and_70_guides(frame):
    from bokeh.models import Span

    from kit import plots

    fig = plots.to_bokeh(plots.backtest(bt.run(RsiReversion(), frame)))
    rsi = _panel(fig, "rsi")
    levels = sorted(
        float(s.location) for s in rsi.select({"type": Span}) if s.dimension == "width" and s.location is not None
    )
    assert levels == [30.0, 70.0]


def test_price_axis_is_not_in_scientific_notation(frame):
    from bokeh.models import BasicTickFormatter

    from kit import plots

    fig = plots.to_bokeh(plots.backtest(bt.run(RsiReversion(), frame)))
    fmt = _panel(fig, "price").yaxis[0].formatter
    # Bokeh's default formatter writes 124000 as 1.240e+5; the rendered labels are checked in the browser test
    assert not isinstance(fmt, BasicTickFormatter), fmt


def test_a_trade_opened_before_the_drawn_window_does_not_stretch_the_time_axis(frame):
    from kit import plots

    res = bt.run(RsiReversion(), frame)
    tr = res.trades
    # draw a window that starts inside a trade: it opened before the first drawn candle
    inside = tr.iloc[len(tr) // 2]
    start = frame.index.get_loc(inside["entry_time"]) + 2
    assert frame.index[start] < inside["exit_time"]
    n = len(frame) - start
    fig = plots.to_bokeh(plots.backtest(res, max_candles=n))
    first = pd.Timestamp(frame.index[start]).tz_localize(None)
    last = pd.Timestamp(frame.index[-1]).tz_localize(None)
    x = _panel(fig, "price").x_range
    lo, hi = pd.Timestamp(x.start), pd.Timestamp(x.end)
    step = frame.index[1] - frame.index[0]
    assert first - step <= lo and hi <= last + step, (lo, hi, first, last)


def test_heatmap_colours_diverge_from_zero_and_cells_are_even(frame):
    from bokeh.models import FactorRange, LinearColorMapper

    from kit import plots

    table = bt.sweep(RsiReversion, frame, {"period": [5, 7, 14, 30], "lower": [20, 25, 35]}, progress=False)
    table["sharpe"] = np.linspace(-0.1, 2.0, len(table))  # mostly positive: a naive scale makes -0.1 green
    hm = plots.to_bokeh(plots.heatmap(table, "period", "lower", "sharpe"))
    (mapper,) = hm.select({"type": LinearColorMapper})
    assert mapper.low == -mapper.high and mapper.high >= 2.0
    # the cell of -0.1 takes a colour from the red half of the palette
    pal = list(mapper.palette)
    i = int((-0.1 - mapper.low) / (mapper.high - mapper.low) * len(pal))
    r, g = int(pal[i][1:3], 16), int(pal[i][3:5], 16)
    assert r > g, pal[i]
    # categorical axes in numeric order: every cell the same width, whatever the spacing of the values
    assert isinstance(hm.x_range, FactorRange) and list(hm.x_range.factors) == ["5", "7", "14", "30"]
    assert isinstance(hm.y_range, FactorRange) and list(hm.y_range.factors) == ["20", "25", "35"]


def test_a_chart_can_be_shown_twice(frame):
    """A notebook displays a chart again (or a dashboard re-renders it): each render gets its own models."""
    from bokeh.document import Document

    from kit import plots

    res = bt.run(RsiReversion(), frame)
    table = bt.sweep(RsiReversion, frame, {"period": [7, 14], "lower": [20, 30]}, progress=False)
    for chart in (plots.backtest(res), plots.equity(res), plots.heatmap(table, "period", "lower")):
        for _ in range(2):
            Document().add_root(plots.to_bokeh(chart))


def test_trades_with_more_columns_or_an_open_exit_are_drawn(frame):
    """Trades frames grow columns (exit_reason, symbol...); the chart reads only the ones it needs."""
    from kit import plots

    res = bt.run(RsiReversion(), frame)
    tr = res.trades.assign(exit_reason="signal", symbol="ETHUSDT")
    tr.loc[tr.index[-1], "exit_time"] = pd.NaT  # still open
    fig = plots.to_bokeh(plots.candles(frame, trades=tr))
    exits = [c for c in _columns(fig, "price") if len(c) == len(tr) - 1]
    assert exits, "the exit markers of the closed trades"
    with pytest.raises(KitError, match="rows"):
        plots.candles(frame, indicators={"short": np.ones(10)})


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
