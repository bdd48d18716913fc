"""Logins on a real ``panel serve`` behind a (pretend) reverse proxy: ``KIT_PROXY_HEADERS=1``, so the
client address and scheme come from ``X-Forwarded-For`` / ``X-Forwarded-Proto`` and each test can be a
different client.

Password checks run off the server's event loop (a login storm does not slow the live candles of a
logged-in page), failed logins are throttled per user name and per address, logged without the
password and counted in ``/kit/stats``; cookies get ``Secure`` when the proxy says HTTPS.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import statistics
import threading
import time
import urllib.parse

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.fixtures.dashboard import USERS, start_stack, stop

pytestmark = pytest.mark.slow
STATUS_TOKEN = "dashboard-status-token-1"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("logins"),
                        extra_env={"KIT_PROXY_HEADERS": "1", "KIT_STATUS_TOKEN": STATUS_TOKEN})  # fmt: skip
    try:
        yield stack
    finally:
        for name in ("dashboard", "simulator"):
            stop(stack.procs.get(name))


def _post_login(stack, user: str, password: str, address: str, proto: str = "http") -> http.client.HTTPResponse:
    u = urllib.parse.urlparse(stack.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    body = urllib.parse.urlencode({"username": user, "password": password})
    conn.request("POST", "/login", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": address,
        "X-Forwarded-Proto": proto})  # fmt: skip
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def _cookie(resp: http.client.HTTPResponse) -> str:
    jar = [c.split(";", 1)[0] for c in resp.headers.get_all("Set-Cookie") or []]
    cookie = "; ".join(c for c in jar if c.split("=", 1)[0] in ("user", "id_token", "kit_session"))
    assert "user=" in cookie, f"not logged in: {resp.status} {resp.getheader('Location')}"
    return cookie


def _login_page(stack, location: str) -> str:
    u = urllib.parse.urlparse(stack.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("GET", location)
    text = conn.getresponse().read().decode()
    conn.close()
    return text


def _stats(stack, cookie: str) -> dict:
    u = urllib.parse.urlparse(stack.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("GET", "/kit/stats", headers={"Cookie": cookie})
    out = json.loads(conn.getresponse().read())
    conn.close()
    return out


def test_cookies_are_secure_when_the_proxy_says_https(proxied):
    for proto, secure in (("https", True), ("http", False)):
        resp = _post_login(proxied, "bob", USERS["bob"][0], "10.9.0.1", proto)
        assert resp.status == 302
        cookies = resp.headers.get_all("Set-Cookie")
        assert {c.split("=", 1)[0] for c in cookies} >= {"user", "id_token", "kit_session"}
        for c in cookies:
            assert ("; Secure" in c) is secure and "SameSite=Lax" in c and "HttpOnly" in c, c


async def test_a_login_storm_does_not_slow_a_logged_in_page(proxied):
    """4 clients logging in as fast as they can (argon2 each time) while alice's page takes live candles:
    the server loop answers her socket's pings and sends her candles as quickly as without them."""
    cookie = _cookie(_post_login(proxied, "alice", USERS["alice"][0], "10.2.0.1"))
    url = proxied.base_url.replace("http://", "ws://") + "/kit/live?stream=BTCUSDT@1m&since=0"
    arrivals: list[float] = []
    async with connect(url, additional_headers={"Cookie": cookie}, ping_interval=None, max_size=None) as ws:

        async def read() -> None:
            async for _ in ws:
                arrivals.append(time.monotonic())

        reader = asyncio.create_task(read())

        async def rtts(seconds: float) -> list[float]:
            out, end = [], time.monotonic() + seconds
            while time.monotonic() < end:
                t0 = time.monotonic()
                await asyncio.wait_for(await ws.ping(), 10)
                out.append(time.monotonic() - t0)
                await asyncio.sleep(0.1)
            return out

        await asyncio.sleep(2)  # history delivered
        quiet = await rtts(3)
        done, stop_flag = [0], threading.Event()

        def hammer(i: int) -> None:
            while not stop_flag.is_set():
                resp = _post_login(proxied, "bob", USERS["bob"][0], f"10.3.0.{i}")
                assert resp.status == 302 and "error" not in (resp.getheader("Location") or "")
                done[0] += 1

        threads = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        try:
            await asyncio.sleep(1)
            t_start = time.monotonic()
            busy = await rtts(8)
            t_end = time.monotonic()
        finally:
            stop_flag.set()
            for t in threads:
                t.join(60)
        reader.cancel()
    assert done[0] >= 8, f"only {done[0]} logins: the storm did not happen"
    p95 = lambda xs: statistics.quantiles(xs, n=20)[-1]  # noqa: E731
    assert p95(busy) < max(0.25, 3 * p95(quiet)), (p95(quiet), p95(busy), max(busy))
    during = [t for t in arrivals if t_start <= t <= t_end]
    gaps = [b - a for a, b in zip([t_start, *during], [*during, t_end], strict=True)]
    assert len(during) >= 8 and max(gaps) < 1.5, (len(during), max(gaps))  # candles kept coming


