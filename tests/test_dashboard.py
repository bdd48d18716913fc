"""The dashboard's parts without a browser: hub over the real feed and engine, chart updates,
authorisation against a real store, cookie secret, the demo user and the serve command."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import socket
import stat

import pytest
from bokeh.document import Document

from kit.dashboard.chart import CandleChart
from kit.dashboard.hub import CHART_BARS, OVERLAYS, Bar, Hub, overlay_column
from kit.errors import ConfigError
from kit.settings import Settings

MINUTE = 60_000


class Collect:
    """A session-side listener: records what the hub pushes (the consumer, not a stand-in for kit)."""

    def __init__(self) -> None:
        self.bars: list[Bar] = []

    def push(self, bar: Bar) -> None:
        self.bars.append(bar)

    def closed(self) -> list[Bar]:
        return [b for b in self.bars if b.closed]


async def _until(cond, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_hub_shares_one_stream_fans_out_and_leaks_nothing(simulator, sample_frames):
    from kit.feed import Feed
    from kit.market.files import to_ms

    frame = sample_frames[("BTCUSDT", "1m")]
    ms = to_ms(frame.index)
    start = int(ms[300])
    sim = await simulator(speed=600, start=start, update_every=20)
    feed = Feed(ws_url=sim.ws_url, rest_url=sim.rest_url)
    hub = Hub(feed_factory=lambda: feed, grace_s=0.2)
    a, b = Collect(), Collect()
    assert hub.attach("BTCUSDT", "1m", a) == []  # the stream starts with the first listener
    await _until(lambda: len(a.closed()) >= 300 + 3)
    snap = hub.attach("BTCUSDT", "1m", b)  # the second gets the shared buffer as its history
    assert len(snap) >= 300
    await _until(lambda: len(b.closed()) >= 2)

    # history + live: every closed candle once, in order, equal to the data
    closed = a.closed()
    times = [c.open_time for c in closed]
    assert all(y - x == MINUTE for x, y in itertools.pairwise(times))
    i_last = int((ms == times[-1]).nonzero()[0][0])
    assert closed[-1].close == frame["close"].iloc[i_last]
    # forming updates arrive between closes, for the candle after the last closed one
    forming = [x for x in a.bars if not x.closed]
    assert forming and all(f.open_time > times[0] for f in forming)
    # overlays come from the shared engine: EMA 20 after warm-up equals the batch EMA
    from kit.indicators import ema

    col = overlay_column("EMA 20")
    closes = frame["close"].to_numpy()
    want = ema(closes[: i_last + 1], 20)[-1]
    assert math.isclose(closed[-1].values[col], want, rel_tol=1e-9)
    assert {"ov_bollinger_20_upper", "ov_bollinger_20_lower"} <= set(closed[-1].values)
    # one engine stream and one feed stream for two listeners
    st = hub.stats()
    assert [s["listeners"] for s in st["streams"]] == [2]
    assert st["feed"]["streams"] == 1
    assert hub.last_price("BTCUSDT") is not None

    hub.detach("BTCUSDT", "1m", a)
    hub.detach("BTCUSDT", "1m", b)
    await _until(lambda: not hub.stats()["streams"])
    await _until(lambda: feed.stats()["streams"] == 0)
    n = len(a.bars)
    await asyncio.sleep(0.3)
    assert len(a.bars) == n  # a detached listener hears nothing more
    await feed.stop()


async def test_hub_reattach_within_grace_keeps_the_stream(simulator):
    from kit.feed import Feed

    sim = await simulator(speed=600)
    feed = Feed(ws_url=sim.ws_url, rest_url=sim.rest_url)
    hub = Hub(feed_factory=lambda: feed, grace_s=5.0)
    a = Collect()
    hub.attach("ETHUSDT", "1m", a)
    await _until(lambda: len(a.closed()) > 5)
    hub.detach("ETHUSDT", "1m", a)
    b = Collect()
    snap = hub.attach("ETHUSDT", "1m", b)  # a page reload: same stream, buffer intact
    assert len(snap) >= 5
    assert hub.stats()["streams"][0]["listeners"] == 1
    hub.detach("ETHUSDT", "1m", b)
    await feed.stop()


def _bar(t: int, close: float, closed: bool, recv: float = 0.0) -> Bar:
    return Bar(t, close - 1, close + 2, close - 2, close, 1.5, closed, {"ov_ema_20": close - 0.5}, recv)


def test_chart_reset_keeps_the_window_and_follow_names_the_stream():
    from bokeh.events import DocumentReady

    doc = Document()
    chart = CandleChart(doc, "1m", {"EMA 20": ["ov_ema_20"]})
    doc.add_root(chart.layout)
    chart.reset([_bar(i * MINUTE, 100.0 + i, True) for i in range(CHART_BARS + 25)], "<b>BTCUSDT</b>")
    t = list(chart.source.data["open_time"])
    assert len(t) == CHART_BARS and t[0] == 25 * MINUTE  # only the window goes to the browser
    assert chart.source.data["ov_ema_20"][-1] == 100.0 + CHART_BARS + 24 - 0.5
    assert chart.header.text == "<b>BTCUSDT</b>"
    chart.follow("BTCUSDT", "1m", "abc123")
    assert chart.source.tags == ["BTCUSDT@1m|abc123"]
    # the page's script runs when the document is ready and whenever the server re-points it
    ready = doc.callbacks.js_event_callbacks[DocumentReady.event_name]
    assert len(ready) == 1 and "/kit/live?stream=" in ready[0].code and "sync: false" in ready[0].code
    assert chart.source.js_property_callbacks["change:tags"] == ready


def test_encode_row_is_json_with_null_for_nan():
    from kit.dashboard.live import encode_row

    bar = Bar(MINUTE, 1.0, 2.0, 0.5, 1.5, 3.0, False, {"ov_ema_20": math.nan, "ov_sma_20": 1.25}, 123.5)
    row = json.loads(encode_row(bar, ["ov_ema_20", "ov_sma_20", "ov_missing"]))
    assert row["open_time"] == MINUTE and row["close"] == 1.5 and row["recv_ms"] == 123.5
    assert row["ov_ema_20"] is None and row["ov_sma_20"] == 1.25 and row["ov_missing"] is None
    assert row["color"] == "#16a34a"


class _Writer:
    """The transport under one page's socket (Tornado's ``write_message``): records what it was
    given; while ``stall`` is set, each write stays in flight until released."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.stall = False
        self.inflight: list[asyncio.Future] = []

    def __call__(self, msg: bytes) -> asyncio.Future | None:
        self.sent.append(msg)
        if not self.stall:
            return None
        fut = asyncio.get_running_loop().create_future()
        self.inflight.append(fut)
        return fut

    def rows(self, i: int = -1) -> list[dict]:
        return json.loads(self.sent[i])["rows"]


