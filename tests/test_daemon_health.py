"""The daemon tells the truth and fails safe: user text never stops the ledger, every long-lived task
is supervised (crash-only), a strategy that kills the process is paused after two crashes, and
``/ready`` is 503 with a reason while something fails.

Real subprocesses (``kit exchange`` and ``kit daemon``) on loopback and a real database.
"""

from __future__ import annotations

import pytest

from kit.store import Store, strategies
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


@pytest.mark.slow
def test_a_nul_in_a_strategy_error_never_stops_the_ledger_on_postgres(pg_schema, cluster_factory):
    cluster, frames = cluster_factory(pg_schema, rows=ROWS, start_row=START_ROW, speed=SPEED)
    store = Store(pg_schema)
    store.migrate()
    first_ms = int(frames["BTCUSDT"].index[0].value // 1_000_000)
    plan = _promote_all(store, first_ms)
    ids = [sid for items in plan.values() for sid, _ in items]
    bad = _add_failing(store, first_ms, "tests.fixtures.daemon:RaisesNul")
    cluster.exchange_start()
    cluster.daemon_start("--max-failures", "100000")  # it keeps failing: every failure is recorded
    _wait_until_done(cluster, store, frames, ids)
    assert cluster.daemon is not None and cluster.daemon.poll() is None, cluster.daemon_log()[-3000:]
    err = strategies.get(store, "bob", bad).last_error
    assert err.startswith("RuntimeError: bad\ufffdbyte \ufffd from user code")
    assert cluster.status()["strategy_failures"] > 100
    assert cluster.daemon_term() == 0
    _assert_equals_backtest(store, plan, frames)  # every fill persisted, once
    store.dispose()
