"""Live risk limits and halts: set from the shell, applied by the daemon before every order; every
refused order is recorded with its reason and never reaches the exchange."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kit.errors import InputError
from kit.store import NotFound, Store, live, users
from tests.fixtures.daemon import wait_for
from tests.fixtures.live import assert_ledger_equals_exchange, promote_live


def kit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kit", *args], capture_output=True, text=True, timeout=60,
                          env=os.environ.copy())  # fmt: skip


def test_limits_and_halts_are_set_listed_and_cleared_from_the_shell(db_url, monkeypatch):
    monkeypatch.setenv("KIT_DATABASE_URL", db_url)
    store = Store(db_url)
    store.migrate()
    users.add(store, "alice", "pw")
    promote_live(store, 0)
    out = kit("limits", "set", "--user", "alice", "--max-exposure", "5000", "--max-daily-loss", "300")
    assert out.returncode == 0 and out.stdout.strip() == "limits of alice: max_exposure=5000.0, max_daily_loss=300.0"
    out = kit("limits", "set", "--user", "alice", "--strategy", "real", "--max-order-notional", "500")
    assert out.returncode == 0 and "limits of alice/real: max_order_notional=500.0" in out.stdout
    assert kit("limits", "set", "--user", "alice", "--clear", "max-daily-loss").stdout.strip() == (
        "limits of alice: max_exposure=5000.0")  # fmt: skip
    assert kit("halt", "--user", "alice", "--reason", "audit").returncode == 0
    listing = kit("limits", "list").stdout
    assert "alice" in listing and "max_exposure=5000.0" in listing and "HALTED: audit" in listing
    assert "max_order_notional=500.0" in listing
    assert kit("resume", "--user", "alice").returncode == 0
    assert "HALTED" not in kit("limits", "list").stdout
    users.add(store, "bob", "pw")
    assert kit("halt").stdout.splitlines() == ["halted live trading of alice", "halted live trading of bob"]
    assert kit("limits", "list").stdout.count("HALTED: halted by the operator") == 2
    assert kit("resume").returncode == 0 and "HALTED" not in kit("limits", "list").stdout
    for args, needle in (
        (["--user", "alice", "--max-exposure", "-1"], "max_exposure must be a positive number"),
        (["--user", "alice", "--strategy", "real", "--max-exposure", "1"], "max_exposure: not a strategy limit"),
        (["--user", "alice", "--strategy", "nope", "--max-order-notional", "1"], "no strategy 'nope'"),
        (["--user", "carol", "--max-exposure", "1"], "unknown user 'carol'"),
        (["--user", "alice"], "name a limit to set"),
    ):
        bad = kit("limits", "set", *args)
        assert bad.returncode == 2 and needle in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr)
    with pytest.raises(InputError):
        live.set_limits(store, "alice", max_order_notional=1.0)  # a strategy limit without a strategy
    with pytest.raises(NotFound):
        live.set_halt(store, "carol", True)
    store.dispose()


@pytest.mark.slow
def test_an_order_over_a_limit_or_while_halted_is_refused_with_its_reason_and_never_sent(sqlite_url, live_cluster):
    cluster, store, frames = live_cluster(sqlite_url, start_row=30)
    promote_live(store, int(frames["BTCUSDT"].index[0].value // 1_000_000))
    live.set_limits(store, "alice", "real", max_order_notional=300.0)  # the allocation buys ~1,000
    cluster.exchange_start()
    cluster.daemon_start()
    wait_for(lambda: any(o.state == "refused" for o in live.orders(store, "alice")), 90, "a refusal", every=0.2)
    refused = next(o for o in live.orders(store, "alice") if o.state == "refused")
    assert refused.side == "BUY" and "over the strategy's limit 300" in refused.reason and refused.order_id is None
    live.set_limits(store, "alice", "real", max_order_notional=None)
    wait_for(lambda: any(o.state == "filled" for o in live.orders(store, "alice")), 90, "a fill", every=0.2)
    live.set_halt(store, "alice", True, "audit")
    n = len(live.orders(store, "alice"))
    wait_for(lambda: any(o.state == "refused" and "halted" in o.reason for o in live.orders(store, "alice")[n:]),
             90, "a refusal while halted", every=0.2)  # fmt: skip
    assert cluster.daemon_term() == 0
    orders, _ = assert_ledger_equals_exchange(store, cluster)  # refused orders never reached the exchange
    assert all(o.order_id is None for o in orders if o.state == "refused")
