"""kit.promote(..., mode="live", allocation=...): keys required, spot (long-only), sized on its allocation;
and a live strategy the daemon cannot trade is paused, never paper-traded."""

from __future__ import annotations

import numpy as np
import pytest

import kit
from kit.errors import ConfigError
from kit.store import Store, events, keys, strategies, trades, users
from kit.strategies import EmaCross
from kit.strategy import Columns, Signals, Strategy


class ShortsOnRealCandles(Strategy):
    """Goes short, but its rules fail on the NaN row ``has_shorts`` probes with: only real candles tell."""

    lookback = 2

    def signals(self, d: Columns) -> Signals:
        if np.isnan(d.close).any():
            raise ValueError("no NaN, please")
        up = d.close > d.open
        return Signals(entries=up, exits=~up, short_entries=~up, short_exits=up)


@pytest.fixture
def store(sqlite_url, monkeypatch, free_port):
    monkeypatch.setenv("KIT_EXCHANGE_URL", f"http://127.0.0.1:{free_port}")  # nothing listens: offline checks
    monkeypatch.setenv("KIT_SECRETS_KEY", keys.generate_master_key())
    s = Store(sqlite_url)
    s.migrate()
    users.add(s, "alice", "pw")
    users.add(s, "bob", "pw")
    yield s
    s.dispose()


def live(store, strategy=None, **kw):
    args = {"user": "alice", "symbol": "BTCUSDT", "interval": "1m", "store": store, "check_import": False,
            "mode": "live", "allocation": 1_000, **kw}  # fmt: skip
    return kit.promote(strategy if strategy is not None else EmaCross(fast=5, slow=20), **args)


def test_a_live_promotion_needs_the_users_keys_and_stores_mode_and_allocation(store):
    with pytest.raises(ConfigError, match=r"user 'alice' has no exchange keys.*kit keys set --user alice"):
        live(store)
    keys.set(store, "bob", "bobkey0000", "bobsecret1")  # someone else's keys are not alice's
    with pytest.raises(ConfigError, match="has no exchange keys"):
        live(store)
    assert strategies.list(store, "alice") == []
    keys.set(store, "alice", "alicekey1111", "alicesecret")
    rec = live(store, fees=0.001)
    assert (rec.mode, rec.allocation, rec.active, rec.state) == ("live", 1_000.0, True, "active")
    assert rec.broker["init_cash"] == 1_000.0  # the strategy sizes on its allocation, not the account
    again = live(store, allocation=2_500, init_cash=2_500)
    assert (again.id, again.version, again.allocation, again.broker["init_cash"]) == (rec.id, 2, 2_500.0, 2_500.0)
    # Paper is the default and unchanged.
    paper = kit.promote(EmaCross(fast=5, slow=20), user="bob", symbol="BTCUSDT", interval="1m", store=store,
                        check_import=False, init_cash=7_000)  # fmt: skip
    assert (paper.mode, paper.allocation, paper.broker["init_cash"]) == ("paper", None, 7_000.0)
    # A paper strategy's ledger never becomes a live one: switching mode starts a new strategy (when flat).
    moved = kit.promote(EmaCross(fast=5, slow=20), user="alice", symbol="BTCUSDT", interval="1m", store=store,
                        check_import=False)  # fmt: skip
    assert moved.id != rec.id and moved.mode == "paper"
    old = strategies.get(store, "alice", rec.id)
    assert not old.active and old.mode == "live" and "replaced" in old.name


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"allocation": None}, "mode='live' needs allocation="),
        ({"allocation": -5}, "allocation must be a positive amount"),
        ({"allocation": float("nan")}, "allocation must be a positive amount"),
        ({"allocation": True}, "allocation must be a positive amount"),
        ({"allocation": 1_000, "init_cash": 5_000}, "init_cash is its allocation"),
        ({"mode": "real"}, "mode must be 'paper' or 'live'"),
        ({"mode": "paper", "allocation": 1_000}, "allocation= is for mode='live'"),
    ],
)
def test_live_promotion_arguments_are_checked_in_one_line(store, kw, needle):
    keys.set(store, "alice", "alicekey1111", "alicesecret")
    with pytest.raises(ConfigError, match=needle) as exc:
        live(store, **kw)
    assert "\n" not in str(exc.value)
    assert strategies.list(store, "alice") == []


def test_a_strategy_that_can_go_short_is_refused_in_live_mode_only(store, sample_dir):
    keys.set(store, "alice", "alicekey1111", "alicesecret")
    with pytest.raises(ConfigError, match="can go short, and live trading is spot only"):
        live(store, EmaCross(fast=5, slow=20, short=True))
    with pytest.raises(ConfigError, match="can go short"):  # the NaN probe misses it; real candles do not
        live(store, ShortsOnRealCandles())
    assert strategies.list(store, "alice") == []
    paper = kit.promote(EmaCross(fast=5, slow=20, short=True), user="alice", symbol="BTCUSDT", interval="1m",
                        store=store, check_import=False)  # fmt: skip
    assert paper.mode == "paper"


@pytest.mark.slow
def test_a_live_strategy_without_keys_in_the_daemon_is_paused_with_an_event_never_paper_traded(
    sqlite_url, cluster_factory
):
    from tests.fixtures.daemon import wait_for

    cluster, frames = cluster_factory(sqlite_url, rows=1500, start_row=300, speed=120)
    store = Store(sqlite_url)
    store.migrate()
    users.add(store, "alice", "pw")
    first = int(frames["BTCUSDT"].index[0].value // 1_000_000)
    ema = EmaCross(fast=3, slow=8)
    common = {"class_path": ema.path, "params": ema.params, "symbol": "BTCUSDT", "interval": "1m", "start_time": first}
    paper = strategies.upsert(store, "alice", name="paper", **common)
    real = strategies.upsert(store, "alice", name="real", mode="live", allocation=1_000.0, **common)
    cluster.exchange_start()
    cluster.daemon_start()  # alice has no keys (removed since the promotion): the desk cannot trade for her
    wait_for(lambda: len(trades.fills(store, "alice", paper.id)) >= 2, 60, "the paper strategy to trade")
    wait_for(lambda: strategies.get(store, "alice", real.id).state == "paused", 15, "the live strategy to pause")
    why = strategies.get(store, "alice", real.id).last_error
    assert why.startswith("live trading cannot start: ") and "no API key stored for 'alice'" in why
    paused = [e for e in events.recent(store, 100) if e["strategy_id"] == real.id]
    assert [(e["kind"], e["level"]) for e in paused] == [("strategy_paused", "error")]
    assert cluster.status()["strategies_by_user"]["alice"] == {"active": 1, "paused": 1, "error": 0, "running": 1}
    assert {m["id"] for m in cluster.status()["strategy_detail"]} == {paper.id}
    assert trades.fills(store, "alice", real.id).empty and trades.orders(store, "alice", real.id).empty
    assert cluster.daemon_term() == 0
    assert "Traceback" not in cluster.daemon_log()
    store.dispose()
