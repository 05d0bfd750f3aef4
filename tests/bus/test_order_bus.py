"""In bus mode a batch travels as one message; its timeless events keep the order they were
sent in once a collector has stored them, on every backend."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from tests.bus.conftest import collect_until
from tests.test_order import STEPS, batch
from waymark.api.app import create_app
from waymark.config import Settings
from waymark.store.base import Store


def test_a_batch_keeps_its_order_through_the_bus(
    store_url: str, store: Store, bus_url: str
) -> None:
    trace_ids = [f"order-{uuid.uuid4()}" for _ in range(6)]
    with TestClient(create_app(Settings(store=store_url, bus=bus_url))) as client:
        for trace_id in trace_ids:
            assert client.post("/v1/events", json=batch(trace_id)).status_code == 202
    wanted = len(trace_ids) * len(STEPS)
    collect_until(store, bus_url, lambda c: c.counters.appended >= wanted)
    for trace_id in trace_ids:
        page = store.events("default", trace_id)
        assert [e["component"] for e in page.items] == STEPS
        summary = store.summary("default", trace_id)
        assert summary is not None and summary.current.component == STEPS[-1]
