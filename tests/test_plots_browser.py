"""Every chart of kit.plots and of the notebooks, drawn by BokehJS in Debian's Chromium and checked
in the page as a quant would read it: the panels are there, they pan together (a real mouse drag
on the price moves every panel), their plotting areas line up, and price and money axes read as
numbers (``124,000``), never ``1.240e+5``. Screenshots go to ``tests/artifacts/plots/``.

The notebooks' charts are the objects their cells display: each notebook runs headless with one
cell appended that saves every HoloViews object in ``Out`` as a standalone page.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest

import kit.backtest as bt
from kit.indicators import ema, macd, rsi
from kit.market.files import read_candles
from kit.strategies import BollingerBreakout, EmaCross, RsiReversion
from tests.test_plots import MacdCross

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
MONEY_AXES = ("price", "equity")  # axes in a currency: read as 124,000, never scientific
SCIENTIFIC = re.compile(r"\d[eE][+-]?\d")

INSPECT_JS = """() => {
  const figs = [], axes = [], mappers = [];
  for (const v of Bokeh.index.all_views()) {
    const m = v.model, t = m.type;
    if (t === "Figure" || t === "Plot") {
      const r = v.el.getBoundingClientRect(), f = v.frame.bbox;
      const y = m.left.find((a) => a.type && a.type.endsWith("Axis"));
      const xr = m.x_range, yr = m.y_range;
      const rows = m.renderers.filter((g) => g.data_source).map((g) => g.data_source.get_length() ?? 0);
      figs.push({
        rows: Math.max(0, ...rows),
        ylabel: y && y.axis_label != null ? String(y.axis_label) : "",
        x_range: xr.id, y_range: yr.id, x_type: xr.type, y_type: yr.type,
        x_factors: xr.factors ? Array.from(xr.factors, String) : null,
        y_factors: yr.factors ? Array.from(yr.factors, String) : null,
        x_start: Number(v.frame.x_range.start), x_end: Number(v.frame.x_range.end),
        left: r.left + f.left, right: r.left + f.right, top: r.top + f.top, bottom: r.top + f.bottom,
      });
    } else if (t.endsWith("Axis") && m.visible) {
      const items = v.compute_labels(v.tick_coords.major[v.dimension]).items;
      axes.push({label: m.axis_label != null ? String(m.axis_label) : "", type: t, labels: items.map((x) => x.text)});
    }
  }
  for (const d of Bokeh.documents) {
    const ms = d.all_models ?? d._all_models;
    for (const m of (ms.values ? ms.values() : ms)) {
      if (m.type === "LinearColorMapper") {
        mappers.push({low: m.low, high: m.high, minus_0_1: Array.from(m.rgba_mapper.v_compute([-0.1])),
                      plus_0_1: Array.from(m.rgba_mapper.v_compute([0.1]))});
      }
    }
  }
  return {figs, axes, mappers};
}"""

X_STARTS_JS = """() => Array.from(Bokeh.index.all_views()).filter((v) => v.model.type === "Figure")
  .map((v) => Number(v.frame.x_range.start))"""


def _page(browser: Any, html: Path, png: Path) -> tuple[Any, dict[str, Any]]:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(html.as_uri())
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle"
        " && Array.from(Bokeh.index.all_views()).some((v) => v.model.type === 'Figure')"
    )
    page.wait_for_timeout(300)  # the canvas paints after the document is idle
    page.screenshot(path=str(png), full_page=True)
    return page, page.evaluate(INSPECT_JS)


def _check_readable(name: str, info: dict[str, Any]) -> None:
    """What every chart owes its reader: numbers on money axes, and room for the data."""
    assert info["figs"], f"{name}: no figure drawn"
    for ax in info["axes"]:
        assert not any(SCIENTIFIC.search(x) for x in ax["labels"]), f"{name}: {ax['label']!r} axis reads {ax['labels']}"
        if ax["label"].split(" ")[0] in MONEY_AXES:
            assert len(ax["labels"]) >= 2, f"{name}: {ax['label']} axis has no ticks"
            assert all(re.fullmatch(r"-?[\d,]+(\.\d+)?", x) for x in ax["labels"]), ax["labels"]
    for f in info["figs"]:
        assert f["bottom"] - f["top"] >= 90, (
            f"{name}: the {f['ylabel']!r} panel has {f['bottom'] - f['top']} px of plot"
        )
        assert f["rows"] > 0, f"{name}: the {f['ylabel']!r} panel draws no data"


def _check_time_panels(name: str, page: Any, info: dict[str, Any]) -> None:
    """Panels of one time chart: one x-range, aligned frames, and a drag on the top one pans all."""
    figs = info["figs"]
    assert len({f["x_range"] for f in figs}) == 1, f"{name}: panels with their own x-range {figs}"
    assert len({f["y_range"] for f in figs}) == len(figs), f"{name}: panels sharing a y-range"
    assert max(f["left"] for f in figs) - min(f["left"] for f in figs) <= 1, f"{name}: frames not aligned"
    assert max(f["right"] for f in figs) - min(f["right"] for f in figs) <= 1, f"{name}: frames not aligned"
    if len(figs) < 2:
        return
    top = figs[0]
    before = page.evaluate(X_STARTS_JS)
    x, y = (top["left"] + top["right"]) / 2, (top["top"] + top["bottom"]) / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 150, y, steps=5)
    page.mouse.up()
    page.wait_for_timeout(300)
    after = page.evaluate(X_STARTS_JS)
    assert all(a < b for a, b in zip(after, before, strict=True)), (
        f"{name}: panning the price moved {before} -> {after}"
    )
    assert len(set(after)) == 1, f"{name}: the panels show different windows after a pan: {after}"


def _check_heatmap(name: str, info: dict[str, Any]) -> None:
    (mapper,) = info["mappers"]
    assert mapper["low"] == -mapper["high"], f"{name}: colour scale not centred on 0: {mapper}"
    r, g = mapper["minus_0_1"][:2]
    assert r > g, f"{name}: -0.1 is drawn {mapper['minus_0_1']} (greenish)"
    r, g = mapper["plus_0_1"][:2]
    assert g > r, f"{name}: +0.1 is drawn {mapper['plus_0_1']} (reddish)"
    (fig,) = info["figs"]
    assert fig["x_type"] == fig["y_type"] == "FactorRange", f"{name}: numeric axes give cells of uneven width"


def _html(chart: Any, path: Path) -> Path:
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    from kit import plots

    path.write_text(file_html(plots.to_bokeh(chart), INLINE, path.stem))
    return path


@pytest.fixture(scope="module")
def btc(sample_dir):
    return read_candles(sample_dir / "BTCUSDT_1m_20250520_20250818.csv.gz").iloc[:3000]  # ~105,000 USDT


@pytest.fixture(scope="module")
def eth_1h(sample_dir):
    return read_candles(sample_dir / "ETHUSDT_1h_20230101_20240110.csv.gz").iloc[:2000]


@pytest.fixture(scope="module")
def plots_dir(artifacts) -> Path:
    d = artifacts / "plots"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _kit_charts(btc, eth_1h) -> dict[str, tuple[Any, tuple[str, ...]]]:
    """name -> (chart, the panels it must show, by y-axis label)."""
    from kit import plots

    close = btc["close"].to_numpy()
    rsi_run = bt.run(RsiReversion(), btc)
    table = bt.sweep(EmaCross, btc, {"fast": [3, 5, 8, 12, 16, 20], "slow": [20, 30, 45, 60, 90, 120]}, progress=False)
    return {
        "candles": (
            plots.candles(btc, indicators={"ema50": ema(close, 50), "rsi": rsi(close, 14), "macd": macd(close)}),
            ("price", "volume", "rsi", "macd"),
        ),
        "backtest_rsi": (plots.backtest(rsi_run, max_candles=1500), ("price", "volume", "rsi", "equity")),
        "backtest_macd": (
            plots.backtest(bt.run(MacdCross(), btc), max_candles=600),
            ("price", "volume", "macd", "equity"),
        ),
        "backtest_bollinger": (plots.backtest(bt.run(BollingerBreakout(), eth_1h)), ("price", "volume", "equity")),
        "equity": (plots.equity(rsi_run), ("equity", "drawdown %")),
        "heatmap": (plots.heatmap(table, "fast", "slow", "sharpe"), ("slow",)),
        "walk_forward": (
            bt.walk_forward(
                EmaCross, btc, {"fast": [3, 8], "slow": [20, 45]}, train=1000, test=500, progress=False
            ).plot(),
            ("equity", "fold"),
        ),
    }


def test_every_kit_plots_chart_renders_linked_and_readable_in_chromium(chromium, plots_dir, tmp_path, btc, eth_1h):
    for name, (chart, panels) in _kit_charts(btc, eth_1h).items():
        page, info = _page(chromium, _html(chart, tmp_path / f"{name}.html"), plots_dir / f"kit_{name}.png")
        try:
            labels = [f["ylabel"] for f in info["figs"]]
            assert labels[: len(panels)] == list(panels), f"{name}: panels {labels}, expected {panels}"
            _check_readable(name, info)
            if name == "heatmap":
                _check_heatmap(name, info)
                assert info["figs"][0]["x_factors"] == ["3", "5", "8", "12", "16", "20"]
            else:
                _check_time_panels(name, page, info)
        finally:
            page.close()


# notebook -> the y-axis labels of the charts its cells display, in order
NOTEBOOK_CHARTS = {
    "01_quickstart": [["price", "volume", "rsi", "equity"], ["equity", "drawdown %"]],
    "02_parameter_sweep": [["slow"], ["equity", "drawdown %"], ["equity", "fold"]],
    "03_live_feed": [["price"]],
}

SAVE_CELL = """
import pathlib as _p
import holoviews as _hv
from bokeh.embed import file_html as _file_html
from bokeh.resources import INLINE as _INLINE
_saved = []
for _k in sorted(Out):
    _v = Out[_k]
    if isinstance(_v, _hv.core.Dimensioned):
        # a live chart (DynamicMap) as its frontend shows it now: evaluated on its streams' latest data
        _v = _v[()] if isinstance(_v, _hv.DynamicMap) else _v
        _path = _p.Path({out!r}) / f"{name}_{{_k}}.html"
        _path.write_text(_file_html(_hv.render(_v, backend="bokeh"), _INLINE, _path.stem))
        _saved.append(str(_path))
