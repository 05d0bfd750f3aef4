"""Migrations: one Alembic history for both dialects; new and upgraded databases end
identical, and at exactly the schema the code declares."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect, pool, text
from typer.testing import CliRunner

from tests.conftest import free_port, pg_schema
from tests.store.conftest import BACKENDS, rec
from waymark.cli import app
from waymark.errors import SchemaOutdated
from waymark.model import Record
from waymark.store import migrate, open_store, parse_store_url
from waymark.store.base import TraceQuery
from waymark.store.schema import dead_letters, events, metadata
from waymark.store.sql import TRACE_COLUMNS, event_row, path_key, path_rows, trace_row
from waymark.summary import partials


@pytest.fixture(params=BACKENDS)
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL with nothing in it yet (an empty file, an empty schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'waymark.db'}"
    else:
        with pg_schema(migrated=False) as url:
            yield url


@pytest.fixture
def other_blank_url(blank_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty store of the same backend."""
    if blank_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'other.db'}"
    else:
        with pg_schema(migrated=False) as url:
            yield url


def connected(url: str) -> Any:
    engine = create_engine(parse_store_url(url).sqlalchemy_url, poolclass=pool.NullPool)
    return engine.begin()


def reflect(url: str) -> dict[str, Any]:
    """Everything about the schema that a migration could get wrong."""
    with connected(url) as conn:
        insp = inspect(conn)
        out: dict[str, Any] = {}
        for table in sorted(insp.get_table_names()):
            columns = [
                (
                    c["name"],
                    str(c["type"]),
                    getattr(c["type"], "collation", None),
                    c["nullable"],
                    str(c.get("default")),
                    (c.get("computed") or {}).get("sqltext"),
                )
                for c in insp.get_columns(table)
            ]
            indexes = sorted(
                (str(ix["name"]), tuple(ix["column_names"]), bool(ix["unique"]))
                for ix in insp.get_indexes(table)
            )
            out[table] = {
                "columns": columns,
                "pk": insp.get_pk_constraint(table),
                "indexes": indexes,
                "unique": insp.get_unique_constraints(table),
            }
        return out


def make_pre_alembic(url: str) -> None:
    """A database as Waymark made it before it used Alembic: tables plus a version table."""
    with connected(url) as conn:
        metadata.create_all(conn)
        conn.execute(text("CREATE TABLE waymark_schema (version INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO waymark_schema (version) VALUES (1)"))
        conn.execute(
            dead_letters.insert().values(received_us=1, subject="s", reason="kept", raw=b"x")
        )


def revision_of(url: str) -> str | None:
    with connected(url) as conn:
        return migrate.current(conn)


def test_new_database_is_at_head_and_matches_the_declared_schema(blank_url: str) -> None:
    assert migrate.upgrade(blank_url) == (None, migrate.head())
    with connected(blank_url) as conn:
        assert isinstance(conn, Connection)
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    assert set(reflect(blank_url)) == {*metadata.tables, "alembic_version"}


def test_database_made_before_alembic_upgrades_to_the_same_schema(
    blank_url: str, other_blank_url: str
) -> None:
    make_pre_alembic(blank_url)
    assert migrate.upgrade(blank_url) == (None, migrate.head())
    migrate.upgrade(other_blank_url)
    assert reflect(blank_url) == reflect(other_blank_url)
    with connected(blank_url) as conn:
        assert conn.execute(dead_letters.select()).one().reason == "kept"


def test_upgrade_from_each_older_revision_gives_the_same_schema(
    blank_url: str, other_blank_url: str
) -> None:
    migrate.upgrade(other_blank_url)
    assert migrate.upgrade(blank_url, target="0001") == (None, "0001")
    assert migrate.upgrade(blank_url) == ("0001", migrate.head())
    assert reflect(blank_url) == reflect(other_blank_url)


