"""kit.store on SQLite and PostgreSQL: users, scoping across users, the ledger, migrations."""

from __future__ import annotations

import inspect
import logging

import pandas as pd
import pytest
import sqlalchemy as sa

from kit.broker import TRADE_COLUMNS, FillModel, PaperBroker
from kit.errors import ConfigError
from kit.market import Candle
from kit.store import NotFound, Store, events, ledger, strategies, trades, users
from kit.store.ledger import CandleWrite
from kit.store.models import SignalRecord
from kit.strategy import Signal
from tests.fixtures.store import head_revision

T0 = 1_700_000_000_000  # a candle open time, ms


def _promote(store, user, name="s1", symbol="BTCUSDT"):
    return strategies.upsert(
        store, user, name=name, class_path="kit.strategies:EmaCross", params={"fast": 5, "slow": 20},
        symbol=symbol, interval="1m", broker={"init_cash": 1000.0},
    )  # fmt: skip


def _trade_round_trip(store, rec, t0=T0, price=100.0):
    """Open on candle t0, close on t0+60s: what the daemon writes, through the ledger."""
    ledger.ensure_checkpoint(store, rec, t0 - 60_000, {"cash": 1000.0}, {"size": 0.0, "cash": 1000.0, "equity": 1000.0})
    buy = CandleWrite(
        rec.id, rec.user_id, t0, rec.version, broker_state={"pos": 1},
        orders=[{"seq": 0, "side": "buy", "size": 1.0, "reason": "entry"}],
        fills=[{"seq": 0, "side": "buy", "size": 1.0, "price": price, "fee": 0.1}],
        position={"size": 1.0, "entry_price": price, "entry_time": t0, "cash": 900.0, "equity": 1000.0},
        last_signal="entry",
    )  # fmt: skip
    sell = CandleWrite(
        rec.id, rec.user_id, t0 + 60_000, rec.version, broker_state={"pos": 0},
        orders=[{"seq": 0, "side": "sell", "size": 1.0, "reason": "exit"}],
        fills=[{"seq": 0, "side": "sell", "size": 1.0, "price": price + 5, "fee": 0.1}],
        trades=[{"seq": 0, "entry_time": t0, "exit_time": t0 + 60_000, "side": "long", "size": 1.0,
                 "entry_price": price, "exit_price": price + 5, "pnl": 4.8, "fees": 0.2}],
        position={"size": 0.0, "entry_price": None, "entry_time": None, "cash": 1004.8, "equity": 1004.8},
        last_signal="exit",
    )  # fmt: skip
    return buy, sell


def test_users_add_authenticate_and_never_store_or_log_the_password(store, caplog):
    caplog.set_level(logging.DEBUG)
    alice = users.add(store, "alice", "correct horse", role="admin")
    assert alice.role == "admin" and alice.is_admin
    assert "correct horse" not in alice.password_hash and alice.password_hash.startswith("$argon2")
    assert "correct horse" not in repr(alice) and alice.password_hash not in str(alice)
    assert users.authenticate(store, "alice", "correct horse").name == "alice"
    assert users.authenticate(store, "alice", "wrong") is None
    assert users.authenticate(store, "nobody", "correct horse") is None
    assert users.authenticate(store, "alice", "") is None
    assert "correct horse" not in caplog.text
    assert users.get(store, "alice").id == alice.id and users.get(store, "zed") is None
    users.add(store, "bob", "pw")
    assert [u.name for u in users.list(store)] == ["alice", "bob"]
    users.set_password(store, "bob", "new")
    assert users.authenticate(store, "bob", "pw") is None and users.authenticate(store, "bob", "new") is not None


@pytest.mark.parametrize(
    ("name", "password", "role", "needle"),
    [("", "pw", "viewer", "name"), ("a b", "pw", "viewer", "name"), ("ok", "", "viewer", "password"),
     ("ok", "pw", "root", "role")],
)  # fmt: skip
def test_users_add_rejects_bad_input_naming_it(store, name, password, role, needle):
    with pytest.raises(ConfigError, match=needle):
        users.add(store, name, password, role=role)


