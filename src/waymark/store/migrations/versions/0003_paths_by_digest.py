"""Look paths up by a digest: a path may be longer than an index entry may be.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Adds ``paths.path_key`` (:func:`waymark.store.sql.path_key` of the path), fills it for
the rows already stored, and indexes (tenant, path_key, time_us) in place of
(tenant, path, time_us), which PostgreSQL cannot hold for paths over 2,704 bytes.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _path_key(path: str) -> str:
    """:func:`waymark.store.sql.path_key` as of this revision (a revision does not change)."""
    return hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:32]


#: the same in PostgreSQL's words.
_PG_PATH_KEY = "substr(encode(sha256(convert_to(path, 'UTF8')), 'hex'), 1, 32)"


def _fill(bind: sa.Connection) -> None:
    """Give every stored path its digest, in one statement (linear in the table's size)."""
    if bind.dialect.name == "sqlite":
        sqlite = bind.connection.driver_connection
        assert sqlite is not None
        sqlite.create_function("waymark_path_key", 1, _path_key, deterministic=True)
        op.execute("UPDATE paths SET path_key = waymark_path_key(path) WHERE path_key IS NULL")
    else:
        op.execute(f"UPDATE paths SET path_key = {_PG_PATH_KEY} WHERE path_key IS NULL")


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
