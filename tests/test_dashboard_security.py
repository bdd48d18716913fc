"""The dashboard server attacked over loopback, as an outsider and as a logged-in viewer would.

Against a real ``panel serve`` (the browser tests' stack): every WebSocket and document endpoint
checks the signed session and the path's role on connect; an unsigned ``is_guest`` cookie makes
nobody "guest"; logout and user changes from the CLI end every session, open sockets included;
every response carries the security headers and every cookie ``SameSite=Lax``.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import subprocess
import sys
import time
import urllib.parse

import pytest
import sqlalchemy as sa
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.fixtures.dashboard import USERS, login, login_cookie, wait_for_bokeh

pytestmark = pytest.mark.slow

#: Users of this module only (the stack's alice, bob and root stay as the fixture made them).
EXTRA = {
    "dora": ("dora-pass-4444", "viewer"),
    "eve": ("eve-pass-55555", "viewer"),
    "finn": ("finn-pass-6666", "admin"),
    "gus": ("gus-pass-77777", "viewer"),
}


@pytest.fixture(scope="module")
def stack(dashboard_stack):
    from kit.store import Store, users

    store = Store(dashboard_stack.db_url)
    for name, (pw, role) in EXTRA.items():
        users.add(store, name, pw, role=role)
    store.dispose()
    return dashboard_stack


def _pw(user: str) -> str:
    return {**USERS, **EXTRA}[user][0]


def _cookie(stack, user: str) -> str:
    return login_cookie(stack.base_url, user, _pw(user))


def _request(base: str, path: str, cookie: str | None = None, method: str = "GET",
             body: str | None = None, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:  # fmt: skip
    """One request, redirects not followed (a redirect to the login page is an answer here)."""
    u = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = cookie
    if body is not None:
        h["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=h)
    resp = conn.getresponse()
    resp.text = resp.read().decode(errors="replace")  # type: ignore[attr-defined]
    conn.close()
    return resp


def _token(stack, cookie: str, app: str = "/dashboard") -> str:
    """The Bokeh session token the server put into a page it served to this cookie."""
    resp = _request(stack.base_url, app, cookie)
    assert resp.status == 200, (resp.status, resp.text[:300])
    m = re.search(r'"token"\s*:\s*"([^"]+)"', resp.text)
    assert m, "no session token in the page"
    return m.group(1)


def _ws(stack, path: str) -> str:
    return stack.base_url.replace("http://", "ws://") + path


async def _bokeh_ack(stack, app: str, token: str, cookie: str | None) -> str:
    """Open ``app``'s Bokeh WebSocket as a page does; returns the server's first message (ACK)."""
    headers = {"Cookie": cookie} if cookie else {}
    async with connect(_ws(stack, f"{app}/ws"), subprotocols=["bokeh", token], additional_headers=headers,
                       origin=stack.base_url, max_size=None) as ws:  # fmt: skip
        return str(await asyncio.wait_for(ws.recv(), 30))


def _kit(stack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_")}
    env.update(KIT_DATABASE_URL=stack.db_url, KIT_DATA_DIR=str(stack.tmp))
    return subprocess.run([sys.executable, "-m", "kit", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip


async def _closed_within(ws, seconds: float) -> ConnectionClosed:
    """Wait until the server closes ``ws`` (reading whatever it still sends); the close, or fail."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return exc
    raise AssertionError(f"socket still open after {seconds} s")


# -- 1. every WebSocket and document checks the signed user and role on connect -------------------------
@pytest.mark.parametrize("app", ["/admin", "/ops"])
async def test_a_viewer_cannot_open_an_admin_session_over_its_websocket(stack, app):
    cookie = _cookie(stack, "alice")
    token = _token(stack, cookie)  # a real session token of a page alice may open
    assert '"msgtype":"ACK"' in (await _bokeh_ack(stack, "/dashboard", token, cookie)).replace(" ", "")
    with pytest.raises(InvalidStatus) as e:
        await _bokeh_ack(stack, app, token, cookie)
    assert e.value.response.status_code == 403
    # nor through the other per-app endpoints that build a session or describe the app
    js = _request(stack.base_url, f"{app}/autoload.js?bokeh-autoload-element=x&bokeh-app-path={app}", cookie)
    assert js.status == 403 and "Download logfile" not in js.text
    assert _request(stack.base_url, f"{app}/metadata", cookie).status == 403
    # an admin may
    root = _cookie(stack, "root")
    assert '"msgtype":"ACK"' in (await _bokeh_ack(stack, app, _token(stack, root, app), root)).replace(" ", "")


@pytest.mark.parametrize("app", ["/dashboard", "/ops", "/admin", ""])
async def test_no_websocket_or_document_without_a_login(stack, app):
    root = _cookie(stack, "root")
    token = _token(stack, root, app or "/")
    with pytest.raises(InvalidStatus) as e:
        await _bokeh_ack(stack, app, token, None)  # a stolen token alone opens nothing
    assert e.value.response.status_code == 403
    page = _request(stack.base_url, app or "/")
    assert page.status == 302 and "login" in page.getheader("Location", "")


