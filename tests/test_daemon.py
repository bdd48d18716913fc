"""kit daemon: the grouped core in-process, then the real process with its status server."""

from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from kit.daemon import Book, DaemonConfig
from kit.errors import ConfigError
from kit.market import Candle
from kit.store import Store, events, strategies, users
from kit.strategies import EmaCross
from tests.fixtures.daemon import get_json, wait_for, write_slice


class Rec:
    """The fields of a strategies row the Book reads."""

    def __init__(self, id, strat, user_id=1, symbol="BTCUSDT", interval="1m", broker=None, version=1):
        self.id, self.user_id, self.symbol, self.interval, self.version = id, user_id, symbol, interval, version
        self.class_path, self.params, self.broker, self.name = type(strat).path, strat.params, broker or {}, f"s{id}"


@pytest.fixture(scope="module")
def candles(tmp_path_factory):
    frame = write_slice(tmp_path_factory.mktemp("c"), 400, ("BTCUSDT",))["BTCUSDT"]
    ms = frame.index.as_unit("ms").asi8
    return [Candle(int(t), *map(float, row)) for t, row in zip(ms, frame.to_numpy(), strict=True)]


def test_identical_strategies_are_evaluated_once_and_trade_separately(candles):
    book = Book()
    ema = EmaCross(fast=3, slow=8)
    for sid, uid in ((1, 1), (2, 2), (3, 2)):
        book.add(Rec(sid, ema, user_id=uid, broker={"init_cash": 1000.0 * sid}), candles[0][0] - 1, {})
    book.add(Rec(4, EmaCross(fast=4, slow=8), user_id=1), candles[0][0] - 1, {})
    stream = book.streams[("BTCUSDT", "1m")]
    assert len(stream.groups) == 2 and stream.members == 4
    assert len(stream.own_state().slots) == 3  # ema(3), ema(4), ema(8): shared specs once
    writes = []
    for c in candles:
        res = book.on_candle("BTCUSDT", "1m", c)
        writes += res.writes
        assert len(res.writes) + len(res.advance) == 4
    evals = {g.key: g.evaluations for g in stream.groups.values()}
    assert set(evals.values()) == {len(candles)}
    by = {sid: [w for w in writes if w.strategy_id == sid and w.fills] for sid in (1, 2, 3, 4)}
    assert len(by[1]) > 4 and [w.open_time for w in by[1]] == [w.open_time for w in by[2]]
    assert by[2][0].fills[0]["size"] == pytest.approx(2 * by[1][0].fills[0]["size"])  # its own cash
    assert [w.open_time for w in by[4]] != [w.open_time for w in by[1]]
    assert all(w.user_id == 2 for w in by[2] + by[3])
    assert book.on_candle("BTCUSDT", "1m", candles[-1]) is None  # a replayed candle is ignored
    assert book.on_candle("ETHUSDT", "1m", candles[-1]) is None


def test_checkpoint_skips_processed_candles_but_warms_up(candles):
    a, b = Book(), Book()
    ema = EmaCross(fast=3, slow=8)
    a.add(Rec(1, ema), candles[0][0] - 1, {})
    b.add(Rec(1, ema), candles[199][0], {})  # resumed: candles up to #199 already committed
    wa, wb = [], []
    for c in candles:
        wa += a.on_candle("BTCUSDT", "1m", c).writes
        res = b.on_candle("BTCUSDT", "1m", c)
        wb += res.writes
        if c[0] <= candles[199][0]:
            assert not res.writes and not res.advance
    later = [w.open_time for w in wa if w.open_time > candles[199][0]]
    assert later and [w.open_time for w in wb] == later  # same decisions after the checkpoint