def test_duplicate_user_is_a_one_line_error(store):
    users.add(store, "alice", "pw")
    with pytest.raises(ConfigError, match="already exists"):
        users.add(store, "alice", "pw2")


def test_strategies_upsert_versions_and_set_active(store):
    alice = users.add(store, "alice", "pw")
    rec = _promote(store, alice)
    assert (rec.version, rec.active, rec.state) == (1, True, "active")
    again = strategies.upsert(store, alice, name="s1", class_path="kit.strategies:EmaCross", params={"fast": 7},
                              symbol="BTCUSDT", interval="1m")  # fmt: skip
    assert again.id == rec.id and again.version == 2 and again.params == {"fast": 7} and again.interval == "1m"
    off = strategies.set_active(store, alice, rec.id, False)
    assert off.active is False and off.version == 3
    assert strategies.list_all_for_daemon(store) == []
    strategies.set_state_for_daemon(store, rec.id, "paused", failures=3, last_error="boom")
    on = strategies.set_active(store, "alice", rec.id, True)
    assert (on.active, on.state, on.failures, on.last_error, on.version) == (True, "active", 0, None, 4)
    assert strategies.versions_for_daemon(store) == {rec.id: (4, True)}
    assert strategies.find(store, alice, "s1").id == rec.id and strategies.find(store, alice, "nope") is None
    with pytest.raises(ConfigError, match="interval"):
        strategies.upsert(store, alice, name="s3", class_path="x:Y", params={}, symbol="BTCUSDT", interval="7m")


def _holding(store, rec, size=3.84, price=2532.0):
    """The daemon's first fill for ``rec``: a position opened on candle T0, through the ledger."""
    ledger.ensure_checkpoint(store, rec, T0 - 60_000, {}, {"size": 0.0, "cash": 10_000.0, "equity": 10_000.0})
    side = "buy" if size > 0 else "sell"
    ledger.commit(store, [CandleWrite(
        rec.id, rec.user_id, T0, rec.version, broker_state={"position": size},
        fills=[{"seq": 0, "side": side, "size": abs(size), "price": price, "fee": 1.0}],
        position={"size": size, "entry_price": price, "entry_time": T0, "cash": 10_000.0 - size * price,
                  "equity": 10_000.0},
    )])  # fmt: skip


@pytest.mark.parametrize("change", [{"symbol": "BTCUSDT"}, {"interval": "1h"}, {"class_path": "kit.strategies:X"}])
def test_a_new_symbol_interval_or_class_is_refused_while_a_position_is_held(store, change):
    alice = users.add(store, "alice", "pw")
    rec = _promote(store, alice, name="trend", symbol="ETHUSDT")
    _holding(store, rec)
    definition = {"class_path": rec.class_path, "params": rec.params, "symbol": "ETHUSDT", "interval": "1m"}
    with pytest.raises(ConfigError) as err:
        strategies.upsert(store, alice, name="trend", **{**definition, **change})
    msg = str(err.value)
    assert "\n" not in msg and "long position of 3.84 ETHUSDT entered at 2532" in msg
    assert f"kit.demote({rec.id}" in msg and "name=" in msg and "flat" in msg
    after = strategies.get(store, alice, rec.id)  # nothing changed: same definition, version, position
    assert (after.symbol, after.interval, after.class_path, after.version, after.active) == (
        "ETHUSDT", "1m", rec.class_path, 1, True)  # fmt: skip
    assert [r.id for r in strategies.list(store, alice)] == [rec.id]
    assert ledger.load_checkpoints(store)[rec.id].broker_state == {"position": 3.84}
    # a parameter-only change keeps today's behaviour: same id, ledger and position, next version
    again = strategies.upsert(store, alice, name="trend", **{**definition, "params": {"fast": 9, "slow": 20}})
    assert (again.id, again.version, again.params["fast"]) == (rec.id, 2, 9)
    assert trades.positions(store, alice).iloc[0]["size"] == 3.84


