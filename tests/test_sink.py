"""Group commit in the direct sink: concurrent requests share transactions, never failures."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from waymark.errors import Unavailable
from waymark.model import Event, Record, now_us, to_record
from waymark.sink import DirectSink
from waymark.store.base import AppendResult, TraceQuery
from waymark.store.postgres import PostgresStore
from waymark.store.sqlite import SQLiteStore
from waymark.summary import summarize
from waymark.watch import Watcher


class CountingStore(SQLiteStore):
    """A real SQLite store that counts its transactions and refuses trace 'boom'."""

    appends: list[int]

    def append(self, records: Sequence[Record], *, partials: bool = False) -> AppendResult:
        self.appends.append(len(records))
        if any(r.trace_id == "boom" for r in records):
            raise Unavailable("disk on fire")
        return super().append(records, partials=partials)


def rec(trace_id: str) -> Record:
    return to_record(Event(trace_id=trace_id), "t", now_us())


def loop_ticks_while_submitting(sink: DirectSink, trace_id: str) -> int:
    """Submit one event and count the 10 ms sleeps the event loop gets through meanwhile:
    none if the submit blocks the loop."""

    async def main() -> int:
        ticks = 0
        submitted = asyncio.ensure_future(sink.submit([rec(trace_id)]))
        while not submitted.done():
            await asyncio.sleep(0.01)
            ticks += 1
        await submitted
        return ticks

    return asyncio.run(main())


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    s = CountingStore(f"sqlite:///{tmp_path / 'w.db'}")
    s.appends = []
    return s


def test_concurrent_submits_share_transactions(store: CountingStore) -> None:
    sink = DirectSink(store, Watcher())

    async def main() -> None:
        await asyncio.gather(*(sink.submit([rec(f"t{i}")]) for i in range(50)))

    asyncio.run(main())
    assert sum(store.appends) == 50
    assert len(store.appends) < 50  # grouped
    assert len(store.search("t", TraceQuery(), limit=100).items) == 50


@pytest.mark.parametrize(("at_once", "appends"), [(1, [20]), (2, [10, 10])])
def test_with_several_appends_at_once_each_group_takes_its_share(
    store: CountingStore, at_once: int, appends: list[int]
) -> None:
    """Two batches waiting: one append at a time commits them together; two at once take
    one each, side by side, instead of one taking both while the other idles."""
    sink = DirectSink(store, Watcher(), appends_at_once=at_once)

    async def main() -> None:
        await asyncio.gather(*(sink.submit([rec(f"b{b}-{i}") for i in range(10)]) for b in (0, 1)))

    asyncio.run(main())
    assert sorted(store.appends) == appends
    assert len(store.search("t", TraceQuery(), limit=100).items) == 20


def test_a_failing_request_fails_alone(store: CountingStore) -> None:
    sink = DirectSink(store, Watcher())

    async def main() -> list[BaseException | None]:
        results = await asyncio.gather(
            *(sink.submit([rec("boom" if i == 3 else f"t{i}")]) for i in range(10)),
            return_exceptions=True,
        )
        return list(results)

    results = asyncio.run(main())
    assert isinstance(results[3], Unavailable)
    assert [r for i, r in enumerate(results) if i != 3] == [None] * 9
    for i in range(10):
        assert (store.summary("t", f"t{i}") is None) == (i == 3)
    assert store.summary("t", "boom") is None


def test_watchers_are_told_after_commit(store: CountingStore) -> None:
    watcher = Watcher()
    sink = DirectSink(store, watcher)
    told: list[tuple[str, str]] = []
    watcher.notify = lambda keys: told.extend(keys)  # type: ignore[method-assign]
    asyncio.run(sink.submit([rec("a"), rec("b")]))
    assert sorted(told) == [("t", "a"), ("t", "b")]


class OverlapCountingStore(PostgresStore):
    """The real PostgreSQL store, noting how many appends run at once."""

    running = 0
    most = 0
    lock = threading.Lock()

    def append(self, records: Sequence[Record], *, partials: bool = False) -> AppendResult:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.01)  # hold the slot long enough for a second group to start
            return super().append(records, partials=partials)
        finally:
            with self.lock:
                self.running -= 1


def test_postgres_groups_commit_in_parallel_and_summaries_stay_pure(pg_url: str) -> None:
    """The sink runs two appends at once; groups that share traces still fold into the
    summary the pure function gives."""
    store = OverlapCountingStore(pg_url)
    sink = DirectSink(store, Watcher())
    records = [
        to_record(
            Event(trace_id=f"p{i % 7}", end_time=1_795_000_000_000 + i,
                  trace_status="FINISHED" if i % 11 == 0 else "CONTINUE"),
            "t", now_us(),
        )
        for i in range(120)
    ]  # fmt: skip

    async def submit_later(i: int) -> None:
        await asyncio.sleep(i / 3 * 0.001)  # a stream of requests, not one burst
        await sink.submit(records[i : i + 3])

    async def main() -> None:
        await asyncio.gather(*(submit_later(i) for i in range(0, 120, 3)))

    try:
        asyncio.run(main())
        assert store.most == 2
        by_trace: dict[str, list[Record]] = {}
        for record in records:
            by_trace.setdefault(record.trace_id, []).append(record)
        stored = {s.trace_id: s for s in store.summaries("t", sorted(by_trace))}
        for trace_id, trace_records in by_trace.items():
            assert stored[trace_id] == summarize(trace_records, now_us=0, stall_timeout_us=None)
    finally:
        asyncio.run(sink.close())
        store.close()


def test_a_write_cancelled_while_it_waits_leaves_the_writers_lock_free(
    store: CountingStore, tmp_path: Path
) -> None:
    """If the loop stops (shutdown cancels its tasks) while the write waits for SQLite's
    lock (another program holds it), the write goes on in the writer thread; once it is
    done, the writers' lock is free again for every process of that file."""
    outside = sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
    outside.execute("BEGIN IMMEDIATE")
    sink = DirectSink(store, Watcher())

    async def main() -> asyncio.Future[None]:
        submitted = asyncio.ensure_future(sink.submit([rec("cancelled")]))
        await asyncio.sleep(0.1)  # the write waits for SQLite's lock; asyncio.run cancels it
        return submitted

    try:
        assert asyncio.run(main()).cancelled()
    finally:
        outside.rollback()
        outside.close()
    lock = os.open(tmp_path / "w.db-writer", os.O_RDWR)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the writers' lock was never given back"
                time.sleep(0.01)
        fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(lock)
    asyncio.run(sink.submit([rec("after")]))
    assert store.summary("t", "after") is not None


