"""The daemon tells the truth and fails safe: user text never stops the ledger, every long-lived task
is supervised (crash-only), a strategy that kills the process is paused after two crashes, and
``/ready`` is 503 with a reason while something fails.

Real subprocesses (``kit exchange`` and ``kit daemon``) on loopback and a real database.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import threading

import pytest

from kit.daemon._health import FAULT_ENV
from kit.store import Store, events, strategies, trades
from kit.store.models import StrategyRecord
from kit.strategies import EmaCross
from tests.fixtures.daemon import get_json, wait_for
from tests.test_daemon_kill import (
    MODEL,
    ROWS,
    SPEED,
    START_ROW,
    _assert_equals_backtest,
    _promote_all,
    _wait_until_done,
)


def _add_failing(store: Store, first_ms: int, path: str, name: str = "bad") -> int:
    rec = strategies.upsert(store, "bob", name=name, class_path=path, params={}, symbol="BTCUSDT", interval="1m",
                            broker=MODEL.to_dict(), start_time=first_ms)  # fmt: skip
    return rec.id


def _setup(cluster_factory, db_url: str, speed: float = SPEED):
    """The kill test's cluster and plan (two users, four strategies): (cluster, frames, store, plan, ids, first_ms)."""
    cluster, frames = cluster_factory(db_url, rows=ROWS, start_row=START_ROW, speed=speed)
    store = Store(db_url)
    store.migrate()
    first_ms = int(frames["BTCUSDT"].index[0].value // 1_000_000)
    plan = _promote_all(store, first_ms)
    return cluster, frames, store, plan, [sid for items in plan.values() for sid, _ in items], first_ms


@pytest.mark.slow
def test_a_nul_in_a_strategy_error_never_stops_the_ledger_on_postgres(pg_schema, cluster_factory):
    cluster, frames, store, plan, ids, first_ms = _setup(cluster_factory, pg_schema)
    bad = _add_failing(store, first_ms, "tests.fixtures.daemon:RaisesNul")
    cluster.exchange_start()
    # It keeps failing (every failure is recorded), so /ready says "degraded" (503) from its first
    # failure on, which under load can come before the first look at /ready: wait for /health.
    cluster.daemon_start("--max-failures", "100000", wait_ready=False)
    wait_for(lambda: get_json(cluster.base + "/health")[0] == 200, 60, "the daemon to serve /health")
    _wait_until_done(cluster, store, frames, ids)
    assert cluster.daemon is not None and cluster.daemon.poll() is None, cluster.daemon_log()[-3000:]
    err = strategies.get(store, "bob", bad).last_error
    assert err.startswith("RuntimeError: bad\ufffdbyte \ufffd from user code")
    assert cluster.status()["strategy_failures"] > 100
    assert cluster.daemon_term() == 0
    _assert_equals_backtest(store, plan, frames)  # every fill persisted, once
    store.dispose()


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


def _fills(store: Store) -> int:
    return sum(len(trades.fills(store, u)) for u in ("alice", "bob"))


def _wait_exit(cluster, timeout: float = 90) -> int:
    assert cluster.daemon is not None
    rc = cluster.daemon.wait(timeout)
    cluster.daemon = None
    return rc


#: Each supervised task and the pass at which the test makes it raise (after some fills).
FAULTS = {"writer": "writer:30", "stream": "stream:300", "poller": "poller:4", "heartbeat": "heartbeat:3",
          "status": "status:3"}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("task", list(FAULTS))
def test_an_unexpected_failure_in_any_task_exits_non_zero_and_the_restart_loses_no_fill(
    task, sqlite_url, cluster_factory
):
    cluster, frames, store, plan, ids, _ = _setup(cluster_factory, sqlite_url)
    cluster.exchange_start()
    cluster.env[FAULT_ENV] = FAULTS[task]
    cluster.daemon_start(wait_ready=False)
    del cluster.env[FAULT_ENV]
    assert _wait_exit(cluster) == 1
    log = cluster.daemon_log()
    assert re.search(rf"ERROR +kit\.daemon: task {task}\b[^\n]* failed; stopping", log), log[-3000:]
    assert "Traceback" in log and f"injected test fault in {task}" in log
    assert events.recent(store, 1)[0]["kind"] == "crash"
    assert _fills(store) > 0  # some fills were committed before the failure: the restart must not repeat them
    cluster.daemon_start()
    _wait_until_done(cluster, store, frames, ids)
    # The warm-up candles replayed at the restart are not counted as waiting: once the last candle is
    # in the database the figure drains to 0 (the writer counts a batch done when its commit returns,
    # a moment after the rows are visible to other connections).
    wait_for(lambda: cluster.status()["queue"] == 0, 10, "the write queue to drain")
    st = cluster.status()
    assert st["queue"] == 0 and _metric(get_json(cluster.base + "/metrics")[1], "kit_daemon_write_queue") == 0
    assert st["ready"] is True and get_json(cluster.base + "/ready") == (200, {"ready": True, "state": "ok",
                                                                              "reasons": []})  # fmt: skip
    assert cluster.daemon_term() == 0
    _assert_equals_backtest(store, plan, frames)
    store.dispose()


@pytest.mark.slow
def test_a_strategy_that_kills_the_process_is_paused_after_two_crashes_and_the_others_resume(
    sqlite_url, cluster_factory
):
    cluster, frames, store, plan, ids, first_ms = _setup(cluster_factory, sqlite_url)
    bad = _add_failing(store, first_ms, "tests.fixtures.daemon:Aborts", name="aborts")
    cluster.exchange_start()
    for _ in range(2):  # what systemd does: restart it
        cluster.daemon_start(wait_ready=False)
        assert _wait_exit(cluster) == -signal.SIGABRT
    assert f"died while evaluating strategies [{bad}]; they are paused if that happens again" in cluster.daemon_log()
    assert strategies.get(store, "bob", bad).state == "active"  # one crash is not a verdict
    cluster.daemon_start()
    _wait_until_done(cluster, store, frames, ids)
    rec = strategies.get(store, "bob", bad)
    assert rec.state == "paused" and "died twice in a row while evaluating this strategy" in rec.last_error
    (ev,) = [e for e in events.recent(store, 500) if e["kind"] == "strategy_paused" and e["strategy_id"] == bad]
    assert ev["level"] == "error" and "os.abort()" in ev["message"]
    st = cluster.status()
    assert [p["id"] for p in st["strategy_problems"]] == [bad] and st["strategy_problems"][0]["state"] == "paused"
    assert st["ready"] is True  # paused is handled, not failing
    assert cluster.daemon_term() == 0
    _assert_equals_backtest(store, plan, frames)
    store.dispose()


def _ready(cluster) -> tuple[int, dict]:
    return get_json(cluster.base + "/ready")


def _reason(cluster, prefix: str, state: str) -> str | None:
    code, body = _ready(cluster)
    if code != 503 or body["state"] != state:
        return None
    return next((r for r in body["reasons"] if r.startswith(prefix)), None)


@pytest.mark.slow
def test_ready_is_503_with_the_reason_while_a_stream_a_strategy_or_the_writer_fails(sqlite_url, cluster_factory):
    from kit.dashboard.admin import daemon_tables

    cluster, frames, store, plan, ids, first_ms = _setup(cluster_factory, sqlite_url, speed=SPEED / 2)
    cluster.exchange_start()
    cluster.daemon_start("--max-failures", "100000", "--max-write-lag", "1")
    assert _ready(cluster) == (200, {"ready": True, "state": "ok", "reasons": []})

    # A stream that keeps failing: a symbol the exchange stopped listing after it was promoted
    # (written straight to the table: no promotion check stands in the way).
    bob = strategies.get(store, "bob", plan["bob"][0][0]).user_id
    with store.session(write=True) as s:
        row = StrategyRecord(user_id=bob, name="delisted", class_path=EmaCross.path, params={}, symbol="DOGEUSDT",
                             interval="1m", start_time=first_ms)  # fmt: skip
        s.add(row)
        s.flush()
        delisted = row.id
    reason = wait_for(lambda: _reason(cluster, "stream DOGEUSDT/1m failing (3 times in a row): ", "down"), 30,
                      "the failing stream to make /ready 503")  # fmt: skip
    metrics = get_json(cluster.base + "/metrics")[1]
    assert _metric(metrics, "kit_daemon_streams_failing") == 1
    assert _metric(metrics, "kit_daemon_stream_failures_total") >= 3
    (doge,) = [d for d in cluster.status()["stream_detail"] if d["symbol"] == "DOGEUSDT"]
    assert doge["failures"] >= 3 and doge["last_error"] and doge["last_error"] in reason
    strategies.set_active_as_operator(store, delisted, False)
    wait_for(lambda: _ready(cluster)[0] == 200, 15, "/ready 200 once the stream is gone")

    # A strategy whose evaluations fail, and one that cannot load (a long error: shown whole).
    bug = _add_failing(store, first_ms, "tests.fixtures.daemon:Raises", name="bug")
    long_path = "no.such.module_" + "x" * 220 + ":X"
    gone = _add_failing(store, first_ms, long_path, name="gone")
    wait_for(lambda: _reason(cluster, f"failing strategy {bug} (bob/bug) (", "degraded"), 15, "the failing strategy")
    reason = wait_for(lambda: _reason(cluster, f"cannot load strategy {gone} (bob/gone): ", "degraded"), 15,
                      "the strategy that cannot load")  # fmt: skip
    assert long_path.split(":")[0] in reason
    st = cluster.status()
    assert st["strategies_failing"] == 1 and st["strategies_cannot_load"] == 1 and st["health"] == "degraded"
    assert "RuntimeError: strategy bug" in next(m for m in st["strategy_detail"] if m["id"] == bug)["last_error"]
    assert _metric(get_json(cluster.base + "/metrics")[1], "kit_daemon_strategies_failing") == 1
    tables = daemon_tables(st)  # what the admin page shows
    rows = tables["strategies"].set_index("id")
    assert rows.loc[bug, "state"] == "failing" and "RuntimeError: strategy bug" in rows.loc[bug, "error"]
    assert rows.loc[gone, "state"] == "error" and long_path.split(":")[0] in rows.loc[gone, "error"]  # not cut
    assert list(tables["strategies"]["id"][:2]) == sorted([bug, gone])  # problems first
    assert set(tables["health"]["reason"]) == set(st["reasons"]) and len(st["reasons"]) == 2
    assert not set(tables["summary"]["key"]) & {"strategy_detail", "strategy_problems", "stream_detail"}
    for sid in (bug, gone):
        strategies.set_active_as_operator(store, sid, False)
    wait_for(lambda: _ready(cluster)[0] == 200, 15, "/ready 200 once both are switched off")

    # The writer behind: the database holds every write for a while (a lock, not an outage).
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        con = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(15)
        con.execute("ROLLBACK")
        con.close()

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert locked.wait(10)
        wait_for(lambda: _reason(cluster, "writer behind: ", "down"), 10, "the writer to be reported behind")
        assert _metric(get_json(cluster.base + "/metrics")[1], "kit_daemon_write_lag_seconds") > 1
        assert cluster.status()["queue"] > 0
    finally:
        release.set()
        t.join()
    wait_for(lambda: _ready(cluster)[0] == 200, 30, "/ready 200 once the writer caught up")
    _wait_until_done(cluster, store, frames, ids)
    assert cluster.status()["queue"] == 0
    assert cluster.daemon_term() == 0
    _assert_equals_backtest(store, plan, frames)
    store.dispose()


def test_the_guard_pauses_only_a_group_in_hand_at_two_consecutive_crashes(tmp_path):
    from kit.daemon._guard import InHand, group_id

    g, h = group_id(("BTCUSDT", "1m"), ("a", ())), group_id(("BTCUSDT", "1m"), ("b", ()))
    assert g != h and g > 0 and g == group_id(("BTCUSDT", "1m"), ("a", ()))  # stable across processes
    path = tmp_path / "in-hand.bin"

    def died_in(gid: int) -> InHand:  # a process that dies with ``gid`` in hand (0: outside evaluations)
        guard = InHand(path)
        guard.mark(gid)
        return guard  # never closed: the map outlives it, like a killed process's page cache

    assert InHand(path).verdict.in_hand == 0
    died_in(g)
    v = died_in(g).verdict
    assert (v.in_hand, v.pause, v.suspect) == (g, 0, g)  # first crash in g: a suspect, nobody paused
    v = died_in(h).verdict
    assert (v.in_hand, v.pause, v.suspect) == (g, g, 0)  # second in a row in g: pause g
    v = died_in(g).verdict
    assert (v.pause, v.suspect) == (0, h)  # h, then g: not consecutive
    clean = InHand(path)
    assert (clean.verdict.pause, clean.verdict.suspect) == (0, g)
    clean.close()  # an orderly exit clears what is in hand, so the next start forgets the suspect
    assert (InHand(path).verdict.in_hand, InHand(path).verdict.suspect) == (0, 0)


def test_health_is_ok_only_when_nothing_fails_and_names_each_reason():
    from kit.daemon._health import StreamHealth, assess

    base = {"failed_task": None, "stopping": False, "db_ok": True, "feed_connected": True, "streams": {},
            "write_queue": 0, "write_lag_s": 0.0, "max_write_lag": 30.0, "cannot_load": [], "failing": []}  # fmt: skip
    assert assess(**base).to_dict() == {"ready": True, "state": "ok", "reasons": []}
    flaky = StreamHealth()
    for _ in range(2):
        flaky.failed("ExchangeError: HTTP 400")
    assert assess(**{**base, "streams": {"X/1d": flaky}}).ready  # two failures: a reconnect, not yet failing
    flaky.failed("ExchangeError: HTTP 400")
    h = assess(**{**base, "streams": {"X/1d": flaky}, "cannot_load": ["strategy 7 (a/b): E"]})
    assert h.state == "down" and h.reasons == ("stream X/1d failing (3 times in a row): ExchangeError: HTTP 400",
                                                "cannot load strategy 7 (a/b): E")  # fmt: skip
    flaky.ok()
    assert assess(**{**base, "streams": {"X/1d": flaky}}).ready
    assert assess(**{**base, "failing": [f"s{i}" for i in range(9)]}).reasons[-1] == "... and 4 more"
    assert assess(**{**base, "write_queue": 5, "write_lag_s": 31.0}).reasons == (
        "writer behind: 5 candles waiting, the oldest for 31.0 s",
    )
    assert assess(**{**base, "failed_task": "writer", "db_ok": False}).reasons == (
        "task writer failed; the daemon is stopping", "database unavailable")  # fmt: skip


def test_fault_injection_is_refused_unless_it_names_a_task():
    from kit.daemon._health import FaultPlan
    from kit.errors import ConfigError

    with pytest.raises(ConfigError, match="KIT_DAEMON_TEST_FAULT"):
        FaultPlan("writr:2")
    plan = FaultPlan("writer:2")
    plan.check("writer")
    plan.check("poller")
    with pytest.raises(RuntimeError, match="injected test fault in writer"):
        plan.check("writer")
