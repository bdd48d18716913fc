"""The :class:`Store`: one SQLAlchemy engine, sessions, and migrations.

SQLite (the default, ``data/kit.db``) runs in WAL mode with a busy timeout so the daemon
writes while the dashboard and the CLI read. Any other SQLAlchemy URL works the same way
(``postgresql+psycopg://user@host/db``); on PostgreSQL a ``?options=-csearch_path%3Dname``
query selects a schema, which is how the tests isolate their runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import Session as SMSession

from kit._fs import private_file
from kit.errors import ConfigError
from kit.settings import Settings, mask_url
from kit.store._lock import DaemonLock

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class Store:
    """A database holding kit's users, strategies and the daemon's ledger.

    ``Store()`` uses ``KIT_DATABASE_URL`` (default: SQLite under ``KIT_DATA_DIR``).
    Call :meth:`migrate` once to create or upgrade the schema.
    """

    def __init__(self, url: str | None = None, *, echo: bool = False, pool_size: int = 5) -> None:
        if url is None:
            url = Settings.from_env().database_url
        if not isinstance(url, str) or not url:
            raise ConfigError(f"url must be a SQLAlchemy database URL, got {url!r}")
        try:
            parsed = sa.engine.make_url(url)
        except Exception as exc:
            raise ConfigError(f"url is not a database URL: {exc}") from None
        self.url = url
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            db = parsed.database
            if db and db != ":memory:" and not db.startswith("file:"):
                _private_sqlite(Path(db).expanduser())
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=5, pool_pre_ping=True)
        self.engine = sa.create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that
            # a write transaction takes its lock up front (BEGIN IMMEDIATE) when asked.
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        # Writers take SQLite's write lock when they begin (BEGIN IMMEDIATE), so a transaction
        # that reads and then writes waits for the daemon instead of failing with "locked".
        self._write_engine = self.engine.execution_options(kit_write=True)

    def __repr__(self) -> str:
        return f"Store({mask_url(self.url)!r})"

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A SQLModel session that commits on success and rolls back on error.

        ``write=True`` for a transaction that writes: on SQLite it takes the write lock up front.
        """
        with SMSession(self._write_engine if write else self.engine, expire_on_commit=False) as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A Core connection inside one write transaction (the daemon's hot path)."""
        with self._write_engine.begin() as conn:
            yield conn

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to ``revision`` (default the newest) with Alembic."""
        _quiet_alembic()
        # Deferred: Alembic (~1 s) loads only to change or read the schema's revision.
        from alembic import command
        from alembic.util import CommandError

        try:
            command.upgrade(self.alembic_config(), revision)
        except CommandError as exc:  # e.g. a revision that does not exist: the caller's argument
            raise ConfigError(f"cannot upgrade the schema to {revision!r}: {exc}") from None

    def downgrade(self, revision: str) -> None:
        from alembic import command  # deferred: Alembic (~1 s), see migrate

        command.downgrade(self.alembic_config(), revision)

    def current_revision(self) -> str | None:
        _quiet_alembic()  # before the import, which logs its plugins
        from alembic.runtime.migration import MigrationContext  # deferred: Alembic (~1 s), see migrate

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def alembic_config(self) -> Any:
        from alembic.config import Config  # deferred: Alembic (~1 s), see migrate

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        return cfg

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            return True
        except Exception:
            return False

    def daemon_lock(self) -> DaemonLock:
        """The one-daemon-per-database lock (see :mod:`kit.store._lock`); acquire it before trading."""
        return DaemonLock(self.engine, sa.engine.make_url(self.url))

    def dispose(self) -> None:
        self.engine.dispose()


def _private_sqlite(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use the umask, usually 0644);
    its -wal and -shm files take the database's mode."""
    existed = path.exists()
    private_file(path)
    if existed and path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users (password hashes, ledgers): chmod 600 it", path)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("kit_write") else "BEGIN")


def _quiet_alembic() -> None:
    # Alembic logs every plugin and revision at INFO: noise around a CLI's one line of output.
    logging.getLogger("alembic").setLevel(logging.WARNING)
