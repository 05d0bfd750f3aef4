"""Drop ``waymark_schema``, the version table of the stores made before Alembic.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("waymark_schema"):
        op.drop_table("waymark_schema")


def downgrade() -> None:
    """Nothing to restore: the table only ever held a version number Alembic now keeps."""
