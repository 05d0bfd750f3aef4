"""Look paths up by a digest: a path may be longer than an index entry may be.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Adds ``paths.path_key`` (:func:`waymark.store.sql.path_key` of the path), fills it for
the rows already stored, and indexes (tenant, path_key, time_us) in place of
(tenant, path, time_us), which PostgreSQL cannot hold for paths over 2,704 bytes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from waymark.store.sql import path_key

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_CHUNK = 1000


def _fill(bind: sa.Connection) -> None:
    """Compute the digest of every stored path, in Python, so that both dialects agree."""
    paths = sa.table("paths", sa.column("path", sa.Text), sa.column("path_key", sa.String))
    found = bind.execute(sa.select(paths.c.path).where(paths.c.path_key.is_(None)).distinct())
    todo = [row[0] for row in found]
    update = (
        paths.update().where(paths.c.path == sa.bindparam("p")).values(path_key=sa.bindparam("k"))
    )
    for start in range(0, len(todo), _CHUNK):
        chunk = todo[start : start + _CHUNK]
        bind.execute(update, [{"p": p, "k": path_key(p)} for p in chunk])


def upgrade() -> None:
    bind = op.get_bind()
    indexes = {ix["name"] for ix in sa.inspect(bind).get_indexes("paths")}
    if "ix_paths_path" in indexes:
        op.drop_index("ix_paths_path", "paths")
    columns = {c["name"]: c for c in sa.inspect(bind).get_columns("paths")}
    if "path_key" not in columns:
        op.add_column("paths", sa.Column("path_key", sa.String))
    if "path_key" not in columns or columns["path_key"]["nullable"]:
        _fill(bind)
        with op.batch_alter_table("paths") as batch:
            batch.alter_column("path_key", existing_type=sa.String, nullable=False)
    if "ix_paths_key" not in {ix["name"] for ix in sa.inspect(bind).get_indexes("paths")}:
        op.create_index("ix_paths_key", "paths", ["tenant", "path_key", "time_us"])


def downgrade() -> None:
    op.drop_index("ix_paths_key", "paths")
    op.create_index("ix_paths_path", "paths", ["tenant", "path", "time_us"])
    with op.batch_alter_table("paths") as batch:
        batch.drop_column("path_key")
