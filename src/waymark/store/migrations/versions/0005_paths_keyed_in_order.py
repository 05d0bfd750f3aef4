"""Key paths by their beginning, not by a digest alone: new paths of one folder then share
index pages.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

``paths.path_key`` becomes the path itself when it is at most 200 characters, else its
first 150 characters, ``#`` and the digest (:func:`waymark.store.sql.path_key`). Only the
rows whose key differs are rewritten, so running it again changes nothing. The schema
itself does not change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _digest(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _path_key(path: str) -> str:
    """:func:`waymark.store.sql.path_key` as of this revision (a revision does not change)."""
    return path if len(path) <= 200 else f"{path[:150]}#{_digest(path)}"


#: the digest as PostgreSQL computes it (revision 0003's key).
_PG_DIGEST = "substr(encode(sha256(convert_to(path, 'UTF8')), 'hex'), 1, 32)"
#: ``_path_key`` in PostgreSQL's words.
_PG_PATH_KEY = (
    f"CASE WHEN char_length(path) <= 200 THEN path ELSE left(path, 150) || '#' || {_PG_DIGEST} END"
)


def _rekey(python_key: Callable[[str], str], pg_key: str) -> None:
    """Set every path's key to the given function of the path, where it differs."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        sqlite = bind.connection.driver_connection
        assert sqlite is not None
        sqlite.create_function("waymark_path_key", 1, python_key, deterministic=True)
        op.execute(
            "UPDATE paths SET path_key = waymark_path_key(path)"
            " WHERE path_key <> waymark_path_key(path)"
        )
    else:
        op.execute(f"UPDATE paths SET path_key = {pg_key} WHERE path_key <> {pg_key}")


def upgrade() -> None:
    _rekey(_path_key, _PG_PATH_KEY)


def downgrade() -> None:
    _rekey(_digest, _PG_DIGEST)