def test_paths_stored_before_0003_are_found_after_it(blank_url: str) -> None:
    migrate.upgrade(blank_url, target="0002")
    with connected(blank_url) as conn:
        conn.execute(
            text(
                "INSERT INTO paths (tenant, path, trace_id, event_id, time_us, ord)"
                " VALUES ('default', 's3://old', 't', 'e1', 10, 0),"
                " ('default', 's3://old', 't', 'e2', 20, 0),"
                " ('other', 's3://old', 'u', 'e3', 30, 0),"
                " ('default', 's3://på/中', 't', 'e4', 40, 0)"
            )
        )
    migrate.upgrade(blank_url)
    store = open_store(blank_url)
    try:
        assert [h.event_id for h in store.paths("default", "s3://old")] == ["e2", "e1"]
        assert [h.event_id for h in store.paths("other", "s3://old")] == ["e3"]
        assert [h.event_id for h in store.paths("default", "s3://på/中")] == ["e4"]
    finally:
        store.close()


def digest_key(path: str) -> str:
    """The path key of revisions 0003 and 0004."""
    return hashlib.sha256(path.encode()).hexdigest()[:32]


def stored_keys(url: str) -> dict[str, str]:
    with connected(url) as conn:
        return dict(conn.execute(text("SELECT path, path_key FROM paths")).all())


def test_paths_keyed_by_digest_are_found_after_0005_and_keyed_so_again_below_it(
    blank_url: str,
) -> None:
    short, long = "s3://bucket/raw/a.csv", "s3://bucket/" + "x" * 300 + "/part.csv"
    migrate.upgrade(blank_url, target="0004")
    with connected(blank_url) as conn:
        for n, path in enumerate([short, long]):
            conn.execute(
                text(
                    "INSERT INTO paths (tenant, path, trace_id, event_id, time_us, ord, path_key)"
                    " VALUES ('default', :path, 't', :event_id, :n, 0, :key)"
                ),
                {"path": path, "event_id": f"e{n}", "n": n, "key": digest_key(path)},
            )
    migrate.upgrade(blank_url)
    assert stored_keys(blank_url) == {short: short, long: path_key(long)}
    assert path_key(long).startswith(long[:150] + "#") and len(path_key(long)) == 183
    store = open_store(blank_url)
    try:
        assert [h.event_id for h in store.paths("default", short)] == ["e0"]
        assert [h.event_id for h in store.paths("default", long)] == ["e1"]
    finally:
        store.close()
    with migrate._locked(parse_store_url(blank_url)) as conn:
        command.downgrade(migrate._config(conn), "0004")
    assert stored_keys(blank_url) == {short: digest_key(short), long: digest_key(long)}


def store_as_before(url: str, records: list[Record], *, event_columns: int) -> None:
    """Write records as an older revision did, straight into its tables: the first
    ``event_columns`` columns of ``events``, and paths without their time of receipt."""
    columns = ", ".join(c.name for c in list(events.c)[:event_columns])
    with connected(url) as conn:
        for record in records:
            row = event_row(record)[:event_columns]
            marks = ", ".join(f":v{i}" for i in range(len(row)))
            conn.execute(
                text(f"INSERT INTO events ({columns}) VALUES ({marks})"),
                {f"v{i}": v for i, v in enumerate(row)},
            )
        for (tenant, trace_id), partial in partials(records).items():
            row = trace_row(tenant, trace_id, partial)
            marks = ", ".join(f":v{i}" for i in range(len(row)))
            conn.execute(
                text(f"INSERT INTO traces ({', '.join(TRACE_COLUMNS)}) VALUES ({marks})"),
                {f"v{i}": v for i, v in enumerate(row)},
            )
        for path_row in path_rows(records):
            conn.execute(
                text(
                    "INSERT INTO paths (tenant, path, trace_id, event_id, time_us, ord, path_key)"
                    " VALUES (:a, :b, :c, :d, :e, :f, :g)"
                ),
                dict(zip("abcdefg", path_row[:7], strict=True)),
            )