def test_failing_strategies_are_paused_and_others_go_on(candles):
    from tests.fixtures.daemon import Garbage, Raises, Slow

    book = Book(max_failures=3, eval_timeout=0.05)
    good = EmaCross(fast=3, slow=8)
    book.add(Rec(1, good), candles[0][0] - 1, {})
    for sid, bad in ((2, Raises()), (3, Garbage()), (4, Slow(seconds=0.08))):
        book.add(Rec(sid, bad, user_id=sid), candles[0][0] - 1, {})
    paused, errors = {}, {}
    fills = 0
    for i, c in enumerate(candles[:60]):
        res = book.on_candle("BTCUSDT", "1m", c)
        fills += sum(len(w.fills) for w in res.writes if w.strategy_id == 1)
        for f in res.failures:
            for m in f.group.members.values():
                errors.setdefault(m.id, f.error)
            for m in f.paused:
                paused[m.id] = i
                book.remove(m.id)  # what the daemon does with a paused member
    assert paused == {2: 2, 3: 2, 4: 2}
    assert "RuntimeError: strategy bug" in errors[2]
    assert "not a Signal" in errors[3] or "must return Signals" in errors[3]
    assert "too slow" in errors[4]
    assert set(book.members) == {1} and fills > 0


def test_an_endless_evaluation_is_interrupted_and_paused_at_once(candles):
    from kit.daemon._book import OVERRUN
    from tests.fixtures.daemon import Spins

    book = Book(max_failures=3, eval_timeout=0.05, kill_after=0.3)
    book.add(Rec(1, EmaCross(fast=3, slow=8)), candles[0][0] - 1, {})
    book.add(Rec(2, Spins(), user_id=2), candles[0][0] - 1, {})
    t0 = time.monotonic()
    res = book.on_candle("BTCUSDT", "1m", candles[0])
    took = time.monotonic() - t0
    assert 0.3 <= took < 3.0  # interrupted at the limit, not left to spin
    (failure,) = res.failures
    assert failure.error.startswith(OVERRUN) and [m.id for m in failure.paused] == [2]  # at the first overrun
    book.remove(2)
    fills = 0
    for c in candles[1:80]:  # the other strategy trades on, undisturbed
        res = book.on_candle("BTCUSDT", "1m", c)
        assert not res.failures
        fills += sum(len(w.fills) for w in res.writes)
    assert fills > 0


def test_config_validates_naming_the_parameter():
    with pytest.raises(ConfigError, match="poll_every"):
        DaemonConfig(poll_every=0)
    with pytest.raises(ConfigError, match="max_failures"):
        DaemonConfig(max_failures=0)
    with pytest.raises(ConfigError, match="status_port"):
        DaemonConfig(status_port=70000)
    with pytest.raises(ConfigError, match="eval_kill_after"):
        DaemonConfig(eval_timeout=5, eval_kill_after=2)


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