def test_failed_logins_are_throttled_per_user_name_logged_and_counted(proxied):
    root = _cookie(_post_login(proxied, "root", USERS["root"][0], "10.4.0.9"))
    before = _stats(proxied, root)["logins"]
    wrong = [f"guess-{i:02d}-x" for i in range(30)]
    for pw in wrong:
        resp = _post_login(proxied, "alice", pw, "10.4.0.1")
        assert resp.status == 302 and "error=" in resp.getheader("Location")
    right = _post_login(proxied, "alice", USERS["alice"][0], "10.4.0.1")
    where = right.getheader("Location")
    assert "kit_session" not in (right.getheader("Set-Cookie") or "") and "error=throttled" in where
    assert "Too many failed logins" in _login_page(proxied, where)
    # the name is locked from any address; another user from the same address is not
    assert "error=throttled" in _post_login(proxied, "alice", USERS["alice"][0], "10.4.0.2").getheader("Location")
    assert _cookie(_post_login(proxied, "bob", USERS["bob"][0], "10.4.0.1"))

    after = _stats(proxied, root)["logins"]
    assert after["failed"] - before["failed"] >= 6 and after["throttled"] - before["throttled"] >= 10
    log = proxied.server_log()
    refused = [line for line in log.splitlines() if "login refused" in line and "user=alice" in line]
    assert refused and all("address=10.4.0.1" in line for line in refused)
    assert any("login throttled" in line and "user=alice" in line for line in log.splitlines())
    assert not any(pw in log for pw in wrong) and USERS["alice"][0] not in log


def test_failed_logins_are_throttled_per_client_address(proxied):
    for i in range(21):  # a made-up name each time: only the address adds up
        _post_login(proxied, f"nobody{i}", "some-guess-123", "10.5.0.1")
    assert "error=throttled" in _post_login(proxied, "bob", USERS["bob"][0], "10.5.0.1").getheader("Location")
    assert _cookie(_post_login(proxied, "bob", USERS["bob"][0], "10.5.0.2"))


def test_a_burst_of_logins_beyond_the_queue_is_told_to_retry_not_queued_forever(proxied):
    from kit.dashboard.auth import MAX_PENDING

    results: list[str] = []

    def one(i: int) -> None:
        resp = _post_login(proxied, "bob", USERS["bob"][0], f"10.6.{i // 200}.{i % 200}")
        results.append(resp.getheader("Location") or "")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6 * MAX_PENDING)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 6 * MAX_PENDING
    busy = [r for r in results if "error=busy" in r]
    assert busy and all(r == "/" or "error=busy" in r for r in results), results
    assert "busy checking other logins" in _login_page(proxied, busy[0])
    root = _cookie(_post_login(proxied, "root", USERS["root"][0], "10.6.9.9"))
    assert _stats(proxied, root)["logins"]["busy"] >= len(busy)


def test_a_database_outage_gives_a_clear_login_message_not_a_crash_nor_a_lock(proxied):
    import sqlalchemy as sa

    engine = sa.create_engine(proxied.db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE users RENAME TO users_away"))
    try:
        for _ in range(8):  # more than the free failures: an outage must not lock anyone out
            where = _post_login(proxied, "bob", USERS["bob"][0], "10.7.0.1").getheader("Location")
            assert "error=unavailable" in where
        assert "cannot be checked right now" in _login_page(proxied, where)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE users_away RENAME TO users"))
        engine.dispose()
    assert _cookie(_post_login(proxied, "bob", USERS["bob"][0], "10.7.0.1"))


def _metrics(stack, headers: dict[str, str]) -> tuple[int, str]:
    u = urllib.parse.urlparse(stack.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("GET", "/kit/metrics", headers=headers)
    resp = conn.getresponse()
    out = resp.status, resp.read().decode()
    conn.close()
    return out


def test_the_dashboards_prometheus_metrics_need_an_admin_or_the_status_token_and_count_logins(proxied):
    alice = _cookie(_post_login(proxied, "alice", USERS["alice"][0], "10.7.0.1"))
    for headers in ({}, {"Cookie": alice}, {"Authorization": "Bearer not-the-token"}):
        assert _metrics(proxied, headers)[0] == 403, headers
    scraper = {"Authorization": f"Bearer {STATUS_TOKEN}"}

    def failed(text: str) -> float:
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        assert all(n.startswith(("kit_dashboard_", "kit_feed_")) for n in fams), sorted(fams)
        return next(s.value for s in fams["kit_dashboard_logins"].samples
                    if s.name == "kit_dashboard_logins_total" and s.labels == {"result": "failed"})  # fmt: skip

    status, text = _metrics(proxied, scraper)
    assert status == 200 and "kit_dashboard_sessions " in text
    before = failed(text)
    _post_login(proxied, "bob", "a-wrong-password-1", "10.7.0.2")
    root = _cookie(_post_login(proxied, "root", USERS["root"][0], "10.7.0.3"))
    status, text = _metrics(proxied, {"Cookie": root})  # an admin's session works too
    assert status == 200 and failed(text) == before + 1