def test_paths_stored_before_0007_are_in_summaries_and_lookups_after_it(blank_url: str) -> None:
    """0007 moves a summary's paths to ``events.paths`` (filled from ``paths`` for the
    events stored before) and keys ``paths`` by path; nothing stored goes missing."""
    records = [
        rec("t", "e1", at=10, path="s3://b/in.csv", outputs=["s3://b/out.csv"]),
        rec("t", "e2", at=20, inputs=["s3://b/out.csv"], outputs=["s3://b/final.csv"]),
        rec("t", "e3", at=30),
        rec("u", "e4", at=40, path="s3://b/in.csv"),
    ]
    migrate.upgrade(blank_url, target="0006")
    store_as_before(blank_url, records, event_columns=len(events.c) - 1)  # not 0007's paths
    migrate.upgrade(blank_url, target="0007")
    with connected(blank_url) as conn:
        key = inspect(conn).get_pk_constraint("paths")["constrained_columns"]
    assert key == ["tenant", "path_key", "time_us", "event_id", "ord"]
    migrate.upgrade(blank_url)
    store = open_store(blank_url)
    try:
        summary = store.summary("default", "t")
        assert summary is not None
        assert summary.paths == ["s3://b/in.csv", "s3://b/out.csv", "s3://b/final.csv"]
        assert [h.event_id for h in store.paths("default", "s3://b/in.csv")] == ["e4", "e1"]
        assert [h.event_id for h in store.paths("default", "s3://b/out.csv")] == ["e2", "e1"]
    finally:
        store.close()


def test_errors_and_paths_stored_before_0009_are_counted_and_paged_after_it(
    blank_url: str,
) -> None:
    """0009 fills ``trace_items`` from the events stored before it: each distinct error and
    path once, where the first event that reported it puts it."""
    same = {"message": {"en": "disk full"}}
    records = [
        rec("t", "e3", at=30, errors=[same, {"message": {"en": "late"}}], path="b"),
        rec("t", "e1", at=10, errors=[{"message": {"en": "first"}}, same], path="a"),
        rec("t", "e2", at=20, errors=[same], inputs=["a"], outputs=["c"]),
    ]
    migrate.upgrade(blank_url, target="0008_api_keys")
    with connected(blank_url) as conn:
        for table, columns, rows in (
            ("events", [c.name for c in events.c], [event_row(r) for r in records]),
            ("traces", TRACE_COLUMNS, [trace_row(*k, p) for k, p in partials(records).items()]),
        ):
            marks = ", ".join(f":v{i}" for i in range(len(columns)))
            for row in rows:
                conn.execute(
                    text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"),
                    {f"v{i}": v for i, v in enumerate(row)},
                )
    migrate.upgrade(blank_url)
    store = open_store(blank_url)
    try:
        summary = store.summary("default", "t")
        assert summary is not None
        assert [e["message"]["en"] for e in summary.errors] == ["first", "disk full", "late"]
        assert (summary.error_count, summary.path_count) == (3, 3)
        assert summary.paths == ["a", "c", "b"]
        page = store.trace_items("default", "t", "error", limit=2)
        assert page is not None and page.next_cursor is not None
        assert [e["message"]["en"] for e in page.items] == ["first", "disk full"]
    finally:
        store.close()


def test_steps_and_arrivals_stored_before_0010_are_searched_and_looked_up_after_it(
    blank_url: str,
) -> None:
    """0010 fills ``trace_steps`` from the events stored before, and gives each path row
    its event's time of receipt, by which lookups then answer."""
    records = [
        rec("t", "e1", at=50, component="uploader", stage="UPLOAD", path="s3://b/k.csv"),
        rec("t", "e2", at=60, component="writer"),
        rec("u", "e3", at=10, component="uploader", path="s3://b/k.csv"),  # clock behind
    ]
    records = [r._replace(received_us=100 * (i + 1)) for i, r in enumerate(records)]
    migrate.upgrade(blank_url, target="0009_trace_items")
    store_as_before(blank_url, records, event_columns=len(events.c))
    migrate.upgrade(blank_url)
    store = open_store(blank_url)
    try:
        ids = [s.trace_id for s in store.search("default", TraceQuery(component="uploader")).items]
        assert sorted(ids) == ["t", "u"]
        assert [s.trace_id for s in store.search("default", TraceQuery(stage="UPLOAD")).items] == [
            "t"
        ]
        assert [h.trace_id for h in store.paths("default", "s3://b/k.csv")] == ["u", "t"]
    finally:
        store.close()


