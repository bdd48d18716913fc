"""The admin page (``/ops``) in a real browser against a real ``panel serve`` with a real daemon:
live plots of the system, the sortable per-strategy table, and pausing a strategy, which the daemon
honours. (A viewer never gets the page: 403 on the page and its socket, see
``test_dashboard_browser.py`` and ``test_dashboard_security.py``; the store refuses a non-admin's
pause, see ``test_store_admin.py``.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.fixtures.dashboard import login, start_stack, stop, wait_http

pytestmark = [pytest.mark.browser, pytest.mark.slow]

_DOC = "Bokeh.documents[0]"


@pytest.fixture(scope="module")
def ops_stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("ops"))
    try:
        _, env = stack.dashboard_cmd
        port = env["KIT_STATUS_PORT"]
        log = stack.tmp / "daemon.log"
        stack.procs["daemon"] = subprocess.Popen(
            [sys.executable, "-m", "kit", "daemon", "--status-port", port, "--poll", "0.5", "--heartbeat", "1"],
            env=env, cwd=stack.tmp, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_http(f"http://127.0.0.1:{port}/status", stack.procs["daemon"], log)
        stack.status_url = f"http://127.0.0.1:{port}/status"
        yield stack
    finally:
        for name in ("daemon", "dashboard", "simulator"):
            stop(stack.procs.get(name))


def _status(stack) -> dict:
    with urllib.request.urlopen(stack.status_url, timeout=10) as resp:
        return json.loads(resp.read())


def _until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_admin_plots_render_and_grow(ops_stack, chromium, artifacts):
    page = login(chromium, ops_stack.base_url, "root")
    try:
        page.goto(ops_stack.base_url + "/ops")
        page.wait_for_function(f"() => window.Bokeh && Bokeh.documents.length && {_DOC}.get_model_by_name('ops_series')"
                               " && Bokeh.documents[0].get_model_by_name('ops_series').data.t.length >= 2")  # fmt: skip
        for name in ("ops_candles", "ops_latency", "ops_activity", "ops_queue", "ops_rss", "ops_feed", "ops_sessions"):
            assert page.evaluate(f"() => !!{_DOC}.get_model_by_name('{name}')"), name
        n = page.evaluate(f"() => {_DOC}.get_model_by_name('ops_series').data.t.length")
        # refreshed live: new samples arrive without a reload
        page.wait_for_function(f"() => {_DOC}.get_model_by_name('ops_series').data.t.length >= {n + 2}",
                               timeout=60_000)  # fmt: skip
        last = page.evaluate(
            f"() => {{ const d = {_DOC}.get_model_by_name('ops_series').data; const i = d.t.length - 1;"
            " return {daemon_rss: d.daemon_rss[i], dash_rss: d.dash_rss[i], sessions: d.sessions[i],"
            " queue: d.queue[i], evals: Array.from(d.evals_pm).filter(Number.isFinite).length}; }"
        )
        assert last["daemon_rss"] > 10 and last["dash_rss"] > 10 and last["sessions"] >= 1 and last["queue"] >= 0
        assert last["evals"] >= 1
        # closed candles per second of each daemon stream: the replay closes one 1m candle every 2 s
        page.wait_for_function(
            f"() => {{ const d = {_DOC}.get_model_by_name('ops_streams').data;"
            " return d['BTCUSDT/1m'] && Array.from(d['BTCUSDT/1m']).some((v) => v > 0); }",
            timeout=60_000,
        )
        page.wait_for_timeout(500)
        page.screenshot(path=str(artifacts / "admin_plots.png"), full_page=True)
        # the per-strategy table sorts by a column header
        header = page.locator(".tabulator-col[tabulator-field='failures']").first
        header.click()
        _until(lambda: header.get_attribute("aria-sort") in ("ascending", "descending"), 10, "the table to sort")
    finally:
        page.context.close()


def test_an_admin_pauses_a_strategy_and_the_daemon_stops_trading_it(ops_stack, chromium, artifacts):
    from kit.store import ledger

    sid, other = ops_stack.ids["alice"]["alice-ema"], ops_stack.ids["bob"]["bob-bollinger"]
    _until(lambda: {sid, other} <= {m["id"] for m in _status(ops_stack).get("strategy_detail", [])}, 60,
           "the daemon to run the strategies")  # fmt: skip
    page = login(chromium, ops_stack.base_url, "root")
    store = ops_stack.store()
    try:
        page.goto(ops_stack.base_url + "/ops")
        choice = page.locator("select", has=page.locator("option", has_text="alice-ema")).first
        choice.select_option(label=f"#{sid} alice-ema (alice, active)")
        page.get_by_role("button", name="Pause strategy", exact=True).click()
        page.get_by_text(f"Paused #{sid} alice-ema.").wait_for()
        # the daemon stops it at its next poll and says why
        st = _until(lambda: (s := _status(ops_stack)) and sid not in {m["id"] for m in s["strategy_detail"]} and s,
                    30, "the daemon to stop the paused strategy")  # fmt: skip
        problem = next(p for p in st["strategy_problems"] if p["id"] == sid)
        assert problem["state"] == "paused" and "paused by admin root" in problem["error"]
        # it trades no more: its checkpoint stands still while another strategy's moves on
        before = ledger.load_checkpoints(store)
        time.sleep(5)  # more than two candles at this replay speed
        after = ledger.load_checkpoints(store)
        assert after[sid].last_open_time == before[sid].last_open_time
        assert after[other].last_open_time > before[other].last_open_time
        # logged as an event on the admin page
        page.get_by_text(f"admin root paused strategy {sid} (alice-ema)").first.wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts / "admin_paused.png"), full_page=True)
    finally:
        store.dispose()
        page.context.close()
