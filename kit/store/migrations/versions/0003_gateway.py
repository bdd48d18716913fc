"""Signals: one row per strategy and candle with a signal, for the gateway's ``user@signals`` stream.

Revision ID: 0003_gateway
Revises: 0002_strategy
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_gateway"
down_revision = "0002_strategy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("strategy_id", sa.Integer, sa.ForeignKey("strategies.id"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("open_time", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("strategy_id", "open_time", name="uq_signals_candle"),
    )
    op.create_index("ix_signals_user_id", "signals", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_signals_user_id", table_name="signals")
    op.drop_table("signals")