async def test_broadcast_encodes_each_event_once_and_coalesces_for_a_slow_page(simulator, sample_frames):
    from kit.dashboard.live import _Client, broadcast_for
    from kit.feed import Feed
    from kit.market.files import to_ms

    start = int(to_ms(sample_frames[("BTCUSDT", "1m")].index)[300])
    sim = await simulator(speed=600, start=start, update_every=20)
    feed = Feed(ws_url=sim.ws_url, rest_url=sim.rest_url)
    hub = Hub(feed_factory=lambda: feed, grace_s=0.0)
    b = broadcast_for(hub, "BTCUSDT", "1m")
    assert broadcast_for(hub, "BTCUSDT", "1m") is b
    first = _Writer()
    b.add(_Client(first), since=0)  # starts the stream
    await _until(lambda: len(first.sent) > 3)
    fast, slow = _Writer(), _Writer()
    since = json.loads(first.sent[-1])["rows"][-1]["open_time"]
    b.add(_Client(fast), since=since)
    assert [r["open_time"] for r in fast.rows(0)] == [since]  # only what the page lacks
    b.add(_Client(slow), since=0)
    assert len(slow.rows(0)) > 1  # a page with nothing gets the window
    slow.stall = True
    n_first, n_fast = len(first.sent), len(fast.sent)
    await _until(lambda: len(fast.sent) > n_fast + 8)
    # every page that keeps up gets the very same bytes: encoded once per event, not per page
    k = len(fast.sent) - n_fast
    assert all(a is c for a, c in zip(first.sent[n_first : n_first + k], fast.sent[n_fast:], strict=True))
    # the slow page had one write in flight the whole time: nothing else went out to it...
    assert len(slow.sent) == 2 and len(slow.inflight) == 1
    backlog = dict(next(c for c in b.clients if c.write is slow).backlog)
    assert 0 < len(backlog) < k  # ...its updates were folded, one per candle
    slow.stall = False
    slow.inflight[0].set_result(None)
    # an event between the write draining and its callback must not overtake the backlog
    late = Bar(max(backlog) + MINUTE, 1.0, 2.0, 0.5, 1.5, 3.0, False, {}, 0.0)
    b.push(late)
    assert len(slow.sent) == 3
    caught_up = slow.rows(2)
    times = [r["open_time"] for r in caught_up]
    # one message with the newest state of each candle, in order, the late one folded in last
    assert times == sorted(set(times)) and set(backlog) <= set(times) and times[-1] == late.open_time
    await asyncio.sleep(0.05)
    assert slow.sent.count(slow.sent[2]) == 1  # the drained write's callback found nothing left to send
    assert b.stats()["sockets"] == 3 and b.stats()["coalesced"] >= len(backlog)
    for client in list(b.clients):
        b.remove(client)
    assert not hub.broadcasts and hub.listeners() == 0  # the last page gone: off the hub
    await asyncio.sleep(0.05)
    await feed.stop()