def test_revisions_check_before_they_act(blank_url: str, other_blank_url: str) -> None:
    """A half-made database (one table, without its indexes) is completed, not broken."""
    with connected(blank_url) as conn:
        events.create(conn)  # with its indexes
        conn.execute(text("DROP INDEX ix_events_record_id"))
    migrate.upgrade(blank_url)
    migrate.upgrade(other_blank_url)
    assert reflect(blank_url) == reflect(other_blank_url)


def test_migrating_twice_does_nothing_the_second_time(blank_url: str) -> None:
    migrate.upgrade(blank_url)
    before = reflect(blank_url)
    assert migrate.upgrade(blank_url) == (migrate.head(), migrate.head())
    assert reflect(blank_url) == before


def test_concurrent_migrations_are_serialised(blank_url: str, other_blank_url: str) -> None:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            migrate.upgrade(blank_url)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    migrate.upgrade(other_blank_url)
    assert reflect(blank_url) == reflect(other_blank_url)


def test_migrate_command(blank_url: str) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["migrate", "--store", blank_url])
    assert first.exit_code == 0, first.output
    assert f"schema upgraded from nothing to revision {migrate.head()}" in first.output
    again = runner.invoke(app, ["migrate", "--store", blank_url])
    assert again.exit_code == 0, again.output
    assert f"schema already at revision {migrate.head()}" in again.output


def test_migrate_command_names_a_bad_url() -> None:
    result = CliRunner().invoke(app, ["migrate", "--store", "mysql://x"])
    assert result.exit_code == 1
    assert "unsupported store URL scheme 'mysql'" in result.output


def test_migrate_command_names_a_server_it_cannot_reach() -> None:
    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/test"
    result = CliRunner().invoke(app, ["migrate", "--store", url])
    assert result.exit_code == 1
    assert "cannot migrate PostgreSQL test@127.0.0.1" in result.output
    assert "secret" not in result.output


def test_a_schema_newer_than_the_code_is_refused(blank_url: str) -> None:
    migrate.upgrade(blank_url)
    with connected(blank_url) as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    with pytest.raises(SchemaOutdated, match="revision f00d, which this Waymark does not know"):
        open_store(blank_url).close()
    with pytest.raises(SchemaOutdated, match="upgrade Waymark"):
        migrate.upgrade(blank_url)


# -- what differs by backend: SQLite upgrades itself, PostgreSQL waits for `waymark migrate` --


def test_sqlite_creates_and_upgrades_itself_on_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    make_pre_alembic(url)
    store = open_store(url)
    try:
        assert store.append([rec("t", "e1")]).inserted == 1
        assert [d.reason for d in store.dead_letters()] == ["kept"]
    finally:
        store.close()
    assert revision_of(url) == migrate.head()
    assert "waymark_schema" not in reflect(url)
    fresh = f"sqlite:///{tmp_path / 'sub' / 'new.db'}"
    open_store(fresh).close()
    assert reflect(fresh) == reflect(url)


@pytest.mark.parametrize("revision", [None, "0001"])
def test_postgresql_refuses_an_older_schema(revision: str | None) -> None:
    with pg_schema(migrated=False) as url:
        if revision is not None:
            migrate.upgrade(url, target=revision)
        with pytest.raises(SchemaOutdated, match="run `waymark migrate --store URL`"):
            open_store(url).close()
        served = CliRunner().invoke(app, ["serve", "--store", url, "--port", "1"])
        assert served.exit_code == 1
        assert "run `waymark migrate --store URL`" in served.output
        migrate.upgrade(url)
        store = open_store(url)
        try:
            assert store.append([rec("t", "e1")]).inserted == 1
        finally:
            store.close()
