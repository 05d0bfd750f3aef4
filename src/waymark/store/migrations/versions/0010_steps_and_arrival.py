"""Search by any step of a trace; paths looked up by arrival.

Revision ID: 0010_steps_and_arrival
Revises: 0009_trace_items
Create Date: 2026-12-03

``trace_steps`` holds every component and stage a trace's events name, once per trace,
keyed (tenant, kind, name, trace_id): a search by component or stage finds every trace
that has an event of it, not only those whose deciding event has. It is filled from the
events stored before.

``paths`` gains ``received_us`` (when the event was received, copied from its event; a
row without its event takes its event time) and
its primary key becomes (tenant, path_key, received_us, time_us, event_id, ord), so that a
lookup by path answers the latest arrival first, whatever the producer's clock said. Each
step looks before it acts.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010_steps_and_arrival"
down_revision = "0009_trace_items"
branch_labels = None
depends_on = None

NEW_KEY = ["tenant", "path_key", "received_us", "time_us", "event_id", "ord"]
OLD_KEY = ["tenant", "path_key", "time_us", "event_id", "ord"]
_PATH_COLUMNS = "tenant, path, trace_id, event_id, time_us, ord, path_key"


def _inspect() -> sa.Inspector:
    return sa.inspect(op.get_bind())


def _steps() -> None:
    if "trace_steps" in _inspect().get_table_names():
        return
    op.create_table(
        "trace_steps",
        sa.Column("tenant", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column(
            "trace_id",
            sa.String().with_variant(sa.String(collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("tenant", "kind", "name", "trace_id", name="pk_trace_steps"),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO trace_steps (tenant, kind, name, trace_id)"
        " SELECT DISTINCT tenant, 'component', component, trace_id FROM events"
        " WHERE component IS NOT NULL"
        " UNION SELECT DISTINCT tenant, 'stage', stage, trace_id FROM events"
        " WHERE stage IS NOT NULL"
    )


def _paths_table(key: list[str], *, received: bool) -> None:
    columns: list[sa.Column[Any]] = [
        sa.Column("tenant", sa.String, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("trace_id", sa.String, nullable=False),
        sa.Column("event_id", sa.String, nullable=False),
        sa.Column("time_us", sa.BigInteger, nullable=False),
        sa.Column("ord", sa.Integer, nullable=False),
        sa.Column("path_key", sa.String, nullable=False),
    ]
    if received:
        columns.append(sa.Column("received_us", sa.BigInteger, nullable=False))
    op.create_table(
        "paths", *columns, sa.PrimaryKeyConstraint(*key, name="pk_paths"), sqlite_with_rowid=False
    )


def _arrival() -> None:
    columns = {c["name"] for c in _inspect().get_columns("paths")}
    key = _inspect().get_pk_constraint("paths")["constrained_columns"]
    if "received_us" in columns and key == NEW_KEY:
        return
    if op.get_bind().dialect.name == "sqlite":  # a key cannot be changed in place
        op.rename_table("paths", "paths_before")
        _paths_table(NEW_KEY, received=True)
        op.execute(
            f"INSERT INTO paths ({_PATH_COLUMNS}, received_us)"
            f" SELECT {', '.join('p.' + c for c in _PATH_COLUMNS.split(', '))},"
            " coalesce(e.received_us, p.time_us) FROM paths_before p LEFT JOIN events e"
            " ON e.tenant = p.tenant AND e.event_id = p.event_id"
        )
        op.drop_table("paths_before")
        return
    if "received_us" not in columns:
        op.add_column("paths", sa.Column("received_us", sa.BigInteger))
        op.execute(
            "UPDATE paths SET received_us = e.received_us FROM events e"
            " WHERE e.tenant = paths.tenant AND e.event_id = paths.event_id"
        )
        op.execute("UPDATE paths SET received_us = time_us WHERE received_us IS NULL")
        op.alter_column("paths", "received_us", nullable=False)
    if key != NEW_KEY:
        op.drop_constraint("pk_paths", "paths", type_="primary")
        op.create_primary_key("pk_paths", "paths", NEW_KEY)


def upgrade() -> None:
    _steps()
    _arrival()


def downgrade() -> None:
    op.drop_table("trace_steps")
    if op.get_bind().dialect.name == "sqlite":
        op.rename_table("paths", "paths_before")
        _paths_table(OLD_KEY, received=False)
        op.execute(f"INSERT INTO paths ({_PATH_COLUMNS}) SELECT {_PATH_COLUMNS} FROM paths_before")
        op.drop_table("paths_before")
        return
    op.drop_constraint("pk_paths", "paths", type_="primary")
    op.create_primary_key("pk_paths", "paths", OLD_KEY)
    op.drop_column("paths", "received_us")