def test_trade_markers_only_inside_the_window():
    chart = CandleChart(None, "1m", {})
    chart.reset([_bar(i * MINUTE, 100.0, True) for i in range(10, 20)])
    chart.set_trades([
        {"time": 5 * MINUTE, "price": 99.0, "buy": True},
        {"time": 12 * MINUTE, "price": 100.5, "buy": True, "label": "entry"},
        {"time": 15 * MINUTE, "price": 101.5, "buy": False, "label": "exit"},
    ])  # fmt: skip
    d = chart.trades.data
    assert list(d["time"]) == [12 * MINUTE, 15 * MINUTE]
    assert list(d["marker"]) == ["triangle", "inverted_triangle"]


# -- authorisation against a real store -------------------------------------------------------
@pytest.fixture(scope="module")
def users_db(tmp_path_factory):
    from kit.dashboard import auth
    from kit.store import Store, users

    store = Store(f"sqlite:///{tmp_path_factory.mktemp('auth') / 'auth.db'}")
    store.migrate()
    users.add(store, "vera", "vera-password", role="viewer")
    users.add(store, "adam", "adam-password", role="admin")
    auth.set_store(store)
    yield store
    auth.reset_store()


@pytest.mark.parametrize(
    ("user", "path", "allowed"),
    [
        ("vera", "/dashboard", True),
        ("vera", "/", True),
        ("vera", "/ops", False),
        ("vera", "/admin", False),
        ("vera", "/admin/", False),
        ("vera", "/ops/anything", False),
        ("vera", "/opsx", True),
        ("adam", "/ops", True),
        ("adam", "/admin", True),
        ("adam", "/dashboard", True),
        ("nobody", "/dashboard", False),
        (None, "/dashboard", False),
    ],
)
def test_authorize(users_db, user, path, allowed):
    from kit.dashboard.auth import authorize

    assert authorize({"user": user} if user else None, path) is allowed


def test_login_validation_uses_the_hashed_passwords(users_db):
    from kit.dashboard.auth import KitLoginHandler

    check = KitLoginHandler._validate
    assert check(None, "vera", "vera-password") is True
    assert check(None, "vera", "adam-password") is False
    assert check(None, "vera", "") is False
    assert check(None, "nobody", "vera-password") is False
    assert check(None, "", "") is False


