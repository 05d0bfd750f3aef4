"""The embedded store: one SQLite file in WAL mode.

One writer thread per store owns the writing connection: every write (append, dataset
details, dead letters, the planner's statistics) is a job on its queue, and the caller,
in whatever thread, waits for the job's result. The thread takes the jobs that are
waiting into one transaction (group commit), each job in a savepoint of its own, so that
one job's failure undoes that job alone and is raised to its caller alone; a failed
commit fails every job of the group. Reads go through one connection per thread.

Writers in other processes (the workers of ``waymark serve --workers N``, the CLI)
queue on an advisory lock of their own, the file ``<database>-writer``, taken around
each transaction: the next one starts the moment the last one commits, where SQLite's
own busy handler would have it sleep and retry. SQLite's own lock is still waited for
(``busy_timeout``) when another program holds it; that wait, like every write, happens
in the writer thread. The schema is created or upgraded on open
(:mod:`waymark.store.migrate`).
"""

from __future__ import annotations

import fcntl
import functools
import itertools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Generic, TypeVar

from waymark.errors import Unavailable
from waymark.model import Record
from waymark.pipelines import Pipelines
from waymark.store import migrate
from waymark.store.sql import (
    INSERT_EVENT,
    INSERT_PATH,
    INSERT_STEP,
    UPSERT_ITEM,
    UPSERT_TRACE,
    Cursor,
    Prepared,
    SqlStore,
)
from waymark.store.url import StoreURL, parse_store_url

T = TypeVar("T")

log = logging.getLogger(__name__)

_CHUNK = 500  # parameters per IN (...) lookup

#: at most this many rows (about: events, details, letters) go into one transaction; a
#: job larger than that has one to itself.
GROUP_ROWS = 5000

#: a reading connection is opened anew after each ANALYZE of this process, and at least
#: this often (for other processes' ANALYZE): SQLite reads the planner's statistics when it
#: loads the schema, and an ANALYZE that refreshes them leaves the schema as it was, so a
#: connection opened on a small file kept planning by its first statistics.
READER_RENEW_S = 300.0

#: how much of the file each reading connection reads through a memory map (SQLite caps it
#: at 2 GiB); the rest, and the WAL, are read with a system call per page.
MMAP_BYTES = 2 << 30

#: every connection's settings, in one place.
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # FULL: each commit syncs the WAL before it returns, so that what a producer was told is
    # stored survives a power loss or an OS crash, not only a crash of the process (with
    # NORMAL, SQLite syncs only at checkpoints). Group commit shares one sync among the
    # writes that wait while one runs.
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",  # ms another program's write lock is waited for
    "PRAGMA cache_size=-65536",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA wal_autocheckpoint=10000",
)
#: a reading connection's, besides: pages read through a memory map instead of a system
#: call each, which virtual machines make dear. The writer keeps read(): its checkpoints
#: grow the file, and a map would have to follow.
READER_PRAGMAS = (f"PRAGMA mmap_size={MMAP_BYTES}",)


def _bind_none_and_bool_directly() -> None:
    """Register adapters for None and bool, which a row holds many of.

    sqlite3 binds exact int, float, str and bytearray values directly and sends every other
    value through its adapter registry; on a miss it then looks for ``__adapt__`` and
    ``__conform__``, raising and formatting an AttributeError for each, a cost that showed
    in every append (docs/BENCHMARKS.md). Registered, they bind as before (NULL, 0 or 1)
    at the cost of one call; neither is a base type, so other types keep their direct path.
    """
    sqlite3.register_adapter(type(None), lambda value: value)
    sqlite3.register_adapter(bool, int)


_bind_none_and_bool_directly()

#: the most rows one statement writes (fewer if SQLite binds fewer parameters).
ROWS_PER_STATEMENT = 1024


