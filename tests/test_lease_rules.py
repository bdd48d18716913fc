"""The lease rules without a database: acquire, renew, release, balance; the token only grows."""

from __future__ import annotations

import pytest

from kit.errors import InputError
from kit.store._leases import Lease, acquire, plan, release, renew, shard_of, shares

FREE = Lease(3, None, 0, 0.0)


def test_a_free_lease_is_taken_with_a_higher_token():
    got = acquire(FREE, "a", now=100.0, ttl=10.0)
    assert got == Lease(3, "a", 1, 110.0)


def test_a_held_lease_is_not_taken_by_another():
    held = Lease(3, "a", 4, 110.0)
    assert acquire(held, "b", now=109.9, ttl=10.0) is None


def test_an_expired_lease_is_taken_by_another_with_a_higher_token():
    held = Lease(3, "a", 4, 110.0)
    assert acquire(held, "b", now=110.0, ttl=10.0) == Lease(3, "b", 5, 120.0)


def test_retaking_ones_own_expired_lease_draws_a_new_token():
    assert acquire(Lease(3, "a", 4, 110.0), "a", now=111.0, ttl=10.0) == Lease(3, "a", 5, 121.0)


def test_renew_extends_only_for_the_owner_with_the_current_token_before_expiry():
    held = Lease(3, "a", 4, 110.0)
    assert renew(held, "a", 4, now=105.0, ttl=10.0) == Lease(3, "a", 4, 115.0)
    assert renew(held, "b", 4, now=105.0, ttl=10.0) is None
    assert renew(held, "a", 3, now=105.0, ttl=10.0) is None  # an older token: fenced
    assert renew(held, "a", 4, now=110.0, ttl=10.0) is None  # expired: must acquire again


def test_release_frees_at_once_and_keeps_the_token():
    held = Lease(3, "a", 4, 110.0)
    freed = release(held, "a", 4, now=101.0)
    assert freed == Lease(3, None, 4, 101.0)
    assert not freed.held(101.0)
    assert acquire(freed, "b", now=101.0, ttl=10.0).token == 5
    assert release(held, "b", 4, now=101.0) is None
    assert release(held, "a", 3, now=101.0) is None


def test_shares_add_up_to_every_shard():
    assert shares(16, ["b", "a", "c"]) == {"a": 6, "b": 5, "c": 5}
    assert sum(shares(7, ["x", "y"]).values()) == 7
    assert shares(2, ["a", "b", "c"]) == {"a": 1, "b": 1, "c": 0}


def test_a_lone_daemon_takes_every_free_shard():
    leases = [Lease(i, None, 0, 0.0) for i in range(4)]
    assert plan(leases, "a", [], now=1.0).take == (0, 1, 2, 3)


def test_a_joiner_waits_while_the_holder_gives_up_its_excess():
    leases = [Lease(i, "a", 1, 100.0) for i in range(4)]
    joiner = plan(leases, "b", ["a"], now=50.0)
    assert joiner.take == () and joiner.give == ()  # nothing is stolen
    holder = plan(leases, "a", ["a", "b"], now=50.0)
    assert holder.give == (2, 3)
    after = [lease if lease.shard < 2 else Lease(lease.shard, None, 1, 50.0) for lease in leases]
    assert plan(after, "b", ["a"], now=50.0).take == (2, 3)


def test_expired_shards_of_a_dead_daemon_are_shared_out():
    leases = [Lease(0, "a", 1, 100.0), Lease(1, "dead", 7, 40.0), Lease(2, "dead", 7, 40.0), Lease(3, "a", 1, 100.0)]
    p = plan(leases, "b", ["a"], now=50.0)  # "dead" is no longer live
    assert p.take == (1, 2) and p.share == 2


def test_plan_never_takes_a_lease_held_by_another():
    leases = [Lease(i, f"d{i}", 1, 100.0) for i in range(3)]
    assert plan(leases, "me", ["d0", "d1", "d2"], now=10.0).take == ()


def test_strategies_map_to_a_fixed_shard():
    assert [shard_of(i, 4) for i in (1, 4, 5, 8)] == [1, 0, 1, 0]
    with pytest.raises(InputError):
        shard_of(1, 0)


def test_bad_leases_and_lease_times_are_input_errors():
    with pytest.raises(InputError):
        Lease(-1, None, 0, 0.0)
    with pytest.raises(InputError):
        Lease(0, "", 0, 0.0)
    with pytest.raises(InputError):
        acquire(FREE, "a", now=0.0, ttl=0)