async def test_a_session_token_made_up_by_the_client_is_refused(stack):
    from bokeh.util.token import generate_jwt_token, generate_session_id

    cookie = _cookie(stack, "alice")
    forged = generate_jwt_token(generate_session_id(signed=False), signed=False,
                                extra_payload={"cookies": {"is_guest": "1"}})  # fmt: skip
    try:
        msg = await _bokeh_ack(stack, "/dashboard", forged, cookie)
    except (ConnectionClosed, InvalidStatus, TimeoutError):
        return  # refused
    raise AssertionError(f"an unsigned session token was accepted: {msg[:100]}")


# -- 2. only the signed cookie says who is logged in; "guest" is nobody's name ----------------------------
def test_an_is_guest_cookie_does_not_make_a_viewer_the_guest_user(stack):
    from kit.errors import ConfigError
    from kit.store import Store, users

    store = Store(stack.db_url)
    with pytest.raises(ConfigError, match="reserved"):
        users.add(store, "guest", "guest-pass-123", role="admin")
    # a database from before the rule may hold one: it must give nothing to an is_guest cookie
    with store.engine.begin() as conn:
        conn.execute(sa.text("insert into users (name, password_hash, role, created_at, session_gen, disabled) "
                             "values ('guest', 'x', 'admin', '2026-01-01 00:00:00', 0, false)"))  # fmt: skip
    store.dispose()
    cookie = _cookie(stack, "alice") + "; is_guest=1"
    for path in ("/ops", "/admin"):
        assert _request(stack.base_url, path, cookie).status == 403, path
    assert _request(stack.base_url, "/kit/stats", cookie).status == 403
    with pytest.raises(InvalidStatus) as e:
        asyncio.run(_bokeh_ack(stack, "/ops", _token(stack, cookie), cookie))
    assert e.value.response.status_code == 403
    # with no signed cookie at all, is_guest is nobody
    assert _request(stack.base_url, "/dashboard", "is_guest=1").status == 302


# -- 3. logout, passwd, role, disable end every session, open sockets included ----------------------------
async def test_logout_ends_every_session_of_the_user_and_closes_their_sockets(stack):
    laptop, phone = _cookie(stack, "dora"), _cookie(stack, "dora")
    live = await connect(_ws(stack, "/kit/live?stream=BTCUSDT@1m&since=0"), additional_headers={"Cookie": laptop})
    token = _token(stack, laptop)
    page = await connect(_ws(stack, "/dashboard/ws"), subprotocols=["bokeh", token], origin=stack.base_url,
                         additional_headers={"Cookie": laptop}, max_size=None)  # fmt: skip
    try:
        assert "ACK" in str(await asyncio.wait_for(page.recv(), 30))
        await asyncio.wait_for(live.recv(), 30)
        out = await asyncio.to_thread(_request, stack.base_url, "/logout", phone)
        assert out.status == 200
        closed = await _closed_within(live, 10)
        assert closed.rcvd is not None and closed.rcvd.code == 4401
        await _closed_within(page, 10)
    finally:
        await live.close()
        await page.close()
    for cookie in (laptop, phone):  # a copied cookie is dead too
        resp = _request(stack.base_url, "/dashboard", cookie)
        assert resp.status == 302 and "login" in resp.getheader("Location", "")
        with pytest.raises(InvalidStatus) as e:
            async with connect(_ws(stack, "/kit/live?stream=BTCUSDT@1m"), additional_headers={"Cookie": cookie}):
                pass
        assert e.value.response.status_code == 403
    assert _request(stack.base_url, "/dashboard", _cookie(stack, "dora")).status == 200  # logging in again works


async def test_cli_disable_role_and_passwd_end_sessions_within_seconds(stack):
    eve = _cookie(stack, "eve")
    live = await connect(_ws(stack, "/kit/live?stream=BTCUSDT@1m&since=0"), additional_headers={"Cookie": eve})
    try:
        await asyncio.wait_for(live.recv(), 30)
        r = await asyncio.to_thread(_kit, stack, "users", "disable", "eve")
        assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        closed = await _closed_within(live, 10)
        assert closed.rcvd is not None and closed.rcvd.code == 4401
        assert time.monotonic() - t0 < 8
    finally:
        await live.close()
    assert _request(stack.base_url, "/dashboard", eve).status == 302
    with pytest.raises(RuntimeError, match="could not log in"):
        _cookie(stack, "eve")
    assert _kit(stack, "users", "enable", "eve").returncode == 0
    assert _request(stack.base_url, "/dashboard", _cookie(stack, "eve")).status == 200

    finn = _cookie(stack, "finn")
    assert _request(stack.base_url, "/ops", finn).status == 200
    assert _kit(stack, "users", "role", "finn", "viewer").returncode == 0
    time.sleep(2.5)  # the server's cache of user states lives 2 s
    assert _request(stack.base_url, "/ops", finn).status == 302  # the admin session is over
    assert _request(stack.base_url, "/ops", _cookie(stack, "finn")).status == 403  # and the new one is a viewer's

    dora = _cookie(stack, "dora")
    assert _kit(stack, "users", "passwd", "dora", stdin="dora-new-pass-77\n").returncode == 0
    time.sleep(2.5)
    assert _request(stack.base_url, "/dashboard", dora).status == 302
    assert login_cookie(stack.base_url, "dora", "dora-new-pass-77")


