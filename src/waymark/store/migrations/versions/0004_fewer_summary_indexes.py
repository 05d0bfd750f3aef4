"""Fewer indexes to keep up on every write.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Every append rewrites one ``traces`` row per trace it touches, and each index on
``traces`` holds ``updated_us``, so each of them takes a new entry per write. Searches by
the deciding event's component or stage, by user or by domain now scan the
most-recently-updated index and filter, like the unfiltered search; by dataset
(``domain_id``) and by state (``done``) keep their indexes. ``ix_events_record`` becomes
``ix_events_record_id``, partial: only GSM events carry a record id.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DROPPED = {
    "ix_traces_domain": ["tenant", "domain", "updated_us"],
    "ix_traces_component": ["tenant", "cur_component", "updated_us"],
    "ix_traces_stage": ["tenant", "cur_stage", "updated_us"],
    "ix_traces_user": ["tenant", "user_name", "updated_us"],
}
RECORD_WHERE = sa.text("record_id IS NOT NULL")


def _indexes(table: str) -> set[str]:
    return {str(ix["name"]) for ix in sa.inspect(op.get_bind()).get_indexes(table)}


def upgrade() -> None:
    present = _indexes("traces")
    for name in DROPPED:
        if name in present:
            op.drop_index(name, "traces")
    present = _indexes("events")
    if "ix_events_record" in present:
        op.drop_index("ix_events_record", "events")
    if "ix_events_record_id" not in present:
        op.create_index(
            "ix_events_record_id",
            "events",
            ["tenant", "record_id", "time_us"],
            sqlite_where=RECORD_WHERE,
            postgresql_where=RECORD_WHERE,
        )


def downgrade() -> None:
    op.drop_index("ix_events_record_id", "events")
    op.create_index("ix_events_record", "events", ["tenant", "record_id", "time_us"])
    for name, columns in DROPPED.items():
        op.create_index(name, "traces", columns)
