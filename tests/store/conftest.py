"""The store contract runs once per backend: every test that asks for ``store`` (or
``store_url``) runs against SQLite and against PostgreSQL, each in a fresh database."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from waymark.model import Event, Record, to_record
from waymark.store import open_store
from waymark.store.sql import SqlStore

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    opened = open_store(store_url)
    assert isinstance(opened, SqlStore)
    try:
        yield opened
    finally:
        opened.close()


def rec(
    trace_id: str,
    event_id: str,
    *,
    tenant: str = "default",
    at: int = 1_000_000,
    received_us: int = 5_000_000,
    finishing: bool | None = None,
    **fields: Any,
) -> Record:
    """A record as the API would store it; ``at`` is the message timestamp (µs)."""
    event = Event(trace_id=trace_id, event_id=event_id, **fields)
    return to_record(event, tenant, received_us, timestamp_us=at, finishing=finishing)


def write_concurrently(store: SqlStore, writers: Sequence[Sequence[Sequence[Record]]]) -> list[int]:
    """Each writer appends its batches from a thread of its own, all starting at once.
    Returns how many events each append inserted; re-raises the first failure."""
    start = threading.Barrier(len(writers))

    def write(batches: Sequence[Sequence[Record]]) -> list[int]:
        start.wait()
        return [store.append(batch).inserted for batch in batches]

    with ThreadPoolExecutor(len(writers)) as pool:
        return [count for counts in pool.map(write, writers) for count in counts]
