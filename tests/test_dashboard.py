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
from pathlib import Path

import pytest
from bokeh.document import Document

from kit.dashboard.chart import CandleChart
from kit.dashboard.hub import CHART_BARS, Bar, Hub
from kit.dashboard.menu import OVERLAYS, PANES, overlay_column
from kit.errors import ConfigError
from kit.settings import Settings

MINUTE = 60_000
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"


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
    # and so do the panes' values: RSI 14 and MACD 12/26/9 equal the batch indicators
    from kit.indicators import macd, rsi

    assert math.isclose(closed[-1].values["pn_rsi"], rsi(closes[: i_last + 1], 14)[-1], rel_tol=1e-9)
    want_macd = macd(closes[: i_last + 1], 12, 26, 9)
    for out, got in zip(("macd", "signal", "hist"), want_macd, strict=True):
        assert math.isclose(closed[-1].values[f"pn_macd_{out}"], got[-1], rel_tol=1e-9, abs_tol=1e-9)
    # one engine stream and one feed stream for two listeners
    st = hub.stats()
    assert [s["listeners"] for s in st["streams"]] == [2]
    assert st["feed"]["streams"] == 1
    assert st["engine"]["streams"] == 1 and st["engine"]["unique_specs"] == len(hub.specs())  # once per stream
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


def test_panes_share_the_price_time_axis_and_are_built_only_when_asked():
    from bokeh.models import Range1d, Span, VBar

    hub = Hub(feed_factory=lambda: None)
    menu = hub.pane_menu()
    assert [(p.key, cols) for p, cols in menu] == [
        ("rsi", ["pn_rsi"]), ("macd", ["pn_macd_macd", "pn_macd_signal", "pn_macd_hist"])]  # fmt: skip
    assert {"pn_rsi", "pn_macd_hist", "ov_ema_20"} <= set(hub.columns())  # every row carries them
    doc = Document()
    chart = CandleChart(doc, "1m", hub.overlay_columns(), panes=menu)
    doc.add_root(chart.layout)
    assert chart.panes.options == {"Volume": "volume", "RSI 14": "rsi", "MACD 12 26 9": "macd"}
    assert chart.panes.built == {}  # nothing built until a viewer asks
    chart.reset([_bar(i * MINUTE, 100.0 + i, True) for i in range(5)])
    assert "pn_rsi" in chart.source.data and "pn_macd_signal" in chart.source.data
    figs = chart.show_panes(["macd", "rsi", "volume", "nonsense"])
    assert [f.name for f in figs] == ["pane_volume", "pane_rsi", "pane_macd"]  # menu order
    assert all(f.x_range is chart.price.x_range for f in figs)  # one time axis with the price
    assert all(r.data_source is chart.source for f in figs for r in f.renderers)  # grow with the candles
    rsi_fig, macd_fig = figs[1], figs[2]
    assert isinstance(rsi_fig.y_range, Range1d) and (rsi_fig.y_range.start, rsi_fig.y_range.end) == (0, 100)
    assert sorted(s.location for s in rsi_fig.center if isinstance(s, Span)) == [30.0, 70.0]
    hist = [r for r in macd_fig.renderers if r.name == "pn_macd_hist"]
    assert len(hist) == 1 and isinstance(hist[0].glyph, VBar)  # the histogram as bars
    assert not any(r.visible for r in chart.price.renderers if r.name == "volume")  # volume moved to its pane
    chart.set_interval("5m")
    assert hist[0].glyph.width == 5 * MINUTE * 0.7
    assert chart.show_panes(["rsi"]) == [rsi_fig]  # built once, reused
    assert all(r.visible for r in chart.price.renderers if r.name == "volume")


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
    from kit.dashboard import auth

    session = auth.valid_session(user, 0) if user else None
    assert auth.allowed(session, path) is allowed


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


