"""What only the SQLite store does: keep the planner's statistics good enough for search,
queue writers of several processes on a lock of their own."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.store.conftest import rec
from waymark.model import State
from waymark.store.base import TraceQuery
from waymark.store.sqlite import SQLiteStore


def test_a_search_by_dataset_goes_by_the_dataset_index(tmp_path: Path) -> None:
    """Sampled statistics made every index on ``traces`` look equally selective, so a search
    by dataset scanned all traces by recency: one that matched none read every row."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        records = [
            rec(f"t{i}", f"e{i}", at=i, domain_id=f"ds{i % 20}/1",
                component="writer" if i % 2 else "reader")
            for i in range(30_000)
        ]  # fmt: skip
        for start in range(0, len(records), 2_000):
            store.append(records[start : start + 2_000])  # statistics refresh as it grows
        query = TraceQuery(domain_id="ds2/1", component="writer")  # ds2's traces all read
        sql, params = store.search_sql("default", query, limit=20, cursor=None, now=0)
        with store._reading() as cur:
            cur.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = " ".join(str(row[3]) for row in cur.fetchall())
        assert "ix_traces_domain_id" in plan, plan
        assert store.search("default", query).items == []
        found = store.search("default", TraceQuery(domain_id="ds3/1", component="writer"), limit=20)
        assert len(found.items) == 20 and {s.domain_id for s in found.items} == {"ds3/1"}
    finally:
        store.close()


def test_a_search_for_failures_goes_by_the_index_of_failed_traces(tmp_path: Path) -> None:
    """Failures are rare: finding them must not walk every summary by recency."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        records = [
            rec(f"t{i}", f"e{i}", at=i, trace_status="FINISHED",
                status="FAILED" if i % 1_000 == 7 else "SUCCESS")
            for i in range(5_000)
        ]  # fmt: skip
        store.append(records)
        query = TraceQuery(state=State.FAILED)
        sql, params = store.search_sql("default", query, limit=20, cursor=None, now=0)
        with store._reading() as cur:
            cur.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = " ".join(str(row[3]) for row in cur.fetchall())
        assert "ix_traces_failed" in plan, plan
        found = store.search("default", query).items
        assert [s.trace_id for s in found] == ["t4007", "t3007", "t2007", "t1007", "t7"]
    finally:
        store.close()


HOLD_THE_WRITE = """
import sys
from waymark.store.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
with store._writing():
    print("holding", flush=True)
    sys.stdin.readline()
store.close()
"""


def test_writers_in_other_processes_queue_on_the_writers_lock(tmp_path: Path) -> None:
    """Another process's write holds ``<file>-writer``; ours waits for it, then commits."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = SQLiteStore(url)
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_WRITE, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as other:
        assert other.stdout is not None and other.stdin is not None
        try:
            assert other.stdout.readline() == "holding\n"
            fd = os.open(tmp_path / "w.db-writer", os.O_RDWR)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
            appended = threading.Event()
            writer = threading.Thread(
                target=lambda: (store.append([rec("t1", "e1", at=1)]), appended.set())
            )
            writer.start()
            assert not appended.wait(0.3), "wrote while another process held the write"
            other.stdin.write("\n")
            other.stdin.flush()
            assert appended.wait(10)
            writer.join()
            summary = store.summary("default", "t1")
            assert summary is not None and summary.event_count == 1
        finally:
            other.kill()
            store.close()


