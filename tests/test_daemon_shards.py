"""Daemons sharded over PostgreSQL, as real processes on the simulator: failover and fencing.

Several ``kit daemon`` processes share one PostgreSQL schema with ``KIT_SHARDS``; each runs the
strategies of the shards it holds a lease on. A daemon killed with SIGKILL has its shards taken
over within the lease time plus a few seconds; one paused (SIGSTOP) past its lease writes not a
single row for the shards it lost once it wakes up; at the end every strategy's trades equal its
backtest's, none duplicated, and the lease history shows no shard ever owned twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from kit.store import Store, leases
from tests.fixtures.daemon import TcpProxy, get_json, wait_for
from tests.fixtures.shards import Fleet, assert_never_owned_twice, assert_writes_within_ownership, audit, install_audit
from tests.test_daemon_kill import ROWS, SPEED, START_ROW, _assert_equals_backtest, _promote_all

LEASE = 3.0


def _wait_until_done(cluster, fleet, store, frames, ids, timeout=120):
    from kit.store import ledger

    last = int(next(iter(frames.values())).index[-1].value // 1_000_000)
    wait_for(lambda: cluster.sim_now() > last + 60_000, timeout, "the simulator to reach the end of the data")
    try:
        wait_for(lambda: all(ledger.load_checkpoints(store)[i].last_open_time == last for i in ids), timeout,
                 "every strategy's checkpoint to reach the last candle", every=0.2)  # fmt: skip
    except AssertionError as exc:
        cps = ledger.load_checkpoints(store)
        behind = {i: (last - cps[i].last_open_time) // 60_000 for i in ids if cps[i].last_open_time != last}
        raise AssertionError(f"{exc}\nminutes behind: {behind}\n{fleet.logs()}") from None


def _all_owned(fleet, names, n):
    owned = [s for name in names for s in fleet.owned(name)]
    return sorted(owned) == list(range(n)) and all(fleet.owned(name) for name in names)


@pytest.fixture
def fleet_setup(pg_schema, cluster_factory):
    made = []

    def make(shards):
        cluster, frames = cluster_factory(pg_schema, rows=ROWS, start_row=START_ROW, speed=SPEED)
        fleet = Fleet(cluster, shards=shards, lease=LEASE)
        made.append(fleet)
        store = Store(pg_schema)
        store.migrate()
        install_audit(pg_schema)
        plan = _promote_all(store, int(frames["BTCUSDT"].index[0].value // 1_000_000), features=True)
        return cluster, fleet, store, frames, plan

    yield make
    for f in made:
        f.close()


@pytest.mark.slow
def test_a_killed_daemons_shards_are_taken_over_within_the_lease_and_trades_equal_the_backtest(fleet_setup):
    cluster, fleet, store, frames, plan = fleet_setup(4)
    ids = [sid for items in plan.values() for sid, _ in items]
    cluster.exchange_start(paused=True)  # the replay starts once the fleet has shared the shards out
    names = ["a", "b", "c"]
    for name in names:
        fleet.start(name)
    wait_for(lambda: _all_owned(fleet, names, 4), 60, "the three daemons to share the 4 shards")
    cluster.sim("resume")
    victim = max(names, key=lambda n: len(fleet.owned(n)))
    lost = fleet.owned(victim)
    victim_id = fleet.status(victim)["daemon_id"]  # the lease owner's name (host:pid)
    before = fleet.status(victim)["fills"]
    wait_for(lambda: fleet.status(victim)["fills"] > before, 30, f"daemon {victim} to trade")
    fleet.kill(victim)
    killed = time.monotonic()
    rest = [n for n in names if n != victim]
    wait_for(lambda: _all_owned(fleet, rest, 4), LEASE + 5, "the survivors to take every shard over", every=0.1)
    took = time.monotonic() - killed
    assert took < LEASE + 5, took
    _wait_until_done(cluster, fleet, store, frames, ids)
    history = leases.history(store)
    assert {r["shard"] for r in history if r["action"] == "took_over" and r["previous"] == victim_id} == set(lost)
    assert_never_owned_twice(history)
    for name in rest:
        st = fleet.status(name)
        assert st["ready"], st["reasons"]
        assert st["shards"]["owned"] and set(st["shards"]["held_for_s"]) == {str(s) for s in st["shards"]["owned"]}
        metrics = get_json(fleet.base(name) + "/metrics")[1]
        assert f"kit_daemon_shards_owned {len(st['shards']['owned'])}.0" in metrics
        assert fleet.term(name) == 0
    assert all(r["owner"] is None for r in leases.leases(store))  # SIGTERM released every lease
    _assert_equals_backtest(store, plan, frames)
    store.dispose()


@pytest.mark.slow
def test_a_daemon_paused_past_its_lease_writes_nothing_for_the_shards_it_lost_and_lets_go(fleet_setup, pg_schema):
    cluster, fleet, store, frames, plan = fleet_setup(2)
    ids = [sid for items in plan.values() for sid, _ in items]
    cluster.exchange_start(paused=True)
    fleet.start("a")
    fleet.start("b")
    wait_for(lambda: _all_owned(fleet, ["a", "b"], 2), 60, "the two daemons to share the 2 shards")
    cluster.sim("resume")
    (shard,) = fleet.owned("a")
    a_id, b_id = fleet.status("a")["daemon_id"], fleet.status("b")["daemon_id"]
    mine = [i for i in ids if i % 2 == shard]
    before = fleet.status("a")["candles"]
    wait_for(lambda: fleet.status("a")["candles"] > before + 20, 30, "daemon a to trade")
    fleet.signal("a", signal.SIGSTOP)
    wait_for(lambda: fleet.owned("b") == [0, 1], LEASE + 5, "b to take a's shard over", every=0.1)
    time.sleep(1.5)  # candles close; a's socket buffers fill with them
    fleet.signal("a", signal.SIGCONT)
    # a notices (its local deadline passed, or the database refuses its writes) and lets go;
    # later it is a live daemon again and takes its share back with a new token.
    wait_for(lambda: fleet.status("a")["shards"]["dropped"] >= 1, 20, "a to drop the lost shard")
    _wait_until_done(cluster, fleet, store, frames, ids)
    history = leases.history(store)
    takeover = next(r for r in history if r["action"] == "took_over" and r["shard"] == shard and r["owner"] == b_id)
    back = next((r["at"] for r in history if r["shard"] == shard and r["owner"] == a_id and r["at"] > takeover["at"]
                 and r["action"] != "released"), float("inf"))  # fmt: skip
    stale = [r for r in audit(pg_schema) if r["app"] == "a" and r["strategy_id"] in mine
             and takeover["at"] < r["at"] < back]  # fmt: skip
    assert stale == [], f"daemon a wrote {len(stale)} rows for a shard it had lost: {stale[:5]}"
    assert_never_owned_twice(history)
    for name in ("a", "b"):
        assert fleet.term(name) == 0
    _assert_equals_backtest(store, plan, frames)
    store.dispose()


def test_sharding_on_sqlite_is_a_one_line_error(sqlite_url, free_port):
    env = os.environ | {"KIT_DATABASE_URL": sqlite_url, "KIT_EXCHANGE_URL": "http://127.0.0.1:9", "KIT_SHARDS": "4"}
    out = subprocess.run([sys.executable, "-m", "kit", "daemon", "--status-port", str(free_port)],
                         env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "error: sharded daemons need PostgreSQL (KIT_SHARDS is set, the database is sqlite)"
    )
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_a_daemon_joins_and_another_leaves_under_load_and_no_shard_is_ever_owned_twice(fleet_setup, pg_schema):
    cluster, fleet, store, frames, plan = fleet_setup(4)
    ids = [sid for items in plan.values() for sid, _ in items]
    cluster.exchange_start(paused=True)
    fleet.start("a")
    fleet.start("b")
    wait_for(lambda: _all_owned(fleet, ["a", "b"], 4), 60, "the two daemons to share the 4 shards")
    owners = {n: fleet.status(n)["daemon_id"] for n in ("a", "b")}
    cluster.sim("resume")
    wait_for(lambda: fleet.status("b")["fills"] > 0, 30, "daemon b to trade")
    fleet.start("c")  # joins: takes its share only as the others hand it over
    owners["c"] = fleet.status("c")["daemon_id"]
    wait_for(lambda: _all_owned(fleet, ["a", "b", "c"], 4), 30, "the three daemons to share the shards")
    assert fleet.term("b") == 0  # leaves: releases its leases at once
    wait_for(lambda: _all_owned(fleet, ["a", "c"], 4), 10, "a and c to take b's shards")
    _wait_until_done(cluster, fleet, store, frames, ids)
    history = leases.history(store)
    assert_never_owned_twice(history)
    rows = audit(pg_schema)
    assert {r["app"] for r in rows} == {"a", "b", "c"}
    assert_writes_within_ownership(history, rows, owners, 4)
    for name in ("a", "c"):
        assert fleet.term(name) == 0
    _assert_equals_backtest(store, plan, frames)
    store.dispose()


@pytest.mark.slow
def test_a_daemon_cut_from_the_database_stops_its_shards_before_its_leases_expire_and_the_others_take_them(
    fleet_setup, pg_schema
):
    cluster, fleet, store, frames, plan = fleet_setup(2)
    ids = [sid for items in plan.values() for sid, _ in items]
    proxy = TcpProxy(("127.0.0.1", 5432))
    try:
        cluster.exchange_start(paused=True)
        fleet.start("a", db_url=pg_schema.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/"))
        fleet.start("b")
        wait_for(lambda: _all_owned(fleet, ["a", "b"], 2), 60, "the two daemons to share the 2 shards")
        owners = {n: fleet.status(n)["daemon_id"] for n in ("a", "b")}
        cluster.sim("resume")
        wait_for(lambda: fleet.status("a")["fills"] > 0, 30, "daemon a to trade")
        proxy.block()
        cut = time.monotonic()
        wait_for(lambda: fleet.owned("a") == [], LEASE, "a to stop its shards", every=0.05)
        stopped = time.monotonic() - cut
        assert stopped < LEASE, f"a still acted {stopped:.2f} s after losing the database (lease {LEASE} s)"
        wait_for(lambda: fleet.owned("b") == [0, 1], LEASE + 5, "b to take a's shards", every=0.1)
        time.sleep(1.0)
        proxy.unblock()  # a comes back: it takes its share again with new tokens
        _wait_until_done(cluster, fleet, store, frames, ids)
        history = leases.history(store)
        assert_never_owned_twice(history)
        assert_writes_within_ownership(history, audit(pg_schema), owners, 2)
        for name in ("a", "b"):
            assert fleet.term(name) == 0
        _assert_equals_backtest(store, plan, frames)
    finally:
        proxy.close()
    store.dispose()
