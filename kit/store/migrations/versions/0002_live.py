"""Live trading: users' exchange keys (encrypted), a strategy's mode (paper or live) and allocation.

Revision ID: 0002_live
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_live"
# Chained after this branch's head ("0002", last_signal) so `alembic upgrade head` has one head;
# the lead re-chains revisions at merge.
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # api_keys is main's table (kit/store/keys.py, migration 0002_simtrade), created here only because
    # this branch predates it: drop this create_table (and its drop_table) when chaining after 0002_simtrade.
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("api_key", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("key_tail", sa.String(8), nullable=False),
        sa.Column("master_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    with op.batch_alter_table("strategies") as batch:
        # Every strategy promoted before live trading existed is a paper one.
        batch.add_column(sa.Column("mode", sa.String(8), nullable=False, server_default="paper"))
        batch.add_column(sa.Column("allocation", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("strategies") as batch:
        batch.drop_column("allocation")
        batch.drop_column("mode")
    op.drop_table("api_keys")