@pytest.mark.slow
def test_daemon_process_status_live_changes_failures_and_graceful_stop(sqlite_url, cluster_factory):
    cluster, frames = cluster_factory(sqlite_url, rows=3000, start_row=300, speed=120)
    store = Store(sqlite_url)
    store.migrate()
    users.add(store, "alice", "pw")
    users.add(store, "bob", "pw")
    first = int(frames["BTCUSDT"].index[0].value // 1_000_000)
    ema = EmaCross(fast=3, slow=8)
    a = strategies.upsert(store, "alice", name="ema", class_path=ema.path, params=ema.params, symbol="BTCUSDT",
                          interval="1m", start_time=first)  # fmt: skip
    cluster.exchange_start()
    cluster.daemon_start("--max-failures", "2", "--eval-timeout", "0.25", "--eval-kill-after", "0.5",
                         "--keep-heartbeats", str(2.5 / 86400))  # fmt: skip
    st = cluster.status()
    assert st["modules"] == {"vectorbt": False, "panel": False, "holoviews": False, "bokeh": False}
    assert get_json(cluster.base + "/health") == (200, {"status": "ok"})
    assert get_json(cluster.base + "/nope")[0] == 404
    wait_for(lambda: cluster.status()["strategy_detail"][0]["checkpoint"] > first + 300 * 60_000, 30, "backfill")
    assert cluster.status()["strategies_by_user"] == {"alice": {"active": 1, "paused": 0, "error": 0, "running": 1}}

    # A promotion, a parameter change, a failing strategy and a bad class path, all picked up live.
    b = strategies.upsert(store, "bob", name="ema-eth", class_path=ema.path, params=ema.params, symbol="ETHUSDT",
                          interval="1m")  # fmt: skip
    bad = strategies.upsert(store, "bob", name="bug", class_path="tests.fixtures.daemon:Raises", params={},
                            symbol="BTCUSDT", interval="1m")  # fmt: skip
    gone = strategies.upsert(store, "bob", name="gone", class_path="no.such.module:X", params={}, symbol="BTCUSDT",
                             interval="1m")  # fmt: skip
    spin = strategies.upsert(store, "bob", name="spin", class_path="tests.fixtures.daemon:Spins", params={},
                             symbol="BTCUSDT", interval="1m")  # fmt: skip
    connections = cluster.status()["feed"]["connections_total"]
    wait_for(lambda: cluster.status()["streams"] == 2, 15, "the new stream")
    wait_for(lambda: strategies.get(store, "bob", bad.id).state == "paused", 15, "the failing strategy to pause")
    wait_for(lambda: strategies.get(store, "bob", gone.id).state == "error", 15, "the bad path to be an error")
    assert "RuntimeError: strategy bug" in strategies.get(store, "bob", bad.id).last_error
    assert "no.such.module" in strategies.get(store, "bob", gone.id).last_error
    # an endless loop is interrupted at the hard limit and paused at its first candle
    wait_for(lambda: strategies.get(store, "bob", spin.id).state == "paused", 15, "the endless strategy to pause")
    assert strategies.get(store, "bob", spin.id).last_error.startswith("interrupted: still running after 0.5 s")
    st = cluster.status()
    assert st["strategies_by_user"]["bob"] == {"active": 1, "paused": 2, "error": 1, "running": 1}
    assert {m["id"] for m in st["strategy_detail"]} == {a.id, b.id}
    strategies.upsert(store, "alice", name="ema", class_path=ema.path, params={**ema.params, "fast": 4},
                      symbol="BTCUSDT", interval="1m")  # fmt: skip
    wait_for(lambda: [m["version"] for m in cluster.status()["strategy_detail"] if m["id"] == a.id] == [2], 15,
             "the new version")  # fmt: skip
    time.sleep(1.5)  # the new version trades on: its new indicator is warmed and fed
    assert strategies.get(store, "alice", a.id).state == "active"
    assert "row has no value" not in cluster.daemon_log()
    strategies.set_active(store, "bob", b.id, False)
    wait_for(lambda: cluster.status()["streams"] == 1, 15, "the demoted strategy's stream to close")
    st = cluster.status()
    assert st["feed"]["connections_total"] == connections and st["feed"]["reconnects"] == 0  # never dropped
    kinds = {e["kind"] for e in events.recent(store, 100)}
    assert {"start", "strategy_failed", "strategy_paused", "strategy_error"} <= kinds

    # a strategy that cannot load is not ready (degraded: the daemon runs, a user's strategy does not)
    code, body = get_json(cluster.base + "/ready")
    assert code == 503 and body["state"] == "degraded"
    assert [r for r in body["reasons"] if r.startswith(f"cannot load strategy {gone.id} (bob/gone)")], body
    metrics = get_json(cluster.base + "/metrics")[1]
    assert _metric(metrics, "kit_daemon_up") == 1 and _metric(metrics, "kit_daemon_ready") == 0
    assert _metric(metrics, 'kit_daemon_strategies{state="paused"}') == 2
    assert _metric(metrics, "kit_daemon_candles_total") > 300
    assert "# TYPE kit_daemon_persist_latency_seconds summary" in metrics
    for line in metrics.splitlines():
        assert line.startswith("#") or re.match(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? \S+$', line), line
    # prometheus_client's own parser reads it: every family named kit_..., counters ..._total
    fams = {f.name: f for f in text_string_to_metric_families(metrics)}
    assert all(name.startswith(("kit_daemon_", "kit_feed_")) for name in fams), sorted(fams)
    assert fams["kit_daemon_candles"].type == "counter" and fams["kit_feed_connections"].type == "gauge"
    assert fams["kit_daemon_persist_latency_seconds"].type == "summary"

    time.sleep(1.2)
    hb = events.latest_heartbeat(store)
    assert hb is not None and hb["status"]["strategies"] >= 1 and "status uptime_s=" in cluster.daemon_log()
    # one heartbeat a second, kept 2.5 s: the table stays bounded however long the daemon runs
    from kit.store.models import Heartbeat

    with store.engine.connect() as conn:
        n_heartbeats = conn.execute(sa.select(sa.func.count()).select_from(Heartbeat)).scalar_one()
    assert 1 <= n_heartbeats <= 4 and "pruned old operator rows" in cluster.daemon_log()
    candles = cluster.status()["candles"]
    assert cluster.daemon_term() == 0
    assert events.recent(store, 1)[0]["kind"] == "stop"
    log = cluster.daemon_log()
    assert "stopping: finishing the candle in hand" in log and "Traceback" not in log
    assert candles > 0
    store.dispose()


def test_a_next_open_signal_and_trade_extremes_survive_restarts(candles, sqlite_url):
    """Restart from the database after every candle that decided a signal, and every 7 candles: the
    signal waiting for the next open and the open trade's extremes are in the checkpoint, so the
    ledger still equals the next_open backtest, exit reasons and excursions included."""
    import numpy as np
    import pandas as pd

    import kit.backtest
    from kit.broker import BrokerState, FillModel
    from kit.store import ledger, trades

    store = Store(sqlite_url)
    store.migrate()
    users.add(store, "alice", "pw")
    strat = EmaCross(fast=3, slow=8, short=True, stop_loss=0.003)
    model = FillModel(slippage=0.0005, fill="next_open")
    first = candles[0][0]
    rec = strategies.upsert(store, "alice", name="n", class_path=type(strat).path, params=strat.params,
                            symbol="BTCUSDT", interval="1m", broker=model.to_dict(), start_time=first)  # fmt: skip
    flat = {"size": 0.0, "cash": model.init_cash, "equity": model.init_cash}
    ledger.ensure_checkpoint(store, rec, first - 1, BrokerState(cash=model.init_cash).to_dict(), flat)

    def boot(seen: int) -> Book:
        cp = ledger.load_checkpoints(store)[rec.id]
        book = Book()
        book.add(rec, cp.last_open_time, cp.broker_state)
        for c in candles[:seen]:  # the engine's history: warm-up only, nothing is written again
            res = book.on_candle("BTCUSDT", "1m", c)
            assert not res.writes and not res.advance
        return book

    book, restarts = boot(0), 0
    for i, c in enumerate(candles):
        res = book.on_candle("BTCUSDT", "1m", c)
        ledger.commit(store, res.writes, [(res.open_time, res.advance)] if res.advance else None)
        if any(w.last_signal for w in res.writes) or i % 7 == 0:
            book, restarts = boot(i + 1), restarts + 1
    frame = pd.DataFrame(
        [c[1:6] for c in candles], columns=["open", "high", "low", "close", "volume"],
        index=pd.DatetimeIndex(pd.to_datetime([c[0] for c in candles], unit="ms", utc=True), name="open_time"),
    )  # fmt: skip
    want = kit.backtest.run(strat, frame, model=model).trades
    got = trades.list(store, "alice")
    assert restarts > 10 and len(want) > 10 and {"long", "short"} <= set(want["side"])
    assert len(got) == len(want)
    assert (got["entry_time"].to_numpy() == want["entry_time"].to_numpy()).all()
    assert (got["exit_time"].to_numpy() == want["exit_time"].to_numpy()).all()
    np.testing.assert_allclose(got["entry_price"], want["entry_price"], rtol=1e-9)
    np.testing.assert_allclose(got["exit_price"], want["exit_price"], rtol=1e-9)
    closed = want["exit_reason"] != "open"
    assert list(got["exit_reason"]) == list(want["exit_reason"])
    for col in ("mae", "mfe"):
        np.testing.assert_allclose(got[col][closed], want[col][closed], rtol=1e-9, atol=1e-9, err_msg=col)
    store.dispose()
