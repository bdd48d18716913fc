"""Shard leases: which daemon owns which shard of the strategies, with fencing tokens and a history.

Revision ID: 0003_shards
Revises: 0003_live_orders
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_shards"
# main already has 0003_gateway on 0002_strategy: chained after it (the lead re-chains at merge)
down_revision = "0003_live_orders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shard_leases",
        sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
        sa.Column("acquired", sa.Float, nullable=False),
        # (shard, token) is a key: a ledger write's FOR KEY SHARE then blocks a takeover (a new
        # token) but not its own owner's renewals (expires only)
        sa.UniqueConstraint("shard", "token", name="uq_shard_leases_token"),
    )
    op.create_table(
        "shard_daemons",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("seen", sa.Float, nullable=False),
    )
    op.create_table(
        "shard_lease_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("shard", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("previous", sa.String(128), nullable=True),
    )
    op.create_index("ix_shard_lease_log_shard", "shard_lease_log", ["shard"])


def downgrade() -> None:
    op.drop_index("ix_shard_lease_log_shard", table_name="shard_lease_log")
    op.drop_table("shard_lease_log")
    op.drop_table("shard_daemons")
    op.drop_table("shard_leases")
