"""Shard leases on PostgreSQL: sharing out, expiry and takeover with a higher token, and fencing of ledger writes."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from kit.errors import ConfigError
from kit.store import Store, leases, ledger, strategies, trades, users
from kit.store.leases import Fence, FencingError
from kit.store.ledger import CandleWrite

T0 = 1_700_000_000_000
TTL = 3.0


@pytest.fixture
def pg(pg_schema):
    store = Store(pg_schema)
    store.migrate()
    yield store
    store.dispose()


def _tokens(t: leases.Tick) -> dict[int, int]:
    return {s: lease.token for s, lease in t.held.items()}


def test_the_shard_count_is_fixed_per_database(pg):
    leases.setup(pg, 4)
    leases.setup(pg, 4)  # a second daemon with the same setting
    with pytest.raises(ConfigError, match="split into 4 shards but KIT_SHARDS is 8"):
        leases.setup(pg, 8)


def test_sharding_needs_postgresql(sqlite_url):
    store = Store(sqlite_url)
    store.migrate()
    with pytest.raises(ConfigError, match="need PostgreSQL"):
        leases.setup(store, 4)


def test_a_lone_daemon_takes_every_shard_and_a_joiner_gets_its_share_without_double_ownership(pg):
    leases.setup(pg, 4)
    a = leases.tick(pg, "a", {}, TTL, 1.0)
    assert sorted(a.held) == [0, 1, 2, 3] and all(lease.token == 1 for lease in a.held.values())
    b = leases.tick(pg, "b", {}, TTL, 1.0)
    assert b.held == {}  # nothing is stolen: "a" holds every lease
    a = leases.tick(pg, "a", _tokens(a), TTL, 1.0)
    assert sorted(a.held) == [0, 1] and a.given == (2, 3)  # "a" sees "b" and stops acting for its excess
    assert leases.tick(pg, "b", {}, TTL, 1.0).held == {}  # freed only at a's next round (its writer drains)
    a = leases.tick(pg, "a", _tokens(a), TTL, 1.0)
    assert sorted(a.held) == [0, 1] and a.given == ()
    b = leases.tick(pg, "b", {}, TTL, 1.0)
    assert sorted(b.held) == [2, 3] and b.taken == (2, 3)
    assert {lease.token for lease in b.held.values()} == {2}
    rows = {r["shard"]: r["owner"] for r in leases.leases(pg)}
    assert rows == {0: "a", 1: "a", 2: "b", 3: "b"}
    log = leases.history(pg)
    assert [(r["shard"], r["owner"], r["action"]) for r in log if r["shard"] == 2] == [
        (2, "a", "acquired"), (2, "a", "released"), (2, "b", "acquired")]  # fmt: skip


def test_an_expired_lease_is_taken_over_with_a_higher_token_and_its_old_holder_learns_it_lost_it(pg):
    leases.setup(pg, 2)
    a = leases.tick(pg, "a", {}, 1.0, 1.0)
    assert sorted(a.held) == [0, 1]
    time.sleep(1.2)  # "a" stops renewing (paused) past its expiry
    b = leases.tick(pg, "b", {}, 1.0, 1.0)  # every daemon runs with the same lease time
    assert sorted(b.held) == [0, 1] and {lease.token for lease in b.held.values()} == {2}
    assert [r["action"] for r in leases.history(pg)][-2:] == ["took_over", "took_over"]
    again = leases.tick(pg, "a", _tokens(a), TTL, 1.0)
    assert again.lost == (0, 1) and again.held == {}


def test_a_clean_stop_releases_at_once(pg):
    leases.setup(pg, 2)
    a = leases.tick(pg, "a", {}, 60.0, 1.0)
    assert leases.release_all(pg, "a", _tokens(a)) == [0, 1]
    b = leases.tick(pg, "b", {}, 60.0, 1.0)
    assert sorted(b.held) == [0, 1]  # no waiting for a 60 s expiry


def _strategy(store):
    users.add(store, "alice", "pw-a")
    rec = strategies.upsert(store, "alice", name="s", class_path="kit.strategies:EmaCross",
                            params={"fast": 5, "slow": 20}, symbol="BTCUSDT", interval="1m",
                            broker={"init_cash": 1000.0})  # fmt: skip
    ledger.ensure_checkpoint(store, rec, T0 - 60_000, {}, {"size": 0.0, "cash": 1000.0, "equity": 1000.0})
    return rec


def _fill(rec, t):
    return CandleWrite(rec.id, rec.user_id, t, rec.version, broker_state={"t": t},
                       orders=[{"seq": 0, "side": "buy", "size": 1.0, "reason": "entry"}],
                       fills=[{"seq": 0, "side": "buy", "size": 1.0, "price": 100.0, "fee": 0.1}])  # fmt: skip


def test_a_write_with_an_older_token_is_refused_and_writes_nothing(pg):
    rec = _strategy(pg)
    leases.setup(pg, 2)
    a = leases.tick(pg, "a", {}, 1.0, 1.0)
    fence_a = Fence("a", 2, _tokens(a))
    assert ledger.commit(pg, [_fill(rec, T0)], fence=fence_a) == 1
    time.sleep(1.2)
    assert len(leases.tick(pg, "b", {}, 1.0, 1.0).taken) == 2  # takes over both shards
    with pytest.raises(FencingError) as err:
        ledger.commit(pg, [_fill(rec, T0 + 60_000)], [(T0 + 60_000, [rec.id + 1])], fence=fence_a)
    assert err.value.shards == tuple(sorted({rec.id % 2, (rec.id + 1) % 2}))
    assert len(trades.fills(pg, "alice", rec.id)) == 1
    assert ledger.load_checkpoints(pg)[rec.id].last_open_time == T0
    # a checkpoint-only advance is fenced too
    with pytest.raises(FencingError):
        ledger.commit(pg, [], [(T0 + 60_000, [rec.id])], fence=fence_a)
    assert ledger.load_checkpoints(pg)[rec.id].last_open_time == T0


def test_a_write_for_a_shard_the_writer_does_not_hold_is_refused(pg):
    rec = _strategy(pg)
    leases.setup(pg, 2)
    a = leases.tick(pg, "a", {}, TTL, 1.0)
    mine = {s: t for s, t in _tokens(a).items() if s != rec.id % 2}
    with pytest.raises(FencingError):
        ledger.commit(pg, [_fill(rec, T0)], fence=Fence("a", 2, mine))
    assert len(trades.fills(pg, "alice", rec.id)) == 0


def test_the_owner_renews_while_its_writer_holds_the_row(pg):
    rec = _strategy(pg)
    leases.setup(pg, 1)
    a = leases.tick(pg, "a", {}, TTL, 1.0)
    with pg.begin() as conn:  # a's writer, mid-transaction
        leases.check_fence(conn, Fence("a", 1, _tokens(a)), [rec.id])
        again = leases.tick(pg, "a", _tokens(a), TTL, 0.5)  # would fail on lock_timeout if it waited
        assert again.held[0].token == a.held[0].token and again.held[0].expires > a.held[0].expires


def test_a_takeover_skips_a_shard_with_a_write_in_flight_and_the_new_owner_sees_that_write(pg):
    rec = _strategy(pg)
    leases.setup(pg, 1)
    a = leases.tick(pg, "a", {}, 0.5, 1.0)
    fence_a = Fence("a", 1, _tokens(a))
    with pg.begin() as conn:  # a's write: fence checked (row locked FOR KEY SHARE), not yet committed
        leases.check_fence(conn, fence_a, [rec.id])
        conn.execute(sa.text("UPDATE checkpoints SET last_open_time = :t WHERE strategy_id = :s"),
                     {"t": T0, "s": rec.id})  # fmt: skip
        time.sleep(0.7)  # past a's expiry
        assert leases.tick(pg, "b", {}, 0.5, 1.0).held == {}  # in use by its writer: not free
    b = leases.tick(pg, "b", {}, 0.5, 1.0)
    assert sorted(b.held) == [0] and b.held[0].token == 2
    assert ledger.load_checkpoints(pg)[rec.id].last_open_time == T0  # resumes after a's last write
    with pytest.raises(FencingError):
        ledger.commit(pg, [_fill(rec, T0 + 60_000)], fence=fence_a)
