"""The SQLite store's one writer: every write of a process goes through one thread, which
commits the writes waiting together in one transaction, each in a savepoint of its own;
writers of several processes take turns on the file's writers' lock."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.store.conftest import rec
from waymark.errors import Unavailable
from waymark.model import Record, now_us
from waymark.sink import DirectSink
from waymark.store.base import DatasetDetails
from waymark.store.sqlite import SQLiteStore
from waymark.summary import summarize
from waymark.watch import Watcher

ROOT = Path(__file__).resolve().parents[2]
TRACES = [f"t{i}" for i in range(5)]
THREADS, WRITES = 3, 60  # threads writing per process, and writes per thread (and loop)


class Unbindable:
    """A value SQLite cannot bind: a write holding one fails half-way, inside its
    transaction, after the rows before it were written."""


def with_an_unbindable_path(record: Record) -> Record:
    """The record, touching a "path" SQLite cannot bind: its append fails half-way, once
    its events are written, at its paths."""
    return record._replace(paths=(("not", "a path"),))


# -- writes that can be made again from their names, in any process ---------------------------


def append_of(name: str) -> tuple[list[Record], bool]:
    """The records of the append called ``name``, and whether it is made to fail: a fifth
    of them carry an unbindable value in their last record."""
    rng = random.Random(name)
    fails = rng.random() < 0.2
    records = [
        rec(
            rng.choice(TRACES),
            f"{name}/{i}",
            at=rng.randrange(1, 50) * 1_000_000,
            component=rng.choice(["router", "writer", "indexer"]),
            trace_status=rng.choice(["CONTINUE", "CONTINUE", "FINISHED"]),
            status=rng.choice(["SUCCESS", "FAILED", "IN_PROGRESS"]),
            path=f"/data/{name}/{i}",
        )
        for i in range(rng.randint(2, 6))
    ]
    if fails:
        records[-1] = with_an_unbindable_path(records[-1])
    return records, fails


def details_of(name: str) -> tuple[list[DatasetDetails], bool]:
    """The dataset details of the write called ``name`` (one dataset id each, so that no
    other write touches their rows), and whether it is made to fail."""
    rng = random.Random(name)
    fails = rng.random() < 0.2
    details = [
        DatasetDetails("default", rng.choice(TRACES), f"{name}/{i}", "1", "csv", i, 1, 2)
        for i in range(rng.randint(2, 4))
    ]
    if fails:
        details[-1] = dataclasses.replace(details[-1], record_count=Unbindable())  # type: ignore[arg-type]
    return details, fails


def hammer(store: SQLiteStore, who: str, threads: int, writes: int) -> dict[str, bool]:
    """Write to the store from ``threads`` threads (appends and dataset details, in turn)
    and from an event loop through the direct sink, all at once; return whether each
    write succeeded, by name."""
    outcomes: dict[str, bool] = {}

    def attempt(name: str, write: Callable[[], object]) -> None:
        try:
            write()
        except (sqlite3.Error, Unavailable):
            outcomes[name] = False
        else:
            outcomes[name] = True

    def from_a_thread(t: int) -> None:
        for k in range(writes):
            name = f"{who}-{t}-{k}"
            if k % 2:
                attempt(name, functools.partial(store.put_dataset_details, details_of(name)[0]))
            else:
                attempt(name, functools.partial(store.append, append_of(name)[0]))

    async def from_the_loop() -> None:
        sink = DirectSink(store, Watcher())

        async def submit(name: str) -> None:
            await asyncio.sleep(random.random())  # spread over the threads' run
            try:
                await sink.submit(append_of(name)[0])
            except (sqlite3.Error, Unavailable):
                outcomes[name] = False
            else:
                outcomes[name] = True

        async def parse_requests() -> None:
            """The loop's other work (a server's loop parses requests): busy now and then."""
            while True:
                busy_until = time.perf_counter() + 0.002
                while time.perf_counter() < busy_until:
                    pass
                await asyncio.sleep(0.001)

        parsing = asyncio.ensure_future(parse_requests())
        await asyncio.gather(*(submit(f"{who}-sink-{k}") for k in range(writes)))
        parsing.cancel()
        await sink.close()

    workers = [threading.Thread(target=from_a_thread, args=(t,)) for t in range(threads)]
    workers.append(threading.Thread(target=asyncio.run, args=(from_the_loop(),)))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return outcomes


HAMMER = """
import json, sys
from tests.store.test_sqlite_writer import THREADS, WRITES, hammer
from waymark.store.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
print(json.dumps(hammer(store, sys.argv[2], THREADS, WRITES)), flush=True)
store.close()
"""


@contextlib.contextmanager
def watching_the_writers_lock(path: Path) -> Iterator[list[str]]:
    """Meanwhile, take the writers' lock again and again and, holding it, try SQLite's
    own without waiting: a Waymark writer that holds SQLite's lock without the writers'
    lock (one whose transaction outlived its turn on the lock) is caught in the act."""
    caught: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        lock = os.open(f"{path}-writer", os.O_RDWR)
        conn = sqlite3.connect(path, isolation_level=None, timeout=0)
        try:
            while not stop.is_set():
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    caught.append(str(exc))
                else:
                    conn.execute("ROLLBACK")
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
                time.sleep(0.0001)
        finally:
            conn.close()
            os.close(lock)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield caught
    finally:
        stop.set()
        watcher.join()


def test_writes_from_threads_and_processes_never_share_a_fate(tmp_path: Path) -> None:
    """Two processes and this one write to one file at once, each from three threads and an
    event loop: appends, a fifth of which fail half-way, and dataset details, a fifth of
    which fail half-way. Every write is all or nothing, exactly the broken ones fail,
    every summary is the pure function of the events stored, and no writer ever holds
    SQLite's lock outside its turn on the writers' lock."""
    db = tmp_path / "w.db"
    url = f"sqlite:///{db}"
    SQLiteStore(url).close()  # the schema, before the others race to make it
    others = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, url, f"p{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(2)
    ]
    outcomes: dict[str, bool] = {}
    store = SQLiteStore(url)
    try:
        for other in others:
            assert other.stdout is not None and other.stdout.readline() == "ready\n"
        with watching_the_writers_lock(db) as caught:
            for other in others:
                assert other.stdin is not None
                other.stdin.write("go\n")
                other.stdin.flush()
            outcomes.update(hammer(store, "here", THREADS, WRITES))
            for other in others:
                out, _ = other.communicate(timeout=120)
                outcomes.update(json.loads(out))
    finally:
        for other in others:
            other.kill()
    assert caught == [], "a writer held SQLite's lock outside its turn on the writers' lock"
    assert len(outcomes) == 3 * (THREADS + 1) * WRITES

    with contextlib.closing(sqlite3.connect(db)) as conn:
        events = {eid for (eid,) in conn.execute("SELECT event_id FROM events")}
        paths = {path for (path,) in conn.execute("SELECT path FROM paths")}
        datasets = {did for (did,) in conn.execute("SELECT dataset_id FROM dataset_details")}
    stored: dict[str, list[Record]] = {trace: [] for trace in TRACES}
    for name, succeeded in outcomes.items():
        if "-sink-" in name or int(name.rsplit("-", 1)[1]) % 2 == 0:
            records, fails = append_of(name)
            assert succeeded is not fails, name
            ids = {r.event_id for r in records}
            assert events & ids == (ids if succeeded else set()), name
            touched = {p for r in records for p in r.paths if isinstance(p, str)}
            assert paths & touched == (touched if succeeded else set()), name
            if succeeded:
                for r in records:
                    stored[r.trace_id].append(r)
        else:
            details, fails = details_of(name)
            assert succeeded is not fails, name
            ids = {d.dataset_id for d in details}
            assert datasets & ids == (ids if succeeded else set()), name
    assert len(events) == sum(len(records) for records in stored.values())
    try:
        for trace, records in stored.items():
            assert store.summary("default", trace) == summarize(
                records, now_us=now_us(), stall_timeout_us=None
            ), trace
    finally:
        store.close()


# -- group commit ------------------------------------------------------------------------------


@contextlib.contextmanager
def writer_held(store: SQLiteStore, waiting: int) -> Iterator[None]:
    """Keep the writer thread busy with a write of its own until ``waiting`` more writes
    are queued behind it, so that those go into one transaction together."""
    release, holding = threading.Event(), threading.Event()

    def hold(_: Any) -> None:
        holding.set()
        assert release.wait(10)

    blocker = threading.Thread(target=store._write, args=(hold,))
    blocker.start()
    assert holding.wait(5)
    try:
        yield
        deadline = time.monotonic() + 5
        while store._jobs.qsize() < waiting:  # the writes are the threads' to queue
            assert time.monotonic() < deadline, "the writes were never queued"
            time.sleep(0.01)
    finally:
        release.set()
        blocker.join()


def in_threads(calls: list[Callable[[], object]]) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    return threads, results


def test_writes_waiting_together_commit_in_one_transaction_and_fail_alone(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    broken = [rec("bad", "b1", path="/bad/1"), with_an_unbindable_path(rec("bad", "b2"))]
    details = [DatasetDetails("default", "t0", "ds", None, "csv", 5, 1, 2)]
    calls: list[Callable[[], object]] = [
        *(lambda i=i: store.append([rec(f"t{i}", f"e{i}", path=f"/in/{i}")]) for i in range(6)),
        lambda: store.append(broken),
        lambda: store.put_dataset_details(details),
        lambda: store.park([("subject", "reason", b"raw")]),
    ]
    try:
        before = store.transactions
        with writer_held(store, len(calls)):
            threads, results = in_threads(calls)
        for thread in threads:
            thread.join()
        assert store.transactions - before == 2  # the one holding the writer, then all nine
        assert isinstance(results[6], sqlite3.ProgrammingError)
        assert [r.inserted for r in results[:6]] == [1] * 6
        for i in range(6):
            assert store.summary("default", f"t{i}") is not None
            assert len(store.paths("default", f"/in/{i}")) == 1
        assert store.summary("default", "bad") is None
        assert store.paths("default", "/bad/1") == []
        assert [d.record_count for d in store.dataset_details("default", dataset_id="ds")] == [5]
        assert [letter.reason for letter in store.dead_letters()] == ["reason"]
    finally:
        store.close()


def test_many_threads_appending_at_once_share_transactions(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        before = store.transactions
        start = threading.Barrier(8)

        def append(t: int) -> None:
            start.wait()
            for k in range(25):
                store.append([rec(f"t{t}", f"e{t}-{k}")])

        threads, _ = in_threads([lambda t=t: append(t) for t in range(8)])
        for thread in threads:
            thread.join()
        assert store.transactions - before < 8 * 25
        counts = {s.trace_id: s.event_count for s in store.summaries("default", ["t0", "t7"])}
        assert counts == {"t0": 25, "t7": 25}
    finally:
        store.close()


REFUSED_COMMIT = """
import os, resource, signal, sys
from tests.store.conftest import rec
from tests.store.test_sqlite_writer import in_threads, writer_held
from waymark.store.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
store.append([rec("t0", "e0")])
# Files of this process may grow by 200 kB more; the big append's pages, written to the
# WAL only at COMMIT, need several MB.
grown = max(os.path.getsize(store.path), os.path.getsize(store.path + "-wal"))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (grown + 200_000, resource.RLIM_INFINITY))
big = [rec("big", f"b{i}", body={"blob": "x" * 1000}) for i in range(2000)]
calls = [lambda: store.append([rec("t1", "e1")]), lambda: store.append(big),
         lambda: store.append([rec("t2", "e2")])]