def _write_rows(cur: Cursor, insert: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``insert`` (one row's statement) for every row, as few statements as can hold
    them (:func:`_statements`)."""
    for sql, params in rows.statements if isinstance(rows, _Rows) else _statements(insert, rows):
        cur.execute(sql, params)


def _statements(insert: str, rows: Sequence[Sequence[Any]]) -> list[tuple[str, list[Any]]]:
    """``insert`` (one row's statement) for every row, as few statements of many rows as
    SQLite takes, with their parameters.

    sqlite3 gives up the GIL for each statement it runs and waits for it after: a writer
    thread that ran one statement per row waited for the GIL once per row while the event
    loop ran Python, holding the writers' lock meanwhile. A statement's rows are padded
    with NULLs (which it skips) to a power of two, so that the few texts there are stay in
    sqlite3's statement cache: preparing one of many rows costs about what running it
    does."""
    most = _rows_per_statement(insert)
    out = []
    for start in range(0, len(rows), most):
        chunk = rows[start : start + most]
        size = 1 << (len(chunk) - 1).bit_length()
        params = list(itertools.chain.from_iterable(chunk))
        if size > len(chunk):
            params += [None] * ((size - len(chunk)) * len(chunk[0]))
        out.append((_many_rows(insert, size), params))
    return out


class _Rows(list[tuple[Any, ...]]):
    """Rows, with their statements (:func:`_statements`) made ahead, in the thread that
    prepares the append, rather than in the writer's transaction."""

    def __init__(self, insert: str, rows: list[tuple[Any, ...]]) -> None:
        super().__init__(rows)
        self.statements = _statements(insert, rows)


@functools.cache
def _rows_per_statement(insert: str) -> int:
    limit = sqlite3.connect(":memory:").getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    fits = limit // insert.count("?")
    return min(ROWS_PER_STATEMENT, 1 << (fits.bit_length() - 1))


@functools.cache
def _many_rows(insert: str, rows: int) -> str:
    """``INSERT INTO t (..) VALUES (?, ..) [ON CONFLICT ..]`` as ``INSERT INTO t (..) SELECT *
    FROM (VALUES (?, ..), (?, ..), ..) WHERE column1 IS NOT NULL [ON CONFLICT ..]`` for
    ``rows`` rows, of which those whose first value is NULL are left out."""
    values = insert.index(" VALUES (")
    end = insert.index(")", values) + 1
    row = insert[values + len(" VALUES ") : end]
    return (
        f"{insert[:values]} SELECT * FROM (VALUES {', '.join([row] * rows)})"
        f" WHERE column1 IS NOT NULL{insert[end:]}"
    )


class _Job(Generic[T]):
    """A write for the writer thread: ``work`` runs with its cursor, ``result`` gets what it
    returns or raises; ``rows`` counts towards :data:`GROUP_ROWS`."""

    __slots__ = ("result", "rows", "work")

    def __init__(self, work: Callable[[Cursor], T], rows: int) -> None:
        self.work = work
        self.rows = rows
        self.result: Future[T] = Future()


_STOP: Any = object()  # put on the queue by close(): the writer thread ends


class SQLiteStore(SqlStore):
    #: One writer: every append waits for the deletion in progress, so a prune's
    #: transactions are kept to about what an append costs (docs/BENCHMARKS.md).
    prune_batch_traces = 20

    def __init__(self, url: str | StoreURL, pipelines: Pipelines | None = None) -> None:
        super().__init__(pipelines)
        address = parse_store_url(url) if isinstance(url, str) else url
        if address.kind != "sqlite":
            raise ValueError(f"not a SQLite URL: {address.shown} is a {address.kind} store")
        self.path = address.target
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer_lock = _open_writer_lock(self.path)
        try:
            fcntl.flock(self._writer_lock, fcntl.LOCK_EX)  # the upgrade writes too
            migrate.upgrade(address)
            fcntl.flock(self._writer_lock, fcntl.LOCK_UN)
            self._writer = self._connect()
            self._marker = self._connect()  # reads data_version only, under _marker_lock
        except BaseException:
            os.close(self._writer_lock)  # and with it the lock
            raise
        #: write transactions this store has committed (for metrics and tests).
        self.transactions = 0
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._marker_lock = threading.Lock()
        row = self._writer.execute("SELECT max(rowid) FROM events").fetchone()
        self._events = int(row[0] or 0)  # about how many events are stored
        self._analyzed_at = 0
        self._analyses = 0  # how many times this process has refreshed the statistics
        self._analysis_queued = False
        self._jobs: queue.SimpleQueue[_Job[Any]] = queue.SimpleQueue()
        self._closed = False
        self._closing = threading.Lock()  # no job is queued after the stop
        self._thread = threading.Thread(
            target=self._write_jobs, name=f"waymark-sqlite-writer:{self.path}", daemon=True
        )
        self._thread.start()
        self._queue_analysis_if_due()

    def _connect(self, *, reader: bool = False) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in (*PRAGMAS, *READER_PRAGMAS) if reader else PRAGMAS:
                conn.execute(pragma)
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open {self.path}: {exc}") from exc
        return conn

    # -- writes: jobs for the writer thread ------------------------------------------------

    def _write(self, work: Callable[[Cursor], T], size: int = 1) -> T:
        job = _Job(work, size)
        with self._closing:
            if self._closed:
                raise Unavailable(f"the store {self.path} is closed")
            self._jobs.put(job)
        return job.result.result()

    def _write_jobs(self) -> None:
        """The writer thread: take what waits, up to :data:`GROUP_ROWS`, into one transaction;
        until :meth:`close` stops it."""
        held: _Job[Any] | None = None  # taken off the queue, but for the next group
        while True:
            first = held if held is not None else self._jobs.get()
            held = None
            if first is _STOP:
                return
            group, rows = [first], first.rows
            while rows < GROUP_ROWS:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP or rows + job.rows > GROUP_ROWS:
                    held = job
                    break
                group.append(job)
                rows += job.rows
            try:
                self._commit(group)
            except BaseException as exc:  # a fault of this code: no caller may wait for ever
                log.exception("the SQLite writer failed a group of writes")
                _settle(group, Unavailable(f"SQLite write failed: {exc!r}"))

    def _commit(self, group: list[_Job[Any]]) -> None:
        """One transaction for the group, under the writers' lock; each job gets its result
        once the transaction is over."""
        jobs = [job for job in group if job.result.set_running_or_notify_cancel()]
        if not jobs:
            return
        cur = self._writer.cursor()
        fcntl.flock(self._writer_lock, fcntl.LOCK_EX)  # waits without the GIL
        try:
            try:
                cur.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # another program held it past busy_timeout
                _settle(jobs, Unavailable(f"SQLite is busy: {exc}"))
                return
            try:
                outcomes = _run_jobs(cur, jobs)
                if any(error is None for _, error in outcomes):  # else: rolled back below
                    cur.execute("COMMIT")
                    self.transactions += 1
            except sqlite3.Error as exc:  # the transaction is lost: every job with it
                _settle(jobs, Unavailable(f"SQLite write failed: {exc}"))
                return
        finally:
            if self._writer.in_transaction:  # never leave the writers' lock with it open
                self._rollback()
            fcntl.flock(self._writer_lock, fcntl.LOCK_UN)
            cur.close()
        self._queue_analysis_if_due()  # ahead of whatever the callers write next
        for job, (value, error) in zip(jobs, outcomes, strict=True):
            if error is None:
                job.result.set_result(value)
            else:
                job.result.set_exception(error)

    def _rollback(self) -> None:
        try:
            self._writer.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rolling back a failed SQLite write failed")

    # -- the planner's statistics ------------------------------------------------------------

    def _queue_analysis_if_due(self) -> None:
        """Refresh the planner's statistics each time the events table has doubled, as a job
        of its own, behind the writes already waiting. Without them SQLite prefers whichever
        index matches ``ORDER BY updated_us`` and filters row by row, which a selective
        search (one dataset's traces) pays for."""
        if self._analysis_queued or self._events < max(1000, 2 * self._analyzed_at):
            return
        self._analysis_queued = True
        job = _Job(self._analyze, 0)
        job.result.add_done_callback(self._analyzed)
        with self._closing:
            if not self._closed:
                self._jobs.put(job)

    def _analyze(self, cur: Cursor) -> int:
        """ANALYZE: ``analysis_limit`` keeps the run over the big tables short whatever their
        size; ``traces`` is analysed in full, since sampled statistics make every one of
        its indexes look equally selective and a search by dataset then scanned every
        trace. Returns the event count it was made for."""
        events = self._events
        cur.execute("PRAGMA analysis_limit=1000")
        cur.execute("ANALYZE")
        cur.execute("PRAGMA analysis_limit=0")
        cur.execute("ANALYZE traces")
        return events

    def _analyzed(self, done: Future[int]) -> None:
        """Once the statistics are committed, the next refresh is due at twice the events,
        and readers open anew to plan by them; if they were not, the next commit queues
        the refresh again."""
        if done.exception() is None:
            self._analyzed_at = done.result()
            self._analyses += 1
        self._analysis_queued = False

    def _prepare(self, records: Sequence[Record]) -> Prepared:
        todo = Prepared.of(records)
        todo.events = _Rows(INSERT_EVENT, todo.events)
        todo.paths = _Rows(INSERT_PATH, todo.paths)
        todo.items = _Rows(UPSERT_ITEM, todo.items)
        todo.steps = _Rows(INSERT_STEP, todo.steps)
        todo.traces = _Rows(UPSERT_TRACE, todo.traces)
        return todo

    # -- reads -------------------------------------------------------------------------------

    def _read(self, work: Callable[[Cursor], T]) -> T:
        cur = self._reader().cursor()
        try:
            return work(cur)
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"SQLite read failed: {exc}") from exc
        finally:
            cur.close()

    def _reader(self) -> sqlite3.Connection:
        """This thread's reading connection, opened anew after this process's ANALYZE and
        every :data:`READER_RENEW_S`."""
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and (
            local.analyses != self._analyses or time.monotonic() > local.renew_at
        ):
            with self._readers_lock:
                self._readers.remove(conn)
            conn.close()
            conn = None
        if conn is None:
            conn = self._connect(reader=True)
            local.conn = conn
            local.analyses = self._analyses
            local.renew_at = time.monotonic() + READER_RENEW_S
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _insert_new(
        self, cur: Cursor, records: Sequence[Record], rows: list[tuple[Any, ...]]
    ) -> list[Record]:
        """Insert straight away; only if an event is already stored (a re-send, rare) undo
        that and look up which ones are, then insert the rest."""
        if _insert_all(cur, rows):
            self._events += len(records)
            return list(records)
        existing: set[tuple[str, str]] = set()
        by_tenant: dict[str, list[str]] = {}
        for r in records:
            by_tenant.setdefault(r.tenant, []).append(r.event_id)
        for tenant, ids in by_tenant.items():
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                cur.execute(
                    "SELECT event_id FROM events WHERE tenant = ? AND event_id IN"
                    f" ({', '.join('?' for _ in chunk)})",
                    (tenant, *chunk),
                )
                existing.update((tenant, eid) for (eid,) in cur.fetchall())
        new = [i for i, r in enumerate(records) if (r.tenant, r.event_id) not in existing]
        if new:
            _write_rows(cur, INSERT_EVENT, [rows[i] for i in new])
            self._events += len(new)
        return [records[i] for i in new]

    def _insert_paths(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        _write_rows(cur, INSERT_PATH, rows)

    def _write_items(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        _write_rows(cur, UPSERT_ITEM, rows)

    def _insert_steps(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        _write_rows(cur, INSERT_STEP, rows)

    def _upsert_traces(
        self, cur: Cursor, rows: list[tuple[Any, ...]], returning: bool
    ) -> list[Sequence[Any]] | None:
        _write_rows(cur, UPSERT_TRACE, rows)
        return None

    def commit_marker(self) -> int | None:
        """``PRAGMA data_version`` of a connection that never writes: it changes whenever
        any other connection, this store's writer included, commits to the file."""
        with self._marker_lock:
            try:
                version: int = self._marker.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:
                return None
        return version

    def close(self) -> None:
        """Finish the writes already queued, then release every connection."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(_STOP)
        self._thread.join()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._marker_lock:
            self._marker.close()
        self._writer.close()
        os.close(self._writer_lock)


def _run_jobs(cur: Cursor, jobs: list[_Job[Any]]) -> list[tuple[Any, BaseException | None]]:
    """Run each job, in a savepoint of its own when it shares the transaction; return what
    each returned or raised. Raises :class:`sqlite3.Error` if the transaction is lost
    (SQLite rolls it all back on some errors: disk full, I/O error)."""
    if len(jobs) == 1:
        return [_run_alone(cur, jobs[0])]
    outcomes: list[tuple[Any, BaseException | None]] = []
    for job in jobs:
        cur.execute("SAVEPOINT job")
        try:
            value = job.work(cur)
        except Exception as exc:
            try:
                cur.execute("ROLLBACK TO job")
            except sqlite3.Error:
                raise exc from None  # SQLite rolled the whole transaction back on it
            cur.execute("RELEASE job")
            outcomes.append((None, _mapped(exc)))
        else:
            cur.execute("RELEASE job")
            outcomes.append((value, None))
    return outcomes


def _run_alone(cur: Cursor, job: _Job[Any]) -> tuple[Any, BaseException | None]:
    """A job alone in its transaction needs no savepoint: its failure undoes the whole
    transaction, which holds only that job, and saves two statements per write."""
    try:
        return job.work(cur), None
    except Exception as exc:
        return None, _mapped(exc)


def _insert_all(cur: Cursor, rows: list[tuple[Any, ...]]) -> bool:
    """Insert all the event rows, or none if one of them is stored already (False). A
    statement that fails undoes itself; several need a savepoint to undo the ones before."""
    alone = len(rows) <= _rows_per_statement(INSERT_EVENT)
    if not alone:
        cur.execute("SAVEPOINT fresh_events")
    try:
        _write_rows(cur, INSERT_EVENT, rows)
    except sqlite3.IntegrityError:
        if not alone:
            cur.execute("ROLLBACK TO fresh_events")
            cur.execute("RELEASE fresh_events")
        return False
    if not alone:
        cur.execute("RELEASE fresh_events")
    return True


def _mapped(exc: Exception) -> Exception:
    """What a job's caller is told: a failure of SQLite's (disk full, I/O error) is the
    store being unavailable; anything else, the job's own error as raised."""
    if isinstance(exc, sqlite3.OperationalError):
        unavailable = Unavailable(f"SQLite write failed: {exc}")
        unavailable.__cause__ = exc
        return unavailable
    return exc


def _settle(jobs: Iterable[_Job[Any]], error: BaseException) -> None:
    for job in jobs:
        if not job.result.done():
            job.result.set_exception(error)


def _open_writer_lock(path: str) -> int:
    try:
        return os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise Unavailable(f"cannot open {path}-writer (the writers' lock): {exc}") from exc