def test_a_flat_strategy_moved_to_another_stream_starts_a_fresh_ledger(store):
    alice = users.add(store, "alice", "pw")
    rec = _promote(store, alice, name="trend", symbol="ETHUSDT")
    buy, sell = _trade_round_trip(store, rec, price=2532.0)
    ledger.commit(store, [buy, sell])
    moved = strategies.upsert(store, alice, name="trend", class_path=rec.class_path, params=rec.params,
                              symbol="BTCUSDT", interval="1m", start_time=T0 + 3_600_000)  # fmt: skip
    assert moved.id != rec.id and (moved.name, moved.symbol, moved.version, moved.active) == ("trend", "BTCUSDT", 1,
                                                                                                True)  # fmt: skip
    assert moved.start_time == T0 + 3_600_000
    old = strategies.get(store, alice, rec.id)  # switched off (the daemon drops it), its ledger kept under its id
    assert old.active is False and old.version == 2 and old.symbol == "ETHUSDT"
    assert old.name == f"trend (#{rec.id} ETHUSDT/1m, replaced)"
    cps = ledger.load_checkpoints(store)
    assert rec.id in cps and moved.id not in cps  # the daemon creates the new one's checkpoint afresh
    assert set(trades.list(store, alice)["strategy_id"]) == {rec.id}
    assert strategies.find(store, alice, "trend").id == moved.id
    # it can move again (a second replaced row, a unique name) and back: each move is its own ledger
    back = strategies.upsert(store, alice, name="trend", class_path=rec.class_path, params=rec.params,
                             symbol="ETHUSDT", interval="1m")  # fmt: skip
    assert back.id not in (rec.id, moved.id) and back.start_time is None
    assert len({r.name for r in strategies.list(store, alice)}) == 3


def test_a_ledger_moved_to_another_symbol_by_an_older_kit_is_never_resumed(store):
    """A database where a re-promotion already moved a strategy holding ETH to BTCUSDT (before the refusal)."""
    alice = users.add(store, "alice", "pw")
    rec = _promote(store, alice, name="trend", symbol="ETHUSDT")
    _holding(store, rec)
    other = _promote(store, alice, name="other")
    ledger.ensure_checkpoint(store, other, T0, {}, {"size": 0.0, "cash": 1000.0, "equity": 1000.0})
    from kit.store import StrategyRecord

    st = StrategyRecord.__table__
    with store.begin() as conn:
        conn.execute(st.update().where(st.c.id == rec.id).values(symbol="BTCUSDT"))
    assert set(ledger.load_checkpoints(store)) == {other.id}  # the daemon does not resume it...
    moved = strategies.get(store, alice, rec.id)
    with pytest.raises(ConfigError, match=r"trades BTCUSDT but its ledger and position are on ETHUSDT"):
        ledger.ensure_checkpoint(store, moved, T0, {}, {"size": 0.0, "cash": 1.0, "equity": 1.0})  # ...nor restarts it
    assert ledger.ensure_checkpoint(store, other, T0 + 60_000, {}, {}).last_open_time == T0  # others: unchanged


def test_the_daemon_records_the_start_it_chose_for_a_strategy_promoted_without_one(store):
    alice = users.add(store, "alice", "pw")
    rec = _promote(store, alice)
    assert rec.start_time is None  # promoted while the exchange was unreachable: the daemon's clock decides
    ledger.ensure_checkpoint(store, rec, T0 - 1, {}, {"size": 0.0, "cash": 1000.0, "equity": 1000.0})
    assert strategies.get(store, alice, rec.id).start_time == T0
    ledger.ensure_checkpoint(store, rec, T0 + 59_999, {}, {"size": 0.0, "cash": 1000.0, "equity": 1000.0})
    assert strategies.get(store, alice, rec.id).start_time == T0  # recorded once, never moved


