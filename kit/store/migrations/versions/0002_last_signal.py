"""Strategies remember their last signal (dashboard) and their first tradable candle (daemon backfill);
events are indexed by strategy (admin page).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("strategies") as batch:
        batch.add_column(sa.Column("last_signal", sa.String(32), nullable=True))
        batch.add_column(sa.Column("start_time", sa.BigInteger, nullable=True))
    op.create_index("ix_daemon_events_strategy_id", "daemon_events", ["strategy_id"])


def downgrade() -> None:
    op.drop_index("ix_daemon_events_strategy_id", table_name="daemon_events")
    with op.batch_alter_table("strategies") as batch:
        batch.drop_column("start_time")
        batch.drop_column("last_signal")
