"""The daemon survives SIGKILL at random points, a database outage and feed drops: trades equal the backtest.

Real subprocesses (``kit exchange`` and ``kit daemon``) on loopback, a real database (SQLite
file, PostgreSQL schema). Two users; the same strategy for both on BTCUSDT (one evaluation,
two ledgers), and one more each on ETHUSDT (one with shorts).
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time

import numpy as np
import pandas as pd
import pytest

from kit.broker import FillModel
from kit.store import NotFound, Store, ledger, strategies, trades, users
from kit.strategies import AtrTrend, EmaCross, RsiReversion, VolTrend
from tests.fixtures.daemon import TcpProxy, get_json, wait_for

ROWS, START_ROW, SPEED = 900, 250, 1200
MODEL = FillModel(fees=0.001, slippage=0.0005)
VALUE_MODEL = FillModel(fees=0.0005, slippage=0.0002, size=2_000.0, size_type="value")
# All-cash sizing reversing long <-> short, filled at the next candle's open: the signal waiting
# for that open must survive every kill (it is part of the checkpointed broker state).
NEXT_OPEN_MODEL = FillModel(fees=0.001, slippage=0.0005, fill="next_open")
# Sizes per signal (units from the ATR), long/short, filled at the next open.
AMOUNT_MODEL = FillModel(fees=0.001, size=0.01, size_type="amount", fill="next_open")


def _promote_all(store: Store, first_ms: int, *, features: bool = False) -> dict[str, list[tuple[int, object]]]:
    """Two users' strategies; ``features`` adds the strategy-model features (next_open fills, percent
    reversals, stops and sizes per signal), which the SIGKILL test must cover; the outage test keeps
    the base load, since its subject is the database, and every extra trading strategy slows the
    backlog's drain through the proxy."""
    users.add(store, "alice", "pw-a")
    users.add(store, "bob", "pw-b", role="admin")
    plan = {
        "alice": [(EmaCross(fast=3, slow=8), "BTCUSDT", MODEL),
                  (EmaCross(fast=5, slow=13, short=True), "ETHUSDT", VALUE_MODEL)],
        "bob": [(EmaCross(fast=3, slow=8), "BTCUSDT", MODEL),
                (RsiReversion(period=6, lower=40.0, upper=60.0), "ETHUSDT", MODEL)],
    }  # fmt: skip
    if features:
        plan["alice"] += [
            (EmaCross(fast=4, slow=10, short=True), "BTCUSDT", NEXT_OPEN_MODEL),
            (AtrTrend(fast=5, slow=13, atr=10, stop_atr=1.5), "ETHUSDT", NEXT_OPEN_MODEL),
        ]
        plan["bob"] += [(RsiReversion(period=6, lower=35.0, upper=65.0, short=True, stop_loss=0.004), "ETHUSDT",
                         NEXT_OPEN_MODEL),
                        (VolTrend(fast=4, slow=12, atr=10, risk=20.0), "BTCUSDT", AMOUNT_MODEL)]  # fmt: skip
    out: dict[str, list[tuple[int, object]]] = {}
    for user, items in plan.items():
        for i, (strat, sym, model) in enumerate(items):
            rec = strategies.upsert(
                store, user, name=f"{type(strat).__name__}-{sym}-{i}", class_path=type(strat).path,
                params=strat.params,
                symbol=sym, interval="1m", broker=model.to_dict(), start_time=first_ms,
            )  # fmt: skip
            out.setdefault(user, []).append((rec.id, strat))
    return out


