"""Live orders, their fills and risk limits (the daemon's live order path).

Revision ID: 0003_live_orders
Revises: 0003_alerts
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_live_orders"
down_revision = "0003_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "live_orders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("strategy_id", sa.Integer, sa.ForeignKey("strategies.id"), nullable=False),
        sa.Column("client_id", sa.String(36), nullable=False, unique=True),
        sa.Column("open_time", sa.BigInteger, nullable=False),
        sa.Column("leg", sa.Integer, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("quantity", sa.String(48), nullable=False),
        sa.Column("price", sa.String(48), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("order_id", sa.BigInteger, nullable=True),
        sa.Column("executed_qty", sa.String(48), nullable=False),
        sa.Column("filled_qty", sa.String(48), nullable=False),
        sa.Column("quote_qty", sa.String(48), nullable=False),
        sa.Column("commission", sa.String(48), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("reject_code", sa.Integer, nullable=True),
        sa.Column("effective_until_ms", sa.BigInteger, nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_live_orders_user_id", "live_orders", ["user_id"])
    op.create_index("ix_live_orders_strategy_id", "live_orders", ["strategy_id"])
    op.create_index("ix_live_orders_state", "live_orders", ["state"])
    op.create_table(
        "live_fills",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("strategy_id", sa.Integer, sa.ForeignKey("strategies.id"), nullable=False),
        sa.Column("client_id", sa.String(36), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("trade_id", sa.BigInteger, nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("quantity", sa.String(48), nullable=False),
        sa.Column("price", sa.String(48), nullable=False),
        sa.Column("commission", sa.String(48), nullable=False),
        sa.Column("commission_asset", sa.String(16), nullable=False),
        sa.Column("time_ms", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "symbol", "trade_id", name="uq_live_fills_trade"),
    )
    op.create_index("ix_live_fills_user_id", "live_fills", ["user_id"])
    op.create_index("ix_live_fills_strategy_id", "live_fills", ["strategy_id"])
    op.create_index("ix_live_fills_client_id", "live_fills", ["client_id"])
    op.create_table(
        "live_limits",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("strategy_id", sa.Integer, sa.ForeignKey("strategies.id"), nullable=True),
        sa.Column("max_order_notional", sa.Float, nullable=True),
        sa.Column("max_position_notional", sa.Float, nullable=True),
        sa.Column("max_exposure", sa.Float, nullable=True),
        sa.Column("max_daily_loss", sa.Float, nullable=True),
        sa.Column("halted", sa.Boolean, nullable=False),
        sa.Column("halt_reason", sa.Text, nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "strategy_id", name="uq_live_limits_scope"),
    )
    op.create_index("ix_live_limits_user_id", "live_limits", ["user_id"])


def downgrade() -> None:
    op.drop_table("live_limits")
    op.drop_table("live_fills")
    op.drop_table("live_orders")
