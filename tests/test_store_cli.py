"""`kit users / strategies / trades / db` as real subprocesses against a temp SQLite database."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from kit.store import Store, ledger, strategies, users
from kit.store.ledger import CandleWrite
from tests.fixtures.store import head_revision


def kit(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kit", *args], input=stdin, capture_output=True, text=True, timeout=60,
        env=os.environ.copy(),
    )  # fmt: skip


def test_cli_users_strategies_trades_and_db():
    up = kit("db", "upgrade")
    assert up.returncode == 0 and f"-> {head_revision()}" in up.stdout
    assert kit("users", "add", "alice", stdin="alice-s3cret-pw\n").stdout.strip() == "added viewer alice"
    assert kit("users", "add", "root", "--admin", stdin="root-pw-long\n").returncode == 0
    dup = kit("users", "add", "alice", stdin="x\n")
    assert dup.returncode == 2 and dup.stderr.strip() == "error: user 'alice' already exists"
    nopw = kit("users", "add", "carol", stdin="")
    assert nopw.returncode == 2 and "password" in nopw.stderr and "Traceback" not in nopw.stderr

    store = Store()
    assert users.authenticate(store, "alice", "alice-s3cret-pw") is not None
    assert users.authenticate(store, "root", "root-pw-long").role == "admin"
    rec = strategies.upsert(store, "alice", name="ema", class_path="kit.strategies:EmaCross", params={"fast": 5},
                            symbol="BTCUSDT", interval="1m")  # fmt: skip
    ledger.ensure_checkpoint(store, rec, 0, {}, {"size": 0.0, "cash": 0.0, "equity": 0.0})
    ledger.commit(store, [CandleWrite(rec.id, rec.user_id, 120_000, 1, trades=[
        {"seq": 0, "entry_time": 60_000, "exit_time": 120_000, "side": "long", "size": 2.0, "entry_price": 10.0,
         "exit_price": 11.0, "pnl": 1.9, "fees": 0.1, "exit_reason": "take_profit", "mae": 0.5,
         "mfe": 1.5}])])  # fmt: skip

    listing = kit("users", "list").stdout
    assert "alice" in listing and "admin" in listing and "1 (1 on)" in listing
    assert "alice-s3cret-pw" not in listing and "argon2" not in listing
    out = kit("strategies", "list", "--user", "alice").stdout
    assert f"{rec.id:>5} alice" in out and "BTCUSDT/1m" in out and " paper " in out
    assert "root" not in kit("strategies", "list", "--user", "root").stdout.split("\n", 1)[1]
    off = kit("strategies", "deactivate", str(rec.id))
    assert off.returncode == 0 and "deactivated, version 2" in off.stdout
    assert strategies.get(store, "alice", rec.id).active is False
    assert kit("strategies", "activate", str(rec.id)).returncode == 0
    assert strategies.get(store, "alice", rec.id).active is True
    missing = kit("strategies", "activate", "999")
    assert missing.returncode == 2 and missing.stderr.strip() == "error: no strategy 999"

    js = json.loads(kit("trades", "--user", "alice", "--json").stdout)
    assert js == [{"entry_time": "1970-01-01T00:01:00.000Z", "exit_time": "1970-01-01T00:02:00.000Z", "side": "long",
                   "size": 2.0, "entry_price": 10.0, "exit_price": 11.0, "pnl": 1.9, "fees": 0.1,
                   "exit_reason": "take_profit", "duration": "P0DT0H1M0S", "return_pct": 0.095, "mae": 0.5,
                   "mae_pct": 0.05, "mfe": 1.5, "mfe_pct": 0.15, "strategy_id": rec.id}]  # fmt: skip
    assert "no trades for root" in kit("trades", "--user", "root").stdout
    ghost = kit("trades", "--user", "ghost")
    assert ghost.returncode == 2 and ghost.stderr.strip() == "error: unknown user 'ghost'"
    assert kit("db", "current").stdout.strip() == Store().current_revision() == head_revision()
    store.dispose()


def test_cli_refuses_short_common_and_reserved_passwords_and_names():
    assert kit("db", "upgrade").returncode == 0
    for pw, why in [("short1", "at least 8"), ("password123", "too common"), ("PassWord1", "too common"),
                    ("erin-the-user", None)]:  # fmt: skip
        r = kit("users", "add", "erin", stdin=pw + "\n")
        if why is None:
            assert r.returncode == 0, r.stderr
        else:
            assert r.returncode == 2 and why in r.stderr and "Traceback" not in r.stderr
            assert pw not in r.stderr  # the refused password is not echoed
    same = kit("users", "add", "frankfrank", stdin="FrankFrank\n")
    assert same.returncode == 2 and "too common" in same.stderr
    assert kit("users", "add", "longpass", stdin="x" * 200 + "-long passphrases are fine\n").returncode == 0
    for reserved in ("guest", "Guest", "default_user"):
        r = kit("users", "add", reserved, "--admin", stdin="a-good-password\n")
        assert r.returncode == 2 and "reserved" in r.stderr
    store = Store()
    assert users.get(store, "guest") is None and users.get(store, "erin") is not None
    store.dispose()


def test_cli_administers_users_ends_sessions_and_records_events_without_secrets():
    from kit.store import events

    assert kit("db", "upgrade").returncode == 0
    assert kit("users", "add", "gina", stdin="gina-first-pw\n").returncode == 0
    store = Store()
    gen = users.get(store, "gina").session_gen

    r = kit("users", "passwd", "gina", stdin="gina-second-pw\n")
    assert r.returncode == 0 and "reset" in r.stdout
    assert users.authenticate(store, "gina", "gina-first-pw") is None
    assert users.authenticate(store, "gina", "gina-second-pw") is not None
    weak = kit("users", "passwd", "gina", stdin="12345678\n")
    assert weak.returncode == 2 and "too common" in weak.stderr
    assert kit("users", "passwd", "nobody", stdin="a-good-password\n").stderr.strip() == "error: unknown user 'nobody'"

    assert kit("users", "role", "gina", "admin").returncode == 0
    assert users.get(store, "gina").role == "admin"
    bad = kit("users", "role", "gina", "owner")
    assert bad.returncode == 2 and "role must be one of" in bad.stderr

    assert kit("users", "disable", "gina").returncode == 0
    assert users.get(store, "gina").disabled and users.authenticate(store, "gina", "gina-second-pw") is None
    assert "disabled" in kit("users", "list").stdout
    assert kit("users", "enable", "gina").returncode == 0
    assert users.authenticate(store, "gina", "gina-second-pw") is not None
    # each change moved her session generation (passwd, role, disable, enable): older cookies are dead
    assert users.get(store, "gina").session_gen == gen + 4

    rec = strategies.upsert(store, "gina", name="ema", class_path="kit.strategies:EmaCross", params={},
                            symbol="BTCUSDT", interval="1m")  # fmt: skip
    ledger.ensure_checkpoint(store, rec, 0, {}, {"size": 0.0, "cash": 0.0, "equity": 0.0})
    refused = kit("users", "remove", "gina")
    assert refused.returncode == 2 and "1 active strategy" in refused.stderr and "--force" in refused.stderr
    assert users.get(store, "gina") is not None and strategies.list(store, "gina")
    gone = kit("users", "remove", "gina", "--force")
    assert gone.returncode == 0 and "removed gina and 1 strategy" in gone.stdout
    assert users.get(store, "gina") is None and not strategies.list_all_for_daemon(store, active_only=False)

    kinds = [(e["kind"], e["message"]) for e in reversed(events.recent(store, 20))]
    assert [k for k, _ in kinds] == ["user_password", "user_role", "user_disabled", "user_enabled",
                                     "user_removed"]  # fmt: skip
    text = " ".join(m for _, m in kinds)
    assert "gina" in text and "pw" not in text and "argon2" not in text
    store.dispose()