print("SAVED", _json.dumps(_saved))
"""


@pytest.mark.parametrize("name", list(NOTEBOOK_CHARTS))
def test_every_notebook_chart_renders_linked_and_readable_in_chromium(name, chromium, plots_dir, tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nb.cells.append(
        nbformat.v4.new_code_cell("import json as _json\n" + SAVE_CELL.format(out=str(tmp_path), name=name))
    )
    os.environ.setdefault("NUMBA_CACHE_DIR", str(NOTEBOOKS.parent / ".cache" / "numba"))
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}},
        extra_arguments=[f"--IPKernelApp.exec_lines=import sys; sys.path.insert(0, {str(NOTEBOOKS.parent)!r})"],
    )  # fmt: skip
    client.execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    saved = [Path(p) for p in json.loads(text.split("SAVED", 1)[1])]
    expected = NOTEBOOK_CHARTS[name]
    assert len(saved) == len(expected), f"{name}: its cells display {len(saved)} charts, expected {len(expected)}"
    for html, panels in zip(saved, expected, strict=True):
        page, info = _page(chromium, html, plots_dir / f"notebook_{html.stem}.png")
        try:
            labels = [f["ylabel"] for f in info["figs"]]
            assert labels == panels, f"{html.stem}: panels {labels}, expected {panels}"
            _check_readable(html.stem, info)
            if info["mappers"]:
                _check_heatmap(html.stem, info)
            else:
                _check_time_panels(html.stem, page, info)
        finally:
            page.close()


def test_the_price_axis_check_catches_bokehs_default_scientific_labels(chromium, tmp_path, plots_dir, btc):
    """The browser check above is not vacuous: Bokeh's default formatter on BTC prices fails it."""
    import holoviews as hv

    from kit import plots

    plots.candles(btc.iloc[:10])  # loads the bokeh extension
    chart = hv.Curve((btc.index.tz_localize(None), btc["close"].to_numpy(dtype=np.float64)), "time", "price")
    page, info = _page(chromium, _html(chart, tmp_path / "default.html"), plots_dir / "bokeh_default_price_axis.png")
    page.close()
    with pytest.raises(AssertionError, match="axis reads"):
        _check_readable("default", info)
