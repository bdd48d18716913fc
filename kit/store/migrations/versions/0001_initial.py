"""The first schema: users, strategies, orders, fills, trades, positions, checkpoints, heartbeats, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ledger_cols() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("strategy_id", sa.Integer, sa.ForeignKey("strategies.id"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False, server_default="viewer"),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "strategies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("class_path", sa.String(255), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("broker", sa.JSON, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("interval", sa.String(8), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("promoted_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "name", name="uq_strategies_user_name"),
    )
    op.create_index("ix_strategies_user_id", "strategies", ["user_id"])
    op.create_table(
        "orders",
        *_ledger_cols(),
        sa.Column("open_time", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("size", sa.Float, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("strategy_id", "open_time", "seq", name="uq_orders_candle"),
    )
    op.create_index("ix_orders_user_id", "orders", ["user_id"])
    op.create_table(
        "fills",
        *_ledger_cols(),
        sa.Column("open_time", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("size", sa.Float, nullable=False),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("fee", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("strategy_id", "open_time", "seq", name="uq_fills_candle"),
    )
    op.create_index("ix_fills_user_id", "fills", ["user_id"])
    op.create_table(
        "trades",
        *_ledger_cols(),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("entry_time", sa.BigInteger, nullable=False),
        sa.Column("exit_time", sa.BigInteger, nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("size", sa.Float, nullable=False),
        sa.Column("entry_price", sa.Float, nullable=False),
        sa.Column("exit_price", sa.Float, nullable=False),
        sa.Column("pnl", sa.Float, nullable=False),
        sa.Column("fees", sa.Float, nullable=False),
        sa.UniqueConstraint("strategy_id", "exit_time", "seq", name="uq_trades_exit"),
    )
    op.create_index("ix_trades_user_id", "trades", ["user_id"])
    op.create_table(
        "positions",
        sa.Column("strategy_id", sa.Integer, sa.ForeignKey("strategies.id"), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("size", sa.Float, nullable=False),
        sa.Column("entry_price", sa.Float, nullable=True),
        sa.Column("entry_time", sa.BigInteger, nullable=True),
        sa.Column("cash", sa.Float, nullable=False),
        sa.Column("equity", sa.Float, nullable=False),
        sa.Column("updated_time", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_positions_user_id", "positions", ["user_id"])
    op.create_table(
        "checkpoints",
        sa.Column("strategy_id", sa.Integer, sa.ForeignKey("strategies.id"), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_open_time", sa.BigInteger, nullable=False),
        sa.Column("broker_state", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_checkpoints_user_id", "checkpoints", ["user_id"])
    op.create_table(
        "daemon_heartbeats",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("daemon_id", sa.String(128), nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.JSON, nullable=False),
    )
    op.create_index("ix_daemon_heartbeats_daemon_id", "daemon_heartbeats", ["daemon_id"])
    op.create_index("ix_daemon_heartbeats_time", "daemon_heartbeats", ["time"])
    op.create_table(
        "daemon_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("strategy_id", sa.Integer, nullable=True),
        sa.Column("user_id", sa.Integer, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_daemon_events_time", "daemon_events", ["time"])
    op.create_index("ix_daemon_events_user_id", "daemon_events", ["user_id"])


def downgrade() -> None:
    for table in ("daemon_events", "daemon_heartbeats", "checkpoints", "positions", "trades", "fills", "orders",
                  "strategies", "users"):  # fmt: skip
        op.drop_table(table)