with writer_held(store, len(calls)):
    threads, results = in_threads(calls)
for thread in threads:
    thread.join()
print(" ".join(type(r).__name__ for r in results))
"""


def test_a_commit_the_disk_refuses_fails_every_write_of_its_group(tmp_path: Path) -> None:
    """Three appends share a transaction; the file may not grow enough for its COMMIT:
    each caller hears that the store is unavailable, and none of the three is kept."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    done = subprocess.run(
        [sys.executable, "-c", REFUSED_COMMIT, url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.stdout == "Unavailable Unavailable Unavailable\n", done.stderr
    store = SQLiteStore(url)
    try:
        assert [s.trace_id for s in store.summaries("default", ["t0", "t1", "big", "t2"])] == ["t0"]
        assert store.append([rec("t1", "e1")]).inserted == 1  # and the store goes on
    finally:
        store.close()


# -- writers of several processes --------------------------------------------------------------

HOLD_THE_WRITE = """
import sys
from waymark.store.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
def hold(cur):
    print("holding", flush=True)
    sys.stdin.readline()
store._write(hold)
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


def test_closing_finishes_the_writes_queued_and_refuses_later_ones(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    with writer_held(store, 2):
        threads, results = in_threads([lambda: store.append([rec("t", "queued")])])
        while store._jobs.qsize() < 1:
            time.sleep(0.01)
        closing, _ = in_threads([store.close])  # queued behind the append
    for thread in threads + closing:
        thread.join()
    assert results[0].inserted == 1
    with pytest.raises(Unavailable, match="closed"):
        store.append([rec("t", "late")])
    reopened = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        summary = reopened.summary("default", "t")
        assert summary is not None and summary.event_count == 1
    finally:
        reopened.close()
