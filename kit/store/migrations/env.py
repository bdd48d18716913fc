"""Alembic environment: runs against the engine handed over by :meth:`kit.store.Store.migrate`."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel

import kit.store.models  # noqa: F401 - registers the tables on SQLModel.metadata
from kit.settings import Settings

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by rebuilding it (batch mode): with foreign keys on, dropping the
            # old ``strategies`` under the orders, fills and trades that refer to it fails. Off for the
            # migration, checked before it ends. The pragma only takes effect outside a transaction and
            # kit's engine emits BEGIN before every statement: set it on the driver's connection.
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=sqlite)
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:  # raising here rolls the migration back
                        raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {broken[:5]}")
            connection.commit()
        finally:
            if sqlite:  # the pooled connection goes back with foreign keys on, whatever happened
                connection.rollback()
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")


if context.is_offline_mode():
    raise SystemExit("kit migrations run online only: use `kit db upgrade`")
run_migrations_online()
