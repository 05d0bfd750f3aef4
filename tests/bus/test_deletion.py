"""A trace deleted in bus mode stays deleted: its events still on the stream when it was
deleted are not stored when the collector reaches them; events sent afterwards are."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.bus.conftest import collect_until
from waymark.api.app import create_app
from waymark.config import Settings
from waymark.store.base import Store


def test_events_on_the_bus_do_not_bring_a_deleted_trace_back(
    store_url: str, store: Store, bus_url: str
) -> None:
    with TestClient(create_app(Settings(store=store_url, bus=bus_url))) as client:
        first = [
            {"trace_id": "t", "event_id": "e1", "path": "raw/f"},
            {"trace_id": "t", "event_id": "e2"},
        ]
        assert client.post("/v1/events", json=first).status_code == 202
        counters = collect_until(store, bus_url, lambda c: c.counters.appended >= 2)
        assert counters.appended == 2
        assert client.get("/v1/traces/t").json()["event_count"] == 2

        # accepted, on the stream, not collected yet when the trace is deleted
        late = {"trace_id": "t", "event_id": "e3", "outputs": ["clean/f"]}
        assert client.post("/v1/events", json=late).status_code == 202
        assert client.delete("/v1/traces/t").status_code == 204
        counters = collect_until(store, bus_url, lambda c: c.counters.messages >= 1)
        assert counters.messages == 1 and counters.appended == 0 and counters.parked == 0
        for path in ("/v1/traces/t", "/v1/traces/t/events", "/v1/traces/t/lineage"):
            assert client.get(path).status_code == 404, path
        assert client.get("/v1/paths", params={"path": "clean/f"}).json()["items"] == []

        # sent after the deletion: the trace begins again, with that event alone
        again = {"trace_id": "t", "event_id": "e4"}
        assert client.post("/v1/events", json=again).status_code == 202
        counters = collect_until(store, bus_url, lambda c: c.counters.appended >= 1)
        assert counters.appended == 1
        events = client.get("/v1/traces/t/events").json()["items"]
        assert [e["event_id"] for e in events] == ["e4"]
