"""The production store: PostgreSQL through psycopg 3 and a connection pool.

Thin over :class:`~waymark.store.sql.SqlStore`: connections, retries, and batch
writes by ``COPY`` into per-connection staging tables, moved on with one
``INSERT .. SELECT .. ON CONFLICT`` per table (new events only; one commutative
summary upsert per trace). Every operation runs in one transaction; an operation that
fails on connectivity (server down or restarting, a broken pooled connection, no
free connection in time) or on a deadlock is retried with exponential backoff and
full jitter, and after the last attempt surfaces as :class:`~waymark.errors.Unavailable`
(HTTP 503 with ``Retry-After``). Retrying is safe because appends are idempotent.

Lock order: every append inserts its events in (tenant, event_id) order and upserts
its traces in (tenant, trace_id) order, so concurrent appends that touch the same
events or traces wait for each other but never deadlock.

The schema is managed by ``waymark migrate``; opening a store whose schema is not
the one this code needs raises :class:`~waymark.errors.SchemaOutdated`.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from waymark.errors import BadRequest, Unavailable
from waymark.model import Record, Summary
from waymark.pipelines import Pipelines
from waymark.store import migrate
from waymark.store.base import (
    AppendResult,
    DatasetDetails,
    DeadLetter,
    EventQuery,
    Lineage,
    Page,
    PathHit,
    TraceQuery,
)
from waymark.store.sql import (
    EVENT_COLUMNS,
    MERGE_TRACE,
    PATH_COLUMNS,
    SUMMARY_COLUMNS,
    TRACE_COLUMNS,
    Cursor,
    SqlStore,
)

P = ParamSpec("P")
T = TypeVar("T")

_EVENT_TYPES = {
    "event_id": 'text COLLATE "C"',
    "trace_id": 'text COLLATE "C"',
    "time_us": "int8",
    "received_us": "int8",
    "finishing": "bool",
}
#: the events columns in :func:`waymark.store.sql.event_row` order, with their types.
_EVENT_COLUMNS = tuple((name, _EVENT_TYPES.get(name, "text")) for name in EVENT_COLUMNS)
_KEYS = {"trace_id", "last_event_id", "fin_event_id", "origin_event_id"}


def _trace_type(name: str) -> str:
    if name in _KEYS:
        return 'text COLLATE "C"'
    return "int8" if name.endswith("_us") or name == "event_count" else "text"


#: the traces columns a batch writes (all but the generated ones), with their types.
_TRACE_TYPES = tuple((name, _trace_type(name)) for name in TRACE_COLUMNS)


def _columns(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(name for name, _ in columns)


def _staging(table: str, columns: Sequence[tuple[str, str]]) -> str:
    """A per-connection temporary table a batch is COPYed into, emptied at every commit."""
    typed = ", ".join(f"{name} {kind}" for name, kind in columns)
    return f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({typed}) ON COMMIT DELETE ROWS"


# A batch is COPYed into staging tables, then moved with one INSERT .. SELECT each, in key
# order (the lock order). COPY is several times faster than a multi-row INSERT or unnest().
NEW_EVENTS = "pg_temp.waymark_new_events"
NEW_TRACES = "pg_temp.waymark_new_traces"
STAGE_EVENTS = f"COPY {NEW_EVENTS} ({_columns(_EVENT_COLUMNS)}) FROM STDIN"
COPY_EVENTS = f"COPY events ({_columns(_EVENT_COLUMNS)}) FROM STDIN"
INSERT_NEW_EVENTS = (
    f"INSERT INTO events ({_columns(_EVENT_COLUMNS)})"
    f" SELECT {_columns(_EVENT_COLUMNS)} FROM {NEW_EVENTS} ORDER BY tenant, event_id"
    " ON CONFLICT (tenant, event_id) DO NOTHING RETURNING tenant, event_id"
)
COPY_PATHS = f"COPY paths ({PATH_COLUMNS}) FROM STDIN"
STAGE_TRACES = f"COPY {NEW_TRACES} ({_columns(_TRACE_TYPES)}) FROM STDIN"
UPSERT_STAGED_TRACES = (
    f"INSERT INTO traces ({_columns(_TRACE_TYPES)})"
    f" SELECT {_columns(_TRACE_TYPES)} FROM {NEW_TRACES} ORDER BY tenant, trace_id" + MERGE_TRACE
)


def _prepare(conn: psycopg.Connection[Any]) -> None:
    """Pool ``configure`` hook: give each new connection its staging tables."""
    with conn.transaction():
        conn.execute(_staging(NEW_EVENTS, _EVENT_COLUMNS))
        conn.execute(_staging(NEW_TRACES, _TRACE_TYPES))


def _copy(cur: Cursor, statement: str, rows: Sequence[Sequence[Any]]) -> None:
    assert isinstance(cur, psycopg.Cursor)
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


#: SQLSTATEs of text PostgreSQL cannot store; None: refused by psycopg (NUL characters).
_UNSTORABLE_TEXT = frozenset({None, "22021", "22P05"})


def conninfo_of(url: str) -> str:
    """libpq takes ``postgresql://`` URLs as they are; drop a SQLAlchemy driver suffix."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    if not url.startswith("postgresql://"):
        raise ValueError(f"not a PostgreSQL URL: {url!r} (expected postgresql://...)")
    return url