def _wait_until_done(cluster, store: Store, frames, ids: list[int], timeout: float = 120) -> int:
    last = int(next(iter(frames.values())).index[-1].value // 1_000_000)
    wait_for(lambda: cluster.sim_now() > last + 60_000, timeout, "the simulator to reach the end of the data")
    try:
        wait_for(
            lambda: all(ledger.load_checkpoints(store)[i].last_open_time == last for i in ids),
            timeout, "every strategy's checkpoint to reach the last candle", every=0.2,
        )  # fmt: skip
    except AssertionError as exc:  # say where it stopped: a flaky run must leave enough to diagnose
        cps = ledger.load_checkpoints(store)
        behind = {i: (cps[i].last_open_time - last) // 60_000 if i in cps else None for i in ids}
        behind = {i: m for i, m in behind.items() if m != 0}
        try:
            st = {k: cluster.status().get(k) for k in ("candles", "queue", "streams", "feed")}
        except Exception as e:  # the daemon may be gone
            st = {"status": repr(e)}
        raise AssertionError(f"{exc}\nminutes behind the last candle: {behind}\nstatus: {st}\n"
                             f"daemon log tail:\n{cluster.daemon_log()[-4000:]}") from None  # fmt: skip
    return last


def _assert_equals_backtest(store: Store, plan, frames) -> None:
    import kit.backtest

    positions = {u: trades.positions(store, u).set_index("strategy_id") for u in plan}
    for user, items in plan.items():
        mine = trades.list(store, user)
        assert set(mine["strategy_id"]) <= {sid for sid, _ in items}
        for sid, strat in items:
            rec = strategies.get(store, user, sid)
            res = kit.backtest.run(strat, frames[rec.symbol], model=FillModel(**rec.broker))
            bt_all = res.trades
            live_all = trades.list(store, user, sid)
            # an open position is the last row of both, with the same entry (the ledger values it at
            # the last candle it recorded a change on, the backtest at the last close)
            assert list(live_all["exit_reason"] == "open") == list(bt_all["exit_reason"] == "open")
            opened = bt_all["exit_reason"] == "open"
            for col in ("entry_time", "side"):
                assert list(live_all[col][opened]) == list(bt_all[col][opened])
            np.testing.assert_allclose(live_all["size"][opened], bt_all["size"][opened], rtol=1e-9)
            bt, live = bt_all[~opened], live_all[~opened]
            assert len(bt) > 2, f"{user}/{sid}: too few trades to prove anything"
            assert len(live) == len(bt), f"{user}/{sid}: {len(live)} live trades vs {len(bt)} in the backtest"
            for col in ("entry_time", "exit_time"):
                assert _ms(live[col]) == _ms(bt[col]), f"{user}/{sid}: {col} differ"
            assert list(live["side"]) == list(bt["side"])
            assert list(live["exit_reason"]) == list(bt["exit_reason"]), f"{user}/{sid}: exit reasons differ"
            for col in ("entry_price", "exit_price", "size", "mae", "mfe"):
                np.testing.assert_allclose(live[col], bt[col], rtol=1e-9, atol=1e-9, err_msg=f"{user}/{sid} {col}")
            np.testing.assert_allclose(live["pnl"], bt["pnl"], rtol=1e-6, atol=1e-6, err_msg=f"{user}/{sid} pnl")
            np.testing.assert_allclose(live["fees"], bt["fees"], rtol=1e-6, atol=1e-9)
            # Positions equal, and every fill is there exactly once.
            final = float(res.portfolio.assets().iloc[-1])
            assert positions[user].loc[sid, "size"] == pytest.approx(final, rel=1e-9, abs=1e-12)
            # Every fill exactly once: one fill per candle on which a trade opened or closed (a
            # reversal is one fill), plus the entry of a position still open.
            fills = trades.fills(store, user, sid)
            assert not fills.duplicated(["strategy_id", "time", "seq"]).any()
            times = {*_ms(bt["entry_time"]), *_ms(bt["exit_time"])}
            if final != 0:
                times.add(int(positions[user].loc[sid, "entry_time"].value // 1_000_000))
            assert sorted(_ms(fills["time"])) == sorted(times)
    # Neither user reaches the other's rows.
    (a_sid, _), (b_sid, _) = plan["alice"][1], plan["bob"][1]
    for me, theirs in (("alice", b_sid), ("bob", a_sid)):
        for fn in (trades.list, trades.fills, trades.orders):
            with pytest.raises(NotFound):
                fn(store, me, theirs)
        with pytest.raises(NotFound):
            strategies.get(store, me, theirs)


def _ms(col: pd.Series) -> list[int]:
    return [int(x) for x in pd.DatetimeIndex(col).as_unit("ms").asi8]


def _kill_after_fill(cluster) -> None:
    before = cluster.status()["fills"]
    wait_for(lambda: cluster.status()["fills"] > before, 30, "a fill")
    cluster.daemon_kill()


@pytest.mark.slow
def test_sigkill_at_random_points_then_trades_equal_backtest(db_url, cluster_factory):
    cluster, frames = cluster_factory(db_url, rows=ROWS, start_row=START_ROW, speed=SPEED)
    store = Store(db_url)
    store.migrate()
    first_ms = int(frames["BTCUSDT"].index[0].value // 1_000_000)
    plan = _promote_all(store, first_ms, features=True)
    ids = [sid for items in plan.values() for sid, _ in items]
    rng = random.Random(5)
    cluster.exchange_start()
    cluster.daemon_start()
    _kill_after_fill(cluster)  # right after a fill
    time.sleep(rng.uniform(1.0, 2.0))  # candles close while it is down
    cluster.daemon_start(wait_ready=False)
    # During the backfill: as soon as the first missed candles have been processed, before
    # (most of) their writes are committed.
    wait_for(lambda: cluster.status()["candles"] > 0, 60, "the backfill to start", every=0.01)
    backfill = cluster.status()
    cluster.daemon_kill()
    assert backfill["candles"] > 0
    time.sleep(rng.uniform(0.5, 1.5))
    cluster.daemon_start()
    time.sleep(rng.uniform(0.3, 1.5))  # mid-candle, anywhere
    cluster.daemon_kill()
    cluster.daemon_start()
    _kill_after_fill(cluster)
    cluster.daemon_start()
    _wait_until_done(cluster, store, frames, ids)
    st = cluster.status()
    assert st["modules"] == {"vectorbt": False, "panel": False, "holoviews": False, "bokeh": False}
    assert cluster.daemon_term() == 0
    _assert_equals_backtest(store, plan, frames)
    store.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_database_outage_and_feed_drops_lose_no_candle(db, request, cluster_factory):
    proxy = None
    if db == "sqlite":
        db_url = request.getfixturevalue("sqlite_url")
    else:
        base = request.getfixturevalue("pg_schema")
        proxy = TcpProxy(("127.0.0.1", 5432))
        db_url = base.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
    cluster, frames = cluster_factory(db_url, rows=ROWS, start_row=START_ROW, speed=SPEED)
    store = Store(base if proxy else db_url)
    store.migrate()
    plan = _promote_all(store, int(frames["BTCUSDT"].index[0].value // 1_000_000))
    ids = [sid for items in plan.values() for sid, _ in items]
    cluster.exchange_start()
    cluster.daemon_start()
    wait_for(lambda: cluster.status()["fills"] > 0, 30, "trading")
    candles_before = cluster.status()["candles"]
    # The database goes away for a few seconds while candles keep closing.
    if proxy is not None:
        proxy.block()
        time.sleep(4)
        st = cluster.status()
        proxy.unblock()
    else:
        path = db_url.removeprefix("sqlite:///")
        locked, release = threading.Event(), threading.Event()

        def hold() -> None:
            con = sqlite3.connect(path, isolation_level=None)
            con.execute("BEGIN EXCLUSIVE")
            locked.set()
            release.wait(10)
            con.execute("ROLLBACK")
            con.close()

        t = threading.Thread(target=hold)
        t.start()
        assert locked.wait(10)
        time.sleep(4)
        st = cluster.status()
        release.set()
        t.join()
    assert st["candles"] > candles_before, "the daemon stopped reading the feed while the database was down"
    assert st["queue"] > 0, "nothing waited for the database"
    if proxy is not None:
        assert st["db_ok"] is False and get_json(cluster.base + "/ready")[0] == 503
    wait_for(lambda: cluster.status()["queue"] == 0, 60, "the queue to drain once the database is back")
    # The feed drops twice and stalls once during trading.
    reconnects = cluster.status()["feed"]["reconnects"]
    for n in (1, 2):
        cluster.sim("fault", kind="drop")
        wait_for(lambda n=n: cluster.status()["feed"]["reconnects"] >= reconnects + n, 30, "a reconnect")
        cluster.sim("fault", kind="stall", seconds=1)
        time.sleep(1.5)
    _wait_until_done(cluster, store, frames, ids)
    assert cluster.daemon_term() == 0
    _assert_equals_backtest(store, plan, frames)
    store.dispose()
    if proxy is not None:
        proxy.close()
