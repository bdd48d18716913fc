"""`kit users / strategies / trades / db` as real subprocesses against a temp SQLite database."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from kit.store import Store, ledger, strategies, users
from kit.store.ledger import CandleWrite


def kit(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kit", *args], input=stdin, capture_output=True, text=True, timeout=60,
        env=os.environ.copy(),
    )  # fmt: skip


def test_cli_users_strategies_trades_and_db():
    up = kit("db", "upgrade")
    assert up.returncode == 0 and "-> 0002" in up.stdout
    assert kit("users", "add", "alice", stdin="s3cret\n").stdout.strip() == "added viewer alice"
    assert kit("users", "add", "root", "--admin", stdin="rootpw\n").returncode == 0
    dup = kit("users", "add", "alice", stdin="x\n")
    assert dup.returncode == 2 and dup.stderr.strip() == "error: user 'alice' already exists"
    nopw = kit("users", "add", "carol", stdin="")
    assert nopw.returncode == 2 and "password" in nopw.stderr and "Traceback" not in nopw.stderr

    store = Store()
    assert users.authenticate(store, "alice", "s3cret") is not None
    assert users.authenticate(store, "root", "rootpw").role == "admin"
    rec = strategies.upsert(store, "alice", name="ema", class_path="kit.strategies:EmaCross", params={"fast": 5},
                            symbol="BTCUSDT", interval="1m")  # fmt: skip
    ledger.ensure_checkpoint(store, rec, 0, {}, {"size": 0.0, "cash": 0.0, "equity": 0.0})
    ledger.commit(store, [CandleWrite(rec.id, rec.user_id, 120_000, 1, trades=[
        {"seq": 0, "entry_time": 60_000, "exit_time": 120_000, "side": "long", "size": 2.0, "entry_price": 10.0,
         "exit_price": 11.0, "pnl": 1.9, "fees": 0.1, "exit_reason": "take_profit", "mae": 0.5,
         "mfe": 1.5}])])  # fmt: skip

    listing = kit("users", "list").stdout
    assert "alice" in listing and "admin" in listing and "1 (1 on)" in listing
    assert "s3cret" not in listing and "argon2" not in listing
    out = kit("strategies", "list", "--user", "alice").stdout
    assert f"{rec.id:>5} alice" in out and "BTCUSDT/1m" in out
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
    assert kit("db", "current").stdout.strip() == "0002_strategy"
    store.dispose()
