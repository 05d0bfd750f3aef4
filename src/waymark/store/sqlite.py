"""The embedded store: one SQLite file in WAL mode.

One writer connection behind a lock (SQLite has one writer at a time anyway) and
one reader connection per thread. Writers in other processes (the workers of
``waymark serve --workers N``, the CLI) queue on an advisory lock of their own, the
file ``<database>-writer``: the next one starts the moment the last one commits,
where SQLite's own busy handler would have it sleep and retry (1, 2, 5, 10 ms...),
which left two workers no faster than one. A writer takes its turn in a thread and
then writes on the event loop (:attr:`Store.inline_writes`). The schema is created or
upgraded on open (:mod:`waymark.store.migrate`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from waymark.errors import Unavailable
from waymark.model import Record
from waymark.pipelines import Pipelines
from waymark.store import migrate
from waymark.store.sql import INSERT_EVENT, Cursor, SqlStore

_CHUNK = 500  # parameters per IN (...) lookup

#: a reading connection is opened anew after each ANALYZE of this process, and at least
#: this often (for other processes' ANALYZE): SQLite reads the planner's statistics when it
#: loads the schema, and an ANALYZE that refreshes them leaves the schema as it was, so a
#: connection opened on a small file kept planning by its first statistics.
READER_RENEW_S = 300.0

#: how much of the file each reading connection reads through a memory map (SQLite caps it
#: at 2 GiB); the rest, and the WAL, are read with a system call per page, as before.
MMAP_BYTES = 2 << 30

# sqlite3 binds exact int, float, str and bytearray values directly and sends every other
# value, None and bool included, through its adapter registry; on a miss it then looks for
# ``__adapt__`` and ``__conform__``, raising and formatting an AttributeError for each. An
# event row holds a bool and several NULLs, a summary row a dozen NULLs: that lookup was 12%
# of the instructions of a 500-event append (docs/BENCHMARKS.md). Registered, they bind as
# before (NULL, 0 or 1) at the cost of one call; neither is a base type, so the other types
# keep their direct path.
sqlite3.register_adapter(type(None), lambda value: value)
sqlite3.register_adapter(bool, int)


def path_of(url: str) -> str:
    """``sqlite:///./waymark.db`` -> ``./waymark.db``; ``sqlite:////tmp/x.db`` -> ``/tmp/x.db``."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a SQLite URL: {url!r} (expected sqlite:///path/to/file.db)")
    if url[len("sqlite:///") :] in ("", ":memory:"):
        raise ValueError(f"{url!r}: Waymark's SQLite store needs a file (sqlite:///path.db)")
    return url[len("sqlite:///") :]


