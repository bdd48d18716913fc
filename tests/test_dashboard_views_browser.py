"""What viewers and operators look at, in a real browser (Debian's Chromium via Playwright) against a
real ``panel serve``: the indicator panes under the chart, the landing summary of one's strategies,
the admin page's live plots and its pause switches.

One module-scoped stack (simulator + SQLite store + dashboard subprocess, see
``tests/fixtures/dashboard.py``); each test opens its own browser context. Screenshots go to
``tests/artifacts/``.
"""

from __future__ import annotations

import itertools
import math

import pytest

from tests.fixtures.dashboard import SAMPLE_DIR, STRATEGIES, doc_json, login, wait_for_bokeh

pytestmark = [pytest.mark.browser, pytest.mark.slow]

_DOC = "Bokeh.documents[0]"
_ROWS = f"""() => {{
  const d = {_DOC}.get_model_by_name('candles').data;
  const out = {{}};
  for (const c of ['open_time', 'close', 'pn_rsi', 'pn_macd_macd', 'pn_macd_signal', 'pn_macd_hist'])
    out[c] = Array.from(d[c]).map((v) => (Number.isFinite(v) ? v : null));
  return out;
}}"""


def _batch_panes(times: list[float]) -> dict[str, dict[float, float]]:
    """RSI 14 and MACD 12/26/9 computed in one batch over the sample candles the simulator replays,
    up to the chart's last candle: {column: {open time: value}}."""
    from kit.indicators import macd, rsi
    from kit.market.files import read_candles, to_ms

    frame = read_candles(SAMPLE_DIR / "BTCUSDT_1m_20250520_20250818.csv.gz")
    ms = to_ms(frame.index)
    n = int((ms == int(times[-1])).nonzero()[0][0]) + 1
    closes = frame["close"].to_numpy()[:n]
    m, s, h = macd(closes, 12, 26, 9)
    cols = {"close": closes, "pn_rsi": rsi(closes, 14), "pn_macd_macd": m, "pn_macd_signal": s, "pn_macd_hist": h}
    return {c: dict(zip(ms[:n].tolist(), v.tolist(), strict=True)) for c, v in cols.items()}


def test_indicator_panes_equal_the_batch_indicators_and_grow_live(dashboard_stack, chromium, artifacts):
    page = login(chromium, dashboard_stack.base_url, "bob")
    try:
        wait_for_bokeh(page)
        for label in ("Volume", "RSI 14", "MACD 12 26 9"):  # chosen on this chart
            page.get_by_text(label, exact=True).click()
        page.wait_for_function(
            f"() => ['pane_volume', 'pane_rsi', 'pane_macd'].every((n) => {_DOC}.get_model_by_name(n))"
        )
        # linked on the time axis with the price panel
        assert page.evaluate(
            f"() => ['pane_volume', 'pane_rsi', 'pane_macd'].every((n) =>"
            f" {_DOC}.get_model_by_name(n).x_range === {_DOC}.get_model_by_name('price').x_range)"
        )
        page.wait_for_function(f"() => {_DOC}.get_model_by_name('candles').data.pn_rsi.some(Number.isFinite)")
        rows = page.evaluate(_ROWS)
        n0 = len(rows["open_time"])
        finite0 = sum(v is not None for v in rows["pn_rsi"])
        # every closed candle's pane values equal the batch indicators on the same candles (the last
        # row is the forming candle: its values move until it closes)
        want = _batch_panes(rows["open_time"][:-1])
        compared = 0
        for i, t in enumerate(rows["open_time"][:-1]):
            assert rows["close"][i] == want["close"][t]  # the same candles
            for col in ("pn_rsi", "pn_macd_macd", "pn_macd_signal", "pn_macd_hist"):
                got, exp = rows[col][i], want[col][t]
                if math.isnan(exp):
                    assert got is None, f"{col} at {t}: {got} during the warm-up"
                else:
                    assert got is not None and math.isclose(got, exp, rel_tol=1e-9, abs_tol=1e-9), (col, t, got, exp)
                    compared += 1
        assert compared > 4 * 50
        page.wait_for_timeout(500)  # let the canvases repaint
        page.screenshot(path=str(artifacts / "panes.png"), full_page=True)
        # the panes grow with the live candles, over the same socket
        page.wait_for_function(f"() => {_DOC}.get_model_by_name('candles').data.open_time.length > {n0 + 2}",
                               timeout=60_000)  # fmt: skip
        rows = page.evaluate(_ROWS)
        assert sum(v is not None for v in rows["pn_rsi"]) > finite0
        assert all(b - a == 60_000 for a, b in itertools.pairwise(rows["open_time"]))
        want = _batch_panes(rows["open_time"][:-1])
        t = rows["open_time"][-2]
        assert math.isclose(rows["pn_rsi"][-2], want["pn_rsi"][t], rel_tol=1e-9)
        assert math.isclose(rows["pn_macd_hist"][-2], want["pn_macd_hist"][t], rel_tol=1e-9, abs_tol=1e-9)
        page.screenshot(path=str(artifacts / "panes_grown.png"), full_page=True)
    finally:
        page.context.close()


def test_panes_named_in_the_address_open_with_the_page(dashboard_stack, chromium):
    page = login(chromium, dashboard_stack.base_url, "alice")
    try:
        page.goto(f"{dashboard_stack.base_url}/dashboard?panes=rsi,macd")
        wait_for_bokeh(page)
        page.wait_for_function(f"() => {_DOC}.get_model_by_name('pane_rsi') && {_DOC}.get_model_by_name('pane_macd')")
        assert page.evaluate(f"() => {_DOC}.get_model_by_name('pane_volume')") is None  # not asked for
    finally:
        page.context.close()


@pytest.mark.parametrize(("user", "other"), [("alice", "bob"), ("bob", "alice")])
def test_the_landing_page_shows_my_strategies_at_a_glance_before_the_chart(
    dashboard_stack, chromium, artifacts, user, other
):
    page = login(chromium, dashboard_stack.base_url, user)
    try:
        wait_for_bokeh(page)
        page.get_by_text("My strategies at a glance").wait_for()
        glance = page.locator(".kit-glance")
        for name, symbol, _ in STRATEGIES[user]:
            row = glance.locator(f"tr[data-sid='{dashboard_stack.ids[user][name]}']")
            row.get_by_text(name, exact=True).wait_for()
            assert f"{symbol} 1m" in row.inner_text() and "active" in row.inner_text()
        if user == "alice":  # her open position, valued at the live price once the stream has one
            row = glance.locator(f"tr[data-sid='{dashboard_stack.ids['alice']['alice-rsi']}']")
            assert "long 0.02" in row.inner_text() and "entry" in row.inner_text()
            row.get_by_text("no price yet").wait_for(state="detached")
            assert any(c in row.inner_text() for c in "+-")  # today's P&L, signed
        # above the market chart
        glance_box = glance.bounding_box()
        symbol_box = page.get_by_placeholder("search a symbol").bounding_box()
        assert glance_box is not None and symbol_box is not None and glance_box["y"] < symbol_box["y"]
        page.screenshot(path=str(artifacts / f"glance_{user}.png"))
        # nothing of the other user's reached this page
        sent = doc_json(page)
        for name, _, _ in STRATEGIES[other]:
            assert name not in sent, f"{other}'s {name} reached {user}'s page"
    finally:
        page.context.close()