# -- 7. headers on every page, SameSite on every cookie ----------------------------------------------------
def test_every_response_carries_the_security_headers(stack):
    viewer, admin = _cookie(stack, "bob"), _cookie(stack, "root")
    page = _request(stack.base_url, "/dashboard", viewer)
    static = re.search(r'src="(\.?/?static/[^"]+\.js[^"]*)"', page.text)
    assert static, "no static script in the page"
    paths = [("/login", None), ("/dashboard", viewer), ("/", viewer), ("/ops", admin), ("/admin", admin),
             ("/ops", viewer), ("/kit/stats", admin), ("/kit/metrics", admin), ("/kit/metrics", viewer),
             ("/dashboard", None),
             ("/" + static.group(1).lstrip("./"), viewer), ("/logout", None)]  # fmt: skip
    for path, cookie in paths:
        resp = _request(stack.base_url, path, cookie)
        assert resp.status in (200, 302, 403), (path, resp.status)
        assert resp.getheader("Content-Security-Policy") == "frame-ancestors 'self'", path
        assert resp.getheader("X-Frame-Options") == "SAMEORIGIN", path
        assert resp.getheader("X-Content-Type-Options") == "nosniff", path
        assert resp.getheader("Referrer-Policy") == "same-origin", path


def test_every_cookie_is_samesite_lax_and_httponly(stack):
    get = _request(stack.base_url, "/login?next=/dashboard")
    body = urllib.parse.urlencode({"username": "bob", "password": _pw("bob")})
    post = _request(stack.base_url, "/login", method="POST", body=body)
    assert post.status == 302
    cookies = get.headers.get_all("Set-Cookie") + post.headers.get_all("Set-Cookie")
    names = {c.split("=", 1)[0] for c in cookies}
    assert {"next_url", "user", "id_token", "kit_session"} <= names
    for c in cookies:
        assert "SameSite=Lax" in c and "HttpOnly" in c, c
        assert "Secure" not in c  # plain HTTP on loopback (see test_dashboard_logins for HTTPS behind a proxy)


# -- 8. messages are escaped; parameters are checked -------------------------------------------------------
def test_the_login_page_says_only_what_kit_wrote(stack):
    for q in (
        "error=<script>alert(1)</script>",
        "error=Your+account+is+locked,+call+555-0100",
        "error=throttled&retry=inf",
    ):
        page = _request(stack.base_url, "/login?" + q)
        assert page.status == 200
        assert "<script>alert" not in page.text and "555-0100" not in page.text and "inf s" not in page.text


def test_a_logout_link_on_another_site_does_not_end_the_users_other_sessions(stack):
    other_device = _cookie(stack, "bob")
    cookie = _cookie(stack, "bob")
    resp = _request(stack.base_url, "/logout", cookie, headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status == 200 and any(c.startswith("kit_session=") for c in resp.headers.get_all("Set-Cookie"))
    assert _request(stack.base_url, "/dashboard", other_device).status == 200


def test_the_dashboards_query_parameters_are_checked(stack):
    cookie = _cookie(stack, "bob")
    bad = [
        ("symbol=NOPE", "unknown symbol"),
        ("interval=7m", "unknown interval"),
        ("symbol=%3Cscript%3E", "unknown symbol"),
        ("symbol=BTCUSDT&interval=1e308", "unknown interval"),
    ]
    for q, why in bad:
        for app in ("/dashboard", "/"):
            resp = _request(stack.base_url, f"{app}?{q}", cookie)
            assert resp.status == 400 and why in resp.text and "<script>" not in resp.text, (app, q)
    assert _request(stack.base_url, "/dashboard?symbol=ETHUSDT&interval=5m", cookie).status == 200


@pytest.mark.browser
def test_an_open_page_goes_to_the_login_page_when_its_user_is_disabled(stack, chromium):
    page = login(chromium, stack.base_url, "gus", _pw("gus"))
    try:
        wait_for_bokeh(page)
        page.wait_for_timeout(3000)  # the page's live socket opens right after the chart
        assert _kit(stack, "users", "disable", "gus").returncode == 0
        page.wait_for_url("**/login*", timeout=15_000)  # the live socket closed with "session ended"
        page.goto(stack.base_url + "/dashboard")
        assert urllib.parse.urlparse(page.url).path == "/login"
    finally:
        page.context.close()
