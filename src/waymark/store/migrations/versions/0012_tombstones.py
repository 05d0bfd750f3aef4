"""Tombstones of deleted traces, and leases (one replica at a time prunes).

Revision ID: 0012_tombstones
Revises: 0011_webhooks
Create Date: 2026-12-03

``DELETE /v1/traces/{id}`` removes a trace and leaves a tombstone, so that events of it
received before the deletion and still on the bus are not stored again. Looks before it
acts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_tombstones"
down_revision = "0011_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not sa.inspect(op.get_bind()).has_table("leases"):
        op.create_table(
            "leases",
            sa.Column("name", sa.String, nullable=False),
            sa.Column("holder", sa.String, nullable=False),
            sa.Column("until_us", sa.BigInteger, nullable=False),
            sa.PrimaryKeyConstraint("name", name="pk_leases"),
        )
    if sa.inspect(op.get_bind()).has_table("tombstones"):
        return
    kind = sa.String().with_variant(sa.String(collation="C"), "postgresql")
    op.create_table(
        "tombstones",
        sa.Column("tenant", sa.String, nullable=False),
        sa.Column("trace_id", kind, nullable=False),
        sa.Column("deleted_us", sa.BigInteger, nullable=False),
        sa.Column("until_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "trace_id", name="pk_tombstones"),
    )
    op.create_index("ix_tombstones_until", "tombstones", ["until_us"])


def downgrade() -> None:
    op.drop_table("tombstones")
    op.drop_table("leases")