def test_concurrent_promotions_each_get_their_own_version(store):
    """Threads on separate connections promote one name at once: no version is lost (row lock + SQL bump)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    users.add(store, "alice", "pw")
    n = 6
    for name, first in (("fresh", 1), ("s1", 2)):  # a brand-new name (an insert race), then an existing one
        if first == 2:
            _promote(store, "alice", name=name)
        barrier = threading.Barrier(n)

        def promote(i: int, name: str = name, barrier: threading.Barrier = barrier) -> object:
            barrier.wait()
            return strategies.upsert(store, "alice", name=name, class_path="kit.strategies:EmaCross",
                                     params={"fast": 5 + i, "slow": 40}, symbol="BTCUSDT", interval="1m")  # fmt: skip

        with ThreadPoolExecutor(n) as pool:
            recs = list(pool.map(promote, range(n)))
        assert len({r.id for r in recs}) == 1
        assert sorted(r.version for r in recs) == list(range(first, first + n))
        final = strategies.find(store, "alice", name)
        newest = max(recs, key=lambda r: r.version)
        assert final.version == first + n - 1 and final.params == newest.params
        assert strategies.versions_for_daemon(store)[final.id] == (final.version, True)


def test_ledger_writes_trades_once_even_when_a_candle_is_replayed(store):
    alice = users.add(store, "alice", "pw")
    rec = _promote(store, alice)
    buy, sell = _trade_round_trip(store, rec)
    assert ledger.commit(store, [buy]) == 1
    assert ledger.commit(store, [buy]) == 0  # replayed candle: skipped, not traded twice
    assert ledger.commit(store, [sell, buy]) == 1
    assert ledger.commit(store, [sell]) == 0
    tr = trades.list(store, alice)
    assert list(tr.columns) == [*TRADE_COLUMNS, "strategy_id"]
    assert len(tr) == 1
    row = tr.iloc[0]
    assert row.entry_time == pd.Timestamp(T0, unit="ms", tz="UTC") and row.exit_price == 105.0 and row.pnl == 4.8
    f = trades.fills(store, alice)
    assert list(f["side"]) == ["buy", "sell"] and len(trades.fills(store, alice, limit=1)) == 1
    assert list(trades.orders(store, alice)["reason"]) == ["entry", "exit"]
    pos = trades.positions(store, alice)
    assert len(pos) == 1 and pos.iloc[0]["size"] == 0.0 and pos.iloc[0]["cash"] == pytest.approx(1004.8)
    eq = trades.equity(store, alice, rec.id)
    assert list(eq) == [1000.0, 1004.8]
    # it starts where trading did (no later than the first entry), in time order
    assert eq.index[0] <= row.entry_time and eq.index.is_monotonic_increasing
    cp = ledger.load_checkpoints(store)[rec.id]
    assert cp.last_open_time == T0 + 60_000 and cp.broker_state == {"pos": 0}
    assert strategies.get(store, alice, rec.id).last_signal == "exit"
    with store.begin() as conn:  # the signal history (user@signals): each candle's once, replays or not
        sigs = conn.execute(sa.select(SignalRecord.open_time, SignalRecord.name).order_by(SignalRecord.id)).all()
    assert [tuple(r) for r in sigs] == [(T0, "entry"), (T0 + 60_000, "exit")]


def test_trades_carry_exit_reason_and_excursions_and_the_open_position_is_the_last_row(store):
    alice = users.add(store, "alice", "pw")
    rec = _promote(store, alice)
    b = PaperBroker(FillModel(fees=0.0, size=1.0, size_type="amount", init_cash=1000.0))
    ledger.ensure_checkpoint(store, rec, T0 - 60_000, b.state.to_dict(), {"size": 0.0, "cash": 1000, "equity": 1000})
    bars = [(100, 101, 99, 100, "entry"), (100, 104, 97, 102, None), (102, 108, 101, 106, "short_entry"),
            (106, 107, 103, 104, None)]  # fmt: skip
    for i, (o, h, lo, c, sig) in enumerate(bars):
        t = T0 + i * 60_000
        fills = b.on_bar(Candle(t, o, h, lo, c, 1.0), Signal(t, **{sig: True}) if sig else None)
        w = CandleWrite(rec.id, rec.user_id, t, rec.version, broker_state=b.state.to_dict())
        w.fills = [
            {"seq": k, "side": f.side, "size": f.qty, "price": f.price, "fee": f.fee} for k, f in enumerate(fills)
        ]
        w.trades = [{"seq": k, **tr._asdict()} for k, tr in enumerate(b.new_trades)]
        assert ledger.commit(store, [w]) == 1
    tr = trades.list(store, alice)
    assert list(tr.columns) == [*TRADE_COLUMNS, "strategy_id"]
    assert list(tr["exit_reason"]) == ["reverse", "open"] and list(tr["side"]) == ["long", "short"]
    closed, still_open = tr.iloc[0], tr.iloc[1]
    assert (closed.mae, closed.mfe, closed.return_pct) == (3.0, 8.0, 0.06)
    assert closed.duration == pd.Timedelta(minutes=2)
    assert still_open.exit_time == pd.Timestamp(T0 + 180_000, unit="ms", tz="UTC") and still_open.exit_price == 104
    assert (still_open.pnl, still_open.mae, still_open.mfe) == (2.0, 1.0, 3.0)
    assert list(trades.list(store, alice, include_open=False)["exit_reason"]) == ["reverse"]
    assert list(trades.equity(store, alice, rec.id)) == [1000.0, 1006.0]  # realised only


def test_ledger_keeps_only_the_newest_broker_state_of_a_batch_but_every_fill(store):
    alice = users.add(store, "alice", "pw")
    rec = _promote(store, alice)
    ledger.ensure_checkpoint(store, rec, T0 - 60_000, {"n": -1}, {"size": 0.0, "cash": 1000.0, "equity": 1000.0})
    ws = [CandleWrite(rec.id, rec.user_id, T0 + i * 60_000, rec.version, broker_state={"n": i}) for i in range(5)]
    ws[2].fills = [{"seq": 0, "side": "buy", "size": 1.0, "price": 100.0, "fee": 0.1}]
    assert ledger.commit(store, ws) == 2  # the fill's candle and the newest state
    cp = ledger.load_checkpoints(store)[rec.id]
    assert cp.last_open_time == T0 + 4 * 60_000 and cp.broker_state == {"n": 4}
    assert list(trades.fills(store, alice)["price"]) == [100.0]
    # a state-only write with no newer state in its batch is kept
    assert ledger.commit(store, [CandleWrite(rec.id, rec.user_id, T0 + 5 * 60_000, 1, broker_state={"n": 5})]) == 1
    assert ledger.load_checkpoints(store)[rec.id].broker_state == {"n": 5}


def test_no_function_reaches_another_users_rows(store):
    alice, bob = users.add(store, "alice", "pw"), users.add(store, "bob", "pw")
    ra, rb = _promote(store, alice), _promote(store, bob, symbol="ETHUSDT")
    for rec, price in ((ra, 100.0), (rb, 2000.0)):
        ledger.commit(store, list(_trade_round_trip(store, rec, price=price)))
    called: set[str] = set()

    def scoped(mod, fn, *args, **kw):
        called.add(f"{mod.__name__}.{fn}")
        return getattr(mod, fn)(store, *args, **kw)

    # Each user sees exactly their own rows.
    for me, mine in ((alice, ra), (bob, rb)):
        assert [r.id for r in scoped(strategies, "list", me)] == [mine.id]
        for fn in ("list", "fills", "orders", "positions"):
            df = scoped(trades, fn, me)
            assert len(df) >= 1 and set(df["strategy_id"]) == {mine.id}, fn
        assert len(scoped(trades, "equity", me, mine.id)) == 2
        assert scoped(strategies, "find", me, "s1").id == mine.id
    # Every id-taking function refuses the other user's strategy, as if it did not exist.
    for me, theirs in ((alice, rb), (bob, ra)):
        with pytest.raises(NotFound):
            scoped(strategies, "get", me, theirs.id)
        with pytest.raises(NotFound):
            scoped(strategies, "set_active", me, theirs.id, False)
        for fn in ("list", "fills", "orders"):
            with pytest.raises(NotFound):
                scoped(trades, fn, me, theirs.id)
        with pytest.raises(NotFound):
            scoped(trades, "equity", me, theirs.id)
        with pytest.raises(NotFound):
            scoped(strategies, "upsert", "mallory", name="s1", class_path="a:B", params={}, symbol="BTCUSDT",
                   interval="1m")  # fmt: skip
    assert strategies.get(store, alice, ra.id).active and strategies.get(store, bob, rb.id).active
    # A hand-built User carrying someone else's id is refused too.
    from kit.store import User

    with pytest.raises(NotFound):
        strategies.list(store, User(id=rb.user_id, name="alice", password_hash="x"))
    # Upsert under one user never touches the other user's strategy of the same name.
    _promote(store, alice)
    assert strategies.get(store, bob, rb.id).version == 1
    # Every public function of the scoped modules that takes a user was exercised above.
    for mod in (strategies, trades):
        for fn, obj in vars(mod).items():
            public = inspect.isfunction(obj) and obj.__module__ == mod.__name__ and not fn.startswith("_")
            if public and "user" in inspect.signature(obj).parameters:
                assert f"{mod.__name__}.{fn}" in called, f"{mod.__name__}.{fn} not tested across users"


def test_unknown_user_is_not_found(store):
    calls = (
        lambda: strategies.list(store, "ghost"),
        lambda: trades.list(store, "ghost"),
        lambda: trades.positions(store, "ghost"),
        lambda: users.set_password(store, "ghost", "x"),
    )
    for call in calls:
        with pytest.raises(NotFound, match="ghost"):
            call()


def test_events_heartbeats_and_admin_counts(store):
    from kit.store.models import utcnow

    alice = users.add(store, "alice", "pw")
    rec = _promote(store, alice)
    strategies.set_state_for_daemon(store, rec.id, "paused", failures=3, last_error="ValueError: x")
    assert strategies.counts_for_admin(store) == [
        {"user": "alice", "total": 1, "on": 1, "active": 0, "paused": 1, "error": 0}
    ]
    assert events.latest_heartbeat(store) is None
    events.heartbeat(store, "host:1", utcnow(), {"candles": 3})
    events.heartbeat(store, "host:1", utcnow(), {"candles": 4})
    assert events.latest_heartbeat(store)["status"] == {"candles": 4}
    events.record(store, "start", "daemon started")
    events.record(store, "strategy_paused", "3 failures", level="warning", strategy_id=rec.id, user_id=alice.id)
    assert [e["kind"] for e in events.recent(store)] == ["strategy_paused", "start"]
    assert [e["kind"] for e in events.recent(store, min_level="warning")] == ["strategy_paused"]
    # pruning: rows older than the horizons go, newer ones stay
    import datetime as dt

    import sqlalchemy as sa

    from kit.store.models import Event, Heartbeat

    old = utcnow() - dt.timedelta(days=30)
    with store.begin() as conn:
        conn.execute(sa.update(Heartbeat).where(Heartbeat.status["candles"].as_integer() == 3).values(time=old))
        conn.execute(sa.update(Event).where(Event.kind == "start").values(time=old))
    cut = utcnow() - dt.timedelta(days=7)
    assert events.prune(store, heartbeats_older_than=cut, events_older_than=cut) == (1, 1)
    assert events.prune(store, heartbeats_older_than=cut, events_older_than=cut) == (0, 0)
    assert events.latest_heartbeat(store)["status"] == {"candles": 4}
    assert [e["kind"] for e in events.recent(store)] == ["strategy_paused"]
    with pytest.raises(ConfigError, match="state"):
        strategies.set_state_for_daemon(store, rec.id, "sleepy")


def test_default_store_is_sqlite_wal_under_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path / "dd"))
    s = Store()
    assert s.dialect == "sqlite" and str(tmp_path / "dd" / "kit.db") in s.url
    s.migrate()
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    s.dispose()
    with pytest.raises(ConfigError, match="url"):
        Store("not a url at all")


def test_migrations_match_the_models(store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_upgrade_from_the_first_schema_keeps_data(db_url):
    s = Store(db_url)
    s.migrate("0001")
    assert s.current_revision() == "0001"
    with s.engine.begin() as conn:
        conn.execute(sa.text("insert into users (name, password_hash, role, created_at) "
                             "values ('old', 'h', 'viewer', '2026-01-01 00:00:00')"))  # fmt: skip
        conn.execute(sa.text(
            "insert into strategies (user_id, name, class_path, params, broker, symbol, interval, active, state, "
            "failures, version, promoted_at, updated_at) values (1, 'legacy', 'a:B', '{}', '{}', 'BTCUSDT', '1m', "
            "true, 'active', 0, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        ))  # fmt: skip
        cols = {c["name"] for c in sa.inspect(conn).get_columns("strategies")}
        assert "last_signal" not in cols
    s.migrate()
    assert s.current_revision() == head_revision()
    rec = strategies.get(s, "old", 1)
    assert rec.name == "legacy" and rec.last_signal is None
    assert (rec.mode, rec.allocation) == ("paper", None)  # strategies from before live trading are paper ones
    s.downgrade("0001")
    s.migrate()
    assert strategies.list(s, "old")[0].name == "legacy"
    s.dispose()


def test_upgrade_to_0002_strategy_keeps_old_trades_without_inventing_reasons(db_url):
    s = Store(db_url)
    s.migrate("0002_gateway")  # the revision before 0002_strategy
    alice = users.add(s, "alice", "pw")
    rec = _promote(s, alice)
    with s.engine.begin() as conn:
        conn.execute(sa.text(
            "insert into trades (strategy_id, user_id, seq, entry_time, exit_time, side, size, entry_price, "
            f"exit_price, pnl, fees) values ({rec.id}, {alice.id}, 0, 0, 60000, 'long', 1.0, 100.0, 101.0, 0.8, 0.2)"
        ))  # fmt: skip
    s.migrate()
    assert s.current_revision() == head_revision()
    [old] = trades.list(s, alice).itertuples()
    assert old.exit_reason is None and pd.isna(old.mae) and pd.isna(old.mfe_pct) and old.pnl == 0.8
    assert old.return_pct == pytest.approx(0.008)
    s.downgrade("0002_gateway")
    s.migrate()
    assert len(trades.list(s, alice)) == 1
    s.dispose()


def test_ledger_advance_moves_many_checkpoints_forward_only(store):
    alice = users.add(store, "alice", "pw")
    recs = [_promote(store, alice, name=f"s{i}") for i in range(5)]
    for r in recs:
        ledger.ensure_checkpoint(store, r, T0, {}, {"size": 0.0, "cash": 0.0, "equity": 0.0})
    ids = [r.id for r in recs]
    assert ledger.commit(store, [], [(T0 + 60_000, ids[:3]), (T0 + 120_000, ids[:2])]) == 0
    cps = ledger.load_checkpoints(store)
    assert [cps[i].last_open_time for i in ids] == [T0 + 120_000] * 2 + [T0 + 60_000] + [T0] * 2
    ledger.commit(store, [], [(T0 + 60_000, ids)])  # never backwards
    cps = ledger.load_checkpoints(store)
    assert [cps[i].last_open_time for i in ids] == [T0 + 120_000] * 2 + [T0 + 60_000] * 3


def test_text_from_user_code_is_cleaned_and_capped_before_the_database(store):
    """NUL (PostgreSQL refuses it), other control characters, lone surrogates (not UTF-8) and
    overlong values never make a write fail: the ledger must not stop on a strategy's error text."""
    alice = users.add(store, "alice", "pw")
    nasty = "bad\x00byte\x07 \ud800 tab\tand\nnewline " + "x" * 10_000
    rec = strategies.upsert(
        store, alice, name="n\x00ame", class_path="kit.strategies:EmaCross\x00",
        params={"fast": 5, "note\x00": nasty}, symbol="BTCUSDT", interval="1m",
    )  # fmt: skip
    strategies.set_state_for_daemon(store, rec.id, "error", last_error=nasty)
    events.record(store, "strategy_failed", nasty, level="warning", strategy_id=rec.id, user_id=alice.id)
    (row,) = strategies.list(store, alice)
    ev = events.recent(store, 1)[0]
    for text, cap in ((row.name, 128), (row.class_path, 255), (row.last_error, 2000), (ev["message"], 4000)):
        assert len(text) <= cap
        assert not any(c in text for c in "\x00\x07\ud800")
    assert row.last_error.startswith("bad\ufffdbyte\ufffd \ufffd tab\tand\nnewline xxx")
    assert row.class_path == "kit.strategies:EmaCross\ufffd"
    (key,) = [k for k in row.params if k != "fast"]
    assert key == "note\ufffd" and "\x00" not in row.params[key] and len(row.params[key]) <= 2000
    events.heartbeat(store, "host:1", ev["time"], {"reasons": [nasty]})  # /ready's reasons quote user errors
    (reason,) = events.latest_heartbeat(store)["status"]["reasons"]
    assert reason.startswith("bad\ufffdbyte") and len(reason) <= 2000
    # a lookup by the same raw name finds the cleaned row
    assert row.name == "n\ufffdame" and strategies.find(store, alice, "n\x00ame").id == rec.id