def test_demo_user_is_a_viewer_and_its_generated_password_is_shown_once(tmp_path, caplog):
    from kit.dashboard.up import ensure_demo_user
    from kit.store import Store, users

    s = Settings.from_env({"KIT_DATA_DIR": str(tmp_path)})
    store = Store(f"sqlite:///{tmp_path / 'kit.db'}")
    store.migrate()
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "demo_password").write_text("left-by-an-older-kit\n")
    pw, created = ensure_demo_user(s, store)
    assert created and pw and len(pw) >= 12
    demo = users.authenticate(store, "demo", pw)
    assert demo is not None and demo.role == "viewer"
    assert ensure_demo_user(s, store) == (None, False)  # second run: nothing new, nothing to print
    assert not (tmp_path / "secrets" / "demo_password").exists()  # kept only as a hash
    store.dispose()

    s2 = Settings.from_env({"KIT_DATA_DIR": str(tmp_path / "b"), "KIT_DEMO_PASSWORD": "demo-pass-from-env"})
    (tmp_path / "b").mkdir()
    store2 = Store(f"sqlite:///{tmp_path / 'b' / 'kit.db'}")
    store2.migrate()
    assert ensure_demo_user(s2, store2) == (None, True)  # the operator knows it: not printed
    assert users.authenticate(store2, "demo", "demo-pass-from-env").role == "viewer"
    store2.dispose()
    weak = Settings.from_env({"KIT_DATA_DIR": str(tmp_path / "c"), "KIT_DEMO_PASSWORD": "demo"})
    store3 = Store(f"sqlite:///{tmp_path / 'c.db'}")
    store3.migrate()
    with pytest.raises(ConfigError, match="KIT_DEMO_PASSWORD: password must be at least 8"):
        ensure_demo_user(weak, store3)
    assert users.get(store3, "demo") is None
    users.add(store3, "demo", "made-by-an-old-kit", role="admin")  # what kit up used to create
    with caplog.at_level("WARNING", logger="kit.up"):
        assert ensure_demo_user(weak, store3) == (None, False)
    assert "kit users role demo viewer" in caplog.text
    store3.dispose()


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
    assert labels == [ov.label for ov in (*OVERLAYS, *PANES)]
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
        kit = tornado.web.create_signed_value(secret, "kit_session", "0:vera").decode()
        url = f"ws://127.0.0.1:{port}/kit/live?stream=BTCUSDT@1m&since=0"
        # max_queue=1: once this client stops calling recv(), it stops reading the socket, pongs included
        ws = await connect(url, additional_headers={"Cookie": f"user={cookie}; kit_session={kit}"}, max_queue=1,
                           ping_interval=None)  # fmt: skip
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


def test_my_strategies_escapes_what_it_puts_into_html(tmp_path):
    """A strategy name (chosen by whoever promotes) is text, never markup (so are exception texts)."""
    from kit.dashboard import mine
    from kit.store import Store, strategies, users

    store = Store(f"sqlite:///{tmp_path / 'kit.db'}")
    store.migrate()
    users.add(store, "zoe", "zoe-password")
    evil = "<img src=x onerror=alert(1)>"
    rec = strategies.upsert(store, "zoe", name=evil, class_path="kit.strategies:EmaCross", params={},
                            symbol="BTCUSDT", interval="1m")  # fmt: skip
    hub = Hub(feed_factory=lambda: pytest.fail("no market is needed"), grace_s=0.0)
    mine.invalidate("zoe")  # the view caches per user name across sessions
    view = mine.StrategiesView(store, "zoe", hub)
    try:
        view.refresh()
        view.choice.value = rec.id
        view.deactivate.clicks += 1
        assert "deactivated" in view.message.object
        assert "<img" not in view.message.object and "&lt;img src=x" in view.message.object
    finally:
        view.close()
        store.dispose()


