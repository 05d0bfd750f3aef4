"""Group commit in the direct sink: concurrent requests share transactions, never failures."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from waymark.errors import Unavailable
from waymark.model import Event, Record, now_us, to_record
from waymark.sink import DirectSink
from waymark.store.base import AppendResult, TraceQuery
from waymark.store.sqlite import SQLiteStore
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