def test_login_page_is_self_contained_and_escapes_the_error():
    from kit.dashboard.auth import LOGIN_TEMPLATE

    html = LOGIN_TEMPLATE.render(login_endpoint="/login", errormessage="<script>x</script>")
    assert 'name="username"' in html and 'name="password"' in html
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html
    assert "http" not in html.split("<body>")[0]  # no CDN: renders offline


# -- serving -----------------------------------------------------------------------------------
def test_cookie_secret_is_generated_once_private_and_overridable(tmp_path):
    from kit.dashboard.serve import cookie_secret

    s = Settings.from_env({"KIT_DATA_DIR": str(tmp_path)})
    first = cookie_secret(s)
    assert len(first) >= 32 and cookie_secret(s) == first
    path = tmp_path / "secrets" / "cookie_secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    env = Settings.from_env({"KIT_DATA_DIR": str(tmp_path), "KIT_COOKIE_SECRET": "x" * 40})
    assert cookie_secret(env) == "x" * 40
    with pytest.raises(ConfigError, match="KIT_COOKIE_SECRET"):
        cookie_secret(Settings.from_env({"KIT_DATA_DIR": str(tmp_path), "KIT_COOKIE_SECRET": "short"}))


def test_panel_command_keeps_the_secret_off_the_command_line(tmp_path):
    from kit.dashboard.serve import panel_command, panel_env

    cmd = panel_command(5999)
    assert cmd[1:4] == ["-m", "panel", "serve"]
    assert cmd[cmd.index("--oauth-provider") + 1] == "kit"
    assert "--setup" in cmd and "--cookie-secret" not in cmd
    assert "127.0.0.1:5999" in cmd and "localhost:5999" in cmd
    s = Settings.from_env({"KIT_DATA_DIR": str(tmp_path)})
    env = panel_env(s, {"PANEL_OAUTH_PROVIDER": "github"})
    assert env["PANEL_COOKIE_SECRET"] and "PANEL_OAUTH_PROVIDER" not in env
    with pytest.raises(ConfigError, match="port"):
        panel_command(70000)


def test_demo_user_is_created_once(tmp_path):
    from kit.dashboard.up import ensure_demo_user
    from kit.store import Store, users

    s = Settings.from_env({"KIT_DATA_DIR": str(tmp_path)})
    store = Store(f"sqlite:///{tmp_path / 'kit.db'}")
    store.migrate()
    pw, created = ensure_demo_user(s, store)
    assert created and pw and len(pw) >= 10
    assert users.authenticate(store, "demo", pw) is not None
    assert stat.S_IMODE(os.stat(tmp_path / "secrets" / "demo_password").st_mode) == 0o600
    assert ensure_demo_user(s, store) == (pw, False)  # second run: same password, nothing new
    store.dispose()

    s2 = Settings.from_env({"KIT_DATA_DIR": str(tmp_path / "b"), "KIT_DEMO_PASSWORD": "demo-pass-from-env"})
    (tmp_path / "b").mkdir()
    store2 = Store(f"sqlite:///{tmp_path / 'b' / 'kit.db'}")
    store2.migrate()
    assert ensure_demo_user(s2, store2) == ("demo-pass-from-env", True)
    assert users.authenticate(store2, "demo", "demo-pass-from-env") is not None
    store2.dispose()


def test_port_free_sees_a_listening_server():
    from kit.dashboard.up import port_free

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        assert port_free("127.0.0.1", port) is False
    assert port_free("127.0.0.1", port) is True


def test_overlay_menu_resolves_to_indicator_specs():
    hub = Hub(feed_factory=lambda: None)
    labels = [ov.label for ov, _ in hub.specs()]
    assert labels == [ov.label for ov in OVERLAYS]
    cols = hub.overlay_columns()
    assert cols["EMA 20"] == ["ov_ema_20"]
    assert cols["Bollinger 20"] == ["ov_bollinger_20_upper", "ov_bollinger_20_middle", "ov_bollinger_20_lower"]