def test_login_throttle_locks_exponentially_per_name_and_address_and_forgets():
    from kit.dashboard.throttle import LoginThrottle

    t = LoginThrottle(free_per_name=3, free_per_address=5, base_s=1.0, max_lock_s=8.0, forget_s=100.0, max_keys=10)
    now = 1000.0
    assert [t.failed("Alice", "1.1.1.1", now) for _ in range(3)] == [0.0, 0.0, 0.0]  # typos are free
    locks = [t.failed("alice", "1.1.1.1", now) for _ in range(5)]  # same name whatever the case
    assert locks == [1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped
    assert t.wait("ALICE", "9.9.9.9", now) == 8.0  # the name, from anywhere
    assert t.wait("bob", "1.1.1.1", now) == 4.0  # the address too: its 3 failures over 5 locked it 4 s
    assert t.wait("bob", "2.2.2.2", now) == 0.0
    assert t.wait("alice", "9.9.9.9", now + 8.0) == 0.0  # a lock ends
    t.succeeded("alice", "1.1.1.1", now + 9)
    assert t.failed("alice", "3.3.3.3", now + 9) == 0.0  # a right password: the name starts over
    assert t.wait("carol", "1.1.1.1", now + 9) == 0.0 and t.failed("carol", "1.1.1.1", now + 9) > 0  # not the address
    assert t.wait("dave", "4.4.4.4", now + 500) == 0.0
    t.failed("dave", "4.4.4.4", now + 500)
    assert t.failed("dave", "4.4.4.4", now + 700) == 0.0  # unseen for forget_s: counted from scratch
    for i in range(100):  # made-up names cannot grow memory without bound
        t.failed(f"n{i}", f"10.0.0.{i}", now + 800)
    assert len(t) <= 10
    with pytest.raises(ValueError):
        LoginThrottle(free_per_name=0)


def test_equity_of_a_strategy_with_no_trades_is_a_flat_line_realised_and_unrealised(tmp_path):
    """No trades yet: the equity chart draws the starting cash from the start to now (both lines),
    on a readable axis, instead of an empty plot."""
    import time

    from kit.dashboard import mine
    from kit.store import Store, strategies, users

    store = Store(f"sqlite:///{tmp_path / 'kit.db'}")
    store.migrate()
    users.add(store, "nina", "nina-password")
    start = int(time.time() * 1000) - 3 * 3_600_000
    rec = strategies.upsert(store, "nina", name="fresh", class_path="kit.strategies:EmaCross", params={},
                            symbol="BTCUSDT", interval="1m", start_time=start)  # fmt: skip
    hub = Hub(feed_factory=lambda: pytest.fail("no market is needed"), grace_s=0.0)
    mine.invalidate("nina")
    view = mine.StrategiesView(store, "nina", hub)
    try:
        view.refresh()
        assert view.choice.value == rec.id
        data = dict(view.equity_source.data)
        assert data["time"][0] == start and data["time"][-1] >= time.time() * 1000 - 60_000
        assert data["realised"] == [10_000.0] * len(data["time"]) and len(data["time"]) >= 2
        assert data["total"] == data["realised"]  # flat: no position, nothing unrealised
        # a flat line gets a span around it, not Bokeh's ±1
        assert view.equity_fig.y_range.default_span >= 100
        # and it keeps reaching the present between reloads
        end = data["time"][-1]
        time.sleep(0.05)
        view.refresh()
        assert view.equity_source.data["time"][-1] > end
        assert view.equity_source.data["total"][-1] == 10_000.0
    finally:
        view.close()
        store.dispose()


def test_equity_follows_the_trades_and_ends_at_the_last_known_time(tmp_path):
    from kit.dashboard import mine
    from kit.store import Store, trades
    from tests.fixtures.dashboard import seed

    db = f"sqlite:///{tmp_path / 'kit.db'}"
    ids = seed(db)
    store = Store(db)
    hub = Hub(feed_factory=lambda: pytest.fail("no market is needed"), grace_s=0.0)
    mine.invalidate("bob")
    view = mine.StrategiesView(store, "bob", hub)
    try:
        view.refresh()
        sid = ids["bob"]["bob-bollinger"]
        assert view.choice.value == sid
        eq = trades.equity(store, "bob", sid)
        data = dict(view.equity_source.data)
        n = len(eq)
        assert data["realised"][:n] == eq.tolist()
        assert data["time"][:n] == [float(t) for t in eq.index.as_unit("ms").asi8]
        # the line carries on flat to the present (no open position: total equals realised)
        assert len(data["time"]) == n + 1 and data["realised"][-1] == eq.iloc[-1] == data["total"][-1]
    finally:
        view.close()
        store.dispose()


async def test_the_market_offers_every_symbol_the_exchange_lists_with_search_and_every_interval(
    simulator, sample_frames
):
    """The symbol menu is the exchange's listing (here a symbol neither in the replay folder nor in
    the defaults), searchable; the interval menu has every fixed interval the simulator serves."""
    from kit.dashboard.market import INTERVALS, MarketView, served_symbols

    frame = sample_frames[("BTCUSDT", "1m")].iloc[:500]
    sim = await simulator(data={("SOLUSDT", "1m"): frame, ("XRPUSDT", "1m"): frame}, paused=True)
    env = {"KIT_EXCHANGE_URL": sim.rest_url, "KIT_REPLAY_DATA": str(SAMPLE_DIR)}
    settings = Settings.from_env(env)
    assert await asyncio.to_thread(served_symbols, settings) == ["SOLUSDT", "XRPUSDT"]
    hub = Hub(feed_factory=lambda: pytest.fail("the menu needs no candles"), grace_s=0.0)
    view = await asyncio.to_thread(MarketView, hub, settings, None, symbol="XRPUSDT", interval="4h")
    sel = view.symbol_select
    assert sel.options == ["SOLUSDT", "XRPUSDT"] and sel.value == "XRPUSDT"
    assert sel.restrict and sel.search_strategy == "includes" and not sel.case_sensitive
    assert list(view.interval_select.options) == [i for i in INTERVALS if i != "1s"]  # the simulator has no 1s
    assert {"3m", "4h", "1d", "1w"} <= set(INTERVALS) and "1M" not in INTERVALS
    # a cleared search box keeps the stream rather than switching to nothing
    sel.value = ""
    assert view.symbol == "XRPUSDT" and sel.value == "XRPUSDT"


async def test_an_unreachable_exchange_falls_back_to_the_replay_symbols_and_is_asked_again(
    simulator, sample_frames, monkeypatch
):
    from kit.dashboard import market

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    env = {"KIT_EXCHANGE_URL": f"http://127.0.0.1:{port}", "KIT_REPLAY_DATA": str(SAMPLE_DIR)}
    settings = Settings.from_env(env)
    assert await asyncio.to_thread(market.served_symbols, settings) == ["BTCUSDT", "ETHUSDT"]
    frame = sample_frames[("BTCUSDT", "1m")].iloc[:500]
    await simulator(data={("SOLUSDT", "1m"): frame}, port=port, paused=True)  # the exchange comes up
    assert await asyncio.to_thread(market.served_symbols, settings) == ["BTCUSDT", "ETHUSDT"]  # not at once
    monkeypatch.setattr(market, "SYMBOLS_RETRY_S", 0.0)
    # asked again later, in a thread: the caller (the server's loop) gets the fallback meanwhile
    assert market.served_symbols(settings) in (["BTCUSDT", "ETHUSDT"], ["SOLUSDT"])
    await _until(lambda: market.served_symbols(settings) == ["SOLUSDT"])


def test_feed_watch_says_reconnecting_while_down_and_after_a_reconnect_until_data_flows_again():
    from kit.dashboard.hub import FeedState
    from kit.dashboard.live import FeedWatch

    w = FeedWatch()
    assert not w.observe(FeedState(True, 3)) and w.status == "connected"  # the first look sets the baseline
    assert not w.event()
    # a connection down: reconnecting, and still so after an event while it is down
    assert w.observe(FeedState(False, 3)) and w.status == "reconnecting"
    assert not w.event() and w.status == "reconnecting"
    # back up with one more reconnect: reconnecting until the stream has an event again
    assert not w.observe(FeedState(True, 4)) and w.status == "reconnecting"
    assert w.event() and w.status == "connected"
    # a reconnect quicker than one look is still seen, by the count
    assert w.observe(FeedState(True, 5)) and w.status == "reconnecting"
    assert not w.observe(FeedState(True, 5)) and w.status == "reconnecting"
    assert w.event() and w.status == "connected"
    # a source that does not say (a relayed feed) is not called down
    assert not w.observe(FeedState(None, 0)) and w.status == "connected"


def test_only_trading_symbols_are_offered():
    """An exchange lists halted and delisted symbols too (Binance: status BREAK): they have no candles
    to chart. A real HTTP server on loopback plays an exchange whose listing has one."""
    import http.server
    import threading

    from kit.dashboard.market import exchange_symbols

    listing = {"symbols": [{"symbol": "BTCUSDT", "status": "TRADING"}, {"symbol": "LUNAUSDT", "status": "BREAK"},
                           {"symbol": "ETHUSDT", "status": "TRADING"}]}  # fmt: skip

    class Exchange(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(listing).encode()
            self.send_response(200 if self.path == "/api/v3/exchangeInfo" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Exchange)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = Settings.from_env({"KIT_EXCHANGE_URL": f"http://127.0.0.1:{server.server_address[1]}"})
        assert exchange_symbols(settings) == ["BTCUSDT", "ETHUSDT"]
    finally:
        server.shutdown()
        server.server_close()
