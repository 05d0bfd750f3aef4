"""Schema migrations: one Alembic history for SQLite and PostgreSQL, shipped in the package.

``waymark migrate`` (:func:`upgrade`) creates or upgrades a store's schema; SQLite
stores upgrade themselves on open, PostgreSQL stores refuse to open on a schema
other than the one this code needs (:func:`check`), so that schema changes on a
shared server are an explicit step. Every revision checks before it acts, so a
database created by an older Waymark and a new one end identical.

Concurrent upgrades are serialised: a PostgreSQL advisory lock, SQLite's write
lock (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, event, pool, text
from sqlalchemy.exc import OperationalError

from waymark.errors import SchemaOutdated, Unavailable
from waymark.store.url import StoreURL, parse_store_url

#: advisory lock key taken while migrating a PostgreSQL schema ("waymark" in ASCII, cut).
_PG_LOCK = 0x7761796D61726B


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "waymark.store:migrations")
    config.attributes["connection"] = connection
    return config


@functools.cache
def head() -> str:
    """The revision this code needs."""
    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None
    return found


@contextmanager
def _locked(url: StoreURL) -> Iterator[Connection]:
    """A connection inside a transaction that holds the store's migration lock."""
    engine = create_engine(url.sqlalchemy_url, poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":
        # pysqlite opens transactions lazily and never for DDL; take the write lock ourselves.
        @event.listens_for(engine, "connect")
        def _autocommit(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA busy_timeout=10000")

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
            yield conn
    finally:
        engine.dispose()


def current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


@functools.cache
def _known() -> frozenset[str]:
    script = ScriptDirectory.from_config(_config())
    return frozenset(rev.revision for rev in script.walk_revisions())


def _newer(where: str, found: str) -> SchemaOutdated:
    return SchemaOutdated(
        f"{where} has schema revision {found}, which this Waymark does not know"
        f" (it needs {head()}): upgrade Waymark"
    )


def upgrade(url: str | StoreURL, target: str = "head") -> tuple[str | None, str]:
    """Create or upgrade the store's schema to ``target`` (default: :func:`head`);
    return the revisions (before, after). :class:`Unavailable` if the store cannot be
    reached, :class:`ValueError` if ``url`` is not a store URL."""
    store = parse_store_url(url) if isinstance(url, str) else url
    where = store.shown
    try:
        with _locked(store) as conn:
            before = current(conn)
            if before is not None and before not in _known():
                raise _newer(where, before)
            if before != (head() if target == "head" else target):
                command.upgrade(_config(conn), target)
            return before, current(conn) or ""
    except OperationalError as exc:
        raise Unavailable(f"cannot migrate {where}: {exc.orig or exc}") from exc


def check(found: str | None, where: str) -> None:
    """Raise :class:`SchemaOutdated` unless ``found`` (a store's revision, None for a store
    without one) is the revision this code needs."""
    needed = head()
    if found == needed:
        return
    if found is None:
        raise SchemaOutdated(f"{where} has no Waymark schema: run `waymark migrate --store URL`")
    if found not in _known():
        raise _newer(where, found)
    raise SchemaOutdated(
        f"{where} has schema revision {found}, this Waymark needs {needed}:"
        " run `waymark migrate --store URL`"
    )
