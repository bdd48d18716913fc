"""My strategies at a glance: the landing summary's rows from a real (SQLite) store seeded through
kit.store, one user's at a time."""

from __future__ import annotations

import math

import pytest

from kit.dashboard.glance import MAX_ROWS, GlanceRow, glance_rows, render
from kit.dashboard.mine import invalidate, load
from tests.fixtures.dashboard import DATA_START, MINUTE, OPEN_AT, STRATEGIES, fill_price, seed

DAY = 86_400_000


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from kit.store import Store

    url = f"sqlite:///{tmp_path_factory.mktemp('glance') / 'kit.db'}"
    seed(url)
    st = Store(url)
    yield st
    st.dispose()


def _rows(store, user: str, clock: float, price: float | None) -> dict[str, GlanceRow]:
    invalidate(user)
    recs, trades, positions, _ = load(store, user)
    return {g.name: g for g in glance_rows(recs, trades, positions, lambda _r: clock, lambda _s: price)}


def _realised(user: str, name: str) -> float:
    _, symbol, trades = next(s for s in STRATEGIES[user] if s[0] == name)
    size = 0.01 if symbol == "BTCUSDT" else 0.5
    return sum((fill_price(user, symbol, b) - fill_price(user, symbol, a)) * size - 0.2 for a, b in trades)


def test_todays_pnl_is_trades_closed_today_plus_the_open_position_at_the_live_price(store):
    now = DATA_START + 100 * MINUTE  # the same UTC day as every seeded trade
    rows = _rows(store, "alice", now, 106_000.0)
    assert set(rows) == {"alice-rsi", "alice-ema"}
    rsi, ema = rows["alice-rsi"], rows["alice-ema"]
    entry = fill_price("alice", "BTCUSDT", OPEN_AT)
    assert rsi.position == "long 0.02" and rsi.last_signal == "entry" and rsi.state == "active"
    assert math.isclose(rsi.today_pnl, _realised("alice", "alice-rsi") + 0.02 * (106_000.0 - entry), rel_tol=1e-9)
    assert ema.position == "flat" and math.isclose(ema.today_pnl, _realised("alice", "alice-ema"), rel_tol=1e-9)
    # the next day on the strategy's clock: yesterday's trades are not today's P&L, the open position is
    rows = _rows(store, "alice", now + DAY, 106_000.0)
    assert math.isclose(rows["alice-rsi"].today_pnl, 0.02 * (106_000.0 - entry), rel_tol=1e-9)
    assert rows["alice-ema"].today_pnl == 0.0
    # an open position with no live price yet: unknown, said so, not a made-up number
    rows = _rows(store, "alice", now, None)
    assert math.isnan(rows["alice-rsi"].today_pnl)
    assert "no price yet" in render(list(rows.values()))


def test_a_user_sees_only_their_own_strategies_at_a_glance(store):
    bob = _rows(store, "bob", DATA_START, 1.0)
    assert set(bob) == {"bob-bollinger"}
    html = render(list(bob.values()))
    assert "bob-bollinger" in html and "alice" not in html
    assert "No strategies yet" in render(list(_rows(store, "root", DATA_START, 1.0).values()))


def test_the_summary_escapes_names_and_counts_what_it_leaves_out():
    row = GlanceRow(1, "<script>x</script>", "BTCUSDT 1m", "paused", "flat", -1.5, "exit", "boom <b>")
    html = render([row] * (MAX_ROWS + 3))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "boom <b>" not in html and "boom &lt;b&gt;" in html  # the error, as a tooltip, is text too
    assert html.count("<tr data-sid=") == MAX_ROWS and "and 3 more" in html
    assert "-1.50" in html and "paused" in html