class SQLiteStore(SqlStore):
    inline_reads = True
    inline_writes = True

    def __init__(self, url: str, pipelines: Pipelines | None = None) -> None:
        super().__init__(pipelines)
        self.path = path_of(url)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(f"sqlite:///{self.path}", self.path)
        self._lock = threading.Lock()
        self._writer_lock = _open_writer_lock(self.path)
        self._turn = False  # this process holds the writers' lock ahead of its next write
        self._writer = self._connect()
        self._data_version = self._writer.execute("PRAGMA data_version").fetchone()[0]
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        row = self._writer.execute("SELECT max(rowid) FROM events").fetchone()
        self._analyzed_at = 0
        self._analyses = 0  # how many times this process has refreshed the statistics
        self._events = int(row[0] or 0)
        self._analyze_if_grown()

    def _analyze_if_grown(self) -> None:
        """Refresh the planner's statistics each time the events table has doubled.

        Without them SQLite prefers whichever index matches ``ORDER BY updated_us`` and
        filters row by row, which a selective search (one dataset's traces) pays for.
        ``analysis_limit`` keeps the run over the big tables to milliseconds whatever
        their size; ``traces`` (a tenth of the rows) is analysed in full, since sampled
        statistics make every one of its indexes look equally selective and a search by
        dataset then scanned every trace (0.9 s at 10,000,000 events instead of 2 ms).
        """
        if self._events < max(1000, 2 * self._analyzed_at):
            return
        self._writer.execute("PRAGMA analysis_limit=1000")
        self._writer.execute("ANALYZE")
        self._writer.execute("PRAGMA analysis_limit=0")
        self._writer.execute("ANALYZE traces")
        self._analyzed_at = self._events
        self._analyses += 1

    def _connect(self, *, reader: bool = False) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open {self.path}: {exc}") from exc
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit syncs the WAL before it returns, so that what a producer was told
        # is stored survives a power loss or an OS crash, not only a crash of the process
        # (with NORMAL, SQLite syncs only at checkpoints). The direct sink's group commit
        # shares one sync among the requests that arrive while one runs.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA wal_autocheckpoint=10000")
        if reader:
            # Pages read through a memory map instead of a read() per page: a summary GET
            # with 1,000,000 events stored touches a dozen pages that SQLite's own cache does
            # not hold, and a system call costs this kind of VM dearly (summary GETs +36%).
            # The writer keeps read(): with a map it was no faster (batches and single POSTs
            # within the noise), and its checkpoints, which grow the file, need not remap.
            conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        return conn

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Cursor]:
        with self._lock, self._holding_the_writers_lock():
            if not self._turn:  # a turn has begun the transaction already
                self._begin()
            self._turn = False
            cur = self._writer.cursor()
            try:
                yield cur
            except sqlite3.OperationalError as exc:  # disk full, I/O error, locked
                self._writer.rollback()
                raise Unavailable(f"SQLite write failed: {exc}") from exc
            except BaseException:
                self._writer.rollback()
                raise
            else:
                try:
                    cur.execute("COMMIT")
                except sqlite3.OperationalError as exc:
                    self._writer.rollback()
                    raise Unavailable(f"SQLite commit failed: {exc}") from exc
            finally:
                cur.close()

    def _begin(self) -> None:
        """Begin a write transaction (the writers' lock held). A refresh of the planner's
        statistics that the last append made due runs first: ANALYZE writes too, and here
        it runs in whichever thread is about to write, for the direct sink the writer
        thread taking its turn, never the event loop that appends inline."""
        try:
            self._analyze_if_grown()
            self._writer.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"SQLite is busy: {exc}") from exc

    @contextlib.contextmanager
    def _holding_the_writers_lock(self) -> Iterator[None]:
        """Take the writers' lock unless a turn holds it already; either way, give it back
        after (``flock`` waits without the GIL)."""
        if not self._turn:
            fcntl.flock(self._writer_lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._writer_lock, fcntl.LOCK_UN)

    def take_turn(self) -> None:
        """Take the writers' lock, then SQLite's own (``BEGIN IMMEDIATE``): a program that is
        not Waymark (a ``sqlite3`` shell) may hold that one, and this wait belongs in the
        writer thread that calls this, not on the event loop that appends next."""
        fcntl.flock(self._writer_lock, fcntl.LOCK_EX)
        try:
            with self._lock:
                self._begin()
                self._turn = True
        except BaseException:
            fcntl.flock(self._writer_lock, fcntl.LOCK_UN)
            raise

    def end_turn(self) -> None:
        with self._lock:
            if self._turn:
                self._turn = False
                try:
                    self._writer.rollback()  # nothing was written in it
                finally:
                    fcntl.flock(self._writer_lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Cursor]:
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
        cur = conn.cursor()
        try:
            yield cur
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"SQLite read failed: {exc}") from exc
        finally:
            cur.close()

    def _insert_new(
        self, cur: Cursor, records: Sequence[Record], rows: list[tuple[Any, ...]]
    ) -> list[Record]:
        """Insert straight away; only if an event is already stored (a re-send, rare) undo
        that and look up which ones are, then insert the rest."""
        cur.execute("SAVEPOINT fresh_events")
        try:
            cur.executemany(INSERT_EVENT, rows)
        except sqlite3.IntegrityError:
            cur.execute("ROLLBACK TO fresh_events")
            cur.execute("RELEASE fresh_events")
        else:
            cur.execute("RELEASE fresh_events")
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
            cur.executemany(INSERT_EVENT, [rows[i] for i in new])
            self._events += len(new)
        return [records[i] for i in new]

    def written_elsewhere(self) -> bool | None:
        """``PRAGMA data_version`` of the writer connection changes only when another
        connection commits. While our own write holds the connection, say no: the next
        look will see what the others did meanwhile."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            (version,) = self._writer.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            return None
        finally:
            self._lock.release()
        changed: bool = version != self._data_version
        self._data_version = version
        return changed

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._lock:
            self._writer.close()
            os.close(self._writer_lock)


def _open_writer_lock(path: str) -> int:
    try:
        return os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise Unavailable(f"cannot open {path}-writer (the writers' lock): {exc}") from exc
