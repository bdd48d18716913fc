"""Users carry a session generation (signed into login cookies, so sessions can be revoked) and a
disabled flag.

Revision ID: 0002_dashsec
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_dashsec"
# The lead re-chains the parallel 0002_* revisions at merge; on this branch the head is 0002.
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE (also on SQLite): batch's copy-and-swap would drop the users table, which
    # every strategy and ledger row references.
    with op.batch_alter_table("users", recreate="never") as batch:
        batch.add_column(sa.Column("session_gen", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN needs SQLite >= 3.35 (Python 3.11's is newer).
    with op.batch_alter_table("users", recreate="never") as batch:
        batch.drop_column("disabled")
        batch.drop_column("session_gen")