def test_an_outside_write_lock_holds_a_thread_not_the_loop(
    store: CountingStore, tmp_path: Path
) -> None:
    """Another program's write transaction on the file (a ``sqlite3`` shell, say) takes
    SQLite's own lock, which Waymark's writers' lock knows nothing of. The wait for it
    belongs to the writer thread: on the loop it would stall every request of the worker
    for as long as that program holds it."""
    outside = sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
    outside.execute("BEGIN IMMEDIATE")
    threading.Timer(0.4, outside.rollback).start()
    try:
        ticks = loop_ticks_while_submitting(DirectSink(store, Watcher()), "after")
    finally:
        outside.close()
    assert ticks >= 10  # about 30 of the 400 ms; none if the loop waited for SQLite's lock
    assert store.summary("t", "after") is not None


def test_statistics_are_refreshed_in_the_writer_thread_not_on_the_loop(
    store: CountingStore,
) -> None:
    """SQLite's ANALYZE (each time the events table doubles) takes long on a big file: it
    runs in the store's writer thread, never on the event loop."""
    analyses: list[int] = []

    def trace(statement: str) -> None:
        if statement.startswith("ANALYZE"):
            analyses.append(threading.get_ident())

    store._writer.set_trace_callback(trace)
    sink = DirectSink(store, Watcher())

    async def main() -> int:
        for batch in range(3):  # the first 1,000 events make the refresh due
            await sink.submit([rec(f"b{batch}-{i}") for i in range(600)])
        return threading.get_ident()

    try:
        loop_thread = asyncio.run(main())
    finally:
        asyncio.run(sink.close())
    assert analyses, "the statistics were never refreshed"
    assert loop_thread not in analyses