def test_removing_a_user_leaves_no_row_that_refers_to_them(store):
    """Every table with a foreign key to users (ledger, keys, gateway tokens, and whatever comes next)
    is emptied of the user's rows in the same transaction, so removal never trips a foreign key."""
    from sqlmodel import SQLModel

    from kit.gateway._tokens import create as create_token
    from kit.store import keys

    users.add(store, "ann", "pw")
    users.add(store, "bob", "pw")
    master = keys.generate_master_key()
    for name in ("ann", "bob"):
        rec = strategies.upsert(store, name, name="ema", class_path="kit.strategies:EmaCross", params={},
                                symbol="BTCUSDT", interval="1m")  # fmt: skip
        ledger.commit(store, list(_trade_round_trip(store, rec)))  # orders, fills, trades, signals
        keys.set(store, name, "K" * 64, "S" * 64, master=master)
        create_token(store, name)
    ann = users.get(store, "ann").id
    users.remove(store, "ann", force=True)
    tables = SQLModel.metadata.sorted_tables
    referring = [t for t in tables if any(fk.column.table.name == "users" for fk in t.foreign_keys)]
    assert {"api_keys", "api_tokens", "strategies", "signals"} <= {t.name for t in referring}
    with store.begin() as conn:
        for t in referring:
            for fk in t.foreign_keys:
                if fk.column.table.name == "users":
                    assert conn.execute(sa.select(sa.func.count()).where(fk.parent == ann)).scalar() == 0, t.name
    assert users.get(store, "bob") is not None and [k.user for k in keys.list(store)] == ["bob"]


