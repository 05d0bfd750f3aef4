"""Summary reads grouped across concurrent requests: each reader gets its own trace's
summary (or None, or the error), in few store calls."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from waymark.api.app import create_app
from waymark.api.deps import Services, store_threads
from waymark.ingest import parse_events, to_records
from waymark.model import Record, Summary
from waymark.pipelines import Pipelines
from waymark.sink import Sink
from waymark.store.base import DatasetDetails
from waymark.store.sqlite import SQLiteStore
from waymark.watch import Watcher

TENANTS = ("a", "b", "c")


class CountingStore(SQLiteStore):
    """Counts calls of ``summaries``; each takes a while, as a busy disk's would."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls = 0
        self.fail_for: str | None = None
        self._lock = threading.Lock()

    def summaries(self, tenant: str, trace_ids: Sequence[str]) -> list[Summary]:
        with self._lock:
            self.calls += 1
        time.sleep(0.05)
        if self.fail_for in trace_ids:
            raise RuntimeError("cannot read")
        return super().summaries(tenant, trace_ids)


class NoSink(Sink):
    async def submit(self, records: Sequence[Record]) -> None:
        raise AssertionError("nothing is written here")

    async def submit_dataset_details(self, details: Sequence[DatasetDetails]) -> None:
        raise AssertionError("nothing is written here")

    async def check_ready(self) -> None:
        raise AssertionError("nothing is written here")


def services_over(store: SQLiteStore) -> Services:
    return Services(store, NoSink(), Watcher(), Pipelines(), store_threads())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CountingStore]:
    found = CountingStore(f"sqlite:///{tmp_path / 'reads.db'}")
    for tenant in TENANTS:
        events = parse_events([{"trace_id": f"{tenant}-{i}"} for i in range(10)])
        found.append(to_records(events, tenant, Pipelines()))
    found.calls = 0
    yield found
    found.close()


def test_concurrent_readers_share_store_calls_and_each_gets_its_own(
    store: CountingStore,
) -> None:
    keys = [(t, f"{t}-{i}") for t in TENANTS for i in range(10)] + [("a", "none"), ("a", "a-1")]

    async def main() -> list[Summary | None]:
        services = services_over(store)
        try:
            return await asyncio.gather(*(services.summaries.read(t, i) for t, i in keys))
        finally:
            services.threads.shutdown()

    found = asyncio.run(main())
    for (tenant, trace_id), summary in zip(keys, found, strict=True):
        if trace_id == "none":
            assert summary is None
        else:
            assert summary is not None
            assert (summary.tenant, summary.trace_id) == (tenant, trace_id)
    assert store.calls <= 3 * 4  # a call per tenant for each of at most four groups


def test_a_failed_group_fails_each_of_its_readers_and_no_later_one(store: CountingStore) -> None:
    store.fail_for = "a-0"

    async def main() -> tuple[list[Summary | BaseException | None], Summary | None]:
        services = services_over(store)
        try:
            reads = [services.summaries.read("a", f"a-{i}") for i in range(5)]
            first = await asyncio.gather(*reads, return_exceptions=True)
            store.fail_for = None
            return first, await services.summaries.read("a", "a-0")
        finally:
            services.threads.shutdown()

    first, later = asyncio.run(main())
    assert any(isinstance(r, RuntimeError) for r in first)
    assert all(isinstance(r, RuntimeError | Summary) for r in first)
    assert later is not None and later.trace_id == "a-0"


def test_concurrent_summary_gets_each_answer_their_own_trace(store: CountingStore) -> None:
    urls = [(t, f"{t}-{i}") for t in TENANTS for i in range(10)] * 2
    with TestClient(create_app(store=store)) as client, ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(
                lambda key: client.get(f"/v1/traces/{key[1]}", headers={"Waymark-Tenant": key[0]}),
                urls,
            )
        )
        missing = client.get("/v1/traces/a-0", headers={"Waymark-Tenant": "b"})
    for (tenant, trace_id), answer in zip(urls, answers, strict=True):
        assert answer.status_code == 200
        assert (answer.json()["tenant"], answer.json()["trace_id"]) == (tenant, trace_id)
    assert missing.status_code == 404
    assert store.calls < len(urls)