def _where(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(conninfo_of(url))
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"not a valid PostgreSQL URL: {exc}") from exc
    host = info.get("host") or "localhost"
    return f"PostgreSQL {info.get('dbname') or ''}@{host}:{info.get('port') or 5432}"


#: PostgreSQL settings that decide whether a commit is on disk when it returns, and what
#: each one's unsafe value gives up.
_DURABILITY_SETTINGS = {
    "synchronous_commit": (
        "off",
        "synchronous_commit is off for Waymark's connections: a commit returns before its WAL"
        " is flushed, so an OS crash or a power loss can lose events already answered 202"
        " (set it to on for Waymark's role or database, or in postgresql.conf)",
    ),
    "fsync": (
        "off",
        "fsync is off: PostgreSQL syncs nothing to disk, so an OS crash or a power loss can"
        " lose acknowledged events or corrupt the database (turn it on in postgresql.conf)",
    ),
    "full_page_writes": (
        "off",
        "full_page_writes is off: a page half-written at a power loss cannot be repaired from"
        " the WAL unless the file system rules out torn pages (turn it on in postgresql.conf)",
    ),
}
#: reads the settings as Waymark's own connections have them (pg_settings shows the
#: session's values, so a per-role, per-database or connection option is seen).
READ_DURABILITY_SETTINGS = (
    "SELECT name, setting FROM pg_settings WHERE name IN"
    f" ({', '.join(repr(name) for name in _DURABILITY_SETTINGS)})"
)


def durability_warnings_of(settings: dict[str, str], where: str) -> list[str]:
    """The warnings for settings as ``pg_settings`` gives them (name -> value)."""
    out = []
    for name, (unsafe, warning) in _DURABILITY_SETTINGS.items():
        if settings.get(name) == unsafe:
            out.append(f"{where}: {warning}")
    return out