def test_upgrade_and_downgrade_keep_a_ledger_that_refers_to_its_strategies(db_url):
    """SQLite rebuilds a table to alter it (batch mode); with foreign keys on, rebuilding
    ``strategies`` under rows of orders, fills and trades that refer to it must not fail."""
    s = Store(db_url)
    s.migrate("0001")
    with s.engine.begin() as conn:
        conn.execute(sa.text("insert into users (name, password_hash, role, created_at) "
                             "values ('old', 'h', 'viewer', '2026-01-01 00:00:00')"))  # fmt: skip
        conn.execute(sa.text(
            "insert into strategies (user_id, name, class_path, params, broker, symbol, interval, active, state, "
            "failures, version, promoted_at, updated_at) values (1, 'legacy', 'a:B', '{}', '{}', 'BTCUSDT', '1m', "
            "true, 'active', 0, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        ))  # fmt: skip
        conn.execute(sa.text(
            "insert into trades (strategy_id, user_id, seq, entry_time, exit_time, side, size, entry_price, "
            "exit_price, pnl, fees) values (1, 1, 0, 0, 60000, 'long', 1.0, 100.0, 101.0, 0.8, 0.2)"
        ))  # fmt: skip
    s.migrate()
    assert s.current_revision() == head_revision()
    assert len(trades.list(s, "old")) == 1
    s.downgrade("0001")
    s.migrate()
    assert len(trades.list(s, "old")) == 1 and strategies.list(s, "old")[0].name == "legacy"
    s.dispose()
