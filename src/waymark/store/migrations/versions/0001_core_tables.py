"""Core tables: events, paths, traces, dataset details, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Databases made by Waymark before it used Alembic already have these tables; the
revision then only records itself.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_STEP = ("status", "trace_status", "component", "stage", "operation")


def _key(name: str, nullable: bool = False) -> sa.Column[str]:
    """An id column that sorts bytewise on every dialect."""
    kind = sa.String().with_variant(sa.String(collation="C"), "postgresql")
    return sa.Column(name, kind, nullable=nullable)


def _step(prefix: str) -> list[sa.Column[Any]]:
    return [
        sa.Column(f"{prefix}_time_us", sa.BigInteger),
        _key(f"{prefix}_event_id", nullable=True),
        *(sa.Column(f"{prefix}_{name}", sa.String) for name in _STEP),
    ]


def _current(column: str) -> sa.Computed:
    return sa.Computed(
        f"CASE WHEN fin_event_id IS NULL THEN last_{column} ELSE fin_{column} END", persisted=True
    )


def _tables() -> dict[str, list[SchemaItem]]:
    return {
        "events": [
            sa.Column("tenant", sa.String, nullable=False),
            _key("event_id"),
            _key("trace_id"),
            sa.Column("time_us", sa.BigInteger, nullable=False),
            sa.Column("received_us", sa.BigInteger, nullable=False),
            sa.Column("status", sa.String, nullable=False),
            sa.Column("trace_status", sa.String, nullable=False),
            sa.Column("finishing", sa.Boolean, nullable=False),
            sa.Column("component", sa.String),
            sa.Column("stage", sa.String),
            sa.Column("operation", sa.String),
            sa.Column("domain", sa.String),
            sa.Column("domain_id", sa.String),
            sa.Column("user_name", sa.String),
            sa.Column("record_id", sa.String),
            sa.Column("errors", sa.Text),
            sa.Column("doc", sa.Text, nullable=False),
            sa.PrimaryKeyConstraint("tenant", "event_id", name="pk_events"),
        ],
        "paths": [
            sa.Column("tenant", sa.String, nullable=False),
            sa.Column("path", sa.Text, nullable=False),
            _key("trace_id"),
            _key("event_id"),
            sa.Column("time_us", sa.BigInteger, nullable=False),
            sa.Column("ord", sa.Integer, nullable=False),
            sa.PrimaryKeyConstraint(
                "tenant", "trace_id", "time_us", "event_id", "ord", name="pk_paths"
            ),
        ],
        "traces": [
            sa.Column("tenant", sa.String, nullable=False),
            _key("trace_id"),
            sa.Column("event_count", sa.BigInteger, nullable=False),
            sa.Column("started_us", sa.BigInteger, nullable=False),
            sa.Column("updated_us", sa.BigInteger, nullable=False),
            *_step("last"),
            *_step("fin"),
            sa.Column("origin_time_us", sa.BigInteger),
            _key("origin_event_id", nullable=True),
            sa.Column("domain", sa.String),
            sa.Column("domain_id", sa.String),
            sa.Column("user_name", sa.String),
            sa.Column("done", sa.Boolean, sa.Computed("fin_event_id IS NOT NULL", persisted=True)),
            sa.Column("cur_component", sa.String, _current("component")),
            sa.Column("cur_stage", sa.String, _current("stage")),
            sa.Column("cur_status", sa.String, _current("status")),
            sa.PrimaryKeyConstraint("tenant", "trace_id", name="pk_traces"),
        ],
        "dataset_details": [
            sa.Column("tenant", sa.String, nullable=False),
            _key("trace_id"),
            sa.Column("dataset_id", sa.String, nullable=False),
            sa.Column("dataset_version_id", sa.String, nullable=False),
            sa.Column("dataset_type", sa.String),
            sa.Column("record_count", sa.BigInteger),
            sa.Column("time_us", sa.BigInteger, nullable=False),
            sa.Column("received_us", sa.BigInteger, nullable=False),
            sa.PrimaryKeyConstraint(
                "tenant", "trace_id", "dataset_id", "dataset_version_id", name="pk_dataset_details"
            ),
        ],
        "dead_letters": [
            sa.Column(
                "id",
                sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                primary_key=True,
                autoincrement=True,
            ),
            sa.Column("received_us", sa.BigInteger, nullable=False),
            sa.Column("subject", sa.String, nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("raw", sa.LargeBinary, nullable=False),
        ],
    }


_INDEXES = {
    "ix_events_trace": ("events", ("tenant", "trace_id", "time_us", "event_id")),
    "ix_events_record": ("events", ("tenant", "record_id", "time_us")),
    "ix_paths_path": ("paths", ("tenant", "path", "time_us")),
    "ix_traces_updated": ("traces", ("tenant", "updated_us", "trace_id")),
    "ix_traces_domain_id": ("traces", ("tenant", "domain_id", "updated_us")),
    "ix_traces_domain": ("traces", ("tenant", "domain", "updated_us")),
    "ix_traces_component": ("traces", ("tenant", "cur_component", "updated_us")),
    "ix_traces_stage": ("traces", ("tenant", "cur_stage", "updated_us")),
    "ix_traces_done": ("traces", ("tenant", "done", "updated_us")),
    "ix_traces_user": ("traces", ("tenant", "user_name", "updated_us")),
    "ix_dataset_details_dataset": ("dataset_details", ("tenant", "dataset_id", "time_us")),
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, items in _tables().items():
        if name not in existing:
            op.create_table(name, *items)
    indexes: dict[str, set[str]] = {}
    for name, (table, columns) in _INDEXES.items():
        if table not in indexes:
            found = sa.inspect(op.get_bind()).get_indexes(table)
            indexes[table] = {str(ix["name"]) for ix in found}
        if name not in indexes[table]:
            op.create_index(name, table, list(columns))


def downgrade() -> None:
    for name in reversed(list(_tables())):
        op.drop_table(name)
