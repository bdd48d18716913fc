"""One daemon per database: a lock held for the daemon's lifetime.

Two daemons on one database would each run every strategy's paper broker; the ledger's unique
keys stop duplicate rows, but the brokers' states would diverge. The lock makes the second
daemon refuse to start instead. It is released by the operating system or the database server
when the holder dies, even by SIGKILL, so a crash never leaves it stuck.

- PostgreSQL: a session-level advisory lock, per schema, on a dedicated connection.
- SQLite: ``flock`` on ``<database>.daemon.lock`` beside the database file.
- Other databases: no lock (logged).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kit.errors import KitError

log = logging.getLogger(__name__)
# Advisory lock (classid, objid): classid "kit" in ASCII, recognisable in pg_locks; objid the schema's
# hash, because a schema is a separate kit database (deployments may share one PostgreSQL database).
_PG_CLASS = int.from_bytes(b"kit", "big")
_PG_TRY = "select pg_try_advisory_lock(:c, hashtext(current_schema()))"
_PG_UNLOCK = "select pg_advisory_unlock(:c, hashtext(current_schema()))"


class DaemonLockHeld(KitError):
    """Another daemon holds this database."""


class DaemonLock:
    """Held from :meth:`acquire` to :meth:`release` (or the process's death)."""

    def __init__(self, engine: sa.Engine, url: sa.engine.URL) -> None:
        self._engine = engine
        self._url = url
        self._conn: sa.Connection | None = None
        self._fd: int | None = None

    def acquire(self, *, wait: float = 10.0) -> None:
        """Take the lock, retrying for ``wait`` seconds (a daemon killed a moment ago may still hold it)."""
        deadline = time.monotonic() + wait
        while not self._try():
            if time.monotonic() >= deadline:
                raise DaemonLockHeld(
                    "another kit daemon is already running against this database; stop it first "
                    "(one daemon per database)"
                )
            time.sleep(0.5)

    def _try(self) -> bool:
        backend = self._url.get_backend_name()
        if backend == "postgresql":
            conn = self._engine.connect()
            got = conn.execute(sa.text(_PG_TRY), {"c": _PG_CLASS}).scalar()
            conn.commit()
            if got:
                self._conn = conn
                return True
            conn.close()
            return False
        if backend == "sqlite" and self._url.database not in (None, "", ":memory:"):
            path = Path(str(self._url.database)).expanduser()
            fd = os.open(f"{path}.daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return True
        log.warning("no single-daemon lock for %s databases; run only one daemon", backend)
        return True

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(sa.text(_PG_UNLOCK), {"c": _PG_CLASS})
                self._conn.commit()
            except Exception:  # the server is gone: so is the lock
                pass
            self._conn.close()
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DaemonLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