def test_a_turn_holds_the_writers_lock_until_the_next_append_or_its_end(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    fd = os.open(tmp_path / "w.db-writer", os.O_RDWR)  # another open file: another writer

    def locked_by_store() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False

    try:
        store.take_turn()
        assert locked_by_store()
        store.append([rec("t1", "e1", at=1)])
        assert not locked_by_store()
        store.take_turn()
        store.end_turn()
        assert not locked_by_store()
        store.end_turn()  # nothing held: nothing to do
        assert store.summary("default", "t1") is not None
    finally:
        os.close(fd)
        store.close()


def test_nulls_and_flags_bind_through_registered_adapters(tmp_path: Path) -> None:
    """sqlite3 sends a parameter that is not an exact int, float, str or bytearray to its
    adapter registry, and on a miss raises and formats two AttributeErrors for it: 12% of
    the instructions of a 500-event append went there for the NULLs and the flag of each
    row. The store registers adapters for None and bool; rows still store NULL and 0/1."""
    protocol = sqlite3.PrepareProtocol
    assert (type(None), protocol) in sqlite3.adapters
    assert (bool, protocol) in sqlite3.adapters
    store = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        store.append([rec("t1", "e1", trace_status="FINISHED"), rec("t2", "e2")])
        rows = store._writer.execute(
            "SELECT event_id, finishing, typeof(finishing), typeof(operation), typeof(errors)"
            " FROM events ORDER BY event_id"
        ).fetchall()
        assert rows == [
            ("e1", 1, "integer", "null", "null"),
            ("e2", 0, "integer", "null", "null"),
        ]
        (fin,) = store._writer.execute(
            "SELECT typeof(fin_event_id) FROM traces WHERE trace_id = 't2'"
        ).fetchone()
        assert fin == "null"
    finally:
        store.close()


def test_reads_go_through_a_memory_map_and_writes_do_not(tmp_path: Path) -> None:
    """A reading connection maps the file (no system call per page read, which this kind of
    VM makes dear); the writer reads with system calls as before."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        store.append([rec("t1", "e1")])
        assert store.summary("default", "t1") is not None
        with store._reading() as cur:
            cur.execute("PRAGMA mmap_size")
            assert cur.fetchone()[0] > 0
        assert store._writer.execute("PRAGMA mmap_size").fetchone()[0] == 0
    finally:
        store.close()


def _search_plan(store: SQLiteStore, query: TraceQuery) -> str:
    sql, params = store.search_sql("default", query, limit=20, cursor=None, now=0)
    with store._reading() as cur:
        cur.execute("EXPLAIN QUERY PLAN " + sql, params)
        return " ".join(str(row[3]) for row in cur.fetchall())


def test_a_reader_opened_on_a_small_file_plans_by_the_statistics_of_the_grown_one(
    tmp_path: Path,
) -> None:
    """SQLite loads the planner's statistics with the schema, and a later ANALYZE leaves the
    schema as it was: a server started on an empty file kept the statistics of its first
    thousand events (here all of one dataset) and searched by dataset through the recency
    index for ever. Readers are opened anew after each ANALYZE."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    query = TraceQuery(domain_id="ds2/1", component="writer")
    try:
        assert "ix_traces_updated" in _search_plan(store, query)  # the reader opens now
        records = [
            rec(f"t{i}", f"e{i}", at=i, domain_id=f"ds{i % 20}/1" if i >= 1_500 else "ds0/1",
                component="writer" if i % 2 else "reader")
            for i in range(30_000)
        ]  # fmt: skip
        for start in range(0, len(records), 2_000):
            store.append(records[start : start + 2_000])
        plan = _search_plan(store, query)
        assert "ix_traces_domain_id" in plan, plan
    finally:
        store.close()


def test_readers_are_opened_anew_now_and_then_for_other_processes_statistics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker's ANALYZE is not seen here: a reader is also renewed every
    ``READER_RENEW_S``."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = SQLiteStore(url)
    try:
        with store._reading():
            first = store._local.conn
        with store._reading():
            assert store._local.conn is first
    finally:
        store.close()
    monkeypatch.setattr("waymark.store.sqlite.READER_RENEW_S", 0.0)
    store = SQLiteStore(url)
    try:
        with store._reading():
            first = store._local.conn
        with store._reading():
            assert store._local.conn is not first
        assert len(store._readers) == 1
    finally:
        store.close()
