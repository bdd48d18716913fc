"""Alerts: users' alerts on streams, the candles they fired on, and a webhook URL per user.

Revision ID: 0003_alerts
Revises: 0003_gateway
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_alerts"
down_revision = "0003_gateway"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("interval", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("level", sa.Float, nullable=True),
        sa.Column("other", sa.String(128), nullable=True),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("once", sa.Boolean, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("checked_time", sa.BigInteger, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_alerts_user_id", "alerts", ["user_id"])
    op.create_table(
        "alert_fires",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("open_time", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("delivery", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("alert_id", "open_time", name="uq_alert_fires_candle"),
    )
    op.create_index("ix_alert_fires_user_id", "alert_fires", ["user_id"])
    op.create_index("ix_alert_fires_delivery", "alert_fires", ["delivery"])
    op.create_table(
        "webhooks",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("masked", sa.String(300), nullable=False),
        sa.Column("master_id", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhooks")
    op.drop_index("ix_alert_fires_delivery", "alert_fires")
    op.drop_index("ix_alert_fires_user_id", "alert_fires")
    op.drop_table("alert_fires")
    op.drop_index("ix_alerts_user_id", "alerts")
    op.drop_table("alerts")
