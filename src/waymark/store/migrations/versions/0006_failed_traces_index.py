"""An index of the failed traces alone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22

``GET /v1/traces?state=FAILED`` walked every summary by recency to find the few that
failed (docs/BENCHMARKS.md has the figures). ``ix_traces_failed`` holds
(tenant, updated_us, trace_id) of the summaries whose deciding status is FAILED, and
only theirs, so it costs writes nothing for the traces that succeed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FAILED = sa.text("cur_status = 'FAILED'")


def upgrade() -> None:
    present = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("traces")}
    if "ix_traces_failed" not in present:
        op.create_index(
            "ix_traces_failed",
            "traces",
            ["tenant", "updated_us", "trace_id"],
            sqlite_where=FAILED,
            postgresql_where=FAILED,
        )


def downgrade() -> None:
    op.drop_index("ix_traces_failed", "traces")
