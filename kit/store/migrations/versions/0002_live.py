"""Live trading: a strategy's mode (paper or live) and allocation (the keys table is 0002_simtrade).

Revision ID: 0002_live
Revises: 0002_simtrade
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_live"
down_revision = "0002_simtrade"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("strategies") as batch:
        # Every strategy promoted before live trading existed is a paper one.
        batch.add_column(sa.Column("mode", sa.String(8), nullable=False, server_default="paper"))
        batch.add_column(sa.Column("allocation", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("strategies") as batch:
        batch.drop_column("allocation")
        batch.drop_column("mode")
