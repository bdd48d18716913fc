"""Data on disk is the owner's alone: kit creates its folders 0700 and its files 0600 (issue 11 item 12)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _umask_022() -> None:
    os.umask(0o022)  # the usual default: without kit's care, files would be world-readable


def test_kit_db_upgrade_creates_an_owner_only_database_in_an_owner_only_folder(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "kitdata"
    env = {**os.environ, "KIT_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    env.pop("KIT_DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-m", "kit", "db", "upgrade"], env=env, capture_output=True, text=True,
                         timeout=120, preexec_fn=_umask_022)  # fmt: skip
    assert out.returncode == 0, out.stderr
    db = data_dir / "kit.db"
    assert db.is_file()
    assert _mode(db) == 0o600
    for extra in (data_dir / "kit.db-wal", data_dir / "kit.db-shm"):
        if extra.exists():  # SQLite gives its WAL files the database's mode
            assert _mode(extra) == 0o600, extra
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir.parent) == 0o700  # every folder kit had to create


def test_the_store_writes_through_owner_only_wal_files(tmp_path: Path) -> None:
    from kit.store import Store, users

    old = os.umask(0o022)
    try:
        db = tmp_path / "db" / "kit.db"
        store = Store(f"sqlite:///{db}")
        store.migrate()
        users.add(store, "alice", "correct horse battery staple")
        assert {p.name: _mode(p) for p in db.parent.iterdir()} == {
            "kit.db": 0o600, "kit.db-wal": 0o600, "kit.db-shm": 0o600,
        }  # fmt: skip
        assert _mode(db.parent) == 0o700
        store.dispose()
    finally:
        os.umask(old)


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    from kit.store import Store

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    Store(f"sqlite:///{shared / 'kit.db'}").migrate()
    assert _mode(shared) == 0o755  # kit tightens what it creates, not folders the operator chose
    assert _mode(shared / "kit.db") == 0o600


def test_kit_up_child_logs_are_owner_only(tmp_path: Path) -> None:
    from kit.dashboard.up import Supervisor

    old = os.umask(0o022)
    try:
        sup = Supervisor(tmp_path / "data" / "logs")
        child = sup.start("echo", [sys.executable, "-c", "print('hello')"], dict(os.environ))
        assert child.proc is not None
        child.proc.wait(30)
        sup.stop_all()
        assert _mode(tmp_path / "data" / "logs") == 0o700
        assert _mode(tmp_path / "data" / "logs" / "echo.log") == 0o600
    finally:
        os.umask(old)


def test_a_world_readable_database_is_named_in_a_warning(tmp_path: Path, caplog) -> None:
    from kit.store import Store

    db = tmp_path / "kit.db"
    db.touch()
    db.chmod(0o644)  # made by an older kit, or by hand
    with caplog.at_level("WARNING", logger="kit.store._store"):
        Store(f"sqlite:///{db}").migrate()
    assert any(str(db) in r.getMessage() and "chmod 600" in r.getMessage() for r in caplog.records)
    assert _mode(db) == 0o644  # named, not changed behind the operator's back
