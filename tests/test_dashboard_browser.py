"""The dashboard in a real browser: Debian's Chromium via Playwright against a real ``panel serve``.

One module-scoped stack (simulator + SQLite store + dashboard subprocess, see
``tests/fixtures/dashboard.py``); each test opens its own browser context. Screenshots of every
page go to ``tests/artifacts/``.
"""

from __future__ import annotations

import itertools
import re
import urllib.parse

import pytest

from tests.fixtures.dashboard import (
    STRATEGIES,
    USERS,
    doc_json,
    login,
    start_stack,
    stop,
    user_prices,
    wait_for_bokeh,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _others(user: str) -> list[str]:
    return [s for u, strats in STRATEGIES.items() if u != user for s, _, _ in strats]


def test_wrong_password_lands_on_login_with_error(dashboard_stack, chromium, artifacts):
    page = login(chromium, dashboard_stack.base_url, "alice", password="not-her-password")
    try:
        assert urllib.parse.urlparse(page.url).path == "/login"
        assert "error=" in page.url
        page.get_by_role("alert").wait_for()
        assert "Invalid username or password" in page.get_by_role("alert").inner_text()
        page.screenshot(path=str(artifacts / "login_error.png"))
        # an unknown user is refused the same way
        page2 = login(chromium, dashboard_stack.base_url, "mallory", password="whatever")
        assert "error=" in page2.url
        page2.context.close()
        # and without a login cookie the dashboard redirects to the login page
        page.goto(f"{dashboard_stack.base_url}/dashboard")
        assert urllib.parse.urlparse(page.url).path == "/login"
        page.screenshot(path=str(artifacts / "login.png"))
    finally:
        page.context.close()


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_each_user_sees_only_their_strategies_and_trades(dashboard_stack, chromium, artifacts, user):
    page = login(chromium, dashboard_stack.base_url, user)
    try:
        wait_for_bokeh(page)
        page.get_by_text("My strategies", exact=True).click()
        mine = [s for s, _, _ in STRATEGIES[user]]
        for name in mine:
            # in the strategies table and, as "#id name", in the trades table
            page.get_by_text(name, exact=True).first.wait_for()
            sid = dashboard_stack.ids[user][name]
            page.get_by_text(f"#{sid} {name}", exact=True).first.wait_for()
        page.get_by_text(f"Strategies of {user}").wait_for()
        page.screenshot(path=str(artifacts / f"my_strategies_{user}.png"), full_page=True)
        sent = doc_json(page)
        for name in mine:
            assert name in sent
        for other in _others(user):
            assert other not in sent, f"{other} (someone else's strategy) reached {user}'s browser"
        # fills and trades: this user's prices were sent, nobody else's
        for p in user_prices(user):
            assert repr(p) in sent, f"{user}'s price {p} missing"
        for other in USERS:
            if other != user:
                for p in user_prices(other):
                    assert repr(p) not in sent, f"{other}'s price {p} reached {user}'s browser"
        # trade markers on the chart: this user's fills on the chart's symbol (BTCUSDT)
        n_markers = page.evaluate("() => Bokeh.documents[0].get_model_by_name('trade_markers').data.time.length")
        btc_fills = sum(
            2 * len(trades) + (1 if name == "alice-rsi" else 0)
            for name, symbol, trades in STRATEGIES[user]
            if symbol == "BTCUSDT"
        )
        assert n_markers == btc_fills
    finally:
        page.context.close()


def test_chart_receives_new_candles(dashboard_stack, chromium, artifacts):
    page = login(chromium, dashboard_stack.base_url, "bob")
    try:
        wait_for_bokeh(page)
        js = "() => { const s = Bokeh.documents[0].get_model_by_name('candles'); return [s.data.open_time.length, s.data.open_time[s.data.open_time.length - 1]]; }"  # noqa: E501
        n0, t0 = page.evaluate(js)
        assert n0 > 0
        # the simulator closes one 1m candle per second: new rows stream in
        page.wait_for_function(
            f"() => Bokeh.documents[0].get_model_by_name('candles').data.open_time.length > {n0}", timeout=60_000
        )
        n1, t1 = page.evaluate(js)
        assert n1 > n0 and t1 > t0
        # they came over the page's live socket, not as Bokeh document patches
        live = page.evaluate("() => { const k = Bokeh.documents[0].get_model_by_name('candles')._kit;"
                             " return [k.key, k.ws && k.ws.readyState, k.messages]; }")  # fmt: skip
        assert live[0].startswith("BTCUSDT@1m|") and live[1] == 1 and live[2] > 0
        # the price header follows the stream in the page too
        header = "() => Bokeh.documents[0].get_model_by_name('price_header').text"
        assert "BTCUSDT" in page.evaluate(header)
        # the open times are consecutive minutes: closed candles and rollover patched, nothing duplicated
        times = page.evaluate("() => Array.from(Bokeh.documents[0].get_model_by_name('candles').data.open_time)")
        assert all(b - a == 60_000 for a, b in itertools.pairwise(times))
        # overlay values, computed once by the shared engine, arrive with the candles
        finite_ema = page.evaluate(
            "() => Array.from(Bokeh.documents[0].get_model_by_name('candles').data.ov_ema_20)"
            ".filter(Number.isFinite).length"
        )
        assert finite_ema > 0
        page.get_by_text("REPLAY").first.wait_for()
        page.get_by_text("EMA 20", exact=True).click()
        page.wait_for_function(
            "() => { const d = Bokeh.documents[0]; const ms = d.all_models ?? d._all_models;"
            " for (const m of (ms.values ? ms.values() : ms)) {"
            " if (m.glyph && m.visible && m.glyph.y && m.glyph.y.field == 'ov_ema_20') return true; }"
            " return false; }",
            timeout=30_000,
        )
        page.wait_for_timeout(500)  # let the canvas repaint
        page.screenshot(path=str(artifacts / "market.png"))
        # another interval: the session re-subscribes and the chart holds 5m candles
        page.get_by_text("5m", exact=True).click()
        page.wait_for_function(
            "() => { const t = Bokeh.documents[0].get_model_by_name('candles').data.open_time;"
            " return t.length > 2 && t[1] - t[0] == 300000; }",
            timeout=60_000,
        )
        # the socket now follows the 5m stream; once a 5m candle closes the window is still gap-free
        page.wait_for_function(
            "() => { const s = Bokeh.documents[0].get_model_by_name('candles');"
            " return s._kit.key.startsWith('BTCUSDT@5m|') && s._kit.ws && s._kit.ws.readyState == 1; }",
            timeout=30_000,
        )
        _, t5 = page.evaluate(js)
        page.wait_for_function(
            f"() => {{ const t = Bokeh.documents[0].get_model_by_name('candles').data.open_time;"
            f" return t[t.length - 1] > {t5}; }}",
            timeout=60_000,
        )
        times = page.evaluate("() => Array.from(Bokeh.documents[0].get_model_by_name('candles').data.open_time)")
        assert all(b - a == 300_000 for a, b in itertools.pairwise(times))
    finally:
        page.context.close()


def test_activate_and_deactivate_own_strategy(dashboard_stack, chromium):
    from kit.store import strategies

    page = login(chromium, dashboard_stack.base_url, "alice")
    store = dashboard_stack.store()
    try:
        wait_for_bokeh(page)
        page.get_by_text("My strategies", exact=True).click()
        sid = dashboard_stack.ids["alice"]["alice-rsi"]
        page.get_by_role("combobox").first.select_option(label=f"#{sid} alice-rsi (BTCUSDT 1m)")
        page.get_by_role("button", name="Deactivate", exact=True).click()
        page.get_by_text(f"#{sid} alice-rsi deactivated.").wait_for()
        assert strategies.get(store, "alice", sid).active is False
        page.get_by_role("button", name="Activate", exact=True).click()
        page.get_by_text(f"#{sid} alice-rsi activated.").wait_for()
        assert strategies.get(store, "alice", sid).active is True
    finally:
        store.dispose()
        page.context.close()


@pytest.mark.parametrize("path", ["/ops", "/admin"])
def test_admin_pages_denied_to_a_viewer(dashboard_stack, chromium, artifacts, path):
    page = login(chromium, dashboard_stack.base_url, "alice")
    try:
        resp = page.goto(dashboard_stack.base_url + path)
        assert resp is not None and resp.status == 403
        page.screenshot(path=str(artifacts / f"admin_denied{path.replace('/', '_')}.png"))
    finally:
        page.context.close()


def test_admin_page_shown_to_an_admin(dashboard_stack, chromium, artifacts):
    viewer = login(chromium, dashboard_stack.base_url, "bob")  # a live session the admin should see
    page = login(chromium, dashboard_stack.base_url, "root")
    try:
        wait_for_bokeh(viewer)
        resp = page.goto(dashboard_stack.base_url + "/ops")
        assert resp is not None and resp.status == 200
        for title in ("Daemon", "Feed (this dashboard process)", "Sessions", "Users and strategies"):
            page.get_by_text(title, exact=True).wait_for()
        page.get_by_text("daemon unreachable").wait_for()  # no daemon in this stack, and it says so
        page.get_by_text("BTCUSDT@1m").first.wait_for()  # the hub's stream and the viewer's session
        for name in USERS:  # in the users table (the pause controls list them too, as options)
            page.locator(".tabulator-cell", has_text=re.compile(f"^{name}$")).first.wait_for()
        page.screenshot(path=str(artifacts / "admin.png"), full_page=True)
        # Panel's own admin page is open to admins
        resp = page.goto(dashboard_stack.base_url + "/admin")
        assert resp is not None and resp.status == 200
    finally:
        viewer.context.close()
        page.context.close()


def test_logout_ends_the_session(dashboard_stack, chromium):
    page = login(chromium, dashboard_stack.base_url, "bob")
    try:
        wait_for_bokeh(page)
        page.goto(dashboard_stack.base_url + "/logout")
        page.goto(dashboard_stack.base_url + "/dashboard")
        assert urllib.parse.urlparse(page.url).path == "/login"
    finally:
        page.context.close()


_KIT = "Bokeh.documents[0].get_model_by_name('candles')._kit"
_TIMES = "() => Array.from(Bokeh.documents[0].get_model_by_name('candles').data.open_time)"


def _drop_exchange_connections(sim_url: str) -> None:
    import urllib.request

    req = urllib.request.Request(f"{sim_url}/_sim/fault?kind=drop", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


def _recovers(page, before: int, what: str) -> None:
    """After ``before`` states: the indicator went through reconnecting and is connected again, with
    new candles after it and no hole in the chart."""
    page.wait_for_function(
        f"() => {_KIT}.states.slice({before}).some(s => s.startsWith('reconnecting'))", timeout=60_000
    )
    page.wait_for_function(f"() => {_KIT}.state === 'connected'", timeout=60_000)
    n = len(page.evaluate(_TIMES))
    page.wait_for_function(f"() => Bokeh.documents[0].get_model_by_name('candles').data.open_time.length > {n + 2}",
                           timeout=60_000)  # fmt: skip
    times = page.evaluate(_TIMES)
    assert all(b - a == 60_000 for a, b in itertools.pairwise(times)), f"a hole in the chart after {what}"


def test_connection_indicator_shows_reconnecting_then_connected_with_no_hole(dashboard_stack, chromium, artifacts):
    page = login(chromium, dashboard_stack.base_url, "bob")
    status = "() => Bokeh.documents[0].get_model_by_name('live_status').text"
    try:
        wait_for_bokeh(page)
        page.wait_for_function(f"() => {_KIT} && {_KIT}.state === 'connected' && {_KIT}.lastMsg > 0")
        page.get_by_text("● connected").wait_for()
        assert "updated" in page.evaluate(status)  # the data's age is shown
        page.screenshot(path=str(artifacts / "live_connected.png"))
        # the simulator drops every exchange connection: the page says so, then resumes
        before = page.evaluate(f"() => {_KIT}.states.length")
        _drop_exchange_connections(dashboard_stack.sim_url)
        _recovers(page, before, "the exchange connection dropped")
        # the page's own socket drops: it reconnects with backoff, counting attempts, from where it stopped
        before = page.evaluate(f"() => {_KIT}.states.length")
        page.evaluate(f"() => {_KIT}.ws.close()")
        _recovers(page, before, "the page's socket dropped")
        assert "reconnecting · attempt 1" in page.evaluate(f"() => {_KIT}.states.slice({before})")
        page.get_by_text("● connected").wait_for()
        page.screenshot(path=str(artifacts / "live_reconnected.png"))
    finally:
        page.context.close()


def test_a_refused_stream_is_said_on_the_page(dashboard_stack, chromium, artifacts):
    page = login(chromium, dashboard_stack.base_url, "alice")
    try:
        wait_for_bokeh(page)
        page.wait_for_function(f"() => {_KIT} && {_KIT}.state === 'connected'")
        # a stream the server refuses (as a stale page of an unlisted symbol would ask for)
        page.evaluate("() => { const s = Bokeh.documents[0].get_model_by_name('candles');"
                      " s.tags = ['NOPE<b>@1m|x']; }")  # fmt: skip
        page.wait_for_function(f"() => {_KIT}.state === 'refused'")
        text = page.evaluate("() => Bokeh.documents[0].get_model_by_name('live_status').text")
        assert "this stream was refused" in text and "<b>" not in text  # the reason is text, not markup
        page.get_by_text("● refused").wait_for()
        page.screenshot(path=str(artifacts / "live_refused.png"))
    finally:
        page.context.close()


def test_a_chart_with_no_new_candle_for_longer_than_its_interval_is_stale(dashboard_stack, chromium, artifacts):
    page = login(chromium, dashboard_stack.base_url, "alice")
    try:
        page.clock.install()  # the page's clock still runs; fast_forward jumps it as if minutes passed
        wait_for_bokeh(page)
        page.wait_for_function(f"() => {_KIT} && {_KIT}.state === 'connected' && {_KIT}.lastMsg > 0")
        before = page.evaluate(f"() => {_KIT}.states.length")
        page.clock.fast_forward("02:00")  # a 1m chart: no new candle for 2 minutes is stale (> 1 min + 10 s)
        page.wait_for_function(f"() => {_KIT}.states.slice({before}).some(s => s.startsWith('stale'))")
        assert any(s.startswith("stale · no new candle for") for s in page.evaluate(f"() => {_KIT}.states"))
        page.wait_for_function(f"() => {_KIT}.state === 'connected'")  # the next candle: live again
    finally:
        page.context.close()


def test_a_symbol_is_found_by_search_and_every_interval_is_offered(dashboard_stack, chromium, artifacts):
    page = login(chromium, dashboard_stack.base_url, "bob")
    try:
        wait_for_bokeh(page)
        for label in ("1m", "3m", "30m", "2h", "4h", "12h", "1d", "3d", "1w"):
            page.get_by_text(label, exact=True).first.wait_for()
        box = page.get_by_placeholder("search a symbol")
        box.fill("")
        box.press_sequentially("eth", delay=50)  # part of the name, any case
        page.get_by_text("ETHUSDT", exact=True).first.click()
        page.get_by_text("4h", exact=True).first.click()
        page.wait_for_function(
            f"() => {_KIT}.key.startsWith('ETHUSDT@4h|') && {_KIT}.ws && {_KIT}.ws.readyState == 1"
            f" && {_KIT}.state === 'connected'",
        )
        page.wait_for_function("() => Bokeh.documents[0].get_model_by_name('candles').data.open_time.length > 0")
        times = page.evaluate(_TIMES)
        assert times and all(t % (4 * 3_600_000) == 0 for t in times)
        assert "ETHUSDT" in page.evaluate("() => Bokeh.documents[0].get_model_by_name('price_header').text")
        page.screenshot(path=str(artifacts / "market_eth_4h.png"))
    finally:
        page.context.close()


def test_a_dashboard_restart_is_said_on_the_page_which_resumes_with_no_hole(tmp_path, chromium, artifacts):
    """The dashboard process stops (a deploy, a crash) and comes back on the same port: the page
    says it lost the server, retries with backoff counting attempts, and resumes where it stopped."""
    stack = start_stack(tmp_path / "restart")
    try:
        page = login(chromium, stack.base_url, "bob")
        try:
            wait_for_bokeh(page)
            page.wait_for_function(f"() => {_KIT} && {_KIT}.state === 'connected' && {_KIT}.lastMsg > 0")
            before = page.evaluate(f"() => {_KIT}.states.length")
            stop(stack.procs["dashboard"])
            page.wait_for_function(f"() => {_KIT}.tries >= 2")  # still retrying, with backoff
            text = page.evaluate("() => Bokeh.documents[0].get_model_by_name('live_status').text")
            assert "reconnecting · attempt" in text and "lost the connection to the dashboard server" in text
            page.screenshot(path=str(artifacts / "live_server_gone.png"))
            stack.start_dashboard()
            _recovers(page, before, "the dashboard restarted")
            page.get_by_text("● connected").wait_for()
        finally:
            page.context.close()
    finally:
        for name in ("dashboard", "simulator"):
            stop(stack.procs.get(name))
