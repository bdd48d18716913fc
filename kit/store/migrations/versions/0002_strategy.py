"""Trade records people read: why each trade ended and how far price went against and for it.

Revision ID: 0002_strategy
Revises: 0002_gateway
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_strategy"
down_revision = "0002_gateway"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: trades recorded before this revision have no reason or excursions, and inventing
    # them would be a lie in a ledger
    with op.batch_alter_table("trades") as batch:
        batch.add_column(sa.Column("exit_reason", sa.String(16), nullable=True))
        batch.add_column(sa.Column("mae", sa.Float, nullable=True))
        batch.add_column(sa.Column("mfe", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trades") as batch:
        batch.drop_column("mfe")
        batch.drop_column("mae")
        batch.drop_column("exit_reason")
