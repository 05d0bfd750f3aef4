"""Order ``paths`` by path; a summary reads its paths from its events.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22

``paths`` led with the trace id, so every new event put a row on a random page of it,
and a second index served lookups by path. Now its primary key is (tenant, path_key,
time_us, event_id, ord), which serves the lookups itself (``ix_paths_key`` goes), and on
SQLite the table is that key alone (``WITHOUT ROWID``). A summary's paths come from the
new ``events.paths`` (the paths each event names, a JSON list), which this revision
fills from ``paths`` for the events stored before it. Each step looks before it acts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NEW_KEY = ["tenant", "path_key", "time_us", "event_id", "ord"]
OLD_KEY = ["tenant", "trace_id", "time_us", "event_id", "ord"]

#: the same event's rows in ``paths``, by the old key (still in place when this runs).
_SAME_EVENT = (
    "p.tenant = events.tenant AND p.trace_id = events.trace_id"
    " AND p.time_us = events.time_us AND p.event_id = events.event_id"
)


def _inspect() -> sa.Inspector:
    return sa.inspect(op.get_bind())


def _fill_event_paths(dialect: str) -> None:
    """Give each stored event the JSON list of its paths, in their order."""
    if dialect == "sqlite":
        op.execute(
            "UPDATE events SET paths = (SELECT json_group_array(path) FROM"
            f" (SELECT path FROM paths p WHERE {_SAME_EVENT} ORDER BY p.ord))"
            f" WHERE paths IS NULL AND EXISTS (SELECT 1 FROM paths p WHERE {_SAME_EVENT})"
        )
    else:
        op.execute(
            "UPDATE events SET paths = p.paths FROM (SELECT tenant, event_id,"
            " json_agg(path ORDER BY ord)::text AS paths FROM paths GROUP BY tenant, event_id) p"
            " WHERE events.paths IS NULL AND p.tenant = events.tenant"
            " AND p.event_id = events.event_id"
        )


def _paths_table(key: list[str], *, rowid: bool) -> None:
    op.create_table(
        "paths",
        sa.Column("tenant", sa.String, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("trace_id", sa.String, nullable=False),
        sa.Column("event_id", sa.String, nullable=False),
        sa.Column("time_us", sa.BigInteger, nullable=False),
        sa.Column("ord", sa.Integer, nullable=False),
        sa.Column("path_key", sa.String, nullable=False),
        sa.PrimaryKeyConstraint(*key, name="pk_paths"),
        sqlite_with_rowid=rowid,
    )


def _rekey(key: list[str], *, rowid: bool) -> None:
    """Give ``paths`` the primary key ``key``: SQLite copies the table (a key cannot be
    changed in place), PostgreSQL swaps the constraint."""
    if op.get_bind().dialect.name == "sqlite":
        op.rename_table("paths", "paths_before")
        _paths_table(key, rowid=rowid)
        op.execute(
            "INSERT INTO paths (tenant, path, trace_id, event_id, time_us, ord, path_key)"
            " SELECT tenant, path, trace_id, event_id, time_us, ord, path_key FROM paths_before"
        )
        op.drop_table("paths_before")  # and its indexes
    else:
        op.drop_constraint("pk_paths", "paths", type_="primary")
        op.create_primary_key("pk_paths", "paths", key)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if "paths" not in {c["name"] for c in _inspect().get_columns("events")}:
        op.add_column("events", sa.Column("paths", sa.Text))
    if _inspect().get_pk_constraint("paths")["constrained_columns"] != NEW_KEY:
        _fill_event_paths(dialect)
        _rekey(NEW_KEY, rowid=False)
    if "ix_paths_key" in {ix["name"] for ix in _inspect().get_indexes("paths")}:
        op.drop_index("ix_paths_key", "paths")


def downgrade() -> None:
    _rekey(OLD_KEY, rowid=True)
    op.create_index("ix_paths_key", "paths", ["tenant", "path_key", "time_us"])
    with op.batch_alter_table("events") as batch:
        batch.drop_column("paths")
