"""API keys: a table of keys, each with its grants and the hash of its secret.

Revision ID: 0008_api_keys
Revises: 0007
Create Date: 2026-12-03

``waymark keys create`` adds a row; the API looks keys up by id and compares the hash of
the presented secret. The table holds no secret. It looks before it acts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_api_keys"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "api_keys" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("grants", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.String, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger),
        sa.Column("revoked_us", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
