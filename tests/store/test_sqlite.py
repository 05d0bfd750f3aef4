"""What only the SQLite store does: keep the planner's statistics good enough for search,
and read through connections of each thread's own (its one writer: test_sqlite_writer)."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.store.conftest import rec
from waymark.model import State
from waymark.store.base import TraceQuery
from waymark.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]


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
        plan = _search_plan(store, query)
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
        plan = _search_plan(store, query)
        assert "ix_traces_failed" in plan, plan
        found = store.search("default", query).items
        assert [s.trace_id for s in found] == ["t4007", "t3007", "t2007", "t1007", "t7"]
    finally:
        store.close()


def test_nulls_and_flags_are_stored_as_null_and_integers(tmp_path: Path) -> None:
    """None and bool bind through adapters the store registers (a speed trick): rows still
    hold NULL and 0/1, as SQLite's own binding gives them."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        store.append([rec("t1", "e1", trace_status="FINISHED"), rec("t2", "e2")])
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "w.db")) as conn:
        rows = conn.execute(
            "SELECT event_id, finishing, typeof(finishing), typeof(operation), typeof(errors)"
            " FROM events ORDER BY event_id"
        ).fetchall()
        assert rows == [
            ("e1", 1, "integer", "null", "null"),
            ("e2", 0, "integer", "null", "null"),
        ]
        (fin,) = conn.execute(
            "SELECT typeof(fin_event_id) FROM traces WHERE trace_id = 't2'"
        ).fetchone()
        assert fin == "null"


def test_every_thread_reads_what_was_committed_before_it_asked(tmp_path: Path) -> None:
    """Readers are connections of each thread's own, kept open between reads: each sees
    every write committed before its read began, whichever thread wrote it."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    seen: dict[int, list[int]] = {}
    written = [threading.Event() for _ in range(4)]
    read = [threading.Barrier(5) for _ in range(4)]

    def reader(r: int) -> None:
        seen[r] = []
        for step in range(4):
            written[step].wait(5)
            summary = store.summary("default", "t")
            seen[r].append(0 if summary is None else summary.event_count)
            read[step].wait(5)

    try:
        threads = [threading.Thread(target=reader, args=(r,)) for r in range(4)]
        for thread in threads:
            thread.start()
        for step in range(4):
            store.append([rec("t", f"e{step}")])
            written[step].set()
            read[step].wait(5)
        for thread in threads:
            thread.join()
        assert seen == {r: [1, 2, 3, 4] for r in range(4)}
    finally:
        store.close()


def _search_plan(store: SQLiteStore, query: TraceQuery) -> str:
    """How the store's reading connection of this thread would run the search."""
    sql, params = store.search_sql("default", query, limit=20, cursor=None, now=0)

    def explain(cur: Any) -> str:
        cur.execute("EXPLAIN QUERY PLAN " + sql, params)
        return " ".join(str(row[3]) for row in cur.fetchall())

    return store._read(explain)


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


def test_readers_plan_by_the_statistics_another_process_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker's ANALYZE is not heard of here: a reader is also opened anew every
    ``READER_RENEW_S``, and then plans by it."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    query = TraceQuery(domain_id="ds2/1", component="writer")
    monkeypatch.setattr("waymark.store.sqlite.READER_RENEW_S", 0.0)
    store = SQLiteStore(url)
    try:
        assert "ix_traces_updated" in _search_plan(store, query)  # the reader opens now
        grow_by_another_process(url)
        assert "ix_traces_domain_id" in _search_plan(store, query)
    finally:
        store.close()


def test_readers_keep_their_plans_until_renewed(tmp_path: Path) -> None:
    """The counterpart: with the default ``READER_RENEW_S``, a reader opened before another
    process's ANALYZE still plans by what it loaded (the renewal is what brings the new
    statistics in, not chance)."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    query = TraceQuery(domain_id="ds2/1", component="writer")
    store = SQLiteStore(url)
    try:
        assert "ix_traces_updated" in _search_plan(store, query)
        grow_by_another_process(url)
        assert "ix_traces_updated" in _search_plan(store, query)
    finally:
        store.close()


GROW = """
import sys
from tests.store.conftest import rec
from waymark.store.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
records = [
    rec(f"t{i}", f"e{i}", at=i, domain_id=f"ds{i % 20}/1",
        component="writer" if i % 2 else "reader")
    for i in range(30_000)
]
for start in range(0, len(records), 2_000):
    store.append(records[start : start + 2_000])  # the statistics refresh as it grows
store.close()
"""


def grow_by_another_process(url: str) -> None:
    subprocess.run([sys.executable, "-c", GROW, url], check=True, cwd=ROOT, timeout=120)