def _retrying(
    method: Callable[Concatenate[PostgresStore, P], T],
) -> Callable[Concatenate[PostgresStore, P], T]:
    @functools.wraps(method)
    def wrapper(self: PostgresStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.retry(functools.partial(method, self, *args, **kwargs))

    return wrapper


class PostgresStore(SqlStore):
    """A PostgreSQL store. ``url`` is a libpq URL; pick a schema with
    ``?options=-csearch_path%3Dname``.

    Settings: ``min_size``/``max_size`` bound the pool; ``timeout`` is how long an
    operation waits for a connection; ``attempts`` how often it is tried; ``backoff``
    the first retry's maximum delay (doubled each time, capped at ``max_backoff``);
    ``open_timeout`` how long opening waits for the server (it may be starting too).
    With the defaults, an unreachable server is reported within about 3.5 s.
    """

    placeholder = "%s"
    # Two appends at once: while PostgreSQL runs one transaction, Python prepares the next
    # (on two cores: 24% -> 30% of a raw COPY over HTTP; four were no faster).
    writers = 2

    def __init__(
        self,
        url: str,
        pipelines: Pipelines | None = None,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 1.0,
        attempts: int = 3,
        backoff: float = 0.05,
        max_backoff: float = 0.5,
        open_timeout: float = 10.0,
    ) -> None:
        super().__init__(pipelines)
        self.where = _where(url)
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._pool = ConnectionPool(
            conninfo_of(url),
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            configure=_prepare,
            check=ConnectionPool.check_connection,
            kwargs=None if "application_name" in url else {"application_name": "waymark"},
            name="waymark",
        )
        try:
            self._pool.open(wait=True, timeout=open_timeout)
        except psycopg.OperationalError as exc:
            self._pool.close()
            raise Unavailable(f"cannot connect to {self.where}: {exc}") from exc
        try:
            migrate.check(self.retry(self._revision), self.where)
        except BaseException:
            self._pool.close()
            raise

    # -- connections ------------------------------------------------------------------------

    def retry(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` (one whole transaction), again on connectivity errors."""
        for attempt in range(self.attempts):
            try:
                return operation()
            except psycopg.DataError as exc:
                if exc.sqlstate not in _UNSTORABLE_TEXT:
                    raise
                # Text PostgreSQL cannot hold (a NUL character): the caller's input, not a fault.
                detail = f"a text value cannot be stored in PostgreSQL: {exc}"
                raise BadRequest(detail, [{"loc": ["body"], "msg": detail}]) from exc
            except psycopg.errors.ProgramLimitExceeded as exc:
                # A value too large for an index entry: retrying cannot help, the input must change.
                detail = f"a value is too large for PostgreSQL to index: {exc}"
                raise BadRequest(detail, [{"loc": ["body"], "msg": detail}]) from exc
            except psycopg.OperationalError as exc:
                if attempt + 1 == self.attempts:
                    raise Unavailable(f"{self.where} is unavailable: {exc}") from exc
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                time.sleep(random.uniform(0, delay))
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    def _writing(self) -> contextlib.AbstractContextManager[Cursor]:
        return self._transaction()

    def _reading(self) -> contextlib.AbstractContextManager[Cursor]:
        return self._transaction()

    def _revision(self) -> str | None:
        with self._reading() as cur:
            cur.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
            if not cur.fetchone()[0]:
                return None
            cur.execute("SELECT version_num FROM alembic_version")
            row = cur.fetchone()
            return None if row is None else str(row[0])

    # -- the batch insert -------------------------------------------------------------------

    def _insert_new(
        self, cur: Cursor, records: Sequence[Record], rows: list[tuple[Any, ...]]
    ) -> list[Record]:
        """COPY straight into ``events`` (in key order, so concurrent writers lock alike);
        if one of them is already stored, undo that and take the staged path, which skips
        the stored ones. Re-sent events are rare, so most batches take the short way."""
        rows = sorted(rows, key=lambda row: (row[0], row[1]))
        cur.execute("SAVEPOINT fresh_events")
        try:
            _copy(cur, COPY_EVENTS, rows)
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT fresh_events")
        else:
            cur.execute("RELEASE SAVEPOINT fresh_events")
            return list(records)
        _copy(cur, STAGE_EVENTS, rows)
        cur.execute(INSERT_NEW_EVENTS)
        inserted = {(tenant, event_id) for tenant, event_id in cur.fetchall()}
        return [r for r in records if (r.tenant, r.event_id) in inserted]

    def _insert_paths(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        _copy(cur, COPY_PATHS, rows)

    def _upsert_traces(
        self, cur: Cursor, rows: list[tuple[Any, ...]], returning: bool
    ) -> list[Sequence[Any]] | None:
        _copy(cur, STAGE_TRACES, rows)
        if not returning:
            cur.execute(UPSERT_STAGED_TRACES)
            return None
        # The stored rows: the collector's change feed needs no re-read.
        cur.execute(UPSERT_STAGED_TRACES + f" RETURNING {SUMMARY_COLUMNS}")
        return cur.fetchall()

    # -- every operation, retried -----------------------------------------------------------

    @_retrying
    def append(self, records: Sequence[Record], *, partials: bool = False) -> AppendResult:
        return super().append(records, partials=partials)

    @_retrying
    def summaries(self, tenant: str, trace_ids: Sequence[str]) -> list[Summary]:
        return super().summaries(tenant, trace_ids)

    @_retrying
    def find_events(
        self, tenant: str, query: EventQuery, *, limit: int = 100, cursor: str | None = None
    ) -> Page[dict[str, Any]]:
        return super().find_events(tenant, query, limit=limit, cursor=cursor)

    @_retrying
    def search(
        self, tenant: str, query: TraceQuery, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Summary]:
        return super().search(tenant, query, limit=limit, cursor=cursor)

    @_retrying
    def paths(self, tenant: str, path: str, *, limit: int = 100) -> list[PathHit]:
        return super().paths(tenant, path, limit=limit)

    @_retrying
    def lineage(self, tenant: str, trace_id: str) -> Lineage | None:
        return super().lineage(tenant, trace_id)

    @_retrying
    def put_dataset_details(self, details: Sequence[DatasetDetails]) -> None:
        super().put_dataset_details(details)

    @_retrying
    def dataset_details(
        self, tenant: str, *, trace_id: str | None = None, dataset_id: str | None = None
    ) -> list[DatasetDetails]:
        return super().dataset_details(tenant, trace_id=trace_id, dataset_id=dataset_id)

    @_retrying
    def park(self, letters: Sequence[tuple[str, str, bytes]]) -> None:
        super().park(letters)

    @_retrying
    def dead_letters(
        self, *, limit: int = 100, ids: Sequence[int] | None = None
    ) -> list[DeadLetter]:
        return super().dead_letters(limit=limit, ids=ids)

    @_retrying
    def discard_dead_letters(self, ids: Sequence[int]) -> int:
        return super().discard_dead_letters(ids)

    @_retrying
    def ping(self) -> None:
        super().ping()

    @_retrying
    def durability_warnings(self) -> list[str]:
        with self._reading() as cur:
            cur.execute(READ_DURABILITY_SETTINGS)
            settings = {str(name): str(value) for name, value in cur.fetchall()}
        return durability_warnings_of(settings, self.where)

    def close(self) -> None:
        self._pool.close()
