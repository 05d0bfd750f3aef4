"""The production store: PostgreSQL through psycopg 3 and a connection pool.

Thin over :class:`~waymark.store.sql.SqlStore`: connections, retries, and batch
writes by ``COPY`` into per-connection staging tables, moved on with one
``INSERT .. SELECT .. ON CONFLICT`` per table (new events only; one commutative
summary upsert per trace).

Every transaction of every operation runs through one function, :meth:`PostgresStore._run`
(the :meth:`~waymark.store.sql.SqlStore._read` and ``_write`` hooks, the only way the
shared queries reach a connection): a transaction that fails on connectivity (server
down or restarting, a broken pooled connection, no free connection in time) or on a
deadlock is run again with exponential backoff and full jitter, and after the last
attempt surfaces as :class:`~waymark.errors.Unavailable` (HTTP 503 with ``Retry-After``).
Running a write again is safe because appends are idempotent and every other write
sets what it sets.

Lock order: every append inserts its events in (tenant, event_id) order and upserts
its traces in (tenant, trace_id) order, so concurrent appends that touch the same
events or traces wait for each other but never deadlock.

The schema is managed by ``waymark migrate``; opening a store whose schema is not
the one this code needs raises :class:`~waymark.errors.SchemaOutdated`.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from waymark.errors import BadRequest, Unavailable
from waymark.model import Record
from waymark.pipelines import Pipelines
from waymark.store import changefeed, migrate, webhooks
from waymark.store.changefeed import ANNOUNCE
from waymark.store.sql import (
    EVENT_COLUMNS,
    ITEM_COLUMNS,
    MERGE_TRACE,
    PATH_COLUMNS,
    STEP_COLUMNS,
    SUMMARY_COLUMNS,
    TRACE_COLUMNS,
    UPSERT_ITEM,
    Cursor,
    SqlStore,
)
from waymark.store.url import StoreURL, parse_store_url

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
# order (the lock order). COPY is the fastest way in (docs/postgres.md compares the others).
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
#: the rows as four arrays (one statement, however many rows), in the order given: sorted.
INSERT_STEPS = (
    f"INSERT INTO trace_steps ({STEP_COLUMNS})"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])"
    " ON CONFLICT DO NOTHING"
)
STAGE_TRACES = f"COPY {NEW_TRACES} ({_columns(_TRACE_TYPES)}) FROM STDIN"
UPSERT_STAGED_TRACES = (
    f"INSERT INTO traces ({_columns(_TRACE_TYPES)})"
    f" SELECT {_columns(_TRACE_TYPES)} FROM {NEW_TRACES} ORDER BY tenant, trace_id" + MERGE_TRACE
)


NEW_ITEMS = "pg_temp.waymark_new_items"
_ITEM_TYPES = tuple(
    (
        name,
        'text COLLATE "C"'
        if name in ("trace_id", "event_id")
        else "int8"
        if name in ("time_us", "ord", "size")
        else "text",
    )
    for name in ITEM_COLUMNS.split(", ")
)
STAGE_ITEMS = f"COPY {NEW_ITEMS} ({ITEM_COLUMNS}) FROM STDIN"
#: the staged items folded in at once, in key order (the lock order); says which it added.
UPSERT_STAGED_ITEMS = (
    UPSERT_ITEM.replace(
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        f" SELECT {ITEM_COLUMNS} FROM {NEW_ITEMS} ORDER BY tenant, trace_id, kind, digest",
    )
    + " RETURNING tenant, trace_id, kind, digest, xmax = 0"
)


def _prepare(conn: psycopg.Connection[Any]) -> None:
    """Pool ``configure`` hook: give each new connection its staging tables, and plan its
    queries without parallel workers: every query reads a bounded range, and starting
    workers takes longer than such a query (a search that scans summaries by recency
    until it has a page was planned in parallel, and waited for its workers to start)."""
    with conn.transaction():
        conn.execute(_staging(NEW_EVENTS, _EVENT_COLUMNS))
        conn.execute(_staging(NEW_TRACES, _TRACE_TYPES))
        conn.execute(_staging(NEW_ITEMS, _ITEM_TYPES))
        conn.execute("SET max_parallel_workers_per_gather = 0")


def _copy(cur: Cursor, statement: str, rows: Sequence[Sequence[Any]]) -> None:
    assert isinstance(cur, psycopg.Cursor)
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


#: SQLSTATEs of text PostgreSQL cannot store; None: refused by psycopg (NUL characters).
_UNSTORABLE_TEXT = frozenset({None, "22021", "22P05"})


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


#: the advisory lock the stall sweep holds for its transaction: one sweeper at a time.
STALL_SWEEP_LOCK = 0x5741_594D_5354_4C4C  # "WAYMSTLL"


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

    def __init__(
        self,
        url: str | StoreURL,
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
        address = parse_store_url(url) if isinstance(url, str) else url
        if address.kind != "postgresql":
            raise ValueError(f"not a PostgreSQL URL: {address.shown} is a {address.kind} store")
        self.where = address.shown
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._pool = ConnectionPool(
            address.target,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            configure=_prepare,
            check=ConnectionPool.check_connection,
            kwargs=(
                None if "application_name" in address.target else {"application_name": "waymark"}
            ),
            name="waymark",
        )
        try:
            self._pool.open(wait=True, timeout=open_timeout)
        except psycopg.OperationalError as exc:
            self._pool.close()
            raise Unavailable(f"cannot connect to {self.where}: {exc}") from exc
        try:
            migrate.check(self._read(_revision), self.where)
            self._schema: str = self._read(_schema)
        except BaseException:
            self._pool.close()
            raise
        self._target = address.target
        #: this store's name in its change notices: a process passes over its own
        self.origin = uuid.uuid4().hex

    # -- connections ------------------------------------------------------------------------

    def _read(self, work: Callable[[Cursor], T]) -> T:
        return self._run(work)

    def _write(self, work: Callable[[Cursor], T], size: int = 1) -> T:
        return self._run(work)

    def _run(self, work: Callable[[Cursor], T]) -> T:
        """Run ``work`` in one transaction on a pooled connection, again on connectivity
        errors and deadlocks; the only way this store reaches its connections."""
        for attempt in range(self.attempts):
            try:
                with (
                    self._pool.connection() as conn,
                    conn.transaction(),
                    conn.cursor() as cur,
                ):
                    return work(cur)
            except psycopg.DataError as exc:
                if exc.sqlstate not in _UNSTORABLE_TEXT:
                    raise
                # Text PostgreSQL cannot hold (a NUL character): the caller's input, not a fault.
                detail = f"a text value cannot be stored in PostgreSQL: {exc}"
                raise BadRequest(detail, [{"loc": ["body"], "msg": detail}]) from exc
            except psycopg.errors.ReadOnlySqlTransaction as exc:
                # A standby, or a database set read-only: no retry makes it take writes.
                raise Unavailable(f"{self.where} takes no writes: {exc}") from exc
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

    def _upsert_items(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """One upsert of the staged rows, which returns those it inserted (``xmax = 0``):
        right with concurrent writers, since an upsert waits for the row another has
        inserted and not committed yet, then finds it."""
        _copy(cur, STAGE_ITEMS, rows)
        cur.execute(UPSERT_STAGED_ITEMS)
        return [tuple(row[:4]) for row in cur.fetchall() if row[4]]

    def _insert_steps(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        cur.execute(INSERT_STEPS, [list(column) for column in zip(*rows, strict=True)])

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

    # -- webhooks ----------------------------------------------------------------------------

    def _lock_traces(self, cur: Cursor, keys: Sequence[tuple[str, str]]) -> None:
        # Transaction-level advisory locks, taken in one order by every writer.
        cur.execute(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, 0) AS h"
            " FROM unnest(%s::text[]) AS k ORDER BY 1) AS locks",
            ([f"{tenant}:{trace_id}" for tenant, trace_id in keys],),
        )

    def _trace_states(
        self, cur: Cursor, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], webhooks.TraceState]:
        # A join with the keys as arrays: the planner looks them up by the primary key, or
        # hashes them, where an IN list over a table whose statistics lag (a young one)
        # scans every row of the tenant.
        cur.execute(
            f"SELECT t.tenant, t.trace_id, {webhooks.STATE_COLUMNS}"
            " FROM unnest(%s::text[], %s::text[]) AS k(tenant, trace_id)"
            " JOIN traces t ON t.tenant = k.tenant AND t.trace_id = k.trace_id",
            ([tenant for tenant, _ in keys], [trace_id for _, trace_id in keys]),
        )
        return {
            (tenant, trace_id): webhooks.state_of(*row) for tenant, trace_id, *row in cur.fetchall()
        }

    def _add_counts(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        # One statement for the whole batch: one UPDATE per trace cost about 1 ms each on
        # the server (docs/BENCHMARKS.md), ten times the rest of an append's per-trace work.
        errors, paths, tenants, trace_ids = zip(*rows, strict=True)
        cur.execute(
            "UPDATE traces t SET error_count = t.error_count + k.errors,"
            " path_count = t.path_count + k.paths"
            " FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[])"
            " AS k(errors, paths, tenant, trace_id)"
            " WHERE t.tenant = k.tenant AND t.trace_id = k.trace_id",
            (list(errors), list(paths), list(tenants), list(trace_ids)),
        )

    def _announce(self, cur: Cursor, keys: Sequence[tuple[str, str]]) -> None:
        cur.execute(ANNOUNCE, (list(changefeed.payloads(self._schema, self.origin, keys)),))

    async def follow_changes(self, changed: Callable[[list[tuple[str, str]]], None]) -> None:
        """Every change other processes commit, from their notices (:mod:`.changefeed`)."""
        await changefeed.follow(self._target, self._schema, self.origin, changed)

    def _claim_clause(self) -> str:
        return " FOR UPDATE SKIP LOCKED"

    def _sweep_alone(self, cur: Cursor) -> bool:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (STALL_SWEEP_LOCK,))
        return bool(cur.fetchone()[0])

    def durability_warnings(self) -> list[str]:
        return self._read(self._durability_warnings)

    def _durability_warnings(self, cur: Cursor) -> list[str]:
        cur.execute(READ_DURABILITY_SETTINGS)
        settings = {str(name): str(value) for name, value in cur.fetchall()}
        return durability_warnings_of(settings, self.where)

    def close(self) -> None:
        self._pool.close()


def _schema(cur: Cursor) -> str:
    """The schema this store's tables are in (its URL's search path)."""
    cur.execute("SELECT current_schema()")
    return str(cur.fetchone()[0])


def _revision(cur: Cursor) -> str | None:
    """The schema's Alembic revision; None if it has none."""
    cur.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT version_num FROM alembic_version")
    row = cur.fetchone()
    return None if row is None else str(row[0])
