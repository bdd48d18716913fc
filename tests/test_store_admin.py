"""Admins pause and resume others' strategies: checked against the actor's role in the same
transaction, recorded as events, seen by the daemon's change poll (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from kit.store import NotFound, admin, events, strategies, users


def _setup(store) -> tuple[int, int, int]:
    users.add(store, "root", "pw", role="admin")
    users.add(store, "alice", "pw")
    users.add(store, "bob", "pw")
    ids = []
    for user, name in (("alice", "a1"), ("alice", "a2"), ("bob", "b1")):
        rec = strategies.upsert(store, user, name=name, class_path="kit.strategies:RsiReversion", params={},
                                symbol="BTCUSDT", interval="1m")  # fmt: skip
        ids.append(rec.id)
    return ids[0], ids[1], ids[2]


def test_an_admin_pauses_a_strategy_the_daemon_sees_it_and_the_owner_can_resume(store):
    a1, a2, b1 = _setup(store)
    before = strategies.versions_for_daemon(store)
    rec = admin.pause_strategy(store, "root", a1)
    assert (rec.state, rec.last_error) == ("paused", "paused by admin root")
    after = strategies.versions_for_daemon(store)
    assert after[a1][0] == before[a1][0] + 1  # the daemon's change poll picks it up
    assert after[a2] == before[a2] and after[b1] == before[b1]  # nothing else touched
    ev = events.recent(store, 5)
    assert ev[0]["kind"] == "strategy_paused" and "admin root paused strategy" in ev[0]["message"]
    # its owner switches it on again: active, from its checkpoint
    assert strategies.set_active(store, "alice", a1, True).state == "active"
    admin.pause_strategy(store, "root", a1)
    rec = admin.resume_strategy(store, "root", a1)
    assert (rec.state, rec.active, rec.last_error) == ("active", True, None)
    assert events.recent(store, 1)[0]["kind"] == "strategy_resumed"


def test_an_admin_pauses_every_strategy_of_a_user(store):
    a1, a2, b1 = _setup(store)
    paused = admin.pause_user(store, "root", "alice")
    assert sorted(r.id for r in paused) == [a1, a2]
    states = {r.id: r.state for r in strategies.list_all_for_daemon(store, active_only=False)}
    assert states == {a1: "paused", a2: "paused", b1: "active"}
    kinds = [e["kind"] for e in events.recent(store, 5)]
    assert kinds.count("strategy_paused") == 2 and "user_paused" in kinds
    with pytest.raises(NotFound):
        admin.pause_user(store, "root", "nobody")


@pytest.mark.parametrize("actor", ["alice", "bob", "nobody"])
def test_anyone_but_an_admin_is_refused_and_nothing_changes(store, actor):
    a1, _, _ = _setup(store)
    before = strategies.versions_for_daemon(store)
    n_events = len(events.recent(store, 100))
    for act in (lambda: admin.pause_strategy(store, actor, a1), lambda: admin.pause_user(store, actor, "alice"),
                lambda: admin.resume_strategy(store, actor, a1)):  # fmt: skip
        with pytest.raises(admin.Forbidden, match="not an administrator"):
            act()
    assert strategies.versions_for_daemon(store) == before
    assert len(events.recent(store, 100)) == n_events


def test_a_demoted_or_disabled_admin_is_refused(store):
    a1, _, _ = _setup(store)
    users.set_disabled(store, "root", True)
    with pytest.raises(admin.Forbidden):
        admin.pause_strategy(store, "root", a1)
    users.set_disabled(store, "root", False)
    users.set_role(store, "root", "viewer")
    with pytest.raises(admin.Forbidden):
        admin.pause_strategy(store, "root", a1)
