"""SIGKILL of the daemon at each step of the live order path, then a restart: the ledger equals the
exchange's record, no client order id was used twice, no fill is missing, the position is the
exchange's. On SQLite and PostgreSQL."""

from __future__ import annotations

import signal

import pytest

from kit.store import live, strategies
from tests.fixtures.daemon import wait_for
from tests.fixtures.live import assert_ledger_equals_exchange, position_of, promote_live

pytestmark = pytest.mark.slow


def _filled(store) -> int:
    return sum(o.state == "filled" for o in live.orders(store, "alice"))


@pytest.mark.parametrize("step", ["intent", "sent", "response", "fill"])
def test_a_daemon_killed_at_any_step_of_an_order_resumes_with_the_exchanges_record(db_url, live_cluster, step):
    cluster, store, frames = live_cluster(db_url, start_row=30)
    rec = promote_live(store, int(frames["BTCUSDT"].index[0].value // 1_000_000))
    cluster.exchange_start()
    cluster.env["KIT_LIVE_TEST_KILL"] = f"{step}:1"
    cluster.daemon_start()
    assert cluster.daemon is not None
    assert cluster.daemon.wait(90) == -signal.SIGKILL  # killed at the step of its first order
    cluster.daemon = None
    first = live.orders(store, "alice")[-1]
    assert first.state == ("filled" if step == "fill" else "intent")  # what the database held at the kill
    del cluster.env["KIT_LIVE_TEST_KILL"]
    cluster.daemon_start()
    wait_for(lambda: _filled(store) >= 3, 120, "orders after the restart", every=0.2)
    assert cluster.daemon_term() == 0
    orders, fills = assert_ledger_equals_exchange(store, cluster)
    again = next(o for o in orders if o.client_id == first.client_id)
    # Never sent: found nowhere once its request could no longer arrive. Sent: found and filled, once.
    assert again.state == ("not_found" if step == "intent" else "filled"), again
    assert strategies.get(store, "alice", rec.id).state == "active"  # reconciled: nothing disagreed
    assert position_of(fills) >= 0  # spot: never short
    assert "Traceback" not in cluster.daemon_log()


def test_a_ledger_that_disagrees_with_the_exchange_at_start_pauses_the_strategy_with_an_event(db_url, live_cluster):
    import sqlalchemy as sa

    from kit.store import events
    from tests.fixtures.daemon import get_json

    cluster, store, frames = live_cluster(db_url, start_row=30)
    rec = promote_live(store, int(frames["BTCUSDT"].index[0].value // 1_000_000))
    cluster.exchange_start()
    cluster.daemon_start()
    wait_for(lambda: _filled(store) >= 2, 90, "two fills", every=0.2)
    assert cluster.daemon_term() == 0
    last = [o for o in live.orders(store, "alice") if o.state == "filled"][-1]
    with store.begin() as conn:  # as if the database were restored from a backup older than that order
        conn.execute(sa.text("DELETE FROM live_fills WHERE client_id = :c"), {"c": last.client_id})
        conn.execute(sa.text("DELETE FROM live_orders WHERE client_id = :c"), {"c": last.client_id})
    cluster.daemon_start()
    wait_for(lambda: strategies.get(store, "alice", rec.id).state == "paused", 60, "the pause")
    why = strategies.get(store, "alice", rec.id).last_error
    assert why.startswith("reconciliation with the exchange failed: ")
    assert f"the exchange has order {last.client_id} that the ledger does not" in why and "position" in why
    ev = wait_for(lambda: [e for e in events.recent(store, 50) if e["strategy_id"] == rec.id
                           and e["kind"] == "strategy_paused"], 10, "its event")  # fmt: skip
    assert ev[0]["level"] == "error" and why in ev[0]["message"]
    _, text = get_json(cluster.base + "/metrics")
    assert "kit_daemon_live_reconcile_mismatches_total 1" in text
    n = len(cluster.client().request("GET", "/api/v3/allOrders", {"symbol": "BTCUSDT"})[2])
    assert cluster.daemon_term() == 0
    assert len(cluster.client().request("GET", "/api/v3/allOrders", {"symbol": "BTCUSDT"})[2]) == n  # no "fix"
