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
