"""One daemon per database: a second one refuses to start; a killed one never leaves the lock stuck."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from kit.store import Store
from kit.store._lock import DaemonLockHeld


def test_second_holder_is_refused_until_the_first_releases(db_url):
    first, second = Store(db_url), Store(db_url)
    first.migrate()
    a = first.daemon_lock()
    a.acquire(wait=1)
    try:
        with pytest.raises(DaemonLockHeld, match="another kit daemon"):
            second.daemon_lock().acquire(wait=0.6)
    finally:
        a.release()
    b = second.daemon_lock()
    b.acquire(wait=1)
    b.release()
    first.dispose()
    second.dispose()


def test_a_killed_holder_releases_the_lock(db_url):
    code = textwrap.dedent(
        f"""
        import sys, time
        from kit.store import Store
        Store({db_url!r}).daemon_lock().acquire(wait=5)
        print("held", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(DaemonLockHeld):
            Store(db_url).daemon_lock().acquire(wait=0.6)
    finally:
        proc.kill()  # SIGKILL: no clean-up code runs
        proc.wait(10)
    lock = Store(db_url).daemon_lock()
    lock.acquire(wait=10)  # the OS (SQLite) or the server (PostgreSQL) released it
    lock.release()


def test_second_kit_daemon_is_a_one_line_error(sqlite_url, free_port):
    store = Store(sqlite_url)
    store.migrate()
    held = store.daemon_lock()
    held.acquire(wait=1)
    try:
        env = os.environ | {"KIT_DATABASE_URL": sqlite_url, "KIT_EXCHANGE_URL": "http://127.0.0.1:9"}
        out = subprocess.run(
            [sys.executable, "-m", "kit", "daemon", "--status-port", str(free_port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        held.release()
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: another kit daemon is already running")
    assert "Traceback" not in out.stderr