async def test_a_page_that_stops_answering_is_closed_and_released(simulator, sample_frames, users_db):
    """A live socket whose page stops reading (a laptop lid closed) answers no pings: closed, off the hub."""
    import tornado.web
    from panel.config import config
    from websockets.asyncio.client import connect

    from kit.dashboard.live import LiveSocket
    from kit.feed import Feed
    from kit.market.files import to_ms

    start = int(to_ms(sample_frames[("BTCUSDT", "1m")].index)[300])
    sim = await simulator(speed=600, start=start, update_every=20)
    feed = Feed(ws_url=sim.ws_url, rest_url=sim.rest_url)
    hub = Hub(feed_factory=lambda: feed, grace_s=0.0)
    secret = "s" * 32
    app = tornado.web.Application(
        [(r"/kit/live", LiveSocket, {"hub_factory": lambda: hub, "ping_every": 0.2, "dead_after": 1.0})],
        cookie_secret=secret,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = app.listen(port, address="127.0.0.1")
    old_secret, config.cookie_secret = config.cookie_secret, secret
    try:
        cookie = tornado.web.create_signed_value(secret, "user", "vera").decode()
        url = f"ws://127.0.0.1:{port}/kit/live?stream=BTCUSDT@1m&since=0"
        # max_queue=1: once this client stops calling recv(), it stops reading the socket, pongs included
        ws = await connect(url, additional_headers={"Cookie": f"user={cookie}"}, max_queue=1, ping_interval=None)
        await asyncio.wait_for(ws.recv(), 30)
        b = hub.broadcasts[("BTCUSDT", "1m")]
        assert len(b.clients) == 1 and hub.listeners() == 1
        await _until(lambda: not hub.broadcasts, timeout=30)  # closed for want of pongs, and released
        assert hub.listeners() == 0 and not b.clients
        await ws.close()
    finally:
        config.cookie_secret = old_secret
        server.stop()
        await feed.stop()


async def test_open_positions_keep_their_market_live_for_unrealised_pnl(simulator, sample_frames, tmp_path):
    """My strategies holds the shared stream of every open position's market (none on a chart here),
    so unrealised P&L has a live price; the view lets go of it when the session closes."""
    from kit.dashboard import mine
    from kit.feed import Feed
    from kit.store import Store
    from tests.fixtures.dashboard import SIM_START, seed

    db = f"sqlite:///{tmp_path / 'kit.db'}"
    seed(db)  # alice: an open long on BTCUSDT (alice-rsi), flat on ETHUSDT (alice-ema)
    store = Store(db)
    sim = await simulator(speed=600, start=SIM_START, update_every=20)
    feed = Feed(ws_url=sim.ws_url, rest_url=sim.rest_url)
    hub = Hub(feed_factory=lambda: feed, grace_s=0.0)
    view = mine.StrategiesView(store, "alice", hub)
    try:
        view.refresh()
        assert [s["stream"] for s in hub.stats()["streams"]] == ["BTCUSDT@1m"]  # the open position's only
        await _until(lambda: hub.last_price("BTCUSDT") is not None)
        mine.invalidate("alice")
        view.refresh()
        rows = view.strategies.value.set_index("name")
        assert math.isfinite(rows.loc["alice-rsi", "unrealised P&L"])
        assert math.isnan(rows.loc["alice-ema", "unrealised P&L"])
        # the trades table has the backtest's trade-record columns; closed trades only (the open
        # position is the strategies table's, at the live price)
        table = view.trades.value
        assert {"exit_reason", "duration", "return_pct", "mae_pct", "mfe_pct"} <= set(table.columns)
        assert len(table) == rows["trades"].sum() and "open" not in set(table["exit_reason"])
    finally:
        view.close()
        store.dispose()
    assert hub.listeners() == 0
    await feed.stop()
