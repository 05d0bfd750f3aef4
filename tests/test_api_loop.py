"""No request holds a worker's event loop: while a store read is stuck (a huge trace, a
slow disk), the same uvicorn worker goes on answering other requests."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import free_port
from waymark.api.app import create_app
from waymark.model import Summary
from waymark.store.base import DataFlow, Datasets, EventQuery, Page, TraceQuery
from waymark.store.sqlite import SQLiteStore


class StuckStore(SQLiteStore):
    """A SQLite store whose slow reads wait until the test releases them."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.stuck = threading.Event()  # a read is waiting
        self.release = threading.Event()

    def _hold(self) -> None:
        self.stuck.set()
        if not self.release.wait(30):
            raise TimeoutError("never released")

    def lineage(
        self,
        tenant: str,
        trace_id: str,
        *,
        limit: int = 1000,
        cursor: str | None = None,
        datasets: Datasets = None,
    ) -> DataFlow | None:
        self._hold()
        return super().lineage(tenant, trace_id, limit=limit, cursor=cursor, datasets=datasets)

    def search(
        self, tenant: str, query: TraceQuery, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Summary]:
        self._hold()
        return super().search(tenant, query, limit=limit, cursor=cursor)

    def events(
        self,
        tenant: str,
        trace_id: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        datasets: Datasets = None,
    ) -> Page[dict[str, Any]]:
        self._hold()
        return super().events(tenant, trace_id, limit=limit, cursor=cursor, datasets=datasets)

    def find_events(
        self, tenant: str, query: EventQuery, *, limit: int = 100, cursor: str | None = None
    ) -> Page[dict[str, Any]]:
        self._hold()
        return super().find_events(tenant, query, limit=limit, cursor=cursor)

    def summaries(self, tenant: str, trace_ids: Sequence[str]) -> list[Summary]:
        if "held" in trace_ids:
            self._hold()
        return super().summaries(tenant, trace_ids)


@contextlib.contextmanager
def serving(store: StuckStore) -> Iterator[str]:
    """The app over ``store``, served by uvicorn on a free port from a thread."""
    port = free_port()
    config = uvicorn.Config(create_app(store=store), port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        store.release.set()
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def stuck(tmp_path: Path) -> Iterator[tuple[StuckStore, str]]:
    store = StuckStore(f"sqlite:///{tmp_path / 'stuck.db'}")
    try:
        with serving(store) as url:
            for trace_id in ("t", "held"):
                event = {"trace_id": trace_id, "inputs": ["a"], "outputs": ["b"]}
                httpx.post(f"{url}/v1/events", json=event).raise_for_status()
            yield store, url
    finally:
        store.close()


SLOW = [
    ("GET", "/v1/traces/t/lineage", None, {}),
    ("GET", "/v1/traces?component=x", None, {}),
    ("GET", "/v1/traces/t/events", None, {}),
    ("GET", "/status/t", None, {}),
    ("GET", "/v1/traces/held?wait=5", None, {}),
    (
        "POST",
        "/api/status-processor/v1/status/query",
        {"statusQuery": {"correlationId": "t"}},
        {"data-partition-id": "default"},
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "headers"), SLOW)
def test_a_stuck_read_leaves_the_worker_answering(
    stuck: tuple[StuckStore, str],
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
) -> None:
    store, url = stuck
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(
            httpx.request, method, url + path, json=body, headers=headers, timeout=30
        )
        assert store.stuck.wait(10), "the read never started"
        assert httpx.get(f"{url}/healthz", timeout=3).status_code == 200
        assert httpx.get(f"{url}/v1/traces/t", timeout=3).json()["trace_id"] == "t"
        assert not slow.done()
        store.release.set()
        assert slow.result().status_code == 200
